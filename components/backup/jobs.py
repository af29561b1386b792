"""The scheduled backup jobs: pgBackRest (hourly incremental, daily full), ClickHouse's weekly full with
clickhouse-backup in server mode, the monthly log archive and the daily encrypted configuration archive.

Each job reports success the way the alerts read it: the PostgreSQL, log and configuration jobs write
`backup_last_success_timestamp_seconds{type=...}` into node_exporter's textfile directory, clickhouse-backup
exports `clickhouse_backup_last_create_remote_*` on its API port (components/monitoring/alerts.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NotRequired, TypedDict

import pulumi
import pulumi_random as random
import yaml

from platform_infra.components.backup.model import PREFIXES, BackupConfig, store_route
from platform_infra.components.backup.pgbackrest import (
    Cluster,
    archive_settings,
    render_pgbackrest_conf,
    render_pgbackrest_secrets,
)
from platform_infra.components.images import IMAGES_DIR
from platform_infra.components.monitoring.model import duration_seconds
from platform_infra.components.monitoring.targets import CLICKHOUSE_BACKUP_API_PORT, TASKS_DNS_PREFIX
from platform_infra.components.runtime import Runtime
from platform_infra.components.secrets import PASSWORD_LENGTH
from platform_infra.components.spec import (
    FILES_DIR,
    ComponentArgsError,
    ContainerSpec,
    FileSpec,
    Healthcheck,
    VolumeMount,
)
from platform_infra.components.zones import networks_of

METRIC = "backup_last_success_timestamp_seconds"
TEXTFILE_DIR = "/var/lib/node-exporter/textfile"
TEXTFILE_VOLUME = "backup-metrics"
PGBACKREST_CONF = f"{FILES_DIR}/pgbackrest.conf"
JOB_SCRIPT = f"{FILES_DIR}/platform-backup"
CRONTAB = f"{FILES_DIR}/backup.vixie"
CONFIG_DIR = f"{FILES_DIR}/config-backup"
# Credentials reach every tool as a secret file it reads natively, never as an environment value (which
# `docker inspect` shows, and which a Swarm service gets only as a `<KEY>_FILE` path these tools ignore).
SECRETS_DIR = f"{FILES_DIR}/secrets"
PGBACKREST_INCLUDE = f"{FILES_DIR}/pgbackrest"
PGBACKREST_SECRETS = f"{PGBACKREST_INCLUDE}/credentials.conf"
PGPASSFILE = f"{SECRETS_DIR}/pgpass"
CIPHER_PASS_FILE = f"{SECRETS_DIR}/backup_cipher_pass"
CURL_S3_CONFIG = f"{SECRETS_DIR}/curl-s3.conf"
CLICKHOUSE_BACKUP_CONFIG = f"{SECRETS_DIR}/clickhouse-backup.yml"
API_USER = "backup-api"
"""clickhouse-backup's REST API has one account (pkg/config/config.go api.username/password; pkg/server/server.go
basicAuthMiddleware guards every route, /metrics included): the healthcheck and Prometheus use it."""
API_CURL_CONFIG = f"{SECRETS_DIR}/clickhouse-backup-api.curl"
API_ALIAS = "clickhouse-backup-api"
"""Its name on API_NETWORK only: the API listens on its address there (API_LISTEN), not on every interface."""
API_NETWORK = "store-clickhouse"
"""The network Prometheus scrapes the API through."""
CLICKHOUSE_BACKUP_GRANTS = (
    # Its reads of system tables: disks, storage policies, databases, tables, columns, parts and parts_columns,
    # build_options, macros, functions, settings, mutations, user_directories, asynchronous_metrics
    # (Altinity/clickhouse-backup v2.6.9 pkg/clickhouse/clickhouse.go GetDisks, GetTables, GetDatabases,
    # GetVersion; pkg/backup/create.go, pkg/backup/backuper.go).
    "SELECT ON system.*",
    # SHOW CREATE DATABASE / SHOW CREATE TABLE (clickhouse.go GetDatabases, GetTables).
    "SHOW ON {database}.*",
    # ALTER TABLE ... FREEZE [WITH NAME] and UNFREEZE WITH NAME (clickhouse.go FreezeTable, create.go).
    "ALTER FREEZE PARTITION ON {database}.*",
    # restore: CREATE DATABASE IF NOT EXISTS, CREATE/ATTACH TABLE (clickhouse.go CreateDatabase, CreateTable),
    # DROP/DETACH TABLE of `restore --rm` (DropOrDetachTable), ALTER TABLE ... ATTACH PART, which ClickHouse
    # checks as INSERT (AttachDataParts).
    "CREATE DATABASE ON {database}.*",
    "CREATE TABLE ON {database}.*",
    "DROP TABLE ON {database}.*",
    "INSERT ON {database}.*",
)
"""What clickhouse-backup (server --watch, and the restores an operator runs through it) does in ClickHouse, on
the stack's database only; no ACCESS MANAGEMENT: its RBAC backup reads the access files on the shared volume."""
CLICKHOUSE_BACKUP_USER = "clickhouse-backup"
"""Its ClickHouse user: named as its service, whose addresses ClickHouse lets that user in from."""
STORE_CA = f"{FILES_DIR}/store-ca.pem"
"""The private CA of the store's endpoint (settings backups.endpoint_ca), for every client of the store."""
# The official postgres image's data layout (PGDATA) and its postgres user (uid 999 in the Debian image).
POSTGRES_DATA_VOLUME = "postgres-data"
POSTGRES_DATA_MOUNT = "/var/lib/postgresql/data"
POSTGRES_DATA = f"{POSTGRES_DATA_MOUNT}/pgdata"
POSTGRES_UID = "999:999"
# clickhouse-server's user (uid 101): clickhouse-backup reads and hard-links the server's data files.
CLICKHOUSE_UID = "101:101"
# The image holding PostgreSQL, pgBackRest and mcron: its build context and Dockerfile, absolute (IMAGES_DIR).
IMAGE_CONTEXT = IMAGES_DIR / "postgres-backup"
IMAGE_DOCKERFILE = IMAGE_CONTEXT / "Dockerfile"


