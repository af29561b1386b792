#!/bin/sh
# Stand-in for Kafka's kafka-topics.sh (TopicCommand): see /opt/kafka/standin/kafka_standin.py.
exec python3 /opt/kafka/standin/kafka_standin.py topics "$@"
