"""The reachability matrix of a booted stack, found from inside every container's network namespace.

For each running container of the stack, a throwaway probe (the python stand-in, read-only, no capability,
user nobody) is started with `--network container:<id>`: it shares the container's network namespace and nothing
else, so the target's own read-only root and processes are untouched. First each probe lists the TCP sockets
listening in its namespace (/proc/net/tcp and tcp6 are the reading process's namespace's); then each tries every
other container's every address with every port listening there, in parallel with short timeouts. The matrix
found (source container -> target container -> ports that accepted) is compared with the one the zones table
designs (`zones.shared_networks`): on a shared network every listening port of the target answers, on none
nothing does.

The second half holds only where the engine keeps networks apart. Swarm overlays do by construction (each is
its own namespace and VXLAN; a task has routes to its overlays only). Bridge networks rely on the rules dockerd
writes into iptables (DOCKER-ISOLATION-STAGE-1/2, and the DROP rules of an internal network): a dockerd started
with `--iptables=false` routes every bridge to every other through the host, internal or not
(`engine_isolates_bridges` finds out with two throwaway networks).

A connection accepted is not always the target's: a task on an overlay that is not internal also has
docker_gwbridge's default route, and where the host masquerades (dockerd's iptables management) a connection to
an address the host cannot route leaves the host, and this sandbox's egress proxy accepts every TCP connection.
Each attempt reports the address it left from; one that left through a gateway to an address the host has no
route to is set aside and counted (`from_outside`), not taken as reached.
"""

from __future__ import annotations

import ipaddress
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from platform_infra.components.zones import networks_of, shared_networks
from tests.live.store import PYTHON_IMAGE

CONNECT_TIMEOUT = 1.5
"""Seconds per connection attempt: a peer on a shared bridge or overlay answers in well under that; elsewhere
the attempt fails at once (an internal network has no route) or is dropped (Docker's isolation rules)."""
PARALLEL_PROBES = 6

LISTENERS = """
import json
found = set()
for path, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
    try:
        lines = open(path).read().splitlines()[1:]
    except OSError:
        continue
    for line in lines:
        fields = line.split()
        if fields[3] != "0A":  # TCP_LISTEN
            continue
        address, port = fields[1].split(":")
        raw = bytes.fromhex(address)
        # The kernel prints each 32-bit word in host (little-endian) order.
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
        import ipaddress
        ip = ipaddress.ip_address(raw)
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        found.add((str(ip), int(port, 16)))
print(json.dumps(sorted(found)))
"""

CONNECTS = """
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
attempts, timeout = json.loads(sys.argv[1]), float(sys.argv[2])
def attempt(item):
    ip, port = item
    try:
        with socket.create_connection((ip, port), timeout=timeout) as connection:
            return [ip, port, connection.getsockname()[0]]
    except OSError:
        return None
with ThreadPoolExecutor(64) as pool:
    print(json.dumps([r for r in pool.map(attempt, [tuple(a) for a in attempts]) if r]))
"""


def host_routes(table: str | None = None) -> list[ipaddress.IPv4Network]:
    """The networks this host routes to itself (every route of /proc/net/route but the default one): a bridge
    network's subnet is one, a Swarm overlay's never is (each lives in its own namespace)."""
    lines = (table if table is not None else Path("/proc/net/route").read_text()).splitlines()[1:]
    routes = []
    for line in lines:
        destination, mask = (bytes.fromhex(field)[::-1] for field in (line.split()[1], line.split()[7]))
        network = ipaddress.IPv4Network((int.from_bytes(destination, "big"), str(ipaddress.IPv4Address(mask))))
        if network.prefixlen:
            routes.append(network)
    return routes


def from_outside(target: str, left_from: str, on_shared_networks: set[str], routes: list[ipaddress.IPv4Network]) -> bool:
    """Whether an answer to `target` came from beyond this host rather than from the target: the connection left
    from none of the prober's addresses on a network it shares with the target (`left_from` is the address it
    left from; so it went through a gateway), and the host has no route of its own to the target, so that
    gateway sent it off the host. A sandbox whose egress proxy accepts every TCP connection answers those (this
    one does: a Swarm task on an overlay that is not internal has docker_gwbridge's default route)."""
    return left_from not in on_shared_networks and not any(ipaddress.IPv4Address(target) in n for n in routes)


