"""A real PostgreSQL backed up with pgBackRest into moto's S3 (over TLS) and restored from it.

The bucket is made by the BackupStore provider, the archive command and pgbackrest.conf come from the
renderers the stack uses, backups are taken with `infra backup now` and restored by `infra backup drill`,
all driven by the standard AWS and libpq environment variables only."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import psycopg
import pytest
import yaml

from platform_infra.components.backup.jobs import curl_s3_config, pgpass_line, render_job_script
from platform_infra.components.backup.model import BackupConfig
from platform_infra.components.backup.pgbackrest import (
    Cluster,
    archive_settings,
    render_pgbackrest_conf,
    render_pgbackrest_secrets,
)
from platform_infra.components.backup.store import BackupStoreProvider
from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.daytwo.backup import table_checksums
from platform_infra.infra.mockrun import load_project
from tests.backup.conftest import REGION, TlsS3, free_port, let_moto_write
from tests.conftest import require_tool


@pytest.fixture
def promtool() -> str:
    return require_tool("promtool", "prometheus")

PG_BIN = Path("/usr/lib/postgresql/15/bin")
OS_USER = "postgres"
BUCKET = "i12-drill-backups"
FRESH_BUCKET = "i12-fresh-backups"
STANZA = "drill"
DATABASE = "jobs"
BIG_ROWS = 300_000
INFRA = [sys.executable, "-m", "platform_infra.infra.cli"]
# The project's own settings for this throwaway stack: the store on moto, everything else as in dev.
STACK_FILE = f"""
config:
  platform:settings:
    environment: dev
    public_hosts: [orchestration.dev.internal]
    registry: registry.internal/orchestration
    app_version: 1.0.0
    monitoring:
      email: {{to: oncall@example.com, from_address: am@example.com, smarthost: smtp.example.com:587,
               auth_username: am@example.com}}
      slack: {{channel: "#drill"}}
    backups:
      bucket: {BUCKET}
      region: {REGION}
      stanza: {STANZA}
      clickhouse: {{schedule: "0 2 * * 0", max_age: MAXAGE}}
"""

SCHEMA = """
CREATE SEQUENCE ticket_seq START 1000 INCREMENT 7;
CREATE TABLE awkward (
    id bigint PRIMARY KEY DEFAULT nextval('ticket_seq'),
    raw bytea, doc jsonb, tags text[], amount numeric(38, 12), at timestamptz, note text);
INSERT INTO awkward (raw, doc, tags, amount, at, note)
SELECT CASE WHEN g % 5 = 0 THEN NULL ELSE decode(md5(g::text) || '00ff', 'hex') END,
       CASE WHEN g % 7 = 0 THEN NULL ELSE jsonb_build_object('n', g, 'nested', jsonb_build_array(g, 'x', NULL)) END,
       CASE WHEN g % 3 = 0 THEN NULL ELSE ARRAY['a', NULL, 'quote''s', g::text] END,
       CASE WHEN g % 11 = 0 THEN NULL ELSE g * 12345.678901234567 END,
       CASE WHEN g % 13 = 0 THEN NULL ELSE timestamptz '2026-01-01 00:00:00+05:30' + g * interval '1 minute' END,
       CASE WHEN g % 2 = 0 THEN E'tab\\there\\nnewline' ELSE NULL END
FROM generate_series(1, 2000) AS g;
CREATE TABLE "Event Log" (id bigint PRIMARY KEY, payload text NOT NULL, at timestamptz NOT NULL);
INSERT INTO "Event Log" SELECT g, md5(g::text), timestamptz '2026-06-01 00:00:00Z' + g * interval '1 second'
FROM generate_series(1, {big}) AS g;
"""


@dataclass(frozen=True)
class Chain:
    env: dict[str, str]
    project: Path
    data_dir: Path
    socket_dir: Path
    conf: Path
    full_label: str
    incr_label: str


def run(*command: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def as_postgres(*command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = run("runuser", "-u", OS_USER, "--", *command, env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    return result


def sql(env: dict[str, str], statement: str, dbname: str | None = None):
    with psycopg.connect(host=env["PGHOST"], port=env["PGPORT"], user=env["PGUSER"],
                         dbname=dbname or env["PGDATABASE"], autocommit=True) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchall() if cursor.description else None


def wait_archived(env: dict[str, str]) -> None:
    """Switch WAL segments and wait until pgBackRest has archived the one just closed."""
    [(segment,)] = sql(env, "SELECT pg_walfile_name(pg_switch_wal())", dbname="postgres")
    deadline = time.monotonic() + 120
    while (sql(env, "SELECT last_archived_wal FROM pg_stat_archiver", dbname="postgres")[0][0] or "") < segment:
        assert time.monotonic() < deadline, sql(env, "SELECT * FROM pg_stat_archiver", dbname="postgres")
        time.sleep(0.2)


def infra(chain_env: dict[str, str], project: Path, *args: str, stack: str = "drill") -> subprocess.CompletedProcess:
    return run(*INFRA, *args, "--stack", stack, "--project", str(project), env=chain_env)


def secret_file(path: Path, content: str) -> None:
    """A credential file as the runtimes deliver it: readable by the job's user alone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.chown(path.parent, OS_USER)
    path.write_text(content)
    path.chmod(0o400)
    shutil.chown(path, OS_USER)