def render_job_script(config: BackupConfig) -> str:
    """`platform-backup CLASS`: one backup of the class, then its success time for node_exporter.

    pgBackRest reads its configuration from PGBACKREST_CONFIG and its credentials from the file in
    PGBACKREST_CONFIG_INCLUDE_PATH; the archives are encrypted with openssl (the passphrase in the file
    BACKUP_CIPHER_PASS_FILE) and go to the bucket's URL (S3_BUCKET_URL) with curl's SigV4 signing
    (curl >= 7.75; keys in S3_CURL_CONFIG).
    """
    return f"""#!/bin/sh
# Rendered by components/backup/jobs.py: one scheduled backup, then its metric.
set -eu
class="$1"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
upload() {{  # upload FILE KEY: a signed PUT, credentials from their secret file, never the command line.
    # S3 refuses an upload to a bucket with a default Object Lock retention without Content-MD5 (or a checksum).
    md5="$(openssl dgst -md5 -binary "$1" | openssl base64 -A)"
    curl --fail --silent --show-error ${{S3_CA_FILE:+--cacert "$S3_CA_FILE"}} -K "$S3_CURL_CONFIG" \\
        --aws-sigv4 "aws:amz:{config.region}:s3" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \\
        -H "Content-MD5: $md5" -T "$1" "${{S3_BUCKET_URL%/}}/$2"
}}
encrypt() {{  # the archive, compressed and encrypted with the stack's backup passphrase
    zstd -q -c | openssl enc -aes-256-cbc -pbkdf2 -iter 600000 -salt -pass "file:$BACKUP_CIPHER_PASS_FILE"
}}
case "$class" in
    incr|full)
        pgbackrest --stanza={config.stanza} stanza-create
        pgbackrest --stanza={config.stanza} --type="$class" backup ;;
    logs)
        archive="${{TMPDIR:-/tmp}}/logs-$stamp.tar.zst.enc"
        tar -C "$LOG_ARCHIVE_DIR" -cf - . | encrypt > "$archive"
        upload "$archive" "{PREFIXES['logs']}$(date -u +%Y-%m)-$stamp.tar.zst.enc"
        rm -f "$archive" ;;
    config)
        archive="${{TMPDIR:-/tmp}}/config-$stamp.tar.zst.enc"
        tar -C "$CONFIG_BACKUP_DIR" -cf - . | encrypt > "$archive"
        upload "$archive" "{PREFIXES['config']}$stamp.tar.zst.enc"
        rm -f "$archive" ;;
    *) echo "usage: platform-backup incr|full|logs|config" >&2; exit 2 ;;
esac
# Written aside and renamed, so node_exporter never reads half a file.
metric="$TEXTFILE_DIR/backup-$class.prom"
printf '# HELP {METRIC} Time of the last successful backup of each class.\\n# TYPE {METRIC} gauge\\n{METRIC}{{type="%s"}} %s\\n' \\
    "$class" "$(date +%s)" > "$metric.$$"
mv "$metric.$$" "$metric"
"""


