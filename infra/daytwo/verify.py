"""`infra verify`: the checklist's post-deployment lines checked against the running platform.

Sources: the Docker Engine API (containers, or a Swarm service's tasks at its desired count), the edge (HTTPS,
the certificate checked for the stack's public host names against the system's CAs or SSL_CERT_FILE),
Prometheus' and Alertmanager's HTTP APIs, Grafana's, and the evidence store (infra/daytwo/evidence.py). The
application admin's and Grafana's passwords come from PLATFORM_APP_ADMIN_PASSWORD and GRAFANA_ADMIN_PASSWORD
(the stack outputs `app_admin_password` and `grafana_admin_password`); without them the checks that log in are
unknown. Every threshold is the stack's setting its alert uses (MonitoringConfig.alerts), its success
criterion (MonitoringConfig.success) or the index review's (MonitoringConfig.index_use); a metric that is missing makes its check unknown, never pass.

Exit codes: 0 every check passes, 1 any fails or is unknown, 2 bad input or an unreachable endpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit
from xml.etree import ElementTree as ET

import urllib3

from platform_infra.components.monitoring.alerts import alert_specs
from platform_infra.components.monitoring.model import MonitoringConfig, duration_seconds
from platform_infra.infra import catalog
from platform_infra.infra.daytwo import evidence
from platform_infra.infra.daytwo.stackfile import stack_settings
from platform_infra.infra.mockrun import ProgramInputError, ProgramRun, load_project, run_program
from platform_infra.infra.settings import Settings
from platform_infra.infra.version import commit

PHASES = {
    "first-hour": ("post.hour.services-healthy", "post.hour.health-endpoints", "post.hour.metrics-collected",
                   "post.hour.logs-aggregated", "post.hour.authentication", "post.hour.sample-job",
                   "post.hour.dashboards-accessible", "post.hour.alerts-firing"),
    "success": ("success.health-checks", "success.no-5xx", "success.p95-latency", "success.job-success-rate",
                "success.no-memory-leaks", "success.alerts-functioning", "success.backup-job",
                "success.security-scan"),
    "first-day": ("post.day.error-rates", "post.day.resource-utilization", "post.day.backup-jobs",
                  "post.day.response-times", "configuration.database-indexes"),
}
ADMIN_PASSWORD_ENV, GRAFANA_PASSWORD_ENV, GRAFANA_USER_ENV = (
    "PLATFORM_APP_ADMIN_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "GRAFANA_ADMIN_USER")
HEALTH_PATH, LOGIN_PATH, JOBS_PATH = "/actuator/health", "/api/v1/auth/login", "/api/v1/jobs"
SAMPLE_JOB_SECONDS = 60
HTTP_TIMEOUT = 10
REQUESTS = 'http_server_requests_seconds_count{uri!~"/actuator.*"'
"""The requests the HighErrorRate alert counts (components/monitoring/alerts.py): the API's, not health probes'."""
LEAK_HORIZON_SECONDS = 86400
EVIDENCE_RULES = "EVD-"
SERVICE = "docker:index/service:Service"
CONTAINER = "docker:index/container:Container"
DASHBOARDS = Path(__file__).resolve().parents[2] / "components" / "monitoring" / "dashboards"


class Unreachable(ProgramInputError):
    """An endpoint verify needs does not answer: exit 2, one line naming it."""


# --- what the stack deploys -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """What verify looks for, from the stack's program and settings."""

    stack: str
    settings: Settings
    containers: tuple[str, ...]
    """Docker runtime: the names of the containers that run (not the never-started file carriers)."""
    services: tuple[tuple[str, int | None], ...]
    """Swarm runtime: each service's name and desired replicas (None: global, a task per node)."""
    endpoint: str
    public_hosts: tuple[str, ...]
    grafana_url: str
    grafana_user: str = "admin"
    """Grafana's admin (GF_SECURITY_ADMIN_USER of the stack's Grafana)."""
    autoscaled: tuple[tuple[str, int], ...] = ()
    """Swarm runtime: the services whose replicas the autoscaler owns, each with its least (min_replicas)."""

    @property
    def monitoring(self) -> MonitoringConfig:
        return self.settings.deployed_monitoring()


def stack_evidence(project: Path, stack: str) -> tuple[str, list[evidence.Record] | None, str]:
    """For `infra checklist`: the stack's environment, its evidence records (None when unreadable) and where."""
    try:
        settings = stack_settings(project, stack)
        environment, bucket = settings.environment, settings.backups.bucket if settings.backups else None
    except ProgramInputError:  # another project's program: judged by its resources, its settings not ours
        environment, bucket = "unknown", None
    store = evidence.store_for(stack, bucket, project)
    try:
        return environment, store.records(), store.location
    except evidence.EvidenceError as error:
        print(f"infra: warning: {error}; run-time lines shown without evidence", file=sys.stderr)
        return environment, None, f"{store.location} (unreadable)"


def expected_from(run: ProgramRun, settings: Settings, name_prefix: str | None) -> Expected:
    """The running objects' names: the plan's, with the stack's name prefix replaced by `name_prefix` when the
    engine runs a renamed copy (several copies on one engine)."""
    own = f"{settings_prefix(run)}"

    def named(name: str) -> str:
        return name.replace(own, name_prefix, 1) if name_prefix else name

    def plain(value: Any) -> Any:
        return value.get("value", value) if isinstance(value, dict) and "value" in value else value

    containers = tuple(named(plain(r.inputs["name"])) for r in run.resources
                       if r.type == CONTAINER and plain(r.inputs.get("start", True)) is not False)
    services, autoscaled = [], []
    for r in run.resources:
        if r.type == SERVICE:
            mode = plain(r.inputs.get("mode")) or {}
            replicated = mode.get("replicated")
            name = named(plain(r.inputs["name"]))
            services.append((name, None if mode.get("global") else int((replicated or {}).get("replicas", 1))))
            # The worker service's replicas are the autoscaler's once it runs (stacks/platform.py `autoscaled`).
            if settings.autoscaling and _service_label(r) == "worker":
                autoscaled.append((name, settings.autoscaling.workers.min_replicas))
    user = next((line.split("=", 1)[1] for line in _env_lines(run) if line.startswith("GF_SECURITY_ADMIN_USER=")),
                "admin")
    return Expected(run.stack, settings, containers, tuple(services), f"https://{settings.public_hosts[0]}",
                    tuple(settings.public_hosts), settings.grafana_url, user, tuple(autoscaled))


