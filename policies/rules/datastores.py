"""Data store authentication: PostgreSQL, Redis, ClickHouse, Kafka and ZooKeeper images' insecure defaults."""

from __future__ import annotations

import re
import shlex

from platform_infra.policies.props import (
    SERVICE_CONFIG,
    SERVICE_LABEL,
    WORKLOADS,
    Workload,
    get,
    items,
    truthy,
)
from platform_infra.policies.registry import MANDATORY, resource_rule, stack_rule
from platform_infra.policies.scope import kind_is


def _has_value(env: dict[str, str], key: str) -> bool:
    """Set directly or through the image's `<KEY>_FILE` convention."""
    return bool(env.get(key, "").strip() or env.get(f"{key}_FILE", "").strip())


@resource_rule(
    "DS-PG-001",
    "postgres-auth",
    "PostgreSQL requires a password",
    types=WORKLOADS,
    scope=kind_is("postgres"),
    severity="critical",
    prod=MANDATORY,
    checklist=["security.database-passwords"],
    sources=["docker-library postgres docs"],
    remediation="Set POSTGRES_PASSWORD_FILE (or POSTGRES_PASSWORD from a secret); never "
    "POSTGRES_HOST_AUTH_METHOD=trust.",
)
def postgres_auth(w: Workload, report, options) -> None:
    """PostgreSQL has a superuser password and does not trust network connections."""
    env = w.env
    if not _has_value(env, "POSTGRES_PASSWORD"):
        report("POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) is not set")
    if env.get("POSTGRES_HOST_AUTH_METHOD", "").strip().lower() == "trust":
        report("POSTGRES_HOST_AUTH_METHOD is trust: anyone can connect without a password")


# What components/postgres.py uploads: the bcrypt of the generated admin password it sets in the users table.
APP_ADMIN_FILE = "app_admin_password_bcrypt"


@stack_rule(
    "DS-PG-002",
    "app-admin-password",
    "The application's seeded admin password is replaced",
    types=WORKLOADS,
    severity="critical",
    prod=MANDATORY,
    checklist=["security.app-admin-password"],
    sources=["OWASP ASVS 4.0 2.5.4 (no default accounts)", "OWASP Top 10 2021 A07 (default credentials)"],
    remediation="Give the Postgres component `admin_password_bcrypt` (pulumi-random RandomPassword.bcrypt_hash): "
    "its start script sets it on the users table's admin once the table exists.",
)
def app_admin_password(stack, report, options) -> None:
    """A stack running the application's PostgreSQL replaces the seed's well-known admin password: the database
    (or the file carrier filling its volume) receives the generated password's bcrypt to apply."""
    delivered = any(path.endswith(f"/{APP_ADMIN_FILE}") for w in stack.file_carriers if w.kind == "postgres"
                    for path in w.uploaded_files)
    for w in stack.workloads:
        if w.kind == "postgres" and not delivered:
            report(f"postgres {w.name}: the seeded admin user keeps its default password (no {APP_ADMIN_FILE})",
                   w.urn)


HBA_FILE_SETTING = re.compile(r"(?:-c\s*|--)hba[_-]file=['\"]?([^'\"\s]+)")
CONFIG_FILE_SETTING = re.compile(r"(?:-c\s*|--)config[_-]file=['\"]?([^'\"\s]+)")
CONF_HBA_FILE = re.compile(r"^\s*hba_file\s*=?\s*['\"]?([^'\"\s#]+)", re.MULTILINE)
INITDB_AUTH = re.compile(r"(?:--auth(?:-(host|local))?[=\s]|-A\s*)['\"]?(\w+)")
DEFAULT_PGDATA = "/var/lib/postgresql/data"
INITDB_SCRIPTS = "/docker-entrypoint-initdb.d/"
"""The image's init scripts, run once at initdb: one that writes pg_hba.conf adds lines no file shows."""


def _hba_file(w: Workload, files: dict[str, str] | None = None) -> str | None:
    """The `hba_file` the server is started with: on its command line (`-c hba_file=...` or `--hba_file=...`,
    the last one wins), else in the postgresql.conf its command line names (`config_file`) when that is one of
    the stack's files; None: the one initdb wrote in the data directory."""
    command = " ".join(w.command)
    found = HBA_FILE_SETTING.findall(command)
    if found:
        return found[-1]
    config = CONFIG_FILE_SETTING.findall(command)
    in_config = CONF_HBA_FILE.findall((files or {}).get(config[-1], "")) if config else []
    return in_config[-1] if in_config else None


