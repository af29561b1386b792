"""`infra diagram`: the architecture a stack deploys, drawn from its recorded resource graph.

Read from the registrations `infra plan` records (pulumi-docker inputs, as the provider receives them):
networks (`docker:index/network:Network`) become clusters, named by their zone (the `platform.network` label,
a zone of components/zones.py, whose reason is the cluster's tooltip) and drawn in the table's order; running containers, grouped by their
`platform.service` label, become one node each with the replica count, placed in the first network of their
`networksAdvanced`; published `ports` come from the outside; data flows are the other services' host names
(network aliases) found in a container's env values, entrypoint, command and uploaded files; Prometheus' scrape edges
and its Alertmanager come from the uploaded prometheus.yml; what leaves the host comes from the files that say
where it goes: the blackbox exporter's probe targets, Alertmanager's receivers (e-mail, Slack, webhooks) and a
store gateway's upstreams (nginx `map` of server names, read with crossplane), which every service naming the
store reaches through it (WAL archiving, the backup jobs). Output is sorted, so the same stack draws the same
picture; `--format svg` runs Graphviz's `dot`, laid out to be read at 1400 px with a legend.
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import yaml

from platform_infra.components.zones import ZONES
from platform_infra.infra.mockrun import ProgramInputError, ProgramRun, run_project

CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
OUTSIDE = "outside"
JOB_COMPONENTS = {"platform:index:BackupJobs"}
"""Components whose containers are scheduled jobs, not services others connect to."""


def _type_of(urn: str) -> str:
    return urn.split("::")[2].rsplit("$", 1)[-1]


@dataclass
class Service:
    name: str
    role: str
    replicas: int = 0
    networks: list[str] = field(default_factory=list)
    ports: set[str] = field(default_factory=set)
    texts: list[str] = field(default_factory=list)
    """Plain env values, command arguments and uploaded files: where connection settings are written."""


@dataclass
class Architecture:
    stack: str
    networks: dict[str, bool]
    """Network name -> internal."""
    zones: dict[str, str]
    """Network name -> its zone (the `platform.network` label), where it has one."""
    services: dict[str, Service]
    flows: dict[tuple[str, str], set[str]]
    """(from, to) -> ports or labels of the data flows."""
    scrapes: dict[str, set[str]]
    """Scraped service -> the Prometheus services that scrape it."""
    probes: set[tuple[str, str]]
    leaving: dict[tuple[str, str], str] = field(default_factory=dict)
    """(service, external endpoint) -> kind (probe, notify, store): what leaves the host, and to where."""
    external: dict[str, str] = field(default_factory=dict)
    """External endpoint -> its label."""
    store_clients: dict[str, set[str]] = field(default_factory=dict)
    """Store gateway -> the services that reach the store through it."""


def _plain(value: Any) -> str | None:
    """A string the program wrote in clear; secrets (wrapped or unknown) are never read."""
    return value if isinstance(value, str) else None


def _labels(inputs: dict[str, Any]) -> dict[str, str]:
    return {item["label"]: item["value"] for item in inputs.get("labels") or [] if isinstance(item.get("value"), str)}


def build(run: ProgramRun) -> Architecture:
    networks = {
        r.inputs.get("name", r.name): bool(r.inputs.get("internal")) for r in run.resources if r.type == NETWORK
    }
    zones = {r.inputs.get("name", r.name): _labels(r.inputs)["platform.network"] for r in run.resources
             if r.type == NETWORK and "platform.network" in _labels(r.inputs)}
    services: dict[str, Service] = {}
    hosts: dict[str, str] = {}
    for resource in run.resources:
        if resource.type != CONTAINER:
            continue
        inputs = resource.inputs
        labels = _labels(inputs)
        name = labels.get("platform.service") or inputs.get("hostname") or resource.name
        role = "job" if resource.parent and _type_of(resource.parent) in JOB_COMPONENTS else labels.get("platform.role", "")
        service = services.setdefault(name, Service(name, role))
        uploads = [u.get("content") for u in inputs.get("uploads") or []]
        service.texts += [text for text in map(_plain, uploads) if text]
        if inputs.get("start", True) is False:
            continue  # a never-started file carrier: its files are the service's
        service.replicas += 1
        for attachment in inputs.get("networksAdvanced") or []:
            if attachment.get("name") not in service.networks:
                service.networks.append(attachment["name"])
            for alias in attachment.get("aliases") or []:
                hosts[alias] = name
        if inputs.get("hostname"):
            hosts[inputs["hostname"]] = name
        for port in inputs.get("ports") or []:
            service.ports.add(f"{port.get('ip', '0.0.0.0')}:{int(port['external'])}->{int(port['internal'])}")
        env = [text.split("=", 1)[1] for text in map(_plain, inputs.get("envs") or []) if text and "=" in text]
        arguments = [*(inputs.get("entrypoints") or []), *(inputs.get("command") or [])]
        service.texts += env + [text for text in map(_plain, arguments) if text]

    flows: dict[tuple[str, str], set[str]] = defaultdict(set)
    scrapes: dict[str, set[str]] = defaultdict(set)
    probes: set[tuple[str, str]] = set()
    # A connection names a host with a port (`kafka:9092`, `jdbc:postgresql://postgres:5432/db`), as a URL
    # authority (`redis://redis`), or is the whole setting (`SPRING_DATA_REDIS_HOST=redis`); a bare word in
    # prose or in a query (`job="postgres"`) is not one.
    names = "|".join(sorted(map(re.escape, hosts), key=len, reverse=True))
    connection = re.compile(rf"(?<![\w.-])({names}):(\d+)(?![\w.-])|//({names})(?::(\d+))?(?![\w.-])|^({names})$")
    for service in services.values():
        for text in service.texts:
            scrape_config = _prometheus_config(text)
            if scrape_config is not None:
                _read_prometheus(service.name, scrape_config, hosts, flows, scrapes, probes)
                continue
            for match in connection.finditer(text) if hosts else ():
                target = hosts[match.group(1) or match.group(3) or match.group(5)]
                if target != service.name:
                    flows[(service.name, target)].add(match.group(2) or match.group(4) or "")
    arch = Architecture(run.stack, networks, zones, services, dict(flows), dict(scrapes), probes)
    _read_leaving(arch, hosts)
    return arch


def _read_leaving(arch: Architecture, hosts: dict[str, str]) -> None:
    """Flows that leave the host: probes to their URLs, Alertmanager to its receivers, a store gateway to its
    upstream, and every service naming that store to the gateway (its only way out of an internal network)."""
    for prober, target in sorted(arch.probes):
        if target not in hosts:
            arch.external["public"] = "public endpoints\\n" + "\\n".join(sorted(t for _, t in arch.probes))
            arch.leaving[(prober, "public")] = "probe"
    for service in arch.services.values():
        for text in service.texts:
            receivers = _alertmanager_receivers(text)
            for endpoint, label in receivers.items():
                arch.external[endpoint] = label
                arch.leaving[(service.name, endpoint)] = "notify"
            if service.role == "egress":
                for names in _gateway_upstreams(text):
                    upstream = names[-1]
                    arch.external[f"store {upstream}"] = f"object store (S3)\\n{upstream}"
                    arch.leaving[(service.name, f"store {upstream}")] = "store"
                    arch.store_clients[service.name] = arch.store_clients.get(service.name, set()) | {
                        other.name for other in arch.services.values() if other.name != service.name
                        and any(any(name in text for name in names) for text in other.texts)}


def _alertmanager_receivers(text: str) -> dict[str, str]:
    """Where an alertmanager.yml sends notifications: endpoint -> label."""
    if "receivers:" not in text or "route:" not in text:
        return {}
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(config, dict):
        return {}
    found: dict[str, str] = {}
    receivers = config.get("receivers") or []
    if any(r.get("email_configs") for r in receivers):
        smarthost = (config.get("global") or {}).get("smtp_smarthost", "SMTP")
        found["email"] = f"e-mail\\n{smarthost}"
    if any(r.get("slack_configs") for r in receivers):
        found["slack"] = "Slack"
    if any(r.get("webhook_configs") for r in receivers):
        found["webhook"] = "webhooks"
    return found


def _gateway_upstreams(text: str) -> list[tuple[str, str]]:
    """(server name, upstream host) pairs of an nginx stream `map` a gateway forwards by SNI."""
    from platform_infra.policies import nginxconf

    if "ssl_preread" not in text:
        return []
    try:
        parsed = nginxconf.parse(text)
    except nginxconf.NginxConfigError:
        return []
    pairs = []
    for stream in nginxconf.children(parsed, "stream"):
        for block in nginxconf.children(stream["block"], "map"):
            pairs += [(entry["directive"], _host(entry["args"][0])) for entry in block["block"]
                      if entry["directive"] != "default" and entry["args"] and entry["args"][0].strip("'\"")]
    return pairs


def _prometheus_config(text: str) -> dict[str, Any] | None:
    if "scrape_configs" not in text:
        return None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) and "scrape_configs" in data else None


def _host(target: str) -> str:
    return target.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]


def _read_prometheus(
    name: str,
    config: dict[str, Any],
    hosts: dict[str, str],
    flows: dict[tuple[str, str], set[str]],
    scrapes: dict[str, set[str]],
    probes: set[tuple[str, str]],
) -> None:
    """Scrape edges of prometheus.yml: static targets, or the `__address__` a relabelling sets (blackbox
    probes, whose own targets are URLs the exporter fetches); Alertmanager from `alerting`."""
    for manager in (config.get("alerting") or {}).get("alertmanagers") or []:
        for static in manager.get("static_configs") or []:
            for target in static.get("targets") or []:
                if _host(target) in hosts:
                    flows[(name, hosts[_host(target)])].add("alerts")
    for job in config.get("scrape_configs") or []:
        targets = [t for static in job.get("static_configs") or [] for t in static.get("targets") or []]
        address = next((r.get("replacement") for r in job.get("relabel_configs") or []
                        if r.get("target_label") == "__address__"), None)
        if address and _host(address) in hosts:
            prober = hosts[_host(address)]
            scrapes[prober].add(name)
            probes.update((prober, _host(t)) for t in targets)
            continue
        for target in targets:
            if _host(target) in hosts:
                scrapes[hosts[_host(target)]].add(name)


# --- output --------------------------------------------------------------------------------------------


def _published(service: Service) -> list[str]:
    return sorted(service.ports, key=lambda port: int(port.split(":")[-1].split("->")[0]))


def _id(name: str) -> str:
    return re.sub(r"\W", "_", name)


def _service_label(service: Service, arch: Architecture, listens: set[str]) -> str:
    lines = [service.name]
    if service.replicas > 1:
        lines.append(f"x{service.replicas} replicas")
    if listens:
        lines.append("port " + ", ".join(sorted(listens, key=int)))
    others = [n for n in service.networks[1:] if n in arch.networks]
    if others:
        lines.append("also on " + ", ".join(_short(arch, n) for n in others))
    return "\\n".join(lines)


def _short(arch: Architecture, network: str) -> str:
    """A network's zone, or (a network of no zone) the last word of its name."""
    return arch.zones.get(network) or network.rsplit("-", 1)[-1]


