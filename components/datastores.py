"""PostgreSQL, Redis, Kafka and ClickHouse: data network only, no published ports, passwords from Secrets."""

from __future__ import annotations

import hashlib
import re
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NotRequired, TypedDict

import pulumi

from platform_infra.components.backup.jobs import PostgresArchiving
from platform_infra.components.kafka import KAFKA_NAME, TOPICS_ENV, KafkaAccess, acl_arguments, format_topics
from platform_infra.components.monitoring.targets import TASKS_DNS_PREFIX
from platform_infra.components.postgres import (
    ADMIN_RESERVED_CONNECTIONS,
    ADMIN_SQL,
    BACKUP_CONNECTIONS,
    BACKUP_ROLE,
    EXPORTER_CONNECTIONS,
    EXPORTER_ROLE,
    ROLES_APPLIED,
    ROLES_SQL,
    SOCKET_DIR,
    SUPERUSER,
    hba_conf,
    start_script,
)
from platform_infra.components.runtime import Runtime
from platform_infra.components.spec import (
    FILES_DIR,
    ComponentArgsError,
    ContainerSpec,
    FileSpec,
    Healthcheck,
    VolumeMount,
    validate_spec,
)
from platform_infra.components.zones import missing_networks, networks_of

# Official images start as root and step down to their own user (gosu/setpriv); these are the
# capabilities that step needs once everything else is dropped.
STEP_DOWN_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID")
# start-postgres.sh stays root while the server it started runs as postgres (the image's gosu step): checking
# that the server lives (`kill -0`) and handing it the stop signal (as SIGINT) signal another user's process, which
# root without CAP_KILL may not (kill(2): EPERM); the script would exit at once, killing initdb half-way.
POSTGRES_CAPS = (*STEP_DOWN_CAPS, "KILL")
# The same for ClickHouse's entrypoint at its first start: root stops the loopback-only server it ran as
# clickhouse (101) to create the database (ClickHouse/docker-library server/24.8.*/entrypoint.sh, `kill -s TERM
# "$pid"`); without CAP_KILL that fails, the container exits and starts again.
CLICKHOUSE_CAPS = (*STEP_DOWN_CAPS, "KILL")
# The groups of the users those images step down to, which own their secret files with root (0440): the Debian
# postgres and redis images' postgres and redis (999), clickhouse-server's clickhouse (101).
POSTGRES_GID, REDIS_GID, CLICKHOUSE_GID = "999", "999", "101"


class StoreArgs(TypedDict):
    runtime: Runtime
    networks: Mapping[str, pulumi.Resource]
    image: str
    memory_mb: int
    cpus: float


class DataStoreArgs(StoreArgs):
    password: pulumi.Input[str]


class PostgresArgs(DataStoreArgs):
    database: str
    user: str
    """The application's role (owner of its schema, nothing more); `password` is its password."""
    superuser_password: pulumi.Input[str]
    """The `postgres` superuser's, for administration only."""
    exporter_password: pulumi.Input[str]
    """The exporter role's (`postgres_exporter`, pg_monitor)."""
    backup_password: pulumi.Input[str]
    """The backup job's role's (`pgbackrest`, the backup functions only)."""
    admin_password_bcrypt: NotRequired[pulumi.Input[str]]
    """bcrypt of the application's `admin` user, set in its users table once that exists."""
    max_connections: NotRequired[int]
    archiving: NotRequired[PostgresArchiving]
    """Continuous WAL archiving (platform_infra.components.backup.jobs.postgres_archiving); the image must hold the tool."""


class KafkaArgs(DataStoreArgs):
    clients: Mapping[str, KafkaClient]
    """A SASL user per client, by name (the services' own, the exporter's), with what it may do. `password` is
    the broker's own user (KAFKA_USER: between broker and controller, the start script's topics and ACLs), the
    one super user."""
    mode: NotRequired[Literal["kraft"]]
    topics: NotRequired[Mapping[str, int]]
    """The topics to create at start, with their partitions: at least the most consumers of a group."""


