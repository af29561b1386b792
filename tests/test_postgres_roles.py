"""The project's role SQL on a real PostgreSQL 15: least privilege, rotation on existing data, the admin user.

The cluster is initialised as the official image does it (initdb with the superuser's password and SCRAM, then
the application database), and the SQL is applied as the image's start script applies it: psql as the
superuser over the local socket with peer authentication, and this project's pg_hba.conf.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest

from platform_infra.components.postgres import (
    ADMIN_SQL,
    BACKUP_DATABASE,
    BACKUP_ROLE,
    EXPORTER_ROLE,
    ROLES_SQL,
    SUPERUSER,
    hba_conf,
    psql_variables,
    start_script,
)
from tests.conftest import ON_CI, require_tool

PG_BIN = Path("/usr/lib/postgresql/15/bin")
DATABASE, APP_ROLE = "orchestration", "orchestration"


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", SUPERUSER, "--", *command]


@dataclass
class Cluster:
    directory: Path
    port: int
    process: subprocess.Popen

    def psql(self, *args: str, user: str, password: str, database: str = DATABASE) -> subprocess.CompletedProcess:
        """A client login over TCP with a password, as the services and the exporter log in."""
        return subprocess.run(
            [str(PG_BIN / "psql"), "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
             "-p", str(self.port), "-U", user, "-d", database, *args],
            env={**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"},
            capture_output=True, text=True, timeout=30, check=False)

    def apply(self, sql: str, variables: list[str], database: str = DATABASE) -> None:
        """The start script's way: the superuser over the socket, peer authentication, no password."""
        script = self.directory / "apply.sql"
        script.write_text(sql)
        shutil.chown(script, SUPERUSER)
        result = subprocess.run(
            _as_postgres([str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.directory),
                          "-p", str(self.port), "-U", SUPERUSER, "-d", database, *variables, "-f", str(script)]),
            capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if not (PG_BIN / "postgres").exists():
        message = "PostgreSQL 15 not found (Debian: apt-get install postgresql-15; .ci/run installs it)"
        pytest.fail(message, pytrace=False) if ON_CI else pytest.skip(message)
    require_tool("runuser", "util-linux")
    if os.geteuid() != 0:
        pytest.fail("needs root to run PostgreSQL as its own user", pytrace=False) if ON_CI else pytest.skip(
            "needs root to run PostgreSQL as its own user")
    directory = Path(tempfile.mkdtemp(prefix="issue9-pg-"))
    shutil.chown(directory, SUPERUSER)
    directory.chmod(0o700)
    (directory / "pwfile").write_text("initial-superuser-secret\n")
    (directory / "pg_hba.conf").write_text(hba_conf(DATABASE, APP_ROLE))
    for name in ("pwfile", "pg_hba.conf"):
        shutil.chown(directory / name, SUPERUSER)
    data = directory / "data"
    # As the image: initdb --username=$POSTGRES_USER --pwfile=... $POSTGRES_INITDB_ARGS.
    subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "--username", SUPERUSER,
                                 "--pwfile", str(directory / "pwfile"), "--auth-host=scram-sha-256",
                                 "--auth-local=scram-sha-256"]),
                   check=True, capture_output=True, timeout=120)
    port = _free_port()
    process = subprocess.Popen(
        _as_postgres([str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
                      "-c", f"unix_socket_directories={directory}", "-c", f"hba_file={directory / 'pg_hba.conf'}"]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = Cluster(directory, port, process)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)],
                             check=False).returncode != 0:
            assert process.poll() is None and time.monotonic() < deadline, "PostgreSQL did not start"
            time.sleep(0.2)
        # As the image: the application database, created by the superuser.
        result.apply(f'CREATE DATABASE "{DATABASE}";', [], database="postgres")
        yield result
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


def _roles(app: str, exporter: str = "exporter-secret-1", superuser: str = "superuser-secret-2",
           backup: str = "backup-secret-1") -> list[str]:
    return psql_variables(database=DATABASE, app_role=APP_ROLE, app_password=app, exporter_password=exporter,
                          backup_password=backup, superuser_password=superuser)


@pytest.fixture(scope="module")
def roles_applied(cluster) -> Cluster:
    cluster.apply(ROLES_SQL, _roles("app-secret-1"))
    return cluster


