"""The redis-exporter healthcheck asks the exporter itself (its metrics endpoint), run by busybox's sh and
wget as in the alpine image, against a stand-in exporter on loopback."""

from __future__ import annotations

import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import load_project, run_program
from tests.conftest import require_tool
from tests.helpers import running_containers

EXPORTER_PORT = "9121"


class _Exporter(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def redis_exporter_check() -> str:
    resources = run_program(load_project(REPO_ROOT, "prod"), "prod").resources
    [image] = [r.inputs["name"] for r in resources if r.type == "docker:index/remoteImage:RemoteImage"
               and r.name.endswith("redis-exporter-image")]
    assert image.endswith("-alpine"), "the scratch image has no shell or wget for a healthcheck"
    kind, command = running_containers(resources)["redis-exporter"]["healthcheck"]["tests"]
    assert kind == "CMD-SHELL" and f"127.0.0.1:{EXPORTER_PORT}" in command
    return command


@pytest.fixture
def busybox_path(tmp_path) -> str:
    busybox = require_tool("busybox", "busybox-static")
    bin_dir = tmp_path / "busybox-bin"
    bin_dir.mkdir()
    for tool in ("sh", "wget", "grep"):
        (bin_dir / tool).symlink_to(busybox)
    return str(bin_dir)


def _run(command: str, port: int, path: str) -> int:
    local = command.replace(f"127.0.0.1:{EXPORTER_PORT}", f"127.0.0.1:{port}")
    return subprocess.run([str(Path(path) / "sh"), "-c", local], env={**os.environ, "PATH": path},
                          capture_output=True, timeout=30, check=False).returncode


@pytest.mark.parametrize("body, healthy", [
    (b"# HELP redis_exporter_build_info\nredis_exporter_build_info{version=\"v1.69.0\"} 1\nredis_up 0\n", True),
    (b"some_other_exporter_metric 1\n", False),
])
def test_the_healthcheck_judges_the_exporter(redis_exporter_check, busybox_path, body, healthy):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    server.body = body
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert (_run(redis_exporter_check, server.server_address[1], busybox_path) == 0) is healthy
    finally:
        server.shutdown()
        server.server_close()


def test_no_exporter_is_unhealthy(redis_exporter_check, busybox_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    port = server.server_address[1]
    server.server_close()
    assert _run(redis_exporter_check, port, busybox_path) != 0
