"""`infra autoscale`: keep a Swarm service's replicas where the scaling policy wants them.

Every interval it reads the consumer group's lag from Prometheus's HTTP API (the kafka-exporter series
`kafka_consumergroup_lag` and `kafka_topic_partitions`), asks `components.autoscaling.decide`, and sets the
service's replicas through the Docker Engine API with the service version it read (a concurrent change makes
the update fail as out of sequence: it is read again and retried, not lost). One JSON line per decision on
stdout; its own metrics on --metrics-port for Prometheus.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import ValidationError

from components.autoscaling import Observation, Recommendation, ScalingPolicy, decide
from infra.mockrun import ProgramInputError, load_project
from infra.settings import NAMESPACE, SETTINGS_KEY, parse_settings

if TYPE_CHECKING:  # the Docker SDK and prometheus_client load when the controller runs, not with every `infra`
    import docker
    from prometheus_client import Gauge

UPDATE_ATTEMPTS = 5


def lag_queries(policy: ScalingPolicy) -> dict[str, str]:
    """PromQL for the observation; `timestamp()` gives the sample's own time, so a stale scrape shows."""
    selector = f'{{consumergroup="{policy.consumer_group}",topic="{policy.topic}"}}'
    return {
        "lag": f"sum(kafka_consumergroup_lag{selector})",
        "lag_time": f"max(timestamp(kafka_consumergroup_lag{selector}))",
        "partitions": f'max(kafka_topic_partitions{{topic="{policy.topic}"}})',
    }


def query(prometheus_url: str, expr: str, timeout: float = 5) -> float | None:
    """One instant query (GET /api/v1/query); None when it returns no sample."""
    url = f"{prometheus_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"query failed: {body.get('error', body)}")
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def observe(prometheus_url: str, policy: ScalingPolicy, current: int, now: float) -> Observation:
    values = {name: query(prometheus_url, expr) for name, expr in lag_queries(policy).items()}
    partitions = values["partitions"]
    return Observation(
        current=current,
        lag=values["lag"],
        lag_age_seconds=None if values["lag_time"] is None else max(0.0, now - values["lag_time"]),
        partitions=None if partitions is None else int(partitions),
    )


def is_conflict(error: docker.errors.APIError) -> bool:
    # Swarmkit refuses an update carrying an old version as "update out of sequence" (HTTP 500 on the
    # Engine API up to 25.x; moby/swarmkit manager/state/store: ErrSequenceConflict), 409 on newer engines.
    return error.status_code == 409 or "out of sequence" in str(error.explanation or error)


class SwarmService:
    """One replicated Swarm service, read and scaled through the Engine API."""

    def __init__(self, client: docker.DockerClient, name: str) -> None:
        self.client, self.name = client, name
        self.conflicts = 0

    def read(self) -> tuple[int, int]:
        """(replicas, version) of the service as the manager has it now."""
        spec = self.client.api.inspect_service(self.name)
        replicated = spec["Spec"]["Mode"].get("Replicated")
        if replicated is None:
            raise ProgramInputError(f"--service: {self.name} is not a replicated service")
        return int(replicated.get("Replicas", 1)), int(spec["Version"]["Index"])

    def scale(self, replicas: int, version: int) -> None:
        """Set the replicas with the version read; on a version conflict read again and retry."""
        import docker

        for _ in range(UPDATE_ATTEMPTS):
            try:
                self.client.api.update_service(self.name, version, fetch_current_spec=True,
                                               mode=docker.types.ServiceMode("replicated", replicas=replicas))
                return
            except docker.errors.APIError as error:
                if not is_conflict(error):
                    raise
                self.conflicts += 1
                current, version = self.read()
                if current == replicas:
                    return
        raise RuntimeError(f"service {self.name} kept changing: {UPDATE_ATTEMPTS} conflicting updates")


class ControllerMetrics:
    def __init__(self, service: str, policy: ScalingPolicy) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        # Not `service`: Prometheus's target labels carry that one (the controller's own service).
        labels = ["swarm_service"]

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, labels, registry=self.registry).labels(service)

        self.current = gauge("autoscaler_current_replicas", "Replicas of the service when last read")
        self.desired = gauge("autoscaler_desired_replicas", "Replicas the last decision wanted")
        self.min = gauge("autoscaler_min_replicas", "The policy's min_replicas")
        self.max = gauge("autoscaler_max_replicas", "The policy's max_replicas")
        self.lag = gauge("autoscaler_observed_lag", "Total consumer lag the last decision saw (NaN: missing)")
        self.last = gauge("autoscaler_last_decision_timestamp_seconds", "Unix time of the last decision")
        self.decisions = Counter("autoscaler_decisions", "Decisions taken, by whether they changed the service",
                                 ["swarm_service", "applied"], registry=self.registry)
        self.conflicts = Counter("autoscaler_update_conflicts", "Service updates refused as out of sequence and "
                                 "retried", labels, registry=self.registry).labels(service)
        self.errors = Counter("autoscaler_errors", "Failed reads or updates, by source", ["swarm_service", "source"],
                              registry=self.registry)
        self.service = service
        self.min.set(policy.min_replicas)
        self.max.set(policy.max_replicas)


