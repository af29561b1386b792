"""`infra verify`: each check against a scripted Prometheus, Alertmanager, edge, Grafana and Docker Engine API
(real HTTP servers on loopback answering as those APIs document), the thresholds from the stack's settings,
unknown where a metric is missing, the JSON contract, exit codes and the evidence record it writes."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from platform_infra.infra import catalog
from platform_infra.infra.cli import main
from platform_infra.infra.daytwo import evidence, verify
from platform_infra.infra.mockrun import load_project, run_program

REPO = catalog.REPO_ROOT


class Scripted:
    """An HTTP server on loopback: `routes` maps a path regex to handler(query, body) -> (status, payload)."""

    def __init__(self, routes: dict[str, Callable[[dict, bytes], tuple[int, object]]]):
        self.routes, self.seen = routes, []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                parts = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                scripted.seen.append((self.command, parts.path, self.headers))  # case-insensitive .get
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                for pattern, handler in scripted.routes.items():
                    if re.fullmatch(pattern, parts.path):
                        status, payload = handler(query, body)
                        break
                else:
                    status, payload = 404, {"message": "not found"}
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_HEAD = answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def vector(*samples: tuple[dict, float]) -> list[dict]:
    return [{"metric": labels, "value": [1.8e9, repr(value)]} for labels, value in samples]


class FakePrometheus(Scripted):
    """Prometheus' HTTP API: an instant query answers the first scripted result whose key the expression
    contains (else an empty vector, as for a metric nobody exports); targets and rules as scripted."""

    def __init__(self):
        self.results: dict[str, list[dict]] = {}
        self.targets: list[dict] = []
        self.rules: list[dict] = []
        self.queries: list[str] = []

        def query(q, _):
            self.queries.append(q["query"])
            found = next((r for key, r in self.results.items() if key in q["query"]), [])
            return 200, {"status": "success", "data": {"resultType": "vector", "result": found}}

        super().__init__({
            "/-/ready": lambda q, b: (200, b"Prometheus Server is Ready."),
            "/api/v1/query": query,
            "/api/v1/targets": lambda q, b: (200, {"status": "success", "data": {"activeTargets": self.targets}}),
            "/api/v1/rules": lambda q, b: (200, {"status": "success", "data": {"groups": self.rules}}),
        })


def am_metrics(sent: float, failed: float) -> bytes:
    return ("# TYPE alertmanager_notifications_total counter\n"
            f'alertmanager_notifications_total{{integration="email"}} {sent}\n'
            "# TYPE alertmanager_notifications_failed_total counter\n"
            f'alertmanager_notifications_failed_total{{integration="email",reason="other"}} {failed}\n').encode()


@pytest.fixture
def prometheus():
    server = FakePrometheus()
    yield server
    server.close()


class FakeEngine:
    """The Engine's two questions, scripted: a container's or a service's problem (None: healthy)."""

    def __init__(self, problems: dict[str, str] | None = None):
        self.problems = problems or {}

    def container_problem(self, name):
        return self.problems.get(name)

    def service_problem(self, name, replicas, autoscaled_min=None):
        return self.problems.get(name)


def context(expected, prometheus=None, **kw) -> verify.Context:
    ctx = verify.Context(expected, kw.pop("window", 3600), records=kw.pop("records", list), project=REPO,
                         env=kw.pop("env", {}))
    ctx.prometheus = verify.Prometheus(prometheus.url, "--prometheus-url") if prometheus else None
    for key, value in kw.items():
        setattr(ctx, key, value)
    return ctx