def _require(component: str, args: Mapping, *keys: str) -> None:
    missing = [key for key in ("runtime", "networks", "image", "memory_mb", "cpus", *keys) if args.get(key) is None]
    if missing:
        raise ComponentArgsError(f"{component}: missing required args {missing}")
    lacking = missing_networks(component.lower(), args["networks"])
    if lacking:
        raise ComponentArgsError(f"{component}: networks must include {lacking} (components/zones.py)")


def _require_client_users(component: str, users: Mapping, name_pattern: str) -> None:
    bad = [name for name in users if name == "default" or not re.fullmatch(name_pattern, name)]
    if bad or not users:
        raise ComponentArgsError(f"{component}: users must be one or more client names (not 'default'), got {bad}")


def archived_once_started(settings: Mapping[str, str]) -> dict[str, str]:
    """Archiving settings whose command archives only once start-postgres.sh has seen the server up (its
    marker). The image's entrypoint runs these settings in its initdb-time server too, which archives its first
    WAL segment at its shutdown: with the store not answering yet (a first deploy), that push hangs and pg_ctl
    gives up after 60 s, so the first start fails. A command that fails at once is retried by PostgreSQL later,
    the segment kept (PostgreSQL docs, "Continuous Archiving")."""
    return {**settings, "archive_command": f"test -f {ROLES_APPLIED} && {{ {settings['archive_command']}; }}"}


def postgres_spec(args: PostgresArgs) -> ContainerSpec:
    _require("Postgres", args, "password", "database", "user", "superuser_password", "exporter_password",
             "backup_password")
    archiving = args.get("archiving")
    if args["user"] in (SUPERUSER, EXPORTER_ROLE, BACKUP_ROLE):
        raise ComponentArgsError(f"Postgres: user must be the application's own role, not {args['user']!r}")
    max_connections = args.get("max_connections", 100)
    reserved = ADMIN_RESERVED_CONNECTIONS + EXPORTER_CONNECTIONS + BACKUP_CONNECTIONS
    if not isinstance(max_connections, int) or max_connections <= reserved:
        raise ComponentArgsError(f"Postgres: max_connections must be an integer above {reserved}, "
                                 f"got {max_connections!r}")
    secrets = f"{FILES_DIR}/secrets"
    admin = args.get("admin_password_bcrypt")
    files = [
        FileSpec(f"{secrets}/postgres_password", args["password"], secret=True),
        FileSpec(f"{secrets}/postgres_superuser_password", args["superuser_password"], secret=True),
        FileSpec(f"{secrets}/postgres_exporter_password", args["exporter_password"], secret=True),
        FileSpec(f"{secrets}/postgres_backup_password", args["backup_password"], secret=True),
        *([FileSpec(f"{secrets}/app_admin_password_bcrypt", admin, secret=True)] if admin is not None else []),
        FileSpec(f"{FILES_DIR}/postgres_roles.sql", ROLES_SQL),
        FileSpec(f"{FILES_DIR}/postgres_app_admin.sql", ADMIN_SQL),
        FileSpec(f"{FILES_DIR}/pg_hba.conf", hba_conf(args["database"], args["user"])),
        FileSpec(f"{FILES_DIR}/start-postgres.sh", start_script(
            files_dir=FILES_DIR, database=args["database"], app_role=args["user"], admin=admin is not None)),
        *(archiving.files if archiving else ()),
    ]
    return validate_spec(ContainerSpec(
        service="postgres", role="ds", image=args["image"], networks=networks_of("postgres"),
        memory_mb=args["memory_mb"], cpus=args["cpus"],
        # The image initialises the data directory with the superuser; start-postgres.sh keeps the roles in step.
        env={"POSTGRES_USER": SUPERUSER, "POSTGRES_DB": args["database"],
             "POSTGRES_INITDB_ARGS": "--auth-host=scram-sha-256 --auth-local=scram-sha-256",
             "POSTGRES_HOST_AUTH_METHOD": "scram-sha-256", "PGDATA": "/var/lib/postgresql/data/pgdata",
             "POSTGRES_PASSWORD_FILE": f"{secrets}/postgres_superuser_password"},
        files=files,
        entrypoint=["/bin/sh", f"{FILES_DIR}/start-postgres.sh"],
        # start-postgres.sh hands these to the image's entrypoint, which passes `-c name=value` to the server.
        command=["-c", f"hba_file={FILES_DIR}/pg_hba.conf", "-c", f"max_connections={max_connections}",
                 "-c", f"superuser_reserved_connections={ADMIN_RESERVED_CONNECTIONS}",
                 *[arg for key, value in (archived_once_started(archiving.settings) if archiving else {}).items()
                   for arg in ("-c", f"{key}={value}")]],
        # Healthy once the roles match the stack's secrets, not merely once the server answers.
        healthcheck=Healthcheck(["CMD-SHELL", (f"pg_isready -h 127.0.0.1 -d {args['database']} && "
                                              f"test -f {ROLES_APPLIED}")]),
        volumes=[VolumeMount("postgres-data", "/var/lib/postgresql/data")],
        tmpfs={SOCKET_DIR: "rw,noexec,nosuid,size=16m", "/tmp": "rw,noexec,nosuid,size=64m"},
        cap_add=POSTGRES_CAPS,
        service_group=POSTGRES_GID,
        stop_grace_seconds=60,
    ))


