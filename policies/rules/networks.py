"""Network rules: internal networks for data and monitoring, every role on its zones' networks only, encrypted
overlays, no ingress publishing."""

from __future__ import annotations

from platform_infra.components.zones import ZONES, allowed_roles, networks_of
from platform_infra.policies.props import NETWORK, ROLES, SERVICE, WORKLOADS, Workload, get, labels, truthy
from platform_infra.policies.registry import MANDATORY, resource_rule, stack_rule
from platform_infra.policies.scope import reads_identity


def _network_index(stack) -> dict[str, object]:
    """Network name (the output, else the resource name) -> resource."""
    index = {}
    for network in stack.of_type(NETWORK):
        index[str(get(network.props, "name", default=network.name))] = network
    return index


def _attached(w: Workload, resource, index: dict[str, object]) -> list[tuple[str, object | None]]:
    """(network reference, network resource or None) for each attachment; Services attach by id, which the
    stack does not show, so unmatched references are resolved through the resource's network dependencies:
    when as many are left as references, those are the networks it joins (by name, in no particular order)."""
    dependencies = [d for d in getattr(resource, "dependencies", []) if d.resource_type == NETWORK]
    named = [(reference, index.get(reference)) for reference in w.networks]
    spare = [d for d in dependencies if not any(d is network for _, network in named)]
    unmatched = [reference for reference, network in named if network is None]
    if not unmatched or len(unmatched) != len(spare):
        return named
    by_id = iter(spare)
    found = []
    for reference, network in named:
        if network is None:
            network = next(by_id)
            reference = str(get(network.props, "name", default=network.name))
        found.append((reference, network))
    return found


@stack_rule(
    "NET-001",
    "internal-data-network",
    "Data and monitoring on internal networks",
    types=[*WORKLOADS, NETWORK],
    severity="high",
    prod=MANDATORY,
    checklist=["infrastructure.network-policies"],
    sources=["CIS 5.30", "KICS networks_not_set", "CKV2_K8S_6", "Polaris missingNetworkPolicy"],
    options={
        "internalOnlyRoles": {
            "type": "array",
            "items": {"enum": list(ROLES)},
            "default": ["ds", "mon"],
        },
        "egressAllowed": {
            "type": "array",
            "items": {"type": "string"},
            "default": ["alertmanager", "blackbox"],
            "description": "monitoring workloads (name, image or service label containing one of these) that "
            "may also join a dedicated egress network: one no data store and no load balancer joins",
        },
    },
    remediation="Create the backend networks with `internal=True`; attach only the LB to the edge network; "
    "give Alertmanager/blackbox probes their own egress network.",
)
def internal_data_network(stack, report, options) -> None:
    """Data stores and monitoring attach only to internal networks, and only the load balancer joins the
    edge; Alertmanager and blackbox probes, which must reach the outside, may use a dedicated egress network
    that no data store and no load balancer shares."""
    index = _network_index(stack)
    by_urn = {r.urn: r for r in stack.resources}
    attached = {w.urn: _attached(w, by_urn[w.urn], index) for w in stack.workloads}
    members: dict[str, set[str]] = {}
    for w in stack.workloads:
        for reference, _ in attached[w.urn]:
            members.setdefault(reference, set()).add(w.role)
    for w in stack.workloads:
        text = " ".join([w.name, w.image, w.labels.get("platform.service", "")]).lower()
        may_egress = w.role == "mon" and any(fragment in text for fragment in options["egressAllowed"])
        for reference, network in attached[w.urn]:
            internal = network is not None and truthy(get(network.props, "internal"))
            dedicated_egress = network is not None and not members[reference] & {"ds", "lb"}
            if (
                w.role in options["internalOnlyRoles"]
                and not internal
                and not (may_egress and dedicated_egress)
            ):
                what = "a network not declared in the stack" if network is None else "non-internal network"
                report(f"role {w.role} is attached to {what} {reference}", w.urn)
            elif (
                w.role not in ("lb", *options["internalOnlyRoles"])
                and not internal
                and "lb" in members[reference]
            ):
                report(f"role {w.role} joins the load balancer's edge network {reference}", w.urn)