def _service_files(stack, w: Workload) -> dict[str, str]:
    """Every file the workload's service has: its own uploads and those of the carriers, Swarm configs and
    secrets labelled with the same service."""
    service = w.labels.get(SERVICE_LABEL)
    files = dict(w.uploads)
    for carrier in stack.file_carriers:
        if carrier is not w and service and carrier.labels.get(SERVICE_LABEL) == service:
            files.update(carrier.uploads)
    return files


def _hba_records(text: str) -> list[tuple[int, list[str]]]:
    """(line number, fields) of each pg_hba.conf record; quoted fields kept whole, comments dropped. A line ending
    in a backslash continues on the next, as PostgreSQL reads it (src/backend/libpq/hba.c tokenize_auth_file:
    the backslash is dropped and the next line appended, before comments are looked at)."""
    records, pending, first = [], "", 0
    for number, line in enumerate(text.splitlines(), 1):
        first = first or number
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        line, pending = pending + line, ""
        try:
            fields = shlex.split(line, comments=True)
        except ValueError:
            fields = line.split("#", 1)[0].split()
        if fields:
            records.append((first, fields))
        first = 0
    return records


def _hba_method(fields: list[str]) -> str:
    """The auth method of a record: after database and user for `local`, after the address (and its mask,
    when the address is a bare IP followed by one) for the `host*` types."""
    if fields[0] == "local":
        return fields[3].lower() if len(fields) > 3 else ""
    at = 4
    if len(fields) > 5 and "/" not in fields[3] and re.fullmatch(r"[\d.:a-fA-F]+", fields[4]) and (
        "." in fields[4] or ":" in fields[4]
    ):
        at = 5  # `host all all 10.0.0.0 255.0.0.0 scram-sha-256`
    return fields[at].lower() if len(fields) > at else ""


def _hba_sources(stack, w: Workload, report) -> list[tuple[str, str]]:
    """(where, pg_hba.conf text) the server reads; reports a source it cannot read. The `hba_file` of the
    command line or of the postgresql.conf it names, when one of the stack's files (wherever uploaded, the data
    directory included); else what the image's initdb wrote: judged from the env, and an init script that edits
    it cannot be checked."""
    files = _service_files(stack, w)
    path = _hba_file(w, files)
    pgdata = w.env.get("PGDATA", DEFAULT_PGDATA)
    if path is not None and path in files:
        return [(f"hba_file {path}", files[path])]
    if path is not None and not path.startswith(pgdata):
        report(f"postgres {w.name}: hba_file {path} is not one of the stack's files: its rules cannot be checked",
               w.urn)
        return []
    for script, text in sorted(files.items()):
        if script.startswith(INITDB_SCRIPTS) and "hba" in text:
            report(f"postgres {w.name}: init script {script} edits pg_hba.conf: its lines cannot be checked", w.urn)
    lines = []
    methods = {kind or "all": method.lower() for kind, method in INITDB_AUTH.findall(w.env.get("POSTGRES_INITDB_ARGS", ""))}
    local = methods.get("local", methods.get("all", "trust"))  # initdb's default method is trust
    host = methods.get("host", methods.get("all", "trust"))
    lines.append(f"local all all {local}")
    lines.append(f"host all all 127.0.0.1/32 {host}")
    host_auth = w.env.get("POSTGRES_HOST_AUTH_METHOD", "").strip()
    if host_auth:
        lines.append(f"host all all all {host_auth}")  # docker-entrypoint.sh pg_setup_hba_conf
    return [("env POSTGRES_INITDB_ARGS/POSTGRES_HOST_AUTH_METHOD (initdb's pg_hba.conf)", "\n".join(lines))]


@stack_rule(
    "DS-PG-003",
    "postgres-hba-no-trust",
    "PostgreSQL trusts no connection",
    types=[*WORKLOADS, SERVICE_CONFIG],
    severity="critical",
    prod=MANDATORY,
    label_waivable=False,
    checklist=["security.database-passwords"],
    sources=["PostgreSQL docs: The pg_hba.conf File (trust)", "docker-library postgres docker-entrypoint.sh"],
    remediation="Upload a pg_hba.conf without `trust` (peer for the superuser's socket, scram-sha-256 for the "
    "rest) and start the server with `-c hba_file=<that file>`; without one, set POSTGRES_INITDB_ARGS="
    "--auth-host=scram-sha-256 --auth-local=scram-sha-256.",
)
def postgres_hba_no_trust(stack, report, options) -> None:
    """No line of the pg_hba.conf PostgreSQL reads uses `trust`: the uploaded file named by `hba_file` on its
    command line, or else the one initdb wrote from POSTGRES_INITDB_ARGS (default: trust) and
    POSTGRES_HOST_AUTH_METHOD; an `hba_file` that is not one of the stack's files cannot be checked."""
    for w in stack.workloads:
        if w.kind != "postgres":
            continue
        for where, text in _hba_sources(stack, w, report):
            for number, fields in _hba_records(text):
                if fields[0].startswith("include"):
                    report(f"postgres {w.name}: {where} line {number} includes {fields[-1]}, not checked", w.urn)
                elif _hba_method(fields) == "trust":
                    report(f"postgres {w.name}: {where} line {number} trusts {fields[0]} connections "
                           f"of {fields[2] if len(fields) > 2 else 'all'} without a password", w.urn)


