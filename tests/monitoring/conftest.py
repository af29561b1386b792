"""Fixtures for the monitoring tests: a production-like config and target list, the real
promtool/amtool/prometheus/alertmanager binaries, and a runner for short-lived servers on
127.0.0.1. Only loopback is used and every wait has a timeout."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from platform_infra.components.monitoring import MonitoringConfig, ScrapeTarget, exporter_targets
from tests.conftest import require_tool

TOOL_TIMEOUT = 60
STARTUP_TIMEOUT = 15.0
SCHEMAS = Path(__file__).parent / "schemas"
# Debian bookworm packages that ship each binary.
DEBIAN_PACKAGE = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "amtool": "prometheus-alertmanager",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "prometheus-blackbox-exporter": "prometheus-blackbox-exporter",
}
APP_SERVICES = ("api-gateway", "orchestrator", "log-aggregator", "query-service")
WORKERS = 3


@pytest.fixture
def promtool() -> str:
    return require_tool("promtool", DEBIAN_PACKAGE["promtool"])


@pytest.fixture
def amtool() -> str:
    return require_tool("amtool", DEBIAN_PACKAGE["amtool"])


@pytest.fixture
def prometheus_binary() -> str:
    return require_tool("prometheus", DEBIAN_PACKAGE["prometheus"])


@pytest.fixture
def alertmanager_binary() -> str:
    return require_tool("prometheus-alertmanager", DEBIAN_PACKAGE["prometheus-alertmanager"])


@pytest.fixture
def blackbox_binary() -> str:
    return require_tool("prometheus-blackbox-exporter", DEBIAN_PACKAGE["prometheus-blackbox-exporter"])


@pytest.fixture
def run() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run a tool; returns the completed process (stdout and stderr merged) for the test to judge."""

    def run_tool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=TOOL_TIMEOUT,
            check=False,
        )

    return run_tool


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    def write_file(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write_file


@pytest.fixture
def config() -> MonitoringConfig:
    return MonitoringConfig(
        email={
            "to": "oncall@example.org",
            "from_address": "alertmanager@example.org",
            "smarthost": "smtp.example.org:587",
            "auth_username": "alertmanager",
        },
        slack={"channel": "#platform-alerts", "critical_channel": "#platform-pager"},
    )


@pytest.fixture
def targets() -> list[ScrapeTarget]:
    """What the Monitoring component hands in: every app service, one target per worker, exporters."""
    app = [ScrapeTarget(s, f"{s}:8080", "/actuator/prometheus", {"service": s}) for s in APP_SERVICES]
    workers = [
        ScrapeTarget("worker", f"worker-{i}:8080", "/actuator/prometheus", {"service": "worker"})
        for i in range(1, WORKERS + 1)
    ]
    return app + workers + exporter_targets(clickhouse_backup="clickhouse-backup")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_request(url: str, method: str = "GET", body: object | None = None) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture
def http() -> Callable[..., tuple[int, str]]:
    return http_request


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[[list[str], str], str]]:
    """Start a server process listening on a free loopback port; returns its base URL once
    `ready_path` answers 200. Every process started here is stopped at teardown."""
    processes: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(command: list[str], ready_path: str) -> str:
        port = free_port()
        log = tmp_path / f"server-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*command, f"--web.listen-address=127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT
            )
        processes.append((process, log))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"{command[0]} exited with {process.returncode}:\n{log.read_text()}")
            try:
                if http_request(base + ready_path)[0] == 200:
                    return base
            except OSError:
                pass
            time.sleep(0.2)
        pytest.fail(f"{command[0]} not ready after {STARTUP_TIMEOUT}s:\n{log.read_text()}")

    yield start
    for process, _ in processes:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def schema() -> Callable[[str], dict]:
    def load(name: str) -> dict:
        return json.loads((SCHEMAS / name).read_text())

    return load