def _service_label(r) -> str | None:
    """A Swarm service's `platform.service` label (components/swarm.py), the service it runs."""
    labels = r.inputs.get("labels") or []
    return next((item.get("value") for item in labels if isinstance(item, dict)
                 and item.get("label") == "platform.service"), None)


def _env_lines(run: ProgramRun) -> list[str]:
    """Every plain environment line of the plan's containers and services."""
    lines = []
    for r in run.resources:
        if r.type == CONTAINER:
            lines += [e for e in r.inputs.get("envs", []) if isinstance(e, str)]
        elif r.type == SERVICE:
            env = ((r.inputs.get("taskSpec") or {}).get("containerSpec") or {}).get("env") or {}
            lines += [f"{k}={v}" for k, v in env.items() if isinstance(v, str)] if isinstance(env, dict) else []
    return lines


def settings_prefix(run: ProgramRun) -> str:
    """The prefix of every Docker object's name: the stack output `networks.edge` without its `-edge`."""
    networks = run.stack_outputs.get("networks") or {}
    edge = networks.get("edge") if isinstance(networks, dict) else None
    return str(edge).removesuffix("-edge") if edge else f"{run.project}-{run.stack}"


# --- sources ----------------------------------------------------------------------------------------------


def _pool(url: str, server_name: str | None = None) -> urllib3.HTTPConnectionPool:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProgramInputError(f"{url!r} is not an http(s) URL")
    if parts.scheme == "http":
        return urllib3.HTTPConnectionPool(parts.hostname, parts.port or 80, retries=False, timeout=HTTP_TIMEOUT)
    # The system's CAs, or SSL_CERT_FILE's (create_default_context loads the default verify paths).
    return urllib3.HTTPSConnectionPool(parts.hostname, parts.port or 443, ssl_context=ssl.create_default_context(),
                                       server_hostname=server_name or parts.hostname,
                                       assert_hostname=server_name or parts.hostname, retries=False,
                                       timeout=HTTP_TIMEOUT)


def _base_path(url: str) -> str:
    return urlsplit(url).path.rstrip("/")


@dataclass
class Http:
    """One base URL: requests to paths below it."""

    url: str
    flag: str
    server_name: str | None = None
    host_header: str | None = None
    pool: urllib3.HTTPConnectionPool = field(init=False)

    def __post_init__(self) -> None:
        try:
            self.pool = _pool(self.url, self.server_name)
        except ProgramInputError as error:
            raise ProgramInputError(f"{self.flag}: {error}") from None

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None):
        sent = {"Content-Type": "application/json", **(headers or {})}
        if self.host_header:
            sent["Host"] = self.host_header
        return self.pool.request(method, _base_path(self.url) + path, headers=sent,
                                 body=None if body is None else json.dumps(body))

    def reach(self, path: str) -> None:
        """Raises Unreachable unless the endpoint answers at all (any HTTP status)."""
        try:
            self.request("GET", path)
        except urllib3.exceptions.HTTPError as error:
            reason = getattr(error, "reason", None) or error
            raise Unreachable(f"{self.flag}: nothing answers at {self.url} ({reason})") from None