@dataclass(frozen=True)
class Member:
    name: str
    """The container's hostname (e.g. worker-2)."""
    service: str
    id: str
    addresses: dict[str, str]
    """Zone -> the container's address on that zone's network."""


def hostname(container) -> str:
    return container.attrs["Config"]["Hostname"]


def members(containers, zone_of, name_of=hostname) -> list[Member]:
    """`containers`: docker-py containers; `zone_of(network name)`: the zone, or None for a network that is not
    the stack's (Swarm's docker_gwbridge and ingress); `name_of(container)`: what the matrix calls it."""
    found = []
    for c in containers:
        c.reload()
        addresses = {zone_of(net): spec["IPAddress"] for net, spec in c.attrs["NetworkSettings"]["Networks"].items()
                     if spec.get("IPAddress") and zone_of(net)}
        found.append(Member(name_of(c), c.labels["platform.service"], c.id, addresses))
    return sorted(found, key=lambda m: m.name)


def _probe(client, member: Member, name: str, command: list[str]) -> list:
    output = client.containers.run(
        PYTHON_IMAGE, command, name=name, network_mode=f"container:{member.id}", remove=True, read_only=True,
        cap_drop=["ALL"], security_opt=["no-new-privileges"], user="65534:65534", mem_limit="96m",
        labels={"platform.test": "reachability"}, stdout=True, stderr=False)
    return json.loads(output.decode())


def _listening(listeners: list[list], addresses: dict[str, str]) -> dict[str, set[int]]:
    """Zone -> ports a peer on that zone's network can connect to: sockets on every address or on that one."""
    reachable: dict[str, set[int]] = {zone: set() for zone in addresses}
    for ip, port in listeners:
        address = ipaddress.ip_address(ip)
        if address.is_loopback:
            continue
        for zone, own in addresses.items():
            if address.is_unspecified or ip == own:
                reachable[zone].add(port)
    return reachable


@dataclass
class Matrix:
    found: dict[str, dict[str, set[int]]]
    designed: dict[str, dict[str, set[int]]]
    members: list[Member]
    seconds: float
    outside: list[str]
    """`source -> target:port` answered from beyond the host (`from_outside`): not counted as reached."""

    def table(self) -> str:
        """Each container and what answered it; `!` marks what the zones do not design."""
        width = max(len(m.name) for m in self.members)
        lines = [f"{'from':<{width}}  reaches (target:ports; ! not designed), "
                 + ("found = designed" if self.found == self.designed else "found != designed")]
        for m in self.members:
            designed = self.designed[m.name]
            reached = ", ".join(f"{'' if designed.get(t) == p else '!'}{t}:{','.join(map(str, sorted(p)))}"
                                for t, p in sorted(self.found[m.name].items()))
            lines.append(f"{m.name:<{width}}  {reached or '(nothing)'}")
        lines.append(f"{len(self.members)} containers probed in {self.seconds:.1f} s")
        if self.outside:
            lines.append(f"{len(self.outside)} connections answered from beyond the host, not by their target "
                         f"(set aside), e.g. {self.outside[:2]}")
        return "\n".join(lines)


