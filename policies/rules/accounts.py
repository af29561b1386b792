"""An account per client of each data store, with only its rights: no password every client shares, no anonymous
or all-powerful account (Redis ACL users, Kafka super users, listeners and SASL users, ClickHouse users)."""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET
from collections import defaultdict

import javaproperties
import yaml

from platform_infra.policies.props import SERVICE_LABEL, WORKLOADS, Workload
from platform_infra.policies.registry import MANDATORY, stack_rule
from platform_infra.policies.rules.datastores import _directives, _service_files

REDIS_DANGEROUS = frozenset({
    "config", "debug", "module", "flushall", "flushdb", "shutdown", "monitor", "acl", "replicaof", "slaveof",
    "sync", "psync", "failover", "migrate", "restore", "keys", "save", "bgsave", "bgrewriteaof", "cluster",
    "client", "lastsave", "swapdb", "sort", "pfdebug", "pfselftest",
})
"""Commands of Redis' @dangerous category a client could misuse (INFO, also in it, is what health checks read)."""


def _redis_fields(line: str) -> list[str]:
    """A redis.conf or ACL file line as Redis splits it (sdssplitargs: quotes, no trailing comment, so a
    `#<sha256>` password stays a field); a line starting with `#` is a comment."""
    line = line.strip()
    if line.startswith("#"):
        return []
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


def _service(w: Workload) -> str:
    return w.labels.get(SERVICE_LABEL) or w.name


def _redis_users(stack, w: Workload, report) -> list[tuple[str, list[str]]]:
    """(where, `user` directive fields) from the uploaded .conf files, the aclfile they or the command line name,
    and the command line; reports `requirepass` (the default user's one password) and an unreadable aclfile."""
    files = _service_files(stack, w)
    directives = [("redis.conf", fields) for path, text in sorted(files.items()) if path.endswith(".conf")
                  for fields in map(_redis_fields, text.splitlines()) if fields]
    tokens = [t for part in w.command for t in (_redis_fields(part) if " " in part else [part])]
    directives += [("command line", fields) for fields in _directives(tokens)]
    users = []
    for where, fields in directives:
        name = fields[0].lower()
        if name == "requirepass":
            report(f"redis {w.name}: requirepass ({where}): one password shared by every client (the default "
                   "user); give each client an ACL user of its own", w.urn)
        elif name == "user" and len(fields) > 1:
            users.append((where, fields[1:]))
        elif name == "aclfile" and len(fields) > 1:
            if fields[1] not in files:
                report(f"redis {w.name}: aclfile {fields[1]} is not one of the stack's files: its users cannot be "
                       "checked", w.urn)
                continue
            users += [(f"aclfile {fields[1]}", line[1:]) for line in map(_redis_fields, files[fields[1]].splitlines())
                      if len(line) > 1 and line[0] == "user"]
    return users


def _redis_nopass(rules: list[str]) -> bool:
    """Whether the user's last word on passwords is `nopass` (any password opens it): a later `>pw`, `#hash`,
    `resetpass` or `reset` turns that off (Redis docs, ACL rules)."""
    nopass = False
    for rule in rules:
        if rule == "nopass":
            nopass = True
        elif rule in ("resetpass", "reset") or rule[:1] in (">", "#"):
            nopass = False
    return nopass


def _redis_grants(rules: list[str]) -> set[str]:
    """The dangerous commands and categories the ACL rules leave granted, applied left to right as Redis does."""
    granted: set[str] = set()
    for rule in (r.lower() for r in rules):
        if rule in ("reset", "nocommands", "-@all"):
            granted.clear()
        elif rule in ("allcommands", "+@all"):
            granted = {"@all"}
        elif rule in ("+@dangerous", "+@admin"):
            granted.add(rule[1:])
        elif rule == "-@dangerous":
            granted.clear()  # @admin's commands are all @dangerous
        elif rule == "-@admin":
            granted.discard("@admin")
        elif rule[:1] in "+-" and rule[1:].split("|")[0] in REDIS_DANGEROUS:
            (granted.add if rule[0] == "+" else granted.discard)(rule[1:])
    return granted


