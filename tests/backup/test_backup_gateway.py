"""The backup store's egress gateway, run for real: Debian's nginx with the rendered stream configuration in
front of moto's S3 behind TLS, a loopback DNS server standing in for Docker's. curl is the client: it
connects to the gateway as the data network's clients do (the bucket's name leads there) and verifies the
store's own certificate."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config

from platform_infra.components.backup.gateway import render_gateway_conf, store_gateway_spec
from platform_infra.components.backup.model import BackupConfig, StoreRoute, store_route
from platform_infra.components.runtime import DockerRuntime
from platform_infra.components.spec import ComponentArgsError
from tests.backup.conftest import REGION, TlsS3, _self_signed, free_port, moto_behind_tls, one_off_aws_env
from tests.conftest import ON_CI, require_tool
from tests.helpers import LOOPBACK, LoopbackDns

BUCKET = "platform-backups"
STORE_DOMAIN = "s3.test"
# Debian builds nginx's stream modules as dynamic ones (libnginx-mod-stream); the official image builds them in.
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"


def stream_module() -> str:
    if Path(STREAM_MODULE).exists():
        return STREAM_MODULE
    message = f"{STREAM_MODULE} not found (Debian: apt-get install libnginx-mod-stream; .ci/run installs it)"
    if ON_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@dataclass(frozen=True)
class Gateway:
    route: StoreRoute
    port: int
    store: TlsS3
    log: Path

    def curl(self, url: str, *args: str, ca_file: str | None = None) -> subprocess.CompletedProcess:
        """curl to `url` as a client on the data network: its host and port lead to the gateway."""
        parts = urlsplit(url)
        return subprocess.run(
            ["curl", "--silent", "--show-error", "--max-time", "10", "--cacert", ca_file or self.store.ca_file,
             "--connect-to", f"{parts.hostname}:{parts.port}:{LOOPBACK}:{self.port}", *args, url],
            capture_output=True, text=True, timeout=30, check=False)

    def signed_put(self, url: str, body: Path, key: str, secret: str) -> subprocess.CompletedProcess:
        # The backup job's request (components/backup/jobs.py render_job_script): SigV4, unsigned payload.
        return self.curl(url, "--fail", "--aws-sigv4", f"aws:amz:{REGION}:s3", "--user", f"{key}:{secret}",
                         "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-T", str(body))


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    nginx = require_tool("nginx", "nginx-light")
    require_tool("curl")
    module = stream_module()
    with moto_behind_tls(("localhost", f"*.{STORE_DOMAIN}")) as store:
        store_port = urlsplit(store.endpoint).port
        route = store_route(BackupConfig(bucket=BUCKET, region=REGION, endpoint=f"https://{STORE_DOMAIN}:{store_port}"))
        dns = LoopbackDns(STORE_DOMAIN)
        dns.up.add(LOOPBACK)
        directory = Path(tempfile.mkdtemp(prefix="i12-gateway-"))
        port = free_port()
        conf = directory / "nginx.conf"
        conf.write_text(render_gateway_conf(route, resolver=dns.address, listen=f"{LOOPBACK}:{port}",
                                            pid_path=str(directory / "nginx.pid"), modules=(module,)))
        log = directory / "stdout.log"
        with log.open("a") as output:  # append: nginx reopens /dev/stdout, stderr shares it
            process = subprocess.Popen([nginx, "-p", str(directory), "-c", str(conf), "-g", "daemon off;"],
                                       stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    socket.create_connection((LOOPBACK, port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError(f"the gateway did not start: {log.read_text()}") from None
                    time.sleep(0.1)
            yield Gateway(route, port, store, log)
        finally:
            process.terminate()
            process.wait(timeout=15)
            dns.close()
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def store_client(gateway, aws_module_env):
    """boto3 straight to the store (not through the gateway), to create the bucket and read what arrived."""
    client = boto3.session.Session().client(
        "s3", endpoint_url=gateway.store.endpoint, region_name=REGION, verify=gateway.store.ca_file,
        config=Config(s3={"addressing_style": "path"}))
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return client


@pytest.fixture(scope="module")
def aws_module_env() -> Iterator[dict[str, str]]:
    with pytest.MonkeyPatch.context() as patch:
        yield one_off_aws_env(patch)


# The longest bucket name S3 allows (63 characters), and the prod stack's: a server name longer than nginx's
# default map hash bucket holds (one CPU cache line) is refused at start.
@pytest.mark.parametrize("bucket", [BUCKET, "orchestration-prod-backups", "b" * 63])
def test_the_rendered_configuration_passes_nginx_t(tmp_path, bucket):
    nginx = require_tool("nginx", "nginx-light")
    route = store_route(BackupConfig(bucket=bucket, region="eu-central-1"))
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_gateway_conf(route, listen=f"{LOOPBACK}:{free_port()}", pid_path=str(tmp_path / "pid"),
                                        modules=(stream_module(),)))
    result = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    # The bucket's name on AWS, forwarded to the regional endpoint's own name on the store's port.
    assert (route.server_name, route.upstream_host, route.port) == (
        f"{bucket}.s3.eu-central-1.amazonaws.com", "s3.eu-central-1.amazonaws.com", 443)


def test_the_buckets_requests_pass_with_the_stores_certificate_verified_end_to_end(gateway, store_client,
                                                                                   aws_module_env, tmp_path):
    body = tmp_path / "archive"
    body.write_bytes(b"config archive \x00\x01" * 1000)
    result = gateway.signed_put(f"{gateway.route.url}/config/probe.tar.zst.enc", body,
                                aws_module_env["AWS_ACCESS_KEY_ID"], aws_module_env["AWS_SECRET_ACCESS_KEY"])
    assert result.returncode == 0, result.stderr
    stored = store_client.get_object(Bucket=BUCKET, Key="config/probe.tar.zst.enc")["Body"].read()
    assert stored == body.read_bytes()
    # The gateway only forwards: the certificate curl verified is the store's, so another CA fails.
    unrelated_ca, _ = _self_signed(tmp_path, ("unrelated.test",))
    assert gateway.curl(f"{gateway.route.url}/", ca_file=str(unrelated_ca)).returncode == 60  # peer not verified
    assert f" {gateway.route.server_name} 200 " in gateway.log.read_text()


def test_other_names_and_no_name_are_closed_unforwarded(gateway, store_client):
    other = f"https://other-bucket.{STORE_DOMAIN}:{gateway.route.port}/"
    refused = gateway.curl(other)
    assert refused.returncode == 35, refused  # the TLS handshake never completes
    # The store itself would have answered that name (its certificate covers it): the gateway refused it.
    direct = subprocess.run(["curl", "--silent", "--max-time", "10", "--cacert", gateway.store.ca_file,
                             "--resolve", f"other-bucket.{STORE_DOMAIN}:{gateway.route.port}:{LOOPBACK}", other],
                            capture_output=True, text=True, timeout=30, check=False)
    assert direct.returncode == 0, direct.stderr
    # No server name at all: closed too.
    context = ssl.create_default_context(cafile=gateway.store.ca_file)
    context.check_hostname = False
    with socket.create_connection((LOOPBACK, gateway.port), timeout=5) as raw, \
            pytest.raises((ssl.SSLError, ConnectionError)):
        context.wrap_socket(raw).close()
    # The access log (stream $status 500: nowhere to forward) names each refused server name.
    sessions = [line.split() for line in gateway.log.read_text().splitlines() if not line.startswith("20")]
    assert [f"other-bucket.{STORE_DOMAIN}", "500"] in [session[1:3] for session in sessions]


def _handshake(gateway, newest: ssl.TLSVersion) -> None:
    """A TLS handshake through the gateway under the bucket's name, from a client offering nothing newer."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(gateway.store.ca_file)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # lets OpenSSL 3 offer TLS 1.1 at all
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = newest
    with socket.create_connection((LOOPBACK, gateway.port), timeout=5) as raw:
        context.wrap_socket(raw, server_hostname=gateway.route.server_name).close()


def test_a_client_offering_nothing_newer_than_tls_1_1_is_closed_unforwarded(gateway, store_client):
    _handshake(gateway, ssl.TLSVersion.TLSv1_2)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(gateway, ssl.TLSVersion.TLSv1_1)
    refused = [line.split()[1:3] for line in gateway.log.read_text().splitlines() if not line.startswith("20")]
    assert [gateway.route.server_name, "500"] in refused


def test_the_gateway_spec_joins_backup_and_egress_and_answers_to_the_buckets_name():
    spec, _ = store_gateway_spec({"runtime": DockerRuntime("t"), "networks": {"backup": None, "egress": None},
                                     "config": BackupConfig(bucket=BUCKET, region="eu-central-1"),
                                     "image": "nginx:1.26.3-bookworm"})
    assert spec.networks == ["backup", "egress"]
    assert spec.aliases == {"backup": (f"{BUCKET}.s3.eu-central-1.amazonaws.com",)}
    with pytest.raises(ComponentArgsError, match=r"networks must include \['egress'\]"):
        store_gateway_spec({"runtime": DockerRuntime("t"), "networks": {"backup": None},
                            "config": BackupConfig(bucket=BUCKET), "image": "nginx:1.26.3-bookworm"})
