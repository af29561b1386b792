"""`infra backup verify|now|drill`: the stack's backups, checked, taken and restored.

The store is reached with the standard AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN, AWS_REGION, AWS_ENDPOINT_URL, AWS_CA_BUNDLE) and PostgreSQL with libpq's (PGHOST, PGPORT,
PGUSER, PGPASSWORD, PGDATABASE, and PGDATA where pgBackRest needs the data directory); pgBackRest is
configured by the same renderer as the stack's backup job. Exit codes: 0 ok, 1 missing/stale/failed/different,
2 bad input or an unreachable store.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from platform_infra.components.backup.model import CLASSES, PREFIXES, BackupConfig
from platform_infra.components.backup.pgbackrest import Cluster, render_pgbackrest_conf
from platform_infra.components.monitoring.model import duration_seconds
from platform_infra.infra.daytwo import evidence
from platform_infra.infra.daytwo.s3 import s3_client
from platform_infra.infra.daytwo.stackfile import stack_settings
from platform_infra.infra.mockrun import ProgramInputError
from platform_infra.infra.settings import NAMESPACE, SETTINGS_KEY
from platform_infra.infra.version import commit

# PostgreSQL refuses to run as root; run as root, infra hands its tools to the data directory's owner,
# or to this conventional account for the drill's throwaway instance.
POSTGRES_OS_USER = "postgres"
PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin")
# pgBackRest backup labels: 20261203-085434F, and 20261203-085434F_20261203-085440I (or D) for the others.
_LABEL = re.compile(r"/(\d{8}-\d{6}F(?:_\d{8}-\d{6}[DI])?)/backup\.manifest$")
TOOL_TIMEOUT = 3600


class BackupError(RuntimeError):
    """A backup tool or the store failed (exit 1)."""


def stack_backup_config(project: Path, stack: str) -> BackupConfig:
    """The `backups` settings of a stack file, validated like the program validates them."""
    settings = stack_settings(project, stack)
    if settings.backups is None:
        raise ProgramInputError(f"Pulumi.{stack}.yaml: {NAMESPACE}:{SETTINGS_KEY}.backups: the stack declares no "
                                "backup store")
    return settings.backups


def store_error(operation: str, bucket: str, exc: Exception) -> ProgramInputError:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):  # boto's words name no variable: say which to set
        return ProgramInputError("environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set (the "
                                 f"store's credentials; or AWS_PROFILE) to reach bucket {bucket}")
    if isinstance(exc, EndpointConnectionError):
        where = "AWS_ENDPOINT_URL" if os.environ.get("AWS_ENDPOINT_URL") else "the region's endpoint"
        url = urllib.parse.urlsplit(str(exc.kwargs.get("endpoint_url", "")))
        return ProgramInputError(f"store unreachable: no S3 answers at {url.scheme}://{url.netloc} ({where}; "
                                 f"bucket {bucket})")
    detail = (f"{exc.response['Error'].get('Code')}: {exc.response['Error'].get('Message')}"
              if isinstance(exc, ClientError) else str(exc))
    return ProgramInputError(f"store unreachable: S3 {operation} on bucket {bucket}: {detail}")


# --- verify -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Newest:
    name: str
    key: str | None
    age_seconds: float | None
    max_age: str

    @property
    def fresh(self) -> bool:
        return self.age_seconds is not None and self.age_seconds <= duration_seconds(self.max_age)

    def as_json(self) -> dict:
        return {"class": self.name, "newest": self.key, "age_seconds": self.age_seconds,
                "max_age_seconds": duration_seconds(self.max_age), "fresh": self.fresh}


def _objects(client, bucket: str, prefix: str) -> Iterator[dict]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def _is_backup_of(name: str, key: str, stanza: str) -> bool:
    """Whether a key marks one completed backup of the class: pgBackRest writes a backup's manifest last,
    clickhouse-backup its metadata.json; a log or configuration archive is one object."""
    if name in ("incr", "full"):
        match = _LABEL.search(key)
        return bool(match) and f"/backup/{stanza}/" in key and match.group(1).endswith("F") == (name == "full")
    if name == "clickhouse":
        return key.endswith("/metadata.json") and key.count("/") == 2
    return not key.endswith("/")


def newest_backups(config: BackupConfig, now: datetime) -> list[Newest]:
    client = s3_client()
    found: list[Newest] = []
    listed: dict[str, list[dict]] = {}
    for name in CLASSES:
        prefix = PREFIXES[name]
        if prefix not in listed:
            try:
                listed[prefix] = list(_objects(client, config.bucket, prefix))
            except Exception as exc:  # noqa: BLE001 botocore raises many kinds; all mean unreachable
                raise store_error("list_objects_v2", config.bucket, exc) from None
        marks = [obj for obj in listed[prefix] if _is_backup_of(name, obj["Key"], config.stanza)]
        newest = max(marks, key=lambda obj: obj["LastModified"], default=None)
        found.append(Newest(name, newest["Key"] if newest else None,
                            (now - newest["LastModified"]).total_seconds() if newest else None,
                            config.schedule(name).max_age))
    return found


def cmd_verify(args: argparse.Namespace) -> int:
    config = stack_backup_config(Path(args.project), args.stack)
    found = newest_backups(config, datetime.now(UTC))
    bad = [n for n in found if not n.fresh]
    if args.format == "json":
        print(json.dumps({"stack": args.stack, "bucket": config.bucket, "classes": [n.as_json() for n in found],
                          "ok": not bad}, indent=2))
    else:
        for n in found:
            state = "fresh" if n.fresh else ("MISSING" if n.key is None else "STALE")
            age = "never" if n.age_seconds is None else f"{n.age_seconds:.0f}s old"
            print(f"{n.name:<10} {state:<7} {age:<14} (max {n.max_age})  {n.key or ''}")
    for n in bad:
        problem = "missing" if n.key is None else f"stale ({n.age_seconds:.0f}s old, max {n.max_age})"
        print(f"infra: backup class {n.name} is {problem} in s3://{config.bucket}/{PREFIXES[n.name]}", file=sys.stderr)
    return 1 if bad else 0


# --- pgBackRest ---------------------------------------------------------------------------------------------


def _aws_region(config: BackupConfig) -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or config.region


def pgbackrest_environment(config: BackupConfig) -> dict[str, str]:
    """pgBackRest's credentials, from the standard AWS environment (never written to its config file)."""
    keys = {"AWS_ACCESS_KEY_ID": "PGBACKREST_REPO1_S3_KEY", "AWS_SECRET_ACCESS_KEY": "PGBACKREST_REPO1_S3_KEY_SECRET",
            "AWS_SESSION_TOKEN": "PGBACKREST_REPO1_S3_TOKEN"}
    missing = [key for key in list(keys)[:2] if not os.environ.get(key)]
    if missing:
        raise ProgramInputError(f"environment: {' and '.join(missing)} must be set (the store's credentials)")
    env = {tool: os.environ[aws] for aws, tool in keys.items() if os.environ.get(aws)}
    env["PGBACKREST_REPO1_S3_REGION"] = _aws_region(config)
    return env


