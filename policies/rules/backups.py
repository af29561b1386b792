"""Backup rules: every PostgreSQL and ClickHouse store has a backup job in the stack."""

from __future__ import annotations

from platform_infra.policies.props import WORKLOADS
from platform_infra.policies.registry import MANDATORY, stack_rule

# What a backup job for each store looks like: its image, name or command mentions one of these.
BACKUP_TOOLS = {
    "postgres": ["pgbackrest", "wal-g", "walg", "pg_basebackup", "pg_dump", "postgres-backup"],
    "clickhouse": ["clickhouse-backup"],
}


@stack_rule(
    "BAK-001",
    "backups-configured",
    "Backups configured",
    types=WORKLOADS,
    severity="high",
    prod=MANDATORY,
    checklist=[
        "infrastructure.backup-strategy",
        "backup.postgres",
        "backup.clickhouse",
        "backup.hourly-incremental",
        "backup.daily-full",
        "backup.weekly-clickhouse",
        "success.backup-job",
    ],
    sources=[
        "PostgreSQL docs: Backup and Restore (continuous archiving)",
        "pgBackRest user guide",
        "Altinity clickhouse-backup README",
    ],
    options={
        "stores": {"type": "array", "items": {"enum": sorted(BACKUP_TOOLS)}, "default": sorted(BACKUP_TOOLS)}
    },
    remediation="Add the backup jobs: pgBackRest (or WAL-G) with WAL archiving for PostgreSQL, clickhouse-backup "
    "beside ClickHouse; this platform deploys both when `platform:settings.backups` names the store.",
)
def backups_configured(stack, report, options) -> None:
    """Each PostgreSQL and ClickHouse store has a backup job (a container or service running a backup
    tool)."""

    def text(w) -> str:
        return " ".join([w.image, w.name, w.resource_name, *w.labels.values(), *w.command]).lower()

    jobs = [text(w) for w in stack.workloads if w.kind in ("backup", "postgres", "clickhouse")]
    for w in stack.workloads:
        if w.kind in options["stores"] and not any(
            tool in job for job in jobs for tool in BACKUP_TOOLS[w.kind]
        ):
            report(f"{w.kind} {w.name} has no backup job", w.urn)
