"""Stand-in for the Apache Kafka 3.8.0 broker and its topic tool (no Kafka in Debian, no registry here).

`broker`: what the apache/kafka image's launcher (/etc/kafka/docker/run) starts, reduced to what the stack
relies on: one SASL/PLAIN listener (KAFKA_LISTENERS, the listener that is not a controller's) that accepts the
users the JAAS file named in KAFKA_OPTS declares (`user_<name>="<password>"`, PlainLoginModule), and topics kept
in KAFKA_LOG_DIRS as one `<topic>-<partition>` directory per partition, as the real log manager lays them out.
`topics`: kafka-topics.sh with TopicCommand's options and semantics (tools/src/main/java/org/apache/kafka/tools/
TopicCommand.java 3.8.0) and the controller's refusals (metadata/.../ReplicationControlManager.java).
`acls`: kafka-acls.sh's --add and --list (AclCommand: --allow-principal, --operation, --producer, --consumer,
--topic, --group, --cluster), kept by the broker; only a super user (KAFKA_SUPER_USERS) may add one, as
StandardAuthorizer requires ALTER on the cluster. The ACLs are recorded and listed, not enforced: no records.
Client and broker speak one JSON object per line; every request carries the client's SASL credential.
No records, no consumer groups: what the stack's start script, healthcheck and exporter use, nothing more.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import socketserver
import sys
from pathlib import Path

TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")
DEFAULT_CLUSTER_ID = "5L6g3nShT-eMCtK--X86sw"  # docker/resources/common-scripts/configureDefaults
CLEAN_SHUTDOWN = ".kafka_cleanshutdown"  # core/src/main/scala/kafka/log/LogManager.scala


class KafkaError(Exception):
    pass


# ---- broker ---------------------------------------------------------------------------------------------------

def listener_address(env: dict[str, str]) -> tuple[str, int]:
    controllers = set(env.get("KAFKA_CONTROLLER_LISTENER_NAMES", "").split(","))
    for listener in env.get("KAFKA_LISTENERS", "PLAINTEXT://:9092").split(","):
        name, _, address = listener.partition("://")
        if name not in controllers:
            host, _, port = address.rpartition(":")
            return host or "0.0.0.0", int(port)
    raise SystemExit("kafka: KAFKA_LISTENERS names no broker listener")


def jaas_users(env: dict[str, str]) -> dict[str, str]:
    """The users the broker's KafkaServer login accepts; the JAAS file is named in KAFKA_OPTS."""
    match = re.search(r"-Djava\.security\.auth\.login\.config=(\S+)", env.get("KAFKA_OPTS", ""))
    if not match:
        raise SystemExit("kafka: Could not find a 'KafkaServer' entry in the JAAS configuration. "
                         "System property 'java.security.auth.login.config' is not set")
    text = Path(match.group(1)).read_text()
    section = re.search(r"KafkaServer\s*\{(.*?)\};", text, re.DOTALL)
    if not section or "PlainLoginModule" not in section.group(1):
        raise SystemExit(f"kafka: {match.group(1)}: no KafkaServer section with PlainLoginModule")
    return dict(re.findall(r'user_([^=\s]+)\s*=\s*"([^"]*)"', section.group(1)))