def run_as(user: str | None) -> list[str]:
    """Prefix that runs a command as `user` when infra runs as root (PostgreSQL and pgBackRest refuse root)."""
    if os.geteuid() != 0 or user is None or user == "root":
        return []
    return [shutil.which("runuser") or "/usr/sbin/runuser", "-u", user, "--"]


@contextmanager
def pgbackrest_config(config: BackupConfig, cluster: Cluster) -> Iterator[str]:
    """A temporary pgbackrest.conf (no secrets in it) readable by the tool's user."""
    try:
        text = render_pgbackrest_conf(
            config, cluster, endpoint_url=os.environ.get("AWS_ENDPOINT_URL"), ca_file=os.environ.get("AWS_CA_BUNDLE"),
            encrypted=bool(os.environ.get("PGBACKREST_REPO1_CIPHER_PASS")))
    except ValueError as exc:
        raise ProgramInputError(f"environment: AWS_ENDPOINT_URL: {exc}") from None
    directory = tempfile.mkdtemp(prefix="infra-pgbackrest-")
    try:
        path = Path(directory) / "pgbackrest.conf"
        path.write_text(text)
        os.chmod(directory, 0o755)
        path.chmod(0o644)
        yield str(path)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def pgbackrest(conf: str, config: BackupConfig, owner: str | None, *args: str,
               env: Mapping[str, str] | None = None) -> str:
    """Run one pgBackRest command (with `env` added to its environment); its stdout, or BackupError with its last
    lines."""
    env = {**os.environ, **pgbackrest_environment(config), **(env or {})}
    tool = shutil.which("pgbackrest")
    if tool is None:
        raise BackupError("pgbackrest not found (Debian: apt-get install pgbackrest)")
    # runuser keeps the caller's environment, so the credentials travel in it, never on a command line.
    command = [*run_as(owner), tool, f"--config={conf}", f"--stanza={config.stanza}", *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise BackupError(f"pgbackrest {args[-1]} failed (exit {result.returncode}): {tail}")
    return result.stdout


def backup_info(conf: str, config: BackupConfig, owner: str | None) -> list[dict]:
    """pgBackRest's own account of the stanza's backups, oldest first (`info --output=json`)."""
    [stanza] = json.loads(pgbackrest(conf, config, owner, "--output=json", "info"))
    return stanza.get("backup", [])


def libpq_cluster(data_dir: str) -> Cluster:
    host = os.environ.get("PGHOST", "")
    return Cluster(data_dir=data_dir, port=int(os.environ.get("PGPORT") or 5432),
                   socket_dir=host if host.startswith("/") else None, user=os.environ.get("PGUSER"))


def data_dir_owner(data_dir: str) -> str:
    return pwd.getpwuid(Path(data_dir).stat().st_uid).pw_name


def cmd_now(args: argparse.Namespace) -> int:
    config = stack_backup_config(Path(args.project), args.stack)
    data_dir = os.environ.get("PGDATA")
    if not data_dir or not Path(data_dir).is_dir():
        raise ProgramInputError("environment: PGDATA must name the data directory of the PostgreSQL to back up")
    owner = data_dir_owner(data_dir)
    try:
        with pgbackrest_config(config, libpq_cluster(data_dir)) as conf:
            pgbackrest(conf, config, owner, "stanza-create")  # a no-op once the stanza exists
            pgbackrest(conf, config, owner, f"--type={args.backup_class}", "backup")
            newest = backup_info(conf, config, owner)[-1]
    except BackupError as exc:
        print(f"infra: error: {exc}", file=sys.stderr)
        return 1
    print(newest["label"])
    return 0


# --- drill --------------------------------------------------------------------------------------------------


# Rows and an order-independent checksum of a table: the sum of each row's hash (a sum, unlike XOR, counts
# duplicate rows). The row's text form covers every column of every type.
_CHECKSUM = ("SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)::text "
             "FROM {table} AS t")
_TABLES = ("SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM information_schema.tables "
           "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1")


def table_checksums(conninfo: Mapping[str, str]) -> dict[str, tuple[int, str]]:
    import psycopg

    with psycopg.connect(**conninfo) as conn:
        tables = [row[0] for row in conn.execute(_TABLES)]
        return {table: tuple(conn.execute(_CHECKSUM.format(table=table)).fetchone()) for table in tables}


def pg_binary(name: str) -> str:
    for directory in PG_BIN_DIRS:
        if os.access(f"{directory}/{name}", os.X_OK):
            return f"{directory}/{name}"
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found (Debian: apt-get install postgresql-15)")
    return found


@contextmanager
def throwaway_instance(config: BackupConfig, owner: str) -> Iterator[tuple[str, str, int]]:
    """A temporary directory for a restored cluster, and a free port for it; removed afterwards."""
    import socket

    root = tempfile.mkdtemp(prefix="infra-drill-")
    try:
        os.mkdir(f"{root}/data", 0o700)
        os.chmod(root, 0o700)
        if os.geteuid() == 0:
            account = pwd.getpwnam(owner)
            for path in (root, f"{root}/data"):
                os.chown(path, account.pw_uid, account.pw_gid)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        yield root, f"{root}/data", port
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _wait_promoted(conninfo: Mapping[str, str], deadline: float) -> float:
    """The wall-clock time at which the restored instance first answered out of recovery (polled every 0.1 s)."""
    import psycopg

    while True:
        try:
            with psycopg.connect(**conninfo, connect_timeout=5) as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    return time.time()
        except psycopg.OperationalError:
            pass
        if time.monotonic() > deadline:
            raise BackupError("the restored instance did not finish recovery in time")
        time.sleep(0.1)


# Phase boundaries from the tools' own timestamped log lines, in UTC (pgBackRest logs local time: the drill runs
# it with TZ=UTC; PostgreSQL is given log_timezone=UTC and this prefix). Milliseconds, as both tools log them.
# pgBackRest's console: "2026-12-06 13:00:00.123 P00   INFO: repo1: restore backup set ..." (log-timestamp=y).
_PGBACKREST_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) P\d+ +[A-Z]+: (.*)$", re.MULTILINE)
_POSTGRES_PREFIX = "%m [%p] "
_POSTGRES_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) UTC \[\d+\] [A-Z]+:  (.*)$", re.MULTILINE)
PHASES = {
    "download": "pgBackRest's restore command starting, to its line 'restore backup set': backup.info and the "
                "backup's manifest fetched from the store and checked. Only the metadata: pgBackRest fetches each "
                "data file and writes it in one stream (restore/file.c), so the files' download is in `restore`",
    "restore": "to the restore command's exit: every file fetched from the store, decrypted, decompressed and "
               "written, the recovery settings written, the data directory synced",
    "replay": "to PostgreSQL's log line 'redo done at': the instance started, each WAL segment after the backup "
              "fetched from the store (archive-get) and replayed",
    "promote": "to pg_is_in_recovery() answering false (polled every 0.1 s): the end-of-recovery checkpoint, the new "
               "timeline, writes accepted",
    "compare": "to the last table compared: row counts and checksums of every table, source and restore",
}


