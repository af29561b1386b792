"""`infra diagram`: the architecture drawn from the stack's resource graph, rendered by Graphviz."""

from __future__ import annotations

import html
import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from platform_infra.components.zones import ZONES, networks_of
from platform_infra.infra.cli import REPO_ROOT, main
from platform_infra.infra.diagram import EDGES, ROLES
from platform_infra.infra.mockrun import load_project, run_program
from tests.conftest import require_tool
from tests.helpers import labels_of, running_containers

COMMITTED_SVG = REPO_ROOT / "docs" / "architecture-prod.svg"
SVG = "{http://www.w3.org/2000/svg}"

# prod runs on Docker: no autoscaler, so no network for its socket proxy.
DOCKER_ZONES = [zone for zone in ZONES if zone != "autoscaler-engine"]


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
    external = {"outside", "public", "email", "slack", "legend"} | {n for n in nodes if n.startswith("store_")}
    notes = {network.replace("-", "_") for network in networks}  # an empty network says who is attached
    assert {node.replace("_", "-") for node in nodes - external - notes} == services
    assert clusters == {f"cluster_{network}" for network in networks}
    for inputs in containers.values():
        for port in inputs.get("ports") or []:
            assert f"{port['ip']}:{int(port['external'])}->{int(port['internal'])}" in text
    workers = sum(labels_of(i)["platform.service"] == "worker" for i in containers.values())
    assert (f"x{workers} replicas" in text) == (workers > 1)
    assert {"outside->load_balancer", "load_balancer->api_gateway", "orchestrator->kafka", "worker->postgres",
            "query_service->clickhouse", "grafana->prometheus", "prometheus->alertmanager",
            "blackbox_exporter->public", "alertmanager->email", "alertmanager->slack"} <= edges


def test_every_flow_that_leaves_the_host_is_drawn(capsys):
    """Backups: PostgreSQL's WAL archiving and both backup jobs reach the store through the gateway, the
    gateway the store; alerts: Alertmanager to e-mail and Slack; the probe to the public endpoints."""
    require_tool("dot", "graphviz")
    nodes, _, edges, text = svg_parts(draw(capsys, "prod", "svg"))
    store = "store_s3_eu_central_1_amazonaws_com"
    assert {"postgres->s3_gateway", "postgres_backup->s3_gateway", "clickhouse_backup->s3_gateway",
            f"s3_gateway->{store}", "alertmanager->email", "alertmanager->slack",
            "blackbox_exporter->public"} <= edges
    assert "smtp.example.com:587" in text and "orchestration.example.com" in text
    # The dev stack declares no store: no gateway, nothing drawn to one.
    nodes, _, edges, _ = svg_parts(draw(capsys, "dev", "svg"))
    assert not any(node.startswith("store_") for node in nodes) and "s3_gateway" not in nodes


def test_roles_have_their_shapes_and_the_legend_names_each(capsys):
    dot = draw(capsys, "prod", "dot")
    assert '    postgres_backup [label="postgres-backup", shape=box3d' in dot, "a backup job is a job"
    assert '    postgres [label="postgres\\nport 5432\\nalso on backup", shape=cylinder' in dot
    legend = dot.split("  legend [label=", 1)[1].split("\n", 1)[0]
    for shape, _, meaning in ROLES.values():
        assert f">{shape}<" in legend and html.escape(meaning) in legend
    for _, _, _, meaning in EDGES.values():
        assert html.escape(meaning) in legend
    assert "scraped by Prometheus" in legend and "penwidth=2.5" in dot


# Run in the page: every problem a reader would see at 1400 px, as measured by the browser's own layout.
LAYOUT_CHECK = """<script>
const problems = [];
const svg = document.querySelector("svg");
const box = (e) => e.getBoundingClientRect();
const slack = 1;
const inside = (a, b) => a.left >= b.left - slack && a.right <= b.right + slack && a.top >= b.top - slack
  && a.bottom <= b.bottom + slack;
const overlap = (a, b) => a.left < b.right - slack && b.left < a.right - slack && a.top < b.bottom - slack
  && b.top < a.bottom - slack;
if (box(svg).width > 1400) problems.push("wider than 1400 px: " + box(svg).width);
for (const node of svg.querySelectorAll("g.node")) {
  const shape = box(node.querySelector("polygon, ellipse, path"));
  for (const text of node.querySelectorAll("text")) {
    if (!inside(box(text), shape)) problems.push("text leaves its node: " + text.textContent);
  }
}
// Texts of different things (a node's lines share one label) stay clear of each other.
const texts = [...svg.querySelectorAll("text")];
for (let i = 0; i < texts.length; i++) {
  for (let j = i + 1; j < texts.length; j++) {
    if (texts[i].parentNode !== texts[j].parentNode && overlap(box(texts[i]), box(texts[j]))) {
      problems.push("texts overlap: " + texts[i].textContent + " / " + texts[j].textContent);
    }
  }
}
for (const edge of svg.querySelectorAll("g.edge")) {
  const path = edge.querySelector("path");
  const matrix = path.getScreenCTM();
  for (const text of edge.querySelectorAll("text")) {
    const b = box(text);
    const cx = (b.left + b.right) / 2, cy = (b.top + b.bottom) / 2;
    let nearest = Infinity;
    for (let at = 0; at <= path.getTotalLength(); at += 2) {
      const p = path.getPointAtLength(at).matrixTransform(matrix);
      nearest = Math.min(nearest, Math.hypot(p.x - cx, p.y - cy));
    }
    if (nearest > b.width / 2 + 12) problems.push("label away from its edge: " + text.textContent);
  }
}
document.body.setAttribute("data-problems", JSON.stringify(problems));
</script>"""


