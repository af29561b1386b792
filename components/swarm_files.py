"""A Swarm service's configs and secrets outlive their replacement until its rollback no longer needs them.

They are immutable, named by a digest of their content (`platform_infra.components.swarm.object_name`) and replaced
create-before-delete. Swarm refuses to remove an object the current spec of a service uses, but not one only
its previous spec uses (moby/swarmkit manager/controlapi/config.go RemoveConfig and secret.go RemoveSecret
look services up by Spec alone: manager/state/store/services.go serviceIndexerByConfig/BySecret). The engine
deletes a replaced object once every step of `pulumi up` succeeded (pulumi/pulumi
pkg/resource/deploy/deployment_executor.go performPostSteps), and the provider's converge wait returns as soon
as every replica runs a task, old or new (kreuzwerker/terraform-provider-docker v4.5.0
internal/provider/resource_docker_service_funcs.go resourceDockerServiceUpdateRefreshFunc), before Swarm's
rolling update and its monitor window are over: a late automatic rollback, or a `docker service rollback`,
would start tasks whose files are gone.

So Pulumi never deletes them (`retain_on_delete`), and `RetiredFiles`, on which the service depends, removes
the service's objects that neither its spec nor its previous spec uses: before each update that changes a
file (at most three generations live: the new one, the current and the previous), and all of them once the
service is destroyed (dependents are deleted first).
"""

from __future__ import annotations

import os
import posixpath
import re
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider, UpdateResult

KINDS = ("Secret", "Config")


def _client(docker_host: str | None):
    """The Engine API the provider reaches: `docker_host`, else DOCKER_HOST or the local socket; TLS from
    DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, ssh:// through the ssh command (keys, known hosts, ssh config)."""
    import docker

    environment = {**os.environ, "DOCKER_HOST": docker_host} if docker_host else None
    return docker.from_env(environment=environment, use_ssh_client=(docker_host or "").startswith("ssh://"))


def _is_own(name: str, stem: str, path: str) -> bool:
    """Named by object_name for this service (`<prefix>-<service>`) and path: `<stem>-<12 hex><suffix>`."""
    suffix = posixpath.splitext(path)[1]
    kept = stem[: 64 - 12 - len(suffix) - 1]
    return re.fullmatch(re.escape(kept) + r"-[0-9a-f]{12}" + re.escape(suffix), name) is not None


def retire(props: dict[str, Any]) -> list[str]:
    """Removes the service's configs and secrets that are not in `current` and that neither the spec nor the
    previous spec of the Swarm service uses; returns their names."""
    import docker

    client = _client(props.get("docker_host"))
    try:
        service = client.api.inspect_service(props["service_name"])
        specs = [service["Spec"], service.get("PreviousSpec") or {}]
    except docker.errors.NotFound:
        specs = []
    used = {ref[f"{kind}ID"] for spec in specs for kind in KINDS
            for ref in spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get(f"{kind}s") or []}
    current = set(props["current"])
    removed = []
    for kind in KINDS:
        listing = getattr(client.api, f"{kind.lower()}s")
        remove = getattr(client.api, f"remove_{kind.lower()}")
        for found in listing(filters={"label": f"platform.service={props['service']}"}):
            name, labels = found["Spec"]["Name"], found["Spec"].get("Labels") or {}
            if name in current or found["ID"] in used or not _is_own(name, props["service_name"],
                                                                      labels.get("platform.path", "")):
                continue
            try:
                remove(found["ID"])
            except docker.errors.NotFound:
                continue
            removed.append(name)
    return sorted(removed)


class RetiredFilesProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(props["service_name"], {**props, "removed": retire(props)})

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("service_name", "service", "current", "docker_host")
        return DiffResult(changes=any(olds.get(key) != news.get(key) for key in keys), replaces=[],
                          delete_before_replace=False)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult({**news, "removed": retire(news)})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        retire({**props, "current": []})


class RetiredFiles(Resource, module="swarm", name="RetiredFiles"):
    """Removes the replaced configs and secrets of one Swarm service that its rollback no longer needs."""

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(RetiredFilesProvider(), name, {**props, "removed": None}, opts)