def _ordered_networks(arch: Architecture) -> list[str]:
    """In the zones table's order (so the drawing reads from the edge inwards), then the others by name."""
    order = list(ZONES)
    return sorted(arch.networks, key=lambda n: (order.index(arch.zones[n]) if arch.zones.get(n) in ZONES
                                               else len(order), n))


def _quote(text: str) -> str:
    return '"' + text.replace('"', '\\"') + '"'


# Role -> (shape, fill, meaning): nodes and the legend.
ROLES = {
    "lb": ("hexagon", "#fde2e1", "load balancer (the only published ports)"),
    "app": ("box", "#dbeafe", "Spring service"),
    "ds": ("cylinder", "#fef3c7", "data store (its data on a volume)"),
    "job": ("box3d", "#dcfce7", "scheduled job (backups)"),
    "egress": ("octagon", "#ede9fe", "egress gateway (the backup network's only way out)"),
    "mon": ("component", "#f1f5f9", "monitoring"),
}
SCRAPED_PEN = 2.5
"""Outline width of a service Prometheus scrapes."""
# Edge kind -> (attributes, colour, line drawn in the legend, meaning).
EDGES = {
    "ingress": ('color="#b91c1c", penwidth=2', "#b91c1c", "━━━▶", "published ports, from clients"),
    "data": ('color="#1f2937"', "#1f2937", "───▶", "connection (the port is on its target)"),
    "store": ('color="#15803d", penwidth=1.6', "#15803d", "━━━▶", "WAL archive and backups to the object store"),
    "notify": ('color="#c2410c"', "#c2410c", "───▶", "alerts and notifications"),
    "probe": ('color="#6b7280", style=dotted', "#6b7280", "┈┈┈▶", "uptime probe (HTTPS)"),
}