# The scheduler's copies of the container's stdout and stderr (scheduler_command), which every job inherits.
JOB_STDOUT_FD, JOB_STDERR_FD = 3, 4


def render_crontab(config: BackupConfig, job_script: str = JOB_SCRIPT) -> str:
    """mcron's Vixie-format table: the classes of the checklist on the stack's schedule (UTC).

    The script is delivered read-only (mode 0444), so `sh` runs it. mcron 1.0.8 pipes a job's output to a
    mail command (redirect.scm `with-mail-out`), which a read-only container without an MTA cannot run;
    MAILTO="" makes it drop the output instead, and each job writes to the container's log itself."""
    lines = [f"{config.schedule(name).schedule} sh {job_script} {name} >&{JOB_STDOUT_FD} 2>&{JOB_STDERR_FD}"
             for name in ("incr", "full", "logs", "config")]
    return "\n".join(["# Rendered by components/backup/jobs.py.", 'MAILTO=""', *lines]) + "\n"


def scheduler_command(crontab: str = CRONTAB) -> list[str]:
    """mcron on the Vixie table. mcron 1.0.8 loads every FILE argument as Guile Scheme, whatever its name or
    `-i` (main.scm: `(process-user-file file-path #t)`); it reads Vixie syntax from standard input with
    `-i vixie -`. The shell duplicates the container's stdout and stderr for the jobs.

    The shell stays PID 1 and hands the stop signal on: mcron installs no handler for SIGTERM or SIGINT (the
    image's STOPSIGNAL, the postgres image's), and the kernel drops a signal PID 1 does not handle
    (pid_namespaces(7)), so an mcron of PID 1 ignored every stop until the grace period ended in SIGKILL. As
    any other process mcron dies of the signal; the shell then exits 143. (A job running then is cut short,
    as SIGKILL would have cut it; the next one runs on schedule.)"""
    # An asynchronous command's stdin is /dev/null unless redirected (POSIX sh, 2.9.3): the table is mcron's own.
    script = (f"trap 'kill -TERM \"$scheduler\" 2>/dev/null; wait \"$scheduler\"; exit 143' TERM INT; "
              f"exec {JOB_STDOUT_FD}>&1 {JOB_STDERR_FD}>&2; "
              f"mcron -i vixie - <{crontab} & scheduler=$!; wait \"$scheduler\"")
    return ["sh", "-c", script]


@dataclass(frozen=True)
class PostgresArchiving:
    """What the PostgreSQL server needs to hand its WAL to pgBackRest: give it to the Postgres component."""

    settings: Mapping[str, str]
    files: tuple[FileSpec, ...]


class StoreCredentials(TypedDict):
    access_key_id: NotRequired[pulumi.Input[str]]
    """With secret_access_key: the store's keys (stack secrets); omitted, the jobs cannot write until set."""
    secret_access_key: NotRequired[pulumi.Input[str]]
    cipher_pass: pulumi.Input[str]
    """Encrypts the pgBackRest repository and the archives (aes-256-cbc); generated by the stack."""


def _keys(credentials: StoreCredentials, names: tuple[str, str]) -> dict[str, pulumi.Input[str]]:
    """The store's keys under the names a tool reads them from; none when the stack has not set them."""
    given = [credentials.get("access_key_id"), credentials.get("secret_access_key")]
    return dict(zip(names, given, strict=True)) if all(value is not None for value in given) else {}


def pgpass_line(user: str, password: str) -> str:
    """libpq's password file (PGPASSFILE; PostgreSQL docs "The Password File"): any host, port and database;
    `:` and `\\` escaped."""
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:{user}:{escaped}\n"