def stack_files(tmp_path, *names: str):
    """A project directory with this repository's program and the named stack files."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "stacks").symlink_to(REPO / "stacks")
    for name in names:
        (project / name).write_text((REPO / name).read_text())
    return project


# --- what the stack deploys ---------------------------------------------------------------------------------


def test_expected_objects_come_from_the_plan_renamed(expected, prod_run):
    assert "test-prefix-api-gateway-1" in expected.containers and "test-prefix-worker-3" in expected.containers
    assert not any(name.startswith("orchestration-prod") for name in expected.containers)
    # The file carriers are never started: not among the containers that must run.
    assert not any(name.endswith("-files") for name in expected.containers)
    assert expected.grafana_user == "platform-admin"
    assert expected.public_hosts == ("orchestration.example.com", "api.orchestration.example.com")


def test_thresholds_are_the_stacks_alert_settings(tmp_path, prometheus):
    """A stack that lowers the job-failure threshold and the latency criterion moves verify's thresholds."""
    import yaml

    project = stack_files(tmp_path, "Pulumi.yaml")

    stack = yaml.safe_load((REPO / "Pulumi.prod.yaml").read_text())
    stack["config"]["platform:settings"]["monitoring"]["alerts"] = {"job_failure_ratio": 0.01}
    stack["config"]["platform:settings"]["monitoring"]["success"] = {"latency_p95_seconds": 0.2}
    (project / "Pulumi.prod.yaml").write_text(yaml.safe_dump(stack))
    settings = verify.stack_settings(project, "prod")
    expected = verify.Expected("prod", settings, (), (), "https://x", ("x",), "http://g")
    prometheus.results = {'status="succeeded"': vector(({}, 0.98)), "histogram_quantile": vector(({}, 0.3))}
    ctx = context(expected, prometheus)
    rate = verify.job_success_rate(ctx)
    assert (rate.status, rate.threshold) == ("fail", 0.99)
    latency = verify.p95_latency(ctx)
    assert (latency.status, latency.threshold) == ("fail", 0.2)


# --- first hour ------------------------------------------------------------------------------------------------


def test_services_healthy_names_the_stopped_one(expected):
    ok = verify.services_healthy(context(expected, engine=FakeEngine()))
    assert ok.status == "pass" and ok.value == f"{len(expected.containers)}/{len(expected.containers)}"
    down = verify.services_healthy(context(expected, engine=FakeEngine({"test-prefix-worker-2": "exited"})))
    assert down.status == "fail" and down.evidence == "exited"


def test_metrics_collected_every_target_up_or_the_down_ones_named(expected, prometheus):
    prometheus.targets = [{"labels": {"job": "worker", "instance": f"worker-{i}:8080"}, "health": "up"}
                          for i in (1, 2)]
    assert verify.metrics_collected(context(expected, prometheus)).status == "pass"
    prometheus.targets[1] = {**prometheus.targets[1], "health": "down", "lastError": "connection refused"}
    result = verify.metrics_collected(context(expected, prometheus))
    assert result.status == "fail" and result.evidence == "worker/worker-2:8080: connection refused"
    prometheus.targets = []
    assert verify.metrics_collected(context(expected, prometheus)).status == "unknown"


def logs_flow(produced=500.0, consumed=480.0, lag=20.0, inserted=480.0) -> dict:
    return {"kafka_topic_partition_current_offset": vector(({}, produced)),
            "kafka_consumergroup_current_offset": vector(({}, consumed)),
            "kafka_consumergroup_lag": vector(({"consumergroup": "log-aggregator"}, lag)),
            "InsertedRows": vector(({}, inserted))}


def test_logs_aggregated_from_kafka_and_clickhouse_metrics(expected, prometheus):
    limit = expected.monitoring.alerts.kafka_consumer_lag_messages
    prometheus.results = logs_flow()
    ok = verify.logs_aggregated(context(expected, prometheus))
    assert (ok.status, ok.threshold) == ("pass", limit)
    assert ok.value == {"produced": 500, "consumed": 480, "lag": 20, "inserted_rows": 480}
    assert all('topic="logs"' in q for q in prometheus.queries if "kafka" in q)
    # Published but nobody consuming; consumed but nothing stored; too far behind: each fails, named.
    for flow, said in ((logs_flow(consumed=0), "none consumed"), (logs_flow(inserted=0), "no row inserted"),
                       (logs_flow(lag=limit + 1), "messages behind")):
        prometheus.results = flow
        result = verify.logs_aggregated(context(expected, prometheus))
        assert result.status == "fail" and said in result.evidence, flow
    # Nothing published in the window shows nothing.
    prometheus.results = logs_flow(produced=0, consumed=0, inserted=0)
    assert verify.logs_aggregated(context(expected, prometheus)).status == "unknown"


