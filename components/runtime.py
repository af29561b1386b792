"""Turn runtime-neutral specs into pulumi-docker resources.

`DockerRuntime` targets one Docker host with plain containers. A Swarm runtime implements the same two
methods (`network`, `deploy`) with overlay networks, `docker.Service` and `docker.Secret` files, so no
component changes when the runtime does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pulumi
import pulumi_docker as docker

from components.spec import FILES_DIR, ContainerSpec, NetworkName, validate_spec

# Docker's default capability set minus all of it: every spec starts from nothing and adds back.
DROP_ALL = ["ALL"]


def _child(owner: str, part: str) -> str:
    """A child's resource name: prefixed by its component's name, without saying the same word twice."""
    return part if part == owner or part.startswith(f"{owner}-") else f"{owner}-{part}"


@dataclass
class Deployment:
    """What a deployed spec offers other components: DNS names on the shared networks, and its resources."""

    hostnames: list[str]
    containers: list[pulumi.Resource] = field(default_factory=list)
    """One per hostname: what another component waits for (`depends_on`)."""
    scrape_hostnames: list[str] = field(default_factory=list)
    """Names through which Prometheus reaches every instance, when the hostnames do not (a Swarm service's
    name is one virtual IP; `tasks.<service>` resolves to each task); empty: the hostnames."""

    @property
    def scrape_hosts(self) -> list[str]:
        return self.scrape_hostnames or self.hostnames


class Runtime(Protocol):
    def network(self, name: NetworkName, internal: bool, owner: str, parent: pulumi.Resource) -> pulumi.Resource: ...

    def deploy(self, spec: ContainerSpec, networks: dict[str, pulumi.Resource], owner: str,
               parent: pulumi.Resource, depends_on: Sequence[pulumi.Resource] = ()) -> Deployment: ...


@dataclass(frozen=True)
class DockerRuntime:
    name_prefix: str
    """Prefix of every Docker object name, so several stacks can share one host."""
    provider: docker.Provider | None = None

    def _opts(self, parent: pulumi.Resource, **extra) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=parent, provider=self.provider, **extra)

    def network(self, name: NetworkName, internal: bool, owner: str, parent: pulumi.Resource) -> docker.Network:
        return docker.Network(
            f"{owner}-{name}",
            name=f"{self.name_prefix}-{name}",
            driver="bridge",
            internal=internal,
            labels=[docker.NetworkLabelArgs(label="platform.network", value=name)],
            opts=self._opts(parent),
        )

    def deploy(self, spec: ContainerSpec, networks: dict[str, pulumi.Resource], owner: str,
               parent: pulumi.Resource, depends_on: Sequence[pulumi.Resource] = ()) -> Deployment:
        validate_spec(spec)
        image = docker.RemoteImage(_child(owner, f"{spec.service}-image"), name=spec.image, keep_locally=True,
                                   opts=self._opts(parent))
        # Volume names by logical name. Another service's volume is mounted by its Docker name, never made a
        # second resource managing the same volume.
        volumes: dict[str, pulumi.Input[str]] = {
            mount.volume: docker.Volume(_child(owner, mount.volume), name=f"{self.name_prefix}-{mount.volume}",
                                        labels=[docker.VolumeLabelArgs(label="platform.service", value=spec.service)],
                                        opts=self._opts(parent, retain_on_delete=True)).name
            if mount.shared_from is None else f"{self.name_prefix}-{mount.volume}"
            for mount in spec.volumes
        }
        files_mount: list[docker.ContainerVolumeArgs] = []
        if spec.read_only and spec.files:
            files_volume, seed = self._seed_files(spec, image, owner, parent)
            files_mount = [docker.ContainerVolumeArgs(volume_name=files_volume.name, container_path=FILES_DIR,
                                                      read_only=True)]
            depends_on = [*depends_on, seed]
        numbered = spec.replicas > 1 or spec.instance_env is not None
        hostnames = [f"{spec.service}-{i}" for i in range(1, spec.replicas + 1)] if numbered else [spec.service]
        containers = [
            self._container(spec, hostname, image, volumes, files_mount, networks, owner, parent, depends_on)
            for hostname in hostnames
        ]
        return Deployment(hostnames, containers)

    def _uploads(self, spec: ContainerSpec) -> list[docker.ContainerUploadArgs]:
        uid, _, gid = (spec.user or "").partition(":")
        return [
            docker.ContainerUploadArgs(
                file=f.path,
                content=pulumi.Output.secret(f.content) if f.secret else f.content,
                # Secrets are for the service's own user; without one, the image's entrypoint steps down
                # from root to a user of its own, which must still read them.
                permissions="0400" if f.secret and uid else "0444",
                owner=uid or None,
                group=(gid or uid) or None,
            )
            for f in spec.files
        ]

    def _seed_files(self, spec: ContainerSpec, image: docker.RemoteImage, owner: str,
                    parent: pulumi.Resource) -> tuple[docker.Volume, docker.Container]:
        """A volume holding the spec's files, filled through a container that is created and never started.

        Docker copies into a container only through a writable root, so the service itself (read-only) cannot
        receive uploads; this never-started container takes them onto the volume the service mounts read-only.
        """
        volume = docker.Volume(_child(owner, f"{spec.service}-files"), name=f"{self.name_prefix}-{spec.service}-files",
                               labels=[docker.VolumeLabelArgs(label="platform.service", value=spec.service)],
                               opts=self._opts(parent))
        seed = docker.Container(
            _child(owner, f"{spec.service}-files"),
            name=f"{self.name_prefix}-{spec.service}-files",
            image=image.image_id,
            start=False,
            must_run=False,
            network_mode="none",
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=FILES_DIR)],
            uploads=self._uploads(spec),
            labels=[
                docker.ContainerLabelArgs(label="platform.role", value=spec.role),
                docker.ContainerLabelArgs(label="platform.service", value=spec.service),
                docker.ContainerLabelArgs(label="platform.purpose", value="files"),
            ],
            opts=self._opts(parent, delete_before_replace=True),
        )
        return volume, seed

    def _container(self, spec: ContainerSpec, hostname: str, image: docker.RemoteImage,
                   volumes: dict[str, pulumi.Input[str]], files_mount: list[docker.ContainerVolumeArgs],
                   networks: dict[str, pulumi.Resource], owner: str, parent: pulumi.Resource,
                   depends_on: Sequence[pulumi.Resource]) -> docker.Container:
        envs = [f"{key}={value}" for key, value in spec.env.items() if isinstance(value, str)]
        if spec.instance_env:
            envs.append(f"{spec.instance_env}={hostname}")
        envs += [pulumi.Output.concat(key, "=", value) for key, value in spec.env.items() if not isinstance(value, str)]
        envs += [pulumi.Output.secret(pulumi.Output.concat(key, "=", value)) for key, value in spec.secret_env.items()]
        labels = [
            docker.ContainerLabelArgs(label="platform.role", value=spec.role),
            docker.ContainerLabelArgs(label="platform.service", value=spec.service),
            *[docker.ContainerLabelArgs(label=f"platform.waiver.{rule}", value=waiver)
              for rule, waiver in spec.waivers.items()],
        ]
        if files_mount:
            # The files live on a volume, not in this container's definition: a digest of them makes a changed
            # file replace the container, so the service restarts on the new configuration.
            digest = pulumi.Output.all(*[f.content for f in spec.files]).apply(
                lambda contents: hashlib.sha256("\0".join(contents).encode()).hexdigest())
            labels.append(docker.ContainerLabelArgs(label="platform.files-digest", value=digest))
        check = spec.healthcheck
        return docker.Container(
            _child(owner, hostname),
            name=f"{self.name_prefix}-{hostname}",
            hostname=hostname,
            image=image.image_id,
            envs=envs,
            command=list(spec.command) if spec.command else None,
            entrypoints=list(spec.entrypoint) if spec.entrypoint else None,
            user=spec.user,
            read_only=spec.read_only,
            tmpfs=dict(spec.tmpfs) or None,
            capabilities=docker.ContainerCapabilitiesArgs(drops=DROP_ALL, adds=list(spec.cap_add) or None),
            security_opts=["no-new-privileges:true"],
            memory=spec.memory_mb,
            memory_swap=spec.memory_mb,
            cpus=f"{spec.cpus:g}",
            restart="on-failure",
            max_retry_count=spec.max_restarts,
            must_run=True,
            destroy_grace_seconds=spec.stop_grace_seconds,
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=list(check.test), interval=check.interval, timeout=check.timeout,
                retries=check.retries, start_period=check.start_period,
            ),
            log_driver="json-file",
            log_opts={"max-size": spec.log_max_size, "max-file": str(spec.log_max_files)},
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(name=networks[name].name, aliases=[hostname, spec.service])
                for name in spec.networks
            ],
            volumes=[
                *[docker.ContainerVolumeArgs(volume_name=volumes[m.volume], container_path=m.path,
                                             read_only=m.read_only) for m in spec.volumes],
                *files_mount,
            ] or None,
            mounts=[docker.ContainerMountArgs(type="bind", source=m.source, target=m.target, read_only=True,
                                              bind_options=docker.ContainerMountBindOptionsArgs(propagation="rslave"))
                    for m in spec.bind_mounts] or None,
            uploads=None if files_mount else (self._uploads(spec) or None),
            ports=[docker.ContainerPortArgs(internal=p.internal, external=p.external, ip=p.ip) for p in spec.ports]
            or None,
            ulimits=[docker.ContainerUlimitArgs(name=k, soft=v, hard=v) for k, v in spec.ulimits.items()] or None,
            labels=labels,
            opts=self._opts(parent, delete_before_replace=True, depends_on=list(depends_on) or None,
                            additional_secret_outputs=["envs"] if spec.secret_env else None),
        )
