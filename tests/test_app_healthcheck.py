"""The services' default healthcheck needs only `java`: the shipped class is its source's, and the real JVM
running it tells a healthy service from an unhealthy or absent one."""

from __future__ import annotations

import base64
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from platform_infra.components.apps import HEALTHCHECK_CLASS_DIR, JVM_TMPDIR, default_healthcheck
from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import load_project, run_program
from tests.conftest import require_tool
from tests.helpers import env_of, files_of, labels_of, running_containers

SOURCE_DIR = Path(__file__).resolve().parents[1] / "components" / "healthcheck"


def test_the_shipped_class_is_compiled_from_its_source(tmp_path):
    javac = require_tool("javac", "default-jdk-headless")
    subprocess.run([javac, "--release", "11", "-g:none", "-d", str(tmp_path), str(SOURCE_DIR / "HttpCheck.java")],
                   check=True, timeout=120)
    assert (tmp_path / "HttpCheck.class").read_bytes() == (SOURCE_DIR / "HttpCheck.class").read_bytes()


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/actuator/health" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def service():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _check(url: str) -> int:
    java = require_tool("java", "default-jdk-headless")
    command = default_healthcheck(url)
    assert command[:2] == ["CMD", "java"]
    args = [java, *command[2:]]
    args[args.index(HEALTHCHECK_CLASS_DIR)] = str(SOURCE_DIR)
    return subprocess.run(args, capture_output=True, timeout=60, check=False).returncode


def test_healthy_unhealthy_and_absent(service):
    assert _check(f"{service}/actuator/health") == 0
    assert _check(f"{service}/down") == 1
    port = service.rsplit(":", 1)[1]
    service_gone = f"http://127.0.0.1:{int(port) + 1 if int(port) < 65535 else 1}/actuator/health"
    assert _check(service_gone) == 1


def test_every_service_gets_the_java_probe_and_an_exec_able_jvm_temp_dir():
    run = run_program(load_project(REPO_ROOT, "prod"), "prod")
    apps = {host: inputs for host, inputs in running_containers(run.resources).items()
            if labels_of(inputs)["platform.role"] == "app"}
    assert apps
    for host, inputs in apps.items():
        assert inputs["healthcheck"]["tests"] == default_healthcheck("http://127.0.0.1:8080/actuator/health"), host
        assert "noexec" not in inputs["tmpfs"][JVM_TMPDIR] and "noexec" in inputs["tmpfs"]["/tmp"]
        assert f"-Djava.io.tmpdir={JVM_TMPDIR}" in env_of(inputs)["JAVA_TOOL_OPTIONS"]
        service = labels_of(inputs)["platform.service"]
        shipped = files_of(run.resources, service)[f"{HEALTHCHECK_CLASS_DIR}/HttpCheck.class"]
        assert base64.b64decode(shipped["contentBase64"]) == (SOURCE_DIR / "HttpCheck.class").read_bytes()


def test_a_service_may_bring_its_own_healthcheck():
    from platform_infra.infra.settings import parse_settings
    from tests.test_settings import BASE

    own = ["CMD", "wget", "-qO-", "http://127.0.0.1:8080/actuator/health"]
    settings = parse_settings({**BASE, "apps": {"orchestrator": {"healthcheck": own}}}, "Pulumi.prod.yaml")
    assert settings.apps.orchestrator.healthcheck == own and settings.apps.worker.healthcheck is None
    with pytest.raises(ValueError, match="apps.orchestrator.healthcheck: must be"):
        parse_settings({**BASE, "apps": {"orchestrator": {"healthcheck": ["curl"]}}}, "Pulumi.prod.yaml")