def logged_at(pattern: re.Pattern[str], text: str, message: str) -> float | None:
    """The UTC time (epoch seconds) of the first log line whose message starts with `message`."""
    for stamp, line in pattern.findall(text):
        if line.startswith(message):
            return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC).timestamp()
    return None


def phase_timings(boundaries: list[float | None]) -> list[dict]:
    """The PHASES between consecutive wall-clock boundaries (the first is the start: one more than the phases).
    A boundary no log line gave (None) is taken as the one before it: its phase is 0 and the next one holds its
    time. A boundary is never before the one before it (the tools log milliseconds, the drill's clock has more),
    so phases are ordered, never negative, and add up to the whole."""
    start, marks = boundaries[0], [boundaries[0]]
    for mark in boundaries[1:]:
        marks.append(marks[-1] if mark is None else max(mark, marks[-1]))
    offsets = [round((mark - start) * 1000) for mark in marks]
    return [{"name": name, "start_seconds": offsets[i] / 1000, "seconds": (offsets[i + 1] - offsets[i]) / 1000,
             "observed_by": how} for i, (name, how) in enumerate(PHASES.items())]


def drill(config: BackupConfig) -> dict:
    import psycopg

    source = libpq_source()
    owner = POSTGRES_OS_USER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    with throwaway_instance(config, owner) as (root, data_dir, port):
        restored_cluster = Cluster(data_dir=data_dir, port=port, socket_dir=root, user=source.get("user"))
        with pgbackrest_config(config, restored_cluster) as conf:
            backups = backup_info(conf, config, owner)
            if not backups:
                raise BackupError(f"no PostgreSQL backup of stanza {config.stanza} in s3://{config.bucket}")
            newest = backups[-1]
            # Wall-clock boundaries, the drill's own and the tools' logged ones on the same clock (see PHASES).
            started = time.time()
            # The newest backup plus every archived WAL segment after it, then promotion.
            restore_log = pgbackrest(conf, config, owner, "--archive-mode=off", "--type=default",
                                     "--log-level-console=info", "restore", env={"TZ": "UTC"})
            restored_at = time.time()
            env = {**os.environ, **pgbackrest_environment(config)}
            # Local socket only, no archiving: the throwaway instance must not write into the store. Its log goes
            # to server.log, with timestamps the drill reads, whatever the source's logging settings were.
            options = (f"-c port={port} -c listen_addresses='' -c unix_socket_directories='{root}' "
                       "-c archive_mode=off -c cluster_name=infra-drill -c logging_collector=off "
                       f"-c log_destination=stderr -c log_timezone=UTC -c log_line_prefix='{_POSTGRES_PREFIX}'")
            server = [*run_as(owner), pg_binary("pg_ctl"), "-D", data_dir, "-l", f"{root}/server.log", "-w",
                      "-t", "600", "-o", options, "start"]
            result = subprocess.run(server, env=env, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False)
            server_log = Path(f"{root}/server.log")
            if result.returncode != 0:
                tail = "\n".join(server_log.read_text().splitlines()[-5:]) if server_log.exists() else result.stderr
                raise BackupError(f"the restored instance did not start: {tail}")
            try:
                restored = {**source, "host": root, "port": str(port)}
                promoted_at = _wait_promoted(restored, time.monotonic() + 600)
                with psycopg.connect(**source) as conn:
                    source_now = conn.execute("SELECT now()").fetchone()[0]
                with psycopg.connect(**restored) as conn:
                    replayed = conn.execute("SELECT pg_last_xact_replay_timestamp()").fetchone()[0]
                newest_restored = replayed or datetime.fromtimestamp(newest["timestamp"]["stop"], UTC)
                source_sums, restored_sums = table_checksums(source), table_checksums(restored)
                compared_at = time.time()
                postgres_log = server_log.read_text()
            finally:
                subprocess.run([*run_as(owner), pg_binary("pg_ctl"), "-D", data_dir, "-m", "immediate", "-w", "stop"],
                               capture_output=True, timeout=120, check=False)
    tables = [{"name": name,
               "source_rows": source_sums[name][0],
               "restored_rows": restored_sums[name][0] if name in restored_sums else None,
               "match": restored_sums.get(name) == source_sums[name]}
              for name in sorted(source_sums.keys() | restored_sums.keys()) if name in source_sums]
    tables += [{"name": name, "source_rows": None, "restored_rows": restored_sums[name][0], "match": False}
               for name in sorted(restored_sums.keys() - source_sums.keys())]
    return {
        "source": f"{source.get('host', 'localhost')}:{source.get('port', '5432')}/{source.get('dbname', '')}",
        "backup": newest["label"],
        # The restored backup and the ones it builds on: database size and bytes stored in the repository.
        "chain": [{"label": b["label"], "type": b["type"], "size_bytes": b["info"]["size"],
                   "stored_bytes": b["info"]["repository"]["delta"]}
                  for b in backups if b["label"] in {newest["label"], *(newest.get("reference") or [])}],
        "tables": tables,
        "rto_seconds": round(promoted_at - started, 3),
        # download, restore, replay, promote, compare: from the restore's start to the last table compared.
        "phases": phase_timings([started, logged_at(_PGBACKREST_LINE, restore_log, "repo1: restore backup set"),
                                 restored_at, logged_at(_POSTGRES_LINE, postgres_log, "redo done at"), promoted_at,
                                 compared_at]),
        "total_seconds": round(compared_at - started, 3),
        # The database's size in the restored backup, as `pgbackrest info --output=json` gives it (info.size),
        # over the restore command's time (download and restore).
        "restore_bytes": newest["info"]["size"],
        "restore_bytes_per_second": round(newest["info"]["size"] / max(restored_at - started, 1e-3)),
        "wal_segments_restored": sum(1 for _, line in _POSTGRES_LINE.findall(postgres_log)
                                     if line.startswith("restored log file")),
        "rpo_seconds": round(max(0.0, (source_now - newest_restored).total_seconds()), 3),
        "ok": bool(tables) and all(t["match"] for t in tables),
    }


