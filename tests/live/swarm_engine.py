"""A docker.Service, docker.Secret, docker.ServiceConfig and overlay docker.Network sent to the Engine API as
kreuzwerker/terraform-provider-docker sends them, and read back as it reads them: one place for the Swarm tests
(tests/swarm) and the live Swarm stack (tests/live/swarm_deploy.py).

- internal/provider/resource_docker_service_structures.go: createServiceSpec and its expand* functions (sent),
  flatten* (read back);
- resource_docker_secret.go and resource_docker_config.go: `data` is base64, decoded once before it is sent
  (getConfigDataBytes), and the Docker client sends those bytes as JSON, which encodes a []byte in base64;
- resource_docker_network.go: an overlay network with the driver options as given.
"""

from __future__ import annotations

import base64
import time

import docker

from platform_infra.components.runtime import duration_nanos, service_duration_string
from platform_infra.policies.pack import _plain
from tests.helpers import reveal


def wire_values(inputs: dict) -> dict:
    """Recorded inputs as plain values: secrets revealed, the protobuf Struct's doubles (2.0) back to integers."""
    return _plain(reveal(inputs))


def _labels(items: list[dict]) -> dict[str, str]:
    return {item["label"]: item["value"] for item in items or []}


def _labels_set(labels: dict[str, str] | None) -> set[tuple[str, str]]:
    return set((labels or {}).items())


def _rollout(config: dict) -> dict:
    return {"Parallelism": config["parallelism"], "Delay": duration_nanos(config["delay"]),
            "FailureAction": config["failureAction"], "Monitor": duration_nanos(config["monitor"]),
            "MaxFailureRatio": float(config["maxFailureRatio"]), "Order": config["order"]}


def _mount(m: dict) -> dict:
    def volume_options(options: dict) -> dict:
        # The expander sets a DriverConfig whenever volume_options is given (driver_name is always in the block).
        return {"NoCopy": options.get("noCopy", False), "Labels": _labels(options.get("labels")),
                "DriverConfig": {"Name": options.get("driverName", ""), "Options": options.get("driverOptions", {})}}

    mount = {"Type": m["type"], "Target": m["target"], "Source": m.get("source", ""), "ReadOnly": m.get("readOnly", False)}
    if m["type"] == "tmpfs":
        mount["TmpfsOptions"] = {"SizeBytes": m["tmpfsOptions"]["sizeBytes"], "Mode": m["tmpfsOptions"].get("mode", 0)}
    if "volumeOptions" in m:
        mount["VolumeOptions"] = volume_options(m["volumeOptions"])
    if "bindOptions" in m:
        mount["BindOptions"] = {"Propagation": m["bindOptions"]["propagation"]}
    return mount


