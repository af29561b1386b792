"""Alert rules of the platform, each with the promtool test scenarios that prove it.

Every alert is defined once, from MonitoringConfig's thresholds, together with two kinds of
synthetic input: series just past the threshold (must fire once the `for:` duration has passed)
and series just inside it (must stay silent the whole time). Overriding a threshold therefore moves
the rule and its tests together.

The metrics the platform itself must expose for these rules are listed in README.md.
"""

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .model import MonitoringConfig, duration_seconds

# Label put on the blackbox probes of the public endpoint (render_prometheus_config sets it).
PROBE_SERVICE = "public-endpoint"
PROBE_JOB = "blackbox-https"

# Both scenarios are this close to the threshold, so a rule with the wrong comparison or a
# threshold that drifted from the config fails its tests.
_NEAR = 0.01
TEST_STEP_SECONDS = 60


# promtool input series: (series selector, values), one value per TEST_STEP_SECONDS from t=0.
Series = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Scenario:
    series: Series
    # Labels the rule's expression yields for each firing alert; empty when it must stay silent.
    alerts: tuple[Mapping[str, str], ...] = ()


@dataclass(frozen=True)
class AlertSpec:
    name: str
    group: str  # rule group: "critical" (pages), "warning" or "backups"
    # Alerts of one family and service describe the same problem: a critical one inhibits the
    # warnings of its family (see render_alertmanager_config).
    family: str
    expr: str
    for_: str
    summary: str
    description: str
    firing: tuple[Scenario, ...]
    silent: tuple[Scenario, ...]
    static_labels: Mapping[str, str] | None = None
    # Test data starts at t=0, so rate() of a single counter only reaches its real value once
    # its range is full; tests of such rules wait this much longer for the alert.
    warmup: str = "0s"

    @property
    def severity(self) -> str:
        return "critical" if self.group == "critical" else "warning"

    @property
    def labels(self) -> dict[str, str]:
        return {"severity": self.severity, "family": self.family, **(self.static_labels or {})}


def fire_time(for_: str, warmup: str = "0s") -> int:
    """Seconds after which a rule true from `warmup` + 1 step on has certainly fired (whole steps)."""
    seconds = duration_seconds(for_) + duration_seconds(warmup) + 2 * TEST_STEP_SECONDS
    return math.ceil(seconds / TEST_STEP_SECONDS) * TEST_STEP_SECONDS


def pending_time(for_: str) -> int | None:
    """A time at which a rule true from t=0 is still pending, or None if `for` is under one step."""
    seconds = duration_seconds(for_)
    if seconds < TEST_STEP_SECONDS:
        return None
    return (seconds - TEST_STEP_SECONDS) // TEST_STEP_SECONDS * TEST_STEP_SECONDS


def percent(ratio: float) -> str:
    return f"{ratio * 100:g}%"


def label(name: str) -> str:
    """Go template reference to a label of the alert's expression result."""
    return "{{ $labels." + name + " }}"


# Labels Prometheus attaches to the scraped series of each kind of target in the scenarios.
def _target(job: str, port: int) -> dict[str, str]:
    return {"job": job, "instance": f"{job}:{port}", "service": job}


_GATEWAY = _target("api-gateway", 8080)
_ORCHESTRATOR = _target("orchestrator", 8080)
_NODE = _target("node-exporter", 9100)
_CADVISOR = _target("cadvisor", 8080)
_KAFKA = _target("kafka-exporter", 9308)
_PROBE = {"job": PROBE_JOB, "instance": "https://jobs.example.org/", "service": PROBE_SERVICE}


def _selector(metric: str, labels: Mapping[str, str]) -> str:
    return metric + "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    return format(value, ".12g")


def _steps(seconds: int) -> int:
    return seconds // TEST_STEP_SECONDS + 1


def _gauge(metric: str, labels: Mapping[str, str], value: float, seconds: int) -> tuple[str, str]:
    return _selector(metric, labels), " ".join([_number(value)] * _steps(seconds))


def _counter(metric: str, labels: Mapping[str, str], per_step: float, seconds: int) -> tuple[str, str]:
    return _selector(metric, labels), " ".join(_number(per_step * i) for i in range(_steps(seconds)))