def test_logs_aggregated_is_unknown_without_the_consumer_group_or_clickhouse(expected, prometheus):
    """The live stack's stand-ins: the Kafka one keeps no consumer groups, the ClickHouse one counts no inserts."""
    prometheus.results = {"kafka_topic_partition_current_offset": vector(({}, 0.0))}
    result = verify.logs_aggregated(context(expected, prometheus))
    assert result.status == "unknown"
    assert "kafka_consumergroup_current_offset" in result.evidence and "ClickHouse" in result.evidence


def edge_server(health=(200, {"status": "UP"}), login_status=200, jobs_unauthorised=401, job_status="succeeded"):
    jobs: dict[str, str] = {}

    def login(q, body):
        right = json.loads(body) == {"username": "admin", "password": "s3cret"}
        return (login_status, {"token": "tok"}) if right and login_status == 200 else (401, {})

    def submit(q, body):
        jobs["j1"] = job_status
        return 201, {"id": "j1"}

    return Scripted({
        "/actuator/health": lambda q, b: health,
        "/api/v1/auth/login": login,
        "/api/v1/jobs": lambda q, b: submit(q, b) if b else (jobs_unauthorised, {}),
        "/api/v1/jobs/j1": lambda q, b: (200, {"id": "j1", "status": jobs.get("j1")}),
    })


def edge_of(server: Scripted, expected) -> Callable[[str], verify.Http]:
    return lambda host: verify.Http(server.url, "--endpoint", host_header=host)


def test_health_endpoints_through_the_edge_for_every_public_host(expected):
    good = edge_server()
    try:
        result = verify.health_endpoints(context(expected, edge=edge_of(good, expected)))
        assert result.status == "pass" and result.value == "2/2"
        assert {h.get("Host") for _, path, h in good.seen} == set(expected.public_hosts)
    finally:
        good.close()
    down = edge_server(health=(503, {"status": "DOWN"}))
    try:
        result = verify.health_endpoints(context(expected, edge=edge_of(down, expected)))
        assert result.status == "fail" and "503" in result.evidence
    finally:
        down.close()


def test_authentication_and_sample_job(expected):
    server = edge_server()
    try:
        ctx = context(expected, edge=edge_of(server, expected), env={verify.ADMIN_PASSWORD_ENV: "s3cret"})
        auth = verify.authentication(ctx)
        assert auth.status == "pass" and auth.value == {"login": True, "without_token": 401}
        job = verify.sample_job(ctx)
        assert job.status == "pass" and job.value["status"] == "succeeded"
        assert any(h.get("Authorization") == "Bearer tok" for method, _, h in server.seen if method == "POST")
        # Without the credential: unknown, naming the variable; a wrong one fails.
        none = verify.authentication(context(expected, edge=edge_of(server, expected)))
        assert none.status == "unknown" and verify.ADMIN_PASSWORD_ENV in none.evidence
        wrong = verify.authentication(context(expected, edge=edge_of(server, expected),
                                              env={verify.ADMIN_PASSWORD_ENV: "nope"}))
        assert wrong.status == "fail"
    finally:
        server.close()
    open_api = edge_server(jobs_unauthorised=200, job_status="failed")
    try:
        ctx = context(expected, edge=edge_of(open_api, expected), env={verify.ADMIN_PASSWORD_ENV: "s3cret"})
        assert verify.authentication(ctx).status == "fail"  # a request without a token must be refused
        assert verify.sample_job(ctx).status == "fail"
    finally:
        open_api.close()