class TopicStore:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir

    def partitions(self, topic: str) -> int:
        return sum(1 for path in self.log_dir.glob(f"{glob_escape(topic)}-*")
                   if path.is_dir() and path.name.rpartition("-")[2].isdigit() and path.name.rpartition("-")[0] == topic)

    def topics(self) -> dict[str, int]:
        names = {path.name.rpartition("-")[0] for path in self.log_dir.iterdir()
                 if path.is_dir() and path.name.rpartition("-")[2].isdigit()}
        return {name: self.partitions(name) for name in sorted(names)}

    def add_partitions(self, topic: str, start: int, end: int) -> None:
        for partition in range(start, end):
            (self.log_dir / f"{topic}-{partition}").mkdir()

    def handle(self, request: dict) -> dict:
        op, topic = request.get("op"), request.get("topic", "")
        if op == "metadata":
            return {"brokers": 1, "topics": self.topics()}
        if not TOPIC_NAME.fullmatch(topic) or topic in (".", ".."):
            raise KafkaError(f"org.apache.kafka.common.errors.InvalidTopicException: Topic name \"{topic}\" is illegal, "
                             "it contains a character other than ASCII alphanumerics, '.', '_' and '-'")
        have = self.partitions(topic)
        if op == "create":
            if have:
                raise KafkaError(f"org.apache.kafka.common.errors.TopicExistsException: Topic '{topic}' already exists.")
            if request["replication_factor"] > 1:
                raise KafkaError("org.apache.kafka.common.errors.InvalidReplicationFactorException: Unable to replicate "
                                 f"the partition {request['replication_factor']} time(s): The target replication "
                                 "factor cannot be reached because only 1 broker(s) are registered.")
            self.add_partitions(topic, 0, request["partitions"])
            print(f"[Controller 1] CreateTopics result(s): {topic} with {request['partitions']} partition(s): SUCCESS",
                  flush=True)
            return {}
        if not have:
            raise KafkaError(f"org.apache.kafka.common.errors.UnknownTopicOrPartitionException: "
                             f"This server does not host this topic-partition ({topic}).")
        if op == "alter":
            wanted = request["partitions"]
            if wanted == have:
                raise KafkaError(f"org.apache.kafka.common.errors.InvalidPartitionsException: "
                                 f"Topic already has {have} partition(s).")
            if wanted < have:
                raise KafkaError(f"org.apache.kafka.common.errors.InvalidPartitionsException: The topic {topic} "
                                 f"currently has {have} partition(s); {wanted} would not be an increase.")
            self.add_partitions(topic, have, wanted)
            return {}
        if op == "describe":
            return {"partitions": have}
        raise KafkaError(f"unknown request {op!r}")


ACL_FILE = "__cluster_metadata-acls.json"
"""Where the stand-in keeps ACLs (the real broker: in its metadata log, __cluster_metadata-0)."""


def acl_store(log_dir: Path, request: dict, super_user: bool) -> dict:
    path = log_dir / ACL_FILE
    acls = json.loads(path.read_text()) if path.exists() else []
    if request["op"] == "acl_list":
        return {"acls": acls}
    if not super_user:
        return {"error": "org.apache.kafka.common.errors.ClusterAuthorizationException: Cluster authorization failed."}
    acls += [binding for binding in request["bindings"] if binding not in acls]
    path.write_text(json.dumps(acls))
    return {}


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def broker() -> None:
    env = dict(os.environ)
    users = jaas_users(env)
    log_dir = Path(env.get("KAFKA_LOG_DIRS", "/tmp/kraft-combined-logs").split(",")[0])
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / CLEAN_SHUTDOWN).unlink(missing_ok=True)
    # What `kafka-storage.sh format` writes (the launcher formats the storage at every start).
    (log_dir / "meta.properties").write_text(
        f"cluster.id={env.get('CLUSTER_ID', DEFAULT_CLUSTER_ID)}\nnode.id={env.get('KAFKA_NODE_ID', '1')}\nversion=1\n")
    store = TopicStore(log_dir)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            supers = {p.strip()[len("User:"):] for p in env.get("KAFKA_SUPER_USERS", "").split(";")
                      if p.strip().startswith("User:")}
            for line in self.rfile:
                try:
                    request = json.loads(line)
                except ValueError:
                    return  # not our protocol (the healthcheck's bare connection): the real broker drops it too
                if users.get(request.get("username")) != request.get("password") or "username" not in request:
                    reply = {"error": "org.apache.kafka.common.errors.SaslAuthenticationException: "
                                      "Authentication failed: Invalid username or password"}
                elif request.get("op", "").startswith("acl_"):
                    reply = acl_store(log_dir, request, request["username"] in supers)
                else:
                    try:
                        reply = store.handle(request)
                    except KafkaError as exc:
                        reply = {"error": str(exc)}
                self.wfile.write(json.dumps(reply).encode() + b"\n")

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    server = Server(listener_address(env), Handler)

    def stop(*_: object) -> None:
        (log_dir / CLEAN_SHUTDOWN).write_text("")
        print("[KafkaRaftServer nodeId=1] shut down completed (stand-in)", flush=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"[KafkaRaftServer nodeId={env.get('KAFKA_NODE_ID', '1')}] Kafka Server started "
          f"(stand-in, listening on {server.server_address[0]}:{server.server_address[1]}, log dir {log_dir})",
          flush=True)
    server.serve_forever()


