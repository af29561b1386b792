"""Restore time against data size: the physical restore `infra backup drill` runs, beside a logical restore.

    python benchmarks/restore_rto.py [--sizes 100MB 1GB] [--json]

Runs as root (PostgreSQL and pgBackRest run as the postgres account, as in the backup tests) with Debian's
postgresql-15 (the stack's major version), pgbackrest and nginx-light. The store is the backup tests' own:
moto's S3 server (a stand-in for S3) behind nginx's TLS (tests/backup/conftest.py `moto_behind_tls`), the bucket
made by the stack's BackupStore provider, the repository encrypted. For each size:
- a fresh PostgreSQL archiving to the store with the stack's archive settings (components/backup/pgbackrest.py),
  one table (bigint key, text, timestamp, integer: an index and a heap) filled until pg_database_size reaches
  the size, and a full backup taken as `infra backup now` takes it (pgBackRest configured by the stack's
  renderer: zst, two processes);
- (a) the physical restore: `drill()` of infra/daytwo/backup.py, the code `infra backup drill` runs, into a
  throwaway instance; its RTO is from the restore's start to writes accepted (download + restore + replay +
  promote, its phases as the drill reports them), then its compare of every table;
- (b) the logical restore of the seed's rollback procedure: `pg_dump` (plain SQL, `--create`) of the same
  database, then `psql` of that dump into an empty, running instance (initdb'd beforehand); its RTO is the
  `psql` run (the dump, like the backup, exists beforehand; it is read from local disk, so no download is
  counted: in the logical restore's favour). Its tables are then compared with the source, as the drill does.
Both restored instances run with PostgreSQL's defaults for durability (fsync on); only the source's bulk load
runs with fsync off (a command-line setting, so not part of the backup).
Prints a table of size -> RTO for each and the ratio logical / physical. Goal: the physical restore's RTO is
under the logical restore's at the largest size (the output ends with its verdict line).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from platform_infra.components.backup.model import BackupConfig
from platform_infra.components.backup.pgbackrest import (
    Cluster,
    archive_settings,
    render_pgbackrest_conf,
    render_pgbackrest_secrets,
)
from platform_infra.components.backup.store import BackupStoreProvider
from platform_infra.infra.daytwo.backup import (
    BackupError,
    drill,
    libpq_cluster,
    pg_binary,
    pgbackrest,
    pgbackrest_config,
    table_checksums,
)

OS_USER = "postgres"
REGION = "eu-central-1"
DATABASE = "jobs"
UNITS = {"KB": 1024, "MB": 1024**2, "GB": 1024**3}
FILL = ("INSERT INTO job_history (id, payload, state, created_at) "
        "SELECT g, md5(g::text) || md5((g * 7)::text), g %% 5, timestamptz '2026-01-01' + g * interval '1 second' "
        "FROM generate_series(%s, %s) AS g")


def size_bytes(text: str) -> int:
    match = re.fullmatch(r"(\d+)(KB|MB|GB)", text.strip().upper())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r}: a size such as 100MB or 1GB (KB, MB, GB: powers of 1024)")
    return int(match.group(1)) * UNITS[match.group(2)]


def human(n: float) -> str:
    for unit in ("GB", "MB", "KB"):
        if n >= UNITS[unit]:
            return f"{n / UNITS[unit]:.1f} {unit}"
    return f"{n:.0f} B"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def as_postgres(*command: str, timeout: int = 3600) -> None:
    result = subprocess.run(["runuser", "-u", OS_USER, "--", *command], capture_output=True, text=True,
                            timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {(result.stderr or result.stdout).strip()[-800:]}")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def instance(root: Path, settings: dict[str, str], port: int, *, bulk_load: bool = False) -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL 15 in `root`/data (`root` owned by postgres), on a local socket and `port`, with
    `settings` in its postgresql.conf; yields its libpq connection parameters. `bulk_load`: fsync off on the
    command line only (not in the files a backup copies)."""
    data_dir = root / "data"
    as_postgres(pg_binary("initdb"), "-D", str(data_dir), "-U", OS_USER, "--auth=trust", "-E", "UTF8", "--no-sync")
    settings = {**settings, "port": str(port), "listen_addresses": "''", "unix_socket_directories": f"'{root}'"}
    with (data_dir / "postgresql.conf").open("a") as conf:
        conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
    options = ["-o", "-c fsync=off -c full_page_writes=off"] if bulk_load else []
    as_postgres(pg_binary("pg_ctl"), "-D", str(data_dir), "-l", str(root / "server.log"), "-w", *options, "start")
    try:
        yield {"host": str(root), "port": str(port), "user": OS_USER, "dbname": "postgres"}
    finally:
        subprocess.run(["runuser", "-u", OS_USER, "--", pg_binary("pg_ctl"), "-D", str(data_dir), "-m", "immediate",
                        "-w", "stop"], capture_output=True, timeout=120, check=False)