def curl_s3_config(key: str, secret: str) -> str:
    """curl's config file (`-K`): the store's keys as the user of the SigV4-signed request, quoted as curl
    reads a quoted value."""
    quoted = f"{key}:{secret}".replace("\\", "\\\\").replace('"', '\\"')
    return f'user = "{quoted}"\n'


def _pgbackrest_credentials(credentials: StoreCredentials) -> FileSpec:
    keys = _keys(credentials, ("key", "secret"))
    content = pulumi.Output.all(credentials["cipher_pass"], keys.get("key"), keys.get("secret")).apply(
        lambda values: render_pgbackrest_secrets(*values))
    return FileSpec(PGBACKREST_SECRETS, content, secret=True)


def _pgbackrest_conf(config: BackupConfig) -> str:
    return render_pgbackrest_conf(config, Cluster(POSTGRES_DATA), ca_file=STORE_CA if config.endpoint_ca else None)


def _store_ca(config: BackupConfig) -> list[FileSpec]:
    return [FileSpec(STORE_CA, config.endpoint_ca)] if config.endpoint_ca else []


def postgres_archiving(config: BackupConfig, credentials: StoreCredentials) -> PostgresArchiving:
    return PostgresArchiving(archive_settings(config, PGBACKREST_CONF, PGBACKREST_INCLUDE),
                             (FileSpec(PGBACKREST_CONF, _pgbackrest_conf(config)),
                              _pgbackrest_credentials(credentials), *_store_ca(config)))


class BackupJobsArgs(TypedDict):
    runtime: Runtime
    networks: Mapping[str, pulumi.Resource]
    config: BackupConfig
    job_image: str
    """The image built from IMAGE_CONTEXT (PostgreSQL's own image plus pgBackRest and mcron)."""
    clickhouse_backup_image: str
    credentials: StoreCredentials
    postgres_user: str
    postgres_password: pulumi.Input[str]
    clickhouse_password: pulumi.Input[str]
    """CLICKHOUSE_BACKUP_USER's password."""
    clickhouse_host: str
    """The name it reaches ClickHouse by (the ClickHouse component's `address`)."""
    config_files: Mapping[str, pulumi.Input[str]]
    """The configuration and TLS material archived daily, by file name; kept secret."""
    api_password: NotRequired[pulumi.Input[str]]
    """clickhouse-backup's REST API password; BackupJobs generates it."""
    per_task_dns: NotRequired[bool]
    """Swarm: a service's own name is a virtual IP; `tasks.<name>` is the task's address."""
    depends_on: NotRequired[list[pulumi.Resource]]


def api_host(per_task_dns: bool) -> str:
    """The name Prometheus scrapes clickhouse-backup's API by: its alias on API_NETWORK."""
    return f"{TASKS_DNS_PREFIX}{API_ALIAS}" if per_task_dns else API_ALIAS


def api_listen(per_task_dns: bool) -> str:
    """Where the API listens, and where its healthcheck asks. On Docker, its alias's address on API_NETWORK only.
    A Swarm task with a healthcheck gets its DNS records only once healthy (tried on this engine: `tasks.<alias>`
    fails to resolve inside the task until then), so it cannot bind its own name: it listens on its task's
    addresses, which are on its zones' internal networks only, and the healthcheck asks on loopback."""
    return "0.0.0.0" if per_task_dns else API_ALIAS


def _asked(per_task_dns: bool) -> str:
    listen = api_listen(per_task_dns)
    return "127.0.0.1" if listen == "0.0.0.0" else listen