def test_dashboards_with_the_admin_credential(expected):
    import base64

    good = "Basic " + base64.b64encode(b"platform-admin:pw").decode()
    uids = [{"uid": u} for u in sorted(verify._dashboard_uids())]
    grafana = Scripted({"/api/search": lambda q, b: (200, uids) if grafana.seen[-1][2].get("Authorization") == good
                        else (401, {"message": "Unauthorized"})})
    try:
        ctx = context(expected, grafana=verify.Http(grafana.url, "--grafana-url"), env={verify.GRAFANA_PASSWORD_ENV: "pw"})
        assert verify.dashboards_accessible(ctx).status == "pass"
        ctx.env = {verify.GRAFANA_PASSWORD_ENV: "wrong"}
        assert verify.dashboards_accessible(ctx).status == "fail"
        ctx.env = {}
        assert verify.dashboards_accessible(ctx).status == "unknown"
    finally:
        grafana.close()


def record(kind: str, ok: bool, age: timedelta, checks=()) -> evidence.Record:
    return evidence.Record(kind=kind, stack="prod", created_at=datetime.now(UTC) - age, ok=ok, checks=list(checks))


def test_alerts_delivered_only_from_a_fresh_alerts_drill(expected):
    assert verify.alerts_firing(context(expected)).status == "unknown"
    fresh = record("drill.alerts", True, timedelta(days=2))
    assert verify.alerts_firing(context(expected, records=lambda: [fresh])).status == "pass"
    old = record("drill.alerts", True, timedelta(days=40))
    assert verify.alerts_firing(context(expected, records=lambda: [old])).status == "unknown"
    failed = record("drill.alerts", False, timedelta(days=1))
    assert verify.alerts_firing(context(expected, records=lambda: [failed])).status == "fail"


# --- success criteria and first day ---------------------------------------------------------------------------


def test_zero_5xx(expected, prometheus):
    ctx = context(expected, prometheus)
    assert verify.no_5xx(ctx).status == "unknown"  # no service reports its requests
    prometheus.results = {"count(http_server_requests_seconds_count)": vector(({}, 40))}
    assert verify.no_5xx(ctx).status == "pass"
    prometheus.results = {'status=~"5.."': vector(({}, 3.0)), "count(": vector(({}, 40))}
    result = verify.no_5xx(ctx)
    assert (result.status, result.value, result.threshold) == ("fail", 3, 0)
    assert any("[3600s]" in q for q in prometheus.queries), "the window is the query's range"


def test_p95_latency_and_response_times(expected, prometheus):
    ctx = context(expected, prometheus)
    assert verify.p95_latency(ctx).status == "unknown"
    prometheus.results = {"sum by (le)": vector(({}, 0.42)),
                          "sum by (service, le)": vector(({"service": "api-gateway"}, 2.5), ({"service": "x"}, 0.1))}
    assert verify.p95_latency(ctx).status == "pass"
    day = verify.response_times(ctx)
    assert day.status == "fail" and day.threshold == 2.0 and day.value["api-gateway"] == 2.5


def test_job_success_rate(expected, prometheus):
    ctx = context(expected, prometheus)
    assert verify.job_success_rate(ctx).status == "unknown"
    prometheus.results = {'status="succeeded"': vector(({}, 0.97))}
    assert verify.job_success_rate(ctx).status == "pass"
    prometheus.results = {'status="succeeded"': vector(({}, 0.95))}
    assert verify.job_success_rate(ctx).status == "fail"  # above 95%, not at it


def test_memory_leak_from_the_heap_lows_trend(expected, prometheus):
    ctx = context(expected, prometheus)
    assert verify.no_memory_leaks(ctx).status == "unknown"
    prometheus.results = {"predict_linear": vector(({"job": "worker", "instance": "w1"}, 0.3),
                                                   ({"job": "api-gateway", "instance": "a1"}, 0.95))}
    result = verify.no_memory_leaks(ctx)
    assert result.status == "fail" and result.threshold == 0.8 and "api-gateway/a1" in result.evidence


