"""`infra diagram`: the architecture drawn from the stack's resource graph, rendered by Graphviz."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from infra.cli import REPO_ROOT, main
from infra.mockrun import load_project, run_program
from tests.conftest import require_tool
from tests.helpers import labels_of, running_containers

COMMITTED_SVG = REPO_ROOT / "docs" / "architecture-prod.svg"
SVG = "{http://www.w3.org/2000/svg}"


def draw(capsys, stack: str, output_format: str) -> str:
    code = main(["diagram", "--stack", stack, "--format", output_format])
    out = capsys.readouterr().out
    assert code == 0
    return out


def svg_parts(svg: str) -> tuple[set[str], set[str], set[str], str]:
    """Node titles, cluster titles, edge titles and all text of a Graphviz SVG."""
    root = ET.fromstring(svg)
    titles = {kind: set() for kind in ("node", "cluster", "edge")}
    for group in root.iter(f"{SVG}g"):
        kind = group.get("class")
        title = group.find(f"{SVG}title")
        if kind in titles and title is not None:
            titles[kind].add(title.text)
    text = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    return titles["node"], titles["cluster"], titles["edge"], text


def test_committed_prod_diagram_is_what_the_stack_draws(capsys):
    require_tool("dot", "graphviz")
    drawn = draw(capsys, "prod", "svg")
    assert COMMITTED_SVG.read_text() == drawn, (
        "docs/architecture-prod.svg is stale: infra diagram --stack prod --format svg > docs/architecture-prod.svg"
    )


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_service_network_and_published_port_is_drawn_once(capsys, stack):
    require_tool("dot", "graphviz")
    run = run_program(load_project(REPO_ROOT, stack), stack)
    containers = running_containers(run.resources)
    services = {labels_of(inputs)["platform.service"] for inputs in containers.values()}
    networks = {r.inputs["name"] for r in run.resources if r.type == "docker:index/network:Network"}
    nodes, clusters, edges, text = svg_parts(draw(capsys, stack, "svg"))
    assert {node.replace("_", "-") for node in nodes} - {"outside"} >= services
    assert len([n for n in nodes if n.replace("_", "-") in services]) == len(services)
    assert clusters == {f"cluster_{network}" for network in networks}
    for inputs in containers.values():
        for port in inputs.get("ports") or []:
            assert f"{port['ip']}:{int(port['external'])}->{int(port['internal'])}" in text
    workers = sum(labels_of(i)["platform.service"] == "worker" for i in containers.values())
    assert (f"x{workers} replicas" in text) == (workers > 1)
    assert {"outside->load_balancer", "load_balancer->api_gateway", "orchestrator->kafka", "worker->postgres",
            "query_service->clickhouse", "grafana->prometheus", "prometheus->alertmanager",
            "prometheus->worker", "blackbox_exporter->outside"} <= edges


def test_flows_come_from_the_wired_connections(capsys):
    dot = draw(capsys, "prod", "dot")
    assert 'orchestrator -> kafka [label="9092"]' in dot
    assert 'worker -> postgres [label="5432"]' in dot  # the host in the JDBC URL
    assert 'log_aggregator -> clickhouse [label="8123"]' in dot
    assert 'kafka_exporter -> kafka [label="9092"]' in dot  # --kafka.server in its entrypoint
    assert "api_gateway -> redis" in dot  # SPRING_DATA_REDIS_HOST
    assert "log_aggregator -> postgres" not in dot and "api_gateway -> prometheus" not in dot
    assert "prometheus -> worker [style=dashed" in dot  # a scrape target of the uploaded prometheus.yml


def test_mermaid_has_a_subgraph_per_network_and_the_same_edges(capsys):
    chart = draw(capsys, "prod", "mermaid")
    assert chart.startswith("flowchart LR\n")
    for network in ("app", "data", "edge", "egress"):
        assert f'subgraph orchestration_prod_{network}["network orchestration-prod-{network}"]' in chart
    assert "load_balancer -->|8080| api_gateway" in chart and "prometheus -.->|scrape| worker" in chart


def test_drawing_is_deterministic(capsys):
    assert draw(capsys, "staging", "dot") == draw(capsys, "staging", "dot")


def test_bad_input_exits_2(capsys):
    assert main(["diagram", "--stack", "nosuch"]) == 2
    assert "nosuch" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["diagram", "--stack", "prod", "--format", "png"])
    assert exit_info.value.code == 2