# ---- kafka-topics.sh ------------------------------------------------------------------------------------------

def client_login(config_file: str | None) -> dict[str, str]:
    """The SASL/PLAIN credential of an admin client's properties file (sasl.jaas.config)."""
    if not config_file:
        return {}
    properties = dict(line.split("=", 1) for line in Path(config_file).read_text().splitlines()
                      if "=" in line and not line.lstrip().startswith("#"))
    if properties.get("security.protocol", "PLAINTEXT") != "SASL_PLAINTEXT" or properties.get("sasl.mechanism") != "PLAIN":
        return {}
    jaas = properties.get("sasl.jaas.config", "")
    login = dict(re.findall(r'(username|password)\s*=\s*"([^"]*)"', jaas))
    return login


def call(bootstrap: str, login: dict[str, str], request: dict) -> dict:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(json.dumps({**login, **request}).encode() + b"\n")
            reply = connection.makefile().readline()
    except OSError as exc:
        raise KafkaError(f"org.apache.kafka.common.errors.TimeoutException: Timed out waiting for a node "
                         f"assignment ({bootstrap}: {exc})") from None
    if not reply:
        raise KafkaError("org.apache.kafka.common.errors.TimeoutException: the broker closed the connection")
    answer = json.loads(reply)
    if "error" in answer:
        raise KafkaError(answer["error"])
    return answer


def topics(argv: list[str]) -> int:
    actions = {"--list", "--create", "--describe", "--alter", "--delete"}
    with_value = {"--bootstrap-server", "--command-config", "--topic", "--partitions", "--replication-factor"}
    flags = {"--if-not-exists", "--if-exists"}
    options: dict[str, str] = {}
    chosen: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg in actions:
            chosen.append(arg)
        elif arg in flags:
            options[arg] = "true"
        elif arg in with_value:
            options[arg] = next(args, "")
        else:
            print(f"Exception in thread \"main\" joptsimple.UnrecognizedOptionException: {arg.lstrip('-')} is not a "
                  "recognized option", file=sys.stderr)
            return 1
    try:
        if len(chosen) != 1:
            raise KafkaError("Command must include exactly one action: --list, --describe, --create, --alter or --delete")
        if not options.get("--bootstrap-server"):
            raise KafkaError("--bootstrap-server must be specified")
        action, topic = chosen[0], options.get("--topic", "")
        if action != "--list" and not topic:
            raise KafkaError(f"Missing required argument \"[topic]\" for {action}")
        bootstrap, login = options["--bootstrap-server"], client_login(options.get("--command-config"))
        if action == "--list":
            for name in call(bootstrap, login, {"op": "metadata"})["topics"]:
                print(name)
        elif action == "--create":
            partitions = int(options.get("--partitions", "1"))
            replication = int(options.get("--replication-factor", "1"))
            if partitions < 1:
                raise KafkaError("The partitions must be greater than 0")
            if not 1 <= replication <= 32767:
                raise KafkaError("The replication factor must be between 1 and 32767 inclusive")
            try:
                call(bootstrap, login, {"op": "create", "topic": topic, "partitions": partitions,
                                        "replication_factor": replication})
                print(f"Created topic {topic}.")
            except KafkaError as exc:
                if not (options.get("--if-not-exists") and "TopicExistsException" in str(exc)):
                    raise
        elif action == "--describe":
            try:
                count = call(bootstrap, login, {"op": "describe", "topic": topic})["partitions"]
            except KafkaError as exc:
                if "UnknownTopicOrPartition" in str(exc):
                    raise KafkaError(f"Topic '{topic}' does not exist as expected") from None
                raise
            print(f"Topic: {topic}\tPartitionCount: {count}\tReplicationFactor: 1\tConfigs: ")
            for partition in range(count):
                print(f"\tTopic: {topic}\tPartition: {partition}\tLeader: 1\tReplicas: 1\tIsr: 1")
        elif action == "--alter":
            if "--partitions" not in options:
                raise KafkaError("--partitions is required to alter a topic (the stand-in alters nothing else)")
            call(bootstrap, login, {"op": "alter", "topic": topic, "partitions": int(options["--partitions"])})
        else:
            raise KafkaError("--delete: topic deletion is not part of this stand-in")
    except (KafkaError, ValueError) as exc:
        print(f"Error while executing topic command : {exc}")
        return 1
    return 0