def test_the_application_role_owns_its_schema_and_nothing_more(roles_applied):
    pg = roles_applied
    login = {"user": APP_ROLE, "password": "app-secret-1"}
    created = pg.psql("-c", "CREATE TABLE jobs (id int); INSERT INTO jobs VALUES (1); SELECT count(*) FROM jobs",
                      **login)
    assert created.returncode == 0 and created.stdout.strip() == "1", created.stderr
    assert pg.psql("-c", "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user",
                   **login).stdout.strip() == "f|f|f"
    refused = pg.psql("-c", "CREATE ROLE intruder", **login)
    assert refused.returncode != 0 and "permission denied" in refused.stderr
    secrets = pg.psql("-c", "SELECT rolpassword FROM pg_authid", **login)
    assert secrets.returncode != 0 and "permission denied" in secrets.stderr
    for other in ("postgres", "template1"):
        elsewhere = pg.psql("-c", "SELECT 1", database=other, **login)
        # Refused twice over: pg_hba.conf has no line for it, and CONNECT is not granted (the grant is tried in
        # test_no_database_is_open_to_every_role, past the file).
        assert elsewhere.returncode != 0 and "pg_hba.conf rejects connection" in elsewhere.stderr, other


def test_no_database_is_open_to_every_role(roles_applied):
    """CONNECT as granted, whatever pg_hba.conf lets through: each role has its own database and no other."""
    pg = roles_applied
    check = ("SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database "
             "WHERE datallowconn AND has_database_privilege(:'role', datname, 'CONNECT')")
    expected = {APP_ROLE: DATABASE, EXPORTER_ROLE: DATABASE, BACKUP_ROLE: BACKUP_DATABASE}
    for role, database in expected.items():
        result = subprocess.run(_as_postgres([str(PG_BIN / "psql"), "-X", "-tAq", "-h", str(pg.directory), "-p",
                                              str(pg.port), "-U", SUPERUSER, "-d", DATABASE, "-v", f"role={role}"]),
                                input=check, capture_output=True, text=True, timeout=30, check=False)
        assert result.stdout.strip() == database, (role, result.stdout, result.stderr)


def test_the_exporter_reads_statistics_only(roles_applied):
    pg = roles_applied
    login = {"user": EXPORTER_ROLE, "password": "exporter-secret-1"}
    stats = pg.psql("-c", "SELECT count(*) > 0 FROM pg_stat_database WHERE datname = current_database()", **login)
    assert stats.returncode == 0 and stats.stdout.strip() == "t", stats.stderr
    assert pg.psql("-c", "SELECT pg_has_role(current_user, 'pg_monitor', 'member')", **login).stdout.strip() == "t"
    assert pg.psql("-c", "SELECT * FROM jobs", **login).returncode != 0
    assert pg.psql("-c", "CREATE TABLE mine (id int)", **login).returncode != 0


def test_the_superuser_never_logs_in_over_tcp(roles_applied):
    pg = roles_applied
    for password in ("initial-superuser-secret", "superuser-secret-2"):
        for database in (DATABASE, "postgres"):
            refused = pg.psql("-c", "SELECT 1", user=SUPERUSER, password=password, database=database)
            assert refused.returncode != 0 and "pg_hba.conf rejects connection" in refused.stderr, refused.stderr
    assert pg.psql("-c", "SELECT 1", user=APP_ROLE, password="superuser-secret-2").returncode != 0


