"""Stand-in for danielqsj/kafka_exporter v1.9.0 (kafka_exporter.go), against the Kafka stand-in broker
(images/standins/kafka/kafka_standin.py: one JSON object per line, each carrying the SASL/PLAIN credential).

As upstream: the flags the stack passes, a fatal exit when the first connection to Kafka fails (NewExporter:
"Error Init Kafka Client"), metrics on --web.listen-address / --web.telemetry-path under the names of
kafka_exporter.go (kafka_brokers, kafka_broker_info, kafka_topic_partitions, kafka_topic_partition_*), and
/healthz. The broker stand-in keeps no records and no consumer groups, so the kafka_consumergroup_* series
(lag, current offset, members) are absent, as upstream reports them for a cluster without groups.
"""

from __future__ import annotations

import json
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FLAGS = {"kafka.server": "kafka:9092", "sasl.enabled": "false", "sasl.mechanism": "", "sasl.username": "",
         "sasl.password": "", "web.listen-address": ":9308", "web.telemetry-path": "/metrics"}
BOOLEAN = {"sasl.enabled"}


def parse(argv: list[str]) -> dict[str, str]:
    options = dict(FLAGS)
    args = iter(argv)
    for arg in args:
        name, equals, value = arg.lstrip("-").partition("=")
        if not arg.startswith("--") or name not in FLAGS:
            sys.exit(f"kafka_exporter: error: unknown long flag '{arg}'")
        options[name] = value if equals else ("true" if name in BOOLEAN else next(args, ""))
    return options


def metadata(options: dict[str, str]) -> dict:
    if options["sasl.enabled"] == "true" and options["sasl.mechanism"].lower() != "plain":
        raise RuntimeError(f"invalid sasl mechanism \"{options['sasl.mechanism']}\": the stand-in speaks plain only")
    login = ({"username": options["sasl.username"], "password": options["sasl.password"]}
             if options["sasl.enabled"] == "true" else {})
    host, _, port = options["kafka.server"].rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(json.dumps({**login, "op": "metadata"}).encode() + b"\n")
        reply = json.loads(connection.makefile().readline() or '{"error": "connection closed by the broker"}')
    if "error" in reply:
        raise RuntimeError(reply["error"])
    return reply


def exposition(options: dict[str, str], state: dict) -> str:
    families = {
        "kafka_brokers": ("Number of Brokers in the Kafka Cluster.", [({}, state["brokers"])]),
        "kafka_broker_info": ("Information about the Kafka Broker.", [({"address": options["kafka.server"], "id": "1"}, 1)]),
        "kafka_topic_partitions": ("Number of partitions for this Topic",
                                   [({"topic": t}, n) for t, n in state["topics"].items()]),
    }
    per_partition = {
        "kafka_topic_partition_current_offset": ("Current Offset of a Broker at Topic/Partition", 0),
        "kafka_topic_partition_oldest_offset": ("Oldest Offset of a Broker at Topic/Partition", 0),
        "kafka_topic_partition_leader": ("Leader Broker ID of this Topic/Partition", 1),
        "kafka_topic_partition_replicas": ("Number of Replicas for this Topic/Partition", 1),
        "kafka_topic_partition_in_sync_replica": ("Number of In-Sync Replicas for this Topic/Partition", 1),
        "kafka_topic_partition_leader_is_preferred": ("1 if Topic/Partition is using the Preferred Broker", 1),
        "kafka_topic_partition_under_replicated_partition": ("1 if Topic/Partition is under Replicated", 0),
    }
    for name, (text, value) in per_partition.items():
        families[name] = (text, [({"partition": str(p), "topic": t}, value)
                                 for t, n in state["topics"].items() for p in range(n)])
    lines = []
    for name, (text, samples) in families.items():
        lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge"]
        for labels, value in samples:
            rendered = ",".join(f'{k}="{v}"' for k, v in labels.items())
            lines.append(f"{name}{{{rendered}}} {value}" if rendered else f"{name} {value}")
    return "\n".join(lines) + "\n"


def main() -> None:
    options = parse(sys.argv[1:])
    try:
        metadata(options)
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"F kafka_exporter.go] Error Init Kafka Client: kafka: client has run out of available brokers to "
              f"talk to: {exc}", file=sys.stderr, flush=True)
        sys.exit(255)  # klog.Fatalln

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == options["web.telemetry-path"]:
                try:
                    body, status = exposition(options, metadata(options)), 200
                except (OSError, RuntimeError, ValueError) as exc:
                    print(f"E Cannot get metadata from Kafka: {exc}", file=sys.stderr, flush=True)
                    body, status = "", 200
                self.reply(status, body, "text/plain; version=0.0.4; charset=utf-8")
            elif path == "/healthz":
                self.reply(200, "ok", "text/plain")
            elif path == "/":
                self.reply(200, f"<html><body><h1>Kafka Exporter</h1><a href='{options['web.telemetry-path']}'>"
                                "Metrics</a></body></html>", "text/html")
            else:
                self.reply(404, "404 page not found\n", "text/plain")

        def reply(self, status: int, body: str, content_type: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    host, _, port = options["web.listen-address"].rpartition(":")
    print(f"I kafka_exporter.go] Listening on HTTP {options['web.listen-address']}", file=sys.stderr, flush=True)
    ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler).serve_forever()


if __name__ == "__main__":
    main()