def backup_job_specs(args: BackupJobsArgs) -> list[ContainerSpec]:
    for key in ("runtime", "networks", "config", "job_image", "clickhouse_backup_image", "credentials",
                "postgres_user", "postgres_password", "clickhouse_password", "clickhouse_host", "config_files",
                "api_password"):
        if args.get(key) is None:
            raise ComponentArgsError(f"BackupJobs: missing required arg {key!r}")
    config, credentials = args["config"], args["credentials"]
    if not isinstance(config, BackupConfig):
        raise ComponentArgsError("BackupJobs: config must be a BackupConfig")
    route = store_route(config)
    # curl (the job script's S3_CA_FILE) and clickhouse-backup (aws-sdk-go-v2 config.LoadDefaultConfig reads
    # AWS_CA_BUNDLE; Altinity/clickhouse-backup pkg/storage/s3.go Connect) trust the store's private CA.
    private_ca = bool(config.endpoint_ca)
    store_keys = _keys(credentials, ("key", "secret"))
    postgres_job = ContainerSpec(
        service="postgres-backup", role="ds", image=args["job_image"], networks=networks_of("postgres-backup"),
        memory_mb=512, cpus=1.0, user=POSTGRES_UID,
        command=scheduler_command(),
        # GUILE_AUTO_COMPILE=0: mcron's modules are read from source, nothing is compiled into $HOME.
        env={"GUILE_AUTO_COMPILE": "0",
             "PGBACKREST_CONFIG": PGBACKREST_CONF, "PGBACKREST_CONFIG_INCLUDE_PATH": PGBACKREST_INCLUDE,
             "PGHOST": "postgres", "PGPORT": "5432", "PGUSER": args["postgres_user"], "PGPASSFILE": PGPASSFILE,
             "BACKUP_CIPHER_PASS_FILE": CIPHER_PASS_FILE, "S3_CURL_CONFIG": CURL_S3_CONFIG,
             "TEXTFILE_DIR": TEXTFILE_DIR, "S3_BUCKET_URL": route.url,
             "CONFIG_BACKUP_DIR": CONFIG_DIR, "LOG_ARCHIVE_DIR": "/var/log/clickhouse-server",
             "TMPDIR": "/tmp", "HOME": "/tmp",
             **({"S3_CA_FILE": STORE_CA} if private_ca else {})},
        files=[FileSpec(PGBACKREST_CONF, _pgbackrest_conf(config)), *_store_ca(config), FileSpec(JOB_SCRIPT, render_job_script(config)),
               FileSpec(CRONTAB, render_crontab(config)), _pgbackrest_credentials(credentials),
               # libpq ignores a password file its group may read.
               FileSpec(PGPASSFILE, pulumi.Output.from_input(args["postgres_password"]).apply(
                   lambda password: pgpass_line(args["postgres_user"], password)), secret=True, owner_only=True),
               FileSpec(CIPHER_PASS_FILE, credentials["cipher_pass"], secret=True),
               *([FileSpec(CURL_S3_CONFIG, pulumi.Output.all(*store_keys.values()).apply(
                   lambda pair: curl_s3_config(*pair)), secret=True)] if store_keys else []),
               *[FileSpec(f"{CONFIG_DIR}/{name}", content, secret=True)
                 for name, content in sorted(args["config_files"].items())]],
        volumes=[VolumeMount(POSTGRES_DATA_VOLUME, POSTGRES_DATA_MOUNT, read_only=True, shared_from="postgres"),
                 VolumeMount("clickhouse-logs", "/var/log/clickhouse-server", read_only=True,
                             shared_from="clickhouse"),
                 VolumeMount(TEXTFILE_VOLUME, TEXTFILE_DIR)],
        tmpfs={"/tmp": "rw,noexec,nosuid,size=1g"},
        healthcheck=Healthcheck(["CMD", "pgbackrest", "version"]),
    )
    clickhouse_job = ContainerSpec(
        service="clickhouse-backup", role="ds", image=args["clickhouse_backup_image"],
        networks=networks_of("clickhouse-backup"),
        memory_mb=512, cpus=0.5, user=CLICKHOUSE_UID,
        # A full backup at every interval (watch = full = the ClickHouse schedule's max age less a day).
        command=["server", "--watch", f"--watch-interval={_hours(config.clickhouse.max_age)}",
                 f"--full-interval={_hours(config.clickhouse.max_age)}"],
        env={"CLICKHOUSE_HOST": args["clickhouse_host"], "CLICKHOUSE_USERNAME": CLICKHOUSE_BACKUP_USER,
             "REMOTE_STORAGE": "s3", "S3_BUCKET": config.bucket, "S3_REGION": config.region,
             # By virtual host (the bucket's name), as the store's gateway forwards it.
             "S3_ENDPOINT": route.endpoint_url, "S3_FORCE_PATH_STYLE": "false",
             "S3_PATH": PREFIXES["clickhouse"].rstrip("/"), "S3_SSE": "AES256",
             # A checksum with every upload, which S3 requires of a bucket with a default Object Lock retention
             # (pkg/storage/s3.go PutFile: PutObjectInput.ChecksumAlgorithm).
             "S3_CHECKSUM_ALGORITHM": "SHA256",
             "BACKUPS_TO_KEEP_LOCAL": "-1", "BACKUPS_TO_KEEP_REMOTE": str(config.clickhouse_keep_remote()),
             "API_LISTEN": f"{api_listen(args.get('per_task_dns', False))}:{CLICKHOUSE_BACKUP_API_PORT}",
             "API_ENABLE_METRICS": "true",
             # Its credentials: the config file it reads first, then this environment (Altinity/clickhouse-backup
             # pkg/config/config.go: CLICKHOUSE_BACKUP_CONFIG, `clickhouse.password`, `s3.access_key|secret_key`).
             "CLICKHOUSE_BACKUP_CONFIG": CLICKHOUSE_BACKUP_CONFIG,
             **({"AWS_CA_BUNDLE": STORE_CA} if private_ca else {})},
        files=[*_store_ca(config), FileSpec(CLICKHOUSE_BACKUP_CONFIG, pulumi.Output.all(
            args["clickhouse_password"], args["api_password"], *store_keys.values()).apply(
                lambda values: yaml.safe_dump({"clickhouse": {"password": values[0]},
                                               "api": {"username": API_USER, "password": values[1]},
                                               **({"s3": {"access_key": values[2], "secret_key": values[3]}}
                                                  if len(values) == 4 else {})})), secret=True),
               FileSpec(API_CURL_CONFIG, pulumi.Output.from_input(args["api_password"]).apply(
                   lambda password: f'user = "{API_USER}:{password}"\n'), secret=True)],
        volumes=[VolumeMount("clickhouse-data", "/var/lib/clickhouse", shared_from="clickhouse")],
        tmpfs={"/tmp": "rw,noexec,nosuid,size=64m"},
        healthcheck=api_healthcheck(args.get("per_task_dns", False)),
        aliases={API_NETWORK: [API_ALIAS]},
    )
    return [postgres_job, clickhouse_job]


