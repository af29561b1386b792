"""Kafka topic names and the topic list the Kafka container creates at start, shared with the policy pack."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

KAFKA_NAME = r"^[A-Za-z0-9._-]{1,249}$"
"""A topic or consumer group name (Kafka's legal characters and length)."""

# The variable naming the topics to create: not KAFKA_-prefixed, which the apache/kafka image would turn into
# a server.properties key (docker/resources/common-scripts/configure).
TOPICS_ENV = "PLATFORM_KAFKA_TOPICS"
WORKERS_TOPIC = "jobs"
"""The topic the workers consume (consumer group WORKERS_GROUP)."""
WORKERS_GROUP = "job-workers"
LOGS_TOPIC = "logs"
"""The topic the services write their logs to and the log-aggregator reads (consumer group LOGS_GROUP)."""
LOGS_GROUP = "log-aggregator"


@dataclass(frozen=True)
class KafkaAccess:
    """What one client's SASL user may do: the ACLs the Kafka container's start script adds for it."""

    produces: tuple[str, ...] = ()
    consumes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    """The consumer groups it reads its topics in."""
    monitors: bool = False
    """Describe every topic, group and the cluster, nothing more (the exporter)."""


def acl_arguments(user: str, access: KafkaAccess) -> list[list[str]]:
    """kafka-acls.sh arguments for `user` (AclCommand: --producer grants Write, Describe and Create on the topic,
    --consumer Read and Describe on the topic and Read on the group; kafka.apache.org/documentation/#security_authz)."""
    principal = ["--add", "--allow-principal", f"User:{user}"]
    found = [[*principal, "--producer", "--topic", topic] for topic in access.produces]
    found += [[*principal, "--consumer", "--topic", topic, *(arg for group in access.groups for arg in ("--group", group))]
              for topic in access.consumes]
    if access.monitors:
        found += [[*principal, "--operation", "Describe", *resource]
                  for resource in (["--topic", "*"], ["--group", "*"], ["--cluster"])]
    return found


def format_topics(topics: Mapping[str, int]) -> str:
    """`name:partitions` pairs, space-separated: what the start script reads, and the policy pack too."""
    return " ".join(f"{name}:{partitions}" for name, partitions in sorted(topics.items()))


def parse_topics(text: str) -> dict[str, int]:
    return {name: int(partitions) for name, _, partitions in (pair.rpartition(":") for pair in text.split())}
