"""Backup settings of a stack (`platform:settings.backups`): the store, and each backup class's schedule,
freshness and retention. Defaults are the checklist's schedule: hourly incremental and daily full
PostgreSQL, weekly full ClickHouse, monthly log archive, daily configuration and TLS material."""

from __future__ import annotations

import math
import re
import ssl
from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from platform_infra.components.monitoring.model import Duration, duration_seconds

# S3 bucket naming rules (AWS "Bucket naming rules"): 3-63 lower-case letters, digits, dots and hyphens.
_BUCKET = re.compile(r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Five cron fields as supercronic and crond read them; each field digits, *, ranges, steps and lists.
_CRON_FIELD = r"(\*|[0-9]+(-[0-9]+)?)(/[0-9]+)?(,(\*|[0-9]+(-[0-9]+)?)(/[0-9]+)?)*"
_CRON = re.compile(rf"^{_CRON_FIELD}( {_CRON_FIELD}){{4}}$")

ClassName = Literal["incr", "full", "clickhouse", "logs", "config"]
CLASSES: tuple[ClassName, ...] = ("incr", "full", "clickhouse", "logs", "config")
# Where each class lives in the bucket. pgBackRest keeps incrementals, fulls and WAL in one repository,
# so both PostgreSQL classes share a prefix (and a lifecycle rule sized for the fulls they depend on).
PREFIXES: dict[ClassName, str] = {"incr": "postgres/", "full": "postgres/", "clickhouse": "clickhouse/",
                                  "logs": "logs/", "config": "config/"}


def _cron(value: str) -> str:
    if not _CRON.match(value):
        raise ValueError(f"{value!r} is not a five-field cron schedule such as '0 * * * *'")
    return value


def _bucket(value: str) -> str:
    if not _BUCKET.match(value):
        raise ValueError(f"{value!r} is not an S3 bucket name (3-63 of a-z, 0-9, '.', '-')")
    if "." in value:
        # The stack addresses the bucket by virtual host over TLS (components/backup/gateway.py), and a
        # wildcard certificate (*.s3.<region>.amazonaws.com) covers one label only (AWS "Bucket naming rules").
        raise ValueError(f"{value!r}: a bucket reached by virtual host over TLS has no '.' in its name")
    return value


Cron = Annotated[str, AfterValidator(_cron)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Schedule(Model):
    schedule: Cron
    """When the job runs (cron, UTC)."""
    max_age: Duration
    """`infra backup verify` calls the class stale past this age (schedule plus the time a run takes)."""


class ObjectLock(Model):
    """S3 Object Lock's default retention: every object version the jobs write cannot be deleted, by anyone
    (COMPLIANCE, the default: not the administrative key, not the account's root) or by any key without
    s3:BypassGovernanceRetention (GOVERNANCE: the administrative key only), until it is `days` old."""

    mode: Literal["GOVERNANCE", "COMPLIANCE"] = "COMPLIANCE"
    days: int | None = Field(default=None, ge=1, le=36500)
    """Omitted: the shortest expiry of the backup classes (BackupConfig.lock_days)."""


class BackupConfig(Model):
    bucket: Annotated[str, AfterValidator(_bucket)]
    endpoint: str | None = Field(default=None, pattern=r"^https://[^/\s]+/?$")
    """An S3-compatible endpoint (MinIO, Ceph) as https://host[:port]; omitted: AWS S3 of `region`."""
    endpoint_ca: str | None = None
    """PEM of the CA that issued `endpoint`'s certificate when a private one did; every client of the store
    (PostgreSQL's archiving, the jobs) then trusts that CA alone, instead of the images' public roots."""
    region: str = Field(default="us-east-1", pattern=r"^[a-z0-9-]{2,32}$")
    stanza: str = Field(default="platform", pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    incr: Schedule = Schedule(schedule="0 * * * *", max_age="2h")
    full: Schedule = Schedule(schedule="30 1 * * *", max_age="26h")
    clickhouse: Schedule = Schedule(schedule="0 2 * * 0", max_age="8d")
    """clickhouse-backup's server schedules by interval, not cron: a full every max_age less a day."""
    logs: Schedule = Schedule(schedule="0 3 1 * *", max_age="32d")
    config: Schedule = Schedule(schedule="0 4 * * *", max_age="26h")
    postgres_retention_days: int = Field(default=14, ge=1, le=3650)
    """pgBackRest keeps what restores to any point of the last N days (repo1-retention-full-type=time)."""
    clickhouse_retention_days: int = Field(default=28, ge=7, le=3650)
    log_retention_days: int = Field(default=365, ge=30, le=3650)
    config_retention_days: int = Field(default=90, ge=7, le=3650)
    noncurrent_version_days: int = Field(default=7, ge=1, le=365)
    """Overwritten or deleted objects stay recoverable this long (versioning)."""
    abort_multipart_days: int = Field(default=2, ge=1, le=30)
    object_lock: ObjectLock | None = ObjectLock()
    """None only for a store without S3 Object Lock (then nothing protects a version from the administrative key)."""

    @model_validator(mode="after")
    def _endpoint_ca(self) -> BackupConfig:
        if self.endpoint_ca is None:
            return self
        if self.endpoint is None:
            raise ValueError("endpoint_ca: only with an endpoint (AWS S3 is reached with the public roots)")
        try:
            ssl.create_default_context(cadata=self.endpoint_ca)
        except (ssl.SSLError, ValueError):
            raise ValueError("endpoint_ca: must be the PEM text of one or more CA certificates") from None
        return self

    def schedule(self, name: ClassName) -> Schedule:
        return getattr(self, name)

    def tool_retention_days(self, prefix: str) -> int:
        return {"postgres/": self.postgres_retention_days, "clickhouse/": self.clickhouse_retention_days,
                "logs/": self.log_retention_days, "config/": self.config_retention_days}[prefix]

    def expiry_days(self) -> dict[str, int]:
        """S3 expiry per prefix: the tool's own retention plus the longest interval of the classes stored
        there plus a day, so the lifecycle never removes what the tool still counts on (the full an
        incremental needs is older than the retention by up to one full interval)."""
        expiry: dict[str, int] = {}
        for name in CLASSES:
            prefix = PREFIXES[name]
            interval = math.ceil(duration_seconds(self.schedule(name).max_age) / 86400)
            expiry[prefix] = max(expiry.get(prefix, 0), self.tool_retention_days(prefix) + interval + 1)
        return expiry

    def lock_days(self) -> int | None:
        """The lock's default retention: at least the newest backups of every class outlive an intruder, and
        the PostgreSQL class (the shortest, pgBackRest's point-in-time window) is locked for all its expiry."""
        if self.object_lock is None:
            return None
        return self.object_lock.days or min(self.expiry_days().values())

    def noncurrent_days(self) -> int:
        """When the lifecycle removes a version that is no longer current: never before the lock has ended (a
        version is noncurrent no earlier than it was written), so the lifecycle never meets a locked version."""
        return max(self.noncurrent_version_days, self.lock_days() or 0)

    def alert_max_ages(self) -> dict[str, str]:
        """The monitoring thresholds (AlertThresholds) of the backup-stale alerts: the same limits as verify's."""
        return {"postgres_incremental_backup_max_age": self.incr.max_age,
                "postgres_full_backup_max_age": self.full.max_age,
                "clickhouse_backup_max_age": self.clickhouse.max_age}

    def clickhouse_keep_remote(self) -> int:
        """clickhouse-backup's BACKUPS_TO_KEEP_REMOTE: 0, it deletes nothing. On a versioned bucket its remote
        retention deletes every version of a backup's objects (Altinity/clickhouse-backup v2.6.9
        pkg/storage/s3.go deleteKey), which the jobs' key may not do (store.JOB_DENIED); the lifecycle expires
        the `clickhouse/` prefix instead (every backup is a full one, so none depends on an older one)."""
        return 0


@dataclass(frozen=True)
class StoreRoute:
    """How the store is reached: clients connect to `server_name:port`, the gateway forwards to `upstream`."""

    server_name: str
    port: int
    upstream_host: str

    @property
    def url(self) -> str:
        """The bucket's virtual-hosted URL, as the clients address it."""
        return self._https(self.server_name)

    @property
    def endpoint_url(self) -> str:
        """The store's endpoint, under which an S3 SDK forms the bucket's virtual-hosted name."""
        return self._https(self.upstream_host)

    def _https(self, host: str) -> str:
        return f"https://{host}" + ("" if self.port == 443 else f":{self.port}")


def store_route(config: BackupConfig) -> StoreRoute:
    """The bucket's virtual-hosted name under the store's endpoint (AWS S3 of the region, or `endpoint`).

    The gateway forwards to the endpoint's own name, which is not one of its aliases: its Docker DNS then
    answers with the store's addresses, not the gateway's."""
    if config.endpoint:
        parts = urlsplit(config.endpoint)
        host, port = parts.hostname or "", parts.port or 443
    else:
        host, port = f"s3.{config.region}.amazonaws.com", 443
    return StoreRoute(f"{config.bucket}.{host}", port, host)


JOB_KEY_IS_ADMIN = ("the backup jobs' key must not be the store's administrative key: give the jobs a key of their "
                    "own, allowed only the job policy (docs/BACKUPS.md, `infra backup job-policy`)")


class StoreKeys(Model):
    """The store's two key ids as the stack is given them: the administrative key the BackupStore provider uses
    (platform:backupAdminAccessKeyId, or the deploying machine's AWS environment) and the jobs' own
    (platform:backupAccessKeyId), which may write and read but neither delete a version nor change the bucket."""

    admin_access_key_id: str | None = None
    job_access_key_id: str | None = None

    @model_validator(mode="after")
    def _apart(self) -> StoreKeys:
        if self.job_access_key_id is not None and self.job_access_key_id == self.admin_access_key_id:
            raise ValueError(JOB_KEY_IS_ADMIN)
        return self
