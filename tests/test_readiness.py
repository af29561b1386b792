"""Nothing starts before what it needs is healthy, and what loses a dependency keeps trying long enough."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from platform_infra.components.monitoring.component import retrying
from platform_infra.components.runtime import duration_nanos
from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import load_project, run_program
from tests.helpers import CONTAINER, env_of, labels_of

STACKS = ["dev", "prod"]


@pytest.fixture(scope="module", params=STACKS)
def run(request):
    return run_program(load_project(REPO_ROOT, request.param), request.param)


def _by_service(run) -> dict[str, list]:
    services: dict[str, list] = {}
    for r in run.resources:
        if r.type == CONTAINER and r.inputs.get("start", True) is not False:
            services.setdefault(labels_of(r.inputs)["platform.service"], []).append(r)
    return services


def test_every_started_container_is_waited_for_until_healthy(run):
    for r in run.resources:
        if r.type != CONTAINER:
            continue
        if r.inputs.get("start", True) is False:
            assert not r.inputs.get("wait"), r.name
            continue
        check = r.inputs["healthcheck"]
        assert r.inputs["wait"] is True, r.name
        budget = duration_nanos(check["startPeriod"]) + check["retries"] * (
            duration_nanos(check["interval"]) + duration_nanos(check["timeout"]))
        assert r.inputs["waitTimeout"] * 10**9 >= budget, r.name


def test_stores_before_services_and_exporters_gateways_before_the_load_balancer(run):
    services = _by_service(run)
    urns = {service: {r.urn for r in resources} for service, resources in services.items()}
    expected = {
        "api-gateway": {"postgres", "redis"},
        "orchestrator": {"postgres", "redis", "kafka"},
        "log-aggregator": {"kafka", "clickhouse"},
        "query-service": {"postgres", "clickhouse"},
        "worker": {"postgres", "redis", "kafka"},
        "postgres-exporter": {"postgres"},
        "redis-exporter": {"redis"},
        "kafka-exporter": {"kafka"},
        "load-balancer": {"api-gateway"},
    }
    for service, needs in expected.items():
        for container in services[service]:
            missing = {need for need in needs if not urns[need] <= set(container.dependencies)}
            assert missing == set(), f"{container.name} starts before {missing}"


def test_spring_services_retry_the_database_for_minutes(run):
    for service, containers in _by_service(run).items():
        env = env_of(containers[0].inputs)
        if "SPRING_DATASOURCE_URL" in env:
            assert int(env["SPRING_DATASOURCE_HIKARI_INITIALIZATION_FAIL_TIMEOUT"]) >= 60_000, service


def _script(tmp_path, failures: int):
    """A stand-in exporter that fails `failures` times, then runs until stopped."""
    counter = tmp_path / "runs"
    exporter = tmp_path / "exporter"
    exporter.write_text(f"#!/bin/sh\necho run >> {counter}\n"
                        f"[ $(wc -l < {counter}) -le {failures} ] && exit 1\nexec sleep 60\n")
    exporter.chmod(0o755)
    return exporter, counter


def test_the_exporter_is_retried_until_its_store_answers_and_stops_on_sigterm(tmp_path):
    exporter, counter = _script(tmp_path, failures=3)
    process = subprocess.Popen(["/bin/sh", "-c", retrying(str(exporter), attempts=12, pause_seconds=0.1)],
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not counter.exists() or len(counter.read_text().split()) < 4):
            time.sleep(0.05)
        assert len(counter.read_text().split()) == 4 and process.poll() is None
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 143
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def test_the_exporter_gives_up_after_its_attempts(tmp_path):
    exporter, counter = _script(tmp_path, failures=100)
    result = subprocess.run(["/bin/sh", "-c", retrying(str(exporter), attempts=3, pause_seconds=0)],
                            check=False, timeout=10)
    assert result.returncode == 1 and len(counter.read_text().split()) == 3