class Prometheus(Http):
    def api(self, path: str, **params: str) -> Any:
        answer = self.request("GET", f"/api/v1/{path}" + (f"?{urlencode(params)}" if params else ""))
        data = json.loads(answer.data)
        if answer.status != 200 or data.get("status") != "success":
            raise RuntimeError(f"Prometheus /api/v1/{path}: {answer.status} {data.get('error', '')}")
        return data["data"]

    def vector(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """An instant query's samples; NaN (no data, e.g. a quantile of no requests) is left out."""
        result = self.api("query", query=expr)["result"]
        samples = [(s["metric"], float(s["value"][1])) for s in result]
        return [(labels, value) for labels, value in samples if not math.isnan(value)]


class Alertmanager(Http):
    def metric_total(self, name: str) -> float | None:
        from prometheus_client.parser import text_string_to_metric_families

        answer = self.request("GET", "/metrics")
        if answer.status != 200:
            raise RuntimeError(f"Alertmanager /metrics: {answer.status}")
        samples = [s for family in text_string_to_metric_families(answer.data.decode())
                   for s in family.samples if s.name == name]
        return sum(s.value for s in samples) if samples else None


class Engine:
    """The Docker Engine API: the state of the stack's containers, or of its Swarm services' tasks."""

    def __init__(self, docker_host: str | None):
        import docker

        self.flag_value = docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        try:
            self.client = docker.DockerClient(base_url=self.flag_value, timeout=HTTP_TIMEOUT)
            self.client.ping()
        except Exception as error:  # noqa: BLE001 docker raises many kinds; all mean unreachable
            raise Unreachable(f"--docker-host: no Docker engine answers at {self.flag_value} ({error})") from None

    def container_problem(self, name: str) -> str | None:
        import docker

        try:
            state = self.client.api.inspect_container(name)["State"]
        except docker.errors.NotFound:
            return f"{name}: no such container"
        health = state.get("Health", {}).get("Status")
        if not state["Running"]:
            return f"{name}: {state['Status']}"
        if health not in (None, "healthy"):
            return f"{name}: {health}"
        return None

    def service_problem(self, name: str, replicas: int | None, autoscaled_min: int | None = None) -> str | None:
        import docker

        try:
            service = self.client.services.get(name)
        except docker.errors.NotFound:
            return f"{name}: no such service"
        return task_count_problem(name, replicas, service.attrs["Spec"], service.tasks({"desired-state": "running"}),
                                  autoscaled_min)


def task_count_problem(name: str, replicas: int | None, spec: dict, tasks: list[dict],
                       autoscaled_min: int | None = None) -> str | None:
    """A Swarm service short of its desired tasks, or None. `replicas` is the plan's (None: a global service);
    `tasks` those the orchestrator wants running. A task is counted once its state is `running`: with a
    healthcheck that is once healthy (moby daemon/cluster/executor/container/controller.go Start waits for it).
    The desired count: the plan's replicas, which a service scaled below is short of; an autoscaled service's
    own (the controller's, at least its min_replicas); a global service's one task per eligible node (the
    orchestrator makes those tasks, so their number is the nodes' that qualify, placement constraints applied)."""
    running = sum(t.get("DesiredState") == "running" and t["Status"]["State"] == "running" for t in tasks)
    mode = spec.get("Mode") or {}
    if replicas is None or "Global" in mode:
        wanted = max(1, sum(t.get("DesiredState") == "running" for t in tasks))
    else:
        live = (mode.get("Replicated") or {}).get("Replicas", 0)
        wanted = replicas if autoscaled_min is None else max(live, autoscaled_min)
        if live < wanted:
            return f"{name}: scaled to {live} of {wanted} replicas, {running} running"
    if running < wanted:
        return f"{name}: {running}/{wanted} tasks running"
    return None


# --- checks -----------------------------------------------------------------------------------------------


@dataclass
class Context:
    expected: Expected
    window: int
    """Seconds."""
    prometheus: Prometheus | None = None
    alertmanager: Alertmanager | None = None
    engine: Any = None
    edge: Callable[[str], Http] | None = None
    """The edge for one public host name: the TLS server name and the Host header."""
    grafana: Http | None = None
    records: Callable[[], list[evidence.Record]] = list
    project: Path = Path(".")
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    token: str | None = None
    now: Callable[[], datetime] = evidence.now

    @property
    def thresholds(self):
        return self.expected.monitoring.alerts

    @property
    def w(self) -> str:
        return f"{self.window}s"


@dataclass
class Result:
    status: str
    value: Any = None
    threshold: Any = None
    evidence: str = ""


def _pass(ok: bool, value: Any, threshold: Any, text: str) -> Result:
    return Result("pass" if ok else "fail", value, threshold, text)


def _unknown(text: str, threshold: Any = None) -> Result:
    return Result("unknown", None, threshold, text)


def services_healthy(ctx: Context) -> Result:
    e = ctx.expected
    if e.settings.runtime == "swarm":
        floors = dict(e.autoscaled)
        problems = [p for name, replicas in e.services
                    if (p := ctx.engine.service_problem(name, replicas, floors.get(name)))]
        total, what = len(e.services), "services at their desired task count"
    else:
        problems = [p for name in e.containers if (p := ctx.engine.container_problem(name))]
        total, what = len(e.containers), "containers running and healthy"
    if not total:
        return _unknown("the stack's plan has no container or service")
    return _pass(not problems, f"{total - len(problems)}/{total}", f"{total}/{total}",
                 "; ".join(problems) or f"every one of {total} {what}")


def health_endpoints(ctx: Context) -> Result:
    problems = []
    for host in ctx.expected.public_hosts:
        try:
            answer = ctx.edge(host).request("GET", HEALTH_PATH)
            status = answer.status, json.loads(answer.data or b"{}").get("status") if answer.status == 200 else None
            if status != (200, "UP"):
                problems.append(f"https://{host}{HEALTH_PATH}: {answer.status} {status[1] or ''}".rstrip())
        except (urllib3.exceptions.HTTPError, ValueError) as error:
            problems.append(f"https://{host}{HEALTH_PATH}: {error}")
    hosts = len(ctx.expected.public_hosts)
    return _pass(not problems, f"{hosts - len(problems)}/{hosts}", "200 UP on every public host",
                 "; ".join(problems) or f"{HEALTH_PATH} answers 200 UP through the edge for every public host")


def health_checks(ctx: Context) -> Result:
    parts = [services_healthy(ctx), health_endpoints(ctx)]
    status = "fail" if any(p.status == "fail" for p in parts) else (
        "unknown" if any(p.status == "unknown" for p in parts) else "pass")
    return Result(status, [p.value for p in parts], [p.threshold for p in parts], "; ".join(p.evidence for p in parts))


def metrics_collected(ctx: Context) -> Result:
    targets = ctx.prometheus.api("targets", state="active")["activeTargets"]
    if not targets:
        return _unknown("Prometheus has no active target")
    down = sorted(f"{t['labels'].get('job')}/{t['labels'].get('instance')}: {t.get('lastError') or t['health']}"
                  for t in targets if t["health"] != "up")
    return _pass(not down, f"{len(targets) - len(down)}/{len(targets)} up", "every target up",
                 "; ".join(down) or f"every one of {len(targets)} scrape targets up")


LOGS_TOPIC = "logs"
"""The Kafka topic the services publish their log lines to and log-aggregator consumes into ClickHouse (one of
`data.kafka_topics`); only log-aggregator's consumer group reads it."""


def _spread(ctx: Context, metric: str) -> float | None:
    """How far a monotonic series (summed over its partitions) moved in the window: highest minus lowest sample
    of each series, so no extrapolation; None when Prometheus has no such series."""
    samples = ctx.prometheus.vector(f"sum(max_over_time({metric}[{ctx.w}]) - min_over_time({metric}[{ctx.w}]))")
    return samples[0][1] if samples else None


def logs_aggregated(ctx: Context) -> Result:
    """Log lines produced to the logs topic in the window were consumed (the consumer group's offsets moved,
    its lag within KafkaConsumerLagHigh's threshold) and ClickHouse inserted rows: each from Prometheus
    (kafka-exporter, ClickHouse's own metrics endpoint)."""
    topic = f'{{topic="{LOGS_TOPIC}"}}'
    produced = _spread(ctx, f"kafka_topic_partition_current_offset{topic}")
    consumed = _spread(ctx, f"kafka_consumergroup_current_offset{topic}")
    lag_samples = ctx.prometheus.vector(f"max(sum by (consumergroup) (kafka_consumergroup_lag{topic}))")
    inserted = ctx.prometheus.vector(f"sum(increase(ClickHouseProfileEvents_InsertedRows[{ctx.w}]))")
    limit = ctx.thresholds.kafka_consumer_lag_messages
    value = {"produced": produced, "consumed": consumed, "lag": lag_samples[0][1] if lag_samples else None,
             "inserted_rows": inserted[0][1] if inserted else None}
    missing = [what for what, found in (
        (f"kafka_topic_partition_current_offset{topic} (kafka-exporter: the log lines published)", produced),
        (f"kafka_consumergroup_current_offset{topic} (kafka-exporter: log-aggregator's consumer group)", consumed),
        (f"kafka_consumergroup_lag{topic}", value["lag"]),
        ("ClickHouseProfileEvents_InsertedRows (ClickHouse, where log-aggregator writes the logs)", value["inserted_rows"]),
    ) if found is None]
    if missing:
        return Result("unknown", value, limit, "no " + "; no ".join(missing))
    problems = []
    if value["lag"] > limit:
        problems.append(f"the logs' consumer group is {value['lag']:.0f} messages behind (max {limit})")
    if produced > 0 and consumed == 0:
        problems.append(f"{produced:.0f} log lines published to {LOGS_TOPIC} in {ctx.w}, none consumed")
    if consumed > 0 and value["inserted_rows"] == 0:
        problems.append(f"{consumed:.0f} log lines consumed in {ctx.w}, no row inserted into ClickHouse")
    if problems:
        return Result("fail", value, limit, "; ".join(problems))
    if produced == 0:
        return Result("unknown", value, limit, f"no log line published to {LOGS_TOPIC} in {ctx.w}: nothing to "
                      "show aggregation")
    return Result("pass", value, limit, f"{produced:.0f} log lines published to {LOGS_TOPIC}, {consumed:.0f} "
                  f"consumed, {value['inserted_rows']:.0f} rows inserted into ClickHouse over {ctx.w}; lag "
                  f"{value['lag']:.0f} (KafkaConsumerLagHigh's threshold)")


def _login(ctx: Context) -> tuple[str | None, str]:
    password = ctx.env.get(ADMIN_PASSWORD_ENV)
    if not password:
        return None, f"{ADMIN_PASSWORD_ENV} is not set (the stack output app_admin_password)"
    edge = ctx.edge(ctx.expected.public_hosts[0])
    answer = edge.request("POST", LOGIN_PATH, {"username": "admin", "password": password})
    if answer.status != 200:
        return None, f"login as admin: {answer.status}"
    return json.loads(answer.data).get("token"), "login as admin: 200 with a token"


def authentication(ctx: Context) -> Result:
    ctx.token, said = _login(ctx)
    if ctx.token is None and ADMIN_PASSWORD_ENV in said:
        return _unknown(said)
    refused = ctx.edge(ctx.expected.public_hosts[0]).request("GET", JOBS_PATH).status
    ok = ctx.token is not None and refused == 401
    return _pass(ok, {"login": bool(ctx.token), "without_token": refused},
                 {"login": True, "without_token": 401}, f"{said}; {JOBS_PATH} without a token: {refused}")


def sample_job(ctx: Context) -> Result:
    if ctx.token is None:
        ctx.token, said = _login(ctx)
        if ctx.token is None:
            return _unknown(f"no token: {said}")
    edge, auth = ctx.edge(ctx.expected.public_hosts[0]), {"Authorization": f"Bearer {ctx.token}"}
    started = time.monotonic()
    answer = edge.request("POST", JOBS_PATH, {"type": "echo", "payload": {"verify": ctx.now().isoformat()}}, auth)
    if answer.status != 201:
        return _pass(False, answer.status, 201, f"POST {JOBS_PATH}: {answer.status}")
    job_id = json.loads(answer.data)["id"]
    status = "submitted"
    while time.monotonic() - started < SAMPLE_JOB_SECONDS:
        status = json.loads(edge.request("GET", f"{JOBS_PATH}/{job_id}", headers=auth).data).get("status")
        if status in ("succeeded", "failed"):
            break
        time.sleep(1)
    seconds = round(time.monotonic() - started, 1)
    return _pass(status == "succeeded", {"status": status, "seconds": seconds},
                 {"status": "succeeded", "seconds": SAMPLE_JOB_SECONDS}, f"job {job_id}: {status} after {seconds} s")


def _dashboard_uids() -> set[str]:
    return {json.loads(p.read_text())["uid"] for p in DASHBOARDS.glob("*.json")}


def dashboards_accessible(ctx: Context) -> Result:
    password = ctx.env.get(GRAFANA_PASSWORD_ENV)
    if not password:
        return _unknown(f"{GRAFANA_PASSWORD_ENV} is not set (the stack output grafana_admin_password)")
    user = ctx.env.get(GRAFANA_USER_ENV, ctx.expected.grafana_user)
    try:
        refused = ctx.grafana.request("GET", "/api/search").status
        answer = ctx.grafana.request("GET", "/api/search",
                                     headers=urllib3.util.make_headers(basic_auth=f"{user}:{password}"))
    except urllib3.exceptions.HTTPError as error:
        return _pass(False, None, "dashboards listed", f"Grafana {ctx.grafana.url}: {error}")
    found = {d.get("uid") for d in json.loads(answer.data)} if answer.status == 200 else set()
    wanted = _dashboard_uids()
    ok = answer.status == 200 and wanted <= found and refused == 401
    return _pass(ok, {"listed": sorted(found & wanted), "without_credential": refused},
                 {"listed": sorted(wanted), "without_credential": 401},
                 f"Grafana /api/search as {user}: {answer.status}; without a credential: {refused}")


def _freshness(line_id: str) -> int | None:
    item = catalog.load().by_id()[line_id]
    return duration_seconds(item.freshness) if item.freshness else None


def alerts_firing(ctx: Context) -> Result:
    drill = evidence.newest(ctx.records(), ctx.expected.stack, "drill.alerts")
    fresh = _freshness("post.hour.alerts-firing")
    if drill is None:
        return _unknown("no alerts drill on record (a deliberate failure, its alert delivered and resolved)", fresh)
    age = drill.age_seconds(ctx.now())
    if fresh is not None and age > fresh:
        return _unknown(f"the newest alerts drill ({drill.created_at:%Y-%m-%d}) is older than {fresh} s", fresh)
    return _pass(drill.ok, drill.created_at.isoformat(), fresh, f"alerts drill of {drill.created_at:%Y-%m-%d %H:%M}")


def no_5xx(ctx: Context) -> Result:
    """The API's 5xx answers (health probes' left out, as HighErrorRate leaves them out); a window without API
    requests has none, once the services are seen to report their requests at all."""
    if not ctx.prometheus.vector("count(http_server_requests_seconds_count)"):
        return _unknown("no http_server_requests_seconds_count series: no service reports its requests")
    errors = ctx.prometheus.vector(f'sum(increase({REQUESTS}, status=~"5.."}}[{ctx.w}]))')
    count = round(errors[0][1]) if errors else 0
    return _pass(count == 0, count, 0, f"5xx answers over the last {ctx.w}")


def _p95(ctx: Context, by: str) -> list[tuple[dict[str, str], float]]:
    return ctx.prometheus.vector(
        f"histogram_quantile(0.95, sum by ({by}) "
        f'(rate(http_server_requests_seconds_bucket{{uri!~"/actuator.*"}}[{ctx.w}])))')


def p95_latency(ctx: Context) -> Result:
    limit = ctx.expected.monitoring.success.latency_p95_seconds
    samples = _p95(ctx, "le")
    if not samples:
        return _unknown(f"no API request in the last {ctx.w} (http_server_requests_seconds_bucket)", limit)
    value = samples[0][1]
    return _pass(value < limit, round(value, 4), limit, f"p95 of every API request over {ctx.w}, seconds")


def job_success_rate(ctx: Context) -> Result:
    minimum = round(1 - ctx.thresholds.job_failure_ratio, 6)
    completed = "orchestrator_jobs_completed_total"
    samples = ctx.prometheus.vector(f'sum(increase({completed}{{status="succeeded"}}[{ctx.w}])) '
                                    f"/ (sum(increase({completed}[{ctx.w}])) > 0)")
    if not samples:
        return _unknown(f"no job completed in the last {ctx.w} ({completed})", minimum)
    return _pass(samples[0][1] > minimum, round(samples[0][1], 4), minimum,
                 f"succeeded / completed jobs over {ctx.w} (JobFailureRateHigh's threshold)")


def no_memory_leaks(ctx: Context) -> Result:
    """The heap after collection: the lowest heap use of each 5 minutes (a collection brings the heap down to
    its live data; the JVM collects many times in 5 minutes under load) sampled every minute over the window;
    a leak is a least-squares trend of those lows (predict_linear) that, a day on, passes the memory alerts'
    ratio of the heap's maximum."""
    limit = ctx.thresholds.memory_used_ratio
    heap = 'sum by (job, instance) (jvm_memory_used_bytes{area="heap"})'
    samples = ctx.prometheus.vector(
        f"predict_linear(min_over_time(({heap})[5m:1m])[{ctx.w}:1m], {LEAK_HORIZON_SECONDS}) "
        f'/ sum by (job, instance) (jvm_memory_max_bytes{{area="heap"}} > 0)')
    if not samples:
        return _unknown(f"no heap series over {ctx.w} (jvm_memory_used_bytes, jvm_memory_max_bytes)", limit)
    worst = max(samples, key=lambda s: s[1])
    where = f"{worst[0].get('job')}/{worst[0].get('instance')}"
    return _pass(worst[1] <= limit, round(worst[1], 4), limit,
                 f"heap after collection a day on at the trend of {ctx.w}, as a share of the maximum heap; "
                 f"highest: {where} of {len(samples)} JVMs")


def alerts_functioning(ctx: Context) -> Result:
    groups = ctx.prometheus.api("rules", type="alert")["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    wanted = {spec.name for spec in alert_specs(ctx.expected.monitoring)}
    missing = sorted(wanted - set(loaded))
    broken = sorted(f"{name}: {r.get('lastError')}" for name, r in loaded.items() if r.get("health") == "err")
    failed = ctx.alertmanager.metric_total("alertmanager_notifications_failed_total")
    sent = ctx.alertmanager.metric_total("alertmanager_notifications_total")
    if failed is None or sent is None:
        return _unknown("Alertmanager reports no alertmanager_notifications_* metrics")
    problems = ([f"rules not loaded: {', '.join(missing)}"] if missing else []) + broken
    if failed:
        problems.append(f"{failed:.0f} of {sent:.0f} notifications failed since Alertmanager started")
    return _pass(not problems, {"rules_loaded": len(wanted) - len(missing), "notifications_failed": failed},
                 {"rules_loaded": len(wanted), "notifications_failed": 0},
                 "; ".join(problems) or f"every one of {len(wanted)} alerts loaded and healthy; "
                 f"{sent:.0f} notifications sent, none failed")


def _backup_ages(ctx: Context) -> tuple[dict[str, float | None], dict[str, int], list[str]]:
    """Each backup class's age in seconds (None: none recorded), its max age, and failed classes."""
    config = ctx.expected.settings.backups
    limits = {name: duration_seconds(config.schedule(name).max_age) for name in ("incr", "full", "clickhouse")}
    ages: dict[str, float | None] = dict.fromkeys(limits)
    for labels, value in ctx.prometheus.vector("time() - max by (type) (backup_last_success_timestamp_seconds)"):
        if labels.get("type") in ages:
            ages[labels["type"]] = value
    clickhouse = ctx.prometheus.vector("time() - max(clickhouse_backup_last_create_remote_finish > 0)")
    ages["clickhouse"] = clickhouse[0][1] if clickhouse else None
    failed = ["clickhouse"] if ctx.prometheus.vector("clickhouse_backup_last_create_remote_status == 0") else []
    return ages, limits, failed


def _why_none(name: str) -> str:
    return ("none recorded: needs ClickHouse and clickhouse-backup (clickhouse_backup_last_create_remote_finish)"
            if name == "clickhouse" else f"none recorded (backup_last_success_timestamp_seconds{{type={name!r}}})")


def backup_job(ctx: Context) -> Result:
    if ctx.expected.settings.backups is None:
        return Result("fail", None, None, "the stack declares no backups (platform:settings.backups)")
    ages, limits, failed = _backup_ages(ctx)
    stale = [f"{n}: {ages[n]:.0f} s old" for n in ages if ages[n] is not None and ages[n] > limits[n]]
    stale += [f"{n}: last run failed" for n in failed]
    none = [f"{n}: {_why_none(n)}" for n in ages if ages[n] is None]
    value = {n: None if a is None else round(a) for n, a in ages.items()}
    if stale:
        return Result("fail", value, limits, "; ".join(stale + none))
    if none:
        return Result("unknown", value, limits, "; ".join(none))
    return Result("pass", value, limits, "the newest backup of each class succeeded within its max age")


def backups_running(ctx: Context) -> Result:
    if ctx.expected.settings.backups is None:
        return Result("fail", None, None, "the stack declares no backups (platform:settings.backups)")
    ages, limits, failed = _backup_ages(ctx)
    recorded = {n: a for n, a in ages.items() if a is not None}
    archive = ctx.prometheus.vector(f"sum(increase(pg_stat_archiver_failed_count[{ctx.w}]))")
    problems = [f"{n}: {a:.0f} s old" for n, a in recorded.items() if a > limits[n]]
    problems += [f"{n}: last run failed" for n in failed]
    if archive and archive[0][1] > 0:
        problems.append(f"WAL archiving failed {archive[0][1]:.0f} times in {ctx.w}")
    if problems:
        return Result("fail", {n: round(a) for n, a in recorded.items()}, limits, "; ".join(problems))
    if not recorded or not archive:
        return _unknown("no backup recorded yet" if not recorded else "no pg_stat_archiver_failed_count", limits)
    not_yet = [n for n in ages if n not in recorded]
    return Result("pass", {n: round(a) for n, a in recorded.items()}, limits,
                  f"every recorded class within its max age, WAL archiving without failure over {ctx.w}"
                  + (f"; not yet run: {', '.join(not_yet)}" if not_yet else ""))


def security_scan(ctx: Context) -> Result:
    from platform_infra.infra.check import check_report

    report = check_report(argparse.Namespace(project=str(ctx.project), stack=ctx.expected.stack,
                                             policy_config=None, state=None))
    # The evidence gate (EVD-*) judges the records verify writes: its own line, not the security scan's.
    judged = [v for v in report.violations if not v["rule"].startswith(EVIDENCE_RULES)]
    mandatory = sum(v["enforcement"] == "mandatory" for v in judged)
    rules = sorted({v["rule"] for v in judged if v["enforcement"] == "mandatory"})
    return _pass(not mandatory, mandatory, 0, f"infra check: {mandatory} mandatory violations"
                 + (f" ({', '.join(rules)})" if rules else "") + ", "
                 f"{len(judged) - mandatory} advisory, {len(report.unknown)} unknown (the evidence gate aside)")


def error_rates(ctx: Context) -> Result:
    limit = ctx.thresholds.error_rate_ratio
    samples = ctx.prometheus.vector(
        f'sum by (service) (increase({REQUESTS}, status=~"5.."}}[{ctx.w}])) '
        f"/ (sum by (service) (increase({REQUESTS}}}[{ctx.w}])) > 0) "
        f"or (sum by (service) (increase({REQUESTS}}}[{ctx.w}])) > 0) * 0")
    if not samples:
        return _unknown(f"no API request in the last {ctx.w}", limit)
    worst = max(samples, key=lambda s: s[1])
    return _pass(worst[1] <= limit, {s[0].get("service", "?"): round(s[1], 4) for s in samples}, limit,
                 f"5xx share of each service's requests over {ctx.w} (HighErrorRate's threshold)")


def resource_utilization(ctx: Context) -> Result:
    t, w = ctx.thresholds, ctx.w
    fs = 'fstype!~"^(fuse.*|tmpfs|cifs|nfs)"'
    measures = {
        "cpu": ((f'max(avg_over_time((sum without (cpu, mode) (rate(node_cpu_seconds_total{{mode!="idle"}}[5m])) '
                f"/ sum without (cpu, mode) (rate(node_cpu_seconds_total[5m])))[{w}:1m]))"), t.cpu_used_ratio, True),
        "memory": (f"max(avg_over_time((1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)[{w}:1m]))",
                   t.memory_used_ratio, True),
        "disk_free": ((f"min(min_over_time((node_filesystem_avail_bytes{{{fs}}} / node_filesystem_size_bytes{{{fs}}})"
                      f"[{w}:1m]))"), t.disk_free_ratio, False),
    }
    values, problems, missing = {}, [], []
    for name, (expr, limit, above_is_bad) in measures.items():
        samples = ctx.prometheus.vector(expr)
        if not samples:
            missing.append(name)
            continue
        values[name] = round(samples[0][1], 4)
        if (values[name] > limit) if above_is_bad else (values[name] < limit):
            problems.append(f"{name} {values[name]:.0%} ({'over' if above_is_bad else 'under'} {limit:.0%})")
    limits = {name: m[1] for name, m in measures.items()}
    if problems:
        return Result("fail", values, limits, "; ".join(problems))
    if missing:
        return Result("unknown", values, limits, f"no node_exporter series for {', '.join(missing)}")
    return Result("pass", values, limits, f"host CPU and memory averaged, disk free at its lowest, over {w} "
                  "(the HostCpuHigh, HostMemoryHigh and DiskSpaceLow thresholds)")


def response_times(ctx: Context) -> Result:
    limit = ctx.thresholds.latency_p95_seconds
    samples = _p95(ctx, "service, le")
    if not samples:
        return _unknown(f"no API request in the last {ctx.w}", limit)
    worst = max(samples, key=lambda s: s[1])
    return _pass(worst[1] <= limit, {s[0].get("service", "?"): round(s[1], 4) for s in samples}, limit,
                 f"p95 of each service's API requests over {ctx.w}, seconds (HighLatencyP95's threshold)")


TABLES = "datname, schemaname, relname"
"""The labels naming a table in postgres_exporter's pg_stat_user_tables_* series."""


def database_indexes(ctx: Context) -> Result:
    """Each large table's scans over the window (pg_stat_user_tables' counters through postgres_exporter's
    stat_user_tables collector): a table of at least min_live_rows live rows whose scans were mostly sequential
    fails, named with its scans and the rows each sequential scan read."""
    limits = ctx.expected.monitoring.index_use
    threshold = {"min_live_rows": limits.min_live_rows, "max_seq_scan_ratio": limits.max_seq_scan_ratio}

    def by_table(expr: str) -> dict[str, float]:
        return {f"{s[0].get('datname')}.{s[0].get('schemaname')}.{s[0].get('relname')}": s[1]
                for s in ctx.prometheus.vector(f"max by ({TABLES}) ({expr})")}

    live = by_table("pg_stat_user_tables_n_live_tup")
    if not live:
        return _unknown("no pg_stat_user_tables_n_live_tup series (postgres-exporter's stat_user_tables collector)",
                        threshold)
    seq = by_table(f"increase(pg_stat_user_tables_seq_scan[{ctx.w}])")
    idx = by_table(f"increase(pg_stat_user_tables_idx_scan[{ctx.w}])")
    rows_read = by_table(f"increase(pg_stat_user_tables_seq_tup_read[{ctx.w}])")
    large = sorted(table for table, rows in live.items() if rows >= limits.min_live_rows)
    value, problems = {"tables": len(live), "large": {}}, []
    for table in large:
        scans = seq.get(table, 0.0) + idx.get(table, 0.0)
        share = seq.get(table, 0.0) / scans if scans else None
        value["large"][table] = {"live_rows": round(live[table]), "seq_scans": round(seq.get(table, 0.0)),
                                 "idx_scans": round(idx.get(table, 0.0)),
                                 "seq_scan_ratio": None if share is None else round(share, 4)}
        if share is not None and share > limits.max_seq_scan_ratio:
            per_scan = rows_read.get(table, 0.0) / seq[table]
            problems.append(f"{table}: {live[table]:.0f} live rows, {share:.0%} of its {scans:.0f} scans over "
                            f"{ctx.w} sequential, {per_scan:.0f} rows read by each (an index its queries need?)")
    if problems:
        return Result("fail", value, threshold, "; ".join(problems))
    if not large:
        return Result("pass", value, threshold, f"none of the {len(live)} tables holds {limits.min_live_rows} live "
                      "rows: PostgreSQL reads tables this small sequentially, as it should")
    return Result("pass", value, threshold, f"{len(large)} tables of at least {limits.min_live_rows} live rows, "
                  f"each read mostly through an index (or not read) over {ctx.w}")


CHECKS: dict[str, Callable[[Context], Result]] = {
    "post.hour.services-healthy": services_healthy, "post.hour.health-endpoints": health_endpoints,
    "post.hour.metrics-collected": metrics_collected, "post.hour.logs-aggregated": logs_aggregated,
    "post.hour.authentication": authentication, "post.hour.sample-job": sample_job,
    "post.hour.dashboards-accessible": dashboards_accessible, "post.hour.alerts-firing": alerts_firing,
    "success.health-checks": health_checks, "success.no-5xx": no_5xx, "success.p95-latency": p95_latency,
    "success.job-success-rate": job_success_rate, "success.no-memory-leaks": no_memory_leaks,
    "success.alerts-functioning": alerts_functioning, "success.backup-job": backup_job,
    "success.security-scan": security_scan,
    "post.day.error-rates": error_rates, "post.day.resource-utilization": resource_utilization,
    "post.day.backup-jobs": backups_running, "post.day.response-times": response_times,
    "configuration.database-indexes": database_indexes,
}
NEEDS = {
    "engine": {"post.hour.services-healthy", "success.health-checks"},
    "edge": {"post.hour.health-endpoints", "post.hour.authentication", "post.hour.sample-job", "success.health-checks"},
    "alertmanager": {"success.alerts-functioning"},
}
"""The sources each check reads besides Prometheus (which almost all read): only those are required."""


def check_ids(phase: str) -> list[str]:
    return [i for p, ids in PHASES.items() if phase in (p, "all") for i in ids]


def run_checks(ctx: Context, ids: list[str]) -> list[evidence.Check]:
    lines = {item.id: (section.name, item.text) for section, item in catalog.load().lines()}
    results = []
    for check_id in ids:
        try:
            result = CHECKS[check_id](ctx)
        except (urllib3.exceptions.HTTPError, RuntimeError, ValueError, KeyError) as error:
            result = _unknown(f"{type(error).__name__}: {error}")
        section, text = lines[check_id]
        results.append(evidence.Check(id=check_id, section=section, text=text, status=result.status,
                                      value=result.value, threshold=result.threshold, evidence=result.evidence))
    return results


# --- output ------------------------------------------------------------------------------------------------


def report_json(record: evidence.Record, window: int) -> dict[str, Any]:
    return {"stack": record.stack, "checked_at": record.created_at.isoformat(), "window_seconds": window,
            "checks": [c.model_dump() for c in record.checks], "ok": record.ok}


def report_text(record: evidence.Record, window: int, where: str | None) -> str:
    counts = {s: sum(c.status == s for c in record.checks) for s in ("pass", "fail", "unknown")}
    out = [f"infra verify: stack {record.stack} at {record.created_at:%Y-%m-%d %H:%M:%S} UTC, window {window} s"]
    section = None
    for c in record.checks:
        if c.section != section:
            section = c.section
            out.append(f"{section}:")
        value = "" if c.value is None else f"  value {json.dumps(c.value)}"
        limit = "" if c.threshold is None else f" threshold {json.dumps(c.threshold)}"
        out.append(f"  [{c.status:<7}] {c.id}  {c.text}{value}{limit}")
        out.append(f"            {c.evidence}")
    out.append(f"{counts['pass']} pass, {counts['fail']} fail, {counts['unknown']} unknown: "
               + ("verified" if record.ok else "not verified") + (f"; evidence: {where}" if where else ""))
    return "\n".join(out)


def report_junit(record: evidence.Record) -> str:
    suite = ET.Element("testsuite", name=f"infra verify {record.stack}", tests=str(len(record.checks)),
                       failures=str(sum(c.status == "fail" for c in record.checks)),
                       skipped=str(sum(c.status == "unknown" for c in record.checks)),
                       timestamp=record.created_at.isoformat())
    for c in record.checks:
        case = ET.SubElement(suite, "testcase", classname=c.section, name=c.id)
        if c.status == "fail":
            ET.SubElement(case, "failure", message=c.evidence).text = json.dumps(
                {"value": c.value, "threshold": c.threshold})
        elif c.status == "unknown":
            ET.SubElement(case, "skipped", message=c.evidence)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, "unicode")


# --- command ------------------------------------------------------------------------------------------------


def window_seconds(text: str) -> int:
    try:
        return duration_seconds(text)
    except ValueError as error:
        raise ProgramInputError(f"--window: {error}") from None


def build_context(args: argparse.Namespace, expected: Expected, ids: list[str],
                  records: Callable[[], list[evidence.Record]]) -> Context:
    """The sources the chosen checks read, each reached once first: an unreachable one is exit 2."""
    window = window_seconds(args.window)
    ctx = Context(expected, window, records=records, project=Path(args.project))
    ctx.prometheus = Prometheus(args.prometheus_url, "--prometheus-url")
    ctx.prometheus.reach("/-/ready")
    if NEEDS["alertmanager"] & set(ids):
        ctx.alertmanager = Alertmanager(args.alertmanager_url, "--alertmanager-url")
        ctx.alertmanager.reach("/-/ready")
    if NEEDS["engine"] & set(ids):
        ctx.engine = Engine(args.docker_host)
    if NEEDS["edge"] & set(ids):
        endpoint = args.endpoint or expected.endpoint
        edges = {host: Http(endpoint, "--endpoint", server_name=host, host_header=host)
                 for host in expected.public_hosts}
        edges[expected.public_hosts[0]].reach(HEALTH_PATH)
        ctx.edge = edges.__getitem__
    ctx.grafana = Http(args.grafana_url or expected.grafana_url, "--grafana-url")
    return ctx


def cmd_verify(args: argparse.Namespace) -> int:
    project = Path(args.project)
    window_seconds(args.window)  # bad input first, before the program runs
    settings = stack_settings(project, args.stack)
    run = run_program(load_project(project, args.stack), args.stack)
    expected = expected_from(run, settings, args.name_prefix)
    store = evidence.store_for(args.stack, settings.backups.bucket if settings.backups else None, project)
    ids = check_ids(args.phase)

    def records() -> list[evidence.Record]:
        return store.records()

    ctx = build_context(args, expected, ids, records)
    checks = run_checks(ctx, ids)
    record = evidence.Record(kind="verify", stack=args.stack, created_at=evidence.now(),
                             commit=commit(project), ok=all(c.status == "pass" for c in checks),
                             checks=checks, data={"window_seconds": ctx.window, "phase": args.phase})
    try:
        where = store.write(record)
    except evidence.EvidenceError as error:
        print(report_text(record, ctx.window, None) if args.format == "text" else "", file=sys.stderr)
        raise ProgramInputError(f"evidence not written: {error}") from None
    if args.format == "json":
        print(json.dumps(report_json(record, ctx.window), indent=2))
    elif args.format == "junit":
        print(report_junit(record))
    else:
        print(report_text(record, ctx.window, where))
    return 0 if record.ok else 1


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prometheus-url", default="http://127.0.0.1:9090", help="Prometheus' HTTP API")
    parser.add_argument("--alertmanager-url", default="http://127.0.0.1:9093", help="Alertmanager's HTTP API")
    parser.add_argument("--endpoint", help="where the edge answers (default: https://<first public host>); "
                        "TLS and Host name the stack's public hosts")
    parser.add_argument("--grafana-url", help="Grafana's URL (default: the stack's grafana_url)")
    parser.add_argument("--docker-host", help="the Docker Engine API (default: DOCKER_HOST, else the local socket)")
    parser.add_argument("--name-prefix", help="the prefix the engine's objects carry instead of the stack's own "
                        "(a renamed copy of the stack)")
    parser.add_argument("--window", default="1h", help="the span the success criteria and first-day lines cover "
                        "(a duration: 30m, 1h, 1d)")
    parser.add_argument("--phase", choices=["first-hour", "first-day", "success", "all"], default="all")
    parser.add_argument("--format", choices=["text", "json", "junit"], default="text")