ZONE_LABEL = "platform.network"
"""The label naming the zone (components/zones.py) a network of the platform implements."""


@stack_rule(
    "NET-004",
    "zone-membership",
    "Each role joins only the networks of its zones",
    types=[*WORKLOADS, NETWORK],
    severity="high",
    prod=MANDATORY,
    checklist=["infrastructure.network-policies"],
    sources=["CIS 5.30", "NIST SP 800-190 4.3.3", "CKV2_K8S_6"],
    options={
        "allowedRoles": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"enum": list(ROLES)}},
            "default": {zone: sorted(allowed_roles(zone)) for zone in ZONES},
            "description": "zone (the network's platform.network label) -> the roles that may join it; "
            "default: the roles of its members in components/zones.py",
        },
    },
    remediation="Attach each container to the networks components/zones.py gives its service (`networks_of`); "
    "a new need is a row or a member of that table, never a container on another zone's network.",
)
def zone_membership(stack, report, options) -> None:
    """In a stack whose networks carry zone labels (the platform's), a workload joins only networks of a
    known zone that admit its role, and a service the zones table names joins only the networks it gives
    it: two containers sharing a network reach each other on every port, so one extra attachment undoes the
    segmentation."""
    index = _network_index(stack)
    zones = {reference: labels(network.props, "labels").get(ZONE_LABEL) for reference, network in index.items()}
    if not any(zones.values()):
        return  # not a stack built from the zones table
    allowed = options["allowedRoles"]
    by_urn = {r.urn: r for r in stack.resources}
    for w in stack.workloads:
        service = w.labels.get("platform.service", "")
        for reference, network in _attached(w, by_urn[w.urn], index):
            zone = zones.get(reference) if network is not None else None
            if zone not in allowed:
                report(f"role {w.role} joins network {reference}, which is in no zone of the table", w.urn)
            elif w.role not in allowed[zone]:
                report(f"role {w.role} may not join the {zone} network {reference} "
                       f"(allowed: {', '.join(allowed[zone])})", w.urn)
            elif networks_of(service) and zone not in networks_of(service):
                report(f"service {service} joins the {zone} network {reference}; its zones: "
                       f"{', '.join(networks_of(service))}", w.urn)


@resource_rule(
    "NET-002",
    "encrypted-overlay",
    "Encrypted overlay networks",
    types=[NETWORK],
    severity="high",
    prod=MANDATORY,
    checklist=["infrastructure.network-policies"],
    sources=["CIS 7.3"],
    remediation="Create overlay networks with `options={'encrypted': 'true'}`.",
)
def encrypted_overlay(resource, report, options) -> None:
    """Swarm overlay networks encrypt traffic between hosts."""
    if str(get(resource.props, "driver", default="")) == "overlay" and "encrypted" not in (
        get(resource.props, "options", default={}) or {}
    ):
        report("overlay network without the encrypted option")


@resource_rule(
    "NET-003",
    "no-ingress-publish-ds",
    "No ingress publishing for data and monitoring",
    types=[SERVICE],
    severity="high",
    prod=MANDATORY,
    checklist=["security.firewall"],
    sources=["CIS 7.2"],
    remediation="Publish nothing from data/monitoring Services; pin a host-mode LB with placement "
    "constraints.",
)
@reads_identity
def no_ingress_publish_ds(w: Workload, report, options) -> None:
    """Swarm data and monitoring services publish no ingress ports; a host-mode LB is pinned to its nodes."""
    for port in w.ports:
        if w.role in ("ds", "mon") and port.mode == "ingress":
            report(f"role {w.role} publishes {port.external} on the ingress mesh")
        if (
            w.role == "lb"
            and port.mode == "host"
            and not get(w.props, "taskSpec", "placement", "constraints")
        ):
            report(f"host-mode port {port.external} without placement constraints")
