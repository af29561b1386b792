#!/bin/sh
# Stand-in for Kafka's kafka-acls.sh (AclCommand): see /opt/kafka/standin/kafka_standin.py.
exec python3 /opt/kafka/standin/kafka_standin.py acls "$@"
