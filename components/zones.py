"""The platform's network zones, as data: which network each container joins, and why.

Containers on one network reach each other on every port; on no shared network, not at all (Docker isolates
bridge networks from each other, and an internal network, bridge or overlay, has no route off the host). So
this table is the reachability design: the component specs take their networks from it (`networks_of`),
`validate_spec` and the policy rule NET-004 hold every container to it (`allowed_roles`), `infra diagram` draws
it and the live tests compare the reachability found inside every container with the one it implies
(`shared_networks`). One network per need, and no more than the isolation asks for: a network shared by
two needs would let the members of one reach the members of the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Zone:
    internal: bool
    """No route off the host (Docker `internal`): only edge and egress are routed."""
    members: Mapping[str, str]
    """Service -> its role (spec.Role): the containers that join the network."""
    why: str
    created_by: str | None = None
    """The component that creates the network with what uses it (None: components/network.py, for every stack)."""


ZONES: dict[str, Zone] = {
    "edge": Zone(False, {"load-balancer": "lb"},
                 "the published ports 80/443: clients reach the load balancer and nothing else"),
    "front": Zone(True, {"load-balancer": "lb", "api-gateway": "app"},
                  "the load balancer's only upstream: nginx reaches api-gateway, no other service"),
    "monitoring": Zone(True, {"prometheus": "mon", "postgres-exporter": "mon", "redis-exporter": "mon",
                              "kafka-exporter": "mon", "node-exporter": "mon", "cadvisor": "mon"},
                       "Prometheus scrapes the exporters and cAdvisor, which no service, store or edge reaches"),
    "scrape": Zone(True, {"prometheus": "mon", "api-gateway": "app", "orchestrator": "app", "worker": "app",
                          "log-aggregator": "app", "query-service": "app", "autoscaler": "mon"},
                   "Prometheus scrapes every service; the autoscaler queries Prometheus and is scraped"),
    "alerting": Zone(True, {"prometheus": "mon", "alertmanager": "mon", "blackbox-exporter": "mon"},
                     "Prometheus reaches Alertmanager (alerts, silences) and the blackbox exporter (a probe is a "
                     "way out): the two monitoring parts on egress, where they see each other anyway"),
    "dashboards": Zone(True, {"prometheus": "mon", "grafana": "mon"},
                       "Grafana queries Prometheus; operators reach Grafana through a tunnel, nothing in the "
                       "stack reaches it but Prometheus, which shares the network"),
    "store-postgres": Zone(True, {"postgres": "ds", "api-gateway": "app", "orchestrator": "app", "worker": "app",
                                  "query-service": "app", "postgres-exporter": "mon"},
                           "PostgreSQL and the services that use it, and its exporter reading it"),
    "store-redis": Zone(True, {"redis": "ds", "api-gateway": "app", "orchestrator": "app", "worker": "app",
                               "redis-exporter": "mon"},
                        "Redis and the services that use it, and its exporter reading it"),
    "store-kafka": Zone(True, {"kafka": "ds", "orchestrator": "app", "worker": "app", "log-aggregator": "app",
                               "kafka-exporter": "mon"},
                        "Kafka and the services that use it, and its exporter reading it"),
    "store-clickhouse": Zone(True, {"clickhouse": "ds", "log-aggregator": "app", "query-service": "app",
                                    "clickhouse-backup": "ds", "prometheus": "mon"},
                             "ClickHouse, the services that use it and its backup tool; Prometheus scrapes "
                             "ClickHouse's own metrics and clickhouse-backup's here (they have no exporter)"),
    "backup": Zone(True, {"s3-gateway": "egress", "postgres": "ds", "postgres-backup": "ds",
                          "clickhouse-backup": "ds"},
                   "the backup tools and the store gateway: PostgreSQL's WAL archive and the backup jobs reach "
                   "the bucket through the gateway, and pgBackRest reaches PostgreSQL here"),
    "egress": Zone(False, {"s3-gateway": "egress", "alertmanager": "mon", "blackbox-exporter": "mon"},
                   "the way out: the bucket (through the gateway), alert receivers, the uptime probe's URLs"),
    # One per socket proxy client (components/socketproxy.py): a proxy cannot tell two clients on one network
    # apart, so each client and its proxy have a network no one else joins.
    "autoscaler-engine": Zone(True, {"autoscaler": "mon", "autoscaler-socket-proxy": "mon"},
                              "the autoscaler reaches the Engine API through its socket proxy alone",
                              created_by="socketproxy"),
    "cadvisor-engine": Zone(True, {"cadvisor": "mon", "cadvisor-socket-proxy": "mon"},
                            "cAdvisor reaches the Engine API through its socket proxy alone", created_by="socketproxy"),
}

# The network a store's clients join to use it (apps' `needs`).
STORE_NETWORKS = {"postgres": "store-postgres", "redis": "store-redis", "kafka": "store-kafka",
                  "clickhouse": "store-clickhouse"}


def networks_of(service: str) -> list[str]:
    """The networks a service joins, in the table's order: its first is where `infra diagram` draws it (the
    monitoring zones come before the stores' so that a service is drawn where Prometheus finds it, a store and
    its backup tools in their own)."""
    return [name for name, zone in ZONES.items() if service in zone.members]


def missing_networks(service: str, given) -> list[str]:
    """The networks the table gives `service` that `given` (a component's `networks` argument) lacks."""
    return [name for name in networks_of(service) if name not in given]


def allowed_roles(network: str) -> set[str]:
    """The roles that may join a network: those of its members."""
    zone = ZONES.get(network)
    return set(zone.members.values()) if zone else set()


def shared_networks(source: str, target: str) -> list[str]:
    """The networks through which one service's containers reach another's (or another replica of its own):
    the designed reachability. None: they cannot reach each other at all."""
    return [name for name in networks_of(source) if target in ZONES[name].members]
