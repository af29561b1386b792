"""`infra autoscale` against the real Swarm and a scripted Prometheus (a stand-in) on loopback serving a lag
trace."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime

import docker
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from platform_infra.components.autoscaling import ScalingPolicy
from platform_infra.infra.daytwo.autoscale import SwarmService
from tests.autoscaling.scripted_prometheus import ScriptedPrometheus
from tests.monitoring.conftest import free_port, http_request
from tests.swarm.conftest import unique

POLICY = ScalingPolicy(min_replicas=1, max_replicas=6, target_lag_per_replica=100, activation_lag=10,
                       tolerance=0.1, scale_up_step=2, scale_down_step=1, scale_down_stabilization_seconds=6,
                       stale_after_seconds=30, interval_seconds=1, consumer_group="job-workers", topic="jobs")
PARTITIONS = 4
# One entry per decision: (total lag or None when the series is missing, age of the sample in seconds).
TRACE = [(0, 1)] * 2 + [(900, 1)] * 4 + [(None, 0)] * 2 + [(0, 120)] * 2 + [(0, 1)] * 8
SPIKE, MISSING, STALE, CALM = range(2, 6), range(6, 8), range(8, 10), range(10, len(TRACE))


ROWS = [{"lag": "" if lag is None else str(lag), "partitions": str(PARTITIONS), "lag_age_seconds": str(age)}
        for lag, age in TRACE]


@pytest.fixture
def prometheus() -> Iterator[ScriptedPrometheus]:
    with ScriptedPrometheus(POLICY, ROWS) as server:
        yield server


@pytest.fixture
def worker_service(swarm: docker.DockerClient, standin_image: str, cleanup) -> docker.models.services.Service:
    """A stand-in worker: replicated, one replica, quick to stop."""
    return cleanup(swarm.services.create(
        standin_image, ["/bin/busybox", "sleep", "3600"], name=unique("worker"),
        mode=docker.types.ServiceMode("replicated", replicas=1), stop_grace_period=1_000_000_000,
        labels={"platform.test": "issue11"}))


def spec_replicas(swarm: docker.DockerClient, name: str) -> int:
    return swarm.api.inspect_service(name)["Spec"]["Mode"]["Replicated"]["Replicas"]


def running_tasks(swarm: docker.DockerClient, name: str) -> int:
    tasks = swarm.api.tasks(filters={"service": name, "desired-state": "running"})
    return sum(task["Status"]["State"] == "running" for task in tasks)


def autoscale(*args: str) -> list[str]:
    return [sys.executable, "-m", "platform_infra.infra.cli", "autoscale", *args]


def test_autoscale_follows_the_lag_trace_within_the_policy(swarm, worker_service, prometheus, tmp_path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(POLICY.model_dump()))
    metrics_port = free_port()
    name = worker_service.name
    samples: list[tuple[int, int]] = []
    done = threading.Event()

    def sample_replicas() -> None:  # what the Docker API says, independently of the controller's lines
        while not done.is_set():
            samples.append((spec_replicas(swarm, name), running_tasks(swarm, name)))
            done.wait(0.2)

    sampler = threading.Thread(target=sample_replicas, daemon=True)
    sampler.start()
    controller = subprocess.Popen(
        autoscale("--service", name, "--prometheus-url", prometheus.url, "--policy", str(policy_file),
                  "--metrics-port", str(metrics_port)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[dict] = []
    try:
        deadline = time.monotonic() + 120
        while len(lines) < len(TRACE) and time.monotonic() < deadline:
            line = controller.stdout.readline()
            if not line:
                break
            lines.append(json.loads(line))
        metrics = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(
                       http_request(f"http://127.0.0.1:{metrics_port}/metrics")[1])
                   for s in family.samples}
    finally:
        controller.terminate()
        _, errors = controller.communicate(timeout=20)
        done.set()
        sampler.join()
    assert controller.returncode == 0, errors
    assert len(lines) == len(TRACE), (lines, errors)
    print("decision trace:", *[f"{d['time']} current={d['current']} desired={d['desired']} {d['reason']}"
                               for d in lines], sep="\n  ")

    assert [set(line) for line in lines] == [{"time", "service", "current", "desired", "applied", "reason", "mode",
                                              "limited_by", "inputs", "steps"}] * len(TRACE)
    desired = [line["desired"] for line in lines]
    # The spike: up by at most scale_up_step per decision, never above min(max_replicas, partitions) = 4.
    assert desired[:6] == [1, 1, 3, 4, 4, 4]
    assert max(desired) == PARTITIONS and max(replicas for replicas, _ in samples) == PARTITIONS
    assert max(running for _, running in samples) == PARTITIONS  # the Swarm really ran them
    # Missing or stale lag holds, whatever the lag was before.
    for step in (*MISSING, *STALE):
        assert (lines[step]["desired"], lines[step]["applied"]) == (4, False), lines[step]
    assert all("missing" in lines[s]["reason"] for s in MISSING)
    assert all("stale" in lines[s]["reason"] for s in STALE)
    # Calm: no scale-down until the window has passed since the last high recommendation, then one at a time.
    last_high = datetime.fromisoformat(lines[SPIKE[-1]]["time"]).timestamp()
    downs = [line for line in lines[CALM.start:] if line["desired"] < line["current"]]
    assert [(d["current"], d["desired"]) for d in downs] == [(4, 3), (3, 2), (2, 1)]
    assert datetime.fromisoformat(downs[0]["time"]).timestamp() >= last_high + POLICY.scale_down_stabilization_seconds
    # Every applied decision is what the Docker API reads back at the next decision and at the end.
    for before, after in itertools.pairwise(lines):
        assert after["current"] == before["desired"], (before, after)
    assert spec_replicas(swarm, name) == desired[-1] == 1
    assert [line["applied"] for line in lines].count(True) == 5  # 1->3, 3->4, 4->3, 3->2, 2->1
    of = (("swarm_service", name),)
    assert metrics[("autoscaler_desired_replicas", of)] == 1
    assert metrics[("autoscaler_max_replicas", of)] == POLICY.max_replicas
    assert metrics[("autoscaler_decisions_total", (("applied", "true"), *of))] == 5


def test_a_conflicting_update_is_retried_not_lost(swarm, worker_service) -> None:
    service = SwarmService(swarm, worker_service.name)
    replicas, stale_version, _ = service.read()
    # Someone else changes the service between our read and our update.
    swarm.api.update_service(worker_service.id, stale_version, labels={"platform.test": "changed"},
                             fetch_current_spec=True)
    service.scale(replicas + 2, stale_version)
    assert service.conflicts == 1
    spec = swarm.api.inspect_service(worker_service.name)["Spec"]
    assert (spec["Mode"]["Replicated"]["Replicas"], spec["Labels"]) == (3, {"platform.test": "changed"})


def test_dry_run_decides_without_touching_the_service(swarm, worker_service, prometheus, tmp_path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(POLICY.model_dump()))
    prometheus.decision = SPIKE.start - 1  # the next decision sees the spike
    result = subprocess.run(autoscale("--service", worker_service.name, "--prometheus-url", prometheus.url,
                                      "--policy", str(policy_file), "--once", "--dry-run"),
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout)
    assert (line["current"], line["desired"], line["applied"]) == (1, 3, False)
    assert spec_replicas(swarm, worker_service.name) == 1


def test_once_with_prometheus_unreachable_names_the_url_and_exits_2(swarm, worker_service, tmp_path) -> None:
    """One decision with nothing observed is not a success: the URL is named, exit 2, the service untouched."""
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(POLICY.model_dump()))
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = subprocess.run(autoscale("--service", worker_service.name, "--prometheus-url", url,
                                      "--policy", str(policy_file), "--once", "--dry-run"),
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"infra: error: --prometheus-url: no Prometheus answers at {url} ("), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert json.loads(result.stdout)["desired"] == 1  # the decision held the replicas, and says why
    assert spec_replicas(swarm, worker_service.name) == 1


def test_started_before_its_service_it_holds_then_scales_it(swarm, standin_image, prometheus, tmp_path,
                                                             cleanup) -> None:
    """In the stack it may start before the worker service exists: it reports and holds, never exits (a task
    that exits exhausts its restart policy and is never restarted), then scales the service once it exists."""
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(POLICY.model_dump()))
    metrics_port = free_port()
    name = unique("worker")
    prometheus.decision = SPIKE.start - 1  # its first decision on the service sees the spike
    controller = subprocess.Popen(
        autoscale("--service", name, "--prometheus-url", prometheus.url, "--policy", str(policy_file),
                  "--metrics-port", str(metrics_port)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3 * POLICY.interval_seconds + 2)
        assert controller.poll() is None, controller.communicate(timeout=5)
        metrics = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(
                       http_request(f"http://127.0.0.1:{metrics_port}/metrics")[1])
                   for s in family.samples}
        assert metrics[("autoscaler_errors_total", (("source", "missing"), ("swarm_service", name)))] >= 2
        cleanup(swarm.services.create(
            standin_image, ["/bin/busybox", "sleep", "3600"], name=name,
            mode=docker.types.ServiceMode("replicated", replicas=1), stop_grace_period=1_000_000_000))
        line = json.loads(controller.stdout.readline())
        assert (line["service"], line["current"], line["desired"], line["applied"]) == (name, 1, 3, True), line
        assert spec_replicas(swarm, name) == 3
    finally:
        controller.terminate()
        _, errors = controller.communicate(timeout=20)
    assert controller.returncode == 0, errors
    assert f"no Swarm service {name!r} yet; holding until it exists" in errors