def api_healthcheck(per_task_dns: bool) -> Healthcheck:
    """Its own API where it listens, logged in through curl's config file (no credential on a command line).

    On Swarm also healthy while nothing listens on the API port yet: clickhouse-backup starts its API only once it
    has logged in to ClickHouse, retrying every 5 s until then (v2.6.9 pkg/server/server.go Run, "Wait for
    ClickHouse"), and ClickHouse lets its user in only from the addresses of `tasks.clickhouse-backup`, which
    Swarm publishes once the task is healthy (moby daemon/cluster/executor/container/controller.go: the service
    binding is activated on the healthy event). A port that listens must answer; curl exits 7 when it cannot
    connect."""
    url = f"http://{_asked(per_task_dns)}:{CLICKHOUSE_BACKUP_API_PORT}/backup/status"
    if not per_task_dns:
        return Healthcheck(["CMD", "curl", "-fsS", "-o", "/dev/null", "-K", API_CURL_CONFIG, url])
    return Healthcheck(["CMD-SHELL", (f"curl -fsS -o /dev/null -K {API_CURL_CONFIG} {url} || "
                                      f"{{ curl -s -o /dev/null {url}; test $? -eq 7; }}")])


def _hours(duration: str) -> str:
    return f"{max(1, duration_seconds(duration) // 3600 - 24)}h"


class BackupJobs(pulumi.ComponentResource):
    """The scheduled backup containers; `clickhouse_backup_host` is the scrape target of its metrics, logged in
    as API_USER with `api_password`."""

    api_password: pulumi.Output[str]

    def __init__(self, name: str, args: BackupJobsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        backup_job_specs({**args, "api_password": "validated"})
        super().__init__("platform:index:BackupJobs", name, {}, opts)
        password = random.RandomPassword(f"{name}-clickhouse-backup-api-password", length=PASSWORD_LENGTH,
                                         special=False, opts=pulumi.ResourceOptions(parent=self))
        self.api_password = pulumi.Output.secret(password.result)
        specs = backup_job_specs({**args, "api_password": self.api_password})
        for spec in specs:
            args["runtime"].deploy(spec, dict(args["networks"]), name, self, depends_on=args.get("depends_on", []))
        self.clickhouse_backup_host = api_host(args.get("per_task_dns", False))
        self.register_outputs({"jobs": [spec.service for spec in specs]})