REDIS_EXPORTER_USER = "redis-exporter"
REDIS_DISABLED_COMMANDS = ("FLUSHALL", "FLUSHDB", "DEBUG", "CONFIG", "MODULE")
"""Renamed away for every user: no client needs them (the exporter skips CONFIG, components/monitoring)."""
# ACL rules (https://redis.io/docs/latest/operate/oss_and_stack/management/security/acl/), applied left to
# right. A service: the data commands on its own keys and channels, never a @dangerous one (KEYS, MONITOR,
# CLIENT KILL, SHUTDOWN, REPLICAOF, ...) but INFO, which Spring Boot's RedisHealthIndicator sends.
REDIS_SERVICE_COMMANDS = ("-@all +@read +@write +@keyspace +@connection +@transaction +@pubsub +@scripting "
                          "-@dangerous +info")
# The exporter: no key, no channel; INFO (redis_up and the metrics), SLOWLOG and LATENCY readings, DBSIZE.
REDIS_EXPORTER_COMMANDS = ("-@all +@connection -@dangerous +info +ping +dbsize +slowlog|get +slowlog|len "
                           "+latency|latest +latency|histogram")


class RedisArgs(StoreArgs):
    users: Mapping[str, RedisUser]
    """The ACL users, by name: one per client (the services by their name, REDIS_EXPORTER_USER)."""


@dataclass(frozen=True)
class RedisUser:
    password: pulumi.Input[str]
    keys: tuple[str, ...] = ()
    """Key (and channel) patterns the user may touch; none: no key at all."""
    commands: str = REDIS_SERVICE_COMMANDS