def test_alerts_functioning_rules_loaded_and_notifications(expected, prometheus):
    from platform_infra.components.monitoring.alerts import alert_specs

    names = sorted({s.name for s in alert_specs(expected.monitoring)})
    prometheus.rules = [{"name": "g", "rules": [{"name": n, "health": "ok"} for n in names]}]
    alertmanager = Scripted({"/metrics": lambda q, b: (200, am_metrics(4, 0))})
    try:
        ctx = context(expected, prometheus, alertmanager=verify.Alertmanager(alertmanager.url, "--alertmanager-url"))
        assert verify.alerts_functioning(ctx).status == "pass"
        alertmanager.routes["/metrics"] = lambda q, b: (200, am_metrics(4, 1))
        assert "1 of 4 notifications failed" in verify.alerts_functioning(ctx).evidence
        alertmanager.routes["/metrics"] = lambda q, b: (200, am_metrics(4, 0))
        prometheus.rules = [{"name": "g", "rules": [{"name": n, "health": "ok"} for n in names[1:]]}]
        result = verify.alerts_functioning(ctx)
        assert result.status == "fail" and names[0] in result.evidence
    finally:
        alertmanager.close()


def test_backups_each_class_fresh_by_the_stacks_max_ages(expected, prometheus):
    ctx = context(expected, prometheus)
    prometheus.results = {"backup_last_success_timestamp_seconds": vector(({"type": "incr"}, 600.0),
                                                                          ({"type": "full"}, 3600.0)),
                          "clickhouse_backup_last_create_remote_finish": vector(({}, 86400.0))}
    assert verify.backup_job(ctx).status == "pass"
    assert verify.backups_running(ctx).status == "unknown"  # no pg_stat_archiver series
    prometheus.results["pg_stat_archiver_failed_count"] = vector(({}, 0.0))
    assert verify.backups_running(ctx).status == "pass"
    # The incremental class's max age is prod's 2h: 3 hours old is stale.
    prometheus.results["backup_last_success_timestamp_seconds"] = vector(({"type": "incr"}, 3 * 3600.0),
                                                                         ({"type": "full"}, 3600.0))
    result = verify.backup_job(ctx)
    assert result.status == "fail" and result.threshold["incr"] == 7200 and "incr" in result.evidence
    assert verify.backups_running(ctx).status == "fail"
    # A class never recorded is unknown, named; ClickHouse's says what it needs.
    prometheus.results["backup_last_success_timestamp_seconds"] = vector(({"type": "incr"}, 60.0))
    del prometheus.results["clickhouse_backup_last_create_remote_finish"]
    result = verify.backup_job(ctx)
    assert result.status == "unknown" and "full" in result.evidence and "ClickHouse" in result.evidence


def test_error_rates_and_resource_utilization_against_the_alert_thresholds(expected, prometheus):
    ctx = context(expected, prometheus)
    assert verify.error_rates(ctx).status == "unknown"
    prometheus.results = {"sum by (service)": vector(({"service": "api-gateway"}, 0.12), ({"service": "w"}, 0.0))}
    result = verify.error_rates(ctx)
    assert result.status == "fail" and result.threshold == 0.1
    prometheus.results = {"node_cpu_seconds_total": vector(({}, 0.5)), "node_memory": vector(({}, 0.85))}
    result = verify.resource_utilization(ctx)
    assert result.status == "fail" and "memory" in result.evidence and "cpu" not in result.evidence
    prometheus.results["node_memory"] = vector(({}, 0.5))
    result = verify.resource_utilization(ctx)
    assert result.status == "unknown" and "disk_free" in result.evidence
    prometheus.results["node_filesystem"] = vector(({}, 0.5))
    assert verify.resource_utilization(ctx).status == "pass"


def _table(name: str) -> dict:
    return {"datname": "orchestration", "schemaname": "public", "relname": name}


