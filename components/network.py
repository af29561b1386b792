"""The platform's networks: edge (load balancer only), app and data (internal), egress (outbound only)."""

from __future__ import annotations

from typing import TypedDict

import pulumi

from platform_infra.components.runtime import Runtime

# Which networks reach beyond the host: the edge, where the load balancer publishes 80/443, and egress,
# which publishes nothing and lets alert delivery and uptime probes reach SMTP, Slack and the public URL.
NETWORK_INTERNAL = {"edge": False, "app": True, "data": True, "egress": False}


class NetworkArgs(TypedDict):
    runtime: Runtime


class Network(pulumi.ComponentResource):
    """Edge, app, data and egress networks; app and data are internal (no route off the host)."""

    edge_name: pulumi.Output[str]
    app_name: pulumi.Output[str]
    data_name: pulumi.Output[str]
    egress_name: pulumi.Output[str]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("platform:index:Network", name, {}, opts)
        runtime = args["runtime"]
        self.networks = {
            net: runtime.network(net, internal, name, self) for net, internal in NETWORK_INTERNAL.items()
        }
        self.edge_name = self.networks["edge"].name
        self.app_name = self.networks["app"].name
        self.data_name = self.networks["data"].name
        self.egress_name = self.networks["egress"].name
        self.register_outputs({"edge_name": self.edge_name, "app_name": self.app_name, "data_name": self.data_name,
                               "egress_name": self.egress_name})