def redis_acl_line(name: str, password: str, user: RedisUser) -> str:
    """One `user` directive: on, the password as its SHA-256 (the file holds no password), the patterns, the
    commands. `default` is switched off beside these: every connection logs in as its own user."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    patterns = " ".join([*(f"~{key}" for key in user.keys), *(f"&{key}" for key in user.keys)])
    return " ".join(filter(None, ["user", name, "reset on", f"#{digest}", patterns, user.commands])) + "\n"


def redis_spec(args: RedisArgs) -> ContainerSpec:
    _require("Redis", args, "users")
    _require_client_users("Redis", args["users"], r"[a-z0-9][a-z0-9-]*")
    conf_path = f"{FILES_DIR}/redis.conf"
    names = sorted(args["users"])
    # The accounts live in the config file (a secret), never on the command line where `docker inspect` shows them.
    config = pulumi.Output.all(*(args["users"][name].password for name in names)).apply(lambda passwords: "".join([
        "appendonly yes\nprotected-mode yes\n",
        "enable-debug-command no\nenable-module-command no\n",
        *(f'rename-command {command} ""\n' for command in REDIS_DISABLED_COMMANDS),
        "user default off resetkeys resetchannels -@all\n",
        *(redis_acl_line(name, password, args["users"][name]) for name, password in zip(names, passwords, strict=True)),
    ]))
    return validate_spec(ContainerSpec(
        service="redis", role="ds", image=args["image"], networks=networks_of("redis"),
        memory_mb=args["memory_mb"], cpus=args["cpus"],
        command=["redis-server", conf_path],
        files=[FileSpec(conf_path, config, secret=True)],
        # Answering, without a login: with `default` off, an anonymous PING gets NOAUTH (a loading server: LOADING).
        healthcheck=Healthcheck(["CMD-SHELL", "redis-cli ping | grep -Eq '^(PONG|NOAUTH)'"], start_period="10s"),
        volumes=[VolumeMount("redis-data", "/data")],
        tmpfs={"/tmp": "rw,noexec,nosuid,size=16m"},
        cap_add=STEP_DOWN_CAPS,
        service_group=REDIS_GID,
    ))


KAFKA_USER = "platform"


@dataclass(frozen=True)
class KafkaClient:
    password: pulumi.Input[str]
    access: KafkaAccess


def kafka_jaas(user: str, password: pulumi.Input[str], *,
               accepted: Mapping[str, pulumi.Input[str]] | None = None) -> pulumi.Output[str]:
    """SASL/PLAIN login for a client, or for the broker, which also declares the users it accepts."""
    users = [part for name, secret in sorted((accepted or {}).items()) for part in ('" user_', name, '="', secret)]
    return pulumi.Output.concat(
        'org.apache.kafka.common.security.plain.PlainLoginModule required username="', user,
        '" password="', password, *users, '";')


KAFKA_JAAS_PATH = f"{FILES_DIR}/secrets/kafka_server_jaas.conf"
KAFKA_ADMIN_CONFIG = f"{FILES_DIR}/secrets/kafka_admin.properties"
KAFKA_START_SCRIPT = f"{FILES_DIR}/start-kafka.sh"
KAFKA_TOPICS_READY = "/tmp/platform-topics-ready"
# Kafka's container runs two JVMs at once: the broker and, while the start script sets the topics up,
# kafka-topics.sh (one run at a time). Both heaps and both JVMs' memory outside the heap share the limit.
TOPIC_TOOL_HEAP_MB = 128
JVM_NON_HEAP_MB = 192
"""What one JVM takes beside its heap, counted for each (an estimate, rounded up; HotSpot 21 with G1, as in
apache/kafka's image): metaspace (the broker loads some 10,000 classes, 60-80 MiB; the tool fewer), code cache
(30-50 MiB in use once the broker's hot paths are compiled), thread stacks (1 MiB reserved each; a single-node
KRaft broker runs 60-100 threads: network, request handlers, raft, log cleaner), G1's own structures and the
symbol tables, and NIO direct buffers. Generous on purpose: a container over its limit is killed, not
slowed."""
MIN_KAFKA_HEAP_MB = 256
"""The smallest broker heap the stack gives: a single-node KRaft broker (controller included) with the
platform's few topics; Kafka's own default is 1 GiB (bin/kafka-server-start.sh)."""
MIN_KAFKA_MEMORY_MB = MIN_KAFKA_HEAP_MB + TOPIC_TOOL_HEAP_MB + 2 * JVM_NON_HEAP_MB


def kafka_heap_mb(memory_mb: int) -> int:
    """The broker's heap: half the limit (the rest is the page cache Kafka's log reads rely on), but never
    so much that the topic tool's heap and both JVMs' non-heap memory no longer fit beside it."""
    if memory_mb < MIN_KAFKA_MEMORY_MB:
        raise ComponentArgsError(
            f"Kafka: memory_mb {memory_mb} is below the minimum {MIN_KAFKA_MEMORY_MB}: the broker's heap "
            f"(at least {MIN_KAFKA_HEAP_MB} MiB), the topic tool's ({TOPIC_TOOL_HEAP_MB} MiB) and "
            f"{JVM_NON_HEAP_MB} MiB beside each JVM's heap share the container's limit")
    return min(memory_mb // 2, memory_mb - TOPIC_TOOL_HEAP_MB - 2 * JVM_NON_HEAP_MB)


def kafka_start_script(*, acls: Sequence[Sequence[str]] = (), kafka_home: str = "/opt/kafka",
                       launcher: str = "/etc/kafka/docker/run",
                       ready: str = KAFKA_TOPICS_READY, bootstrap: str = "127.0.0.1:9092") -> str:
    """The container's entrypoint: the image's launcher (apache/kafka docker/jvm/Dockerfile CMD), then, once the
    broker answers, each topic of $PLATFORM_KAFKA_TOPICS created with its partitions, or raised to them (Kafka
    never lowers a topic's partitions: TopicCommand's --alter only adds), then every client's ACLs added
    (`acls`: kafka-acls.sh arguments; adding one that exists changes nothing). Healthy only once that is done.
    Flags: tools/src/main/java/org/apache/kafka/tools/TopicCommand.java (--bootstrap-server, --command-config,
    --create, --if-not-exists, --describe, --alter, --partitions, --replication-factor), AclCommand (--add,
    --allow-principal, --producer, --consumer, --operation, --topic, --group, --cluster)."""
    acl_lines = "".join(f"acls {shlex.join(arguments)} >/dev/null\n" for arguments in acls)
    return f"""#!/bin/sh
