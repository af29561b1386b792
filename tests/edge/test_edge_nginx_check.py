"""`nginx -t` (Debian nginx 1.22.1) accepts the rendered config of every environment."""

import subprocess

import pytest

from platform_infra.components.edge import EdgeConfig, render_nginx_conf

ENVIRONMENTS = {
    "dev": EdgeConfig(
        server_names=["api.dev.example.test"],
        block_management_paths=False,
        cors_allowed_origins=["https://localhost:3000"],
    ),
    "staging": EdgeConfig(
        server_names=["api.staging.example.test"],
        cors_allowed_origins=["https://app.staging.example.test"],
    ),
    "prod": EdgeConfig(
        server_names=["api.example.test", "jobs.example.test"],
        cors_allowed_origins=["https://app.example.test", "https://admin.example.test"],
        cors_allow_credentials=True,
    ),
}


def nginx_test(
    nginx_binary, workdir, config, cert_path, key_path, upstreams=("127.0.0.1:8080", "localhost:8081"),
    trusted_path=None,
):
    conf = workdir / "nginx.conf"
    conf.write_text(
        render_nginx_conf(
            config,
            upstreams,
            cert_path,
            key_path,
            pid_path=str(workdir / "nginx.pid"),
            temp_dir=str(workdir / "tmp"),
            access_log_path=str(workdir / "access.log"),
            trusted_certificate_path=trusted_path,
        )
    )
    return subprocess.run(
        [nginx_binary, "-t", "-p", str(workdir), "-c", str(conf), "-e", "stderr"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("environment", sorted(ENVIRONMENTS))
def test_nginx_accepts_rendered_config(environment, nginx_binary, tls_files, tmp_path):
    # No `user` directive here: this is exactly what production renders, apart from paths.
    (tmp_path / "tmp").mkdir()
    result = nginx_test(
        nginx_binary, tmp_path, ENVIRONMENTS[environment], tls_files.cert_path, tls_files.key_path,
        trusted_path=tls_files.ca_path,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    # A warning usually means a silently ignored or duplicated setting. The one exception is by design: the
    # test CA, as a private CA, runs no OCSP responder, so there is nothing to staple (nginx serves without;
    # tests/live/test_edge_ocsp_stapling.py staples from a real responder).
    warnings = [line for line in result.stderr.splitlines() if "[warn]" in line]
    assert [w.split(": ", 1)[1] for w in warnings] == [
        f'"ssl_stapling" ignored, no OCSP responder URL in the certificate "{tls_files.cert_path}"'
    ]


def test_nginx_check_really_fails_on_a_broken_deployment(nginx_binary, tls_files, tmp_path):
    """Guards the check above: a missing certificate must make `nginx -t` fail."""
    (tmp_path / "tmp").mkdir()
    result = nginx_test(
        nginx_binary, tmp_path, ENVIRONMENTS["prod"], str(tmp_path / "missing.pem"), tls_files.key_path
    )
    assert result.returncode != 0
    assert "cannot load certificate" in result.stderr