class Controller:
    def __init__(self, service: SwarmService, prometheus_url: str, policy: ScalingPolicy, dry_run: bool,
                 metrics: ControllerMetrics) -> None:
        self.service, self.prometheus_url, self.policy = service, prometheus_url, policy
        self.dry_run, self.metrics = dry_run, metrics
        self.history: list[Recommendation] = []
        self.prometheus_error: str | None = None
        """Why the last observation failed, if it did."""

    def step(self) -> dict:
        """One decision, applied unless dry-run; the JSON line's fields."""
        now = time.time()
        current, version = self.service.read()
        self.prometheus_error = None
        try:
            seen = observe(self.prometheus_url, self.policy, current, now)
            note = ""
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            self.metrics.errors.labels(self.metrics.service, "prometheus").inc()
            self.prometheus_error = f"no Prometheus answers at {self.prometheus_url} ({error})"
            seen, note = Observation(current, None, None, None), f"{self.prometheus_error}; "
        decision = decide(self.policy, seen, self.history, now)
        if decision.recommendation is not None:
            self.history.append(decision.recommendation)
        self.history = [r for r in self.history if r.time > now - self.policy.window_seconds]
        applied = False
        if decision.desired != current and not self.dry_run:
            conflicts = self.service.conflicts
            self.service.scale(decision.desired, version)
            self.metrics.conflicts.inc(self.service.conflicts - conflicts)
            applied = True
        m = self.metrics
        m.current.set(current)
        m.desired.set(decision.desired)
        m.lag.set(float("nan") if seen.lag is None else seen.lag)
        m.last.set(now)
        m.decisions.labels(m.service, str(applied).lower()).inc()
        return {"time": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
                "service": self.service.name, "current": current, "desired": decision.desired,
                "applied": applied, "reason": note + decision.reason}


def _policy_error(source: str, error: ValidationError) -> ProgramInputError:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    return ProgramInputError(f"{source}: {key + ': ' if key else ''}{first['msg'].removeprefix('Value error, ')}")


def load_policy(args: argparse.Namespace) -> ScalingPolicy:
    if args.policy:
        path = Path(args.policy)
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as error:
            raise ProgramInputError(f"--policy: cannot read {path}: {error}") from None
        try:
            return ScalingPolicy.model_validate(raw)
        except ValidationError as error:
            raise _policy_error(str(path), error) from None
    project = load_project(Path(args.project), args.stack)
    source = f"Pulumi.{args.stack}.yaml"
    settings = parse_settings(json.loads(project.config.get(f"{NAMESPACE}:{SETTINGS_KEY}", "null")), source)
    if settings.autoscaling is None:
        raise ProgramInputError(f"{source}: {NAMESPACE}:{SETTINGS_KEY}.autoscaling.workers: required key is missing "
                                "(infra autoscale needs a scaling policy)")
    return settings.autoscaling.workers


def cmd_autoscale(args: argparse.Namespace) -> int:
    import docker
    from prometheus_client import start_http_server

    if not args.prometheus_url.startswith(("http://", "https://")):
        raise ProgramInputError(f"--prometheus-url: must be an http:// or https:// URL, got {args.prometheus_url!r}")
    if args.interval is not None and not 1 <= args.interval <= 600:
        raise ProgramInputError(f"--interval: must be 1..600 seconds, got {args.interval}")
    policy = load_policy(args)
    try:
        client = docker.DockerClient(base_url=args.docker_host) if args.docker_host else docker.from_env()
    except docker.errors.DockerException as error:
        where = args.docker_host or "DOCKER_HOST or the default socket"
        raise ProgramInputError(f"--docker-host: no Docker Engine API answers at {where}: {error}") from None
    service = SwarmService(client, args.service)
    try:
        service.read()
    except docker.errors.NotFound:
        if args.once:
            raise ProgramInputError(f"--service: no Swarm service {args.service!r} on the Docker host") from None
        # Deployed beside the service it scales, it may start first: it holds, reporting, until the service exists.
        print(f"infra autoscale: no Swarm service {args.service!r} yet; holding until it exists",
              file=sys.stderr, flush=True)
    metrics = ControllerMetrics(args.service, policy)
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_address, registry=metrics.registry)
    controller = Controller(service, args.prometheus_url, policy, args.dry_run, metrics)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    interval = args.interval or policy.interval_seconds
    while not stopping.is_set():
        try:
            print(json.dumps(controller.step()), flush=True)
        except docker.errors.NotFound:
            metrics.errors.labels(args.service, "missing").inc()
            print(f"infra autoscale: no Swarm service {args.service!r}; holding", file=sys.stderr, flush=True)
        except docker.errors.APIError as error:
            metrics.errors.labels(args.service, "docker").inc()
            print(f"infra autoscale: docker: {error}", file=sys.stderr, flush=True)
            if args.once:
                return 1
        if args.once:
            if controller.prometheus_error:  # one decision with nothing observed is not a success
                raise ProgramInputError(f"--prometheus-url: {controller.prometheus_error}")
            return 0
        stopping.wait(interval)
    return 0


def add_autoscale_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", required=True, help="the Swarm service to scale (replicated)")
    parser.add_argument("--prometheus-url", required=True, help="Prometheus base URL, e.g. http://prometheus:9090")
    parser.add_argument("--docker-host", help="Docker Engine API URL (default: DOCKER_HOST or the local socket)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--policy", help="YAML file holding a scaling policy (autoscaling.workers' keys)")
    source.add_argument("--stack", help="read platform:settings.autoscaling.workers from Pulumi.<stack>.yaml")
    parser.add_argument("--project", default=str(Path(__file__).resolve().parent.parent),
                        help="directory holding the stack files (with --stack)")
    parser.add_argument("--interval", type=int, help="seconds between decisions (default: the policy's)")
    parser.add_argument("--once", action="store_true", help="take one decision and exit")
    parser.add_argument("--dry-run", action="store_true", help="decide and report, never update the service")
    parser.add_argument("--metrics-port", type=int, default=0, help="serve the controller's metrics on this port")
    parser.add_argument("--metrics-address", default="127.0.0.1", help="address of the metrics listener")