def layout_problems(chromium: str, svg: str, directory: Path) -> list[str]:
    page = directory / "diagram.html"
    page.write_text(f'<!DOCTYPE html><html><body style="margin:0">{svg[svg.index("<svg"):]}{LAYOUT_CHECK}</body></html>')
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                          "--window-size=1400,1300", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return json.loads(html.unescape(re.search(r'data-problems="([^"]*)"', dom).group(1)))


def test_the_diagram_reads_at_1400_px_in_a_browser(tmp_path):
    """The committed diagram in headless Chromium at 1400 px: no wider, every text inside its node and clear of
    every other, each edge label beside its edge; and a screenshot of it for a person to look at."""
    chromium = require_tool("chromium")
    svg = COMMITTED_SVG.read_text()
    assert layout_problems(chromium, svg, tmp_path) == []
    shot = tmp_path / "diagram.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--hide-scrollbars", "--window-size=1400,1300", f"--screenshot={shot}",
                    (tmp_path / "diagram.html").as_uri()], capture_output=True, timeout=120, check=True)
    assert shot.read_bytes()[16:24] == (1400).to_bytes(4, "big") + (1300).to_bytes(4, "big")  # PNG IHDR


def test_the_layout_check_sees_what_a_reader_would(tmp_path):
    """A label pushed off its edge, a node's text past its border and an over-wide drawing are all reported."""
    chromium = require_tool("chromium")
    svg = COMMITTED_SVG.read_text().replace('width="1044pt"', 'width="1500pt"', 1)
    svg = re.sub(r'(<title>outside&#45;&gt;load_balancer</title>.*?<text[^>]* x=")([\d.]+)',
                 lambda m: m.group(1) + str(float(m.group(2)) + 300), svg, count=1, flags=re.DOTALL)
    svg = re.sub(r'(<title>kafka</title>.*?<text[^>]* x=")([\d.]+)', lambda m: m.group(1) + str(float(m.group(2)) + 80),
                 svg, count=1, flags=re.DOTALL)
    problems = layout_problems(chromium, svg, tmp_path)
    assert any(p.startswith("wider than 1400 px") for p in problems)
    assert any(p.startswith("label away from its edge: 0.0.0.0:80") for p in problems)
    assert "text leaves its node: kafka" in problems


def test_flows_come_from_the_wired_connections(capsys):
    dot = draw(capsys, "prod", "dot")
    assert "  orchestrator -> kafka [" in dot
    assert "  worker -> postgres [" in dot  # the host in the JDBC URL
    assert "  log_aggregator -> clickhouse [" in dot
    assert "  kafka_exporter -> kafka [" in dot  # --kafka.server in its entrypoint
    assert "api_gateway -> redis" in dot  # SPRING_DATA_REDIS_HOST
    assert "log_aggregator -> postgres" not in dot and "api_gateway -> prometheus" not in dot
    # The port a flow names is drawn once, on the service that listens on it.
    assert '    kafka [label="kafka\\nport 9092"' in dot
    assert '    clickhouse [label="clickhouse\\nport 8123"' in dot
    # Scrape targets of the uploaded prometheus.yml get a thick outline; what is not scraped, none.
    assert re.search(r"    worker \[label=[^\n]*penwidth=2.5\]", dot)
    assert not re.search(r"    postgres_backup \[label=[^\n]*penwidth=2.5", dot)


def test_mermaid_has_a_subgraph_per_network_and_the_same_edges(capsys):
    chart = draw(capsys, "prod", "mermaid")
    assert chart.startswith("flowchart LR\n")
    for network in DOCKER_ZONES:
        assert f'subgraph orchestration_prod_{network.replace("-", "_")}["network orchestration-prod-{network}"]' in chart
    assert "load_balancer -->|8080| api_gateway" in chart and "prometheus -.->|scrape| worker" in chart
    assert "postgres ==>|backups| s3_gateway" in chart and "alertmanager -->|notify| slack" in chart


def test_drawing_is_deterministic(capsys):
    assert draw(capsys, "staging", "dot") == draw(capsys, "staging", "dot")


def test_bad_input_exits_2(capsys):
    assert main(["diagram", "--stack", "nosuch"]) == 2
    assert "nosuch" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["diagram", "--stack", "prod", "--format", "png"])
    assert exit_info.value.code == 2


def test_each_zone_is_a_cluster_named_by_its_zone_with_its_reason(capsys):
    """The zones of components/zones.py, in the table's order; a service drawn in its first zone and naming the
    others it joins."""
    dot = draw(capsys, "prod", "dot")
    clusters = re.findall(r'subgraph "cluster_orchestration-prod-([\w-]+)" \{\n    label="network ([\w-]+) \((\w+)', dot)
    assert [(network, zone) for network, zone, _ in clusters] == [(zone, zone) for zone in DOCKER_ZONES]
    assert {zone: kind == "internal" for _, zone, kind in clusters} == {z: ZONES[z].internal for z in DOCKER_ZONES}
    for zone in DOCKER_ZONES:
        spec = ZONES[zone]
        assert f'tooltip="{spec.why}"' in dot, zone
    assert '    api_gateway [label="api-gateway\\nx2 replicas\\nport 8080\\nalso on ' + ", ".join(
        networks_of("api-gateway")[1:]) + '"' in dot
    front = dot.split('subgraph "cluster_orchestration-prod-front" {', 1)[1].split("  }", 1)[0]
    assert "api_gateway [" in front and "orchestrator [" not in front
