"""The prod plan's definitions, turned into real containers as the provider creates them
(terraform-provider-docker internal/provider/resource_docker_container_funcs.go): the engine tests and the
live tests share this, so what runs is what the plan says."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import os
import socket
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from platform_infra.components.runtime import cpu_nanos, duration_nanos
from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import load_project, run_program
from tests.helpers import reveal

MIB = 1024 * 1024
PLAN_PREFIX = "orchestration-prod"
CONTAINER, NETWORK, VOLUME = ("docker:index/container:Container", "docker:index/network:Network",
                              "docker:index/volume:Volume")
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"


ENGINE_SOCKET = "/var/run/docker.sock"


def on_this_engine(settings: dict[str, Any]) -> dict[str, Any]:
    """The stack's settings with this engine's own socket group: the socket proxies run with it."""
    if "docker_socket_gid" not in settings:
        return settings
    return {**settings, "docker_socket_gid": os.stat(ENGINE_SOCKET).st_gid}


def load_prod_plan() -> dict[str, list[dict[str, Any]]]:
    """Container, network and volume inputs of `infra plan --stack prod` on this engine, secrets revealed."""
    project = load_project(REPO_ROOT, "prod")
    settings = on_this_engine(json.loads(project.config["platform:settings"]))
    project = dataclasses.replace(project, config={**project.config, "platform:settings": json.dumps(settings)})
    run = run_program(project, "prod")
    plan: dict[str, list[dict[str, Any]]] = {CONTAINER: [], NETWORK: [], VOLUME: [], REMOTE_IMAGE: []}
    for resource in run.resources:
        if resource.type in plan:
            plan[resource.type].append(reveal(resource.inputs))
    return plan


def image_reference(plan: dict[str, list[dict[str, Any]]], image_id: str) -> str:
    """The reference a container's image id stands for: the plan's mocks give a RemoteImage the id
    sha256(<reference>) (infra/mockrun.py)."""
    for remote in plan[REMOTE_IMAGE]:
        if f"sha256:{hashlib.sha256(remote['name'].encode()).hexdigest()}" == image_id:
            return remote["name"]
    raise KeyError(f"no RemoteImage of the plan has the id {image_id}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def uploads_archive(uploads: list[dict[str, Any]]) -> bytes:
    """The provider's upload: one tar per file, copied through the container's root (CopyToContainer)."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for upload in uploads:
            content = (base64.b64decode(upload["contentBase64"]) if "contentBase64" in upload
                       else upload["content"].encode())
            info = tarfile.TarInfo(upload["file"].lstrip("/"))
            info.size, info.mode = len(content), int(upload.get("permissions", "0644"), 8)
            info.uid = int(upload.get("owner", 0))
            info.gid = int(upload.get("group", info.uid))
            tar.addfile(info, io.BytesIO(content))
    return data.getvalue()


def create_container(engine, image: str, inputs: dict[str, Any], ports: dict[int, int],
                     rename: Callable[[str], str]) -> str:
    """The container of `inputs`, created (not started) from `image`, joined to its networks and holding its
    uploads; `rename` maps the plan's container, network and volume names to the ones this run uses, and
    `ports` each published container port to a free loopback port."""
    check = inputs.get("healthcheck")
    volumes = [f"{rename(v['volumeName'])}:{v['containerPath']}:{'ro' if v.get('readOnly') else 'rw'}"
               for v in inputs.get("volumes", [])]
    mounts = [{"Type": m["type"], "Source": m["source"], "Target": m["target"], "ReadOnly": m.get("readOnly", False),
               "BindOptions": {"Propagation": m["bindOptions"]["propagation"]}} for m in inputs.get("mounts", [])]
    host_config = engine.api.create_host_config(
        binds=volumes or None,
        mounts=mounts or None,
        read_only=inputs.get("readOnly", False),
        tmpfs=inputs.get("tmpfs"),
        sysctls=inputs.get("sysctls"),
        cap_add=inputs.get("capabilities", {}).get("adds"),
        cap_drop=inputs.get("capabilities", {}).get("drops"),
        security_opt=inputs.get("securityOpts"),
        mem_limit=int(inputs["memory"]) * MIB if "memory" in inputs else None,
        memswap_limit=int(inputs["memorySwap"]) * MIB if "memorySwap" in inputs else None,
        nano_cpus=cpu_nanos(inputs["cpus"]) if "cpus" in inputs else None,
        restart_policy={"Name": inputs.get("restart", "no"), "MaximumRetryCount": int(inputs.get("maxRetryCount", 0))},
        log_config={"Type": inputs.get("logDriver", "json-file"), "Config": inputs.get("logOpts", {})},
        ulimits=[{"Name": u["name"], "Soft": int(u["soft"]), "Hard": int(u["hard"])} for u in inputs.get("ulimits", [])]
        or None,
        # Published ports stay on loopback, on free ports: the definition is the same, the host is shared.
        port_bindings={f"{int(p['internal'])}/tcp": ("127.0.0.1", ports[int(p["internal"])])
                       for p in inputs.get("ports", [])} or None,
        network_mode=inputs.get("networkMode", "bridge"),
    )
    created = engine.api.create_container(
        image, name=rename(inputs["name"]), hostname=inputs.get("hostname"), user=inputs.get("user"),
        environment=inputs.get("envs"), command=inputs.get("command"), entrypoint=inputs.get("entrypoints"),
        labels={item["label"]: item["value"] for item in inputs.get("labels", [])},
        ports=[int(p["internal"]) for p in inputs.get("ports", [])] or None,
        healthcheck={"Test": check["tests"], "Interval": duration_nanos(check["interval"]),
                     "Timeout": duration_nanos(check["timeout"]), "StartPeriod": duration_nanos(check["startPeriod"]),
                     "Retries": int(check["retries"])} if check else None,
        host_config=host_config,
    )
    container = created["Id"]
    if inputs.get("networksAdvanced"):
        # As the provider does: created on the default bridge, disconnected, then joined to each network.
        engine.api.disconnect_container_from_network(container, "bridge")
        for network in inputs["networksAdvanced"]:
            engine.api.connect_container_to_network(container, rename(network["name"]), aliases=network["aliases"])
    if inputs.get("uploads"):
        engine.api.put_archive(container, "/", uploads_archive(inputs["uploads"]))
    return container


def daemon_nofile_limit() -> int:
    """The daemon's own hard limit on open files: runc cannot grant a container more."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == "dockerd":
                line = next(line for line in (proc / "limits").read_text().splitlines()
                            if line.startswith("Max open files"))
                return int(line.split()[4])
        except (OSError, StopIteration, ValueError):
            continue
    return 1 << 30