@pytest.fixture(scope="module")
def chain(tls_s3: TlsS3) -> Iterator[Chain]:
    """PostgreSQL with awkward data, archiving to the store; a full and an incremental `infra backup now`,
    then more writes that only the archived WAL holds."""
    for tool in ("pgbackrest", "runuser"):
        require_tool(tool, "pgbackrest" if tool == "pgbackrest" else "util-linux")
    if not (PG_BIN / "initdb").exists():
        require_tool("initdb", "postgresql-15")
    root = Path(tempfile.mkdtemp(prefix="i12-pg-"))
    root.chmod(0o755)
    shutil.chown(root, OS_USER)
    data_dir, socket_dir, port = root / "data", root, free_port()
    config = BackupConfig(bucket=BUCKET, region=REGION, stanza=STANZA, endpoint=None)
    env = {
        "PATH": os.environ["PATH"], "HOME": str(root),
        "AWS_ACCESS_KEY_ID": f"AKIA{secrets.token_hex(8).upper()}", "AWS_SECRET_ACCESS_KEY": secrets.token_hex(20),
        "AWS_REGION": REGION, "AWS_ENDPOINT_URL": tls_s3.endpoint, "AWS_CA_BUNDLE": tls_s3.ca_file,
        "PGBACKREST_REPO1_CIPHER_PASS": secrets.token_urlsafe(32),
        "PGHOST": str(socket_dir), "PGPORT": str(port), "PGUSER": OS_USER, "PGDATABASE": DATABASE,
        "PGDATA": str(data_dir),
    }
    project = root / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: platform\nruntime: python\nmain: .\n")
    (project / "__main__.py").write_text("")
    (project / "Pulumi.drill.yaml").write_text(STACK_FILE.replace("MAXAGE", "8d"))
    # The same store, judged by a stack whose ClickHouse backups must be at most a second old.
    (project / "Pulumi.impatient.yaml").write_text(STACK_FILE.replace("MAXAGE", "1s"))

    with pytest.MonkeyPatch.context() as patch:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_CA_BUNDLE"):
            patch.setenv(key, env[key])
        BackupStoreProvider().create({
            "bucket": BUCKET, "region": REGION, "endpoint": tls_s3.endpoint, "expiry_days": config.expiry_days(),
            "noncurrent_days": 7, "abort_multipart_days": 2})
        let_moto_write(boto3.session.Session().client("s3", endpoint_url=tls_s3.endpoint), BUCKET)

    # The server's archive_command reads this file, rendered by the function the stack's job uses.
    conf = root / "pgbackrest.conf"
    conf.write_text(render_pgbackrest_conf(config, Cluster(str(data_dir), port, str(socket_dir), OS_USER),
                                           endpoint_url=tls_s3.endpoint, ca_file=tls_s3.ca_file))
    conf.chmod(0o644)
    # The server's credentials come only from the credentials file the stack renders (no PGBACKREST_* env,
    # which would take precedence over it).
    include = root / "pgbackrest-include"
    secret_file(include / "credentials.conf", render_pgbackrest_secrets(
        env["PGBACKREST_REPO1_CIPHER_PASS"], env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]))
    server_env = {key: value for key, value in env.items() if not key.startswith(("PGBACKREST_", "AWS_"))}
    as_postgres(str(PG_BIN / "initdb"), "-D", str(data_dir), "-U", OS_USER, "--auth=trust", "-E", "UTF8",
                "--no-sync", env=env)
    settings = {**archive_settings(config, str(conf), str(include)), "port": str(port), "listen_addresses": "''",
                "unix_socket_directories": f"'{socket_dir}'", "fsync": "off"}
    with (data_dir / "postgresql.conf").open("a") as postgresql_conf:
        for key, value in settings.items():
            quoted = value if value.startswith("'") or key != "archive_command" else f"'{value}'"
            postgresql_conf.write(f"{key} = {quoted}\n")
    as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data_dir), "-l", str(root / "server.log"), "-w", "start",
                env=server_env)
    try:
        sql(env, f"CREATE DATABASE {DATABASE}", dbname="postgres")
        with psycopg.connect(host=env["PGHOST"], port=port, user=OS_USER, dbname=DATABASE) as conn:
            conn.execute(SCHEMA.format(big=BIG_ROWS))

        full = infra(env, project, "backup", "now", "--class", "full")
        assert full.returncode == 0, full.stderr
        sql(env, "INSERT INTO \"Event Log\" SELECT g, 'after full', now() FROM generate_series(1000001, 1005000) g")
        sql(env, "UPDATE awkward SET doc = doc || '{\"updated\": true}' WHERE id % 3 = 0")
        incr = infra(env, project, "backup", "now", "--class", "incr")
        assert incr.returncode == 0, incr.stderr
        # Only the archived WAL holds these: the restore must replay it.
        sql(env, "INSERT INTO awkward (raw, note) VALUES ('\\x00'::bytea, 'after the incremental')")
        sql(env, "DELETE FROM \"Event Log\" WHERE id % 1000 = 0")
        wait_archived(env)
        yield Chain(env, project, data_dir, socket_dir, conf, full.stdout.strip(), incr.stdout.strip())
    finally:
        run("runuser", "-u", OS_USER, "--", str(PG_BIN / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_backup_now_prints_the_labels_of_a_full_and_an_incremental(chain):
    assert chain.full_label.endswith("F")
    assert chain.incr_label.startswith(chain.full_label + "_") and chain.incr_label.endswith("I")


def test_the_repository_is_encrypted_at_rest(chain, tls_s3):
    client = boto3.session.Session().client("s3", endpoint_url=tls_s3.endpoint, region_name=REGION,
                                            aws_access_key_id=chain.env["AWS_ACCESS_KEY_ID"],
                                            aws_secret_access_key=chain.env["AWS_SECRET_ACCESS_KEY"],
                                            verify=tls_s3.ca_file)
    info = client.get_object(Bucket=BUCKET, Key=f"postgres/backup/{STANZA}/backup.info")["Body"].read()
    # pgBackRest's aes-256-cbc output starts with OpenSSL's salted header, never the INI text.
    assert info.startswith(b"Salted__")


def test_drill_restores_every_table_identical(chain):
    result = infra(chain.env, chain.project, "backup", "drill", "--format", "json")
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads(result.stdout)
    assert set(report) >= {"source", "backup", "tables", "rto_seconds", "rpo_seconds", "ok"}
    assert report["ok"] is True and report["backup"] == chain.incr_label
    assert [(b["label"], b["type"]) for b in report["chain"]] == [(chain.full_label, "full"), (chain.incr_label, "incr")]
    assert report["chain"][1]["stored_bytes"] < report["chain"][0]["stored_bytes"]
    rows = {t["name"]: t["restored_rows"] for t in report["tables"]}
    # 300 000 + 5 000 rows, less every thousandth id (300 + 5); 2 000 + 1 awkward ones.
    assert rows == {"public.\"Event Log\"": 304_695, "public.awkward": 2001}
    assert all(t["match"] and t["source_rows"] == t["restored_rows"] for t in report["tables"])
    assert 0 < report["rto_seconds"] < 600 and 0 <= report["rpo_seconds"] < 600
    assert_phases(report)
    # The throughput is the backup's size as pgBackRest's info gives it, over the restore command's time.
    assert report["restore_bytes"] == report["chain"][-1]["size_bytes"] > 0
    command = report["phases"][0]["seconds"] + report["phases"][1]["seconds"]
    assert abs(report["restore_bytes_per_second"] - report["restore_bytes"] / command) <= 0.01 * report["restore_bytes_per_second"]
    # The writes after the incremental live only in the archived WAL: the replay fetched it.
    assert report["wal_segments_restored"] >= 1
    assert_drill_record(chain, report)
    print(f"\ndrill: {json.dumps(report)}")
    text = infra(chain.env, chain.project, "backup", "drill")
    assert text.returncode == 0 and "public.awkward: 2001 rows, restored 2001" in text.stdout
    assert re.search(r"^Phases: download [\d.]+s, restore [\d.]+s, replay [\d.]+s, promote [\d.]+s, compare [\d.]+s "
                     r"\(total [\d.]+s; \d+ WAL segments", text.stdout, re.MULTILINE), text.stdout
    assert re.search(r"^Restored [\d.]+ MB \(pgbackrest info\) in [\d.]+s: [\d.]+ MB/s$", text.stdout, re.MULTILINE)
    assert text.stdout.splitlines()[-1].endswith("identical")


def assert_phases(report: dict) -> None:
    """download, restore, replay, promote, compare: in that order, each starting where the one before ended,
    none negative, each phase that does work on this chain taking time (a boundary its log line no longer
    gives would leave its phase at 0), adding up to no more than the whole, the first four to the RTO."""
    phases = report["phases"]
    assert [p["name"] for p in phases] == ["download", "restore", "replay", "promote", "compare"]
    assert phases[0]["start_seconds"] == 0 and all(p["seconds"] >= 0 for p in phases)
    for before, after in itertools.pairwise(phases):
        assert after["start_seconds"] == pytest.approx(before["start_seconds"] + before["seconds"], abs=1e-6)
    assert all(p["seconds"] > 0 for p in phases), phases
    assert round(sum(p["seconds"] for p in phases), 3) <= report["total_seconds"]
    assert sum(p["seconds"] for p in phases[:4]) == pytest.approx(report["rto_seconds"], abs=0.002)
    assert all(p["observed_by"] for p in phases)


def assert_drill_record(chain: Chain, report: dict) -> None:
    """The drill's evidence record, in the stack's bucket, carries the same figures."""
    store = boto3.session.Session().client("s3", endpoint_url=chain.env["AWS_ENDPOINT_URL"], region_name=REGION,
                                           aws_access_key_id=chain.env["AWS_ACCESS_KEY_ID"],
                                           aws_secret_access_key=chain.env["AWS_SECRET_ACCESS_KEY"],
                                           verify=chain.env["AWS_CA_BUNDLE"])
    key = report["evidence_record"].removeprefix(f"s3://{BUCKET}/")
    assert key.startswith("evidence/drill/") and key.endswith("-drill.backup.json")
    record = json.loads(store.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert record["kind"] == "drill.backup" and record["stack"] == "drill" and record["ok"] is True
    assert record["data"]["phases"] == report["phases"]
    assert record["data"]["restore_bytes_per_second"] == report["restore_bytes_per_second"]
    [check] = record["checks"]
    assert check["id"] == "ongoing.dr-drills" and check["status"] == "pass"
    assert check["value"]["phases"] == {p["name"]: p["seconds"] for p in report["phases"]}


def test_drill_exits_1_when_the_restore_differs(chain):
    """Writes that never reach the store (archiving stopped) make the source and the restore differ."""
    sql(chain.env, "ALTER SYSTEM SET archive_command = '/bin/false'", dbname="postgres")
    sql(chain.env, "SELECT pg_reload_conf()", dbname="postgres")
    try:
        sql(chain.env, "UPDATE awkward SET note = 'never archived' WHERE id = 1000")
        result = infra(chain.env, chain.project, "backup", "drill", "--format", "json")
        assert result.returncode == 1, result.stderr
        report = json.loads(result.stdout)
        assert report["ok"] is False
        assert {t["name"]: t["match"] for t in report["tables"]} == {"public.\"Event Log\"": True,
                                                                     "public.awkward": False}
    finally:
        sql(chain.env, "ALTER SYSTEM RESET archive_command", dbname="postgres")
        sql(chain.env, "SELECT pg_reload_conf()", dbname="postgres")
        wait_archived(chain.env)


def test_dropped_database_comes_back_from_the_store(chain):
    """The rollback plan's "restore database": drop it, restore the cluster from S3 to just before the drop."""
    before = table_checksums({"host": chain.env["PGHOST"], "port": chain.env["PGPORT"], "user": OS_USER,
                              "dbname": DATABASE})
    sql(chain.env, "SELECT pg_create_restore_point('before-drop')", dbname="postgres")
    sql(chain.env, f"DROP DATABASE {DATABASE}", dbname="postgres")
    wait_archived(chain.env)
    server_env = {**chain.env, "PGBACKREST_REPO1_S3_KEY": chain.env["AWS_ACCESS_KEY_ID"],
                  "PGBACKREST_REPO1_S3_KEY_SECRET": chain.env["AWS_SECRET_ACCESS_KEY"]}
    as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(chain.data_dir), "-m", "fast", "-w", "stop")
    as_postgres("pgbackrest", f"--config={chain.conf}", f"--stanza={STANZA}", "--delta", "--type=name",
                "--target=before-drop", "--target-action=promote", "restore", env=server_env)
    as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(chain.data_dir), "-l", str(chain.data_dir.parent / "server.log"),
                "-w", "start", env=server_env)
    deadline = time.monotonic() + 120
    while sql(chain.env, "SELECT pg_is_in_recovery()", dbname="postgres")[0][0]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    log = (chain.data_dir.parent / "server.log").read_text()
    assert "recovery stopping at restore point \"before-drop\"" in log, log[-3000:]
    after = table_checksums({"host": chain.env["PGHOST"], "port": chain.env["PGPORT"], "user": OS_USER,
                             "dbname": DATABASE})
    assert after == before


def store_client(chain, tls_s3):
    return boto3.session.Session().client("s3", endpoint_url=tls_s3.endpoint, region_name=REGION,
                                          aws_access_key_id=chain.env["AWS_ACCESS_KEY_ID"],
                                          aws_secret_access_key=chain.env["AWS_SECRET_ACCESS_KEY"],
                                          verify=tls_s3.ca_file)


def test_verify_names_the_classes_with_no_backup(chain):
    result = infra(chain.env, chain.project, "backup", "verify", "--format", "json")
    assert result.returncode == 1, result.stderr
    report = {c["class"]: c for c in json.loads(result.stdout)["classes"]}
    assert report["incr"]["fresh"] and report["full"]["fresh"]
    assert report["incr"]["newest"].endswith(f"/{chain.incr_label}/backup.manifest")
    assert {name for name, c in report.items() if c["newest"] is None} == {"clickhouse", "logs", "config"}
    for name in ("clickhouse", "logs", "config"):
        assert f"backup class {name} is missing" in result.stderr


def test_verify_passes_when_every_class_is_fresh_and_names_the_stale_one(chain, tls_s3):
    client = store_client(chain, tls_s3)
    # Stand-ins for what clickhouse-backup, the log archive and the configuration jobs upload.
    keys = ["clickhouse/weekly-20261203/metadata.json", "logs/2026-11.tar.zst", "config/20261203.tar.zst.enc"]
    for key in keys:
        client.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    try:
        fresh = infra(chain.env, chain.project, "backup", "verify")
        assert fresh.returncode == 0, fresh.stdout + fresh.stderr
        assert [line.split()[:2] for line in fresh.stdout.splitlines()] == [
            [name, "fresh"] for name in ("incr", "full", "clickhouse", "logs", "config")]
        time.sleep(1.5)
        stale = infra(chain.env, chain.project, "backup", "verify", stack="impatient")
        assert stale.returncode == 1
        assert "backup class clickhouse is stale" in stale.stderr and "incr" not in stale.stderr
    finally:
        for key in keys:
            for version in client.list_object_versions(Bucket=BUCKET, Prefix=key).get("Versions", []):
                client.delete_object(Bucket=BUCKET, Key=key, VersionId=version["VersionId"])


@pytest.mark.parametrize("command", ["verify", "drill"])
@pytest.mark.parametrize("change, message", [
    ({"AWS_ENDPOINT_URL": "https://localhost:9"},
     "infra: error: store unreachable: no S3 answers at https://localhost:9 (AWS_ENDPOINT_URL; bucket i12-drill-backups)"),
    ({"AWS_SECRET_ACCESS_KEY": ""}, "infra: error: environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set"),
])
def test_backup_commands_exit_2_naming_what_to_set_when_the_store_cannot_be_reached(chain, command, change, message):
    env = {**chain.env, **change}
    if not env["AWS_SECRET_ACCESS_KEY"]:
        del env["AWS_SECRET_ACCESS_KEY"], env["AWS_ACCESS_KEY_ID"]
        env.update(AWS_SHARED_CREDENTIALS_FILE="/nonexistent", AWS_CONFIG_FILE="/nonexistent")
    result = infra(env, chain.project, "backup", command)
    assert result.returncode == 2 and result.stderr.startswith(message), result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_drill_exits_2_naming_the_source_postgres_it_cannot_reach(chain):
    """Checked before the throwaway instance is made: nothing is restored for a source that is not there."""
    result = infra({**chain.env, "PGHOST": "127.0.0.1", "PGPORT": "9"}, chain.project, "backup", "drill")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("infra: error: environment: PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE: the source "
                                    "PostgreSQL at 127.0.0.1:9 does not answer: "), result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_backup_commands_exit_2_on_bad_input(chain):
    unknown = infra(chain.env, chain.project, "backup", "verify", stack="nope")
    assert unknown.returncode == 2 and "--stack: no Pulumi.nope.yaml" in unknown.stderr
    no_pgdata = infra({k: v for k, v in chain.env.items() if k != "PGDATA"}, chain.project, "backup", "now",
                      "--class", "full")
    assert no_pgdata.returncode == 2 and "PGDATA" in no_pgdata.stderr
    plain_http = infra({**chain.env, "AWS_ENDPOINT_URL": "http://localhost:9"}, chain.project, "backup", "now",
                       "--class", "incr")
    assert plain_http.returncode == 2 and "AWS_ENDPOINT_URL" in plain_http.stderr and "https" in plain_http.stderr
    bad_class = infra(chain.env, chain.project, "backup", "now", "--class", "weekly")
    assert bad_class.returncode == 2 and "invalid choice: 'weekly'" in bad_class.stderr


def test_backup_now_exits_1_when_pgbackrest_fails(chain):
    """A PostgreSQL that is not there (wrong port): pgBackRest refuses and infra says so."""
    result = infra({**chain.env, "PGPORT": "9"}, chain.project, "backup", "now", "--class", "incr")
    assert result.returncode == 1 and "pgbackrest" in result.stderr, result.stderr


def run_job(chain, tls_s3, config_dir: Path, textfile_dir: Path, backup_class: str) -> subprocess.CompletedProcess:
    """The stack's rendered job script, run as the postgres user against this cluster and store."""
    config = BackupConfig(bucket=BUCKET, region=REGION, stanza=STANZA)
    script = textfile_dir.parent / "platform-backup"
    script.write_text(render_job_script(config))
    script.chmod(0o444)  # as the runtimes deliver it; the crontab runs it with `sh`
    # Every credential as the stack gives it: secret files, none in the environment.
    secrets_dir = textfile_dir.parent / "secrets"
    key, key_secret = chain.env["AWS_ACCESS_KEY_ID"], chain.env["AWS_SECRET_ACCESS_KEY"]
    cipher_pass = chain.env["PGBACKREST_REPO1_CIPHER_PASS"]
    secret_file(secrets_dir / "pgbackrest" / "credentials.conf", render_pgbackrest_secrets(cipher_pass, key, key_secret))
    secret_file(secrets_dir / "cipher_pass", cipher_pass)
    secret_file(secrets_dir / "curl-s3.conf", curl_s3_config(key, key_secret))
    secret_file(secrets_dir / "pgpass", pgpass_line(OS_USER, "unused: the test cluster trusts its socket"))
    plain = {name: value for name, value in chain.env.items() if not name.startswith(("PGBACKREST_", "AWS_"))}
    env = {**plain, "PGBACKREST_CONFIG": str(chain.conf), "TEXTFILE_DIR": str(textfile_dir),
           "PGBACKREST_CONFIG_INCLUDE_PATH": str(secrets_dir / "pgbackrest"),
           "BACKUP_CIPHER_PASS_FILE": str(secrets_dir / "cipher_pass"),
           "S3_CURL_CONFIG": str(secrets_dir / "curl-s3.conf"), "PGPASSFILE": str(secrets_dir / "pgpass"),
           "S3_BUCKET_URL": f"{tls_s3.endpoint}/{BUCKET}", "S3_CA_FILE": tls_s3.ca_file, "CONFIG_BACKUP_DIR": str(config_dir),
           "LOG_ARCHIVE_DIR": str(config_dir),
           "TMPDIR": str(textfile_dir.parent)}
    return run("runuser", "-u", OS_USER, "--", "/bin/sh", str(script), backup_class, env=env)


@pytest.fixture(scope="module")
def job_runs(chain, tls_s3) -> dict:
    """The job script run for an incremental, a full and the configuration archive; what each left behind."""
    for tool in ("curl", "zstd", "openssl"):
        require_tool(tool)
    work = Path(tempfile.mkdtemp(prefix="i12-job-"))
    textfile_dir, config_dir = work / "textfile", work / "config"
    textfile_dir.mkdir()
    config_dir.mkdir()
    (config_dir / "settings.json").write_text('{"environment": "drill"}')
    (config_dir / "server.key").write_text("-----BEGIN PRIVATE KEY-----\nnot a real key\n-----END PRIVATE KEY-----\n")
    for path in (work, textfile_dir, config_dir, *config_dir.iterdir()):
        shutil.chown(path, OS_USER)
    try:
        results = {}
        for backup_class in ("incr", "full", "config", "logs"):
            started = time.time()
            results[backup_class] = (run_job(chain, tls_s3, config_dir, textfile_dir, backup_class), started)
        yield {"results": results, "textfile": textfile_dir}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_the_job_script_backs_up_and_writes_its_metric(job_runs, promtool):
    for backup_class, (result, started) in job_runs["results"].items():
        assert result.returncode == 0, f"{backup_class}: {result.stderr}"
        metric = job_runs["textfile"] / f"backup-{backup_class}.prom"
        check = subprocess.run([promtool, "check", "metrics"], input=metric.read_text(), capture_output=True,
                               text=True, timeout=30, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        [sample] = [line for line in metric.read_text().splitlines() if not line.startswith("#")]
        assert sample.startswith(f'backup_last_success_timestamp_seconds{{type="{backup_class}"}} ')
        assert started - 1 <= int(sample.split()[-1]) <= time.time() + 1


def test_the_configuration_archive_is_encrypted_and_restorable(chain, tls_s3, job_runs):
    client = store_client(chain, tls_s3)
    [key] = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="config/").get("Contents", [])]
    sealed = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert b"PRIVATE KEY" not in sealed and sealed.startswith(b"Salted__")
    opened = subprocess.run(["openssl", "enc", "-d", "-aes-256-cbc", "-pbkdf2", "-iter", "600000",
                             "-pass", "env:PGBACKREST_REPO1_CIPHER_PASS"], input=sealed, capture_output=True,
                            env={"PGBACKREST_REPO1_CIPHER_PASS": chain.env["PGBACKREST_REPO1_CIPHER_PASS"]},
                            timeout=30, check=True).stdout
    archive = subprocess.run(["zstd", "-d", "-c"], input=opened, capture_output=True, timeout=30, check=True).stdout
    listing = subprocess.run(["tar", "-tf", "-"], input=archive, capture_output=True, timeout=30, check=True).stdout
    assert {"./settings.json", "./server.key"} <= set(listing.decode().split())
    [log_archive] = client.list_objects_v2(Bucket=BUCKET, Prefix="logs/")["Contents"]
    assert log_archive["Key"].startswith(f"logs/{time.strftime('%Y-%m', time.gmtime())}-")
    for prefix in ("config/", "logs/"):
        for version in client.list_object_versions(Bucket=BUCKET, Prefix=prefix).get("Versions", []):
            client.delete_object(Bucket=BUCKET, Key=version["Key"], VersionId=version["VersionId"])


