"""Stand-in for cAdvisor v0.49.1 (no cAdvisor in Debian, no registry here): the container series the stack's
alerts read, measured from the host's cgroup files of each running Docker container.

Containers are found as cAdvisor finds them, in the cgroup tree under /sys/fs/cgroup (cgroup v1: the memory, cpu
and cpuacct controllers; v2: the unified tree), at docker/<id> (cgroupfs driver) or system.slice/docker-<id>.scope
(systemd driver); the Docker API at --docker (default unix:///var/run/docker.sock; tcp://host:port through a
socket proxy) names each with the calls cAdvisor makes (container/docker client.go, docker.go, factory.go,
handler.go): GET /_ping (API version negotiation), /info and /version at start, /containers/<id>/json per
container. It lists no containers through the API, as cAdvisor does not. Series, named and labelled as cAdvisor's
metrics/prometheus.go does (id, name, image): container_memory_usage_bytes, container_memory_working_set_bytes
(usage less inactive file pages), container_spec_memory_limit_bytes (0 without a limit),
container_cpu_usage_seconds_total{cpu="total"}, container_spec_cpu_quota and container_spec_cpu_period (only with
a quota), container_spec_cpu_shares, container_start_time_seconds, container_last_seen; /healthz. Everything
else cAdvisor measures (network, filesystem, disk I/O, processes) is not measured by the stand-in.
"""

from __future__ import annotations

import datetime
import http.client
import json
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
VERSION = "v0.49.1"


ENDPOINT = "unix:///var/run/docker.sock"
"""cAdvisor's --docker flag (container/docker/factory.go ArgDockerEndpoint)."""
API_VERSION = ""
"""The negotiated version prefix (/v1.NN), as the docker client's WithAPIVersionNegotiation."""


class DockerSocket(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.socket_path)


def connection() -> http.client.HTTPConnection:
    if ENDPOINT.startswith("unix://"):
        return DockerSocket(ENDPOINT.removeprefix("unix://"))
    if ENDPOINT.startswith("tcp://"):
        return http.client.HTTPConnection(ENDPOINT.removeprefix("tcp://"), timeout=10)
    raise SystemExit(f"F0000 cadvisor.go] --docker: unsupported endpoint {ENDPOINT!r} (unix:// or tcp://)")


def request(method: str, path: str) -> tuple[int, bytes, dict[str, str]]:
    conn = connection()
    try:
        conn.request(method, API_VERSION + path)
        response = conn.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def docker(path: str) -> object:
    status, body, _ = request("GET", path)
    if status != 200:
        raise OSError(f"Docker API GET {API_VERSION}{path}: {status} {body[:200]!r}")
    return json.loads(body)


def negotiate() -> None:
    """The docker client's version negotiation (client/ping.go: HEAD /_ping, its API-Version header)."""
    global API_VERSION
    status, _, headers = request("HEAD", "/_ping")
    if status != 200:
        raise OSError(f"Docker API HEAD /_ping: {status}")
    API_VERSION = f"/v{headers['api-version']}" if "api-version" in headers else ""


def container_ids() -> list[str]:
    """Docker containers' IDs from their cgroups (cgroupfs or systemd driver, v1 or v2)."""
    roots = [CGROUP] if (CGROUP / "cgroup.controllers").exists() else [CGROUP / "memory"]
    found = []
    for root in roots:
        found += [path.name for path in (root / "docker").glob("*") if path.is_dir() and len(path.name) == 64]
        found += [path.name.removeprefix("docker-").removesuffix(".scope")
                  for path in (root / "system.slice").glob("docker-*.scope")]
    return sorted(set(found))


def read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_dir(controller: str | None, container_id: str) -> Path | None:
    base = CGROUP / controller if controller else CGROUP
    for relative in (f"docker/{container_id}", f"system.slice/docker-{container_id}.scope"):
        if (base / relative).is_dir():
            return base / relative
    return None


def stat(text: str | None) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in (text or "").splitlines() if len(line.split()) == 2)}


