"""`infra autoscale`: keep a Swarm service's replicas where the scaling policy wants them.

Every interval it reads the consumer group's lag per partition, the stuck partitions and the rates from
Prometheus's HTTP API (the kafka-exporter series `kafka_consumergroup_lag`, `kafka_consumergroup_current_offset`,
`kafka_topic_partition_current_offset` and `kafka_topic_partitions`), asks `platform_infra.components.autoscaling.decide`, and
sets the service's replicas through the Docker Engine API with the service version it read (a concurrent change
makes the update fail as out of sequence: it is read again and retried, not lost). One JSON line per decision on
stdout, explained (inputs and steps); its own metrics on --metrics-port for Prometheus. `infra autoscale
simulate` (infra/daytwo/autoscale_simulate.py) replays a trace through the same queries' answers and `decide`.
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
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import yaml
from pydantic import ValidationError

from platform_infra.components.autoscaling import (
    PAUSE_LABEL,
    Decision,
    Observation,
    ScalingPolicy,
    State,
    decide,
)
from platform_infra.infra.daytwo.stackfile import stack_settings
from platform_infra.infra.mockrun import DEFAULT_PROJECT, ProgramInputError
from platform_infra.infra.settings import NAMESPACE, SETTINGS_KEY

if TYPE_CHECKING:  # the Docker SDK and prometheus_client load when the controller runs, not with every `infra`
    import docker
    from prometheus_client import Gauge

UPDATE_ATTEMPTS = 5


Answer = list[tuple[dict[str, str], float]]
"""An instant vector: each sample's labels and value."""


def lag_queries(policy: ScalingPolicy) -> dict[str, str]:
    """PromQL for the observation; `timestamp()` gives the sample's own time, so a stale scrape shows."""
    group = f'{{consumergroup="{policy.consumer_group}",topic="{policy.topic}"}}'
    topic = f'{{topic="{policy.topic}"}}'
    queries = {
        "lag_by_partition": f"sum by (partition) (kafka_consumergroup_lag{group})",
        "lag_time": f"max(timestamp(kafka_consumergroup_lag{group}))",
        "partitions": f"max(kafka_topic_partitions{topic})",
    }
    if policy.stuck_after_seconds is not None:
        window = f"{policy.stuck_after_seconds}s"
        # With lag, its committed offset unchanged over the window, and already there at the window's start
        # (a consumer that just appeared is not stuck).
        queries["stuck_lag"] = (
            f"(sum by (partition) (kafka_consumergroup_lag{group}) > 0)"
            f" and on (partition) (sum by (partition) (changes(kafka_consumergroup_current_offset{group}[{window}]))"
            f" == 0) and on (partition) (sum by (partition) (kafka_consumergroup_current_offset{group} offset {window}))")
    if policy.drain_mode:
        window = f"{policy.rate_window_seconds}s"
        queries["consumed"] = f"sum(rate(kafka_consumergroup_current_offset{group}[{window}]))"
        queries["produced"] = f"sum(rate(kafka_topic_partition_current_offset{topic}[{window}]))"
        queries["consumers"] = f'max(kafka_consumergroup_members{{consumergroup="{policy.consumer_group}"}})'
    return queries


def _prometheus_api(prometheus_url: str, path: str, params: dict[str, str], timeout: float) -> list[dict]:
    url = f"{prometheus_url.rstrip('/')}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"query failed: {body.get('error', body)}")
    return body["data"]["result"]


def query(prometheus_url: str, expr: str, timeout: float = 5) -> Answer:
    """One instant query (GET /api/v1/query)."""
    return [(sample["metric"], float(sample["value"][1]))
            for sample in _prometheus_api(prometheus_url, "query", {"query": expr}, timeout)]


def _scalar(answer: Answer) -> float | None:
    return answer[0][1] if answer else None


def _by_partition(answer: Answer) -> dict[str, float]:
    return {labels.get("partition", ""): value for labels, value in answer}


def observation(answers: Mapping[str, Answer], current: int, now: float, paused: bool) -> Observation:
    """What the queries' answers say, as `decide` takes it (the controller's and the simulator's one reading)."""
    lag_by_partition = _by_partition(answers["lag_by_partition"])
    lag_time = _scalar(answers["lag_time"])
    partitions = _scalar(answers["partitions"])
    consumers = _scalar(answers.get("consumers", []))
    stuck = _by_partition(answers.get("stuck_lag", []))
    return Observation(
        current=current,
        lag=sum(lag_by_partition.values()) if lag_by_partition else None,
        lag_age_seconds=None if lag_time is None else max(0.0, now - lag_time),
        partitions=None if partitions is None else int(partitions),
        partitions_with_lag=sum(value > 0 for value in lag_by_partition.values()),
        stuck_partitions=len(stuck),
        stuck_lag=sum(stuck.values()),
        consumed_per_second=_scalar(answers.get("consumed", [])),
        produced_per_second=_scalar(answers.get("produced", [])),
        consumers=None if consumers is None else int(consumers),
        lag_by_partition=lag_by_partition,
        paused=paused,
    )


