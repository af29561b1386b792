"""The controller as the stack runs it (images/autoscaler, its entrypoint `infra autoscale`, the engine through
its socket proxy) on the real single-node Swarm, against a scripted Prometheus (a stand-in: tests/autoscaling/
scripted_prometheus.py) serving a trace: drain-time scale-out, a stuck partition ignored, the fallback, the
pause label; and its decisions on the trace are the simulator's."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime

import docker
import pytest
import yaml

from platform_infra.components.autoscaling import ScalingPolicy
from platform_infra.infra.cli import main
from platform_infra.infra.daytwo.autoscale import SwarmService
from tests.autoscaling.scripted_prometheus import ScriptedPrometheus
from tests.swarm.conftest import unique
from tests.swarm.controller import Controller, EngineProxy, build_autoscaler, running_tasks, wait_running

pytestmark = pytest.mark.live

POLICY = ScalingPolicy(min_replicas=1, max_replicas=6, target_lag_per_replica=100, scale_up_step=6,
                       scale_down_step=6, scale_down_stabilization_seconds=0, interval_seconds=1,
                       stale_after_seconds=30, target_drain_seconds=60, rate_window_seconds=30,
                       stuck_after_seconds=60, failure_threshold=3, fallback={"replicas_if_higher": 5},
                       consumer_group="job-workers", topic="jobs")
COLUMNS = ["time", "lag", "partitions", "partitions_with_lag", "stuck_partitions", "stuck_lag",
           "consumed_per_second", "produced_per_second"]
# One row per decision. Rates: each worker consumes 20 messages/s; 20/s arrive.
TRACE = [
    ("0", "6", "0", "0", "0", "20", "20"),         # idle: min_replicas
    ("3000", "6", "6", "0", "0", "20", "20"),      # drain: (3000 / 60 s + 20/s) / 20/s per replica = 3.5 -> 4
    ("3000", "6", "6", "0", "0", "80", "20"),      # 4 replicas at 20/s each: stays
    ("5000", "6", "1", "1", "5000", "80", "20"),   # all of it on one stuck partition: left out, back to 1
    ("", "6", "", "0", "0", "", ""),               # lag missing: hold
    ("", "6", "", "0", "0", "", ""),               # hold
    ("", "6", "", "0", "0", "", ""),               # third in a row: fallback replicas_if_higher 5
    ("0", "6", "0", "0", "0", "20", "20"),         # a good read ends it
    ("0", "6", "0", "0", "0", "20", "20"),
]
ROWS = [dict(zip(COLUMNS, (str(i), *row), strict=True)) for i, row in enumerate(TRACE)]


@pytest.fixture(scope="module")
def autoscaler_image(swarm: docker.DockerClient) -> Iterator[str]:
    try:
        tag = build_autoscaler(swarm, unique("i18"))
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    yield tag
    swarm.images.remove(tag)


@pytest.fixture
def worker(swarm, standin_image, cleanup):
    def create(labels: dict[str, str] | None = None) -> str:
        return cleanup(swarm.services.create(
            standin_image, ["/bin/busybox", "sleep", "3600"], name=unique("worker"),
            mode=docker.types.ServiceMode("replicated", replicas=1), stop_grace_period=1_000_000_000,
            labels={"platform.test": "issue18", **(labels or {})})).name
    return create


def test_the_image_scales_on_drain_time_ignores_a_stuck_partition_falls_back_and_matches_the_simulator(
        swarm, autoscaler_image, worker, tmp_path, capsys) -> None:
    name = worker()
    with ScriptedPrometheus(POLICY, ROWS) as prometheus, \
            Controller(swarm, autoscaler_image, name, prometheus.url, POLICY) as controller:
        lines = controller.wait_for(len(ROWS))
    assert controller.exit_code == 0, controller.errors
    print("controller:", *[f"{line['current']} -> {line['desired']} {line['mode']}: {line['reason']}"
                           for line in lines], sep="\n  ")
    assert [(line["desired"], line["mode"]) for line in lines] == [
        (1, "lag"), (4, "drain"), (4, "drain"), (1, "lag"), (1, "hold"), (1, "hold"), (5, "fallback"), (1, "lag"),
        (1, "lag")]
    assert "(lag 3000 / 60s + arrival 20/s) / 20/s per replica = 4" in lines[1]["reason"]
    assert lines[3]["steps"][0] == {"step": "stuck", "replicas": None,
                                    "note": "1 stuck partition(s) left out: lag 5000 -> 0"}
    assert lines[3]["inputs"]["lag_by_partition"] == {str(p): 5000.0 if p == 0 else 0.0 for p in range(6)}
    assert "lag metric missing: fallback (3 failed reads in a row): replicas_if_higher 5" in lines[6]["reason"]
    assert [line["applied"] for line in lines] == [False, True, False, True, False, False, True, True, False]
    assert max(m.get("autoscaler_fallback_active", 0) for m in controller.metrics) == 1
    assert max(m.get("autoscaler_stuck_partitions", 0) for m in controller.metrics) == 1
    assert wait_running(swarm, name, 1) >= 0

    # The simulator, on the same rows at the controller's own decision times, decides the same.
    start = datetime.fromisoformat(lines[0]["time"]).timestamp()
    trace = tmp_path / "trace.csv"
    with trace.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows({**row, "time": f"{datetime.fromisoformat(line['time']).timestamp() - start:.3f}"}
                         for row, line in zip(ROWS, lines, strict=True))
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(POLICY.model_dump()))
    printed = capsys.readouterr().out
    assert main(["autoscale", "simulate", "--policy", str(policy_file), "--trace", str(trace)]) == 0
    simulated = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    keys = ("current", "desired", "applied", "reason", "mode", "limited_by", "steps")
    assert [{k: line[k] for k in keys} for line in simulated] == [{k: line[k] for k in keys} for line in lines]
    print(printed)


def test_the_pause_label_holds_the_image_until_it_is_removed(swarm, autoscaler_image, worker) -> None:
    name = worker({"platform.autoscaling.paused": "true"})
    rows = [{"time": str(i), "lag": "900", "partitions": "6"} for i in range(2)]
    with ScriptedPrometheus(POLICY.model_copy(update={"target_drain_seconds": None}), rows) as prometheus, \
            Controller(swarm, autoscaler_image, name, prometheus.url,
                       POLICY.model_copy(update={"target_drain_seconds": None})) as controller:
        paused = controller.wait_for(3)
        assert running_tasks(swarm, name) == 1
        spec = swarm.api.inspect_service(name)
        labels = {k: v for k, v in spec["Spec"]["Labels"].items() if k != "platform.autoscaling.paused"}
        swarm.api.update_service(spec["ID"], spec["Version"]["Index"], labels=labels, fetch_current_spec=True)
        seen = len(controller.lines)
        resumed = controller.wait_for(seen + 2)[seen:]
    assert controller.exit_code == 0, controller.errors
    assert [(line["desired"], line["mode"], line["applied"]) for line in paused] == [(1, "paused", False)] * 3
    assert "paused (platform.autoscaling.paused=true on the service): holding" in paused[0]["reason"]
    assert resumed[0]["mode"] == "lag" and resumed[-1]["desired"] == 6, resumed
    assert max(m.get("autoscaler_paused", 0) for m in controller.metrics) == 1
    wait_running(swarm, name, 6)


def test_the_proxy_passes_the_controllers_calls_on_its_service_only(swarm, worker) -> None:
    """The stack's haproxy.cfg for one service, run as the stack runs it: the Docker SDK (as the controller
    uses it) inspects and updates that service; every other call, another service's included, gets 403."""
    name, other = worker(), worker()
    proxy = EngineProxy(swarm, name, f"{unique('i20')}-proxy")
    try:
        client = docker.DockerClient(base_url=proxy.url)
        service = SwarmService(client, name)
        _replicas, version, _ = service.read()
        service.scale(2, version)
        assert swarm.api.inspect_service(name)["Spec"]["Mode"]["Replicated"]["Replicas"] == 2
        other_spec = swarm.api.inspect_service(other)
        refused = {}
        for call, attempt in {
            "GET /services/<other>": lambda: client.api.inspect_service(other),
            "POST /services/<other>/update": lambda: client.api.update_service(
                other, other_spec["Version"]["Index"], mode=docker.types.ServiceMode("replicated", replicas=3)),
            "POST /containers/create": lambda: client.api.create_container("busybox", ["true"]),
            "GET /secrets": lambda: client.api.secrets(),
            "GET /containers/json": lambda: client.api.containers(),
            "GET /info": lambda: client.api.info(),
            "DELETE /services/<service>": lambda: client.api.remove_service(name),
        }.items():
            try:
                attempt()
                refused[call] = 200
            except docker.errors.APIError as error:
                refused[call] = error.status_code
        print("\nautoscaler-socket-proxy refused:", refused)
        assert refused == dict.fromkeys(refused, 403)
        assert swarm.api.inspect_service(other)["Version"] == other_spec["Version"]
        assert swarm.api.inspect_service(name)["Spec"]["Name"] == name
        log = proxy.container.logs().decode()
        assert " 403 " in log and "/containers/create" in log, log[-2000:]
    finally:
        proxy.stop()