def measure(container_id: str) -> dict[str, float] | None:
    """Memory and CPU of one container from its cgroup files; None when none is found."""
    unified = (CGROUP / "cgroup.controllers").exists()
    if unified:
        group = cgroup_dir(None, container_id)
        if group is None:
            return None
        usage = int(read(group / "memory.current") or 0)
        limit = read(group / "memory.max") or "max"
        inactive = stat(read(group / "memory.stat")).get("inactive_file", 0)
        quota, _, period = (read(group / "cpu.max") or "max 100000").partition(" ")
        return {"usage": usage, "working_set": max(0, usage - inactive),
                "limit": 0 if limit == "max" else int(limit),
                "cpu_seconds": stat(read(group / "cpu.stat")).get("usage_usec", 0) / 1e6,
                "quota": 0 if quota == "max" else int(quota), "period": int(period or 100000),
                "shares": int(read(group / "cpu.weight") or 100)}
    # cpu and cpuacct are one hierarchy mounted twice (or linked to cpu,cpuacct): either name reaches it.
    memory, cpu, cpuacct = (cgroup_dir(name, container_id) for name in ("memory", "cpu", "cpuacct"))
    if memory is None or cpu is None or cpuacct is None:
        return None
    usage = int(read(memory / "memory.usage_in_bytes") or 0)
    limit = int(read(memory / "memory.limit_in_bytes") or 0)
    inactive = stat(read(memory / "memory.stat")).get("total_inactive_file", 0)
    return {"usage": usage, "working_set": max(0, usage - inactive),
            # The kernel's "no limit" is the largest page-aligned value.
            "limit": 0 if limit >= 1 << 62 else limit,
            "cpu_seconds": int(read(cpuacct / "cpuacct.usage") or 0) / 1e9,
            "quota": max(0, int(read(cpu / "cpu.cfs_quota_us") or -1)),
            "period": int(read(cpu / "cpu.cfs_period_us") or 100000),
            "shares": int(read(cpu / "cpu.shares") or 1024)}


def started(state: dict) -> float:
    text = state.get("StartedAt", "")[:26].rstrip("Z")
    try:
        return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC).timestamp()
    except ValueError:
        return 0.0


def exposition() -> str:
    families: dict[str, tuple[str, str, list[tuple[dict[str, str], float]]]] = {
        name: (kind, text, []) for name, kind, text in (
            ("container_memory_usage_bytes", "gauge", "Current memory usage in bytes, including all memory regardless of when it was accessed"),
            ("container_memory_working_set_bytes", "gauge", "Current working set in bytes."),
            ("container_spec_memory_limit_bytes", "gauge", "Memory limit for the container."),
            ("container_cpu_usage_seconds_total", "counter", "Cumulative cpu time consumed in seconds."),
            ("container_spec_cpu_quota", "gauge", "CPU quota of the container."),
            ("container_spec_cpu_period", "gauge", "CPU period of the container."),
            ("container_spec_cpu_shares", "gauge", "CPU share of the container."),
            ("container_start_time_seconds", "gauge", "Start time of the container since unix epoch in seconds."),
            ("container_last_seen", "gauge", "Last time a container was seen by the exporter"))}
    now = time.time()
    for container_id in container_ids():
        values = measure(container_id)
        if values is None:
            continue
        inspected = docker(f"/containers/{container_id}/json")
        labels = {"id": f"/docker/{container_id}", "image": inspected.get("Config", {}).get("Image", ""),
                  "name": inspected.get("Name", "").lstrip("/")}
        state = inspected.get("State", {})
        def add(name: str, value: float, extra: dict[str, str] | None = None, labels: dict = labels) -> None:
            families[name][2].append(({**labels, **(extra or {})}, value))

        add("container_memory_usage_bytes", values["usage"])
        add("container_memory_working_set_bytes", values["working_set"])
        add("container_spec_memory_limit_bytes", values["limit"])
        add("container_cpu_usage_seconds_total", values["cpu_seconds"], {"cpu": "total"})
        if values["quota"]:
            add("container_spec_cpu_quota", values["quota"])
            add("container_spec_cpu_period", values["period"])
        add("container_spec_cpu_shares", values["shares"])
        add("container_start_time_seconds", started(state))
        add("container_last_seen", now)
    lines = ['# HELP cadvisor_version_info A metric with a constant \'1\' value labeled by version.',
             "# TYPE cadvisor_version_info gauge", f'cadvisor_version_info{{cadvisorVersion="{VERSION}"}} 1']
    for name, (kind, text, samples) in families.items():
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            rendered = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            lines.append(f"{name}{{{rendered}}} {value!r}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    global ENDPOINT
    port = 8080
    for arg in argv:
        name, _, value = arg.lstrip("-").partition("=")
        if name == "port":
            port = int(value)
        elif name == "docker":
            ENDPOINT = value
    # As cAdvisor with --docker_only: no start without the Docker API (factory.go Register: Info, ServerVersion).
    negotiate()
    docker("/info")
    docker("/version")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/healthz":
                return self.reply(200, "ok", "text/plain")
            if path == "/metrics":
                try:
                    return self.reply(200, exposition(), "text/plain; version=0.0.4")
                except OSError as exc:
                    print(f"E0000 manager.go] stand-in: cannot list containers: {exc}", file=sys.stderr, flush=True)
                    return self.reply(500, f"{exc}\n", "text/plain")
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

    print(f"I0000 cadvisor.go] Starting cAdvisor version: {VERSION} (stand-in) on port {port}", file=sys.stderr,
          flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