def observe(prometheus_url: str, policy: ScalingPolicy, current: int, now: float, paused: bool) -> Observation:
    answers = {name: query(prometheus_url, expr) for name, expr in lag_queries(policy).items()}
    return observation(answers, current, now, paused)


def decision_line(when: str | float, service: str, current: int, decision: Decision, applied: bool) -> dict:
    """One JSON line of the controller, and of the simulator."""
    return {"time": when, "service": service, "current": current, "applied": applied, **decision.explained()}


def is_conflict(error: docker.errors.APIError) -> bool:
    # Swarmkit refuses an update carrying an old version as "update out of sequence" (HTTP 500 on the
    # Engine API up to 25.x; moby/swarmkit manager/state/store: ErrSequenceConflict), 409 on newer engines.
    return error.status_code == 409 or "out of sequence" in str(error.explanation or error)


class ServiceRead(NamedTuple):
    replicas: int
    version: int
    paused: bool
    """It carries PAUSE_LABEL=true."""


class SwarmService:
    """One replicated Swarm service, read and scaled through the Engine API."""

    def __init__(self, client: docker.DockerClient, name: str) -> None:
        self.client, self.name = client, name
        self.conflicts = 0

    def read(self) -> ServiceRead:
        """Replicas, version and pause label of the service as the manager has it now."""
        spec = self.client.api.inspect_service(self.name)
        replicated = spec["Spec"]["Mode"].get("Replicated")
        if replicated is None:
            raise ProgramInputError(f"--service: {self.name} is not a replicated service")
        paused = (spec["Spec"].get("Labels") or {}).get(PAUSE_LABEL, "").strip().lower() == "true"
        return ServiceRead(int(replicated.get("Replicas", 1)), int(spec["Version"]["Index"]), paused)

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
                current, version, _ = self.read()
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
        self.recommended = gauge("autoscaler_recommended_replicas",
                                 "The last decision's raw recommendation, before caps, windows and steps (NaN: none)")
        self.partitions_with_lag = gauge("autoscaler_partitions_with_lag", "Partitions with lag, stuck ones included")
        self.stuck = gauge("autoscaler_stuck_partitions",
                           "Partitions with lag whose committed offset has not moved for stuck_after_seconds")
        self.stuck_lag = gauge("autoscaler_stuck_lag", "Lag held by the stuck partitions, left out of the decision")
        self.consumed = gauge("autoscaler_consumed_per_second", "The group's consumption rate (NaN: unknown)")
        self.produced = gauge("autoscaler_produced_per_second", "The topic's arrival rate (NaN: unknown)")
        self.failures = gauge("autoscaler_consecutive_failures", "Failed or stale metric reads in a row")
        self.fallback = gauge("autoscaler_fallback_active",
                              "1 while failure_threshold failed reads in a row put the fallback in charge")
        self.paused = gauge("autoscaler_paused", f"1 while the service carries {PAUSE_LABEL}=true")
        self.saturated = gauge("autoscaler_saturated", "1 when a scale-out was held: the last one did not raise "
                               "throughput")
        self.limited_by = Gauge("autoscaler_limited_by", "1 for the cap that won the last decision",
                                ["swarm_service", "cap"], registry=self.registry)
        self.mode = Gauge("autoscaler_mode", "1 for the last decision's mode", ["swarm_service", "mode"],
                          registry=self.registry)
        self.decisions = Counter("autoscaler_decisions", "Decisions taken, by whether they changed the service",
                                 ["swarm_service", "applied"], registry=self.registry)
        self.conflicts = Counter("autoscaler_update_conflicts", "Service updates refused as out of sequence and "
                                 "retried", labels, registry=self.registry).labels(service)
        self.errors = Counter("autoscaler_errors", "Failed reads or updates, by source", ["swarm_service", "source"],
                              registry=self.registry)
        self.service = service
        self.min.set(policy.min_replicas)
        self.max.set(policy.max_replicas)

    def record(self, seen: Observation, decision: Decision, now: float) -> None:
        """The decision's inputs and outcome, the JSON line's fields as metrics."""
        def number(value: float | None) -> float:
            return float("nan") if value is None else value

        self.current.set(seen.current)
        self.desired.set(decision.desired)
        self.recommended.set(number(decision.recommendation and decision.recommendation.replicas))
        self.lag.set(number(seen.lag))
        self.partitions_with_lag.set(number(seen.partitions_with_lag))
        self.stuck.set(seen.stuck_partitions)
        self.stuck_lag.set(seen.stuck_lag)
        self.consumed.set(number(seen.consumed_per_second))
        self.produced.set(number(seen.produced_per_second))
        self.failures.set(decision.state.failures)
        self.fallback.set(decision.mode == "fallback")
        self.paused.set(decision.mode == "paused")
        self.saturated.set(decision.saturated)
        for cap in ("min_replicas", "max_replicas", "partitions", "partitions_with_lag"):
            self.limited_by.labels(self.service, cap).set(decision.limited_by == cap)
        for mode in ("lag", "drain", "hold", "fallback", "paused"):
            self.mode.labels(self.service, mode).set(decision.mode == mode)
        self.last.set(now)