def test_the_superuser_has_its_own_rotated_secret(roles_applied):
    """Over its socket (peer) only, but with the stack's secret: a local password login would need it."""
    pg = roles_applied
    check = ("SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = current_user")
    result = subprocess.run(_as_postgres([str(PG_BIN / "psql"), "-X", "-tAq", "-h", str(pg.directory), "-p",
                                          str(pg.port), "-U", SUPERUSER, "-d", DATABASE, "-c", check]),
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.stdout.strip() == "t", result.stderr


def test_the_backup_role_runs_backups_and_reads_no_data(roles_applied):
    """pgBackRest's calls as its own role (components/sql/postgres_roles.sql), in its database only; no table of
    the application, no role management, no superuser."""
    pg = roles_applied
    login = {"user": BACKUP_ROLE, "password": "backup-secret-1", "database": BACKUP_DATABASE}
    settings = pg.psql("-c", "SELECT setting IS NOT NULL FROM pg_settings WHERE name = 'data_directory'", **login)
    assert settings.returncode == 0 and settings.stdout.strip() == "t", settings.stderr
    backup = pg.psql("-c", "SELECT pg_backup_start('live', true) IS NOT NULL",
                     "-c", "SELECT lsn IS NOT NULL FROM pg_backup_stop(false)", **login)
    assert backup.returncode == 0 and backup.stdout.split() == ["t", "t"], backup.stderr
    assert pg.psql("-c", "SELECT pg_switch_wal() IS NOT NULL", **login).returncode == 0
    assert pg.psql("-c", "SELECT rolsuper FROM pg_roles WHERE rolname = current_user", **login).stdout.strip() == "f"
    elsewhere = pg.psql("-c", "SELECT 1", **{**login, "database": DATABASE})
    assert elsewhere.returncode != 0 and "pg_hba.conf rejects connection" in elsewhere.stderr, elsewhere.stderr
    for statement in ("CREATE ROLE intruder", "SELECT rolpassword FROM pg_authid", "SELECT pg_reload_conf()"):
        refused = pg.psql("-c", statement, **login)
        assert refused.returncode != 0 and "permission denied" in refused.stderr, (statement, refused.stderr)


def test_rotation_changes_the_password_on_existing_data(roles_applied):
    pg = roles_applied
    pg.apply(ROLES_SQL, _roles("app-secret-2", exporter="exporter-secret-2"))
    old = pg.psql("-c", "SELECT 1", user=APP_ROLE, password="app-secret-1")
    assert old.returncode != 0 and "password authentication failed" in old.stderr
    new = pg.psql("-c", "SELECT count(*) FROM jobs", user=APP_ROLE, password="app-secret-2")
    assert new.returncode == 0 and new.stdout.strip() == "1", new.stderr
    assert pg.psql("-c", "SELECT 1", user=EXPORTER_ROLE, password="exporter-secret-1").returncode != 0
    assert pg.psql("-c", "SELECT 1", user=EXPORTER_ROLE, password="exporter-secret-2").returncode == 0
    pg.apply(ROLES_SQL, _roles("app-secret-1"))  # back for the other tests: applying twice is harmless


def test_the_seeded_admin_password_is_replaced(roles_applied):
    pg = roles_applied
    login = {"user": APP_ROLE, "password": "app-secret-1"}
    seeded = bcrypt.hashpw(b"admin123", bcrypt.gensalt(rounds=4)).decode()
    setup = pg.psql("-c", "CREATE TABLE users (username text PRIMARY KEY, password text NOT NULL)",
                    "-c", f"INSERT INTO users VALUES ('admin', '{seeded}'), ('alice', '{seeded}')", **login)
    assert setup.returncode == 0, setup.stderr
    generated = "Gen3rated-admin-secret"
    new_hash = bcrypt.hashpw(generated.encode(), bcrypt.gensalt(rounds=4)).decode()
    pg.apply(ADMIN_SQL, ["-v", f"admin_bcrypt={new_hash}"])
    stored = dict(line.split("|") for line in pg.psql("-c", "SELECT username, password FROM users",
                                                        **login).stdout.split())
    assert not bcrypt.checkpw(b"admin123", stored["admin"].encode())
    assert bcrypt.checkpw(generated.encode(), stored["admin"].encode())
    assert stored["alice"] == seeded, "only the admin user changes"


def test_pgbackrest_backs_up_as_the_backup_role_over_tcp(roles_applied):
    """pgBackRest itself (2.45, as in the job's image) as the data directory's OS user, logged in over TCP as
    the backup role with its password, as the backup job runs it: stanza-create and a full backup succeed
    without the superuser. (This cluster archives no WAL, so the backup does not wait for it: archive-check=n;
    the live stack's backup test runs it with archiving.)"""
    pg = roles_applied
    tool = require_tool("pgbackrest", "pgbackrest")
    tmp_path = Path(tempfile.mkdtemp(prefix="s6-pgbackrest-"))  # readable by the postgres user, unlike pytest's
    tmp_path.chmod(0o755)
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.chown(repo, SUPERUSER)
    conf = tmp_path / "pgbackrest.conf"
    conf.write_text(f"[global]\nrepo1-path={repo}\nlog-level-console=warn\nlog-level-file=off\nstart-fast=y\n"
                    f"archive-check=n\n[roles]\npg1-path={pg.directory / 'data'}\npg1-port={pg.port}\n")
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{pg.port}:*:{BACKUP_ROLE}:backup-secret-1\n")
    pgpass.chmod(0o600)
    shutil.chown(pgpass, SUPERUSER)
    env = {"PATH": os.environ["PATH"], "PGHOST": "127.0.0.1", "PGUSER": BACKUP_ROLE, "PGPASSFILE": str(pgpass)}
    for command in (["stanza-create"], ["--type=full", "backup"]):
        result = subprocess.run(_as_postgres([tool, f"--config={conf}", "--stanza=roles", *command]), env=env,
                                capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
    info = subprocess.run(_as_postgres([tool, f"--config={conf}", "--stanza=roles", "--output=json", "info"]), env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    shutil.rmtree(tmp_path, ignore_errors=True)
    assert '"type":"full"' in info.stdout


def test_the_start_script_is_valid_shell():
    script = start_script(files_dir="/etc/platform", database=DATABASE, app_role=APP_ROLE)
    result = subprocess.run(["/bin/sh", "-n"], input=script, capture_output=True, text=True, check=False, timeout=10)
    assert result.returncode == 0, result.stderr
    assert "postgres_roles.sql" in script and "postgres_app_admin.sql" in script


FAKE_ENTRYPOINT = """#!/bin/sh
# Stands in for the image's docker-entrypoint.sh: initdb with the superuser's password file on an empty
# directory (POSTGRES_PASSWORD_FILE, SCRAM), the application database, then the server as its own user.
set -eu
shift  # "postgres"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    runuser -u postgres -- {bin}/initdb -D "$PGDATA" --username=postgres --pwfile="$POSTGRES_PASSWORD_FILE" \\
        --auth-host=scram-sha-256 --auth-local=scram-sha-256 >/dev/null
    echo 'CREATE DATABASE "{database}";' | runuser -u postgres -- {bin}/postgres --single -D "$PGDATA" postgres >/dev/null
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups {bin}/postgres -D "$PGDATA" -c listen_addresses=127.0.0.1 \\
    -c unix_socket_directories="$SOCKET_DIR" "$@"
"""


def _write_secrets(files: Path, app: str, exporter: str, superuser: str, admin_hash: str) -> None:
    secrets = files / "secrets"
    secrets.mkdir(exist_ok=True)
    for name, value in (("postgres_password", app), ("postgres_exporter_password", exporter),
                        ("postgres_backup_password", "backup-secret"),
                        ("postgres_superuser_password", superuser), ("app_admin_password_bcrypt", admin_hash)):
        (secrets / name).write_text(value)
        (secrets / name).chmod(0o444)


def test_the_start_script_initialises_then_rotates_on_the_same_data(tmp_path_factory):
    """The container's own start script, with the image's entrypoint and gosu stood in for: first start,
    the seeded admin replaced once the application creates its table, then a rotation on restart."""
    if not (PG_BIN / "postgres").exists() or os.geteuid() != 0:
        message = "needs PostgreSQL 15 (postgresql-15) and root"
        pytest.fail(message, pytrace=False) if ON_CI else pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="issue9-pgstart-"))
    root.chmod(0o755)
    files, socket_dir, bin_dir, data = root / "files", root / "run", root / "bin", root / "data"
    for directory in (files, socket_dir, bin_dir, data):
        directory.mkdir()
    shutil.chown(socket_dir, SUPERUSER)
    shutil.chown(data, SUPERUSER)
    data.chmod(0o700)
    (bin_dir / "docker-entrypoint.sh").write_text(FAKE_ENTRYPOINT.format(bin=PG_BIN, database=DATABASE))
    # gosu execs (no parent left behind), as setpriv does; runuser would stay as a parent process.
    (bin_dir / "gosu").write_text('#!/bin/sh\nuser="$1"; shift\n'
                                  'exec setpriv --reuid="$user" --regid="$user" --init-groups "$@"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    (files / "postgres_roles.sql").write_text(ROLES_SQL)
    (files / "postgres_app_admin.sql").write_text(ADMIN_SQL)
    (files / "pg_hba.conf").write_text(hba_conf(DATABASE, APP_ROLE))
    script = files / "start-postgres.sh"
    script.write_text(start_script(files_dir=str(files), database=DATABASE, app_role=APP_ROLE,
                                   socket_dir=str(socket_dir), admin_poll_seconds=1))
    port = _free_port()
    env = {**os.environ, "PATH": f"{bin_dir}:{PG_BIN}:{os.environ['PATH']}", "PGPORT": str(port),
           "PGDATA": str(data), "SOCKET_DIR": str(socket_dir),
           "POSTGRES_PASSWORD_FILE": str(files / "secrets" / "postgres_superuser_password")}
    pg = Cluster(socket_dir, port, None)  # type: ignore[arg-type]

    def start() -> subprocess.Popen:
        # The container's socket directory is a fresh tmpfs at every start.
        (socket_dir / "platform-roles-applied").unlink(missing_ok=True)
        process = subprocess.Popen(["/bin/sh", str(script), "-c", f"hba_file={files / 'pg_hba.conf'}",
                                    "-c", "max_connections=50"], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 60
        while not (socket_dir / "platform-roles-applied").exists():
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "roles never applied"
            time.sleep(0.2)
        return process

    def stop(process: subprocess.Popen) -> None:
        process.terminate()
        process.wait(timeout=30)

    first_admin = bcrypt.hashpw(b"first-admin", bcrypt.gensalt(rounds=4)).decode()
    process = None
    try:
        _write_secrets(files, "app-1", "exporter-1", "super-1", first_admin)
        process = start()
        assert pg.psql("-c", "SELECT 1", user=APP_ROLE, password="app-1").stdout.strip() == "1"
        assert "pg_hba.conf rejects" in pg.psql("-c", "SELECT 1", user=SUPERUSER, password="super-1").stderr
        backup = pg.psql("-c", "SELECT 1", user=BACKUP_ROLE, password="backup-secret", database=BACKUP_DATABASE)
        assert backup.stdout.strip() == "1", backup.stderr
        seeded = bcrypt.hashpw(b"admin123", bcrypt.gensalt(rounds=4)).decode()
        assert pg.psql("-c", "CREATE TABLE users (username text PRIMARY KEY, password text)",
                       "-c", f"INSERT INTO users VALUES ('admin', '{seeded}')",
                       user=APP_ROLE, password="app-1").returncode == 0

        def admin_hash(password: str) -> str:
            return pg.psql("-c", "SELECT password FROM users WHERE username = 'admin'", user=APP_ROLE,
                           password=password).stdout.strip()

        deadline = time.monotonic() + 20
        while not bcrypt.checkpw(b"first-admin", admin_hash("app-1").encode()):
            assert time.monotonic() < deadline, "the seeded admin password was never replaced"
            time.sleep(0.5)
        # A client's session is open at the stop (the exporter's, a service's): the stop ends it at once and
        # the server shuts down cleanly (no postmaster.pid left, which a restore refuses), not at the grace
        # period's SIGKILL.
        client = subprocess.Popen([str(PG_BIN / "psql"), "-X", "-h", "127.0.0.1", "-p", str(port), "-U", APP_ROLE,
                                   "-d", DATABASE], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, env={**os.environ, "PGPASSWORD": "app-1"})
        deadline = time.monotonic() + 10
        while pg.psql("-c", "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'psql' "
                      "AND pid <> pg_backend_pid()", user=APP_ROLE, password="app-1").stdout.strip() != "1":
            assert time.monotonic() < deadline, "the client's session never opened"
            time.sleep(0.2)
        stopping = time.monotonic()
        stop(process)
        client.kill()
        assert time.monotonic() - stopping < 5
        assert not (data / "postmaster.pid").exists()

        second_admin = bcrypt.hashpw(b"second-admin", bcrypt.gensalt(rounds=4)).decode()
        _write_secrets(files, "app-2", "exporter-2", "super-2", second_admin)
        process = start()
        assert pg.psql("-c", "SELECT 1", user=APP_ROLE, password="app-1").returncode != 0
        counted = pg.psql("-c", "SELECT count(*) FROM users", user=APP_ROLE, password="app-2")
        assert counted.stdout.strip() == "1", counted.stderr
        assert pg.psql("-c", "SELECT 1", user=SUPERUSER, password="super-1").returncode != 0
        assert pg.psql("-c", "SELECT 1", user=EXPORTER_ROLE, password="exporter-2").returncode == 0
        deadline = time.monotonic() + 20
        while not bcrypt.checkpw(b"second-admin", admin_hash("app-2").encode()):
            assert time.monotonic() < deadline, "the rotated admin password was never applied"
            time.sleep(0.5)
    finally:
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