def test_database_indexes_from_the_tables_scans_and_the_stacks_thresholds(expected, prometheus):
    ctx = context(expected, prometheus)
    result = verify.database_indexes(ctx)
    assert result.status == "unknown" and "pg_stat_user_tables_n_live_tup" in result.evidence
    # Small tables only: read sequentially, as PostgreSQL should.
    prometheus.results = {"n_live_tup": vector((_table("users"), 3), (_table("jobs"), 900))}
    result = verify.database_indexes(ctx)
    assert result.status == "pass" and "none of the 2 tables holds 10000 live rows" in result.evidence
    # A large table read mostly by sequential scans fails, named; one read through its index passes.
    prometheus.results = {
        "n_live_tup": vector((_table("jobs"), 250_000), (_table("events"), 40_000), (_table("users"), 3)),
        "pg_stat_user_tables_seq_scan": vector((_table("jobs"), 30), (_table("events"), 2), (_table("users"), 500)),
        "pg_stat_user_tables_idx_scan": vector((_table("jobs"), 10), (_table("events"), 4000)),
        "seq_tup_read": vector((_table("jobs"), 7_500_000), (_table("events"), 80_000)),
    }
    result = verify.database_indexes(ctx)
    assert result.status == "fail" and result.threshold == {"min_live_rows": 10_000, "max_seq_scan_ratio": 0.5}
    assert result.evidence.startswith("orchestration.public.jobs: 250000 live rows, 75% of its 40 scans")
    assert "250000 rows read by each" in result.evidence and "events" not in result.evidence
    assert result.value["large"]["orchestration.public.events"]["seq_scan_ratio"] == 0.0005
    assert "orchestration.public.users" not in result.value["large"]
    # The thresholds are the stack's settings (monitoring.index_use).
    looser = expected.settings.monitoring.model_copy(update={"index_use": expected.settings.monitoring.index_use
                                                             .model_copy(update={"max_seq_scan_ratio": 0.8})})
    settings = expected.settings.model_copy(update={"monitoring": looser})
    result = verify.database_indexes(context(dataclasses.replace(expected, settings=settings), prometheus))
    assert result.status == "pass" and result.threshold["max_seq_scan_ratio"] == 0.8


# --- the command ---------------------------------------------------------------------------------------------