def _blip(metric: str, labels: Mapping[str, str], for_: str, seconds: int) -> tuple[str, str]:
    """0 ("down") for just under `for`, then 1: a rule `metric == 0` must never fire."""
    down = math.ceil(duration_seconds(for_) / TEST_STEP_SECONDS)
    values = ["0"] * down + ["1"] * (_steps(seconds) - down)
    return _selector(metric, labels), " ".join(values)


def _down(metric: str, labels: Mapping[str, str], for_: str) -> dict[str, tuple[Scenario, ...]]:
    """Scenarios of a rule `metric == 0`: down for good, and down for just under `for`."""
    end = fire_time(for_)
    return {
        "firing": (Scenario((_gauge(metric, labels, 0, end),), (labels,)),),
        "silent": (Scenario((_blip(metric, labels, for_, end),)),),
    }


def _around(
    build: Callable[[float], Series],
    threshold: float,
    alert: Mapping[str, str],
    *,
    fires_above: bool = True,
    ceiling: float | None = None,
) -> dict[str, tuple[Scenario, ...]]:
    """Scenarios just past and just inside `threshold`; build(value) returns the input series.
    A ratio can not pass 1 (a share above 100% needs a shrinking counter), hence `ceiling`.
    """
    past, inside = threshold * (1 + _NEAR), threshold * (1 - _NEAR)
    if ceiling is not None:
        past = min(past, (threshold + ceiling) / 2)
    if not fires_above:
        past, inside = inside, past
    return {"firing": (Scenario(build(past), (alert,)),), "silent": (Scenario(build(inside)),)}


def _ratio_of_counters(
    metric: str,
    labels: Mapping[str, str],
    part: Mapping[str, str],
    rest: Mapping[str, str],
    ratio: float,
    seconds: int,
    total_per_step: float = 600,
) -> Series:
    """Two counters whose `part` share of the total is `ratio`."""
    return (
        _counter(metric, {**labels, **part}, total_per_step * ratio, seconds),
        _counter(metric, {**labels, **rest}, total_per_step * (1 - ratio), seconds),
    )