def _edge(source: str, target: str, kind: str, label: str = "") -> str:
    attributes = EDGES[kind][0] + (f", label={_quote(label)}" if label else "")
    return f"  {_id(source)} -> {_id(target)} [{attributes}];"


def _legend() -> str:
    """One table: each shape's fill and meaning, each edge colour and meaning (Graphviz HTML-like label)."""
    rows = [f'<TR><TD BGCOLOR="{fill}" BORDER="1">{shape}</TD><TD ALIGN="LEFT">{html.escape(text)}</TD></TR>'
            for shape, fill, text in ROLES.values()]
    rows.append('<TR><TD BORDER="3">thick outline</TD><TD ALIGN="LEFT">scraped by Prometheus</TD></TR>')
    rows += [f'<TR><TD><FONT COLOR="{colour}">{line}</FONT></TD><TD ALIGN="LEFT">{html.escape(text)}</TD></TR>'
             for _, colour, line, text in EDGES.values()]
    table = ('<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="3" CELLPADDING="3" BGCOLOR="#fafafa">'
             '<TR><TD COLSPAN="2"><B>Legend</B></TD></TR>' + "".join(rows) + "</TABLE>>")
    return f"  legend [label={table}, shape=box, style=\"rounded,filled\", fillcolor=\"#fafafa\", color=\"#9ca3af\"];"


