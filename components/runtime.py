"""Turn runtime-neutral specs into pulumi-docker resources.

`DockerRuntime` targets one Docker host with plain containers. A Swarm runtime implements the same two
methods (`network`, `deploy`) with overlay networks, `docker.Service` and `docker.Secret` files, so no
component changes when the runtime does.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Protocol

import pulumi
import pulumi_docker as docker

from platform_infra.components.spec import (
    FILES_DIR,
    ContainerSpec,
    Healthcheck,
    NetworkName,
    secret_file_mode,
    secret_file_owner,
    validate_spec,
)

# Docker's default capability set minus all of it: every spec starts from nothing and adds back.
DROP_ALL = ["ALL"]


# Canonical forms: every value is sent exactly as kreuzwerker/terraform-provider-docker (wrapped by
# pulumi-docker 5.x) reads it back from the engine, so a second `pulumi up` finds no difference. A value
# the provider reads back differently is a permanent diff, and a replacement for ForceNew fields (cpus,
# capabilities, ulimit, log_opts in internal/provider/resource_docker_container.go).

_NANO = 10**9
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": _NANO, "m": 60 * _NANO, "h": 3600 * _NANO}


def nano_decimal(nanos: int) -> str:
    """internal/provider/helpers.go `nanoInt64ToDecimalString`, quirks included (10 CPUs read back as "10.")."""
    if nanos == 0:
        return "0"
    sign = "-" if nanos < 0 else ""
    whole, rest = divmod(abs(nanos), _NANO)
    text = f"{sign}{whole}.{rest:09d}"
    if text.count("0") == 9:
        # big.Rat.FloatString(1): one decimal, rounded half away from zero.
        tenths = (abs(nanos) + 5 * 10**7) // 10**8
        return f"{sign}{tenths // 10}.{tenths % 10}"
    return text.rstrip("0")


def cpu_nanos(cpus: float | str) -> int:
    """NanoCPUs the engine stores for `cpus` (docker/cli opts.ParseCPUs: exact decimal, whole nanoseconds)."""
    nanos = Fraction(str(cpus)) * _NANO
    if nanos.denominator != 1 or nanos <= 0:
        raise ValueError(f"cpus {cpus!r} must be positive with at most 9 decimals")
    return int(nanos)


def canonical_cpus(cpus: float | str) -> str:
    """`cpus` as the provider reads it back: 1 -> "1.0", 1.5 -> "1.5", 0.25 -> "0.25"
    (resource_docker_container_funcs.go: `d.Set("cpus", nanoInt64ToDecimalString(...NanoCPUs))`)."""
    return nano_decimal(cpu_nanos(cpus))


def duration_nanos(value: str) -> int:
    """Go's time.ParseDuration for the non-negative durations we use ("90s", "1m30s", "500ms")."""
    parts = _DURATION_PART.findall(value)
    if value == "0":
        return 0
    if not parts or "".join(number + unit for number, unit in parts) != value:
        raise ValueError(f"duration {value!r} must be a Go duration such as 15s, 1m30s or 500ms")
    return sum(int(Fraction(number) * _DURATION_UNITS[unit]) for number, unit in parts)


def go_duration_string(nanos: int) -> str:
    """Go's time.Duration.String(): 90s -> "1m30s", 1h -> "1h0m0s", 0 -> "0s"."""
    if nanos == 0:
        return "0s"
    if nanos < _NANO:
        unit, scale = next((u, s) for u, s in (("ms", 10**6), ("µs", 10**3), ("ns", 1)) if nanos >= s)
        whole, rest = divmod(nanos, scale)
        digits = len(str(scale)) - 1
        return f"{whole}{('.' + f'{rest:0{digits}d}'.rstrip('0')) if rest else ''}{unit}"
    seconds, rest = divmod(nanos, _NANO)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    text = f"{seconds}{('.' + f'{rest:09d}'.rstrip('0')) if rest else ''}s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    return f"{minutes}m{text}" if minutes else text


def go_duration(value: str) -> str:
    """A container healthcheck duration as the provider reads it back: "60s" -> "1m0s"
    (resource_docker_container_funcs.go: `container.Config.Healthcheck.StartPeriod.String()`)."""
    return go_duration_string(duration_nanos(value))


def service_duration(value: str) -> str:
    """A Swarm service duration as the provider reads it back: "60s" -> "1m", "90s" -> "1m30s"
    (resource_docker_service_structures.go `shortDur`: Duration.String() without a trailing "m0s"/"h0m")."""
    return service_duration_string(duration_nanos(value))


def service_duration_string(nanos: int) -> str:
    """`shortDur` of a duration in nanoseconds (the form of `service_duration`)."""
    text = go_duration_string(nanos)
    if text.endswith("m0s"):
        text = text[:-2]
    if text.endswith("h0m"):
        text = text[:-2]
    return text


def memory_bytes(megabytes: int) -> int:
    """A Swarm memory limit or reservation: whole bytes, read back as stored
    (resource_docker_service_structures.go flattenResourceLimits/flattenResourceReservations: `MemoryBytes`)."""
    return megabytes * 1024 * 1024


_TMPFS_SIZE = re.compile(r"^(\d+)([kmg]?)$")


def tmpfs_bytes(options: str) -> int | None:
    """`size=` of a container tmpfs option string ("rw,noexec,size=64m,uid=101") in bytes: a Swarm tmpfs mount
    takes only a size and a mode, read back as the integers stored
    (resource_docker_service_structures.go flattenServiceMounts: `int(v.TmpfsOptions.SizeBytes)`)."""
    for option in options.split(","):
        key, _, value = option.partition("=")
        match = _TMPFS_SIZE.match(value.lower()) if key == "size" else None
        if match:
            return int(match[1]) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match[2]]
    return None