def _redis_client_users(stack) -> dict[str, str | None]:
    """The Redis user each client service logs in as (None: none named, so `default`): the Spring services
    (SPRING_DATA_REDIS_USERNAME, or its config-tree file) and the exporter (REDIS_USER or --redis.user)."""
    found: dict[str, str | None] = {}
    for w in stack.workloads:
        env = w.env
        if "SPRING_DATA_REDIS_HOST" in env:
            files = _service_files(stack, w)
            named = env.get("SPRING_DATA_REDIS_USERNAME") or next(
                (text.strip() for path, text in files.items() if path.endswith("/spring.data.redis.username")), None)
        elif "REDIS_ADDR" in env or any(part.startswith("--redis.addr") for part in w.command):
            flags = [part.split("=", 1)[1] for part in w.command if part.startswith("--redis.user=")]
            named = env.get("REDIS_USER") or (flags[-1] if flags else None)
        else:
            continue
        found[_service(w)] = named or None
    return found


def _shared(users: dict[str, str | None]) -> dict[str, list[str]]:
    by_user = defaultdict(list)
    for service, user in sorted(users.items()):
        if user:
            by_user[user].append(service)
    return {user: services for user, services in by_user.items() if len(services) > 1}


@stack_rule(
    "DS-REDIS-003",
    "redis-account-per-client",
    "Redis: an ACL user per client, none all-powerful",
    types=WORKLOADS,
    severity="high",
    prod=MANDATORY,
    label_waivable=False,
    checklist=["security.redis-password"],
    sources=["Redis docs: ACL (user directives, the default user, command categories)",
             "OWASP ASVS 4.0 1.4.3 (least privilege)"],
    remediation="Switch the default user off, give each client a `user <name> on #<sha256> ~<its keys> ...` of its "
    "own without @dangerous/@admin commands (the exporter: INFO and the like, no key), and name that user in "
    "each client (SPRING_DATA_REDIS_USERNAME, the exporter's REDIS_USER).",
)
def redis_account_per_client(stack, report, options) -> None:
    """Redis has no shared password (`requirepass`, an enabled `default` user) and no user granted a dangerous
    command (CONFIG, DEBUG, MODULE, FLUSHALL, KEYS, ...; `allcommands`, +@all, +@dangerous, +@admin), in its
    uploaded redis.conf, the aclfile it names or its command line; each client service logs in as a user of its
    own."""
    redis = [w for w in stack.workloads if w.kind == "redis"]
    for w in redis:
        users = _redis_users(stack, w, report)
        if not users:
            report(f"redis {w.name}: no ACL user: every client shares the default user", w.urn)
        for where, fields in users:
            name, rules = fields[0], [r.lower() for r in fields[1:]]
            state = next((r for r in reversed(rules) if r in ("on", "off", "reset")), "off")
            if name == "default" and state != "off":
                report(f"redis {w.name}: {where}: the default user is on: every connection that does not log in, "
                       "or logs in with its one password, is it", w.urn)
            if state != "on":
                continue
            if _redis_nopass(rules):
                report(f"redis {w.name}: {where}: user {name} logs in without a password (nopass)", w.urn)
            granted = _redis_grants(rules)
            if granted:
                report(f"redis {w.name}: {where}: user {name} may run {', '.join(sorted(granted))}", w.urn)
    if not redis:
        return
    clients = _redis_client_users(stack)
    for service, user in sorted(clients.items()):
        if user is None:
            report(f"redis client {service}: logs in without a user name (the shared default user)")
    for user, services in sorted(_shared(clients).items()):
        report(f"redis user {user} is shared by {', '.join(services)}: one user per client")


INSECURE = ("PLAINTEXT",)
LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|localhost|\[::1\]|::1)$")
JAAS_USERNAME = re.compile(r'username\s*=\s*"([^"]*)"')


