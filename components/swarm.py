"""Turn runtime-neutral specs into Docker Swarm services: the `Runtime` protocol on one node or many.

One `docker.Service` per spec. Its files are docker configs and its credentials docker secrets, mounted as
files (no carrier containers, nothing in env); networks are overlays (app and data internal, optionally
encrypted); a failed rolling update rolls back by itself.

Inputs are written in the canonical form the provider reads back, so a refresh shows no diff; the forms
come from components/runtime.py, the one place for them (networks attached by id,
kreuzwerker/terraform-provider-docker internal/provider/resource_docker_service.go `networks_advanced`).
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from platform_infra.components.monitoring.targets import TASKS_DNS_PREFIX
from platform_infra.components.runtime import (
    DROP_ALL,
    OVERLAY_VNI_OPTION,
    Deployment,
    _child,
    canonical_capability,
    config_data,
    cpu_nanos,
    duration_nanos,
    memory_bytes,
    overlay_vni,
    service_duration,
    service_duration_string,
    tmpfs_bytes,
    tmpfs_volume_options,
)
from platform_infra.components.spec import (
    ComponentArgsError,
    ContainerSpec,
    FileSpec,
    NetworkName,
    secret_file_mode,
    secret_file_owner,
    validate_spec,
)
from platform_infra.components.swarm_files import RetiredFiles

SECRETS_DIR = "/run/secrets"
FILES_DIGEST_LABEL = "platform.files-digest"
EDGE_NODE_LABEL = "platform.edge"
"""Node label (`docker node update --label-add platform.edge=true NODE`) of the nodes the load balancer may
run on: it publishes 80/443 in host mode, on the node that runs it."""
STATEFUL_NODE_LABEL = "platform.{service}"
"""Node label pinning a stateful service to the node holding its volumes (`platform.postgres=true`)."""
# A service tmpfs mount takes only a size and a mode (TmpfsOptions), and the engine mounts it
# noexec,nosuid,nodev whatever is asked (moby daemon/oci_linux.go setMounts: `options := []string{"noexec",
# "nosuid", "nodev", ...}` before the size and mode). The provider sends no other option
# (resource_docker_service_structures.go: tmpfs_options has size_bytes and mode only).
SERVICE_TMPFS_FLAGS = frozenset({"rw", "noexec", "nosuid", "nodev"})
# `exec` is honoured by a tmpfs the engine's local volume driver mounts for the task (moby daemon/volume/local/local_unix.go:
# mount.Mount(device, path, type, o) with the options given, nothing added), bound into the container without
# noexec: nosuid and nodev are added to it all the same.
EXEC_TMPFS_FLAGS = frozenset({"rw", "exec", "nosuid", "nodev"})
_TMPFS_MODE = re.compile(r"^[0-7]{1,4}$")
# Reservations are what the scheduler sets aside on a node; limits are what a task may use.
RESERVATION_RATIO = 0.5
UPDATE_DELAY = "10s"
RESTART_DELAY = "5s"
RESTART_WINDOW = "2m"
# The Docker client sets the image's platforms from the registry at create, whatever the spec says (moby
# client/service_create.go resolveContainerSpecImage), and the provider reads them back as an input
# (resource_docker_service_structures.go flattenPlacement): they follow the image, not the program.
ENGINE_PLATFORMS = "taskSpec.placement.platforms"
# How often the provider polls a converging service: its default, sent as such (converge_config is not read
# back, so what is sent stays in the state as sent: resource_docker_service_funcs.go resourceDockerServiceRead
# sets no converge_config).
CONVERGE_POLL = "7s"
CONVERGE_MARGIN_SECONDS = 120
"""Scheduling, image pulls and the provider's own polling on top of the tasks' worst case."""


def object_name(prefix: str, service: str, path: str, content: str) -> str:
    """A docker config or secret name: they are immutable, so the name changes with the content and the
    service moves to the new object before the old one goes. Swarm allows 64 characters."""
    digest = hashlib.sha256(f"{path}\0{content}".encode()).hexdigest()[:12]
    suffix = posixpath.splitext(path)[1]
    return f"{prefix}-{service}"[: 64 - len(digest) - len(suffix) - 1] + f"-{digest}{suffix}"


def is_engine_socket(path: str) -> bool:
    return path.endswith(("docker.sock", "containerd.sock"))


def is_stateful(spec: ContainerSpec) -> bool:
    return bool(spec.volumes)


def volume_holders(spec: ContainerSpec) -> list[str]:
    """The services whose nodes hold the volumes a spec mounts (volumes are local to a node): the holders of the
    volumes it shares from others, whose node its own volumes then live on too (a backup job's metrics); else
    itself, when it has volumes."""
    shared = sorted({m.shared_from for m in spec.volumes if m.shared_from})
    return shared or ([spec.service] if spec.volumes else [])


@dataclass(frozen=True)
class Tmpfs:
    """A tmpfs of a spec as Swarm can honour it."""

    path: str
    size_bytes: int | None
    mode: int | None
    executable: bool
    """Mounted by the local volume driver (exec allowed), not as a service tmpfs (always noexec)."""


def swarm_tmpfs(spec: ContainerSpec) -> list[Tmpfs]:
    """The spec's tmpfs mounts; an option Swarm cannot honour is refused, never dropped."""
    found = []
    for path, options in spec.tmpfs.items():
        flags = [option for option in options.split(",") if option and "=" not in option]
        size = mode = None
        for option in options.split(","):
            key, _, value = option.partition("=")
            if key == "size" and tmpfs_bytes(option) is not None:
                size = tmpfs_bytes(option)
            elif key == "mode" and _TMPFS_MODE.match(value) and int(value, 8) <= 0o777:
                # The provider reads a mode back through FileMode.Perm() (flattenServiceMounts): a sticky, setuid
                # or setgid bit would differ at every `pulumi up`.
                mode = int(value, 8)
            elif option and option not in SERVICE_TMPFS_FLAGS | EXEC_TMPFS_FLAGS:
                raise ComponentArgsError(
                    f"container {spec.service!r}: tmpfs {path}: option {option!r} is not honoured in Swarm "
                    f"(size=N[k|m|g], mode=0-777, {', '.join(sorted(SERVICE_TMPFS_FLAGS | EXEC_TMPFS_FLAGS))})")
        executable = "exec" in flags
        if executable and "noexec" in flags:
            raise ComponentArgsError(f"container {spec.service!r}: tmpfs {path}: options 'exec' and 'noexec' "
                                     "contradict each other")
        found.append(Tmpfs(path, size, mode, executable))
    return found


UPDATE_PARALLELISM = 1
"""Tasks a rolling update (or rollback) replaces at a time. Under `start-first` each new task starts beside the
one it replaces: such a service briefly runs replicas + UPDATE_PARALLELISM tasks."""


def rollout_order(spec: ContainerSpec) -> str:
    # A second task beside the first needs neither the volume nor the host port the first one holds.
    return "stop-first" if is_stateful(spec) or spec.ports else "start-first"


def monitor_period(spec: ContainerSpec) -> str:
    """How long a new task is watched before the update moves on: long enough for its healthcheck to fail."""
    check = spec.healthcheck
    nanos = duration_nanos(check.start_period) + (
        duration_nanos(check.interval) + duration_nanos(check.timeout)) * check.retries
    return service_duration_string(nanos)


def converge_timeout(spec: ContainerSpec, replicas: int) -> str:
    """How long `pulumi up` waits for a replicated service to converge (converge_config.timeout).

    The provider waits, after a create, until every replica runs (healthy: a task with a healthcheck is
    running only once it passes) and, after an update, until Swarm reports the update completed or every
    replica runs a task, failing on a rollback or a pause (kreuzwerker/terraform-provider-docker v4.5.0
    internal/provider/resource_docker_service_funcs.go resourceDockerServiceCreate/UpdateRefreshFunc); on a
    timeout it fails too, and a service it created is deleted. An update at parallelism 1 replaces each of
    `replicas` tasks, each given up to the monitor period to turn healthy, then UPDATE_DELAY; Swarm then
    watches the last one for one more monitor period before it reports completed (moby/swarmkit
    manager/orchestrator/update/updater.go)."""
    monitor = duration_nanos(monitor_period(spec))
    nanos = replicas * (monitor + duration_nanos(UPDATE_DELAY)) + monitor
    return f"{-(-nanos // 10**9) + CONVERGE_MARGIN_SECONDS}s"


@dataclass(frozen=True)
class SwarmRuntime:
    name_prefix: str
    """Prefix of every Swarm object name, so several stacks can share one Swarm."""
    provider: docker.Provider | None = None
    encrypt_networks: bool = False
    """IPsec between nodes on every overlay network (`encrypted` driver option)."""
    docker_host: str | None = None
    """The Engine API the provider uses (None: DOCKER_HOST or the local socket), for `RetiredFiles`."""
    autoscaled: Mapping[str, int] = field(default_factory=dict)
    """Services whose replicas a controller owns, with the most it may set: Pulumi sets them once and then
    leaves them alone (the project refreshes before every operation: Pulumi.yaml `options.refresh`)."""

    def _opts(self, parent: pulumi.Resource, **extra) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=parent, provider=self.provider, **extra)

    def network(self, name: NetworkName, internal: bool, owner: str, parent: pulumi.Resource) -> docker.Network:
        network_name = f"{self.name_prefix}-{name}"
        # Every option as read back, the VXLAN id included, so turning encryption on or off replaces the network.
        options = {OVERLAY_VNI_OPTION: overlay_vni(network_name)}
        if self.encrypt_networks:
            options["encrypted"] = "true"
        return docker.Network(
            f"{owner}-{name}",
            name=network_name,
            driver="overlay",
            internal=internal,
            attachable=False,
            options=options,
            labels=[docker.NetworkLabelArgs(label="platform.network", value=name)],
            opts=self._opts(parent),
        )

    def deploy(self, spec: ContainerSpec, networks: dict[str, pulumi.Resource], owner: str,
               parent: pulumi.Resource, depends_on: Sequence[pulumi.Resource] = ()) -> Deployment:
        validate_spec(spec)
        tmpfs = swarm_tmpfs(spec)
        service_name = f"{self.name_prefix}-{spec.service}"
        secret_files = [f for f in spec.files if f.secret]
        # Credentials an image reads only from env reach it as files too: `<KEY>_FILE` names the file.
        secret_files += [FileSpec(f"{SECRETS_DIR}/{key.lower()}", value, secret=True)
                         for key, value in spec.secret_env.items()]
        env = {key: value for key, value in spec.env.items()}
        env |= {f"{key}_FILE": f"{SECRETS_DIR}/{key.lower()}" for key in spec.secret_env}
        if spec.instance_env:
            # Swarm expands templates in env: each replica learns its slot (worker-1, worker-2, ...).
            env[spec.instance_env] = f"{spec.service}-{{{{.Task.Slot}}}}"
        labels = {"platform.role": spec.role, "platform.service": spec.service,
                  **{f"platform.waiver.{rule}": waiver for rule, waiver in spec.waivers.items()}}
        secret_owner = secret_file_owner(spec)
        secrets = [self._file_object(docker.Secret, spec, f, owner, parent) for f in secret_files]
        configs = [self._file_object(docker.ServiceConfig, spec, f, owner, parent)
                   for f in spec.files if not f.secret]
        retired: list[pulumi.Resource] = []
        if secrets or configs:
            # Its files are configs and secrets, not part of its own definition (policy rules read them there).
            labels[FILES_DIGEST_LABEL] = pulumi.Output.all(*[o.name for o in (*secrets, *configs)]).apply(
                lambda names: hashlib.sha256("\0".join(names).encode()).hexdigest())
            # Replaced ones are kept for the rollback, then removed (components/swarm_files.py).
            retired = [RetiredFiles(
                _child(owner, f"{spec.service}-retired-files"),
                {"service_name": service_name, "service": spec.service, "docker_host": self.docker_host,
                 "current": [o.name for o in (*secrets, *configs)]},
                pulumi.ResourceOptions(parent=parent))]
        check = spec.healthcheck
        rollout = {
            "parallelism": UPDATE_PARALLELISM,
            "delay": service_duration(UPDATE_DELAY),
            "monitor": monitor_period(spec),
            "max_failure_ratio": "0.0",
            "order": rollout_order(spec),
        }
        # A spec reading host paths watches its host: one task on every node. One that only talks to the
        # Engine API updates services, which only a manager's API does.
        per_node = any(not is_engine_socket(m.source) for m in spec.bind_mounts)
        # Volumes are local to a node: a service runs where the volumes it mounts live. A task on every node
        # mounts each node's own volume of that name (node-exporter, the backup job's metrics where it runs).
        constraints = [] if per_node else [
            f"node.labels.{STATEFUL_NODE_LABEL.format(service=holder)}==true" for holder in volume_holders(spec)]
        if spec.ports:
            constraints.append(f"node.labels.{EDGE_NODE_LABEL}==true")
        if spec.bind_mounts and not per_node:
            constraints.append("node.role==manager")
        service = docker.Service(
            _child(owner, spec.service),
            name=service_name,
            labels=_labels(docker.ServiceLabelArgs, labels),
            mode=docker.ServiceModeArgs(global_=True) if per_node else docker.ServiceModeArgs(
                replicated=docker.ServiceModeReplicatedArgs(replicas=spec.replicas)),
            task_spec=docker.ServiceTaskSpecArgs(
                container_spec=docker.ServiceTaskSpecContainerSpecArgs(
                    image=self._by_digest(spec.image, parent, depends_on),
                    commands=list(spec.entrypoint) if spec.entrypoint else None,
                    args=list(spec.command) if spec.command else None,
                    env=env or None,
                    user=spec.user,
                    read_only=spec.read_only,
                    sysctl=dict(spec.sysctls) or None,
                    cap_drops=DROP_ALL,
                    cap_adds=[canonical_capability(cap) for cap in spec.cap_add] or None,
                    labels=_labels(docker.ServiceTaskSpecContainerSpecLabelArgs, labels),
                    stop_grace_period=service_duration(f"{spec.stop_grace_seconds}s"),
                    healthcheck=docker.ServiceTaskSpecContainerSpecHealthcheckArgs(
                        tests=list(check.test), interval=service_duration(check.interval),
                        timeout=service_duration(check.timeout), retries=check.retries,
                        start_period=service_duration(check.start_period)),
                    mounts=self._mounts(spec, tmpfs) or None,
                    secrets=[docker.ServiceTaskSpecContainerSpecSecretArgs(
                        secret_id=secret.id, secret_name=secret.name, file_name=f.path,
                        # Readable by the service's user and group alone (secret_file_owner).
                        file_uid=secret_owner[0], file_gid=secret_owner[1], file_mode=secret_file_mode(f))
                        for secret, f in zip(secrets, secret_files, strict=True)] or None,
                    configs=[docker.ServiceTaskSpecContainerSpecConfigArgs(
                        config_id=config.id, config_name=config.name, file_name=f.path, file_uid="0",
                        file_gid="0", file_mode=0o444)
                        for config, f in zip(configs, [f for f in spec.files if not f.secret], strict=True)] or None,
                ),
                resources=docker.ServiceTaskSpecResourcesArgs(
                    limits=docker.ServiceTaskSpecResourcesLimitsArgs(
                        nano_cpus=cpu_nanos(spec.cpus), memory_bytes=memory_bytes(spec.memory_mb)),
                    reservation=docker.ServiceTaskSpecResourcesReservationArgs(
                        nano_cpus=int(cpu_nanos(spec.cpus) * RESERVATION_RATIO),
                        memory_bytes=memory_bytes(int(spec.memory_mb * RESERVATION_RATIO))),
                ),
                restart_policy=docker.ServiceTaskSpecRestartPolicyArgs(
                    condition="on-failure", delay=service_duration(RESTART_DELAY), max_attempts=spec.max_restarts,
                    window=service_duration(RESTART_WINDOW)),
                placement=docker.ServiceTaskSpecPlacementArgs(constraints=constraints) if constraints else None,
                log_driver=docker.ServiceTaskSpecLogDriverArgs(
                    name="json-file", options={"max-size": spec.log_max_size, "max-file": str(spec.log_max_files)}),
                networks_advanceds=[
                    docker.ServiceTaskSpecNetworksAdvancedArgs(
                        id=networks[name].id, aliases=[spec.service, *spec.aliases.get(name, ())])
                    for name in spec.networks],
            ),
            update_config=docker.ServiceUpdateConfigArgs(failure_action="rollback", **rollout),
            rollback_config=docker.ServiceRollbackConfigArgs(failure_action="pause", **rollout),
            # `pulumi up` waits until the tasks run healthy (dependents start after), and fails when they do not
            # or the update rolls back or pauses. Its wait after an update ends once every replica runs a task,
            # old or new, before Swarm's update is over: hence the retained files. The provider refuses it on a
            # global service (resource_docker_service.go: converge_config ConflictsWith mode.0.global).
            converge_config=None if per_node else docker.ServiceConvergeConfigArgs(
                delay=CONVERGE_POLL,
                timeout=converge_timeout(spec, max(spec.replicas, self.autoscaled.get(spec.service, 0)))),
            endpoint_spec=docker.ServiceEndpointSpecArgs(
                mode="vip",
                # Host mode keeps the client's address (the edge's per-client rate limits need it); the ingress
                # mesh would replace it with its own.
                ports=[docker.ServiceEndpointSpecPortArgs(target_port=p.internal, published_port=p.external,
                                                          publish_mode="host", protocol="tcp")
                       for p in spec.ports] or None,
            ),
            # An autoscaled service's replicas and labels are the controller's and the operator's: its pause label
            # (components/autoscaling.py PAUSE_LABEL, set with `docker service update --label-add`) is read back
            # at the refresh (resource_docker_service_funcs.go: d.Set("labels", ...Spec.Labels)) and an update
            # would send only the declared ones (resource_docker_service_structures.go: labelSetToMap of the
            # `labels` set); ignored, the refreshed labels are sent back. Its declared labels are set at creation.
            opts=self._opts(parent, depends_on=[*depends_on, *retired] or None,
                            ignore_changes=[*(["mode.replicated.replicas", "labels"] if spec.service in self.autoscaled
                                              else []), ENGINE_PLATFORMS]),
        )
        # Docker DNS gives the service name a virtual IP balancing over every replica, and `tasks.<service>`
        # the address of each task (what Prometheus scrapes).
        every_task = f"{TASKS_DNS_PREFIX}{spec.service}"
        return Deployment([spec.service], [service], scrape_hostnames=[every_task], every_instance=every_task)

    def _by_digest(self, image: str, parent: pulumi.Resource,
                   depends_on: Sequence[pulumi.Resource]) -> pulumi.Input[str]:
        """`name:tag@sha256:...`, the digest the registry has for the tag now (an image the stack builds is
        looked up once its build, among `depends_on`, has pushed it). The provider creates services with
        QueryRegistry (resource_docker_service_funcs.go), and the Docker client would otherwise store the
        tag with the digest appended, which the provider reads back unsuppressed: a diff at every `up`.
        A reference that carries a digest is stored as sent (moby client/service_create.go,
        imageWithDigestString)."""
        if "@sha256:" in image:
            return image
        found = docker.get_registry_image_output(name=image, opts=pulumi.InvokeOutputOptions(
            parent=parent, provider=self.provider, depends_on=list(depends_on) or None))
        return found.sha256_digest.apply(lambda digest: f"{image}@{digest}")

    def _file_object(self, kind: type[docker.Secret | docker.ServiceConfig], spec: ContainerSpec,
                     file: FileSpec, owner: str, parent: pulumi.Resource) -> docker.Secret | docker.ServiceConfig:
        content = pulumi.Output.from_input(file.content)
        # The name is derived from a digest of the content, never the content: it is not a secret.
        name = pulumi.Output.unsecret(content.apply(
            lambda text: object_name(self.name_prefix, spec.service, file.path, text)))
        data = content.apply(lambda text: config_data(text, file.base64))
        label_args = docker.SecretLabelArgs if kind is docker.Secret else docker.ServiceConfigLabelArgs
        slug = file.path.strip("/").replace("/", "-")
        return kind(
            _child(owner, f"{spec.service}-{slug}"),
            name=name,
            data=pulumi.Output.secret(data) if file.secret else data,
            labels=_labels(label_args, {"platform.role": spec.role, "platform.service": spec.service,
                                        "platform.path": file.path}),
            # Immutable and referenced by the service: the new object is created and the service moved to it
            # (the default order; never delete_before_replace). The old one stays for a rollback: RetiredFiles
            # removes it once neither the service's spec nor its previous spec uses it.
            opts=self._opts(parent, retain_on_delete=True),
        )

    def _mounts(self, spec: ContainerSpec, tmpfs: list[Tmpfs]) -> list[docker.ServiceTaskSpecContainerSpecMountArgs]:
        Mount = docker.ServiceTaskSpecContainerSpecMountArgs
        return [
            *[Mount(type="volume", source=f"{self.name_prefix}-{m.volume}", target=m.path, read_only=m.read_only,
                    volume_options=docker.ServiceTaskSpecContainerSpecMountVolumeOptionsArgs(
                        labels=[docker.ServiceTaskSpecContainerSpecMountVolumeOptionsLabelArgs(
                            label="platform.service", value=spec.service)]))
              for m in spec.volumes],
            *[Mount(type="bind", source=m.source, target=m.target, read_only=True,
                    bind_options=docker.ServiceTaskSpecContainerSpecMountBindOptionsArgs(propagation="rslave"))
              for m in spec.bind_mounts],
            # No mode unless given: the kernel's tmpfs default is 1777, and the provider reads a mode back through
            # FileMode.Perm(), which drops the sticky bit (flattenServiceMounts), so 01777 would always differ.
            *[Mount(type="tmpfs", target=t.path, tmpfs_options=docker.ServiceTaskSpecContainerSpecMountTmpfsOptionsArgs(
                size_bytes=t.size_bytes, mode=t.mode))
              for t in tmpfs if not t.executable],
            *[self._exec_tmpfs(spec, t) for t in tmpfs if t.executable],
        ]

    def _exec_tmpfs(self, spec: ContainerSpec, tmpfs: Tmpfs) -> docker.ServiceTaskSpecContainerSpecMountArgs:
        """A tmpfs that allows exec: a volume of the engine's local driver, of type tmpfs, created on the task's
        node (moby daemon/cluster/executor/container/adapter.go createVolumes) and mounted while a task uses it
        (the driver unmounts it, and its files are gone, when the last one stops). One per replica: Swarm
        expands `{{.Task.Slot}}` in a mount's source (swarmkit template/expand.go expandMounts); the new task
        of a start-first rollout shares its slot's with the old one (files of their own, by unique names, as
        the JVM makes them). The name carries a digest of the options: an existing volume is reused as it was
        created. Not a data volume: no `is_stateful`, no placement, nothing to back up. The source is read back
        unexpanded (the spec keeps the template), the options as `tmpfs_volume_options` says."""
        driver_options = tmpfs_volume_options(tmpfs.size_bytes, tmpfs.mode)
        digest = hashlib.sha256(driver_options["o"].encode()).hexdigest()[:8]
        slug = tmpfs.path.strip("/").replace("/", "-")
        return docker.ServiceTaskSpecContainerSpecMountArgs(
            type="volume", source=f"{self.name_prefix}-{spec.service}-{slug}-{digest}-{{{{.Task.Slot}}}}",
            target=tmpfs.path,
            volume_options=docker.ServiceTaskSpecContainerSpecMountVolumeOptionsArgs(
                labels=[docker.ServiceTaskSpecContainerSpecMountVolumeOptionsLabelArgs(label=key, value=value)
                        for key, value in (("platform.service", spec.service), ("platform.purpose", "tmpfs"))],
                driver_name="local", driver_options=driver_options))


def _labels(kind, labels: dict[str, str]) -> list:
    return [kind(label=key, value=value) for key, value in labels.items()]
