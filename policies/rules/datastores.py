"""Data store authentication: PostgreSQL, Redis, ClickHouse, Kafka and ZooKeeper images' insecure defaults."""

from __future__ import annotations

import re

from policies.props import WORKLOADS, Workload, truthy
from policies.registry import MANDATORY, resource_rule, stack_rule
from policies.scope import kind_is


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
    remediation="Set CLICKHOUSE_USER and CLICKHOUSE_PASSWORD from a secret (or a users.xml with "
    "password_sha256_hex); never CLICKHOUSE_SKIP_USER_SETUP=1.",
)
def clickhouse_auth(w: Workload, report, options) -> None:
    """ClickHouse's `default` user is not left without a password."""
    env = w.env
    users_file = any(
        "password_sha256_hex" in text or "password_double_sha1_hex" in text
        for path, text in w.uploads.items()
        if path.endswith(".xml")
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
