"""Kafka topic names and the topic list the Kafka container creates at start, shared with the policy pack."""

from __future__ import annotations

from collections.abc import Mapping

KAFKA_NAME = r"^[A-Za-z0-9._-]{1,249}$"
"""A topic or consumer group name (Kafka's legal characters and length)."""

# The variable naming the topics to create: not KAFKA_-prefixed, which the apache/kafka image would turn into
# a server.properties key (docker/resources/common-scripts/configure).
TOPICS_ENV = "PLATFORM_KAFKA_TOPICS"
WORKERS_TOPIC = "jobs"
"""The topic the workers consume (consumer group job-workers)."""


def format_topics(topics: Mapping[str, int]) -> str:
    """`name:partitions` pairs, space-separated: what the start script reads, and the policy pack too."""
    return " ".join(f"{name}:{partitions}" for name, partitions in sorted(topics.items()))


def parse_topics(text: str) -> dict[str, int]:
    return {name: int(partitions) for name, _, partitions in (pair.rpartition(":") for pair in text.split())}
