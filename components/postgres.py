"""PostgreSQL roles kept in step with the stack's secrets on every start, not only at initdb.

The official image reads POSTGRES_PASSWORD only when it initialises an empty data directory
(docker-library/postgres docker-entrypoint.sh: `if [ -z "$DATABASE_ALREADY_EXISTS" ]`), so a rotated secret
would never reach the database. Here the container starts through `START_SCRIPT`: the image's entrypoint runs
PostgreSQL as usual, then `ROLES_SQL` is applied by psql as the superuser, connected over the local socket with
peer authentication (so a rotated superuser password is no obstacle), and the container reports healthy only
after that. Once the application's `users` table exists, `ADMIN_SQL` replaces the seeded admin password.
A changed secret changes these files, which replaces the container (the runtime's files digest): every
rotation is applied on the existing data.
"""

from __future__ import annotations

from importlib import resources

SUPERUSER = "postgres"
EXPORTER_ROLE = "postgres_exporter"
EXPORTER_CONNECTIONS = 3
"""The exporter role's connection limit, counted in the connection budget."""
BACKUP_ROLE = "pgbackrest"
"""The backup job's role: pgBackRest's backup functions and settings, no superuser (ROLES_SQL)."""
BACKUP_DATABASE = "postgres"
"""The database pgBackRest connects to (its pg1-database default)."""
BACKUP_CONNECTIONS = 2
"""The backup role's connection limit (pgBackRest opens one to the primary), counted in the connection budget."""
ADMIN_RESERVED_CONNECTIONS = 5
"""superuser_reserved_connections: room for the superuser (role sync, an operator) when pools are full."""
SOCKET_DIR = "/var/run/postgresql"
ROLES_MARKER = "platform-roles-applied"
ROLES_APPLIED = f"{SOCKET_DIR}/{ROLES_MARKER}"
"""Marker on the socket tmpfs (empty at every start): the healthcheck waits for it."""


def _sql(name: str) -> str:
    return resources.files("platform_infra.components.sql").joinpath(name).read_text()


ROLES_SQL = _sql("postgres_roles.sql")
ADMIN_SQL = _sql("postgres_app_admin.sql")


def hba_conf(database: str, app_role: str) -> str:
    """Client authentication, one line per role: the superuser only over the container's own socket as its OS
    user, refused over TCP; the application and the exporter into the application's database, the backup job
    into pgBackRest's, each with a SCRAM password and only from a network the server is on (`samenet`: the
    store's own networks); every other login refused. The first matching line decides (PostgreSQL docs,
    "The pg_hba.conf File")."""
    return (f"local all {SUPERUSER} peer\n"
            f"host all {SUPERUSER} all reject\n"
            f"host {database} {app_role} samenet scram-sha-256\n"
            f"host {database} {EXPORTER_ROLE} samenet scram-sha-256\n"
            f"host {BACKUP_DATABASE} {BACKUP_ROLE} samenet scram-sha-256\n"
            "host all all all reject\n")


def psql_variables(*, database: str, app_role: str, app_password: str, exporter_password: str,
                   backup_password: str, superuser_password: str, admin_bcrypt: str | None = None) -> list[str]:
    """psql -v arguments ROLES_SQL (and ADMIN_SQL, with admin_bcrypt) expect."""
    values = {"database": database, "app_role": app_role, "app_password": app_password,
              "exporter_role": EXPORTER_ROLE, "exporter_password": exporter_password,
              "exporter_connections": str(EXPORTER_CONNECTIONS), "backup_role": BACKUP_ROLE,
              "backup_database": BACKUP_DATABASE, "backup_password": backup_password,
              "backup_connections": str(BACKUP_CONNECTIONS), "superuser_password": superuser_password}
    if admin_bcrypt is not None:
        values["admin_bcrypt"] = admin_bcrypt
    return [arg for key, value in values.items() for arg in ("-v", f"{key}={value}")]


def start_script(*, files_dir: str, database: str, app_role: str, admin: bool = True,
                 socket_dir: str = SOCKET_DIR, admin_poll_seconds: int = 10) -> str:
    """The container's entrypoint (run by /bin/sh as root): the image's entrypoint with "$@" as PostgreSQL's
    arguments, then the role sync and, in the background, the admin password once its table exists.

    A stop (the image's STOPSIGNAL SIGINT, or SIGTERM) reaches the server as SIGINT, PostgreSQL's fast
    shutdown, as the official image intends: SIGTERM, a smart shutdown, waits for every client session to end
    (the exporter's never does), so the stop ended in the grace period's SIGKILL, with crash recovery at the
    next start and a postmaster.pid that makes pgBackRest refuse to restore."""
    secret = f"{files_dir}/secrets"
    variables = (f'-v database={database} -v app_role={app_role} -v exporter_role={EXPORTER_ROLE} '
                 f'-v exporter_connections={EXPORTER_CONNECTIONS} -v backup_role={BACKUP_ROLE} '
                 f'-v backup_database={BACKUP_DATABASE} -v backup_connections={BACKUP_CONNECTIONS} '
                 f'-v backup_password="$(cat {secret}/postgres_backup_password)" '
                 f'-v app_password="$(cat {secret}/postgres_password)" '
                 f'-v exporter_password="$(cat {secret}/postgres_exporter_password)" '
                 f'-v superuser_password="$(cat {secret}/postgres_superuser_password)"')
    # Once the application has created its users table (after its first start), replace the seeded admin.
    admin_step = f"""(
    attempt=0
    while [ "$attempt" -lt 720 ]; do
        if [ "$(as_superuser -tA -c "SELECT to_regclass('public.users') IS NOT NULL")" = t ]; then
            as_superuser -v admin_bcrypt="$(cat {secret}/app_admin_password_bcrypt)" \\
                -f {files_dir}/postgres_app_admin.sql && echo "platform: application admin password set" && break
        fi
        attempt=$((attempt + 1))
        sleep {admin_poll_seconds}
    done
) &
""" if admin else ""
    return f"""#!/bin/sh
# Generated by platform_infra.components.postgres.start_script; see that module.
set -eu
rm -f {socket_dir}/{ROLES_MARKER}
docker-entrypoint.sh postgres "$@" &
server=$!
trap 'kill -INT "$server"; wait "$server"; exit $?' TERM INT
as_superuser() {{ gosu {SUPERUSER} psql -X -q -v ON_ERROR_STOP=1 -h {socket_dir} -U {SUPERUSER} -d {database} "$@"; }}
# TCP answers only once the image's entrypoint is done with its initdb-time server (socket-only).
until pg_isready -q -h 127.0.0.1; do kill -0 "$server"; sleep 1; done
as_superuser {variables} -f {files_dir}/postgres_roles.sql
touch {socket_dir}/{ROLES_MARKER}
{admin_step}wait "$server"
"""