# Generated by platform_infra.components.datastores.kafka_start_script; see that function.
set -eu
rm -f {ready}
{launcher} &
broker=$!
trap 'kill -TERM "$broker"; wait "$broker"; exit $?' TERM INT
# A failed topic setup takes the broker down with it: the container stops, is restarted, never healthy.
trap 'kill -TERM "$broker" 2>/dev/null || true' EXIT
# The admin tool is a small JVM of its own beside the broker: not the broker's heap (the limit holds both:
# kafka_heap_mb), nor its JAAS login.
topics() {{
    KAFKA_HEAP_OPTS=-Xmx{TOPIC_TOOL_HEAP_MB}m KAFKA_OPTS= {kafka_home}/bin/kafka-topics.sh --bootstrap-server {bootstrap} \
        --command-config {KAFKA_ADMIN_CONFIG} "$@"
}}
until topics --list >/dev/null 2>&1; do kill -0 "$broker"; sleep 2; done
for pair in ${TOPICS_ENV}; do
    topic="${{pair%:*}}" wanted="${{pair##*:}}"
    topics --create --if-not-exists --topic "$topic" --partitions "$wanted" --replication-factor 1
    have="$(topics --describe --topic "$topic" | sed -n 's/.*PartitionCount: *\\([0-9]*\\).*/\\1/p' | head -n 1)"
    if [ "$have" -lt "$wanted" ]; then
        topics --alter --topic "$topic" --partitions "$wanted"
        echo "platform: topic $topic raised from $have to $wanted partitions"
    elif [ "$have" -gt "$wanted" ]; then
        echo "platform: topic $topic keeps its $have partitions ($wanted declared; Kafka never lowers them)"
    fi
