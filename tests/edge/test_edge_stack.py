"""The load balancer as the stacks deploy it: the uploaded nginx.conf through the real nginx."""

from __future__ import annotations

import subprocess
from pathlib import Path

import crossplane
import pytest
import yaml

from platform_infra.components.edge import EdgeConfig, iter_directives, parse_nginx_conf, render_nginx_conf
from platform_infra.components.loadbalancer import (
    CERT_PATH,
    CONF_PATH,
    DOCKER_DNS,
    HTTP_PORT,
    HTTPS_PORT,
    KEY_PATH,
    TRUSTED_PATH,
)
from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import load_project, run_program
from platform_infra.infra.settings import parse_settings
from tests.helpers import files_of, is_secret, labels_of, reveal, running_containers

STACKS = ["dev", "staging", "prod"]


def stack_run(stack: str):
    return run_program(load_project(REPO_ROOT, stack), stack)


def stack_settings(stack: str, **edge_overrides):
    raw = yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]["platform:settings"]
    return parse_settings({**raw, "edge": {**raw.get("edge", {}), **edge_overrides}}, f"Pulumi.{stack}.yaml")


@pytest.fixture(scope="module", params=STACKS)
def deployed(request):
    run = stack_run(request.param)
    return request.param, running_containers(run.resources), files_of(run.resources, "load-balancer")


def test_only_the_load_balancer_publishes_and_only_80_and_443(deployed):
    stack, containers, files = deployed
    publishing = {host for host, inputs in containers.items() if inputs.get("ports")}
    assert publishing == {"load-balancer"}
    lb = containers["load-balancer"]
    assert sorted((p["external"], p["internal"]) for p in lb["ports"]) == [(80, HTTP_PORT), (443, HTTPS_PORT)]
    assert labels_of(lb)["platform.role"] == "lb"
    assert {n["name"].removeprefix(f"orchestration-{stack}-") for n in lb["networksAdvanced"]} == {"edge", "front"}
    assert lb["user"] == "101:101" and lb["readOnly"] is True and lb["capabilities"]["drops"] == ["ALL"]
    assert "adds" not in lb["capabilities"]
    assert lb["command"] == ["nginx", "-c", CONF_PATH, "-g", "daemon off;"]
    assert is_secret(files[KEY_PATH]["content"]) and files[KEY_PATH]["permissions"] == "0440"
    assert files[KEY_PATH]["owner"] == "101"
    assert not is_secret(files[CONF_PATH]["content"])


def test_uploaded_config_is_the_stack_settings_rendered(deployed):
    stack, containers, files = deployed
    settings = stack_settings(stack)
    gateways = sorted(host for host in containers if host.startswith("api-gateway"))
    assert all("api-gateway" in network["aliases"] for host in gateways
               for network in containers[host]["networksAdvanced"])
    expected = render_nginx_conf(settings.edge, ["api-gateway:8080"], CERT_PATH, KEY_PATH,
                                 listen_http=HTTP_PORT, listen_https=HTTPS_PORT, pid_path="/tmp/nginx.pid",
                                 temp_dir="/tmp", resolver=DOCKER_DNS, trusted_certificate_path=TRUSTED_PATH)
    assert files[CONF_PATH]["content"] == expected
    parsed = parse_nginx_conf(expected)
    # The gateways' shared alias, resolved per request by Docker's DNS: no name is resolved at start.
    assert [d["args"] for d in iter_directives(parsed, "resolver")] == [["127.0.0.11", "valid=10s", "ipv6=off"]]
    assert [d["args"] for d in iter_directives(parsed, "set")] == [["$api_gateway", "api-gateway:8080"]]
    assert list(iter_directives(parsed, "upstream")) == []
    # OCSP stapling, its responses verified against the stack's CA, uploaded beside the certificate.
    assert [d["args"] for d in iter_directives(parsed, "ssl_stapling")] == [["on"]]
    assert [d["args"] for d in iter_directives(parsed, "ssl_trusted_certificate")] == [[TRUSTED_PATH]]
    assert reveal(files[TRUSTED_PATH]["content"]).startswith("-----BEGIN CERTIFICATE-----")


def localize(conf: str, workdir: Path, tls_files, upstream: str) -> Path:
    """The deployed config with container-only paths and hosts pointed at this machine; nothing else changed."""
    def rewrite(block):
        for stmt in block:
            if stmt["directive"] == "server" and stmt["args"] and ":" in stmt["args"][0]:
                stmt["args"][0] = upstream
            elif stmt["directive"] == "ssl_certificate":
                stmt["args"] = [tls_files.cert_path]
            elif stmt["directive"] == "ssl_certificate_key":
                stmt["args"] = [tls_files.key_path]
            elif stmt["directive"] == "ssl_trusted_certificate":
                stmt["args"] = [tls_files.ca_path]
            elif stmt["directive"] == "pid":
                stmt["args"] = [str(workdir / "nginx.pid")]
            elif stmt["directive"].endswith("_temp_path"):
                stmt["args"] = [str(workdir / stmt["args"][0].rsplit("/", 1)[-1])]
            rewrite(stmt.get("block", []))
        return block

    path = workdir / "nginx.conf"
    path.write_text(crossplane.build(rewrite(parse_nginx_conf(conf))))
    return path


def test_deployed_config_passes_nginx_t(deployed, nginx_binary, tls_files, tmp_path):
    _, _, files = deployed
    conf = files[CONF_PATH]["content"]
    path = localize(reveal(conf), tmp_path, tls_files, "127.0.0.1:9")
    result = subprocess.run([nginx_binary, "-t", "-p", str(tmp_path), "-c", str(path), "-e", "stderr"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_stack_config_changes_reach_the_running_nginx(start_edge):
    """A stack's edge settings, changed in its config, change what a live nginx does."""
    body = b"x" * 4096
    prod = start_edge(stack_settings("prod", server_names=["api.example.test"]).edge)
    assert prod.request("POST", "/api/v1/jobs", body=body).status == 200
    assert prod.request("GET", "/swagger-ui/index.html").status == 404
    tightened = start_edge(stack_settings("prod", server_names=["api.example.test"],
                                          client_max_body_size_bytes=1024).edge)
    assert tightened.request("POST", "/api/v1/jobs", body=body).status == 413
    dev = start_edge(stack_settings("dev", server_names=["api.example.test"]).edge)
    assert dev.request("GET", "/swagger-ui/index.html").status == 200


def test_bad_edge_setting_names_the_key():
    with pytest.raises(ValueError, match=r"platform:settings.edge.cors_allowed_origins: .*\*"):
        stack_settings("prod", cors_allowed_origins=["*"])
    with pytest.raises(ValueError, match="edge.block_management_paths must be true in prod"):
        stack_settings("prod", block_management_paths=False)
    assert isinstance(stack_settings("staging").edge, EdgeConfig)
