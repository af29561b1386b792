"""The hardened edge against a bare nginx proxy in front of the same upstream, under the same load.

    python benchmarks/edge_vs_bare_nginx.py --edge https://127.0.0.1:PORT --host orchestration.example.com \
        --network NETWORK --upstream api-gateway-1:8080 --upstream api-gateway-2:8080 \
        [--path /actuator/health] [--requests 3000] [--duration 20] [--concurrency 8]

The load is `infra drill load`'s (infra/daytwo/drill_load.py: closed-loop, bounded). The edge is the stack's own
(TLS checked against SSL_CERT_FILE for `--host`, its headers, its rate limits); the bare proxy is nginx (the
image the stack's edge runs) with nothing but `proxy_pass` to the same upstream servers, over plain HTTP on a
loopback port (the default bridge), joined to `--network` (where the upstream answers), removed after. Both answer the same
path from the same replicas; it prints each one's figures and the edge's p95 and throughput as a ratio of the
bare proxy's. Every client shares one address, so the edge's rate limit refuses most of a fast load with 429
(answered by nginx alone, cheaply): the ratio is given for every answer and for the 2xx ones (the requests that
reached the upstream through each proxy).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import socket
import sys
import tarfile
import time
import uuid
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from platform_infra.infra.daytwo.drill_load import edge_pool, run_load, summary

NGINX_IMAGE = "nginx:1.26.3-bookworm"
"""The image the live stack's edge runs (tests/live/images.py builds it from Debian's nginx)."""


def bare_config(upstreams: list[str]) -> str:
    servers = "".join(f"    server {u};\n" for u in upstreams)
    return ("events {}\nhttp {\n  access_log off;\n  upstream up {\n" + servers + "    keepalive 32;\n  }\n"
            "  server {\n    listen 80;\n    location / {\n      proxy_pass http://up;\n"
            "      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }\n  }\n}\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_bare(client: docker.DockerClient, network: str, upstreams: list[str]) -> tuple[str, int]:
    """The bare proxy running on a loopback port; removed again when it does not start."""
    name, port = f"bench-bare-nginx-{uuid.uuid4().hex[:6]}", free_port()
    # On the default bridge for its published port (the stack's app network is internal: no port is published
    # from it), and on the app network to reach the replicas by name.
    container = client.containers.create(NGINX_IMAGE, name=name, ports={"80/tcp": ("127.0.0.1", port)})
    try:
        client.api.connect_container_to_network(container.id, network)
        start(container, upstreams, port)
    except BaseException:
        client.api.remove_container(name, force=True)
        raise
    return name, port


def start(container, upstreams: list[str], port: int) -> None:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        data = bare_config(upstreams).encode()
        info = tarfile.TarInfo("nginx.conf")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    container.put_archive("/etc/nginx", archive.getvalue())
    container.start()
    for _ in range(30):
        container.reload()
        if container.status == "running":
            # docker-proxy accepts on the port before nginx listens: an HTTP answer, any status, is the sign.
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                probe.request("GET", "/")
                probe.getresponse()
                return
            except (OSError, http.client.HTTPException):
                pass
            finally:
                probe.close()
        time.sleep(0.5)
    raise RuntimeError(f"the bare nginx did not start: {container.logs().decode()[-2000:]}")


def compare(client: docker.DockerClient, edge: str, host: str, network: str, upstreams: list[str], path: str,
            requests: int, duration: float, concurrency: int) -> dict:
    name, port = start_bare(client, network, upstreams)
    try:
        bare_url = f"http://127.0.0.1:{port}"
        runs = {}
        for label, url in (("bare", bare_url), ("edge", edge)):
            pool = edge_pool(url, host, concurrency)
            pool.request("GET", path, headers={"Host": host})  # warm up: connections and the JIT of the upstream
            time.sleep(2)  # the edge's bucket refilled
            runs[label] = summary(run_load(pool, path, host, requests, duration, concurrency))
    finally:
        client.api.remove_container(name, force=True)

    def ratio(key: str) -> float | None:
        edge_value, bare_value = runs["edge"][key], runs["bare"][key]
        return round(edge_value / bare_value, 2) if edge_value and bare_value else None

    return {**runs, "ratio": {"p95": ratio("p95_ms"), "p95_2xx": ratio("p95_ms_2xx"),
                              "throughput": ratio("throughput_per_second")}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edge", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--network", required=True)
    parser.add_argument("--upstream", action="append", required=True)
    parser.add_argument("--path", default="/actuator/health")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    result = compare(docker.from_env(), args.edge, args.host, args.network, args.upstream, args.path,
                     min(args.requests, 20000), min(args.duration, 300), min(args.concurrency, 64))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
