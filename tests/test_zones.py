"""The zones table (components/zones.py): consistent with what the services use, and documented as it is."""

from __future__ import annotations

import re
from typing import get_args

from platform_infra.components.spec import Role
from platform_infra.components.zones import STORE_NETWORKS, ZONES, networks_of, shared_networks
from platform_infra.infra.cli import REPO_ROOT
from platform_infra.stacks.platform import SERVICE_NEEDS, WORKER_NEEDS


def test_each_service_joins_exactly_the_stores_it_uses():
    """A store's network admits the services that need it and no other (api-gateway: PostgreSQL and Redis)."""
    for service, needs in {**SERVICE_NEEDS, "worker": WORKER_NEEDS}.items():
        joined = {store for store, network in STORE_NETWORKS.items() if network in networks_of(service)}
        assert joined == set(needs) & set(STORE_NETWORKS), service
    assert {s for s, n in STORE_NETWORKS.items() if n in networks_of("api-gateway")} == {"postgres", "redis"}


def test_only_the_edge_and_egress_are_routed_and_roles_are_real():
    assert {zone for zone, spec in ZONES.items() if not spec.internal} == {"edge", "egress"}
    assert {role for spec in ZONES.values() for role in spec.members.values()} <= set(get_args(Role))


def test_the_edge_reaches_only_api_gateway_and_the_exporters_only_prometheus_and_their_peers():
    everyone = {member for spec in ZONES.values() for member in spec.members}
    reach = {s: {t for t in everyone - {s} if shared_networks(s, t)} for s in everyone}
    assert reach["load-balancer"] == {"api-gateway"}
    monitoring = set(ZONES["monitoring"].members)
    for exporter in ("postgres-exporter", "redis-exporter", "kafka-exporter", "node-exporter", "cadvisor"):
        reached_by = {s for s in everyone if exporter in reach[s]}
        store = exporter.removesuffix("-exporter")
        clients = set(ZONES[STORE_NETWORKS[store]].members) if store in STORE_NETWORKS else set()
        proxy = {f"{exporter}-socket-proxy"} & everyone  # cAdvisor's own, on a network of their two
        assert reached_by == (monitoring | clients | proxy) - {exporter}, exporter
    assert {s for s in everyone if "alertmanager" in reach[s]} == {"prometheus", "blackbox-exporter", "s3-gateway"}
    assert {s for s in everyone if "grafana" in reach[s]} == {"prometheus"}


def test_security_md_lists_the_zones_as_they_are():
    text = (REPO_ROOT / "docs" / "SECURITY.md").read_text()
    rows = re.findall(r"^\| `([\w-]+)` \| (routed|internal) \| ([^|]+) \|", text, re.MULTILINE)
    assert {zone: (route == "internal", [m.strip() for m in members.split(",")]) for zone, route, members in rows} == {
        zone: (spec.internal, list(spec.members)) for zone, spec in ZONES.items()}