@stack_rule(
    "DS-PG-004",
    "postgres-superuser-local",
    "PostgreSQL's superuser only over the local socket",
    types=[*WORKLOADS, SERVICE_CONFIG],
    severity="high",
    prod=MANDATORY,
    label_waivable=False,
    checklist=["security.database-passwords"],
    sources=["PostgreSQL docs: The pg_hba.conf File (reject)", "CIS PostgreSQL Benchmark 3.1.x"],
    remediation="Put `host all <superuser> all reject` before the other `host` lines of pg_hba.conf and give "
    "backups and exporters roles of their own.",
)
def postgres_superuser_local(stack, report, options) -> None:
    """The superuser (POSTGRES_USER, default postgres) cannot log in over TCP: the first `host*` line of the
    pg_hba.conf the server reads that names it (or `all`) rejects it. Mandatory since every client has a role of
    its own (the backup job's `pgbackrest`, components/postgres.py)."""
    for w in stack.workloads:
        if w.kind != "postgres":
            continue
        superuser = w.env.get("POSTGRES_USER", "postgres").strip() or "postgres"
        for where, text in _hba_sources(stack, w, report):
            for number, fields in _hba_records(text):
                if fields[0].startswith("include"):
                    report(f"postgres {w.name}: {where} line {number} includes {fields[-1]}: a line there could "
                           f"let the superuser {superuser} in", w.urn)
                    break
                if not fields[0].startswith("host") or len(fields) < 4:
                    continue
                users = fields[2].split(",")
                # `+role` matches its members and `@file` the names in a file: either may hold the superuser.
                if superuser not in users and "all" not in users and not any(u[:1] in "+@" for u in users):
                    continue
                if _hba_method(fields) != "reject":
                    report(f"postgres {w.name}: {where} line {number} lets the superuser {superuser} log in "
                           "over TCP", w.urn)
                    break
                if fields[1] == "all" and fields[3] in ("all", "0.0.0.0/0", "::/0"):
                    break  # rejected from everywhere before any line could let it in


def _redis_config_auth(text: str) -> bool:
    return bool(
        re.search(
            r"^\s*(requirepass\s+\S+|aclfile\s+\S+|user\s+default\s+(off|.*>\S+))",
            text,
            re.MULTILINE | re.IGNORECASE,
        )
    )


@resource_rule(
    "DS-REDIS-001",
    "redis-auth",
    "Redis requires authentication",
    reads_files=True,
    types=WORKLOADS,
    scope=kind_is("redis"),
    severity="critical",
    prod=MANDATORY,
    checklist=["security.redis-password"],
    sources=["docker-library redis docs (protected mode off in the image)"],
    remediation="Upload a redis.conf with `requirepass` (or an ACL file) from a secret and start "
    "`redis-server /path/redis.conf`; keep the password off the command line.",
)
def redis_auth(w: Workload, report, options) -> None:
    """Redis requires a password (requirepass or ACLs); the password is not a literal on the command line,
    where `docker inspect` shows it."""
    command, env = w.command, w.env
    literal = [
        part
        for index, part in enumerate(command[:-1])
        if part == "--requirepass" and not command[index + 1].startswith("$")
    ]
    # exec form (["--requirepass", v]) or shell form ("redis-server --requirepass \"$REDIS_PASSWORD\"")
    by_command = any(re.search(r"--(requirepass|aclfile)(\s|$)", part) for part in command)
    by_file = any(_redis_config_auth(text) for path, text in w.uploads.items() if path.endswith(".conf"))
    by_env = _has_value(env, "REDIS_PASSWORD")
    if not (by_command or by_file or by_env) and w.holds_its_files:
        report("no requirepass, ACL file or REDIS_PASSWORD: Redis accepts anyone")
    if literal:
        report("--requirepass with a literal value on the command line (visible in docker inspect)")
    if truthy(env.get("ALLOW_EMPTY_PASSWORD", "")):
        report("ALLOW_EMPTY_PASSWORD is enabled")


