"""`infra diagram`: the architecture a stack deploys, drawn from its recorded resource graph.

Read from the registrations `infra plan` records (pulumi-docker inputs, as the provider receives them):
networks (`docker:index/network:Network`) become clusters; running containers, grouped by their
`platform.service` label, become one node each with the replica count, placed in the first network of their
`networksAdvanced`; published `ports` come from the outside; data flows are the other services' host names
(network aliases) found in a container's env values, entrypoint, command and uploaded files; Prometheus' scrape edges
and its Alertmanager come from the uploaded prometheus.yml. Output is sorted, so the same stack draws the
same picture; `--format svg` runs Graphviz's `dot`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import yaml

from infra.mockrun import ProgramInputError, ProgramRun

CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
OUTSIDE = "outside"


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
    services: dict[str, Service]
    flows: dict[tuple[str, str], set[str]]
    """(from, to) -> ports or labels of the data flows."""
    scrapes: dict[str, set[str]]
    """Scraped service -> the Prometheus services that scrape it."""
    probes: set[tuple[str, str]]


def _plain(value: Any) -> str | None:
    """A string the program wrote in clear; secrets (wrapped or unknown) are never read."""
    return value if isinstance(value, str) else None


def _labels(inputs: dict[str, Any]) -> dict[str, str]:
    return {item["label"]: item["value"] for item in inputs.get("labels") or [] if isinstance(item.get("value"), str)}


def build(run: ProgramRun) -> Architecture:
    networks = {
        r.inputs.get("name", r.name): bool(r.inputs.get("internal")) for r in run.resources if r.type == NETWORK
    }
    services: dict[str, Service] = {}
    hosts: dict[str, str] = {}
    for resource in run.resources:
        if resource.type != CONTAINER:
            continue
        inputs = resource.inputs
        labels = _labels(inputs)
        name = labels.get("platform.service") or inputs.get("hostname") or resource.name
        service = services.setdefault(name, Service(name, labels.get("platform.role", "")))
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
    return Architecture(run.stack, networks, services, dict(flows), dict(scrapes), probes)


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


def _service_label(service: Service, networks: list[str]) -> str:
    lines = [service.name]
    if service.replicas > 1:
        lines.append(f"x{service.replicas} replicas")
    lines += [f"publishes {p}" for p in _published(service)]
    others = [n for n in service.networks[1:] if n in networks]
    if others:
        lines.append("also on " + ", ".join(_short(n) for n in others))
    return "\\n".join(lines)


def _short(network: str) -> str:
    return network.rsplit("-", 1)[-1]


def _quote(text: str) -> str:
    return '"' + text.replace('"', '\\"') + '"'


SHAPES = {"lb": "hexagon", "ds": "cylinder", "mon": "component", "app": "box"}


def dot(arch: Architecture) -> str:
    networks = sorted(arch.networks)
    running = {n: s for n, s in sorted(arch.services.items()) if s.replicas}
    out = [
        f"digraph {_quote('architecture-' + arch.stack)} {{",
        ("  graph [rankdir=LR, fontname=Helvetica, fontsize=11, nodesep=0.25, ranksep=0.9, "
        f"label={_quote(f'Stack {arch.stack}: services by network (solid: data flow, dashed: scrape)')}, labelloc=t];"),
        "  node [fontname=Helvetica, fontsize=10, style=filled, fillcolor=white];",
        "  edge [fontname=Helvetica, fontsize=9];",
    ]
    if any(s.ports for s in running.values()) or arch.probes:
        out.append(f"  {OUTSIDE} [label=\"outside\\n(clients, public endpoints)\", shape=ellipse, fillcolor=\"#eef0f4\"];")
    for network in networks:
        members = [s for s in running.values() if s.networks and s.networks[0] == network]
        kind = "internal" if arch.networks[network] else "routed"
        out.append(f"  subgraph {_quote('cluster_' + network)} {{")
        out.append(f"    label={_quote(f'network {network} ({kind})')}; style=rounded; color=\"#7a8699\";")
        out += [
            f"    {_id(s.name)} [label={_quote(_service_label(s, networks))}, shape={SHAPES.get(s.role, 'box')}];"
            for s in members
        ]
        if not members:  # drawn in their first network; named here so that no network is left empty
            attached = [s.name for s in running.values() if network in s.networks]
            note = "attached: " + ", ".join(attached) if attached else "nothing attached"
            out.append(f"    {_id(network)} [label={_quote(note)}, shape=note, fillcolor=\"#f5f6f8\"];")
        out.append("  }")
    for service in running.values():
        if not service.networks:
            out.append(f"  {_id(service.name)} [label={_quote(_service_label(service, networks))}];")
        for port in _published(service):
            out.append(f"  {OUTSIDE} -> {_id(service.name)} [label={_quote(port)}, color=\"#9b1c1c\"];")
    for (source, target), ports in sorted(arch.flows.items()):
        if source in running and target in running:
            label = ",".join(sorted(p for p in ports if p))
            out.append(f"  {_id(source)} -> {_id(target)} [label={_quote(label)}];")
    for target, scrapers in sorted(arch.scrapes.items()):
        for scraper in sorted(scrapers):
            if target in running and scraper in running:
                out.append(f"  {_id(scraper)} -> {_id(target)} [style=dashed, color=\"#7a8699\", arrowsize=0.6];")
    for prober, _ in sorted({(p, OUTSIDE) for p, _ in arch.probes}):
        out.append(f"  {_id(prober)} -> {OUTSIDE} [label=\"probe https\", style=dashed, color=\"#7a8699\"];")
    out.append("}")
    return "\n".join(out) + "\n"


def mermaid(arch: Architecture) -> str:
    networks = sorted(arch.networks)
    running = {n: s for n, s in sorted(arch.services.items()) if s.replicas}
    out = ["flowchart LR"]
    if any(s.ports for s in running.values()) or arch.probes:
        out.append(f'  {OUTSIDE}(["outside"])')
    for network in networks:
        out.append(f'  subgraph {_id(network)}["network {network}"]')
        members = [s for s in running.values() if s.networks and s.networks[0] == network]
        out += [f'    {_id(s.name)}["{_service_label(s, networks).replace(chr(92) + "n", "<br>")}"]' for s in members]
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
    out += [f"  {_id(p)} -.->|probe https| {OUTSIDE}" for p in sorted({p for p, _ in arch.probes})]
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
    from infra.cli import run_project

    print(render(build(run_project(args)), args.format), end="")
    return 0


def add_diagram_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["dot", "svg", "mermaid"], default="dot")