def _kafka_settings(stack, w: Workload) -> dict[str, str]:
    """Broker settings by property name from every source the apache/kafka image reads: KAFKA_* (and Bitnami's
    KAFKA_CFG_*) env, uploaded server.properties, `--override name=value` on the command line (last wins)."""
    found: dict[str, str] = {}
    for path, text in sorted(_service_files(stack, w).items()):
        if path.endswith(".properties") and "/secrets/" not in path:
            # As java.util.Properties.load reads it (Kafka's Utils.loadProps): `=`, `:` or a space separates,
            # `#` and `!` comment, a trailing backslash continues the line, escapes are decoded.
            found.update((key, value.strip()) for key, value in javaproperties.loads(text).items())
    for key, value in w.env.items():
        for prefix in ("KAFKA_CFG_", "KAFKA_"):
            if key.startswith(prefix) and key not in ("KAFKA_OPTS", "KAFKA_HEAP_OPTS"):
                found[key[len(prefix):].lower().replace("_", ".")] = value
                break
    tokens = [t for part in w.command for t in (shlex.split(part) if " " in part else [part])]
    for index, token in enumerate(tokens[:-1]):
        if token == "--override":
            key, _, value = tokens[index + 1].partition("=")
            found[key.strip()] = value.strip()
    return found


def _kafka_client_users(stack) -> dict[str, str | None]:
    """The SASL user each Kafka client service logs in as: the Spring services' sasl.jaas.config (config-tree
    file or env) and kafka_exporter's --sasl.username."""
    found: dict[str, str | None] = {}
    for w in stack.workloads:
        if w.kind == "kafka":
            continue
        env, command = w.env, " ".join(w.command)
        if "SPRING_KAFKA_BOOTSTRAP_SERVERS" in env:
            texts = [text for path, text in _service_files(stack, w).items()
                     if path.endswith("sasl.jaas.config")] + [env.get("SPRING_KAFKA_PROPERTIES_SASL_JAAS_CONFIG", "")]
            names = [name for text in texts for name in JAAS_USERNAME.findall(text)]
        elif "--kafka.server" in command:
            names = re.findall(r"--sasl\.username[=\s]['\"]?([^'\"\s]+)", command)
        else:
            continue
        found[_service(w)] = names[-1] if names else None
    return found


@stack_rule(
    "DS-KAFKA-002",
    "kafka-account-per-client",
    "Kafka: no anonymous super user, plaintext only on loopback, a SASL user per client",
    types=WORKLOADS,
    severity="high",
    prod=MANDATORY,
    label_waivable=False,
    checklist=["configuration.kafka-bootstrap"],
    sources=["Apache Kafka docs: Authorization and ACLs (super.users, User:ANONYMOUS)",
             "Apache Kafka docs: listeners, KRaft controller SASL (sasl.mechanism.controller.protocol)"],
    remediation="Keep super.users to the broker's own SASL user, put the controller listener on SASL over "
    "loopback, and give every client service (and the exporter) a SASL user of its own with ACLs on its "
    "topics and groups.",
)
def kafka_account_per_client(stack, report, options) -> None:
    """No super user is `User:ANONYMOUS` (any unauthenticated connection) or `User:*`, nor a client's user; a
    listener without authentication (PLAINTEXT) binds to loopback only; each client service logs in as a SASL
    user of its own. From the env, an uploaded server.properties and `--override` on the command line."""
    kafkas = [w for w in stack.workloads if w.kind == "kafka"]
    supers: set[str] = set()
    for w in kafkas:
        settings = _kafka_settings(stack, w)
        principals = {p.strip() for p in settings.get("super.users", "").split(";") if p.strip()}
        supers |= {p.split(":", 1)[1] for p in principals if ":" in p}
        for principal in sorted(principals & {"User:ANONYMOUS", "User:*"}):
            report(f"kafka {w.name}: super.users holds {principal}: every connection without a login is all-"
                   "powerful", w.urn)
        protocols = {name.strip().upper(): protocol.strip().upper() for name, _, protocol in
                     (pair.partition(":") for pair in settings.get("listener.security.protocol.map", "").split(","))
                     if name.strip()}
        for listener in filter(None, (x.strip() for x in settings.get("listeners", "").split(","))):
            name, _, address = listener.partition("://")
            host = address.rpartition(":")[0]
            if protocols.get(name.upper(), name.upper()) in INSECURE and not LOOPBACK.match(host):
                report(f"kafka {w.name}: listener {listener} takes connections without authentication beyond "
                       "loopback", w.urn)
    if not kafkas:
        return
    clients = _kafka_client_users(stack)
    for service, user in sorted(clients.items()):
        if user is None:
            report(f"kafka client {service}: no SASL user")
        elif user in supers:
            report(f"kafka client {service}: logs in as the super user {user}")
    for user, services in sorted(_shared(clients).items()):
        report(f"kafka user {user} is shared by {', '.join(services)}: one user per client")


