"""The worker autoscaler in the stack: `infra autoscale` as one replica on a manager, from an image built here.

It reads the consumer lag from Prometheus and sets the worker service's replicas through the Docker Engine
API of a manager, reached through its own socket proxy (components/socketproxy.py), which passes only the
inspect and update of that one service: the controller mounts no socket and runs as a user, not root.
Pulumi leaves those replicas alone afterwards (`SwarmRuntime.autoscaled`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NotRequired, TypedDict

import pulumi
import pulumi_docker as docker
import yaml

from platform_infra.components.autoscaling import ScalingPolicy
from platform_infra.components.images import IMAGES_DIR, PROJECT_ROOT
from platform_infra.components.runtime import Deployment, Runtime
from platform_infra.components.socketproxy import (
    EngineProxy,
    EngineProxyArgs,
    autoscaler_calls,
    proxy_url,
)
from platform_infra.components.spec import (
    FILES_DIR,
    ComponentArgsError,
    ContainerSpec,
    FileSpec,
    Healthcheck,
    validate_spec,
)
from platform_infra.components.zones import networks_of

# The Dockerfile copies the project's own packages (infra, components): the context is the project root.
BUILD_CONTEXT = PROJECT_ROOT
DOCKERFILE = IMAGES_DIR / "autoscaler" / "Dockerfile"
POLICY_PATH = f"{FILES_DIR}/autoscale-policy.yaml"
METRICS_PORT = 9464
METRICS_PROBE = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{METRICS_PORT}/metrics', timeout=3)"
CLIENT = "autoscaler"
USER = "65534:65534"
"""nobody: with the socket behind its proxy the controller needs no group of the host."""


class AutoscalerArgs(TypedDict):
    runtime: Runtime
    networks: Mapping[str, pulumi.Resource]
    image: str
    """Where the built image is pushed: <registry>/autoscaler:<version>."""
    policy: ScalingPolicy
    service: str
    """The Swarm service it scales (its full name)."""
    prometheus_url: str
    engine_proxy: EngineProxyArgs
    """Its socket proxy: image, the socket's group, the date its waiver expires."""
    provider: NotRequired[docker.Provider | None]
    registry: NotRequired[docker.RegistryArgs | None]
    """The login the image is pushed with; omitted: the deploying machine's `docker login`."""
    depends_on: NotRequired[Sequence[pulumi.Resource]]
    """The service it scales, so that it starts after it."""


def autoscaler_spec(args: AutoscalerArgs) -> ContainerSpec:
    for key in ("runtime", "networks", "image", "policy", "service", "prometheus_url", "engine_proxy"):
        if args.get(key) is None:
            raise ComponentArgsError(f"Autoscaler: missing required arg {key!r}")
    if not isinstance(args["policy"], ScalingPolicy):
        raise ComponentArgsError("Autoscaler: policy must be a ScalingPolicy")
    spec = ContainerSpec(
        service="autoscaler", role="mon", image=args["image"], networks=networks_of("autoscaler"), memory_mb=128, cpus=0.25,
        command=["--service", args["service"], "--prometheus-url", args["prometheus_url"], "--policy", POLICY_PATH,
                 "--metrics-port", str(METRICS_PORT), "--metrics-address", "0.0.0.0",
                 "--docker-host", proxy_url(CLIENT)],
        files=[FileSpec(POLICY_PATH, yaml.safe_dump(args["policy"].model_dump(), sort_keys=False))],
        user=USER,
        healthcheck=Healthcheck(["CMD", "python", "-c", METRICS_PROBE], start_period="20s"),
        tmpfs={"/tmp": "rw,noexec,nosuid,size=16m"},
    )
    return validate_spec(spec)  # on its proxy's network by the zones table (`autoscaler-engine`)


class Autoscaler(pulumi.ComponentResource):
    """Builds and pushes the controller's image, and runs it beside the monitoring."""

    image_name: pulumi.Output[str]

    def __init__(self, name: str, args: AutoscalerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        spec = autoscaler_spec(args)
        super().__init__("platform:index:Autoscaler", name, {}, opts)
        image = docker.Image(
            f"{name}-image",
            image_name=args["image"],
            build=docker.DockerBuildArgs(context=str(BUILD_CONTEXT), dockerfile=str(DOCKERFILE), platform="linux/amd64"),
            build_on_preview=False,
            registry=args.get("registry"),
            opts=pulumi.ResourceOptions(parent=self, provider=args.get("provider")),
        )
        self.proxy = EngineProxy(CLIENT, autoscaler_calls(args["service"]), args["engine_proxy"], args["runtime"],
                                 name, self)
        self.deployment: Deployment = args["runtime"].deploy(
            spec, self.proxy.networks(dict(args["networks"])), name, self,
            depends_on=[image, *self.proxy.deployment.containers, *args.get("depends_on", ())])
        self.image_name = image.image_name
        self.register_outputs({"image_name": self.image_name})
