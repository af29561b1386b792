"""The backup store's egress gateway: the one way out of the internal data network, to the bucket only.

PostgreSQL (WAL archiving) and the backup jobs live on the data network, which has no route off the host.
This nginx joins data and egress and forwards TCP, unopened, to the store's endpoint, but only connections
whose TLS server name (SNI) is the bucket's virtual-hosted name, from a client offering TLS 1.2 or newer; any
other name, or none, is closed before a byte reaches the outside.

What the gateway cannot see, without terminating TLS, is the HTTP request inside: a client that names the
stack's bucket in its SNI could still send `Host: another-bucket...` to the same endpoint, with a key of its own
(S3 serves the bucket of the Host header). Terminating TLS here would need a certificate for the store's names
that every client trusts: a private CA whose key, on this host, would let whoever holds it impersonate the store
to PostgreSQL and the jobs, and a gateway that sees every credential and backup in clear. The stack does not;
the control of the bucket belongs to the store, where it costs no such key: on AWS an S3 gateway VPC endpoint
whose policy names the stack's bucket alone (docs/SECURITY.md "Backups"). It holds no key and no credential: the clients verify the store's own
certificate end to end and sign their requests themselves. On the data network the gateway answers to the
bucket's name, so the clients need no proxy setting: pgBackRest (repo1-s3-uri-style=host), clickhouse-backup
(S3_FORCE_PATH_STYLE=false) and the jobs' curl all address the bucket as `<bucket>.<endpoint host>`.

nginx: ngx_stream_ssl_preread_module ($ssl_preread_server_name), a map, and proxy_pass with a variable,
resolved per connection through Docker's DNS (ngx_stream_proxy_module, `resolver`), so the store's changing
addresses are followed. The official nginx image builds the stream modules in (nginx.org packages'
`--with-stream --with-stream_ssl_preread_module`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

import crossplane
import pulumi

from platform_infra.components.backup.model import BackupConfig, StoreRoute, store_route
from platform_infra.components.edge.nginx import directive
from platform_infra.components.loadbalancer import DOCKER_DNS, NGINX_USER
from platform_infra.components.runtime import Deployment, Runtime
from platform_infra.components.spec import (
    FILES_DIR,
    ComponentArgsError,
    ContainerSpec,
    FileSpec,
    Healthcheck,
    validate_spec,
)
from platform_infra.components.zones import missing_networks, networks_of

SERVICE = "s3-gateway"
TLS_PROTOCOLS = ("TLSv1.2", "TLSv1.3")
"""The newest protocol a client offers must be one of these ($ssl_preread_protocol, nginx >= 1.15.2)."""
CONF_PATH = f"{FILES_DIR}/nginx.conf"
# Unprivileged ports start at this port in the gateway's own network namespace only, so nginx can listen on
# the store's port (443) as its own user with no capability (a namespaced sysctl: Docker run reference,
# "--sysctl"; the `net.ipv4.ip_unprivileged_port_start` of Linux's ip-sysctl documentation).
UNPRIVILEGED_PORT_SYSCTL = "net.ipv4.ip_unprivileged_port_start"


def map_hash_bucket_size(*names: str, cache_line: int = 64) -> int:
    """The map's hash bucket size that holds every name: nginx refuses to start when one entry, a pointer and
    the name aligned to a pointer, plus the bucket's closing pointer, exceed the bucket (nginx
    src/core/ngx_hash.c ngx_hash_init, NGX_HASH_ELT_SIZE); the default is one CPU cache line, which a bucket's
    virtual-hosted name (up to 63 + 1 + the endpoint's host) outgrows. Rounded up to cache lines, as nginx
    aligns it."""
    pointer = 8
    needed = max(pointer + -(-(len(name) + 2) // pointer) * pointer + pointer for name in names)
    return max(cache_line, -(-needed // cache_line) * cache_line)


def render_gateway_conf(route: StoreRoute, *, resolver: str = DOCKER_DNS, listen: str | None = None,
                        pid_path: str = "/tmp/nginx.pid", modules: tuple[str, ...] = ()) -> str:
    """nginx.conf of the gateway: a stream server forwarding the bucket's SNI only.

    `listen` defaults to the store's port on every address; `modules` are `load_module` paths, for an nginx
    that builds the stream modules as dynamic ones (Debian's)."""
    allowed = "$s3_upstream"
    keys = [f"{protocol}:{route.server_name}" for protocol in TLS_PROTOCOLS]
    payload = [
        *[directive("load_module", module) for module in modules],
        directive("worker_processes", 1),
        directive("pid", pid_path),
        directive("error_log", "stderr", "warn"),
        directive("events", block=[directive("worker_connections", 256)]),
        directive("stream", block=[
            directive("log_format", "s3", "$remote_addr $ssl_preread_server_name $status $bytes_sent "
                      "$bytes_received $session_time"),
            directive("access_log", "/dev/stdout", "s3"),
            directive("resolver", resolver, "valid=30s", "ipv6=off"),
            directive("resolver_timeout", "5s"),
            directive("map_hash_bucket_size", map_hash_bucket_size(*keys)),
            # Any other server name, or none, or a client that offers nothing newer than TLS 1.1, maps to
            # nothing: nginx closes the connection unforwarded.
            directive("map", "$ssl_preread_protocol:$ssl_preread_server_name", allowed, block=[
                *[directive(key, f"{route.upstream_host}:{route.port}") for key in keys],
                directive("default", ""),
            ]),
            directive("server", block=[
                directive("listen", listen or route.port),
                directive("ssl_preread", "on"),
                directive("preread_timeout", "10s"),
                directive("proxy_pass", allowed),
                directive("proxy_connect_timeout", "10s"),
                # Idle time between two reads or writes: pgBackRest and clickhouse-backup stream large
                # uploads, but never pause this long.
                directive("proxy_timeout", "5m"),
            ]),
        ]),
    ]
    return crossplane.build(payload) + "\n"


class StoreGatewayArgs(TypedDict):
    runtime: Runtime
    networks: Mapping[str, pulumi.Resource]
    config: BackupConfig
    image: str
    """The stack's nginx image."""


def store_gateway_spec(args: StoreGatewayArgs) -> tuple[ContainerSpec, str]:
    for key in ("runtime", "networks", "config", "image"):
        if args.get(key) is None:
            raise ComponentArgsError(f"StoreGateway: missing required arg {key!r}")
    config = args["config"]
    if not isinstance(config, BackupConfig):
        raise ComponentArgsError("StoreGateway: config must be a BackupConfig")
    missing = missing_networks(SERVICE, args["networks"])
    if missing:
        raise ComponentArgsError(f"StoreGateway: networks must include {missing} (components/zones.py)")
    route = store_route(config)
    conf = render_gateway_conf(route)
    spec = ContainerSpec(
        service=SERVICE, role="egress", image=args["image"], networks=networks_of(SERVICE),
        memory_mb=64, cpus=0.25,
        command=["nginx", "-c", CONF_PATH, "-g", "daemon off;"],
        files=[FileSpec(CONF_PATH, conf)],
        aliases={"backup": (route.server_name,)},
        sysctls={UNPRIVILEGED_PORT_SYSCTL: str(route.port)} if route.port < 1024 else {},
        healthcheck=Healthcheck(["CMD", "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{route.port}"]),
        tmpfs={"/tmp": "rw,noexec,nosuid,size=8m"},
        user=NGINX_USER,
    )
    return validate_spec(spec), conf


class StoreGateway(pulumi.ComponentResource):
    """nginx on the data and egress networks, forwarding the bucket's TLS connections and nothing else."""

    nginx_conf: pulumi.Output[str]

    def __init__(self, name: str, args: StoreGatewayArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        spec, conf = store_gateway_spec(args)
        super().__init__("platform:index:StoreGateway", name, {}, opts)
        self.deployment: Deployment = args["runtime"].deploy(spec, dict(args["networks"]), name, self)
        self.nginx_conf = pulumi.Output.from_input(conf)
        self.register_outputs({"nginx_conf": self.nginx_conf})
