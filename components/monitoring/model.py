"""Settings of the observability stack, with production defaults from the checklist (infra/checklist.yaml).

Secrets (SMTP password, Slack webhook URL) have no field here on purpose: the renderers take the
paths of the files that hold them, so a secret never reaches a config value, a state file or a log.
"""

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

# A subset of Prometheus' duration syntax, largest unit first ("1d12h", "90s"); Prometheus,
# Alertmanager and promtool all accept it, and it is easy to turn into seconds for rule tests.
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNIT_SECONDS = (86400, 3600, 60, 1)
_SIZE = re.compile(r"^[1-9][0-9]*(?:B|KB|MB|GB|TB|PB)$")
_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*:[0-9]{1,5}$")
_SLACK_CHANNEL = re.compile(r"^#[a-z0-9][a-z0-9._-]{0,79}$")
_JOB_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def duration_seconds(duration: str) -> int:
    """Seconds of a duration such as '2m' or '1d12h'; raises ValueError for anything else."""
    match = _DURATION.match(duration)
    if not duration or not match:
        raise ValueError(
            f"{duration!r} is not a duration: use whole numbers with units d, h, m, s, "
            "largest first, e.g. '30s', '5m', '26h', '8d'"
        )
    return sum(int(n) * unit for n, unit in zip(match.groups(), _UNIT_SECONDS, strict=True) if n)


def _positive_duration(value: str) -> str:
    if duration_seconds(value) == 0:
        raise ValueError(f"{value!r} must be longer than 0s")
    return value


def _size(value: str) -> str:
    if not _SIZE.match(value):
        raise ValueError(
            f"{value!r} is not a size: use a whole number with B, KB, MB, GB, TB or PB, e.g. '20GB'"
        )
    return value