def test_an_unreachable_endpoint_is_one_line_and_exit_2(capsys, tmp_path):
    code = main(["verify", "--stack", "dev", "--project", str(REPO), "--prometheus-url", "http://127.0.0.1:9",
                 "--phase", "first-day"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("infra: error: --prometheus-url: nothing answers at http://127.0.0.1:9 ")


def test_bad_window_and_url_are_exit_2(capsys):
    assert main(["verify", "--stack", "dev", "--window", "an hour"]) == 2
    assert "--window" in capsys.readouterr().err
    assert main(["verify", "--stack", "dev", "--prometheus-url", "ftp://x", "--phase", "first-day"]) == 2
    assert "--prometheus-url" in capsys.readouterr().err


def test_first_day_run_writes_the_json_contract_and_an_evidence_record(capsys, prometheus, tmp_path):
    """dev has no backup bucket: its records go to `.evidence/dev/` beside the stack file."""
    project = stack_files(tmp_path, "Pulumi.yaml", "Pulumi.dev.yaml")
    prometheus.results = {"node_cpu_seconds_total": vector(({}, 0.2)), "node_memory": vector(({}, 0.3)),
                          "node_filesystem": vector(({}, 0.5)), "sum by (service, le)": vector(({"service": "a"}, 0.1)),
                          "sum by (service)": vector(({"service": "a"}, 0.0))}
    code = main(["verify", "--stack", "dev", "--project", str(project), "--prometheus-url", prometheus.url,
                 "--phase", "first-day", "--window", "30m", "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"stack", "checked_at", "window_seconds", "checks", "ok"}
    assert report["window_seconds"] == 1800 and report["stack"] == "dev"
    ids = [c["id"] for c in report["checks"]]
    assert ids == list(verify.PHASES["first-day"]) and set(ids) <= set(catalog.load().by_id())
    for check in report["checks"]:
        assert set(check) == {"id", "section", "text", "status", "value", "threshold", "evidence"}
    # dev has no backups: its backup line fails; the rest pass; any fail is exit 1.
    assert {c["id"]: c["status"] for c in report["checks"]}["post.day.backup-jobs"] == "fail"
    assert code == 1 and report["ok"] is False
    (written,) = evidence.DirectoryStore(project / ".evidence" / "dev").records()
    assert written.kind == "verify" and [c.id for c in written.checks] == ids and written.ok is False


def test_junit_marks_fail_and_unknown():
    import junitparser

    rec = evidence.Record(kind="verify", stack="prod", created_at=datetime.now(UTC), ok=False, checks=[
        evidence.Check(id="a.b", section="S", status="pass"), evidence.Check(id="a.c", section="S", status="fail",
                                                                             evidence="why"),
        evidence.Check(id="a.d", section="S", status="unknown", evidence="needs X")])
    suite = junitparser.TestSuite.fromstring(verify.report_junit(rec).split("\n", 1)[1])
    assert (suite.tests, suite.failures, suite.skipped) == (3, 1, 1)


def test_checks_and_phases_cover_first_hour_and_success_criteria_whole():
    lines = catalog.load()
    for phase, section in (("first-hour", "Immediate (First Hour)"), ("success", "Success Criteria")):
        assert set(verify.PHASES[phase]) == {i.id for s, i in lines.lines() if s.name == section}
    assert set(verify.CHECKS) == {i for ids in verify.PHASES.values() for i in ids}
    assert verify.check_ids("all") == [i for ids in verify.PHASES.values() for i in ids]


def test_a_check_that_errors_is_unknown_not_pass(expected, prometheus):
    ctx = context(expected, prometheus)
    ctx.prometheus = verify.Prometheus(prometheus.url + "/nothing-here", "--prometheus-url")
    (check,) = verify.run_checks(ctx, ["success.no-5xx"])
    assert check.status == "unknown" and check.section == "Success Criteria"



def engine_api(containers: dict[str, dict], services: dict[str, int], tasks: dict[str, list[str]]) -> Scripted:
    """The Engine API's answers verify reads (API 1.44): container state, a service, its tasks, the nodes."""
    def container(q, b, name):
        return (200, {"Id": name, "State": containers[name]}) if name in containers else (404, {"message": "No such"})

    def service(q, b, name):
        return (200, {"ID": name, "Spec": {"Name": name, "Mode": {"Replicated": {"Replicas": services[name]}}}}) \
            if name in services else (404, {"message": "No such service"})

    def task_list(q, b):
        (name,) = json.loads(q["filters"])["service"]  # docker-py sends each filter as a list
        return 200, [{"Status": {"State": state}, "DesiredState": "running"} for state in tasks.get(name, [])]

    routes = {
        r"(/v[\d.]+)?/_ping": lambda q, b: (200, b"OK"),
        r"(/v[\d.]+)?/version": lambda q, b: (200, {"ApiVersion": "1.44", "Version": "27.0"}),
        r"/v[\d.]+/tasks": task_list,
        r"/v[\d.]+/nodes": lambda q, b: (200, [{"ID": "n1"}]),
    }
    server = Scripted(routes)
    server.routes[r"/v[\d.]+/containers/[^/]+/json"] = lambda q, b: container(q, b, server.seen[-1][1].split("/")[-2])
    server.routes[r"/v[\d.]+/services/[^/]+"] = lambda q, b: service(q, b, server.seen[-1][1].split("/")[-1])
    return server


def test_engine_reads_containers_and_swarm_tasks_from_the_engine_api():
    server = engine_api(
        containers={"p-api": {"Running": True, "Status": "running", "Health": {"Status": "healthy"}},
                    "p-worker": {"Running": False, "Status": "exited"},
                    "p-starting": {"Running": True, "Status": "running", "Health": {"Status": "starting"}},
                    "p-nocheck": {"Running": True, "Status": "running"}},
        services={"p-api": 2, "p-worker": 3}, tasks={"p-api": ["running", "running"], "p-worker": ["running", "failed"]})
    try:
        engine = verify.Engine(server.url.replace("http://", "tcp://"))
        assert engine.container_problem("p-api") is None and engine.container_problem("p-nocheck") is None
        assert engine.container_problem("p-worker") == "p-worker: exited"
        assert engine.container_problem("p-starting") == "p-starting: starting"
        assert engine.container_problem("p-gone") == "p-gone: no such container"
        assert engine.service_problem("p-api", 2) is None
        assert engine.service_problem("p-worker", 3) == "p-worker: 1/3 tasks running"
        assert engine.service_problem("p-gone", 1) == "p-gone: no such service"
    finally:
        server.close()
    with pytest.raises(verify.Unreachable, match="--docker-host: no Docker engine answers at tcp://127.0.0.1:9 "):
        verify.Engine("tcp://127.0.0.1:9")


def _tasks(*states: str, desired: str = "running") -> list[dict]:
    return [{"DesiredState": desired, "Status": {"State": state}} for state in states]


REPLICATED_3 = {"Mode": {"Replicated": {"Replicas": 3}}}


@pytest.mark.parametrize(("replicas", "spec", "tasks", "floor", "problem"), [
    (3, REPLICATED_3, _tasks("running", "running", "running"), None, None),
    # A task still starting (its healthcheck not passed yet) or replaced is not running.
    (3, REPLICATED_3, _tasks("running", "running", "starting"), None, "s: 2/3 tasks running"),
    (3, REPLICATED_3, _tasks("running", "running") + _tasks("running", desired="shutdown"), None,
     "s: 2/3 tasks running"),
    # Scaled below the plan's replicas: short, though every task it still wants runs.
    (3, {"Mode": {"Replicated": {"Replicas": 2}}}, _tasks("running", "running"), None,
     "s: scaled to 2 of 3 replicas, 2 running"),
    (3, {"Mode": {"Replicated": {"Replicas": 0}}}, [], None, "s: scaled to 0 of 3 replicas, 0 running"),
    # The autoscaler's service: its own replicas are wanted (the plan's are only its start), at least its floor.
    (3, {"Mode": {"Replicated": {"Replicas": 5}}}, _tasks(*["running"] * 5), 1, None),
    (3, {"Mode": {"Replicated": {"Replicas": 5}}}, _tasks(*["running"] * 4), 1, "s: 4/5 tasks running"),
    (3, {"Mode": {"Replicated": {"Replicas": 1}}}, _tasks("running"), 1, None),
    (3, {"Mode": {"Replicated": {"Replicas": 1}}}, _tasks("running"), 2, "s: scaled to 1 of 2 replicas, 1 running"),
    # Global: one task per node the orchestrator placed one on, whatever the nodes' roles.
    (None, {"Mode": {"Global": {}}}, _tasks("running", "running"), None, None),
    (None, {"Mode": {"Global": {}}}, _tasks("running", "preparing"), None, "s: 1/2 tasks running"),
    (None, {"Mode": {"Global": {}}}, [], None, "s: 0/1 tasks running"),
])
def test_a_swarm_service_is_short_of_its_desired_tasks(replicas, spec, tasks, floor, problem):
    assert verify.task_count_problem("s", replicas, spec, tasks, floor) == problem


def test_the_autoscaled_worker_service_is_known_from_the_settings(prod_run, tmp_path):
    from tests.swarm.test_swarm_plan import AUTOSCALING, DATA, swarm_project

    assert verify.expected_from(prod_run, verify.stack_settings(REPO, "prod"), None).autoscaled == ()
    project = swarm_project(tmp_path, runtime="swarm", autoscaling=AUTOSCALING, data=DATA)
    run = run_program(load_project(project, "prod"), "prod")
    expected = verify.expected_from(run, verify.stack_settings(project, "prod"), "p")
    assert expected.autoscaled == (("p-worker", AUTOSCALING["workers"]["min_replicas"]),)
    assert ("p-worker", 3) in expected.services  # the plan's start