def _directives(tokens: list[str]) -> list[list[str]]:
    """redis-server's command line as config directives: `--name args...` up to the next `--`."""
    found: list[list[str]] = []
    for token in tokens:
        if token.startswith("--"):
            found.append([token[2:]])
        elif found:
            found[-1].append(token)
    return found


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:
        return text.split()


def _redis_directives(w: Workload) -> tuple[list[list[str]], bool]:
    """(directives from its uploaded .conf files and its command line, whether any .conf was found)."""
    found = []
    confs = [text for path, text in w.uploads.items() if path.endswith(".conf")]
    for text in confs:
        found.extend(fields for fields in map(_split, text.splitlines()) if fields)
    tokens = [t for part in w.command for t in (_split(part) if " " in part else [part])]
    found.extend(_directives(tokens))
    return found, bool(confs)


@resource_rule(
    "DS-REDIS-002",
    "redis-dangerous-commands",
    "Redis debug, module and flush commands off",
    reads_files=True,
    types=WORKLOADS,
    scope=kind_is("redis"),
    severity="high",
    prod=MANDATORY,
    label_waivable=False,
    checklist=["security.redis-password"],
    sources=["redis.conf (enable-debug-command, enable-module-command, rename-command)",
             "Redis security docs: disabling specific commands"],
    options={
        "disabledCommands": {
            "type": "array",
            "items": {"type": "string"},
            "default": ["FLUSHALL", "FLUSHDB", "DEBUG"],
            "description": "commands renamed to \"\" (disabled) in redis.conf or on the command line",
        }
    },
    remediation='Keep enable-debug-command and enable-module-command at no, load no module, and disable the '
    'dangerous commands with `rename-command <name> ""` in the uploaded redis.conf.',
)
def redis_dangerous_commands(w: Workload, report, options) -> None:
    """Redis does not offer its DEBUG and MODULE commands (enable-debug-command, enable-module-command),
    loads no module, and disables the commands that wipe or dump data (`rename-command X ""`), in its
    uploaded redis.conf and on its command line alike."""
    directives, has_conf = _redis_directives(w)
    disabled = set()
    for fields in directives:
        name = fields[0].lower()
        value = fields[1].strip().lower() if len(fields) > 1 else ""
        if name in ("enable-debug-command", "enable-module-command") and value != "no":
            report(f"{name} {value or '(empty)'}: the command is offered to clients")
        elif name == "loadmodule":
            report(f"loadmodule {value}: a module extends the command set")
        elif name == "rename-command" and len(fields) > 2:
            if fields[2] == "":
                disabled.add(fields[1].upper())
            else:
                disabled.discard(fields[1].upper())
    if has_conf or w.holds_its_files:
        for command in options["disabledCommands"]:
            if command.upper() not in disabled:
                report(f'{command.upper()} is not disabled (rename-command {command.upper()} "")')


@resource_rule(
    "DS-CH-001",
    "clickhouse-auth",
    "ClickHouse requires a password",
    types=WORKLOADS,
    scope=kind_is("clickhouse"),
    severity="critical",
    prod=MANDATORY,
    checklist=["security.clickhouse-password"],
    sources=["docker-library clickhouse docs"],
    remediation="Upload a users.d file giving each user a password_sha256_hex (DS-CH-002: not CLICKHOUSE_USER and "
    "CLICKHOUSE_PASSWORD, whose user the image opens to any address); never CLICKHOUSE_SKIP_USER_SETUP=1.",
)
def clickhouse_auth(w: Workload, report, options) -> None:
    """ClickHouse's `default` user is not left without a password."""
    env = w.env
    users_file = any(
        "password_sha256_hex" in text or "password_double_sha1_hex" in text
        for path, text in w.uploads.items()
        if path.endswith(".xml")
    ) or any(  # a Swarm service's users file is a secret of its own, which DS-CH-002 reads
        str(get(secret, "fileName", default="")).startswith("/etc/clickhouse-server/users.d/")
        for secret in items(get(w.spec, "secrets"))
    )
    if not _has_value(env, "CLICKHOUSE_PASSWORD") and not users_file:
        report("CLICKHOUSE_PASSWORD is not set: the default user has no password")
    if env.get("CLICKHOUSE_SKIP_USER_SETUP", "").strip() == "1":
        report("CLICKHOUSE_SKIP_USER_SETUP=1 leaves the default user insecurely available")