CLICKHOUSE_USERS_D = "/etc/clickhouse-server/users.d/"
CLICKHOUSE_ANY_ADDRESS = frozenset({"::/0", "0.0.0.0/0", "%", "::", "0.0.0.0", ".*"})
"""What ClickHouse counts as any host (src/Access/Common/AllowedClientHosts.cpp addSubnet with a wildcard mask,
addLikePattern, addNameRegexp)."""
CLICKHOUSE_LOOPBACK = frozenset({"::1", "127.0.0.1", "localhost"})
CLICKHOUSE_HASHES = ("password_sha256_hex", "password_double_sha1_hex", "bcrypt_hash", "ldap", "kerberos",
                     "ssl_certificates", "ssh_keys")
CLICKHOUSE_ALL_POWERFUL = re.compile(r"(?i)^\s*GRANT\s+(.*\b(ALL|ACCESS MANAGEMENT)\b.*\bON\b|.*WITH GRANT OPTION)")


def _clickhouse_user_elements(stack, w: Workload, report) -> list[tuple[str, str, ET.Element]]:
    """(where, name, element) of each user the server gets: the users.d XML files the stack uploads (a removed
    user dropped), the user the image's entrypoint writes from the environment, and the image's own `default`
    (any address, no password: the image's users.xml) unless a file locks or removes it."""
    found: list[tuple[str, str, ET.Element]] = []
    removed: set[str] = set()
    for path, text in sorted(_service_files(stack, w).items()):
        if not path.endswith(".xml") or "<users" not in text:
            continue
        try:
            root = ET.fromstring(text)
        except ET.ParseError as error:
            report(f"clickhouse {w.name}: {path} is not XML ({error}): its users cannot be checked", w.urn)
            continue
        for users in root.iter("users"):
            for user in users:
                if user.get("remove") == "remove":
                    removed.add(user.tag)
                else:
                    found.append((path, user.tag, user))
    env = w.env
    user = env.get("CLICKHOUSE_USER") or "default"
    skip = env.get("CLICKHOUSE_SKIP_USER_SETUP", "").strip() == "1"
    if not skip and (user != "default" or _has_env(env, "CLICKHOUSE_PASSWORD")
                     or env.get("CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT", "0").strip() not in ("", "0")):
        # ClickHouse/docker-library server/24.8.*/entrypoint.sh: users.d/default-user.xml, `default` removed.
        element = ET.fromstring(f"<{user}><networks><ip>::/0</ip></networks><password>(env)</password>"
                                f"<access_management>{env.get('CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT', '0')}"
                                f"</access_management></{user}>")
        found.append(("env CLICKHOUSE_USER/CLICKHOUSE_PASSWORD (the image's entrypoint)", user, element))
        removed.add("default")
    if "default" not in removed and not any(name == "default" for _, name, _ in found):
        found.append(("the image's users.xml", "default", ET.fromstring(
            "<default><networks><ip>::/0</ip></networks><password></password></default>")))
    return [(where, name, element) for where, name, element in found if name not in removed or where.startswith("env")]


def _has_env(env: dict[str, str], key: str) -> bool:
    return bool(env.get(key, "").strip() or env.get(f"{key}_FILE", "").strip())


def _clickhouse_networks(name: str, user: ET.Element) -> list[str] | None:
    """The user's address patterns; None: no <networks> (any address; `default` keeps the image's ::/0)."""
    networks = user.find("networks")
    if networks is None:
        return None
    return [(entry.text or "").strip() for entry in networks]


def _clickhouse_client_users(stack) -> dict[str, str | None]:
    """The ClickHouse user each client logs in as: a service's CLICKHOUSE_USER beside its CLICKHOUSE_URL;
    clickhouse-backup's CLICKHOUSE_USERNAME or its config file's clickhouse.username (its own default: `default`,
    Altinity/clickhouse-backup pkg/config/config.go)."""
    found: dict[str, str | None] = {}
    for w in stack.workloads:
        env = w.env
        if "CLICKHOUSE_URL" in env:
            found[_service(w)] = env.get("CLICKHOUSE_USER") or None
        elif "CLICKHOUSE_BACKUP_CONFIG" in env or "CLICKHOUSE_HOST" in env:
            named = env.get("CLICKHOUSE_USERNAME")
            for path, text in _service_files(stack, w).items():
                if named is None and path.endswith((".yml", ".yaml")):
                    try:
                        config = yaml.safe_load(text)
                    except yaml.YAMLError:
                        continue
                    section = config.get("clickhouse") if isinstance(config, dict) else None
                    named = section.get("username") if isinstance(section, dict) else None
            found[_service(w)] = str(named) if named else "default"
    return found