def _series_from_job(job_runs, backup_class: str) -> tuple[str, float]:
    """The job's sample as node_exporter serves it (its target labels added), and the value relative to
    when the job ran: promtool's clock starts at 0, so time 0 is the moment the job wrote the file."""
    _, started = job_runs["results"][backup_class]
    [sample] = [line for line in (job_runs["textfile"] / f"backup-{backup_class}.prom").read_text().splitlines()
                if not line.startswith("#")]
    selector, value = sample.rsplit(" ", 1)
    labels = selector.removesuffix("}") + ',job="node-exporter",instance="node-exporter:9100"}'
    return labels, float(value) - started


def test_stale_backup_alerts_are_silent_while_the_job_runs_and_fire_when_it_stops(job_runs, promtool, tmp_path):
    """The alert rules the stack deploys, fed with what the job script wrote: hourly incrementals and daily
    fulls keep both alerts silent for two days; a job that stops makes each fire past its max age."""
    from platform_infra.components.monitoring import render_alert_rules
    from platform_infra.components.monitoring.alerts import alert_specs
    from platform_infra.components.monitoring.model import duration_seconds
    from platform_infra.components.monitoring.render import _expected_alert
    from platform_infra.infra.settings import parse_settings

    project = load_project(REPO_ROOT, "prod")
    monitoring = parse_settings(json.loads(project.config["platform:settings"]), "Pulumi.prod.yaml").monitoring
    specs = {spec.name: spec for spec in alert_specs(monitoring)}
    minutes = 2 * 24 * 60
    series = {name: _series_from_job(job_runs, name) for name in ("incr", "full")}
    every = {"incr": 3600, "full": 86400}

    def running(name: str) -> str:
        _, base = series[name]
        return " ".join(str(round(base + every[name] * (m * 60 // every[name]))) for m in range(minutes + 1))

    def stopped(name: str) -> str:
        _, base = series[name]
        return f"{round(base)}+0x{minutes}"

    checks = {"PostgresIncrementalBackupStale": ("incr", "2h"), "PostgresFullBackupStale": ("full", "26h")}
    tests = [{
        "name": "a running job keeps the backup alerts silent",
        "interval": "1m",
        "input_series": [{"series": series[name][0], "values": running(name)} for name in series],
        "alert_rule_test": [{"eval_time": f"{hours}h", "alertname": alert, "exp_alerts": []}
                            for alert in checks for hours in range(0, 48, 1)],
    }]
    for alert, (name, max_age) in checks.items():
        assert specs[alert].expr.startswith("time() -")
        fire_at = duration_seconds(max_age) + duration_seconds(specs[alert].for_) + 120
        tests.append({
            "name": f"{alert} fires once the {name} job stops",
            "interval": "1m",
            "input_series": [{"series": series[n][0], "values": stopped(n) if n == name else running(n)}
                             for n in series],
            "alert_rule_test": [
                {"eval_time": f"{duration_seconds(max_age) - 300}s", "alertname": alert, "exp_alerts": []},
                {"eval_time": f"{fire_at}s", "alertname": alert,
                 "exp_alerts": [_expected_alert(monitoring, specs[alert], {"type": name})]},
            ],
        })
    (tmp_path / "alerts.yml").write_text(render_alert_rules(monitoring))
    (tmp_path / "tests.yml").write_text(yaml.safe_dump({"rule_files": ["alerts.yml"], "evaluation_interval": "1m",
                                                        "tests": tests}))
    result = run(promtool, "test", "rules", str(tmp_path / "tests.yml"), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr



@contextlib.contextmanager
def fresh_server(bucket: str, stanza: str, s3: TlsS3, key: str, key_secret: str) -> Iterator[dict[str, str]]:
    """A new PostgreSQL archiving with the stack's archive settings to `bucket` under `stanza`, which no
    backup has created; yields its libpq environment (and ROOT, its directory)."""
    for tool in ("pgbackrest", "runuser"):
        require_tool(tool, "pgbackrest" if tool == "pgbackrest" else "util-linux")
    if not (PG_BIN / "initdb").exists():
        require_tool("initdb", "postgresql-15")
    root = Path(tempfile.mkdtemp(prefix=f"i12-{stanza}-"))
    root.chmod(0o755)
    shutil.chown(root, OS_USER)
    data_dir, port = root / "data", free_port()
    config = BackupConfig(bucket=bucket, region=REGION, stanza=stanza, endpoint=None)
    conf = root / "pgbackrest.conf"
    conf.write_text(render_pgbackrest_conf(config, Cluster(str(data_dir), port, str(root), OS_USER),
                                           endpoint_url=s3.endpoint, ca_file=s3.ca_file))
    conf.chmod(0o644)
    include = root / "pgbackrest-include"
    secret_file(include / "credentials.conf", render_pgbackrest_secrets(secrets.token_urlsafe(32), key, key_secret))
    env = {"PATH": os.environ["PATH"], "HOME": str(root), "PGHOST": str(root), "PGPORT": str(port),
           "PGUSER": OS_USER, "PGDATABASE": "postgres", "ROOT": str(root)}
    as_postgres(str(PG_BIN / "initdb"), "-D", str(data_dir), "-U", OS_USER, "--auth=trust", "--no-sync", env=env)
    settings = {**archive_settings(config, str(conf), str(include)), "port": str(port), "listen_addresses": "''",
                "unix_socket_directories": f"'{root}'", "fsync": "off"}
    with (data_dir / "postgresql.conf").open("a") as postgresql_conf:
        for name, value in settings.items():
            postgresql_conf.write(f"{name} = '{value}'\n" if name == "archive_command" else f"{name} = {value}\n")
    as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data_dir), "-l", str(root / "server.log"), "-w", "start", env=env)
    try:
        yield env
    finally:
        run("runuser", "-u", OS_USER, "--", str(PG_BIN / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def archiver(env: dict[str, str]) -> tuple[str, int, int]:
    """pg_stat_archiver: the last archived segment, the archived and the failed count."""
    [row] = sql(env, "SELECT coalesce(last_archived_wal, ''), archived_count, failed_count FROM pg_stat_archiver")
    return row


def server_log(env: dict[str, str]) -> str:
    return (Path(env["ROOT"]) / "server.log").read_text()[-3000:]


def test_a_fresh_server_archives_its_first_segment_before_any_backup(tls_s3):
    """A new PostgreSQL archiving to a store that has no stanza yet (no backup job has run, none will): its
    first WAL switch is archived, and the archiver created the stanza. Without that, archive-push fails
    forever and PostgreSQL keeps every segment until its volume is full."""
    key, key_secret = f"AKIA{secrets.token_hex(8).upper()}", secrets.token_hex(20)
    store = boto3.session.Session().client("s3", endpoint_url=tls_s3.endpoint, region_name=REGION,
                                           aws_access_key_id=key, aws_secret_access_key=key_secret,
                                           verify=tls_s3.ca_file)
    store.create_bucket(Bucket=FRESH_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    with fresh_server(FRESH_BUCKET, "fresh", tls_s3, key, key_secret) as env:
        assert "Contents" not in store.list_objects_v2(Bucket=FRESH_BUCKET, Prefix="postgres/archive/fresh/")
        sql(env, "CREATE TABLE first_writes AS SELECT g FROM generate_series(1, 1000) g")
        [(segment,)] = sql(env, "SELECT pg_walfile_name(pg_switch_wal())")
        deadline = time.monotonic() + 60
        while (status := archiver(env))[0] < segment:
            assert status[2] == 0, f"archiving failed: {server_log(env)}"
            assert time.monotonic() < deadline, server_log(env)
            time.sleep(0.2)
        store.head_object(Bucket=FRESH_BUCKET, Key="postgres/archive/fresh/archive.info")  # the stanza


def test_a_failing_archive_fires_the_alert_on_the_exporters_metrics(tls_s3, promtool, tmp_path):
    """A server whose store has no such bucket (a misconfigured store: the archiver cannot create the stanza
    either): the real postgres_exporter (Debian's 0.11.1; the stack pins
    v0.17.1, whose pg_stat_archiver metrics are the same builtin map) exports the archiver's counters the
    rule reads, and the deployed rule, fed with them, fires once its `for` has passed."""
    from prometheus_client.parser import text_string_to_metric_families

    from platform_infra.components.monitoring import render_alert_rules
    from platform_infra.components.monitoring.alerts import alert_specs
    from platform_infra.components.monitoring.model import duration_seconds
    from platform_infra.components.monitoring.render import _expected_alert
    from platform_infra.infra.settings import parse_settings

    exporter = require_tool("prometheus-postgres-exporter", "prometheus-postgres-exporter")
    with fresh_server("i12-no-such-bucket", "failing", tls_s3, f"AKIA{secrets.token_hex(8).upper()}",
                      secrets.token_hex(20)) as env:
        port = free_port()
        scraper = subprocess.Popen([exporter, f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env={"DATA_SOURCE_NAME": (
                                       f"host={env['PGHOST']} port={env['PGPORT']} user={OS_USER} dbname=postgres "
                                       "sslmode=disable")})
        try:
            scrapes = []
            for _ in range(2):
                failed = archiver(env)[2]
                sql(env, "SELECT pg_switch_wal()")  # a segment ready wakes the archiver, which fails again
                deadline = time.monotonic() + 30
                while archiver(env)[2] < failed + 1:
                    assert time.monotonic() < deadline, server_log(env)
                    time.sleep(0.2)
                scrapes.append(scrape_archiver(port, scraper, text_string_to_metric_families))
        finally:
            scraper.terminate()
            scraper.wait(timeout=10)
    assert archiver_total(scrapes[0], "archived") == archiver_total(scrapes[1], "archived") == 0
    (labels, first), second = archiver_total(scrapes[0], "failed", labels=True), archiver_total(scrapes[1], "failed")
    assert 0 < first < second

    project = load_project(REPO_ROOT, "prod")
    monitoring = parse_settings(json.loads(project.config["platform:settings"]), "Pulumi.prod.yaml").monitoring
    [spec] = [spec for spec in alert_specs(monitoring) if spec.name == "PostgresWalArchiveFailing"]
    target = {**labels, "job": "postgres-exporter", "instance": "postgres-exporter:9187", "service": "postgres-exporter"}
    selector = "{" + ",".join(f'{name}="{value}"' for name, value in target.items()) + "}"
    minutes = duration_seconds(spec.for_) // 60 + 5
    # Scraped every minute, as the two scrapes above: the failures grow as they did between them.
    series = [{"series": f"pg_stat_archiver_failed_count{selector}", "values": f"{first}+{second - first}x{minutes}"},
              {"series": f"pg_stat_archiver_archived_count{selector}", "values": f"0+0x{minutes}"}]
    tests = [{"name": "the exporter's archiver counters of a failing archive", "interval": "1m",
              "input_series": series, "alert_rule_test": [
                  {"eval_time": f"{duration_seconds(spec.for_) // 60 - 1}m", "alertname": spec.name, "exp_alerts": []},
                  {"eval_time": f"{minutes}m", "alertname": spec.name,
                   "exp_alerts": [_expected_alert(monitoring, spec, target)]}]}]
    (tmp_path / "alerts.yml").write_text(render_alert_rules(monitoring))
    (tmp_path / "tests.yml").write_text(yaml.safe_dump({"rule_files": ["alerts.yml"], "evaluation_interval": "1m",
                                                        "tests": tests}))
    result = run(promtool, "test", "rules", str(tmp_path / "tests.yml"), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def scrape_archiver(port: int, scraper: subprocess.Popen, parse) -> dict[str, tuple[dict[str, str], float]]:
    """pg_stat_archiver's samples from the exporter's /metrics, by name."""
    deadline = time.monotonic() + 20
    while True:
        assert scraper.poll() is None, f"the exporter exited {scraper.returncode}"
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        except OSError:
            text = ""
        # By the family's name, the name exported (the parser adds `_total` to a counter's samples).
        samples = {family.name: (sample.labels, sample.value) for family in parse(text)
                   for sample in family.samples if family.name.startswith("pg_stat_archiver_")}
        if samples:
            return samples
        assert time.monotonic() < deadline, text[-2000:]
        time.sleep(0.3)


def archiver_total(samples, counter: str, *, labels: bool = False):
    label_set, value = samples[f"pg_stat_archiver_{counter}_count"]
    return (label_set, int(value)) if labels else int(value)
