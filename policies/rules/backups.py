"""Backup rules: every PostgreSQL and ClickHouse store has a backup job in the stack; clickhouse-backup's API is
not open."""

from __future__ import annotations

import yaml

from platform_infra.policies.props import SERVICE_LABEL, WORKLOADS, Workload
from platform_infra.policies.registry import MANDATORY, resource_rule, stack_rule
from platform_infra.policies.scope import kind_is

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


ALL_ADDRESSES = ("", "0.0.0.0", "::", "*", "0")


def _all_addresses(listen: str) -> bool:
    host = listen.strip().rpartition(":")[0] if ":" in listen else listen.strip()
    return host.strip("[]") in ALL_ADDRESSES


def _clickhouse_backup_config(text: str) -> dict | None:
    """A clickhouse-backup configuration (pkg/config/config.go: sections general, clickhouse, s3, api, ...)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if isinstance(data, dict) and {"api", "clickhouse", "general", "s3"} & set(data):
        return data
    return None


@resource_rule(
    "BAK-API-001",
    "clickhouse-backup-api",
    "clickhouse-backup's API authenticated, not on every address",
    reads_files=True,
    types=WORKLOADS,
    scope=kind_is("backup"),
    severity="critical",
    prod=MANDATORY,
    label_waivable=False,
    checklist=["backup.clickhouse", "infrastructure.network-policies"],
    sources=["Altinity/clickhouse-backup pkg/config/config.go (APIConfig)", "pkg/server/server.go basicAuthMiddleware"],
    remediation="Give `api.username` and `api.password` in its config file (CLICKHOUSE_BACKUP_CONFIG, a secret) and "
    "set API_LISTEN to its own alias on the network its scraper uses, never 0.0.0.0 or `:port`.",
)
def clickhouse_backup_api(w: Workload, report, options) -> None:
    """`clickhouse-backup server` exposes a REST API that deletes remote backups and restores old data over live
    tables: its config file gives it an account (api.username, api.password; the environment never empties
    them), and a container's listens on one address, not all (API_LISTEN or api.listen, not `0.0.0.0:7171` or
    `:7171`; a Swarm task cannot bind its own name before it is healthy, so its networks bound it)."""
    names = " ".join([w.labels.get(SERVICE_LABEL, ""), w.name, w.resource_name, w.image]).lower()
    if "clickhouse-backup" not in names:
        return
    env = w.env
    if w.runs and "server" in w.command:
        # A Swarm task cannot bind its own name (its DNS records appear only once it is healthy): its networks,
        # held to its zones by NET-004, bound the API there.
        if "API_LISTEN" in env and _all_addresses(env["API_LISTEN"]) and not w.is_service:
            report(f"API_LISTEN={env['API_LISTEN']} listens on every address")
        if "CLICKHOUSE_BACKUP_CONFIG" not in env and not env.get("API_PASSWORD"):
            report("the API has no account: no config file (CLICKHOUSE_BACKUP_CONFIG) gives api.username/password")
        for key in ("API_USERNAME", "API_PASSWORD"):
            if key in env and not env[key]:
                report(f"{key} is empty in the environment, over the config file: the API has no account")
    for path, text in w.uploads.items():
        config = _clickhouse_backup_config(text) if path.endswith((".yml", ".yaml")) else None
        if config is None:
            continue
        api = config.get("api") or {}
        if not isinstance(api, dict) or not (str(api.get("username") or "") and str(api.get("password") or "")):
            report(f"{path}: api.username and api.password are not both set: anyone reaching the API may delete "
                   "or restore backups")
        elif "listen" in api and _all_addresses(str(api["listen"])):
            report(f"{path}: api.listen {api['listen']} listens on every address")
