"""Runtime-neutral description of one hardened container, and its validation.

Components describe *what* runs (a `ContainerSpec`); a runtime (`platform_infra.components.runtime`) decides *how*:
plain containers on one Docker host today, Swarm services later, from the same specs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pulumi

from platform_infra.components.images import pinned_image
from platform_infra.components.zones import ZONES, allowed_roles

Role = Literal["app", "ds", "mon", "lb", "egress"]
"""egress: a gateway from the internal networks to one outside service (the backup store's)."""
NetworkName = str
"""A key of `zones.ZONES`."""


# Where a read-only container finds the files it is given. pulumi-docker copies uploads through the
# container's root ("/"), which Docker refuses for a read-only root filesystem, so these files reach the
# container on a volume mounted read-only here (see DockerRuntime).
FILES_DIR = "/etc/platform"


class ComponentArgsError(ValueError):
    """A component was given arguments it cannot honour; raised before any child is registered."""


@dataclass(frozen=True)
class Healthcheck:
    test: Sequence[str]
    interval: str = "15s"
    timeout: str = "5s"
    retries: int = 5
    start_period: str = "30s"


@dataclass(frozen=True)
class VolumeMount:
    volume: str
    """Logical volume name; the runtime creates one named volume per deployment."""
    path: str
    read_only: bool = False
    shared_from: str | None = None
    """The service whose deployment creates (and keeps) this volume; this one only mounts it by name, as a
    backup job mounts the data it backs up."""


@dataclass(frozen=True)
class BindMount:
    """A host path, always read-only: only host-level exporters get one."""

    source: str
    target: str


@dataclass(frozen=True)
class FileSpec:
    path: str
    content: pulumi.Input[str]
    secret: bool = False
    """Secret content stays a Pulumi secret, and is readable only by the container's user when it has one."""
    base64: bool = False
    """`content` is base64 of a binary file."""
    owner_only: bool = False
    """A secret its reader refuses when its group may read it (libpq's password file: "has group or world
    access"): mode 0400, the owner's alone."""


@dataclass(frozen=True)
class Port:
    internal: int
    external: int
    ip: str = "0.0.0.0"


@dataclass(frozen=True)
class ContainerSpec:
    service: str
    """Stable service name, also the DNS alias other containers use."""
    role: Role
    image: str
    networks: Sequence[NetworkName]
    memory_mb: int
    cpus: float
    healthcheck: Healthcheck
    env: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    secret_env: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Credentials: Pulumi secrets in env on one host; secret files (`*_FILE`) on Swarm."""
    command: Sequence[str] | None = None
    entrypoint: Sequence[str] | None = None
    volumes: Sequence[VolumeMount] = ()
    bind_mounts: Sequence[BindMount] = ()
    tmpfs: Mapping[str, str] = field(default_factory=dict)
    files: Sequence[FileSpec] = ()
    ports: Sequence[Port] = ()
    aliases: Mapping[NetworkName, Sequence[str]] = field(default_factory=dict)
    """More DNS names of the service on a network, besides its own name."""
    sysctls: Mapping[str, str] = field(default_factory=dict)
    """Namespaced kernel parameters of the container."""
    user: str | None = None
    service_group: str | None = None
    """Without `user`: the group id of the user the image's entrypoint steps down to from root (gosu), which
    reads the secret files after root has (SECRET_FILE_MODE, secret_file_owner)."""
    read_only: bool = True
    cap_add: Sequence[str] = ()
    ulimits: Mapping[str, int] = field(default_factory=dict)
    waivers: Mapping[str, str] = field(default_factory=dict)
    """Policy waivers by rule id, each `reason=...;expires=YYYY-MM-DD` (the platform.waiver.<id> label)."""
    replicas: int = 1
    instance_env: str | None = None
    """Env var set to each instance's own hostname (e.g. WORKER_ID); instances are then numbered
    service-1..N even when there is one."""
    max_restarts: int = 5
    log_max_size: str = "10m"
    log_max_files: int = 3
    stop_grace_seconds: int = 30


SECRET_FILE_MODE = 0o440
"""A secret file: read by its owner and its group, never by another user of the container."""
OWNER_ONLY_FILE_MODE = 0o400


def secret_file_mode(f: FileSpec) -> int:
    return OWNER_ONLY_FILE_MODE if f.owner_only else SECRET_FILE_MODE


def secret_file_owner(spec: ContainerSpec) -> tuple[str, str]:
    """(uid, gid) owning the spec's secret files: its user's; or, for an image started as root that steps down
    to its own user, root (which reads them first, with no capability to override file permissions) and that
    user's group."""
    if spec.user:
        uid, _, gid = spec.user.partition(":")
        return uid, gid or uid
    return "0", spec.service_group or "0"


_PUBLISHING_ROLES = {"lb"}


def validate_spec(spec: ContainerSpec) -> ContainerSpec:
    """Refuse the insecure or impossible; each message names the field and what is allowed."""
    where = f"container {spec.service!r}"
    try:
        pinned_image(spec.image)
    except ValueError as exc:
        raise ComponentArgsError(f"{where}: image: {exc}") from None
    if spec.memory_mb < 16:
        raise ComponentArgsError(f"{where}: memory_mb must be at least 16, got {spec.memory_mb}")
    if not 0 < spec.cpus <= 64:
        raise ComponentArgsError(f"{where}: cpus must be in (0, 64], got {spec.cpus}")
    if not 1 <= spec.max_restarts <= 5:
        raise ComponentArgsError(f"{where}: max_restarts must be 1..5 (CIS 5.15), got {spec.max_restarts}")
    if spec.replicas < 1:
        raise ComponentArgsError(f"{where}: replicas must be at least 1, got {spec.replicas}")
    if not spec.networks:
        raise ComponentArgsError(f"{where}: networks must name at least one of {', '.join(ZONES)}")
    unknown = [name for name in spec.networks if name not in ZONES]
    if unknown:
        raise ComponentArgsError(f"{where}: networks: {unknown} are not networks of the zones table; "
                                 f"allowed: {', '.join(ZONES)}")
    for name in spec.networks:
        if spec.role not in allowed_roles(name):
            raise ComponentArgsError(f"{where}: networks: role {spec.role!r} may not join the {name} network "
                                     f"(roles allowed: {', '.join(sorted(allowed_roles(name)))})")
    if spec.ports and spec.role not in _PUBLISHING_ROLES:
        raise ComponentArgsError(f"{where}: ports: only the load balancer publishes ports, not role {spec.role!r}")
    if set(spec.aliases) - set(spec.networks):
        raise ComponentArgsError(f"{where}: aliases: only on the networks it joins {list(spec.networks)}")
    for mount in spec.bind_mounts:
        if spec.role != "mon":
            raise ComponentArgsError(f"{where}: bind_mounts: only host monitoring may mount host paths")
        socket = "docker.sock" in mount.source or "containerd.sock" in mount.source
        if socket and "CTR-014" not in spec.waivers:
            raise ComponentArgsError(f"{where}: bind_mounts: the container runtime socket is mounted only with a "
                                     "dated CTR-014 waiver")
    if not spec.healthcheck.test or spec.healthcheck.test[0] not in ("CMD", "CMD-SHELL"):
        raise ComponentArgsError(f"{where}: healthcheck.test must start with CMD or CMD-SHELL")
    if spec.user in ("root", "0", "0:0"):
        raise ComponentArgsError(f"{where}: user must not be root")
    if any(f.owner_only and not (f.secret and spec.user) for f in spec.files):
        raise ComponentArgsError(f"{where}: files: an owner_only file is a secret of a container with a `user`")
    if any(f.secret for f in spec.files) and not (spec.user or spec.service_group):
        raise ComponentArgsError(f"{where}: secret files need a `user`, or the `service_group` of the user the image "
                                 "steps down to, to be readable by it alone")
    if spec.read_only:
        outside = [f.path for f in spec.files if not f.path.startswith(FILES_DIR + "/")]
        if outside:
            raise ComponentArgsError(f"{where}: files: a read-only container's files must be under {FILES_DIR}/, "
                                     f"not {outside}")
    clash = set(spec.env) & set(spec.secret_env)
    if clash:
        raise ComponentArgsError(f"{where}: env and secret_env both set {sorted(clash)}")
    return spec