done
acls() {{
    KAFKA_HEAP_OPTS=-Xmx{TOPIC_TOOL_HEAP_MB}m KAFKA_OPTS= {kafka_home}/bin/kafka-acls.sh --bootstrap-server {bootstrap} \
        --command-config {KAFKA_ADMIN_CONFIG} "$@"
}}
{acl_lines}touch {ready}
echo "platform: topics ready: ${TOPICS_ENV}"
wait "$broker"
"""


def kafka_specs(args: KafkaArgs) -> list[ContainerSpec]:
    _require("Kafka", args, "password")
    if args.get("mode", "kraft") != "kraft":
        # apache/kafka's launch script formats its storage for KRaft at every start and refuses ZooKeeper.
        raise ComponentArgsError(f"Kafka: mode must be kraft (ZooKeeper mode was removed), got {args.get('mode')!r}")
    topics = args.get("topics", {})
    bad = [f"{name}: {count}" for name, count in topics.items()
           if not re.fullmatch(KAFKA_NAME, name) or not isinstance(count, int) or count < 1]
    if bad:
        raise ComponentArgsError(f"Kafka: topics must map topic names to partitions >= 1, got {bad}")
    clients = args.get("clients") or {}
    bad = [name for name in clients if name == KAFKA_USER or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name)]
    if bad or not clients:
        raise ComponentArgsError(f"Kafka: clients must be one or more client names (not {KAFKA_USER!r}), got {bad}")
    heap = kafka_heap_mb(args["memory_mb"])
    env = {
        # Both listeners authenticate: the controller's (loopback only) with the broker's own user, so no
        # connection is ANONYMOUS and no super user is needed for one (Kafka docs, KRaft: "sasl.mechanism.
        # controller.protocol"; the KafkaServer JAAS section serves every listener without its own).
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "BROKER:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "BROKER",
        "KAFKA_ADVERTISED_LISTENERS": "BROKER://kafka:9092",
        "KAFKA_SASL_ENABLED_MECHANISMS": "PLAIN",
        "KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL": "PLAIN",
        "KAFKA_SASL_MECHANISM_CONTROLLER_PROTOCOL": "PLAIN",
        "KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND": "false",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_LOG_DIRS": "/var/lib/kafka/data",
        "KAFKA_HEAP_OPTS": f"-Xmx{heap}m -Xms{heap}m",
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "BROKER://:9092,CONTROLLER://127.0.0.1:9093",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@127.0.0.1:9093",
        "KAFKA_AUTHORIZER_CLASS_NAME": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        # The broker's own user only; every client has a user of its own with its ACLs (kafka_start_script).
        "KAFKA_SUPER_USERS": f"User:{KAFKA_USER}",
    }
    specs = []
    # The broker's login is a JAAS file named in KAFKA_OPTS (the apache/kafka image keeps KAFKA_OPTS out of
    # server.properties and expects the login there for SASL: apache/kafka docker/resources/common-scripts/
    # configure, core/src/main/scala/kafka/docker/KafkaDockerWrapper.scala), so no credential is in env.
    accepted = {KAFKA_USER: args["password"], **{name: client.password for name, client in clients.items()}}
    jaas = pulumi.Output.concat("KafkaServer {\n  ", kafka_jaas(KAFKA_USER, args["password"], accepted=accepted),
                                "\n};\n")
    admin = pulumi.Output.concat("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\nsasl.jaas.config=",
                                 kafka_jaas(KAFKA_USER, args["password"]), "\n")
    specs.append(ContainerSpec(
        service="kafka", role="ds", image=args["image"], networks=networks_of("kafka"),
        memory_mb=args["memory_mb"], cpus=args["cpus"],
        env={**env, "KAFKA_OPTS": f"-Djava.security.auth.login.config={KAFKA_JAAS_PATH}",
             TOPICS_ENV: format_topics(topics)},
        entrypoint=["/bin/sh", KAFKA_START_SCRIPT],
        files=[FileSpec(KAFKA_JAAS_PATH, jaas, secret=True), FileSpec(KAFKA_ADMIN_CONFIG, admin, secret=True),
               FileSpec(KAFKA_START_SCRIPT, kafka_start_script(acls=[
                   arguments for name, client in sorted(clients.items())
                   for arguments in acl_arguments(name, client.access)]))],
        # Healthy once the platform's topics exist, so the services that wait for Kafka find them.
        healthcheck=Healthcheck(["CMD-SHELL", (f"test -f {KAFKA_TOPICS_READY} && "
                                               "bash -c 'echo > /dev/tcp/127.0.0.1/9092'")], start_period="90s"),
        volumes=[VolumeMount("kafka-data", "/var/lib/kafka/data")],
        user="1000:1000", read_only=False, stop_grace_seconds=60,
    ))
    return [validate_spec(spec) for spec in specs]


CLICKHOUSE_DATABASE = "logs"
CLICKHOUSE_USERS_PATH = "/etc/clickhouse-server/users.d/platform-users.xml"
"""The stack's users (a secret: the password hashes), merged over the image's users.xml as every users.d file."""
CLICKHOUSE_METRICS = """<clickhouse>
  <prometheus>
    <endpoint>/metrics</endpoint><port>9363</port>
    <metrics>true</metrics><events>true</events><asynchronous_metrics>true</asynchronous_metrics><errors>true</errors>
  </prometheus>
