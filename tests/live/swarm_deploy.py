"""The prod plan with the Swarm runtime deployed on the real single-node Swarm, as `pulumi up` would deploy it.

The plan is `live_plan("prod", {"runtime": "swarm"})` (tests/live/deploy.py: the program's own registrations, with
real generated credentials). Each resource is sent as kreuzwerker/terraform-provider-docker sends it
(tests/live/swarm_engine.py) in the engine's order, a thread per resource (DockerDeployment.up): overlay networks,
docker secrets and configs, then each service, which counts as created once its converge wait returns
(tests/swarm/provider.py `converge_create`, resource_docker_service_funcs.go); a global service has no
converge_config (the provider refuses it there), so it counts once its task runs (a task with a healthcheck
reaches `running` only once healthy: moby daemon/cluster/executor/container/controller.go Start waits for it).
`RetiredFiles` (components/swarm_files.py) runs its create as the engine would; the image the stack builds
(docker.Image) must be on the engine already (tests/live/images.py builds it under the same name).

Not created, with the reason in `host_differences`: the backup bucket's lifecycle (an S3 call to AWS, which is
not reachable here). Where this host cannot run a definition as sent (no registry, two cores, a shared host), the
difference is recorded there too, and the read-back compares with what was sent to this engine.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import docker

from platform_infra.components.runtime import duration_nanos
from platform_infra.components.swarm import CONVERGE_MARGIN_SECONDS
from platform_infra.components.swarm_files import retire
from platform_infra.infra.mockrun import Registration
from tests.live.deploy import BUILT_IMAGE, Created, DockerDeployment
from tests.live.plan import NETWORK, free_port
from tests.live.swarm_engine import Engine, change_node_labels, constraint_labels, engine_spec, wire_values
from tests.swarm.provider import converge_create

SERVICE = "docker:index/service:Service"
SECRET = "docker:index/secret:Secret"
CONFIG = "docker:index/serviceConfig:ServiceConfig"
RETIRED = "pulumi-python:dynamic/swarm:RetiredFiles"
BUCKET = "pulumi-python:dynamic/backup:BackupBucket"
IPVS = Path("/proc/net/ip_vs").exists()
"""Swarm's virtual IPs are IPVS load balancers in the kernel (moby libnetwork service_linux.go); a kernel without
IPVS (this VM's) gets no answer from a service's virtual IP, only from its tasks' own addresses."""
RESERVED_SHARE = 0.5
"""The most of this node's CPUs and memory the stack's reservations may claim: the node is shared (the Docker half
of the live test, other tests' services)."""


def engine_seconds(stamp: str) -> float:
    """An Engine API timestamp (RFC 3339 with nanoseconds) as seconds since the epoch."""
    main, _, fraction = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(main).replace(tzinfo=UTC).timestamp() + float(f"0.{fraction or 0}")


@dataclass
class SwarmDeployment(DockerDeployment):
    """The plan's Swarm objects on the engine; object names get `prefix` instead of the stack's own (of the same
    length, so that names truncated to Swarm's 64 characters are truncated alike)."""

    kinds: ClassVar[frozenset[str]] = frozenset({NETWORK, SECRET, CONFIG, SERVICE, RETIRED, BUILT_IMAGE})
    ids: dict[str, str] = field(default_factory=dict)
    """The plan's ids (`<resource name>-id` under the mocks) -> the engine's."""
    bounds: dict[str, float] = field(default_factory=dict)
    """Service name -> seconds its tasks may take to run healthy: converge_config.timeout, or for a global service
    its healthcheck's worst case plus the runtime's margin."""
    added_labels: list[str] = field(default_factory=list)
    before_services: Callable[[SwarmDeployment], None] | None = None
    """Run once the stack's networks exist, before its first service: what the stack expects to find there
    (the live test's backup store on the egress network, its bucket made, as BackupBucket makes it first)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.prefix) != len(self.stack_prefix):
            raise ValueError(f"prefix {self.prefix!r} must have the length of {self.stack_prefix!r}")
        self.engine = Engine(self.client)
        self.node_id = self.client.info()["Swarm"]["NodeID"]
        self.host_differences.add(f"object names: {self.prefix}-* instead of {self.stack_prefix}-* (a shared engine)")
        self.host_differences |= {f"{r.name}: not created: an S3 bucket's lifecycle at AWS, not reachable here"
                                  for r in self.run.resources if r.type == BUCKET}
        for r in self.of_type(SERVICE):
            for port in wire_values(r.inputs)["endpointSpec"].get("ports", []):
                self.host_ports.setdefault(port["targetPort"], free_port())
        self.cpu_share, self.memory_share = self._reservation_shares()

    # -- the definitions as this host can run them --------------------------------------------------------------

    def _reservation_shares(self) -> tuple[float, float]:
        """Factors bringing the stack's reservations within RESERVED_SHARE of this node's CPUs and memory: Swarm
        schedules no task whose reservation the node cannot set aside (prod reserves for more cores than here)."""
        resources = self.client.api.inspect_node(self.node_id)["Description"]["Resources"]
        totals = {"nanoCpus": 0, "memoryBytes": 0}
        for r in self.of_type(SERVICE):
            inputs = wire_values(r.inputs)
            tasks = 1 if inputs["mode"].get("global") else inputs["mode"]["replicated"]["replicas"]
            for key in totals:
                totals[key] += tasks * inputs["taskSpec"]["resources"]["reservation"][key]
        shares = []
        for key, node_key in (("nanoCpus", "NanoCPUs"), ("memoryBytes", "MemoryBytes")):
            budget = resources[node_key] * RESERVED_SHARE
            share = min(1.0, budget / totals[key]) if totals[key] else 1.0
            if share < 1.0:
                self.host_differences.add(
                    f"reservations: {key} scaled by {share:.3f} (the stack reserves {totals[key]:,}; this node has "
                    f"{resources[node_key]:,}, of which the stack may claim {RESERVED_SHARE:.0%})")
            shares.append(share)
        return shares[0], shares[1]

    def host_inputs(self, r: Registration) -> dict[str, Any]:
        """The resource's inputs as this run sends them: names with this run's prefix and, for a service, the
        image by tag (no registry here), the reservations within this node and published ports on free ones."""
        inputs = wire_values(r.inputs)
        if "name" in inputs:
            inputs["name"] = self.local(inputs["name"])
        if r.type == RETIRED:
            inputs["service_name"] = self.local(inputs["service_name"])
            inputs["current"] = [self.local(name) for name in inputs["current"]]
        if r.type != SERVICE:
            return inputs
        task = inputs["taskSpec"]
        container = task["containerSpec"]
        image = container["image"].partition("@sha256:")[0]
        if image != container["image"]:
            self.host_differences.add("images: by tag, without the registry digest the services pin (no registry "
                                      "here; the digest is the plan mocks' own)")
        container["image"] = image
        for kind in ("secret", "config"):
            for ref in container.get(f"{kind}s", []):
                ref[f"{kind}Name"] = self.local(ref[f"{kind}Name"])
        for mount in container.get("mounts", []):
            if mount["type"] == "volume":
                mount["source"] = self.local(mount["source"])
        reservation = task["resources"]["reservation"]
        reservation["nanoCpus"] = int(reservation["nanoCpus"] * self.cpu_share)
        reservation["memoryBytes"] = int(reservation["memoryBytes"] * self.memory_share)
        if not IPVS and inputs["endpointSpec"]["mode"] == "vip":
            self.host_differences.add("endpoint mode: dnsrr instead of vip (the service name answers with each "
                                      "task's address: this kernel has no IPVS, which a virtual IP needs)")
            inputs["endpointSpec"]["mode"] = "dnsrr"
        for port in inputs["endpointSpec"].get("ports", []):
            self.host_differences.add(f"{inputs['name']}: port {port['publishedPort']} published on "
                                      f"{self.host_ports[port['targetPort']]} (host mode, a shared host)")
            port["publishedPort"] = self.host_ports[port["targetPort"]]
        return inputs

    # -- creation, one resource at a time, as the provider's Create does -----------------------------------------

    def _network(self, r: Registration) -> None:
        self.ids[f"{r.name}-id"] = self.engine.create_network(self.host_inputs(r))

    def _file_object(self, r: Registration) -> None:
        self.ids[f"{r.name}-id"] = self.engine.create_file_object("secrets" if r.type == SECRET else "configs",
                                                                  self.host_inputs(r))

    def _retired(self, r: Registration) -> None:
        retire({key: value for key, value in self.host_inputs(r).items() if key != "__provider"})

    def _service(self, r: Registration) -> float:
        inputs = self.host_inputs(r)
        self.add_node_labels(inputs["taskSpec"].get("placement", {}).get("constraints", []))
        service_id = self.engine.post("/services/create", engine_spec(inputs, self.ids))["ID"]
        if "convergeConfig" in inputs:
            self.bounds[inputs["name"]] = duration_nanos(inputs["convergeConfig"]["timeout"]) / 1e9
            converge_create(self.client, service_id, inputs["convergeConfig"],
                            before_delete=lambda: self.tasks_report(inputs["name"]))
        else:
            check = inputs["taskSpec"]["containerSpec"]["healthcheck"]
            worst = duration_nanos(check["startPeriod"]) + check["retries"] * (
                duration_nanos(check["interval"]) + duration_nanos(check["timeout"]))
            self.bounds[inputs["name"]] = worst / 1e9 + CONVERGE_MARGIN_SECONDS
            self._wait_global(inputs["name"])
        return self.seconds_to_healthy(inputs["name"])

    def _wait_global(self, name: str) -> None:
        """Until a task runs on every node that is ready and active, within the service's bound."""
        deadline = time.monotonic() + self.bounds[name]
        nodes = {n["ID"] for n in self.client.api.nodes()
                 if n["Status"]["State"] == "ready" and n["Spec"]["Availability"] == "active"}
        while time.monotonic() < deadline:
            running = {t["NodeID"] for t in self.tasks(name) if t["Status"]["State"] == "running"}
            if nodes <= running:
                return
            time.sleep(1)
        raise RuntimeError(f"service {name}: no running task on every node within {self.bounds[name]:.0f} s\n"
                           + self.tasks_report(name))

    def up(self) -> None:
        if self.before_services is not None:
            for r in self.of_type(NETWORK):
                self._create(r)
            self.before_services(self)
        super().up()

    def _create(self, r: Registration) -> None:
        if r.urn in self.created:  # a network `up` made before the rest
            return
        create = {NETWORK: self._network, SECRET: self._file_object, CONFIG: self._file_object,
                  RETIRED: self._retired, SERVICE: self._service, BUILT_IMAGE: self._image}
        ready = create[r.type](r)
        name = self.host_inputs(r).get("name") or self.host_inputs(r).get("imageName", r.name)
        with self.lock:
            self.created[r.urn] = Created(r.type, name, ready)

    # -- what runs ----------------------------------------------------------------------------------------------

    def tasks(self, name: str, desired: str = "running") -> list[dict]:
        return self.client.api.tasks(filters={"service": name, "desired-state": desired})

    def seconds_to_healthy(self, name: str) -> float:
        """From the service's creation to the last of its current tasks running (healthy: a task with a
        healthcheck runs once it passes), by the engine's own clock."""
        created = engine_seconds(self.client.api.inspect_service(name)["CreatedAt"])
        return max(engine_seconds(t["Status"]["Timestamp"]) - created for t in self.tasks(name)
                   if t["Status"]["State"] == "running")

    def task_containers(self, name: str) -> list:
        """The running containers of the service's tasks (by this run's service name)."""
        return self.client.containers.list(filters={"label": f"com.docker.swarm.service.name={name}",
                                                    "status": "running"})

    def task_container(self, service: str):
        """A running, healthy task container of the stack's service `service` (e.g. "prometheus")."""
        name = self.local(f"{self.stack_prefix}-{service}")
        for container in self.task_containers(name):
            if container.attrs["State"].get("Health", {}).get("Status", "healthy") == "healthy":
                return container
        raise RuntimeError(f"service {name} has no healthy running task\n" + self.tasks_report(name))

    def tasks_report(self, name: str, lines: int = 30) -> str:
        """Every task of the service with its state and error, and the last lines of each container's log."""
        report = []
        for task in self.client.api.tasks(filters={"service": name}):
            status = task["Status"]
            report.append(f"task {task['ID'][:12]} slot {task.get('Slot', '-')}: {status['State']} "
                          f"(desired {task['DesiredState']}) {status.get('Err', '')}")
            container_id = status.get("ContainerStatus", {}).get("ContainerID")
            if container_id:
                report.append(self.logs(container_id, lines))
        return "\n".join(report)

    def services(self) -> list[dict[str, Any]]:
        """The sent inputs of every service of the plan."""
        return [self.host_inputs(r) for r in self.of_type(SERVICE)]

    # -- node labels, removal -----------------------------------------------------------------------------------

    def add_node_labels(self, constraints: list[str]) -> None:
        """The labels the placement asks of this node, added unless already there (and then left there)."""
        with self.lock:
            present = self.client.api.inspect_node(self.node_id)["Spec"].get("Labels") or {}
            wanted = [label for label in constraint_labels(constraints)
                      if present.get(label) != "true" and label not in self.added_labels]
            self.added_labels.extend(wanted)
            if wanted:
                change_node_labels(self.client, self.node_id,
                                   lambda labels: labels.update(dict.fromkeys(wanted, "true")))

    def down(self) -> None:
        """Everything of this run, whether or not `up` got to it: services first (they hold the rest), then
        secrets, configs, networks, the volumes the tasks created (named with the prefix), the node labels."""
        api = self.client.api
        names = [self.local(wire_values(r.inputs)["name"]) for r in self.of_type(SERVICE)]
        for name in names:
            try:
                api.remove_service(name)
            except docker.errors.NotFound:
                pass
        ours = re.compile(re.escape(self.prefix) + "-")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(
                api.containers(all=True, filters={"label": f"com.docker.swarm.service.name={name}"})
                for name in names):
            time.sleep(1)
        for listing, remove in ((api.secrets, api.remove_secret), (api.configs, api.remove_config)):
            for found in listing(filters={"name": self.prefix}):
                if ours.match(found["Spec"]["Name"]):
                    remove(found["ID"])
        networks = [self.local(wire_values(r.inputs)["name"]) for r in self.of_type(NETWORK)]
        volumes = [v["Name"] for v in api.volumes()["Volumes"] or [] if ours.match(v["Name"])]
        for remove, name in [(api.remove_network, n) for n in networks] + [(api.remove_volume, v) for v in volumes]:
            for _ in range(60):  # in use until the removed tasks have left it
                try:
                    remove(name)
                    break
                except docker.errors.NotFound:
                    break
                except docker.errors.APIError:
                    time.sleep(1)
        if self.added_labels:
            change_node_labels(self.client, self.node_id,
                               lambda labels: [labels.pop(label, None) for label in self.added_labels])