def fill(conninfo: dict[str, str], target: int) -> tuple[int, int]:
    """One table of job history grown until the database reaches `target` bytes; (rows, database bytes)."""
    import psycopg

    with psycopg.connect(**conninfo, autocommit=True) as conn:
        conn.execute("CREATE TABLE job_history (id bigint PRIMARY KEY, payload text NOT NULL, state int NOT NULL, "
                     "created_at timestamptz NOT NULL)")
        empty = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        rows, per_row = 0, 160  # a first guess at a row's bytes, heap and index; measured after each batch
        while (size := conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]) < target:
            if rows:
                per_row = max(50, (size - empty) / rows)
            batch = max(10_000, min(2_000_000, int((target - size) / per_row) + 1))
            conn.execute(FILL, (rows + 1, rows + batch))
            rows += batch
        conn.execute("CHECKPOINT")
        return rows, size


def store_environment(endpoint: str, ca_file: str) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": f"AKIA{secrets.token_hex(8).upper()}", "AWS_SECRET_ACCESS_KEY": secrets.token_hex(20),
            "AWS_REGION": REGION, "AWS_ENDPOINT_URL": endpoint, "AWS_CA_BUNDLE": ca_file,
            "PGBACKREST_REPO1_CIPHER_PASS": secrets.token_urlsafe(32)}


def make_bucket(bucket: str, endpoint: str) -> None:
    """The bucket as the stack's BackupStore provider makes it, then writable through moto (see
    tests/backup/conftest.py `let_moto_write`)."""
    import boto3

    from tests.backup.conftest import let_moto_write

    config = BackupConfig(bucket=bucket, region=REGION, stanza="rto", endpoint=None)
    BackupStoreProvider().create({"bucket": bucket, "region": REGION, "endpoint": endpoint,
                                  "expiry_days": config.expiry_days(), "noncurrent_days": 7, "abort_multipart_days": 2})
    let_moto_write(boto3.session.Session().client("s3", endpoint_url=endpoint), bucket)