@stack_rule(
    "DS-CH-002",
    "clickhouse-account-per-client",
    "ClickHouse: a user per client from its own addresses, hashed passwords, none all-powerful",
    types=WORKLOADS,
    severity="high",
    prod=MANDATORY,
    label_waivable=False,
    checklist=["security.clickhouse-password"],
    sources=["ClickHouse docs: settings_users (password_sha256_hex, networks, profile, grants, access_management)",
             "ClickHouse/docker-library server/24.8.*/entrypoint.sh (CLICKHOUSE_USER, CLICKHOUSE_PASSWORD)",
             "OWASP ASVS 4.0 1.4.3 (least privilege)"],
    remediation="Upload a users.d file with a user per client (password_sha256_hex, <networks><host> of the client "
    "alone, <grants> of what it does, never ALL or ACCESS MANAGEMENT), `default` kept to ::1 and 127.0.0.1; no "
    "CLICKHOUSE_USER or CLICKHOUSE_PASSWORD, with which the image writes a user of every right from any address; "
    "name each client's own user in it (CLICKHOUSE_USER, clickhouse-backup's CLICKHOUSE_USERNAME).",
)
def clickhouse_account_per_client(stack, report, options) -> None:
    """Every ClickHouse user the server gets (the uploaded users.d files, the one the image's entrypoint writes
    from CLICKHOUSE_USER/CLICKHOUSE_PASSWORD, the image's own `default`) either stays on loopback or accepts its
    clients' addresses only (not `::/0`, `0.0.0.0/0`, `%`, nor no <networks> at all), with a hashed password (no
    plaintext <password>, none at all only on loopback), and without access management or every right (<grants>
    of ALL, ACCESS MANAGEMENT or WITH GRANT OPTION, or no <grants> at all, which ClickHouse reads as ALL). Each
    client logs in as a user of its own, never `default`."""
    houses = [w for w in stack.workloads if w.kind == "clickhouse" and w.runs]
    for w in houses:
        for where, name, user in _clickhouse_user_elements(stack, w, report):
            networks = _clickhouse_networks(name, user)
            loopback = networks is not None and bool(networks) and set(networks) <= CLICKHOUSE_LOOPBACK
            if networks is None or not networks or set(networks) & CLICKHOUSE_ANY_ADDRESS:
                report(f"clickhouse {w.name}: {where}: user {name} accepts any address", w.urn)
            plaintext = user.find("password")
            if plaintext is not None and (plaintext.text or "").strip():
                report(f"clickhouse {w.name}: {where}: user {name} has a plaintext <password>", w.urn)
            elif not loopback and not any(user.find(tag) is not None for tag in CLICKHOUSE_HASHES):
                report(f"clickhouse {w.name}: {where}: user {name} has no password", w.urn)
            if loopback:
                continue
            if (user.findtext("access_management") or "0").strip().lower() in ("1", "true"):
                report(f"clickhouse {w.name}: {where}: user {name} has access_management", w.urn)
            grants = [(query.text or "").strip() for query in user.iterfind("grants/query")]
            if user.find("grants") is None and user.find("allow_databases") is None:
                report(f"clickhouse {w.name}: {where}: user {name} has every right (no <grants>)", w.urn)
            for grant in grants:
                if CLICKHOUSE_ALL_POWERFUL.match(grant):
                    report(f"clickhouse {w.name}: {where}: user {name}: {grant}", w.urn)
    if not houses:
        return
    clients = _clickhouse_client_users(stack)
    for service, user in sorted(clients.items()):
        if user is None or user == "default":
            report(f"clickhouse client {service}: logs in as {user or 'no user'}, not a user of its own")
    for user, services in sorted(_shared(clients).items()):
        report(f"clickhouse user {user} is shared by {', '.join(services)}: one user per client")