def engine_spec(inputs: dict, ids: dict[str, str]) -> dict:
    """The Engine API ServiceSpec for a docker.Service's inputs; `ids` maps the plan's ids to the engine's."""
    task, container = inputs["taskSpec"], inputs["taskSpec"]["containerSpec"]
    check = container["healthcheck"]

    def file_ref(ref: dict, kind: str) -> dict:
        return {f"{kind}ID": ids[ref[f"{kind.lower()}Id"]], f"{kind}Name": ref[f"{kind.lower()}Name"],
                "File": {"Name": ref["fileName"], "UID": ref["fileUid"], "GID": ref["fileGid"], "Mode": ref["fileMode"]}}

    resources = task["resources"]
    mode = inputs["mode"]
    return {
        "Name": inputs["name"],
        "Labels": _labels(inputs["labels"]),
        "Mode": {"Global": {}} if mode.get("global") else {"Replicated": {"Replicas": mode["replicated"]["replicas"]}},
        "TaskTemplate": {
            "ContainerSpec": {
                # The runtime sends `name:tag@sha256:<the registry's digest>`, looked up under the mocks here:
                # no registry knows these images, which this engine has by their tags alone.
                "Image": container["image"].partition("@sha256:")[0], "Command": container.get("commands"),
                "Args": container.get("args"),
                "Env": [f"{key}={value}" for key, value in container.get("env", {}).items()],
                "User": container.get("user"), "ReadOnly": container.get("readOnly", False),
                "Labels": _labels(container.get("labels")),
                "Sysctls": container.get("sysctl"),
                "CapabilityDrop": container.get("capDrops"), "CapabilityAdd": container.get("capAdds"),
                "StopGracePeriod": duration_nanos(container["stopGracePeriod"]),
                "Healthcheck": {"Test": check["tests"], "Interval": duration_nanos(check["interval"]),
                                "Timeout": duration_nanos(check["timeout"]), "Retries": check["retries"],
                                "StartPeriod": duration_nanos(check["startPeriod"])},
                "Mounts": [_mount(m) for m in container.get("mounts", [])],
                "Secrets": [file_ref(s, "Secret") for s in container.get("secrets", [])],
                "Configs": [file_ref(c, "Config") for c in container.get("configs", [])],
            },
            "Resources": {"Limits": {"NanoCPUs": resources["limits"]["nanoCpus"],
                                     "MemoryBytes": resources["limits"]["memoryBytes"]},
                          "Reservations": {"NanoCPUs": resources["reservation"]["nanoCpus"],
                                           "MemoryBytes": resources["reservation"]["memoryBytes"]}},
            "RestartPolicy": {"Condition": task["restartPolicy"]["condition"],
                              "Delay": duration_nanos(task["restartPolicy"]["delay"]),
                              "MaxAttempts": task["restartPolicy"]["maxAttempts"],
                              "Window": duration_nanos(task["restartPolicy"]["window"])},
            "Placement": {"Constraints": task.get("placement", {}).get("constraints", [])},
            "LogDriver": {"Name": task["logDriver"]["name"], "Options": task["logDriver"]["options"]},
            "Networks": [{"Target": ids[n["id"]], "Aliases": n["aliases"]} for n in task["networksAdvanceds"]],
        },
        "UpdateConfig": _rollout(inputs["updateConfig"]),
        "RollbackConfig": _rollout(inputs["rollbackConfig"]),
        "EndpointSpec": {"Mode": inputs["endpointSpec"]["mode"], "Ports": [
            {"Protocol": p["protocol"], "TargetPort": p["targetPort"], "PublishedPort": p["publishedPort"],
             "PublishMode": p["publishMode"]} for p in inputs["endpointSpec"].get("ports", [])]},
    }