</clickhouse>
"""
# A user's <host> is resolved at each login, not from ClickHouse's DNS cache: with the cache, a replica replaced
# by one at a new address would be refused (and the old address still let in) for up to dns_cache_update_period
# (15 s), the period of the cache's refresh (ClickHouse docs, server settings disable_internal_dns_cache,
# "recommended for ... frequently changing infrastructure"; src/Common/DNSResolver.cpp
# resolveHostAllInOriginOrder, src/Access/Common/AllowedClientHosts.cpp isAddressOfHost).
CLICKHOUSE_DNS = """<clickhouse>
  <disable_internal_dns_cache>1</disable_internal_dns_cache>
</clickhouse>
"""
CLICKHOUSE_LOOPBACK = ("::1", "127.0.0.1")


@dataclass(frozen=True)
class ClickHouseUser:
    """One client's ClickHouse account: logged in from its own addresses only, with only its grants."""

    password: pulumi.Input[str]
    grants: tuple[str, ...]
    """GRANT queries without the grantee (ClickHouse docs, settings_users `grants`); never ALL."""
    profile: str = "default"


def clickhouse_host(client: str, per_task_dns: bool) -> str:
    """The DNS name whose addresses are `client`'s: its alias on the store's network, or on Swarm `tasks.<client>`
    (the service's own name is a virtual IP, never a connection's source)."""
    return f"{TASKS_DNS_PREFIX}{client}" if per_task_dns else client


def clickhouse_users_xml(users: Mapping[str, tuple[str, ClickHouseUser]], per_task_dns: bool) -> str:
    """users.d: the image's `default` kept to loopback (the entrypoint creates CLICKHOUSE_DB through it at the
    first start, as root inside the container), every client a user named as it, its password as SHA-256, its
    addresses by name, its profile, its grants. `users`: name -> (password, user)."""
    root = ET.Element("clickhouse")
    profiles = ET.SubElement(root, "profiles")
    ET.SubElement(ET.SubElement(profiles, "readonly"), "readonly").text = "1"
    accounts = ET.SubElement(root, "users")
    default = ET.SubElement(accounts, "default")
    networks = ET.SubElement(default, "networks", {"replace": "replace"})
    for address in CLICKHOUSE_LOOPBACK:
        ET.SubElement(networks, "ip").text = address
    ET.SubElement(default, "access_management").text = "0"
    for name, (password, user) in sorted(users.items()):
        account = ET.SubElement(accounts, name)
        ET.SubElement(account, "password_sha256_hex").text = hashlib.sha256(password.encode()).hexdigest()
        ET.SubElement(ET.SubElement(account, "networks"), "host").text = clickhouse_host(name, per_task_dns)
        ET.SubElement(account, "profile").text = user.profile
        ET.SubElement(account, "quota").text = "default"
        ET.SubElement(account, "access_management").text = "0"
        grants = ET.SubElement(account, "grants")
        for grant in user.grants:
            ET.SubElement(grants, "query").text = f"GRANT {grant}"
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


class ClickHouseArgs(StoreArgs):
    users: Mapping[str, ClickHouseUser]
    """One user per client, named as the client's service (its DNS name on the store's network)."""
    per_task_dns: NotRequired[bool]
    """Swarm: a client's addresses are `tasks.<client>`."""