def config_data(content: str, is_base64: bool) -> str:
    """The `data` of a docker config or secret: standard base64 of the file's bytes. The provider decodes it once
    and sends the bytes to the engine (kreuzwerker/terraform-provider-docker v4.5.0
    internal/provider/resource_docker_config.go getConfigDataBytes, resource_docker_secret.go
    resourceDockerSecretCreate: base64.StdEncoding.DecodeString), and reads a config's back as
    base64.StdEncoding.EncodeToString(Spec.Data). Content that already is base64 (a binary file) is sent as
    that encoding, in its canonical form; encoding it again would deliver its base64 text as the file."""
    raw = base64.b64decode(content, validate=True) if is_base64 else content.encode()
    return base64.b64encode(raw).decode()


def tmpfs_volume_options(size_bytes: int | None, mode: int | None) -> dict[str, str]:
    """Driver options of a local volume that is a tmpfs allowing exec (where a Swarm tmpfs mount cannot):
    the local driver mounts it with exactly these (moby daemon/volume/local/local_unix.go: `type`, `device`, `o` to
    mount.Mount), nosuid and nodev always. Read back as stored, driver_name only when not empty
    (resource_docker_service_structures.go flattenServiceMounts: `driver_options` from
    VolumeOptions.DriverConfig.Options, `driver_name` if `len(Name) > 0`)."""
    options = ["nosuid", "nodev", *([f"size={size_bytes}"] if size_bytes else []),
               *([f"mode={mode:o}"] if mode is not None else [])]
    return {"type": "tmpfs", "device": "tmpfs", "o": ",".join(options)}


OVERLAY_VNI_OPTION = "com.docker.network.driver.overlay.vxlanid_list"
_VNI_FIRST, _VNI_LAST = 2**23, 2**24 - 1


def overlay_vni(network_name: str) -> str:
    """The VXLAN id of an overlay network, sent among its options. The overlay driver adds the id it assigns to
    the options the engine reports (moby daemon/libnetwork/drivers/overlay/ovmanager/ovmanager.go
    NetworkAllocate), resource_docker_network_funcs.go reads them back and `options` is ForceNew: without it in
    the inputs, a network with options is replaced at every `pulumi up`. An id the driver is given is kept. Taken
    from the network's name, in the upper half of the range (the driver assigns from 4096 up); a clash with
    another network fails the creation with the id named."""
    digest = int(hashlib.sha256(network_name.encode()).hexdigest(), 16)
    return str(_VNI_FIRST + digest % (_VNI_LAST - _VNI_FIRST + 1))


def readiness_timeout(check: Healthcheck) -> int:
    """Seconds the provider waits for `healthy` (`wait_timeout`): the start period plus every retry of the
    healthcheck, and a margin; after that the engine itself calls the container unhealthy."""
    attempts = check.retries * (duration_nanos(check.interval) + duration_nanos(check.timeout))
    return -(-(duration_nanos(check.start_period) + attempts) // _NANO) + 30


def canonical_capability(name: str) -> str:
    """Capabilities as the engine stores them from the API and the provider reads back (HostConfig.CapAdd):
    upper case, as given, without the "CAP_" prefix the docker CLI would add."""
    return name.upper().removeprefix("CAP_")


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
    every_instance: str = ""
    """One DNS name that Docker's DNS answers with the address of every running instance, for a client that
    balances over them itself and skips a failing one (nginx re-resolving it per request): the instances'
    shared alias; in Swarm `tasks.<service>`, since the service's own name is one virtual IP that hides the
    replicas behind the engine's IPVS balancing."""

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
        return Deployment(hostnames, containers, every_instance=spec.service)

    def _uploads(self, spec: ContainerSpec) -> list[docker.ContainerUploadArgs]:
        uid, gid = secret_file_owner(spec)
        return [
            docker.ContainerUploadArgs(
                file=f.path,
                **{"content_base64" if f.base64 else "content": pulumi.Output.secret(f.content) if f.secret
                   else f.content},
                # Secrets for the service's user and group alone (secret_file_owner); other files for anyone.
                permissions=f"{secret_file_mode(f):04o}" if f.secret else "0444",
                owner=uid if f.secret or spec.user else None,
                group=gid if f.secret or spec.user else None,
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
            sysctls=dict(spec.sysctls) or None,
            capabilities=docker.ContainerCapabilitiesArgs(
                drops=DROP_ALL, adds=[canonical_capability(cap) for cap in spec.cap_add] or None),
            security_opts=["no-new-privileges:true"],
            memory=spec.memory_mb,
            memory_swap=spec.memory_mb,
            cpus=canonical_cpus(spec.cpus),
            restart="on-failure",
            max_retry_count=spec.max_restarts,
            must_run=True,
            # Created means healthy: whatever depends on this container starts only once it answers
            # (resource_docker_container_funcs.go, `wait`: polls State.Health until healthy or the timeout).
            wait=True,
            wait_timeout=readiness_timeout(check),
            destroy_grace_seconds=spec.stop_grace_seconds,
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=list(check.test), interval=go_duration(check.interval), timeout=go_duration(check.timeout),
                retries=check.retries, start_period=go_duration(check.start_period),
            ),
            log_driver="json-file",
            log_opts={"max-size": spec.log_max_size, "max-file": str(spec.log_max_files)},
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(name=networks[name].name,
                                                  aliases=list(dict.fromkeys(
                                                      [hostname, spec.service, *spec.aliases.get(name, ())])))
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
