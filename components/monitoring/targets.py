"""What Prometheus scrapes: one ScrapeTarget per endpoint, plus the exporters of the data stores."""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

_JOB_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_ADDRESS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*:[0-9]{1,5}$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Prometheus sets these itself; a static value would hide the real job/instance.
_RESERVED_LABELS = {"job", "instance"}


@dataclass(frozen=True)
class ScrapeTarget:
    job: str
    address: str  # "host:port", no scheme
    metrics_path: str = "/metrics"
    # Stored as a read-only copy so a frozen target cannot change after validation;
    # left out of the hash because a mapping is not hashable.
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    basic_auth: tuple[str, str] | None = None
    """(username, password file) Prometheus logs in with (basic_auth.password_file: no password in the config)."""

    def __post_init__(self) -> None:
        if not _JOB_NAME.match(self.job):
            raise ValueError(f"ScrapeTarget.job {self.job!r}: use lower-case letters, digits, '-' and '_'")
        if not _ADDRESS.match(self.address):
            raise ValueError(f"ScrapeTarget.address {self.address!r}: expected 'host:port' without a scheme")
        if not self.metrics_path.startswith("/"):
            raise ValueError(f"ScrapeTarget.metrics_path {self.metrics_path!r}: must start with '/'")
        for name, value in self.labels.items():
            if not _LABEL_NAME.match(name) or name.startswith("__") or name in _RESERVED_LABELS:
                raise ValueError(
                    f"ScrapeTarget.labels key {name!r}: must be a Prometheus label name, "
                    "not starting with '__' and not 'job' or 'instance'"
                )
            if not isinstance(value, str) or not value:
                raise ValueError(f"ScrapeTarget.labels[{name!r}]: must be a non-empty string")
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))


# Default ports of the exporters (each exporter's README, Prometheus default port allocations wiki); the job names are what the alert rules and
# MonitoringConfig.required_jobs refer to.
POSTGRES_EXPORTER_PORT = 9187
REDIS_EXPORTER_PORT = 9121
KAFKA_EXPORTER_PORT = 9308
NODE_EXPORTER_PORT = 9100
CADVISOR_PORT = 8080
CLICKHOUSE_METRICS_PORT = 9363
CLICKHOUSE_BACKUP_API_PORT = 7171


TASKS_DNS_PREFIX = "tasks."
"""A target host `tasks.<service>` names every task of a Swarm service (Docker DNS, one A record each)."""


def exporter_targets(
    *,
    postgres_exporter: str = "postgres-exporter",
    redis_exporter: str = "redis-exporter",
    kafka_exporter: str = "kafka-exporter",
    node_exporter: str = "node-exporter",
    cadvisor: str | None = None,
    clickhouse: str = "clickhouse",
    clickhouse_backup: str | None = None,
    clickhouse_backup_auth: tuple[str, str] | None = None,
) -> list[ScrapeTarget]:
    """Scrape targets for the data-store and host exporters, given their hostnames.

    clickhouse_backup is the `clickhouse-backup server` API container; its metrics feed the
    ClickHouse backup staleness alert, so leave it out only if backups are monitored elsewhere.
    """
    targets = [
        ScrapeTarget("postgres-exporter", f"{postgres_exporter}:{POSTGRES_EXPORTER_PORT}"),
        ScrapeTarget("redis-exporter", f"{redis_exporter}:{REDIS_EXPORTER_PORT}"),
        ScrapeTarget("kafka-exporter", f"{kafka_exporter}:{KAFKA_EXPORTER_PORT}"),
        ScrapeTarget("node-exporter", f"{node_exporter}:{NODE_EXPORTER_PORT}"),
        ScrapeTarget("clickhouse", f"{clickhouse}:{CLICKHOUSE_METRICS_PORT}"),
    ]
    # cAdvisor names containers only through the Docker API, which it reaches through its socket proxy (the one
    # holding the socket, CIS 5.32): a stack that accepts that adds it and gets the per-container alerts.
    if cadvisor is not None:
        targets.append(ScrapeTarget("cadvisor", f"{cadvisor}:{CADVISOR_PORT}"))
    if clickhouse_backup is not None:
        targets.append(ScrapeTarget("clickhouse-backup", f"{clickhouse_backup}:{CLICKHOUSE_BACKUP_API_PORT}",
                                    basic_auth=clickhouse_backup_auth))
    return targets