def reachability(client, containers, zone_of, prefix: str, name_of=hostname) -> Matrix:
    started = time.monotonic()
    stack = members(containers, zone_of, name_of)
    with ThreadPoolExecutor(PARALLEL_PROBES) as pool:
        listeners = dict(zip([m.name for m in stack], pool.map(
            lambda m: _probe(client, m, f"{prefix}-listen-{m.id[:12]}", ["python3", "-c", LISTENERS]), stack)))
    ports = {m.name: _listening(listeners[m.name], m.addresses) for m in stack}
    attempts = {source.name: sorted({(target.addresses[zone], port) for target in stack if target is not source
                                     for zone, zone_ports in ports[target.name].items() for port in zone_ports})
                for source in stack}
    by_address = {(m.addresses[zone], port): m.name for m in stack for zone, zone_ports in ports[m.name].items()
                  for port in zone_ports}
    with ThreadPoolExecutor(PARALLEL_PROBES) as pool:
        answered = dict(zip([m.name for m in stack], pool.map(
            lambda m: _probe(client, m, f"{prefix}-connect-{m.id[:12]}",
                             ["python3", "-c", CONNECTS, json.dumps(attempts[m.name]), str(CONNECT_TIMEOUT)]), stack)))
    found: dict[str, dict[str, set[int]]] = {m.name: {} for m in stack}
    outside, routes, named = [], host_routes(), {m.name: m for m in stack}
    for source, hits in answered.items():
        for ip, port, left_from in hits:
            target = named[by_address[(ip, port)]]
            shared = {address for zone, address in named[source].addresses.items() if zone in target.addresses}
            if from_outside(ip, left_from, shared, routes):
                outside.append(f"{source} -> {target.name}:{port}")
                continue
            found[source].setdefault(target.name, set()).add(port)
    designed: dict[str, dict[str, set[int]]] = {}
    for source in stack:
        designed[source.name] = {}
        for target in stack:
            if target is source:
                continue
            shared = [zone for zone in shared_networks(source.service, target.service) if zone in target.addresses]
            reached = set().union(*(ports[target.name][zone] for zone in shared)) if shared else set()
            if reached:
                designed[source.name][target.name] = reached
    return Matrix(found, designed, stack, time.monotonic() - started, outside)


def membership_differences(matrix: Matrix) -> dict[str, tuple[list[str], list[str]]]:
    """Containers whose networks are not the zones table gives their service: name -> (found, designed)."""
    return {m.name: (sorted(m.addresses), sorted(networks_of(m.service))) for m in matrix.members
            if sorted(m.addresses) != sorted(networks_of(m.service))}


def matrix_differences(matrix: Matrix) -> list[str]:
    """Each pair whose reachability differs from the design: `source -> target: found ports / designed ports`."""
    return [f"{source} -> {target}: found {sorted(matrix.found[source].get(target, ()))}, designed "
            f"{sorted(matrix.designed[source].get(target, ()))}"
            for source in sorted(matrix.found)
            for target in sorted(set(matrix.found[source]) | set(matrix.designed[source]))
            if matrix.found[source].get(target) != matrix.designed[source].get(target)]


def missing(matrix: Matrix) -> list[str]:
    """What the zones design that did not answer: `source -> target:port`."""
    return [f"{source} -> {target}:{port}" for source, targets in sorted(matrix.designed.items())
            for target, ports in sorted(targets.items())
            for port in sorted(ports - matrix.found[source].get(target, set()))]


def engine_isolates_bridges(client, prefix: str) -> bool:
    """Whether a container on one internal bridge network can not connect to a listener on another."""
    networks, containers = [], []
    try:
        for side in ("a", "b"):
            networks.append(client.networks.create(f"{prefix}-isolation-{side}", driver="bridge", internal=True))
        listener = client.containers.run(PYTHON_IMAGE, ["python3", "-m", "http.server", "8000"], detach=True,
                                         name=f"{prefix}-isolation-listener", network=networks[1].name,
                                         read_only=True, cap_drop=["ALL"], user="65534:65534")
        containers.append(listener)
        listener.reload()
        address = listener.attrs["NetworkSettings"]["Networks"][networks[1].name]["IPAddress"]
        script = ("import socket, sys, time\n"
                  "for _ in range(40):\n"  # the listener starting: refused, then answering, when not isolated
                  f"    try: socket.create_connection(({address!r}, 8000), timeout={CONNECT_TIMEOUT}); sys.exit(1)\n"
                  "    except ConnectionRefusedError: time.sleep(0.25)\n"
                  "    except OSError: sys.exit(0)\n"
                  "sys.exit(2)\n")
        prober = client.containers.run(PYTHON_IMAGE, ["python3", "-c", script], detach=True,
                                       name=f"{prefix}-isolation-prober", network=networks[0].name,
                                       read_only=True, cap_drop=["ALL"], user="65534:65534")
        containers.append(prober)
        code = prober.wait(timeout=60)["StatusCode"]
        if code == 2:
            raise RuntimeError("the isolation check's listener never answered nor was unreachable")
        return code == 0
    finally:
        for container in containers:
            container.remove(force=True)
        for network in networks:
            network.remove()