def clickhouse_spec(args: ClickHouseArgs) -> ContainerSpec:
    _require("ClickHouse", args, "users")
    users = args["users"]
    _require_client_users("ClickHouse", users, r"[a-z][a-z0-9-]*")
    powerful = [name for name, user in users.items()
                if not user.grants or any(re.match(r"(?i)\s*(ALL|ACCESS MANAGEMENT)\b", g) for g in user.grants)]
    if powerful:
        raise ComponentArgsError(f"ClickHouse: users {powerful} need grants of their own, never ALL or ACCESS "
                                 "MANAGEMENT")
    names = sorted(users)
    per_task_dns = args.get("per_task_dns", False)
    content = pulumi.Output.all(*(users[name].password for name in names)).apply(
        lambda passwords: clickhouse_users_xml(
            {name: (password, users[name]) for name, password in zip(names, passwords, strict=True)}, per_task_dns))
    return validate_spec(ContainerSpec(
        service="clickhouse", role="ds", image=args["image"], networks=networks_of("clickhouse"),
        memory_mb=args["memory_mb"], cpus=args["cpus"],
        # No CLICKHOUSE_USER nor CLICKHOUSE_PASSWORD: with either the image's entrypoint would write
        # users.d/default-user.xml, a user of every right, any address (<ip>::/0) and a plaintext password
        # (ClickHouse/docker-library server/24.8.*/entrypoint.sh). Without them it leaves `default` to the users.d
        # file, and creates CLICKHOUSE_DB through it from loopback at the first start.
        env={"CLICKHOUSE_DB": CLICKHOUSE_DATABASE, "CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT": "0"},
        files=[FileSpec("/etc/clickhouse-server/config.d/prometheus.xml", CLICKHOUSE_METRICS),
               FileSpec("/etc/clickhouse-server/config.d/dns.xml", CLICKHOUSE_DNS),
               FileSpec(CLICKHOUSE_USERS_PATH, content, secret=True)],
        healthcheck=Healthcheck(["CMD-SHELL", "wget -qO- http://127.0.0.1:8123/ping | grep -q Ok"]),
        volumes=[VolumeMount("clickhouse-data", "/var/lib/clickhouse"),
                 VolumeMount("clickhouse-logs", "/var/log/clickhouse-server")],
        ulimits={"nofile": 262144},
        read_only=False, cap_add=CLICKHOUSE_CAPS, stop_grace_seconds=60,
        service_group=CLICKHOUSE_GID,
    ))


class DataStore(pulumi.ComponentResource):
    """Deploys the specs a data store is made of; `host` and `port` are what clients connect to."""

    host: pulumi.Output[str]
    port: pulumi.Output[int]

    def __init__(self, token: str, name: str, specs: list[ContainerSpec], args: StoreArgs, port: int,
                 opts: pulumi.ResourceOptions | None) -> None:
        super().__init__(token, name, {}, opts)
        self.deployments = []
        # What the store itself waits for (the image the stack builds for it) its containers wait for too: an
        # option of the component alone would not hold back its children, nor the runtime's image lookups.
        given = (opts.depends_on if opts else None) or []
        waits_for = list(given) if isinstance(given, list | tuple) else [given]
        for spec in specs:
            # Each store's containers wait until healthy (the runtime's `wait`), in order.
            after = [*waits_for, *(c for deployment in self.deployments for c in deployment.containers)]
            self.deployments.append(args["runtime"].deploy(spec, dict(args["networks"]), name, self, depends_on=after))
        # What a client waits for: every container of the store, each healthy once created.
        self.containers = [c for deployment in self.deployments for c in deployment.containers]
        self.host = pulumi.Output.from_input(specs[-1].service)
        self.port = pulumi.Output.from_input(port)
        self.register_outputs({"host": self.host, "port": self.port})


class Postgres(DataStore):
    def __init__(self, name: str, args: PostgresArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("platform:index:Postgres", name, [postgres_spec(args)], args, 5432, opts)


class Redis(DataStore):
    def __init__(self, name: str, args: RedisArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("platform:index:Redis", name, [redis_spec(args)], args, 6379, opts)


class Kafka(DataStore):
    def __init__(self, name: str, args: KafkaArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("platform:index:Kafka", name, kafka_specs(args), args, 9092, opts)


class ClickHouse(DataStore):
    """`address`: the name its clients connect to, so that ClickHouse sees each client's own address (on Swarm
    `tasks.clickhouse`: a connection to the service's virtual IP reaches it from the network's load balancer,
    which rewrites the source to its own address: moby libnetwork/service_linux.go configureFWMark, SNAT)."""

    def __init__(self, name: str, args: ClickHouseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("platform:index:ClickHouse", name, [clickhouse_spec(args)], args, 8123, opts)
        self.address = self.deployments[0].every_instance