def reachable_or_exit_2(config: BackupConfig, source: Mapping[str, str]) -> None:
    """Before anything is made: the store and the source PostgreSQL answer, else one line naming what to fix
    (pgBackRest would retry an unreachable store for minutes, and the source is read only after the restore)."""
    import psycopg

    try:
        s3_client().head_bucket(Bucket=config.bucket)
    except Exception as exc:  # noqa: BLE001 botocore raises many kinds; all mean unreachable
        raise store_error("head_bucket", config.bucket, exc) from None
    try:
        psycopg.connect(**source, connect_timeout=10).close()
    except psycopg.Error as exc:
        where = f"{source.get('host', 'the local socket')}:{source.get('port', '5432')}"
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ProgramInputError(f"environment: PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE: the source PostgreSQL at "
                                f"{where} does not answer: {detail}") from None


def libpq_source() -> dict[str, str]:
    """The PostgreSQL the drill compares with, from libpq's environment."""
    return {key: value for key, value in {
        "host": os.environ.get("PGHOST"), "port": os.environ.get("PGPORT"), "user": os.environ.get("PGUSER"),
        "password": os.environ.get("PGPASSWORD"), "dbname": os.environ.get("PGDATABASE")}.items() if value}


def cmd_drill(args: argparse.Namespace) -> int:
    import psycopg

    config = stack_backup_config(Path(args.project), args.stack)
    pgbackrest_environment(config)  # the store's credentials are set
    reachable_or_exit_2(config, libpq_source())
    try:
        report = drill(config)
    except (BackupError, psycopg.Error) as exc:
        print(f"infra: error: drill failed: {exc}", file=sys.stderr)
        return 1
    where = write_drill_record(args, config, report)
    if args.format == "json":
        print(json.dumps({**report, "evidence_record": where}, indent=2))
    else:
        print(drill_text(report))
        print(f"evidence: {where}")
        print(f"RTO {report['rto_seconds']}s, RPO {report['rpo_seconds']}s: {'identical' if report['ok'] else 'DIFFERENT'}")
    return 0 if report["ok"] else 1


