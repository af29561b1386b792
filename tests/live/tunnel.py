"""The operator's way into a live Swarm stack: its Prometheus, Alertmanager and Grafana publish no port and its
overlay networks are not attachable (components/swarm.py), so neither this host nor a container can join them.
A forwarder runs as a Swarm service on their networks (as an operator's jump service would) and publishes one
loopback port per service in host mode (Swarm's routing mesh needs IPVS, which this kernel may lack); each
connection is piped to the service's name there, which Docker's DNS answers with its task's address. Plain TCP:
the commands speak HTTP to the services themselves, as on the Docker runtime at their container addresses."""

from __future__ import annotations

import json
import time
import urllib.request

import docker
from docker.types import EndpointSpec, NetworkAttachmentConfig

from tests.live.plan import free_port
from tests.live.store import PYTHON_IMAGE

FORWARDER = r'''
import asyncio, json, sys
ROUTES = {int(port): tuple(target) for port, target in json.loads(sys.argv[1]).items()}
async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
def handler(host, port):
    async def handle(reader, writer):
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True)
    return handle
async def main():
    servers = [await asyncio.start_server(handler(*target), "0.0.0.0", port) for port, target in ROUTES.items()]
    await asyncio.gather(*(server.serve_forever() for server in servers))
asyncio.run(main())
'''


class Tunnel:
    """`url(service, port)`: the loopback URL forwarded to the stack's `service` at `port`."""

    def __init__(self, stack, services: dict[str, int]):
        self.stack, self.client = stack, stack.client
        self.name = f"{stack.prefix}-operator-tunnel"
        self.targets = {service: (stack.local(f"{stack.stack_prefix}-{service}"), port)
                        for service, port in services.items()}
        self.host_ports = {service: free_port() for service in services}

    def url(self, service: str, port: int) -> str:
        assert self.targets[service][1] == port, (service, port)
        return f"http://127.0.0.1:{self.host_ports[service]}"

    def networks(self) -> list[str]:
        """A network every target is on (else each one's first), and the egress network: a task publishes a
        port only through a network with a way out (docker_gwbridge), which internal ones have not."""
        of = []
        for name, _ in self.targets.values():
            inputs = next(s for s in self.stack.services() if s["name"] == name)
            of.append([self.stack.ids[n["id"]] for n in inputs["taskSpec"]["networksAdvanceds"]])
        common = [n for n in of[0] if all(n in other for other in of[1:])]
        chosen = common[:1] or list(dict.fromkeys(networks[0] for networks in of))
        egress = self.client.networks.get(self.stack.local(f"{self.stack.stack_prefix}-egress")).id
        return chosen + ([egress] if egress not in chosen else [])

    def start(self) -> None:
        routes = {str(self.targets[s][1]): self.targets[s] for s in self.targets}
        ports = {self.host_ports[s]: (self.targets[s][1], "tcp", "host") for s in self.targets}
        # init: Python as PID 1 would ignore the stop signal until the grace period's SIGKILL.
        self.client.services.create(PYTHON_IMAGE, ["python", "-u", "-c", FORWARDER, json.dumps(routes)],
                                    name=self.name, init=True,
                                    networks=[NetworkAttachmentConfig(n) for n in self.networks()],
                                    endpoint_spec=EndpointSpec(mode="dnsrr", ports=ports))
        deadline = time.monotonic() + 90
        while not self._answers():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the operator tunnel does not answer: {self._logs()}")
            time.sleep(1)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url("prometheus", self.targets["prometheus"][1]) + "/-/ready",
                                        timeout=5) as answer:
                return answer.status == 200
        except OSError:
            return False

    def _logs(self) -> str:
        containers = self.client.containers.list(all=True, filters={"label": f"com.docker.swarm.service.name={self.name}"})
        return "\n".join(c.logs(tail=20).decode(errors="replace") for c in containers)

    def remove(self) -> None:
        try:
            self.client.api.remove_service(self.name)
        except docker.errors.NotFound:
            return
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.client.api.containers(
                all=True, filters={"label": f"com.docker.swarm.service.name={self.name}"}):
            time.sleep(1)
