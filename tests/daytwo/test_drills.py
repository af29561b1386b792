"""The drills' offline parts: bad input is one line and exit 2 before anything runs (prod without
--yes-in-prod, caps, an endpoint that is not loopback or the stack's, nothing answering), the load's figures and
rate-limit verdict, and the load generator against a real HTTP server on loopback. The drills themselves run on
the live stack (tests/live/test_live_docker.py)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from platform_infra.components.edge.model import EdgeConfig
from platform_infra.infra.cli import main
from platform_infra.infra.daytwo import drill_load, drills


def one_line_exit_2(capsys, argv: list[str], *needles: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert err[-1].startswith("infra: error: ") and all(n in err[-1] for n in needles), err


@pytest.mark.parametrize("argv", [["drill", kind, "--stack", "prod"] for kind in ("alerts", "load", "failover")])
def test_a_prod_stack_is_refused_without_yes_in_prod(capsys, argv):
    one_line_exit_2(capsys, argv, "--yes-in-prod", "prod")


@pytest.mark.parametrize(("flags", "needle"), [
    (["--requests", "20001"], "--requests: 20001: allowed 1 to 20000"),
    (["--duration", "301"], "--duration: 301: allowed 1 to 300"),
    (["--concurrency", "65"], "--concurrency: 65: allowed 1 to 64"),
    (["--path", "health"], "--path 'health': must start with /"),
    (["--endpoint", "https://example.org"], "allowed: a loopback address or the stack's public hosts"),
    (["--endpoint", "https://10.0.0.1"], "allowed: a loopback address"),
    (["--endpoint", "https://127.0.0.1:1"], "--endpoint: nothing answers at https://127.0.0.1:1"),
])
def test_load_bad_input_is_one_line(capsys, flags, needle):
    one_line_exit_2(capsys, ["drill", "load", "--stack", "dev", *flags], needle)


@pytest.mark.parametrize(("flags", "needle"), [
    (["--timeout", "1801"], "--timeout: 1801: allowed 1 to 1800"),
    (["--alertmanager-url", "http://127.0.0.1:1"], "--alertmanager-url: nothing answers at http://127.0.0.1:1"),
])
def test_alerts_bad_input_is_one_line(capsys, flags, needle):
    one_line_exit_2(capsys, ["drill", "alerts", "--stack", "dev", *flags], needle)


def test_the_stacks_public_hosts_and_loopback_are_the_only_endpoints(tmp_path):
    from platform_infra.infra.cli import REPO_ROOT
    from platform_infra.infra.daytwo.verify import stack_settings

    settings = stack_settings(REPO_ROOT, "prod")
    for url in ("https://127.0.0.1:8443", "https://[::1]", "http://localhost:8080",
                f"https://{settings.public_hosts[1]}"):
        assert drill_load.checked_endpoint(url, settings) == url


def test_percentiles_are_nearest_rank():
    values = [i / 1000 for i in range(1, 101)]
    assert [drill_load.percentile(values, f) for f in (0.5, 0.95, 0.99)] == [0.05, 0.095, 0.099]
    assert drill_load.percentile([], 0.5) is None


def figures(passed: int, refused: int, seconds: float) -> dict:
    return {"by_status": {"200": passed, **({"429": refused} if refused else {})}, "answered": passed + refused,
            "seconds": seconds}


def test_rate_limit_verdict_at_the_configured_rate():
    edge = EdgeConfig(server_names=["orchestration.example.com"], api_rate_per_second=10, api_burst=20)
    assert drill_load.rate_limit_verdict(edge, "/actuator/health", figures(120, 900, 10))[0]
    # More passed than rate × seconds + burst: the limit did not hold.
    assert not drill_load.rate_limit_verdict(edge, "/actuator/health", figures(400, 600, 10))[0]
    # A load faster than the limit that saw no 429 is a failure; a slow one that needed none is not.
    assert not drill_load.rate_limit_verdict(edge, "/actuator/health", figures(500, 0, 10))[0]
    assert drill_load.rate_limit_verdict(edge, "/actuator/health", figures(60, 0, 10))[0]
    # The login path is judged at its own per-minute zone.
    ok, value, text = drill_load.rate_limit_verdict(edge, "/api/v1/auth/login", figures(5, 50, 6))
    assert ok and "login zone" in text and value["allowed"] == pytest.approx(6, abs=0.1)


class Counting(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(429 if self.server.answered >= 5 else 200)
        self.server.answered += 1
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    httpd.answered = 0
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()


def test_the_load_stops_at_its_request_cap_and_counts_every_answer(server):
    pool = drill_load.edge_pool(f"http://127.0.0.1:{server.server_port}", None, 4)
    load = drill_load.run_load(pool, "/", "orchestration.example.com", 40, 30, 4)
    figures = drill_load.summary(load)
    assert figures["answered"] == 40 == server.answered and figures["by_status"] == {"200": 5, "429": 35}
    assert figures["p95_ms"] is not None and figures["throughput_per_second"] > 0


def test_the_load_stops_at_its_duration_and_when_told(server):
    pool = drill_load.edge_pool(f"http://127.0.0.1:{server.server_port}", None, 2)
    load = drill_load.run_load(pool, "/", None, 10**6, 1.0, 2)
    assert 0 < len(load.latencies) < 10**6 and load.seconds < 3
    stop = threading.Event()
    stop.set()
    assert drill_load.run_load(pool, "/", None, 100, 30, 2, stop).latencies == []


def test_a_signal_becomes_an_interruption_and_the_handlers_come_back():
    import os
    import signal

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(drills.DrillInterrupted, match="SIGTERM"), drills.restoring_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        threading.Event().wait(5)
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.mark.parametrize(("flags", "env", "needle"), [
    (["--rate", "0"], {}, "--rate: 0: allowed above 0 to 50"),
    (["--timeout", "0"], {}, "--timeout: 0: allowed 1 to 1800"),
    ([], {}, "PLATFORM_APP_ADMIN_PASSWORD: not set"),
    (["--rate", "11"], {"PLATFORM_APP_ADMIN_PASSWORD": "x" * 20}, "allowed up to the edge's api_rate_per_second (10)"),
    (["--endpoint", "https://example.org"], {"PLATFORM_APP_ADMIN_PASSWORD": "x" * 20}, "allowed: a loopback address"),
    (["--endpoint", "https://127.0.0.1:1"], {"PLATFORM_APP_ADMIN_PASSWORD": "x" * 20}, "nothing answers"),
])
def test_failover_bad_input_is_one_line(capsys, monkeypatch, flags, env, needle):
    monkeypatch.delenv("PLATFORM_APP_ADMIN_PASSWORD", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    one_line_exit_2(capsys, ["drill", "failover", "--stack", "dev", *flags], needle)


class FakeSwarm:
    """The Engine API's Swarm answers the drills read and the changes they make, as docker-py's objects give
    them: a service's spec and tasks; scale, force_update and a container killed change them as the
    orchestrator would (a killed task failed and a new one in its slot, every task new after a forced update)."""

    def __init__(self, mode: dict, running: int = 0):
        import docker

        self.errors = docker.errors
        self.mode, self.tasks, self.calls, self.serial = mode, [], [], 0
        for _ in range(running):
            self._new_task()
        self.client = self
        self.services = self
        self.api = self

    def _new_task(self, state: str = "running") -> None:
        self.serial += 1
        self.tasks.append({"ID": f"t{self.serial}", "DesiredState": "running",
                           "Status": {"State": state, "ContainerStatus": {"ContainerID": f"c{self.serial}"}}})

    def get(self, name):  # services.get
        if name != "p-worker":
            raise self.errors.NotFound("no such service")
        service = type("Service", (), {})()
        service.attrs = {"Spec": {"Mode": self.mode}}
        service.tasks = lambda filters=None: [t for t in self.tasks if t["DesiredState"] == "running"]
        service.scale = lambda n: self.calls.append(("scale", n))
        service.force_update = lambda: self.calls.append(("force_update",))
        return service

    def kill(self, container_id):
        self.calls.append(("kill", container_id))
        (task,) = [t for t in self.tasks if t["Status"]["ContainerStatus"]["ContainerID"] == container_id]
        task["DesiredState"], task["Status"]["State"] = "shutdown", "failed"

    def replace_all(self) -> None:
        for task in self.tasks:
            task["DesiredState"] = "shutdown"
        for _ in range(self.mode["Replicated"]["Replicas"]):
            self._new_task()


def test_a_swarm_target_is_restored_to_the_replicas_it_runs_now():
    swarm = FakeSwarm({"Replicated": {"Replicas": 5}}, running=5)  # the autoscaler's 5, the plan's 3
    target = drills.find_target(swarm, (), (("p-worker", 3),), "p", "worker")
    assert (target.swarm, target.replicas) == (True, 5)
    drills.stop(swarm, target)
    drills.restore(swarm, target)
    assert swarm.calls == [("scale", 0), ("scale", 5)]


@pytest.mark.parametrize(("mode", "services", "needle"), [
    ({"Global": {}}, (("p-worker", None),), "global Swarm service"),
    ({"Replicated": {"Replicas": 0}}, (("p-worker", 3),), "scaled to 0 already"),
    ({"Replicated": {"Replicas": 3}}, (("p-queue", 3),), "no Swarm service p-queue on the engine"),
])
def test_a_swarm_service_that_cannot_be_drilled_is_refused(mode, services, needle):
    from platform_infra.infra.mockrun import ProgramInputError

    service = services[0][0].removeprefix("p-")
    with pytest.raises(ProgramInputError, match=needle):
        drills.find_target(FakeSwarm(mode), (), services, "p", "worker" if service == "worker" else "queue")


def test_a_swarm_failover_kills_a_running_task_and_restarts_by_a_forced_update():
    from platform_infra.infra.daytwo import drill_failover

    swarm = FakeSwarm({"Replicated": {"Replicas": 2}})
    swarm._new_task("starting")  # no container to kill yet
    swarm._new_task()
    swarm._new_task()
    target = drills.Target("worker", "p-worker", swarm=True, replicas=2)
    replaced = drill_failover.inject(swarm, target, "crash")
    assert swarm.calls == [("kill", "c2")] and not replaced()
    swarm.tasks[0]["Status"]["State"] = "running"  # the orchestrator's new task in the killed one's slot
    assert replaced()

    swarm.calls.clear()
    replaced = drill_failover.inject(swarm, target, "restart")
    assert swarm.calls == [("force_update",)] and not replaced()
    swarm.replace_all()
    assert replaced()