def _pattern(regex: re.Pattern[str], what: str):
    def check(value: str) -> str:
        if not regex.match(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return check


Duration = Annotated[str, AfterValidator(_positive_duration)]
Size = Annotated[str, AfterValidator(_size)]
Ratio = Annotated[float, Field(gt=0, lt=1)]
Email = Annotated[str, AfterValidator(_pattern(_EMAIL, "a single e-mail address like ops@example.org"))]
HostPort = Annotated[str, AfterValidator(_pattern(_HOST_PORT, "'host:port', e.g. 'smtp.example.org:587'"))]
SlackChannel = Annotated[
    str,
    AfterValidator(_pattern(_SLACK_CHANNEL, "a Slack channel like '#alerts' (lower case, starts with '#')")),
]
JobName = Annotated[
    str, AfterValidator(_pattern(_JOB_NAME, "a job name (lower-case letters, digits, '-', '_')"))
]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlertThresholds(_Frozen):
    """Checklist alert thresholds ("Alerts Configuration"); each `*_for` is the rule's `for:`."""

    service_down_for: Duration = "2m"
    error_rate_ratio: Ratio = 0.10
    error_rate_for: Duration = "5m"
    database_down_for: Duration = "1m"
    kafka_consumer_lag_messages: int = Field(default=10_000, gt=0)
    kafka_consumer_lag_for: Duration = "5m"
    disk_free_ratio: Ratio = 0.10
    disk_free_for: Duration = "2m"
    job_failure_ratio: Ratio = 0.05
    job_failure_for: Duration = "10m"
    latency_p95_seconds: float = Field(default=2.0, gt=0)
    latency_p95_for: Duration = "5m"
    memory_used_ratio: Ratio = 0.80
    memory_used_for: Duration = "5m"
    cpu_used_ratio: Ratio = 0.80
    cpu_used_for: Duration = "10m"
    # "Unusual login activity": failed logins per minute summed over a service's instances.
    failed_logins_per_minute: float = Field(default=5.0, gt=0)
    failed_logins_for: Duration = "5m"
    # The autoscaler wants max_replicas this long: the policy's ceiling, or the topic's partitions, is too low.
    workers_at_max_for: Duration = "30m"
    # The autoscaler leaves stuck partitions (a poison message) out this long: someone must look at them.
    stuck_partitions_for: Duration = "5m"
    # The autoscaler's lag reads have failed (autoscaling.workers.failure_threshold in a row) this long.
    autoscaler_fallback_for: Duration = "1m"
    tls_certificate_min_days: int = Field(default=14, gt=0)
    tls_certificate_for: Duration = "15m"
    # Backup freshness ("Backup Schedule": hourly incremental, daily full, weekly ClickHouse),
    # each with slack for one late run.
    postgres_incremental_backup_max_age: Duration = "2h"
    postgres_full_backup_max_age: Duration = "26h"
    clickhouse_backup_max_age: Duration = "8d"
    backup_stale_for: Duration = "10m"
    # PostgreSQL keeps every WAL segment it could not archive: a stuck archiver fills its volume.
    wal_archive_failing_for: Duration = "10m"


class SuccessCriteria(_Frozen):
    """The checklist's "Success Criteria" where no alert holds them (`infra verify --phase success`); the job
    success rate is the JobFailureRateHigh threshold's complement and the 5xx count must be zero."""

    latency_p95_seconds: float = Field(default=0.5, gt=0)


class IndexUse(_Frozen):
    """`infra verify`'s "Database indexes verified", from PostgreSQL's own statistics (pg_stat_user_tables, as
    postgres_exporter's stat_user_tables collector exports them): a table of at least `min_live_rows` live rows
    whose scans over the window were more than `max_seq_scan_ratio` sequential lacks an index its queries need.
    Smaller tables are left out: PostgreSQL rightly reads a table of a few pages sequentially."""

    min_live_rows: int = Field(default=10_000, gt=0)
    max_seq_scan_ratio: Ratio = 0.5


class EmailReceiver(_Frozen):
    to: Email
    from_address: Email
    smarthost: HostPort
    auth_username: str = Field(min_length=1)
    # Never send alert contents or SMTP credentials in clear text.
    require_tls: bool = True


class SlackReceiver(_Frozen):
    channel: SlackChannel
    # Critical alerts go here when set, so pages stand out from warnings.
    critical_channel: SlackChannel | None = None


class Routing(_Frozen):
    group_by: tuple[str, ...] = ("alertname", "service")
    group_wait: Duration = "30s"
    group_interval: Duration = "5m"
    repeat_interval: Duration = "12h"
    # Pager style: notify fast and remind often until someone acts.
    critical_group_wait: Duration = "10s"
    critical_group_interval: Duration = "1m"
    critical_repeat_interval: Duration = "30m"


APP_JOBS = ("api-gateway", "orchestrator", "worker", "log-aggregator", "query-service")
EXPORTER_JOBS = (
    "postgres-exporter",
    "redis-exporter",
    "kafka-exporter",
    "node-exporter",
    "clickhouse",
)


class MonitoringConfig(_Frozen):
    scrape_interval: Duration = "15s"
    scrape_timeout: Duration = "10s"
    evaluation_interval: Duration = "15s"
    # Bounded by time and by size so the TSDB cannot fill the data volume (policy MON-004);
    # Prometheus reads size units as powers of 2 (20GB = 20GiB).
    retention_time: Duration = "15d"
    retention_size: Size = "20GB"
    # Jobs that must have a scrape target (render_prometheus_config refuses a config without
    # them) and that get a ServiceAbsent alert when no target of theirs is up.
    required_jobs: tuple[JobName, ...] = APP_JOBS + EXPORTER_JOBS
    alerts: AlertThresholds = AlertThresholds()
    success: SuccessCriteria = SuccessCriteria()
    index_use: IndexUse = IndexUse()
    email: EmailReceiver
    slack: SlackReceiver
    routing: Routing = Routing()
    # Alerts link to f"{runbook_base_url}#{alertname}", the alert's entry in the runbook; the default is
    # the repository's docs/RUNBOOK.md (tests/test_docs.py keeps one entry per alert).
    runbook_base_url: str = Field(default="docs/RUNBOOK.md", min_length=1)

    @model_validator(mode="after")
    def _timeout_fits_interval(self) -> "MonitoringConfig":
        if duration_seconds(self.scrape_timeout) > duration_seconds(self.scrape_interval):
            raise ValueError(
                f"scrape_timeout ({self.scrape_timeout}) must not exceed scrape_interval ({self.scrape_interval})"
            )
        if len(set(self.required_jobs)) != len(self.required_jobs):
            raise ValueError(f"required_jobs lists a job twice: {self.required_jobs}")
        return self