class Controller:
    def __init__(self, service: SwarmService, prometheus_url: str, policy: ScalingPolicy, dry_run: bool,
                 metrics: ControllerMetrics) -> None:
        self.service, self.prometheus_url, self.policy = service, prometheus_url, policy
        self.dry_run, self.metrics = dry_run, metrics
        self.state = State()
        self.prometheus_error: str | None = None
        """Why the last observation failed, if it did."""

    def step(self) -> dict:
        """One decision, applied unless dry-run; the JSON line's fields."""
        now = time.time()
        current, version, paused = self.service.read()
        self.prometheus_error = None
        try:
            seen = observe(self.prometheus_url, self.policy, current, now, paused)
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            self.metrics.errors.labels(self.metrics.service, "prometheus").inc()
            self.prometheus_error = f"no Prometheus answers at {self.prometheus_url} ({error})"
            seen = Observation(current, None, None, None, paused=paused, error=self.prometheus_error)
        decision = decide(self.policy, seen, self.state, now)
        self.state = decision.state
        applied = False
        if decision.desired != current and not self.dry_run:
            conflicts = self.service.conflicts
            self.service.scale(decision.desired, version)
            self.metrics.conflicts.inc(self.service.conflicts - conflicts)
            applied = True
        self.metrics.record(seen, decision, now)
        self.metrics.decisions.labels(self.metrics.service, str(applied).lower()).inc()
        return decision_line(datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
                             self.service.name, current, decision, applied)


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
    source = f"Pulumi.{args.stack}.yaml"
    settings = stack_settings(Path(args.project), args.stack)
    if settings.autoscaling is None:
        raise ProgramInputError(f"{source}: {NAMESPACE}:{SETTINGS_KEY}.autoscaling.workers: required key is missing "
                                "(infra autoscale needs a scaling policy)")
    return settings.autoscaling.workers


def cmd_autoscale(args: argparse.Namespace) -> int:
    import docker
    from prometheus_client import start_http_server

    # Not argparse's `required`: the options sit beside the `simulate` subcommand, which does not take them.
    for flag, value in (("--service", args.service), ("--prometheus-url", args.prometheus_url)):
        if not value:
            raise ProgramInputError(f"{flag}: required (the controller needs the service and Prometheus)")
    if not args.policy and not args.stack:
        raise ProgramInputError("--policy or --stack: required (where the scaling policy comes from)")
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


def add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--policy", help="YAML file holding a scaling policy (autoscaling.workers' keys)")
    source.add_argument("--stack", help="read platform:settings.autoscaling.workers from Pulumi.<stack>.yaml")
    parser.add_argument("--project", default=DEFAULT_PROJECT,
                        help="directory holding the stack files (with --stack; default as `infra plan`'s)")


def add_autoscale_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", help="the Swarm service to scale (replicated; required)")
    parser.add_argument("--prometheus-url", help="Prometheus base URL, e.g. http://prometheus:9090 (required)")
    parser.add_argument("--docker-host", help="Docker Engine API URL (default: DOCKER_HOST or the local socket)")
    add_policy_arguments(parser)
    parser.add_argument("--interval", type=int, help="seconds between decisions (default: the policy's)")
    parser.add_argument("--once", action="store_true", help="take one decision and exit")
    parser.add_argument("--dry-run", action="store_true", help="decide and report, never update the service")
    parser.add_argument("--metrics-port", type=int, default=0, help="serve the controller's metrics on this port")
    parser.add_argument("--metrics-address", default="127.0.0.1", help="address of the metrics listener")
