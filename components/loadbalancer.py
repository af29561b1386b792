"""The edge: nginx terminating TLS in front of the api-gateway replicas, the only container publishing ports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NotRequired, TypedDict

import pulumi

from platform_infra.components.edge import EdgeConfig, render_nginx_conf
from platform_infra.components.runtime import Deployment, Runtime
from platform_infra.components.spec import (
    FILES_DIR,
    ComponentArgsError,
    ContainerSpec,
    FileSpec,
    Healthcheck,
    Port,
    validate_spec,
)
from platform_infra.components.zones import missing_networks, networks_of

CONF_PATH = f"{FILES_DIR}/nginx.conf"
# nginx's temporary files and pid, as user 101, in the tmpfs at /tmp: a tmpfs mounted over a directory the image
# has takes that directory's owner and mode (the official image's /var/cache/nginx is root's, 0755), and Swarm
# cannot set a tmpfs's owner; /tmp is 1777 in every image and runtime (tests/live/test_load_balancer_temp_paths.py).
TEMP_DIR = "/tmp"
CERT_PATH = f"{FILES_DIR}/tls/fullchain.pem"
KEY_PATH = f"{FILES_DIR}/tls/privkey.pem"
# The CA certificates an OCSP response's signer must chain to (nginx ssl_trusted_certificate, for stapling).
TRUSTED_PATH = f"{FILES_DIR}/tls/trusted.pem"
# Unprivileged ports inside the container, so nginx runs as its own user with no capabilities at all.
HTTP_PORT = 8080
HTTPS_PORT = 8443
# The official image's nginx user; the key is uploaded owned by it, mode 0400.
NGINX_USER = "101:101"
# Docker's embedded DNS server on user-defined networks: it answers with the running containers only.
DOCKER_DNS = "127.0.0.11"


class LoadBalancerArgs(TypedDict):
    runtime: Runtime
    networks: Mapping[str, pulumi.Resource]
    image: str
    config: EdgeConfig
    upstreams: Sequence[str]
    """The one `name:port` every api-gateway replica answers to on the app network (their shared alias),
    resolved per request through Docker's DNS: nginx starts and serves with a replica absent."""
    certificate_pem: pulumi.Input[str]
    private_key_pem: pulumi.Input[str]
    trusted_certificate_pem: NotRequired[pulumi.Input[str]]
    """The CA that issued the certificate (and its intermediates): OCSP responses are verified against it before
    nginx staples them."""
    memory_mb: int
    cpus: float
    bind_address: NotRequired[str]
    depends_on: NotRequired[Sequence[pulumi.Resource]]
    """The gateway containers: nginx starts once they are healthy."""


def load_balancer_spec(args: LoadBalancerArgs) -> tuple[ContainerSpec, str]:
    """The nginx container and its rendered configuration; pure, raises ComponentArgsError."""
    for key in ("runtime", "networks", "image", "config", "upstreams", "certificate_pem", "private_key_pem",
                "memory_mb", "cpus"):
        if args.get(key) is None:
            raise ComponentArgsError(f"LoadBalancer: missing required arg {key!r}")
    if not isinstance(args["config"], EdgeConfig):
        raise ComponentArgsError("LoadBalancer: config must be an EdgeConfig")
    if missing_networks("load-balancer", args["networks"]):
        raise ComponentArgsError(f"LoadBalancer: networks must include {missing_networks('load-balancer', args['networks'])} "
                                 "(components/zones.py)")
    try:
        conf = render_nginx_conf(args["config"], list(args["upstreams"]), CERT_PATH, KEY_PATH,
                                 listen_http=HTTP_PORT, listen_https=HTTPS_PORT, pid_path="/tmp/nginx.pid",
                                 temp_dir=TEMP_DIR, resolver=DOCKER_DNS,
                                 trusted_certificate_path=TRUSTED_PATH if args.get("trusted_certificate_pem") else None)
    except ValueError as exc:
        raise ComponentArgsError(f"LoadBalancer: {exc}") from None
    bind = args.get("bind_address", "0.0.0.0")
    spec = ContainerSpec(
        service="load-balancer", role="lb", image=args["image"], networks=networks_of("load-balancer"),
        memory_mb=args["memory_mb"], cpus=args["cpus"],
        command=["nginx", "-c", CONF_PATH, "-g", "daemon off;"],
        files=[FileSpec(CONF_PATH, conf), FileSpec(CERT_PATH, args["certificate_pem"]),
               FileSpec(KEY_PATH, args["private_key_pem"], secret=True),
               *([FileSpec(TRUSTED_PATH, args["trusted_certificate_pem"])] if args.get("trusted_certificate_pem")
                 else [])],
        ports=[Port(HTTP_PORT, 80, bind), Port(HTTPS_PORT, 443, bind)],
        healthcheck=Healthcheck(
            ["CMD-SHELL", f"curl -so /dev/null -w '%{{http_code}}' http://127.0.0.1:{HTTP_PORT}/ | grep -q 301"],
            start_period="10s"),
        tmpfs={TEMP_DIR: "rw,noexec,nosuid,size=72m"},
        user=NGINX_USER,
    )
    return validate_spec(spec), conf


class LoadBalancer(pulumi.ComponentResource):
    """nginx on the edge and app networks; `nginx_conf` is the configuration it runs."""

    nginx_conf: pulumi.Output[str]

    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        spec, conf = load_balancer_spec(args)
        super().__init__("platform:index:LoadBalancer", name, {}, opts)
        self.deployment: Deployment = args["runtime"].deploy(
            spec, dict(args["networks"]), name, self, depends_on=list(args.get("depends_on", [])))
        self.nginx_conf = pulumi.Output.from_input(conf)
        self.register_outputs({"nginx_conf": self.nginx_conf})
