"""The Docker Engine API through a socket proxy: HAProxy holding the socket, passing only the calls its one
client makes and refusing every other with 403 (as tecnativa/docker-socket-proxy does, with ACLs on method
and path). A read-only bind of the socket restricts nothing (the Engine API writes over a read-only socket);
this does.

One proxy per client, on an internal network of its own that only it and its client join: a proxy cannot tell
its clients apart, so a shared one would pass each the other's calls. The calls are data here, the one place
the rendered haproxy.cfg and the policy pack (ENG-001, ENG-002) both read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

import pulumi

from platform_infra.components.runtime import Deployment, Runtime
from platform_infra.components.spec import (
    FILES_DIR,
    BindMount,
    ComponentArgsError,
    ContainerSpec,
    FileSpec,
    Healthcheck,
    validate_spec,
)

DOCKER_SOCKET = "/var/run/docker.sock"
PROXY_PORT = 2375
PROXY_CONFIG = f"{FILES_DIR}/haproxy.cfg"
HEALTH_URI = "/proxy-health"
"""Answered by HAProxy itself (monitor-uri), never forwarded: the healthcheck needs no Engine API call."""
PROXY_UID = 99
"""The haproxy user of the official image (docker-library/haproxy Dockerfile: useradd --uid 99)."""
PROXY_SERVICE = re.compile(r"^(?P<client>[a-z]+)-socket-proxy$")
"""The proxy's service name names its client (a key of CLIENT_WRITES): the pack judges its haproxy.cfg by it."""
READ_METHODS = frozenset({"GET", "HEAD"})
API_VERSION = "(/v[0-9]+[.][0-9]+)?"
"""The optional API version prefix of every Engine API path (`/v1.47/...`)."""
ID = "[a-zA-Z0-9][a-zA-Z0-9_.-]*"
"""A container ID or name as one path segment (never `..`)."""
NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]*$")
"""A Swarm service name the proxy passes: no regex or path character, and never an ID prefix of another
service (IDs have no `-`), so the engine resolves it to that service only."""
WAIVER_REASON = ("HAProxy holds the Docker socket for {client} and passes only its Engine API calls "
                 "(ENG-002 checks its allow-list); every other call gets 403")


@dataclass(frozen=True)
class EngineCall:
    methods: tuple[str, ...]
    path: str
    """Regex of the path after the optional version prefix, anchored by the proxy."""
    why: str
    """Which client code makes the call."""

    def regex(self) -> str:
        return f"^{API_VERSION}{self.path}$"


def autoscaler_calls(service: str) -> tuple[EngineCall, ...]:
    """What `infra autoscale` (infra/daytwo/autoscale.py) sends through the Docker SDK 7.x."""
    if not NAME.match(service):
        raise ComponentArgsError(f"socket proxy: service {service!r} must match {NAME.pattern}")
    return (
        # docker/api/client.py APIClient(version=None): _retrieve_server_version() -> GET /version.
        EngineCall(("GET",), "/version", "Docker SDK: the API version (DockerClient without a version)"),
        # docker/api/service.py inspect_service, also update_service(fetch_current_spec=True) before it posts.
        EngineCall(("GET",), f"/services/{service}", "SwarmService.read: replicas, version, pause label"),
        # docker/api/service.py update_service: POST /services/{id}/update?version=N.
        EngineCall(("POST",), f"/services/{service}/update", "SwarmService.scale: the replicas"),
    )


# google/cadvisor v0.49.1 container/docker: client.go (NewClientWithOpts(WithAPIVersionNegotiation): the
# first call pings), docker.go (Info, ServerVersion), factory.go and handler.go (ContainerInspect). It finds
# containers in the cgroup tree, not through the API: it lists none. docker.go Images() serves only its
# web UI's docker page, which the stack does not use: refused.
CADVISOR_CALLS = (
    EngineCall(("HEAD", "GET"), "/_ping", "docker client API version negotiation (client/ping.go)"),
    EngineCall(("GET",), "/info", "docker.go Info/StatusWithContext: driver, root dir (factory.go Register)"),
    EngineCall(("GET",), "/version", "docker.go VersionString/APIVersionString"),
    EngineCall(("GET",), f"/containers/{ID}/json", "factory.go/handler.go ContainerInspect: name, image, labels"),
)