# ---- kafka-acls.sh --------------------------------------------------------------------------------------------

def acls(argv: list[str]) -> int:
    many = {"--allow-principal", "--operation", "--topic", "--group"}
    single = {"--bootstrap-server", "--command-config"}
    flags = {"--add", "--list", "--producer", "--consumer", "--cluster"}
    options: dict[str, list[str]] = {}
    args = iter(argv)
    for arg in args:
        if arg in many or arg in single:
            options.setdefault(arg, []).append(next(args, ""))
        elif arg in flags:
            options[arg] = ["true"]
        else:
            print(f"Exception in thread \"main\" joptsimple.UnrecognizedOptionException: {arg.lstrip('-')} is not a "
                  "recognized option", file=sys.stderr)
            return 1
    try:
        if ("--add" in options) == ("--list" in options):
            raise KafkaError("Command must include exactly one action: --list, --add (the stand-in has no --remove)")
        bootstrap = options.get("--bootstrap-server", [""])[-1]
        if not bootstrap:
            raise KafkaError("--bootstrap-server must be specified")
        login = client_login(options.get("--command-config", [None])[-1])
        if "--list" in options:
            for acl in call(bootstrap, login, {"op": "acl_list"})["acls"]:
                print(f"(principal={acl['principal']}, resource={acl['resource']}, operation={acl['operation']}, "
                      "permissionType=ALLOW)")
            return 0
        resources = [("TOPIC", t) for t in options.get("--topic", [])] + [("GROUP", g) for g in options.get("--group", [])]
        resources += [("CLUSTER", "kafka-cluster")] if "--cluster" in options else []
        operations = {(kind, op.upper()) for kind, _ in resources for op in options.get("--operation", [])}
        if "--producer" in options:
            operations |= {("TOPIC", op) for op in ("WRITE", "DESCRIBE", "CREATE")}
        if "--consumer" in options:
            if not options.get("--group"):
                raise KafkaError("With --consumer you must specify a --topic and a --group")
            operations |= {("TOPIC", "READ"), ("TOPIC", "DESCRIBE"), ("GROUP", "READ")}
        if not options.get("--allow-principal") or not resources or not operations:
            raise KafkaError("You must specify one of: --allow-principal, a resource and an --operation")
        bindings = [{"principal": principal, "resource": f"{kind}:{name}", "operation": op}
                    for principal in options["--allow-principal"] for kind, name in resources
                    for op_kind, op in sorted(operations) if op_kind == kind]
        call(bootstrap, login, {"op": "acl_add", "bindings": bindings})
    except KafkaError as exc:
        print(f"Error while executing ACL command: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["broker"]:
        broker()
    elif sys.argv[1:2] == ["topics"]:
        sys.exit(topics(sys.argv[2:]))
    elif sys.argv[1:2] == ["acls"]:
        sys.exit(acls(sys.argv[2:]))
    else:
        sys.exit("usage: kafka_standin.py broker | topics [kafka-topics.sh options] | acls [kafka-acls.sh options]")
