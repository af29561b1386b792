"""Kafka's start script run for real by /bin/sh, against the Kafka stand-in image's broker and kafka-topics.sh
(images/standins/kafka/kafka_standin.py; no Kafka can be had on this machine: no registry, no Debian package).
The stand-in keeps each topic as partition directories in the log dir and behaves as Kafka's TopicCommand does
(tools/src/main/java/org/apache/kafka/tools/TopicCommand.java): `--create --if-not-exists` leaves an existing
topic alone, `--alter --partitions` only raises the count (the controller refuses a lower or equal one), and
`--describe` prints `PartitionCount:` on the topic's first line; the broker accepts only the users of its JAAS
file, so the admin tool works only with the admin login."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from platform_infra.components.datastores import (
    JVM_NON_HEAP_MB,
    KAFKA_ADMIN_CONFIG,
    KAFKA_START_SCRIPT,
    KAFKA_USER,
    MIN_KAFKA_HEAP_MB,
    MIN_KAFKA_MEMORY_MB,
    TOPIC_TOOL_HEAP_MB,
    KafkaClient,
    kafka_heap_mb,
    kafka_specs,
    kafka_start_script,
)
from platform_infra.components.kafka import (
    TOPICS_ENV,
    KafkaAccess,
    acl_arguments,
    format_topics,
    parse_topics,
)
from platform_infra.components.spec import ComponentArgsError
from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import load_project, run_program
from platform_infra.infra.settings import ENVIRONMENT_DEFAULTS, SettingsError, parse_settings
from tests.helpers import env_of, files_of, reveal, running_containers

STANDIN = Path(__file__).resolve().parents[1] / "images" / "standins" / "kafka" / "kafka_standin.py"
PASSWORD = "s3cret-admin"
_spec = importlib.util.spec_from_file_location("kafka_standin", STANDIN)
kafka_standin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kafka_standin)

# The image's kafka-topics.sh, behind a wrapper that records the environment each call gets.
TOOL = f"""#!/bin/sh
echo "heap=$KAFKA_HEAP_OPTS opts=$KAFKA_OPTS args=$*" >> "$STATE/calls"
exec {sys.executable} {STANDIN} topics "$@"
"""
ACL_TOOL = f"""#!/bin/sh
exec {sys.executable} {STANDIN} acls "$@"
"""
ACCESS = {"orchestrator": KafkaAccess(produces=("jobs",)),
          "worker": KafkaAccess(produces=("logs",), consumes=("jobs",), groups=("job-workers",)),
          "kafka-exporter": KafkaAccess(monitors=True)}
LAUNCHER = f"""#!/bin/sh
exec {sys.executable} {STANDIN} broker
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Broker:
    state: Path
    logs: Path
    script: Path
    ready: Path
    port: int
    jaas: Path

    def topics(self) -> dict[str, int]:
        return kafka_standin.TopicStore(self.logs).topics()

    def start(self, topics: dict[str, int]) -> subprocess.Popen:
        env = {"PATH": os.environ["PATH"], "STATE": str(self.state), TOPICS_ENV: format_topics(topics),
               "KAFKA_SUPER_USERS": f"User:{KAFKA_USER}",
               "KAFKA_HEAP_OPTS": "-Xmx1024m -Xms1024m", "KAFKA_LOG_DIRS": str(self.logs),
               "KAFKA_LISTENERS": f"BROKER://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:9093",
               "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
               "KAFKA_OPTS": f"-Djava.security.auth.login.config={self.jaas}"}
        return subprocess.Popen(["/bin/sh", str(self.script)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def terminated(self) -> bool:
        return (self.logs / kafka_standin.CLEAN_SHUTDOWN).exists()

    def wait_ready(self, process: subprocess.Popen, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.exists():
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "topics never ready"
            time.sleep(0.1)


def _login(password: str, accepted: str = "") -> str:
    """The JAAS line platform_infra.components.datastores.kafka_jaas writes."""
    return (f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{KAFKA_USER}" '
            f'password="{password}"{accepted};')


def _admin_config(path: Path, password: str) -> Path:
    path.write_text(f"security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\nsasl.jaas.config={_login(password)}\n")
    return path


@pytest.fixture
def broker(tmp_path) -> Broker:
    home, state, logs = tmp_path / "kafka", tmp_path / "state", tmp_path / "logs"
    (home / "bin").mkdir(parents=True)
    state.mkdir()
    logs.mkdir()
    tool, acl_tool, launcher = home / "bin" / "kafka-topics.sh", home / "bin" / "kafka-acls.sh", tmp_path / "run"
    tool.write_text(TOOL)
    acl_tool.write_text(ACL_TOOL)
    launcher.write_text(LAUNCHER)
    for path in (tool, acl_tool, launcher):
        path.chmod(0o755)
    jaas = tmp_path / "kafka_server_jaas.conf"
    accepted = f' user_{KAFKA_USER}="{PASSWORD}" user_worker="worker-s3cret"'
    jaas.write_text(f"KafkaServer {{\n  {_login(PASSWORD, accepted)}\n}};\n")
    port = _free_port()
    script = tmp_path / "start-kafka.sh"
    ready = tmp_path / "topics-ready"
    admin = _admin_config(tmp_path / "kafka_admin.properties", PASSWORD)
    acls = [arguments for user, access in ACCESS.items() for arguments in acl_arguments(user, access)]
    script.write_text(kafka_start_script(acls=acls, kafka_home=str(home), launcher=str(launcher), ready=str(ready),
                                         bootstrap=f"127.0.0.1:{port}").replace(KAFKA_ADMIN_CONFIG, str(admin)))
    return Broker(state, logs, script, ready, port, jaas)


def stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=10)
    return output


def test_missing_topics_are_created_with_their_partitions_by_the_admin_login(broker):
    process = broker.start({"jobs": 12, "logs": 6})
    broker.wait_ready(process)
    assert broker.topics() == {"jobs": 12, "logs": 6}
    calls = (broker.state / "calls").read_text().splitlines()
    # The admin tool gets a small heap of its own and not the broker's JAAS login; the stand-in refuses any
    # call without the admin login file.
    assert calls and all(call.startswith(f"heap=-Xmx{TOPIC_TOOL_HEAP_MB}m opts= args=") for call in calls)
    output = stop(process)
    assert process.returncode == 0 and broker.terminated()
    assert "platform: topics ready: jobs:12 logs:6" in output


def test_fewer_partitions_are_raised_and_more_are_kept(broker):
    store = kafka_standin.TopicStore(broker.logs)
    store.add_partitions("jobs", 0, 4)
    store.add_partitions("logs", 0, 9)
    process = broker.start({"jobs": 12, "logs": 6})
    broker.wait_ready(process)
    assert broker.topics() == {"jobs": 12, "logs": 9}
    output = stop(process)
    assert "topic jobs raised from 4 to 12 partitions" in output
    assert "topic logs keeps its 9 partitions (6 declared; Kafka never lowers them)" in output


def test_a_failed_topic_setup_stops_the_container_never_healthy(broker):
    # The controller refuses the name (InvalidTopicException), so --create fails.
    process = broker.start({"jobs/v2": 12})
    assert process.wait(timeout=20) != 0
    assert not broker.ready.exists()
    deadline = time.monotonic() + 5
    while not broker.terminated():
        assert time.monotonic() < deadline, "the broker outlived the failed setup"
        time.sleep(0.1)


def test_sigterm_reaches_the_broker_while_it_starts(broker):
    process = broker.start({"jobs": 1})
    time.sleep(0.3)
    stop(process)
    assert broker.terminated()


def test_the_broker_refuses_a_wrong_admin_password(broker, tmp_path):
    process = broker.start({"jobs": 1})
    try:
        broker.wait_ready(process)
        tool = [sys.executable, str(STANDIN), "topics", "--bootstrap-server", f"127.0.0.1:{broker.port}"]
        right = _admin_config(tmp_path / "right.properties", PASSWORD)
        wrong = _admin_config(tmp_path / "wrong.properties", "not-the-password")
        listed = subprocess.run([*tool, "--command-config", str(right), "--list"], check=False, capture_output=True, text=True)
        assert (listed.returncode, listed.stdout) == (0, "jobs\n")
        for config in (["--command-config", str(wrong)], []):
            refused = subprocess.run([*tool, *config, "--list"], check=False, capture_output=True, text=True)
            assert refused.returncode == 1 and "Authentication failed" in refused.stdout, refused
    finally:
        stop(process)


def test_each_clients_acls_are_added_by_the_admin_before_ready_and_by_no_one_else(broker, tmp_path):
    """The start script's kafka-acls.sh calls (AclCommand: --producer is Write, Describe, Create on the topic;
    --consumer Read, Describe on the topic and Read on the group), recorded by the stand-in, which lets only a
    super user add one: a client's own login cannot grant itself more."""
    process = broker.start({"jobs": 1, "logs": 1})
    try:
        broker.wait_ready(process)
        tool = [sys.executable, str(STANDIN), "acls", "--bootstrap-server", f"127.0.0.1:{broker.port}"]
        admin = _admin_config(tmp_path / "admin.properties", PASSWORD)
        listed = subprocess.run([*tool, "--command-config", str(admin), "--list"], check=True, capture_output=True,
                                text=True).stdout.splitlines()
        granted = {(line.split("principal=User:")[1].split(",")[0], line.split("resource=")[1].split(",")[0],
                    line.split("operation=")[1].split(",")[0]) for line in listed}
        assert granted == {
            ("orchestrator", "TOPIC:jobs", "WRITE"), ("orchestrator", "TOPIC:jobs", "DESCRIBE"),
            ("orchestrator", "TOPIC:jobs", "CREATE"),
            ("worker", "TOPIC:logs", "WRITE"), ("worker", "TOPIC:logs", "DESCRIBE"), ("worker", "TOPIC:logs", "CREATE"),
            ("worker", "TOPIC:jobs", "READ"), ("worker", "TOPIC:jobs", "DESCRIBE"), ("worker", "GROUP:job-workers", "READ"),
            ("kafka-exporter", "TOPIC:*", "DESCRIBE"), ("kafka-exporter", "GROUP:*", "DESCRIBE"),
            ("kafka-exporter", "CLUSTER:kafka-cluster", "DESCRIBE"),
        }
        worker = tmp_path / "worker.properties"
        worker.write_text(admin.read_text().replace(f'username="{KAFKA_USER}" password="{PASSWORD}"',
                                                    'username="worker" password="worker-s3cret"'))
        refused = subprocess.run([*tool, "--command-config", str(worker), "--add", "--allow-principal", "User:worker",
                                  "--producer", "--topic", "jobs"], check=False, capture_output=True, text=True)
        assert refused.returncode == 1 and "ClusterAuthorizationException" in refused.stdout, refused
    finally:
        stop(process)


def test_the_topic_list_round_trips():
    topics = {"jobs": 12, "logs": 6, "job.results-v2": 3}
    assert parse_topics(format_topics(topics)) == topics


def _heap_mb(options: str) -> int:
    (value,) = re.findall(r"-Xmx(\d+)m", options)
    return int(value)


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_the_broker_and_the_topic_tool_fit_the_kafka_limit_of_every_environment(stack):
    # Read from the plan of the stack (each stack file keeps its environment's defaults for Kafka): the limit
    # the container gets, the broker's heap in its env, the tool's heap in the start script it is given.
    run = run_program(load_project(REPO_ROOT, stack), stack)
    kafka = running_containers(run.resources)["kafka"]
    limit_mb = kafka["memory"]
    assert limit_mb == ENVIRONMENT_DEFAULTS[stack]["data"]["kafka"]["memory_mb"]
    broker = _heap_mb(env_of(kafka)["KAFKA_HEAP_OPTS"])
    script = reveal(files_of(run.resources, "kafka")[KAFKA_START_SCRIPT]["content"])
    tool = _heap_mb(re.search(r"KAFKA_HEAP_OPTS=(\S+) ", script).group(1))
    # Beside each heap a JVM holds metaspace, code cache, thread stacks, GC structures: >= 160 MiB each.
    assert JVM_NON_HEAP_MB >= 160
    assert broker + tool + 2 * JVM_NON_HEAP_MB <= limit_mb, (broker, tool, limit_mb)
    assert broker >= MIN_KAFKA_HEAP_MB and broker <= limit_mb // 2


def test_a_kafka_limit_too_small_for_two_jvms_is_refused():
    assert kafka_heap_mb(MIN_KAFKA_MEMORY_MB) == MIN_KAFKA_HEAP_MB
    with pytest.raises(ComponentArgsError, match=rf"^Kafka: memory_mb 767 is below the minimum {MIN_KAFKA_MEMORY_MB}"):
        kafka_heap_mb(767)
    with pytest.raises(ComponentArgsError, match="memory_mb 512 is below the minimum 768"):
        kafka_specs({"runtime": object(), "networks": {"store-kafka": None}, "image": "apache/kafka:3.8.0", "memory_mb": 512,
                     "cpus": 0.5, "password": "kafka-s3cret",
                     "clients": {"worker": KafkaClient("w", KafkaAccess(consumes=("jobs",), groups=("g",)))}})
    # The settings say it first, naming their key.
    raw = {"environment": "dev", "public_hosts": ["orchestration.example.com"], "registry": "registry.internal/x",
           "app_version": "1.0.0", "monitoring": {"email": {"to": "a@example.com", "from_address": "b@example.com",
                                                            "smarthost": "smtp.example.com:587"}},
           "data": {"kafka": {"memory_mb": 700, "cpus": 0.5}}}
    with pytest.raises(SettingsError, match=r"platform:settings.data.kafka: memory_mb 700 is below the minimum 768"):
        parse_settings(raw, "Pulumi.dev.yaml")
