"""Kafka's start script run for real by /bin/sh, against stand-ins for the image's launcher and for
kafka-topics.sh (no Kafka can be had on this machine: no registry, no Debian package). The stand-in tool keeps
each topic's partition count in a file and behaves as Kafka's TopicCommand does
(tools/src/main/java/org/apache/kafka/tools/TopicCommand.java): `--create --if-not-exists` leaves an existing
topic alone, `--alter --partitions` only raises the count (the broker refuses a lower or equal one), and
`--describe` prints `PartitionCount:` on the topic's first line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.datastores import (
    JVM_NON_HEAP_MB,
    KAFKA_ADMIN_CONFIG,
    KAFKA_START_SCRIPT,
    MIN_KAFKA_HEAP_MB,
    MIN_KAFKA_MEMORY_MB,
    kafka_heap_mb,
    kafka_specs,
    kafka_start_script,
)
from components.kafka import TOPICS_ENV, format_topics, parse_topics
from components.spec import ComponentArgsError
from infra.cli import REPO_ROOT
from infra.mockrun import load_project, run_program
from infra.settings import ENVIRONMENT_DEFAULTS, SettingsError, parse_settings
from tests.helpers import env_of, files_of, reveal, running_containers

KAFKA_TOPICS = r"""#!/bin/sh
# Stand-in kafka-topics.sh: topic state in $STATE/topics/<name>.
set -eu
echo "heap=$KAFKA_HEAP_OPTS opts=$KAFKA_OPTS args=$*" >> "$STATE/calls"
action="" topic="" partitions="" if_not_exists="" config=""
while [ $# -gt 0 ]; do
    case "$1" in
        --bootstrap-server) shift ;;
        --command-config) config="$2"; shift ;;
        --list|--create|--describe|--alter) action="$1" ;;
        --if-not-exists) if_not_exists=1 ;;
        --topic) topic="$2"; shift ;;
        --partitions) partitions="$2"; shift ;;
        --replication-factor) shift ;;
        *) echo "unknown option $1" >&2; exit 1 ;;
    esac
    shift
done
[ "$config" = "$EXPECTED_CONFIG" ] || { echo "no admin login given" >&2; exit 1; }
[ -f "$STATE/broker-up" ] || { echo "broker not available" >&2; exit 1; }
file="$STATE/topics/$topic"
case "$action" in
    --list) ls "$STATE/topics" ;;
    --create)
        [ ! -f "$STATE/refuse-create" ] || { echo "Error while executing topic command" >&2; exit 1; }
        if [ -f "$file" ]; then
            [ -n "$if_not_exists" ] || { echo "Topic '$topic' already exists." >&2; exit 1; }
        else
            echo "$partitions" > "$file"; echo "Created topic $topic."
        fi ;;
    --describe)
        printf 'Topic: %s\tTopicId: x\tPartitionCount: %s\tReplicationFactor: 1\tConfigs: \n' "$topic" "$(cat "$file")"
        printf '\tTopic: %s\tPartition: 0\tLeader: 1\tReplicas: 1\tIsr: 1\n' "$topic" ;;
    --alter)
        have="$(cat "$file")"
        [ "$partitions" -gt "$have" ] || { echo "The number of partitions for a topic can only be increased." >&2; exit 1; }
        echo "$partitions" > "$file" ;;
esac
"""

LAUNCHER = r"""#!/bin/sh
# Stand-in for the image's launcher: the broker answers after a moment and stops on SIGTERM.
trap 'touch "$STATE/broker-terminated"; exit 0' TERM
sleep 1
touch "$STATE/broker-up"
while :; do sleep 0.1; done
"""


@dataclass
class Broker:
    state: Path
    script: Path
    ready: Path

    def topics(self) -> dict[str, int]:
        return {f.name: int(f.read_text()) for f in (self.state / "topics").iterdir()}

    def start(self, topics: dict[str, int]) -> subprocess.Popen:
        env = {"PATH": os.environ["PATH"], "STATE": str(self.state), "EXPECTED_CONFIG": KAFKA_ADMIN_CONFIG,
               TOPICS_ENV: format_topics(topics), "KAFKA_HEAP_OPTS": "-Xmx1024m -Xms1024m",
               "KAFKA_OPTS": "-Djava.security.auth.login.config=/etc/platform/secrets/kafka_server_jaas.conf"}
        return subprocess.Popen(["/bin/sh", str(self.script)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def wait_ready(self, process: subprocess.Popen, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.exists():
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "topics never ready"
            time.sleep(0.1)


@pytest.fixture
def broker(tmp_path) -> Broker:
    home, state = tmp_path / "kafka", tmp_path / "state"
    (home / "bin").mkdir(parents=True)
    (state / "topics").mkdir(parents=True)
    tool, launcher = home / "bin" / "kafka-topics.sh", tmp_path / "run"
    tool.write_text(KAFKA_TOPICS)
    launcher.write_text(LAUNCHER)
    for path in (tool, launcher):
        path.chmod(0o755)
    script = tmp_path / "start-kafka.sh"
    ready = tmp_path / "topics-ready"
    script.write_text(kafka_start_script(kafka_home=str(home), launcher=str(launcher), ready=str(ready)))
    return Broker(state, script, ready)


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
    assert calls and all(call.startswith("heap=-Xmx128m opts= args=") for call in calls)
    output = stop(process)
    assert process.returncode == 0 and (broker.state / "broker-terminated").exists()
    assert "platform: topics ready: jobs:12 logs:6" in output


def test_fewer_partitions_are_raised_and_more_are_kept(broker):
    (broker.state / "topics" / "jobs").write_text("4\n")
    (broker.state / "topics" / "logs").write_text("9\n")
    process = broker.start({"jobs": 12, "logs": 6})
    broker.wait_ready(process)
    assert broker.topics() == {"jobs": 12, "logs": 9}
    output = stop(process)
    assert "topic jobs raised from 4 to 12 partitions" in output
    assert "topic logs keeps its 9 partitions (6 declared; Kafka never lowers them)" in output


def test_a_failed_topic_setup_stops_the_container_never_healthy(broker):
    (broker.state / "refuse-create").touch()
    process = broker.start({"jobs": 12})
    assert process.wait(timeout=20) != 0
    assert not broker.ready.exists()
    deadline = time.monotonic() + 5
    while not (broker.state / "broker-terminated").exists():
        assert time.monotonic() < deadline, "the broker outlived the failed setup"
        time.sleep(0.1)


def test_sigterm_reaches_the_broker_while_it_starts(broker):
    process = broker.start({"jobs": 1})
    time.sleep(0.3)
    stop(process)
    assert (broker.state / "broker-terminated").exists()


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
        kafka_specs({"runtime": object(), "networks": {"data": None}, "image": "apache/kafka:3.8.0", "memory_mb": 512,
                     "cpus": 0.5, "password": "kafka-s3cret"})
    # The settings say it first, naming their key.
    raw = {"environment": "dev", "public_hosts": ["orchestration.example.com"], "registry": "registry.internal/x",
           "app_version": "1.0.0", "monitoring": {"email": {"to": "a@example.com", "from_address": "b@example.com",
                                                            "smarthost": "smtp.example.com:587"}},
           "data": {"kafka": {"memory_mb": 700, "cpus": 0.5}}}
    with pytest.raises(SettingsError, match=r"platform:settings.data.kafka: memory_mb 700 is below the minimum 768"):
        parse_settings(raw, "Pulumi.dev.yaml")