def drill_text(report: dict) -> str:
    lines = [f"Restore drill of {report['source']} from backup {report['backup']}"]
    lines += [f"  {'ok  ' if t['match'] else 'DIFF'} {t['name']}: {t['source_rows']} rows, restored {t['restored_rows']}"
              for t in report["tables"]]
    phases = ", ".join(f"{p['name']} {p['seconds']:.3f}s" for p in report["phases"])
    lines.append(f"Phases: {phases} (total {report['total_seconds']:.3f}s; {report['wal_segments_restored']} WAL "
                 "segments fetched in replay; download is the backup's metadata only, the files are fetched in restore)")
    lines.append(f"Restored {report['restore_bytes'] / 1e6:.1f} MB (pgbackrest info) in "
                 f"{report['phases'][0]['seconds'] + report['phases'][1]['seconds']:.3f}s: "
                 f"{report['restore_bytes_per_second'] / 1e6:.1f} MB/s")
    return "\n".join(lines)


def write_drill_record(args: argparse.Namespace, config: BackupConfig, report: dict) -> str:
    """The drill's `drill.backup` evidence record, in the stack's backup bucket (`evidence/<stack>/`): it proves
    the checklist's quarterly disaster-recovery drill (and the prod gate reads it). Where it was written."""
    figures = {key: report[key] for key in ("rto_seconds", "rpo_seconds", "total_seconds", "restore_bytes",
                                            "restore_bytes_per_second")}
    matched = sum(1 for t in report["tables"] if t["match"])
    check = evidence.Check(
        id="ongoing.dr-drills", section="Ongoing", text="Quarterly disaster recovery drills",
        status="pass" if report["ok"] else "fail",
        value={**figures, "phases": {p["name"]: p["seconds"] for p in report["phases"]}},
        evidence=f"backup {report['backup']} restored into a throwaway instance: {matched} of {len(report['tables'])} "
                 f"tables identical to {report['source']}; RTO {report['rto_seconds']} s, RPO {report['rpo_seconds']} s")
    project = Path(args.project)
    record = evidence.Record(kind="drill.backup", stack=args.stack, created_at=evidence.now(), commit=commit(project),
                             ok=report["ok"], checks=[check], data=report)
    try:
        return evidence.store_for(args.stack, config.bucket, project).write(record)
    except evidence.EvidenceError as error:
        print(drill_text(report), file=sys.stderr)
        raise ProgramInputError(f"evidence not written: {error}") from None


