"""The platform's networks, one per zone of `zones.ZONES`: only edge (the load balancer's published ports) and
egress (the way out) are routed; every other network is internal."""

from __future__ import annotations

from typing import TypedDict

import pulumi

from platform_infra.components.runtime import Runtime
from platform_infra.components.zones import ZONES


class NetworkArgs(TypedDict):
    runtime: Runtime


class Network(pulumi.ComponentResource):
    """Every network of the zones table; `names` are their Docker names, by zone."""

    names: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("platform:index:Network", name, {}, opts)
        runtime = args["runtime"]
        self.networks = {net: runtime.network(net, zone.internal, name, self) for net, zone in ZONES.items()
                         if zone.created_by is None}
        self.names = pulumi.Output.all(**{net: network.name for net, network in self.networks.items()})
        self.register_outputs({"names": self.names})