def _critical(config: MonitoringConfig) -> list[AlertSpec]:
    t = config.alerts
    specs = [
        AlertSpec(
            name="ServiceDown",
            group="critical",
            family="availability",
            expr="up == 0",
            for_=t.service_down_for,
            summary=f"{label('service')} target {label('instance')} is down",
            description=f"Prometheus could not scrape {label('instance')} (job {label('job')}) "
            f"for more than {t.service_down_for}.",
            **_down("up", _GATEWAY, t.service_down_for),
        )
    ]

    # `up == 0` cannot fire for a job whose targets vanished (service discovery dropped them, or
    # the target list lost them), so each required job also gets an absence alert. In its
    # scenarios the other required jobs are up, so only the job under test can fire.
    end = fire_time(t.service_down_for)
    for job in config.required_jobs:
        others = tuple(
            _gauge("up", _target(other, 8080), 1, end) for other in config.required_jobs if other != job
        )
        one_up = _gauge("up", {"job": job, "instance": f"{job}-1:8080", "service": job}, 1, end)
        one_down = _gauge("up", {"job": job, "instance": f"{job}-2:8080", "service": job}, 0, end)
        specs.append(
            AlertSpec(
                name="ServiceAbsent",
                group="critical",
                family="availability",
                expr=f'absent(up{{job="{job}"}} == 1)',
                for_=t.service_down_for,
                summary=f"No {job} target is up",
                description=f"Prometheus has had no healthy {job} target for more than {t.service_down_for}; "
                "the service is down or no longer scraped.",
                firing=(Scenario(others + (_gauge("up", _target("prometheus", 9090), 1, end),), ({},)),),
                # One healthy instance out of two is enough.
                silent=(Scenario(others + (one_up, one_down)),),
                static_labels={"service": job},
            )
        )

    specs.append(
        AlertSpec(
            name="UptimeProbeFailed",
            group="critical",
            family="availability",
            expr="probe_success == 0",
            for_=t.service_down_for,
            summary=f"Public endpoint {label('instance')} is unreachable",
            description=f"The HTTPS probe of {label('instance')} has failed for more than {t.service_down_for}.",
            **_down("probe_success", _PROBE, t.service_down_for),
        )
    )

    end = fire_time(t.error_rate_for)
    requests = 'http_server_requests_seconds_count{uri!~"/actuator.*"'

    def errors(ratio: float) -> Series:
        http = {**_GATEWAY, "method": "POST", "uri": "/api/jobs"}
        server_error, success = (
            {"outcome": "SERVER_ERROR", "status": "500"},
            {"outcome": "SUCCESS", "status": "200"},
        )
        return _ratio_of_counters(
            "http_server_requests_seconds_count", http, server_error, success, ratio, end
        )

    specs.append(
        AlertSpec(
            name="HighErrorRate",
            group="critical",
            family="http",
            # A service without requests yields no ratio (the `> 0` filter), not a division by zero.
            expr=f'sum by (service) (rate({requests}, status=~"5.."}}[5m])) '
            f"/ (sum by (service) (rate({requests}}}[5m])) > 0) > {t.error_rate_ratio}",
            for_=t.error_rate_for,
            summary=f"{label('service')} answers more than {percent(t.error_rate_ratio)} of requests with 5xx",
            description=f"More than {percent(t.error_rate_ratio)} of {label('service')}'s HTTP requests failed "
            f"with a server error over 5m, for more than {t.error_rate_for}.",
            **_around(errors, t.error_rate_ratio, {"service": "api-gateway"}, ceiling=1),
        )
    )

    specs.append(
        AlertSpec(
            name="PostgresDown",
            group="critical",
            family="database",
            expr="pg_up == 0",
            for_=t.database_down_for,
            summary="PostgreSQL is unreachable",
            description=f"postgres_exporter {label('instance')} could not connect to PostgreSQL "
            f"for more than {t.database_down_for}.",
            **_down("pg_up", _target("postgres-exporter", 9187), t.database_down_for),
        )
    )
    specs.append(
        AlertSpec(
            name="RedisDown",
            group="critical",
            family="database",
            expr="redis_up == 0",
            for_=t.database_down_for,
            summary="Redis is unreachable",
            description=f"redis_exporter {label('instance')} could not connect to Redis "
            f"for more than {t.database_down_for}.",
            **_down("redis_up", _target("redis-exporter", 9121), t.database_down_for),
        )
    )

    specs.append(_wal_archive_failing(config))

    end = fire_time(t.database_down_for)
    pool = {**_ORCHESTRATOR, "pool": "HikariPool-1"}
    specs.append(
        AlertSpec(
            name="DatabaseConnectionTimeouts",
            group="critical",
            family="database",
            expr="sum by (service) (increase(hikaricp_connections_timeout_total[5m])) > 0",
            for_=t.database_down_for,
            summary=f"{label('service')} cannot get database connections",
            description=f"{label('service')}'s connection pool timed out handing out connections "
            f"for more than {t.database_down_for}.",
            firing=(
                Scenario(
                    (_counter("hikaricp_connections_timeout_total", pool, 1, end),),
                    ({"service": "orchestrator"},),
                ),
            ),
            silent=(Scenario((_counter("hikaricp_connections_timeout_total", pool, 0, end),)),),
        )
    )

    end = fire_time(t.kafka_consumer_lag_for)
    lag = t.kafka_consumer_lag_messages
    # Whole messages: at least one past or inside the threshold.
    step = max(1, round(lag * _NEAR))

    def lag_series(total: int) -> Series:
        # Split over two partitions, which the rule must add up; another group lags a little.
        workers = {**_KAFKA, "consumergroup": "job-workers", "topic": "jobs"}
        other_group = {**_KAFKA, "consumergroup": "log-aggregator", "topic": "logs", "partition": "0"}
        return (
            _gauge("kafka_consumergroup_lag", {**workers, "partition": "0"}, total // 2, end),
            _gauge("kafka_consumergroup_lag", {**workers, "partition": "1"}, total - total // 2, end),
            _gauge("kafka_consumergroup_lag", other_group, step, end),
        )

    specs.append(
        AlertSpec(
            name="KafkaConsumerLagHigh",
            group="critical",
            family="kafka",
            expr=f"sum by (service, consumergroup) (kafka_consumergroup_lag) > {lag}",
            for_=t.kafka_consumer_lag_for,
            summary=f"Kafka consumer group {label('consumergroup')} lags more than {lag} messages",
            description=f"Consumer group {label('consumergroup')} has been more than {lag} messages behind "
            f"for more than {t.kafka_consumer_lag_for}.",
            firing=(
                Scenario(
                    lag_series(lag + step), ({"service": "kafka-exporter", "consumergroup": "job-workers"},)
                ),
            ),
            silent=(Scenario(lag_series(lag - step)),),
        )
    )

    end = fire_time(t.disk_free_for)
    root_fs = {**_NODE, "device": "/dev/sda1", "fstype": "ext4", "mountpoint": "/"}

    def disk(free: float) -> Series:
        size = 100e9
        # A full tmpfs must not page anyone.
        tmpfs = {**_NODE, "device": "tmpfs", "fstype": "tmpfs", "mountpoint": "/run"}
        return tuple(
            series
            for fs, share in ((root_fs, free), (tmpfs, 0.001))
            for series in (
                _gauge("node_filesystem_avail_bytes", fs, round(size * share), end),
                _gauge("node_filesystem_size_bytes", fs, size, end),
                _gauge("node_filesystem_readonly", fs, 0, end),
            )
        )

    specs.append(
        AlertSpec(
            name="DiskSpaceLow",
            group="critical",
            family="disk",
            # Pseudo and network filesystems are not ours to fill; size 0 gives no ratio.
            expr='node_filesystem_avail_bytes{fstype!~"^(fuse.*|tmpfs|cifs|nfs)"} '
            f"/ (node_filesystem_size_bytes > 0) < {t.disk_free_ratio} "
            "and on (instance, device, mountpoint) node_filesystem_readonly == 0",
            for_=t.disk_free_for,
            summary=f"Less than {percent(t.disk_free_ratio)} disk space left on {label('mountpoint')}",
            description=f"Filesystem {label('device')} mounted on {label('mountpoint')} of {label('instance')} "
            f"has had less than {percent(t.disk_free_ratio)} free space for more than {t.disk_free_for}.",
            **_around(disk, t.disk_free_ratio, root_fs, fires_above=False),
        )
    )
    return specs


def _warning(config: MonitoringConfig) -> list[AlertSpec]:
    t = config.alerts
    specs = []

    end = fire_time(t.workers_at_max_for)
    scaled = {**_target("autoscaler", 9464), "swarm_service": "orchestration-prod-worker"}

    def replicas(desired: int) -> Series:
        return (_gauge("autoscaler_desired_replicas", scaled, desired, end),
                _gauge("autoscaler_max_replicas", scaled, 12, end))

    specs.append(
        AlertSpec(
            name="WorkersAtMaxReplicas",
            group="warning",
            family="autoscaling",
            expr="autoscaler_desired_replicas >= autoscaler_max_replicas",
            for_=t.workers_at_max_for,
            summary=f"{label('swarm_service')} has wanted its maximum replicas for {t.workers_at_max_for}",
            description=f"The autoscaler has kept {label('swarm_service')} at max_replicas for more than "
            f"{t.workers_at_max_for}: the Kafka lag needs more workers than the policy (or the topic's "
            "partitions) allow. Raise autoscaling.workers.max_replicas with the partitions, or find the slow "
            "consumer.",
            firing=(Scenario(replicas(12), (scaled,)),),
            silent=(Scenario(replicas(11)),),
        )
    )

    end = fire_time(t.stuck_partitions_for)
    specs.append(
        AlertSpec(
            name="AutoscalerStuckPartitions",
            group="warning",
            family="autoscaling",
            expr="autoscaler_stuck_partitions > 0",
            for_=t.stuck_partitions_for,
            summary=f"Kafka partitions consumed by {label('swarm_service')} stuck for {t.stuck_partitions_for}",
            description=f"Partitions of the topic the service {label('swarm_service')} consumes have lag and a "
            "committed offset "
            "that has not moved for autoscaling.workers.stuck_after_seconds (a poison message, a consumer stuck on "
            f"one record) for more than {t.stuck_partitions_for}. The autoscaler leaves their lag out; their "
            "messages wait until someone looks.",
            firing=(Scenario((_gauge("autoscaler_stuck_partitions", scaled, 1, end),), (scaled,)),),
            silent=(Scenario((_gauge("autoscaler_stuck_partitions", scaled, 0, end),)),),
        )
    )

    end = fire_time(t.autoscaler_fallback_for)
    specs.append(
        AlertSpec(
            name="AutoscalerFallback",
            group="warning",
            family="autoscaling",
            expr="autoscaler_fallback_active == 1",
            for_=t.autoscaler_fallback_for,
            summary=f"The autoscaler of {label('swarm_service')} cannot read the Kafka lag: its fallback decides",
            description=f"The autoscaler of {label('swarm_service')} has failed to read a fresh Kafka lag "
            "from Prometheus autoscaling.workers.failure_threshold times in a row, for more than "
            f"{t.autoscaler_fallback_for}: it holds the workers (or raises them to fallback.replicas_if_higher) "
            "and never scales them in until a read succeeds.",
            firing=(Scenario((_gauge("autoscaler_fallback_active", scaled, 1, end),), (scaled,)),),
            silent=(Scenario((_gauge("autoscaler_fallback_active", scaled, 0, end),)),),
        )
    )

    end = fire_time(t.job_failure_for)
    completed = "orchestrator_jobs_completed_total"

    def failures(ratio: float) -> Series:
        return _ratio_of_counters(
            completed, _ORCHESTRATOR, {"status": "failed"}, {"status": "succeeded"}, ratio, end
        )

    specs.append(
        AlertSpec(
            name="JobFailureRateHigh",
            group="warning",
            family="jobs",
            expr=f'sum by (service) (rate({completed}{{status="failed"}}[15m])) '
            f"/ (sum by (service) (rate({completed}[15m])) > 0) > {t.job_failure_ratio}",
            for_=t.job_failure_for,
            summary=f"More than {percent(t.job_failure_ratio)} of jobs fail",
            description=f"More than {percent(t.job_failure_ratio)} of the jobs completed by {label('service')} "
            f"over 15m failed, for more than {t.job_failure_for}.",
            **_around(failures, t.job_failure_ratio, {"service": "orchestrator"}, ceiling=1),
        )
    )

    end = fire_time(t.latency_p95_for)

    def latency(p95: float) -> Series:
        # All requests in one bucket (0, upper]: histogram_quantile interpolates p95 = 0.95 * upper.
        http = {**_GATEWAY, "method": "GET", "outcome": "SUCCESS", "status": "200", "uri": "/api/jobs"}
        upper = _number(p95 / 0.95)
        return tuple(
            _counter("http_server_requests_seconds_bucket", {**http, "le": le}, 60, end)
            for le in (upper, "+Inf")
        )

    specs.append(
        AlertSpec(
            name="HighLatencyP95",
            group="warning",
            family="http",
            # No requests give NaN, which never compares greater.
            expr="histogram_quantile(0.95, sum by (service, le) "
            f'(rate(http_server_requests_seconds_bucket{{uri!~"/actuator.*"}}[5m]))) > {t.latency_p95_seconds}',
            for_=t.latency_p95_for,
            summary=f"{label('service')} p95 response time is above {t.latency_p95_seconds:g}s",
            description=f"The 95th percentile of {label('service')}'s HTTP response time over 5m has been above "
            f"{t.latency_p95_seconds:g}s for more than {t.latency_p95_for}.",
            **_around(latency, t.latency_p95_seconds, {"service": "api-gateway"}),
        )
    )

    end = fire_time(t.memory_used_for)

    def host_memory(used: float) -> Series:
        total = 16e9
        return (
            _gauge("node_memory_MemAvailable_bytes", _NODE, round(total * (1 - used)), end),
            _gauge("node_memory_MemTotal_bytes", _NODE, total, end),
        )

    specs.append(
        AlertSpec(
            name="HostMemoryHigh",
            group="warning",
            family="resources",
            expr=f"1 - node_memory_MemAvailable_bytes / (node_memory_MemTotal_bytes > 0) > {t.memory_used_ratio}",
            for_=t.memory_used_for,
            summary=f"Host {label('instance')} uses more than {percent(t.memory_used_ratio)} of its memory",
            description=f"Less than {percent(1 - t.memory_used_ratio)} of {label('instance')}'s memory has been "
            f"available for more than {t.memory_used_for}.",
            **_around(host_memory, t.memory_used_ratio, _NODE, ceiling=1),
        )
    )

    # cAdvisor names series after the container; "worker-2" belongs to service "worker", so
    # label_replace gives container alerts the `service` label that inhibition matches on.
    def by_service(expr: str) -> str:
        return f'label_replace({expr}, "service", "$1", "name", "(.+?)(?:-[0-9]+)?")'

    worker = {**_CADVISOR, "id": "/docker/0123abcd", "name": "worker-2"}
    unlimited = {**_CADVISOR, "id": "/docker/4567cdef", "name": "redis"}
    worker_alert = {"instance": _CADVISOR["instance"], "name": "worker-2", "service": "worker"}

    def container_memory(used: float) -> Series:
        limit = 2e9
        return (
            _gauge("container_memory_working_set_bytes", worker, round(limit * used), end),
            _gauge("container_spec_memory_limit_bytes", worker, limit, end),
            # No limit is reported as 0: no ratio, rather than a division by zero.
            _gauge("container_memory_working_set_bytes", unlimited, limit, end),
            _gauge("container_spec_memory_limit_bytes", unlimited, 0, end),
        )

    specs.append(
        AlertSpec(
            name="ContainerMemoryHigh",
            group="warning",
            family="resources",
            expr=by_service(
                'sum by (instance, name) (container_memory_working_set_bytes{name!=""}) '
                '/ (sum by (instance, name) (container_spec_memory_limit_bytes{name!=""}) > 0) '
                f"> {t.memory_used_ratio}"
            ),
            for_=t.memory_used_for,
            summary=f"Container {label('name')} uses more than {percent(t.memory_used_ratio)} of its memory limit",
            description=f"Container {label('name')}'s working set has been above {percent(t.memory_used_ratio)} "
            f"of its memory limit for more than {t.memory_used_for}; it risks being OOM-killed.",
            **_around(container_memory, t.memory_used_ratio, worker_alert, ceiling=1),
        )
    )

    end = fire_time(t.cpu_used_for)

    def host_cpu(used: float) -> Series:
        busy = TEST_STEP_SECONDS * used
        return tuple(
            _counter("node_cpu_seconds_total", {**_NODE, "cpu": cpu, "mode": mode}, seconds, end)
            for cpu in ("0", "1")
            for mode, seconds in (("idle", TEST_STEP_SECONDS - busy), ("user", busy))
        )

    specs.append(
        AlertSpec(
            name="HostCpuHigh",
            group="warning",
            family="resources",
            # Busy share of all CPU seconds rather than 1 - idle rate: a ratio of rates stays right
            # across missed scrapes and counter resets.
            expr='sum without (cpu, mode) (rate(node_cpu_seconds_total{mode!="idle"}[5m])) '
            f"/ (sum without (cpu, mode) (rate(node_cpu_seconds_total[5m])) > 0) > {t.cpu_used_ratio}",
            for_=t.cpu_used_for,
            summary=f"Host {label('instance')} CPU is above {percent(t.cpu_used_ratio)}",
            description=f"{label('instance')}'s CPUs have been busy more than {percent(t.cpu_used_ratio)} "
            f"of the time for more than {t.cpu_used_for}.",
            **_around(host_cpu, t.cpu_used_ratio, _NODE, ceiling=1),
        )
    )

    end = fire_time(t.cpu_used_for, warmup="5m")

    def container_cpu(used: float) -> Series:
        cpus = 2
        return (
            _counter("container_cpu_usage_seconds_total", worker, TEST_STEP_SECONDS * cpus * used, end),
            _gauge("container_spec_cpu_quota", worker, cpus * 100_000, end),
            _gauge("container_spec_cpu_period", worker, 100_000, end),
            # No CPU limit: no quota series, so no ratio.
            _counter("container_cpu_usage_seconds_total", unlimited, TEST_STEP_SECONDS * 4, end),
        )

    specs.append(
        AlertSpec(
            name="ContainerCpuHigh",
            group="warning",
            family="resources",
            expr=by_service(
                'sum by (instance, name) (rate(container_cpu_usage_seconds_total{name!=""}[5m])) '
                '/ (sum by (instance, name) (container_spec_cpu_quota{name!=""} > 0) '
                '/ sum by (instance, name) (container_spec_cpu_period{name!=""} > 0)) '
                f"> {t.cpu_used_ratio}"
            ),
            for_=t.cpu_used_for,
            summary=f"Container {label('name')} uses more than {percent(t.cpu_used_ratio)} of its CPU limit",
            description=f"Container {label('name')} has used more than {percent(t.cpu_used_ratio)} of its CPU "
            f"quota for more than {t.cpu_used_for}; it is being throttled.",
            **_around(container_cpu, t.cpu_used_ratio, worker_alert, ceiling=1),
            warmup="5m",
        )
    )

    end = fire_time(t.failed_logins_for, warmup="5m")
    attempts = "auth_login_attempts_total"

    def logins(failed_per_minute: float) -> Series:
        per_step = TEST_STEP_SECONDS / 60
        return (
            _counter(attempts, {**_GATEWAY, "outcome": "failure"}, failed_per_minute * per_step, end),
            _counter(attempts, {**_GATEWAY, "outcome": "success"}, 100 * per_step, end),
        )

    specs.append(
        AlertSpec(
            name="UnusualLoginActivity",
            group="warning",
            family="security",
            expr=f'sum by (service) (rate({attempts}{{outcome="failure"}}[5m])) * 60 > {t.failed_logins_per_minute:g}',
            for_=t.failed_logins_for,
            summary=f"More than {t.failed_logins_per_minute:g} failed logins per minute",
            description=f"{label('service')} has rejected more than {t.failed_logins_per_minute:g} logins per "
            f"minute for more than {t.failed_logins_for}: credential stuffing or brute force?",
            **_around(logins, t.failed_logins_per_minute, {"service": "api-gateway"}),
            warmup="5m",
        )
    )

    end = fire_time(t.tls_certificate_for)
    min_seconds = t.tls_certificate_min_days * 86400
    expiry = "probe_ssl_earliest_cert_expiry"
    specs.append(
        AlertSpec(
            name="TlsCertificateExpiringSoon",
            group="warning",
            family="tls",
            expr=f"{expiry} - time() < {t.tls_certificate_min_days} * 86400",
            for_=t.tls_certificate_for,
            summary=f"TLS certificate of {label('instance')} expires in less than {t.tls_certificate_min_days} days",
            description=f"The certificate served by {label('instance')} expires within "
            f"{t.tls_certificate_min_days} days; renewal is not working.",
            # Expiry timestamps relative to the test clock, which starts at 0; the silent one stays
            # just outside the window until the last check.
            firing=(Scenario((_gauge(expiry, _PROBE, min_seconds * (1 - _NEAR), end),), (_PROBE,)),),
            silent=(Scenario((_gauge(expiry, _PROBE, end + min_seconds * (1 + _NEAR), end),)),),
        )
    )
    return specs


def _wal_archive_failing(config: MonitoringConfig) -> AlertSpec:
    """The archiver fails and archives nothing: PostgreSQL keeps every segment from the one it cannot
    archive on, until its volume is full. postgres_exporter v0.17.1 exports pg_stat_archiver's counters
    among its default metrics (cmd/postgres_exporter/postgres_exporter.go builtinMetricMaps
    "pg_stat_archiver": archived_count, failed_count). A failing segment is retried three times, then
    once a minute (PostgreSQL pgarch.c); a flaky store that still archives does not fire."""
    for_ = config.alerts.wal_archive_failing_for
    end = fire_time(for_)
    exporter = _target("postgres-exporter", 9187)
    stuck = duration_seconds(for_) // TEST_STEP_SECONDS  # steps: one less than the rule needs to fire

    def counters(failed: list[int], archived: list[int]) -> Series:
        return (
            (_selector("pg_stat_archiver_failed_count", exporter), " ".join(map(str, failed))),
            (_selector("pg_stat_archiver_archived_count", exporter), " ".join(map(str, archived))),
        )

    steps = range(_steps(end))
    return AlertSpec(
        name="PostgresWalArchiveFailing",
        group="critical",
        family="database",
        expr="increase(pg_stat_archiver_failed_count[5m]) > 0 "
        "and increase(pg_stat_archiver_archived_count[5m]) == 0",
        for_=for_,
        summary="PostgreSQL cannot archive its WAL",
        description=f"PostgreSQL on {label('instance')} has failed to archive WAL, with no segment archived, "
        f"for more than {for_}: point-in-time recovery stops there, and the unarchived segments fill its volume.",
        firing=(Scenario(counters([3 * i for i in steps], [7 for _ in steps]), (exporter,)),),
        silent=(
            # Stuck for just under `for`, then archiving again (the stanza created, the store back).
            Scenario(counters([3 * min(i, stuck) for i in steps], [7 + max(0, i - stuck) for i in steps])),
            # A flaky store: some pushes fail, but segments are archived.
            Scenario(counters(list(steps), list(steps))),
        ),
    )


def _backups(config: MonitoringConfig) -> list[AlertSpec]:
    t = config.alerts
    end = fire_time(t.backup_stale_for)

    def stale(
        name: str,
        service: str,
        what: str,
        max_age: str,
        metric: str,
        matchers: Mapping[str, str],
        scraped_from: Mapping[str, str],
    ) -> AlertSpec:
        seconds = duration_seconds(max_age)
        selector = _selector(metric, matchers) if matchers else metric
        by = f" by ({', '.join(matchers)})" if matchers else ""
        written = {**scraped_from, **matchers}
        return AlertSpec(
            name=name,
            group="backups",
            family="backup",
            # A metric that was never written means no backup ran, which is just as stale.
            expr=f"time() - max{by} ({selector}) > {seconds} or absent({selector})",
            for_=t.backup_stale_for,
            summary=f"No successful {what} for more than {max_age}",
            description=f"The last successful {what} is older than {max_age} (or none was ever recorded); "
            "check the backup job's logs.",
            # Timestamps relative to the test clock, which starts at 0: one too old from the start,
            # none at all, and one that is just young enough at the last check.
            firing=(
                Scenario((_gauge(metric, written, -seconds * (1 + _NEAR), end),), (matchers,)),
                Scenario((_gauge("node_boot_time_seconds", _NODE, 0, end),), (matchers,)),
            ),
            silent=(Scenario((_gauge(metric, written, end - seconds * (1 - _NEAR), end),)),),
            static_labels={"service": service},
        )

    # PostgreSQL backup jobs write this to node_exporter's textfile collector.
    timestamp = "backup_last_success_timestamp_seconds"
    clickhouse_backup = _target("clickhouse-backup", 7171)
    return [
        stale(
            "PostgresIncrementalBackupStale",
            "postgres",
            "incremental PostgreSQL backup",
            t.postgres_incremental_backup_max_age,
            timestamp,
            {"type": "incr"},
            _NODE,
        ),
        stale(
            "PostgresFullBackupStale",
            "postgres",
            "full PostgreSQL backup",
            t.postgres_full_backup_max_age,
            timestamp,
            {"type": "full"},
            _NODE,
        ),
        stale(
            "ClickHouseBackupStale",
            "clickhouse-backup",
            "ClickHouse backup (create_remote)",
            t.clickhouse_backup_max_age,
            "clickhouse_backup_last_create_remote_finish",
            {},
            clickhouse_backup,
        ),
        AlertSpec(
            name="ClickHouseBackupFailed",
            group="backups",
            family="backup",
            # Status 0 = failed, 1 = success, 2 = unknown (clickhouse-backup metrics.go).
            expr="clickhouse_backup_last_create_remote_status == 0",
            for_=t.backup_stale_for,
            summary="The last ClickHouse backup failed",
            description=f"clickhouse-backup on {label('instance')} reports its last create_remote as failed.",
            **_down("clickhouse_backup_last_create_remote_status", clickhouse_backup, t.backup_stale_for),
        ),
    ]


def alert_specs(config: MonitoringConfig) -> Sequence[AlertSpec]:
    return [*_critical(config), *_warning(config), *_backups(config)]