def cmd_job_policy(args: argparse.Namespace) -> int:
    """The IAM policy of the backup jobs' user for the stack's bucket (components/backup/store.py job_key_policy)."""
    from platform_infra.components.backup.store import job_key_policy

    config = stack_backup_config(Path(args.project), args.stack)
    print(json.dumps(job_key_policy(config.bucket), indent=2))
    return 0


def add_backup_commands(commands, add_program_arguments):
    backup = commands.add_parser("backup", help="check, take or restore the stack's backups")
    actions = backup.add_subparsers(dest="backup_command", required=True)
    verify = actions.add_parser("verify", help="the newest backup of each class in the store, against its schedule")
    add_program_arguments(verify)
    verify.add_argument("--format", choices=["text", "json"], default="text")
    verify.set_defaults(handler=cmd_verify)
    now = actions.add_parser("now", help="take a PostgreSQL backup now, as the scheduled job does")
    add_program_arguments(now)
    now.add_argument("--class", dest="backup_class", choices=["full", "incr"], required=True)
    now.set_defaults(handler=cmd_now)
    drill_ = actions.add_parser("drill", help="restore the newest PostgreSQL backup into a throwaway instance "
                                "and compare every table with the source")
    add_program_arguments(drill_)
    drill_.add_argument("--format", choices=["text", "json"], default="text")
    drill_.set_defaults(handler=cmd_drill)
    policy = actions.add_parser("job-policy", help="print the IAM policy of the backup jobs' key: write and read, "
                                "no version deletes, no change to the bucket's lock, policy or lifecycle")
    add_program_arguments(policy)
    policy.set_defaults(handler=cmd_job_policy)
    return actions  # the CLI adds `restore` (infra/daytwo/restore.py), which imports the drills: no import cycle