def dot(arch: Architecture) -> str:
    networks = _ordered_networks(arch)
    running = {n: s for n, s in sorted(arch.services.items()) if s.replicas}
    scraped = {target for target, scrapers in arch.scrapes.items() if scrapers & set(running)}
    listens: dict[str, set[str]] = defaultdict(set)
    for (source, target), ports in arch.flows.items():
        if source in running and target in running:
            listens[target] |= {p for p in ports if p.isdigit()}
    out = [
        f"digraph {_quote('architecture-' + arch.stack)} {{",
        # Left to right: clients, the edge, the services, the stores, what leaves the host. `size` keeps the
        # drawing within 1400 px (14.5 in at 96 px) however many services a stack has.
        ("  graph [rankdir=LR, fontname=\"DejaVu Sans\", fontsize=13, nodesep=0.18, ranksep=0.45, newrank=true, pad=0.15, "
         f"size=\"14.5,40\", label={_quote(f'Stack {arch.stack}: what it deploys, and every flow between them')}, "
         "labelloc=t, labeljust=l];"),
        "  node [fontname=\"DejaVu Sans\", fontsize=10, style=filled, fillcolor=white, margin=\"0.08,0.04\"];",
        "  edge [fontname=\"DejaVu Sans\", fontsize=9, arrowsize=0.7];",
    ]
    if any(s.ports for s in running.values()):
        out.append(f"  {OUTSIDE} [label=\"clients\\n(internet)\", shape=ellipse, fillcolor=\"#eef0f4\"];")
    for endpoint, label in sorted(arch.external.items()):
        out.append(f"  {_id(endpoint)} [label={_quote(label)}, shape=ellipse, fillcolor=\"#eef0f4\"];")
    for network in networks:
        members = [s for s in running.values() if s.networks and s.networks[0] == network]
        kind = "internal: no route off the host" if arch.networks[network] else "routed"
        out.append(f"  subgraph {_quote('cluster_' + network)} {{")
        zone = ZONES.get(arch.zones.get(network, ""))
        tooltip = f" tooltip={_quote(zone.why)};" if zone else ""
        out.append(f"    label={_quote(f'network {_short(arch, network)} ({kind})')}; style=rounded; color=\"#7a8699\"; "
                   f"fontsize=11;{tooltip}")
        for s in members:
            shape, fill, _ = ROLES.get(s.role, ("box", "white", ""))
            # A thick outline, not a double one: Graphviz draws a cylinder's second periphery across its text.
            border = f", penwidth={SCRAPED_PEN}" if s.name in scraped else ""
            out.append(f"    {_id(s.name)} [label={_quote(_service_label(s, arch, listens[s.name]))}, "
                       f"shape={shape}, fillcolor=\"{fill}\"{border}];")
        if not members:  # drawn in their first network; named here so that no network is left empty
            attached = [s.name for s in running.values() if network in s.networks]
            note = "attached:\\n" + "\\n".join(attached) if attached else "nothing attached"
            out.append(f"    {_id(network)} [label={_quote(note)}, shape=note, fillcolor=\"#f5f6f8\"];")
        out.append("  }")
    for service in running.values():
        if not service.networks:
            out.append(f"  {_id(service.name)} [label={_quote(_service_label(service, arch, listens[service.name]))}];")
        published = _published(service)
        if published:  # on its edge, as the bind address, the host port and the container's
            out.append(_edge(OUTSIDE, service.name, "ingress", "\n".join(published)))
    through_gateway = {(client, gateway) for gateway, clients in arch.store_clients.items() for client in clients}
    for (source, target), ports in sorted(arch.flows.items()):
        if source in running and target in running and (source, target) not in through_gateway:
            kind = "notify" if "alerts" in ports else "data"
            out.append(_edge(source, target, kind, "alerts" if kind == "notify" else ""))
    for gateway, clients in sorted(arch.store_clients.items()):
        for client in sorted(clients & set(running)):
            out.append(_edge(client, gateway, "store"))
    for (source, endpoint), kind in sorted(arch.leaving.items()):
        if source in running:
            out.append(_edge(source, endpoint, kind))
    out.append(_legend())
    # The legend beside what leaves the host, in the last column.
    out.append(f"  {{rank=sink; legend; {'; '.join(_id(e) for e in sorted(arch.external))}}}")
    out.append("}")
    return "\n".join(out) + "\n"