class Engine:
    """The Engine API calls the provider makes, through the docker SDK's session."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.api = client.api

    def url(self, path: str) -> str:
        return f"{self.api.base_url}/v{self.api.api_version}{path}"

    def post(self, path: str, body: dict, **params) -> dict:
        response = self.api.post(self.url(path), json=body, params=params)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def create_network(self, inputs: dict) -> str:
        return self.client.networks.create(
            inputs["name"], driver=inputs["driver"], internal=inputs["internal"], attachable=inputs["attachable"],
            options=inputs.get("options"), labels=_labels(inputs["labels"])).id

    def create_file_object(self, kind: str, inputs: dict) -> str:
        """A docker secret (`kind` "secrets") or config ("configs") from its inputs; returns its id. The provider
        decodes `data` once and the Docker client encodes the bytes in base64 again (JSON of a []byte)."""
        sent = base64.b64decode(inputs["data"], validate=True)
        return self.post(f"/{kind}/create", {"Name": inputs["name"], "Data": base64.b64encode(sent).decode(),
                                             "Labels": _labels(inputs["labels"])})["ID"]


def _rollout_read_back(config: dict) -> dict:
    """flattenServiceUpdateOrRollbackConfig: durations through shortDur, the ratio with one decimal."""
    return {"parallelism": config["Parallelism"], "delay": service_duration_string(config.get("Delay", 0)),
            "failureAction": config["FailureAction"], "monitor": service_duration_string(config.get("Monitor", 0)),
            "maxFailureRatio": f"{config.get('MaxFailureRatio', 0):.1f}", "order": config["Order"]}


def read_back(spec: dict) -> dict:
    """What the provider reads back from the engine's ServiceSpec for the inputs the runtime sends, in their shape
    (kreuzwerker/terraform-provider-docker internal/provider/resource_docker_service_structures.go flatten*)."""
    task, container = spec["TaskTemplate"], spec["TaskTemplate"]["ContainerSpec"]
    check = container["Healthcheck"]
    mounts = container.get("Mounts") or []

    def files(refs: list[dict], kind: str) -> list[dict]:
        return [{"fileName": r["File"]["Name"], "fileUid": r["File"]["UID"], "fileGid": r["File"]["GID"],
                 "fileMode": r["File"]["Mode"], f"{kind.lower()}Name": r[f"{kind}Name"]} for r in refs]

    def resources(values: dict) -> dict:
        return {"nanoCpus": values["NanoCPUs"], "memoryBytes": values["MemoryBytes"]}

    return {
        "capAdds": container.get("CapabilityAdd"), "capDrops": container.get("CapabilityDrop"),
        "stopGracePeriod": service_duration_string(container["StopGracePeriod"]),
        "healthcheck": {"tests": check["Test"], "interval": service_duration_string(check["Interval"]),
                        "timeout": service_duration_string(check["Timeout"]), "retries": check["Retries"],
                        "startPeriod": service_duration_string(check["StartPeriod"])},
        # The mode through FileMode.Perm() (flattenServiceMounts).
        "tmpfs": [{"target": m["Target"], "sizeBytes": m["TmpfsOptions"]["SizeBytes"],
                   "mode": m["TmpfsOptions"].get("Mode", 0) & 0o777} for m in mounts if m["Type"] == "tmpfs"],
        # Source and driver options as stored, the labels as a set, driver_name only when set.
        "volumes": [{"target": m["Target"], "source": m.get("Source", ""),
                     "labels": _labels_set(m["VolumeOptions"].get("Labels")),
                     "driverName": m["VolumeOptions"].get("DriverConfig", {}).get("Name") or None,
                     "driverOptions": m["VolumeOptions"].get("DriverConfig", {}).get("Options", {})}
                    for m in mounts if m["Type"] == "volume"],
        "secrets": files(container.get("Secrets") or [], "Secret"),
        "configs": files(container.get("Configs") or [], "Config"),
        "resources": {"limits": resources(task["Resources"]["Limits"]),
                      "reservation": resources(task["Resources"]["Reservations"])},
        "restartPolicy": {"condition": task["RestartPolicy"]["Condition"],
                          "delay": service_duration_string(task["RestartPolicy"]["Delay"]),
                          "maxAttempts": task["RestartPolicy"]["MaxAttempts"],
                          "window": service_duration_string(task["RestartPolicy"]["Window"])},
        "updateConfig": _rollout_read_back(spec["UpdateConfig"]),
        "rollbackConfig": _rollout_read_back(spec["RollbackConfig"]),
    }


def as_sent(inputs: dict) -> dict:
    """The runtime's inputs in the shape of `read_back`."""
    task, container = inputs["taskSpec"], inputs["taskSpec"]["containerSpec"]
    mounts = container.get("mounts", [])

    def files(refs: list[dict], kind: str) -> list[dict]:
        return [{key: r[key] for key in ("fileName", "fileUid", "fileGid", "fileMode", f"{kind}Name")} for r in refs]

    return {
        "capAdds": container.get("capAdds"), "capDrops": container.get("capDrops"),
        "stopGracePeriod": container["stopGracePeriod"], "healthcheck": container["healthcheck"],
        "tmpfs": [{"target": m["target"], "sizeBytes": m["tmpfsOptions"]["sizeBytes"],
                   "mode": m["tmpfsOptions"].get("mode", 0)} for m in mounts if m["type"] == "tmpfs"],
        "volumes": [{"target": m["target"], "source": m.get("source", ""),
                     "labels": _labels_set({item["label"]: item["value"] for item in m["volumeOptions"]["labels"]}),
                     "driverName": m["volumeOptions"].get("driverName"),
                     "driverOptions": m["volumeOptions"].get("driverOptions", {})}
                    for m in mounts if m["type"] == "volume"],
        "secrets": files(container.get("secrets", []), "secret"), "configs": files(container.get("configs", []), "config"),
        "resources": task["resources"], "restartPolicy": task["restartPolicy"],
        "updateConfig": inputs["updateConfig"], "rollbackConfig": inputs["rollbackConfig"],
    }


def change_node_labels(client: docker.DockerClient, node_id: str, update) -> None:
    """`update(labels)` applied to the node's labels. Others may update the node at the same time: an update out
    of sequence (HTTP 500 up to Engine 25, 409 after) is read again and retried."""
    for _ in range(20):
        node = client.api.inspect_node(node_id)
        spec = node["Spec"]
        update(spec.setdefault("Labels", {}))
        try:
            client.api.update_node(node_id, node["Version"]["Index"], spec)
            return
        except docker.errors.APIError as error:
            if "out of sequence" not in str(error) and error.status_code != 409:
                raise
            time.sleep(0.2)
    raise AssertionError("the node kept changing")


def constraint_labels(constraints: list[str]) -> list[str]:
    """The node labels `node.labels.<label>==true` constraints ask for."""
    return [c.removeprefix("node.labels.").removesuffix("==true") for c in constraints if c.startswith("node.labels.")]