SECURE_PROTOCOLS = ("SASL_SSL", "SSL", "SASL_PLAINTEXT")


def _listener_protocols(env: dict[str, str]) -> dict[str, str]:
    """Listener name -> security protocol from the Apache (KAFKA_*) or Bitnami (KAFKA_CFG_*) env names."""
    mapping = env.get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP") or env.get(
        "KAFKA_CFG_LISTENER_SECURITY_PROTOCOL_MAP"
    )
    listeners = env.get("KAFKA_LISTENERS") or env.get("KAFKA_CFG_LISTENERS") or ""
    protocols = {}
    if mapping:
        for pair in mapping.split(","):
            name, _, protocol = pair.partition(":")
            protocols[name.strip().upper()] = protocol.strip().upper()
    for listener in listeners.split(","):
        name = listener.split("://", 1)[0].strip().upper()
        if name and name not in protocols:
            protocols[name] = name  # without a map the listener name is the protocol
    return protocols


@resource_rule(
    "DS-KAFKA-001",
    "kafka-authn-authz",
    "Kafka authenticates and authorizes",
    types=WORKLOADS,
    scope=kind_is("kafka"),
    severity="high",
    prod=MANDATORY,
    checklist=["configuration.kafka-bootstrap"],
    sources=["Apache Kafka security model (kafka.apache.org/44)"],
    options={
        "exemptListeners": {
            "type": "array",
            "items": {"type": "string"},
            "default": ["CONTROLLER"],
            "description": "listeners allowed to stay PLAINTEXT (KRaft controller inside the container)",
        }
    },
    remediation="Use SASL_SSL (or SASL_PLAINTEXT on an internal network) listeners, set "
    "KAFKA_AUTHORIZER_CLASS_NAME and keep allow.everyone.if.no.acl.found false.",
)
def kafka_authn_authz(w: Workload, report, options) -> None:
    """Kafka listeners require authentication and an authorizer applies ACLs (the image's default is open
    PLAINTEXT with no authorization)."""
    env = w.env
    protocols = _listener_protocols(env)
    exempt = {name.upper() for name in options["exemptListeners"]}
    if not protocols:
        report("no listeners configured: the image default is unauthenticated PLAINTEXT")
    for name, protocol in sorted(protocols.items()):
        if name not in exempt and protocol not in SECURE_PROTOCOLS:
            report(f"listener {name} uses {protocol}: no authentication")
    if not (env.get("KAFKA_AUTHORIZER_CLASS_NAME") or env.get("KAFKA_CFG_AUTHORIZER_CLASS_NAME")):
        report("no authorizer (KAFKA_AUTHORIZER_CLASS_NAME): every client may do everything")
    if truthy(env.get("KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND", "")) or truthy(
        env.get("KAFKA_CFG_ALLOW_EVERYONE_IF_NO_ACL_FOUND", "")
    ):
        report("allow.everyone.if.no.acl.found is true")
    if truthy(env.get("ALLOW_PLAINTEXT_LISTENER", "")):
        report("ALLOW_PLAINTEXT_LISTENER is enabled")


@resource_rule(
    "DS-ZK-001",
    "zookeeper-hardening",
    "ZooKeeper admin surface closed",
    types=WORKLOADS,
    scope=kind_is("zookeeper"),
    severity="high",
    prod=MANDATORY,
    checklist=["success.security-scan"],
    sources=["docker-library zookeeper docs"],
    options={"allowed4lw": {"type": "array", "items": {"type": "string"}, "default": ["srvr", "ruok"]}},
    remediation="ZOO_ADMINSERVER_ENABLED=false; ZOO_4LW_COMMANDS_WHITELIST=srvr,ruok; no anonymous login.",
)
def zookeeper_hardening(w: Workload, report, options) -> None:
    """ZooKeeper's AdminServer is off, four-letter words are minimal and anonymous login is not allowed."""
    env = w.env
    if env.get("ZOO_ADMINSERVER_ENABLED", "true").strip().lower() != "false":
        report("ZOO_ADMINSERVER_ENABLED is not false (AdminServer on :8080 by default)")
    words = {
        word.strip() for word in env.get("ZOO_4LW_COMMANDS_WHITELIST", "srvr").split(",") if word.strip()
    }
    if words - set(options["allowed4lw"]):
        report(f"four-letter words beyond {','.join(options['allowed4lw'])}: {', '.join(sorted(words))}")
    if truthy(env.get("ALLOW_ANONYMOUS_LOGIN", "")):
        report("ALLOW_ANONYMOUS_LOGIN is enabled")