def mermaid(arch: Architecture) -> str:
    networks = _ordered_networks(arch)
    running = {n: s for n, s in sorted(arch.services.items()) if s.replicas}
    out = ["flowchart LR"]
    if any(s.ports for s in running.values()) or arch.probes:
        out.append(f'  {OUTSIDE}(["outside"])')
    for network in networks:
        out.append(f'  subgraph {_id(network)}["network {network}"]')
        members = [s for s in running.values() if s.networks and s.networks[0] == network]
        out += [f'    {_id(s.name)}["{_service_label(s, arch, set()).replace(chr(92) + "n", "<br>")}"]' for s in members]
        if not members:
            attached = ", ".join(s.name for s in running.values() if network in s.networks) or "nothing"
            out.append(f'    {_id(network)}_note["attached: {attached}"]')
        out.append("  end")
    for service in running.values():
        out += [f"  {OUTSIDE} -->|{port}| {_id(service.name)}" for port in _published(service)]
    for (source, target), ports in sorted(arch.flows.items()):
        if source in running and target in running:
            label = ",".join(sorted(p for p in ports if p))
            out.append(f"  {_id(source)} -->" + (f"|{label}| " if label else " ") + _id(target))
    for target, scrapers in sorted(arch.scrapes.items()):
        out += [f"  {_id(s)} -.->|scrape| {_id(target)}" for s in sorted(scrapers) if s in running and target in running]
    for endpoint, label in sorted(arch.external.items()):
        out.append(f'  {_id(endpoint)}(["{label.replace(chr(92) + "n", "<br>")}"])')
    for gateway, clients in sorted(arch.store_clients.items()):
        out += [f"  {_id(client)} ==>|backups| {_id(gateway)}" for client in sorted(clients & set(running))]
    for (source, endpoint), kind in sorted(arch.leaving.items()):
        arrow = {"probe": "-.->|probe https|", "notify": "-->|notify|", "store": "==>|backups|"}[kind]
        out.append(f"  {_id(source)} {arrow} {_id(endpoint)}")
    return "\n".join(out) + "\n"


def svg(dot_source: str) -> str:
    binary = shutil.which("dot")
    if binary is None:
        raise ProgramInputError("--format svg needs Graphviz's `dot` (Debian package graphviz)")
    result = subprocess.run([binary, "-Tsvg"], input=dot_source, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ProgramInputError(f"dot failed: {result.stderr.strip()}")
    return result.stdout


def render(arch: Architecture, output_format: str) -> str:
    if output_format == "mermaid":
        return mermaid(arch)
    source = dot(arch)
    return svg(source) if output_format == "svg" else source


def cmd_diagram(args: argparse.Namespace) -> int:
    print(render(build(run_project(args)), args.format), end="")
    return 0


def add_diagram_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["dot", "svg", "mermaid"], default="dot")