CLIENT_WRITES = {"autoscaler": ("POST", r"/services/[a-zA-Z0-9][a-zA-Z0-9-]*/update"), "cadvisor": None}
"""The one write call a client may have (method, path regex), for the pack: cAdvisor none."""


def _quoted(text: str) -> str:
    # Strong quoting: HAProxy takes everything between single quotes as is (configuration manual 2.2).
    if "'" in text:
        raise ComponentArgsError(f"socket proxy: {text!r} cannot be quoted")
    return f"'{text}'"


def render_haproxy_config(client: str, calls: Sequence[EngineCall]) -> str:
    """haproxy.cfg passing `calls` to the socket and refusing everything else with 403."""
    rules = []
    for call in calls:
        rules.append(f"    # {call.why}")
        rules.append(f"    http-request allow if {{ method {' '.join(call.methods)} }} "
                     f"{{ path_reg {_quoted(call.regex())} }}")
    return "\n".join([
        f"# The Docker Engine API calls of {client}, nothing else (platform_infra.components.socketproxy).",
        "global",
        "    log stdout format raw local0 info",
        "    maxconn 64",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option httplog",
        "    timeout connect 5s",
        "    timeout client 70s",
        "    timeout server 70s",
        "",
        "frontend engine",
        f"    bind :{PROXY_PORT}",
        f"    monitor-uri {HEALTH_URI}",
        *rules,
        "    http-request deny deny_status 403",
        "    default_backend engine",
        "",
        "backend engine",
        f"    server engine {DOCKER_SOCKET}",
        "",
    ])


def network_name(client: str) -> str:
    return f"{client}-engine"


def proxy_service(client: str) -> str:
    return f"{client}-socket-proxy"


def proxy_url(client: str) -> str:
    """The Engine API as the client reaches it."""
    return f"tcp://{proxy_service(client)}:{PROXY_PORT}"


def proxy_spec(client: str, calls: Sequence[EngineCall], image: str, socket_gid: int, accepted_until: str) -> ContainerSpec:
    """HAProxy for one client: non-root (the official image's haproxy user, with the socket's group as its
    group: the socket is root:docker 0660), read-only, no capability, on the client's network only."""
    if client not in CLIENT_WRITES:
        raise ComponentArgsError(f"socket proxy: client {client!r} must be one of {sorted(CLIENT_WRITES)}")
    return validate_spec(ContainerSpec(
        service=proxy_service(client), role="mon", image=image, networks=[network_name(client)],
        memory_mb=32, cpus=0.1, user=f"{PROXY_UID}:{socket_gid}",
        command=["haproxy", "-f", PROXY_CONFIG],
        files=[FileSpec(PROXY_CONFIG, render_haproxy_config(client, calls))],
        bind_mounts=[BindMount(DOCKER_SOCKET, DOCKER_SOCKET)],
        waivers={"CTR-014": f"reason={WAIVER_REASON.format(client=client)};expires={accepted_until}"},
        # HAProxy's own answer on its listener (the official image has bash, not curl or wget).
        healthcheck=Healthcheck(["CMD", "bash", "-c", (
            f"exec 3<>/dev/tcp/127.0.0.1/{PROXY_PORT} && printf 'GET {HEALTH_URI} HTTP/1.0\\r\\n\\r\\n' >&3 "
            "&& read -r status <&3 && [[ $status == *' 200 '* ]]")]),
    ))


class EngineProxyArgs(TypedDict):
    image: str
    socket_gid: int
    accepted_until: str
    """ISO date: the proxy's CTR-014 waiver (it holds the socket) expires then."""


class EngineProxy:
    """A client's proxy and its network, deployed under the client's component."""

    def __init__(self, client: str, calls: Sequence[EngineCall], args: EngineProxyArgs, runtime: Runtime,
                 owner: str, parent: pulumi.Resource) -> None:
        self.client = client
        self.spec = proxy_spec(client, calls, args["image"], args["socket_gid"], args["accepted_until"])
        self.network = runtime.network(network_name(client), True, owner, parent)  # type: ignore[arg-type]
        self.deployment: Deployment = runtime.deploy(self.spec, {network_name(client): self.network}, owner, parent)

    def networks(self, others: dict[str, pulumi.Resource]) -> dict[str, pulumi.Resource]:
        return {**others, network_name(self.client): self.network}