def measure(target: int, bucket: str, endpoint: str, ca_file: str, workdir: Path) -> dict:
    stanza = f"rto{target}"
    config = BackupConfig(bucket=bucket, region=REGION, stanza=stanza, endpoint=None)
    root = Path(tempfile.mkdtemp(prefix="bench-rto-", dir=workdir))
    root.chmod(0o755)
    shutil.chown(root, OS_USER)
    data_dir = root / "data"
    port = free_port()
    conf = root / "pgbackrest.conf"  # the server's archive_command reads it, as in the stack
    conf.write_text(render_pgbackrest_conf(config, Cluster(str(data_dir), port, str(root), OS_USER),
                                           endpoint_url=endpoint, ca_file=ca_file))
    conf.chmod(0o644)
    include = root / "pgbackrest-include"
    include.mkdir()
    shutil.chown(include, OS_USER)
    credentials = include / "credentials.conf"
    credentials.write_text(render_pgbackrest_secrets(os.environ["PGBACKREST_REPO1_CIPHER_PASS"],
                                                     os.environ["AWS_ACCESS_KEY_ID"],
                                                     os.environ["AWS_SECRET_ACCESS_KEY"]))
    credentials.chmod(0o400)
    shutil.chown(credentials, OS_USER)
    archive = {key: value if value.startswith("'") or key != "archive_command" else f"'{value}'"
               for key, value in archive_settings(config, str(conf), str(include)).items()}
    try:
        with instance(root, archive, port, bulk_load=True) as source:
            import psycopg

            with psycopg.connect(**source, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {DATABASE}")
            source = {**source, "dbname": DATABASE}
            log(f"{human(target)}: filling")
            rows, database_bytes = fill(source, target)
            os.environ.update({"PGHOST": source["host"], "PGPORT": source["port"], "PGUSER": OS_USER,
                               "PGDATABASE": DATABASE, "PGDATA": str(data_dir)})
            log(f"{human(target)}: {rows} rows, {human(database_bytes)}; full backup")
            # As `infra backup now --class full` does it (infra/daytwo/backup.py cmd_now).
            with pgbackrest_config(config, libpq_cluster(str(data_dir))) as pgbackrest_conf:
                stanza_create(pgbackrest_conf, config)
                pgbackrest(pgbackrest_conf, config, OS_USER, "--type=full", "backup")
            log(f"{human(target)}: physical restore (the drill)")
            report = drill(config)
            if not report["ok"]:
                raise RuntimeError(f"the drill's restore differs from the source: {report['tables']}")
            log(f"{human(target)}: logical restore (pg_dump, then psql into an empty instance)")
            logical = logical_restore(source, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    phases = {p["name"]: p["seconds"] for p in report["phases"]}
    return {"size": human(target), "target_bytes": target, "rows": rows, "database_bytes": database_bytes,
            "backup_bytes": report["restore_bytes"], "stored_bytes": report["chain"][-1]["stored_bytes"],
            "physical": {"rto_seconds": report["rto_seconds"], "phases": phases,
                         "restore_bytes_per_second": report["restore_bytes_per_second"],
                         "wal_segments_restored": report["wal_segments_restored"]},
            "logical": logical,
            "ratio": round(logical["rto_seconds"] / report["rto_seconds"], 2)}


def stanza_create(conf: str, config: BackupConfig) -> None:
    """`stanza-create`, retried while the server's own archive-push holds the stanza's archive lock (the
    archiver creates the stanza when it pushes the first segment: tests/backup `test_a_fresh_server_...`)."""
    for attempt in range(30):
        try:
            pgbackrest(conf, config, OS_USER, "stanza-create")
            return
        except BackupError as error:
            if "unable to acquire lock" not in str(error) or attempt == 29:
                raise
            time.sleep(1)


def logical_restore(source: dict[str, str], root: Path) -> dict:
    dump = root / "dump.sql"
    started = time.monotonic()
    as_postgres(pg_binary("pg_dump"), "-h", source["host"], "-p", source["port"], "-U", OS_USER, "--create",
                "-f", str(dump), DATABASE)
    dumped = time.monotonic() - started
    target_root = root / "logical"
    target_root.mkdir()
    shutil.chown(target_root, OS_USER)
    with instance(target_root, {}, free_port()) as target:
        started = time.monotonic()
        as_postgres(pg_binary("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", target["host"], "-p",
                    target["port"], "-U", OS_USER, "-d", "postgres", "-f", str(dump))
        loaded = time.monotonic() - started
        same = table_checksums(source) == table_checksums({**target, "dbname": DATABASE})
    if not same:
        raise RuntimeError("the logical restore differs from the source")
    return {"rto_seconds": round(loaded, 3), "dump_seconds": round(dumped, 3), "dump_bytes": dump.stat().st_size}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    load = os.getloadavg()[0]
    return f"{os.cpu_count()} CPUs ({cpu}), {human(memory)} RAM, {platform.system()} {platform.release()}, " \
           f"load average {load:.1f} at the start"


def table(results: list[dict]) -> str:
    header = (f"{'size':>8} {'database':>9} {'backup':>9} | {'physical RTO':>12} {'download':>8} {'restore':>8} "
              f"{'replay':>7} {'promote':>7} {'MB/s':>6} | {'logical RTO':>11} {'(dump)':>8} | {'logical/physical':>16}")
    lines = [header]
    for r in results:
        p, ph = r["physical"], r["physical"]["phases"]
        lines.append(f"{r['size']:>8} {human(r['database_bytes']):>9} {human(r['backup_bytes']):>9} | "
                     f"{p['rto_seconds']:>11.1f}s {ph['download']:>7.2f}s {ph['restore']:>7.1f}s "
                     f"{ph['replay']:>6.1f}s {ph['promote']:>6.1f}s {p['restore_bytes_per_second'] / 1e6:>6.1f} | "
                     f"{r['logical']['rto_seconds']:>10.1f}s {r['logical']['dump_seconds']:>7.1f}s | "
                     f"{r['ratio']:>15.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=size_bytes, default=[100 * UNITS["MB"], UNITS["GB"]],
                        metavar="SIZE", help="database sizes to build (default: 100MB 1GB)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("run as root: PostgreSQL and pgBackRest run as the postgres account (runuser)")
    for tool in ("pgbackrest", "runuser", "nginx"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} not found (Debian: apt-get install pgbackrest util-linux nginx-light)")

    from tests.backup.conftest import moto_behind_tls

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    where = machine()
    results = []
    workdir = Path(tempfile.mkdtemp(prefix="bench-rto-"))
    workdir.chmod(0o755)
    saved = dict(os.environ)
    try:
        with moto_behind_tls(("localhost",)) as s3:
            os.environ.update(store_environment(s3.endpoint, s3.ca_file))
            bucket = f"bench-rto-{secrets.token_hex(3)}"
            make_bucket(bucket, s3.endpoint)
            for target in sorted(args.sizes):
                results.append(measure(target, bucket, s3.endpoint, s3.ca_file, workdir))
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(workdir, ignore_errors=True)
    largest = results[-1]
    met = largest["physical"]["rto_seconds"] < largest["logical"]["rto_seconds"]
    if args.json:
        print(json.dumps({"machine": where, "results": results, "goal_met": met}, indent=2))
        return 0
    print(f"restore RTO against size: pgBackRest through moto's S3 (TLS via nginx) and pg_dump/psql, on {where}")
    print(table(results))
    print("  physical RTO = download + restore + replay + promote (`infra backup drill`'s phases; download is the "
          "backup's metadata only: pgBackRest fetches and writes each file in one stream, inside restore); "
          "MB/s = backup size (pgbackrest info) over download + restore")
    print("  logical RTO = psql of a plain pg_dump (--create) into an empty running instance, the dump on local disk")
    verdict = "met" if met else "NOT met"
    print(f"goal: the physical restore is faster than the logical one at the largest size: {verdict} "
          f"({largest['size']}: {largest['physical']['rto_seconds']:.1f}s against "
          f"{largest['logical']['rto_seconds']:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
