"""Container runtime rules (CIS Docker Benchmark §5) on docker.Container and docker.Service."""

from __future__ import annotations

import re

from platform_infra.policies.props import CONTAINER, ROLES, WORKLOADS, Workload, get, items, number, truthy
from platform_infra.policies.registry import ADVISORY, MANDATORY, not_enforceable, resource_rule, stack_rule
from platform_infra.policies.scope import publishes_ports, reads_identity

ROLES_SCHEMA = {"type": "array", "items": {"enum": list(ROLES)}, "uniqueItems": True}
SCAN = ["success.security-scan"]


@resource_rule(
    "CTR-001",
    "no-privileged",
    "No privileged containers",
    types=[CONTAINER],
    severity="critical",
    prod=MANDATORY,
    on_unknown="fail",
    checklist=SCAN,
    sources=["CIS 5.5", "CKV_K8S_16", "Polaris runAsPrivileged", "KICS privileged_containers_enabled"],
    remediation="Remove `privileged=True`; add back only the capability the process needs.",
)
def no_privileged(w: Workload, report, options) -> None:
    """Containers must not run privileged: a privileged container is root on the host."""
    if truthy(get(w.props, "privileged")):
        report("privileged is true")


DANGEROUS_CAPS = [
    "ALL",
    "SYS_ADMIN",
    "NET_ADMIN",
    "SYS_PTRACE",
    "SYS_MODULE",
    "DAC_READ_SEARCH",
    "SYS_RAWIO",
    "SYS_TIME",
    "NET_RAW",
    "BPF",
    "PERFMON",
]


@resource_rule(
    "CTR-002",
    "no-dangerous-cap-add",
    "No dangerous added capabilities",
    types=WORKLOADS,
    severity="critical",
    prod=MANDATORY,
    checklist=SCAN,
    sources=[
        "CIS 5.4",
        "docker-bench C.5.3.1-C.5.3.4",
        "CKV_K8S_25",
        "CKV_K8S_39",
        "Polaris dangerousCapabilities",
        "KICS container_capabilities_unrestricted",
    ],
    options={"denied": {"type": "array", "items": {"type": "string"}, "default": DANGEROUS_CAPS}},
    remediation="Drop the capability from `capabilities.adds` / `capAdds`; grant a narrower one.",
)
def no_dangerous_cap_add(w: Workload, report, options) -> None:
    """Added capabilities must not include host-level powers such as SYS_ADMIN, NET_ADMIN or ALL."""
    denied = {c.upper().removeprefix("CAP_") for c in options["denied"]}
    bad = sorted(set(w.cap_adds) & denied)
    if bad:
        report(f"adds dangerous capabilities: {', '.join(bad)}")


@resource_rule(
    "CTR-003",
    "drop-all-caps",
    "Drop all capabilities",
    types=WORKLOADS,
    severity="medium",
    prod=MANDATORY,
    checklist=SCAN,
    sources=["CIS 5.4 remediation", "Polaris insecureCapabilities", "CKV_K8S_37", "CKV_K8S_28"],
    options={"dropAllRoles": {**ROLES_SCHEMA, "default": ["app", "egress"]}},
    remediation="Set `capabilities.drops=['ALL']` (Service: `capDrops`) and add back the minimum.",
)
@reads_identity
def drop_all_caps(w: Workload, report, options) -> None:
    """Application containers drop ALL capabilities; every container drops at least NET_RAW."""
    drops = set(w.cap_drops)
    if w.role in options["dropAllRoles"] and "ALL" not in drops:
        report(f"role {w.role} must drop ALL capabilities")
    elif "ALL" not in drops and "NET_RAW" not in drops:
        report("does not drop NET_RAW (or ALL)")


NON_ROOT_IMAGES = ["grafana", "prometheus", "alertmanager", "haproxy", "exporter"]


@resource_rule(
    "CTR-004",
    "non-root-user",
    "Run as a non-root user",
    types=WORKLOADS,
    severity="high",
    prod=MANDATORY,
    checklist=SCAN,
    sources=[
        "CIS 4.1",
        "CKV_DOCKER_3",
        "CKV_DOCKER_8",
        "CKV_K8S_23",
        "CKV_K8S_40",
        "Polaris runAsRootAllowed",
        "kube-score container-security-context-user-group-id",
    ],
    options={"explicitUserRoles": {**ROLES_SCHEMA, "default": ["app", "egress"]}},
    remediation="Set `user='10001:10001'` (Service: `containerSpec.user`); never 0 or root.",
)
@reads_identity
def non_root_user(w: Workload, report, options) -> None:
    """Containers must not run as root; application containers name their user explicitly."""
    user = str(get(w.spec, "user", default="")).strip()
    name = user.split(":", 1)[0]
    if name in ("0", "root"):
        report(f"user is {name}")
    elif not user and w.role in options["explicitUserRoles"]:
        report(f"role {w.role} must set an explicit non-root user (the image's USER is invisible)")


@resource_rule(
    "CTR-005",
    "read-only-rootfs",
    "Read-only root filesystem",
    types=WORKLOADS,
    severity="medium",
    prod=MANDATORY,
    checklist=SCAN,
    sources=["CIS 5.13", "CKV_K8S_22", "Polaris notReadOnlyRootFilesystem"],
    options={"roles": {**ROLES_SCHEMA, "default": ["app", "lb", "egress"]}},
    remediation="Set `read_only=True` and give writable paths as tmpfs or volumes.",
)
@reads_identity
def read_only_rootfs(w: Workload, report, options) -> None:
    """Application and load-balancer containers run with a read-only root filesystem."""
    if w.role in options["roles"] and not truthy(get(w.spec, "readOnly")):
        report(f"role {w.role} runs with a writable root filesystem")


@resource_rule(
    "CTR-006",
    "no-new-privileges",
    "no-new-privileges set",
    types=[CONTAINER],
    severity="high",
    prod=MANDATORY,
    checklist=SCAN,
    sources=[
        "CIS 5.26",
        "CIS 2.14",
        "CKV_K8S_20",
        "Polaris privilegeEscalationAllowed",
        "KICS no_new_privileges_not_set",
    ],
    remediation="Add `security_opts=['no-new-privileges:true']` (Services: daemon-wide, DMN-001).",
)
def no_new_privileges(w: Workload, report, options) -> None:
    """Containers set no-new-privileges so setuid binaries cannot raise privileges."""
    opts = w.security_opts
    if not any(o in ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true") for o in opts):
        report("securityOpts lacks no-new-privileges:true")


@resource_rule(
    "CTR-007",
    "seccomp-not-unconfined",
    "Seccomp not disabled",
    types=[CONTAINER],
    severity="high",
    prod=MANDATORY,
    checklist=SCAN,
    sources=["CIS 5.22", "CKV_K8S_31", "Polaris linuxHardening", "KICS seccomp_disabled"],
    remediation="Remove `seccomp=unconfined` / `systempaths=unconfined` from `security_opts`.",
)
def seccomp_not_unconfined(w: Workload, report, options) -> None:
    """The default seccomp profile and masked system paths stay on."""
    for opt in w.security_opts:
        if re.fullmatch(r"(seccomp|systempaths)[=:]unconfined", opt):
            report(f"securityOpts has {opt}")


@resource_rule(
    "CTR-008",
    "lsm-not-disabled",
    "AppArmor/SELinux not disabled",
    types=WORKLOADS,
    severity="high",
    prod=MANDATORY,
    checklist=SCAN,
    sources=["CIS 5.2", "CIS 5.3", "Polaris linuxHardening", "KICS security_opt_not_set"],
    remediation="Remove `apparmor=unconfined` / `label=disable`; keep docker-default or a custom profile.",
)
def lsm_not_disabled(w: Workload, report, options) -> None:
    """AppArmor and SELinux confinement is not switched off."""
    for opt in w.security_opts:
        if re.fullmatch(r"apparmor[=:]unconfined|label[=:]disable", opt):
            report(f"securityOpts has {opt}")
    if w.is_service and truthy(get(w.spec, "privileges", "seLinuxContext", "disable")):
        report("privileges.seLinuxContext.disable is true")


def _host_mode_rule(
    rule_id: str, slug: str, field: str, title: str, cis: str, sources: list[str], lines: list[str]
):
    def check(w: Workload, report, options) -> None:
        if str(get(w.props, field, default="")).lower() == "host":
            report(f"{field} is host")

    # The registry reads the description from the docstring, so it is set before registering.
    check.__doc__ = f"Containers must not share the host's {field[:-4]} namespace ({field}=host)."
    return resource_rule(
        rule_id,
        slug,
        title,
        types=[CONTAINER],
        severity="critical",
        prod=MANDATORY,
        on_unknown="fail",
        checklist=lines,
        sources=[cis, *sources],
        remediation=f"Remove `{field}='host'`.",
    )(check)


@resource_rule(
    "CTR-009",
    "no-host-network",
    "No host network",
    types=WORKLOADS,
    severity="critical",
    prod=MANDATORY,
    on_unknown="fail",
    checklist=["infrastructure.network-policies"],
    sources=["CIS 5.10", "CKV_K8S_19", "Polaris hostNetworkSet", "KICS network_mode_host_exists"],
    remediation="Attach the container to a user-defined network instead of `network_mode='host'`.",
)
def no_host_network(w: Workload, report, options) -> None:
    """Containers must not use the host's network stack, which bypasses every network boundary."""
    if not w.is_service and str(get(w.props, "networkMode", default="")).lower() == "host":
        report("networkMode is host")
    if w.is_service and "host" in w.networks:
        report("attached to the predefined host network")


_host_mode_rule(
    "CTR-010",
    "no-host-pid",
    "pidMode",
    "No host PID namespace",
    "CIS 5.16",
    ["CKV_K8S_17", "Polaris hostPIDSet"],
    SCAN,
)
_host_mode_rule(
    "CTR-011",
    "no-host-ipc",
    "ipcMode",
    "No host IPC namespace",
    "CIS 5.17",
    ["CKV_K8S_18", "Polaris hostIPCSet"],
    SCAN,
)
_host_mode_rule(
    "CTR-012",
    "no-host-userns",
    "usernsMode",
    "No host user namespace",
    "CIS 5.31",
    ["KICS userns_set_to_host"],
    SCAN,
)

not_enforceable(
    "CTR-013",
    "no-host-uts",
    "No host UTS namespace",
    domain="containers",
    severity="low",
    checklist=SCAN,
    sources=["CIS 5.21"],
    reason="pulumi-docker has no utsMode on Container or Service, so a program cannot set it and "
    "a policy has nothing to read.",
    remediation="Nothing to do in the program; docker-bench-security checks running containers.",
)

RUNTIME_SOCKETS = [
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/var/run/crio/crio.sock",
]


@resource_rule(
    "CTR-014",
    "no-docker-socket",
    "No container runtime socket",
    types=WORKLOADS,
    severity="critical",
    prod=MANDATORY,
    checklist=SCAN,
    sources=["CIS 5.32", "CKV_K8S_27", "KICS docker_socket_mounted_in_container"],
    remediation="Remove the socket mount; use a read-only socket proxy if a tool needs the API.",
)
def no_docker_socket(w: Workload, report, options) -> None:
    """No container mounts the Docker (or containerd/CRI-O) socket: that is root on the host."""
    for mount in w.mounts:
        if mount.source.rstrip("/") in RUNTIME_SOCKETS:
            report(f"mounts {mount.source}")


SENSITIVE_HOST_DIRS = ["/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr"]


@resource_rule(
    "CTR-015",
    "no-sensitive-host-paths",
    "No writable sensitive host paths",
    types=WORKLOADS,
    severity="critical",
    prod=MANDATORY,
    checklist=SCAN,
    sources=["CIS 5.6", "KICS volume_has_sensitive_host_directory"],
    options={"paths": {"type": "array", "items": {"type": "string"}, "default": SENSITIVE_HOST_DIRS}},
    remediation="Mount a named volume instead, or the one file needed, read-only (and waive it).",
)
def no_sensitive_host_paths(w: Workload, report, options) -> None:
    """Host system directories (/, /etc, /proc, /sys, ...) are never bind-mounted writable."""
    for mount in w.mounts:
        if mount.type != "bind" or mount.read_only:
            continue
        for directory in options["paths"]:
            if mount.source == directory or (directory != "/" and mount.source.startswith(directory + "/")):
                report(f"bind-mounts {mount.source} read-write")
                break


@resource_rule(
    "CTR-016",
    "no-shared-propagation",
    "No shared mount propagation",
    types=WORKLOADS,
    severity="medium",
    prod=MANDATORY,
    checklist=SCAN,
    sources=["CIS 5.20"],
    remediation="Use the default private propagation on bind mounts.",
)
def no_shared_propagation(w: Workload, report, options) -> None:
    """Bind mounts do not use shared propagation, which leaks mounts between host and container."""
    for mount in w.mounts:
        if (mount.propagation or "").lower() in ("shared", "rshared"):
            report(f"mount {mount.target} uses {mount.propagation} propagation")


@resource_rule(
    "CTR-017",
    "no-host-devices",
    "No host devices",
    types=[CONTAINER],
    severity="high",
    prod=MANDATORY,
    checklist=SCAN,
    sources=["CIS 5.18"],
    remediation="Remove `devices`, `device_requests` and `gpus`; waive it for a real device need.",
)
def no_host_devices(w: Workload, report, options) -> None:
    """Containers get no host devices or GPUs: this platform needs none."""
    for field in ("devices", "deviceRequests"):
        if items(get(w.props, field)):
            report(f"{field} is set")
    if get(w.props, "gpus"):
        report("gpus is set")


@resource_rule(
    "CTR-018",
    "default-cgroup",
    "Default cgroup",
    types=[CONTAINER],
    severity="low",
    prod=ADVISORY,
    checklist=["infrastructure.resource-limits"],
    sources=["CIS 5.25", "KICS cgroup_not_default"],
    remediation="Remove `cgroup_parent`; keep `cgroupns_mode` private.",
)
def default_cgroup(w: Workload, report, options) -> None:
    """Containers stay in Docker's default cgroup with a private cgroup namespace."""
    if get(w.props, "cgroupParent"):
        report("cgroupParent is set")
    if str(get(w.props, "cgroupnsMode", default="")).lower() == "host":
        report("cgroupnsMode is host")


@resource_rule(
    "CTR-019",
    "memory-limit",
    "Memory limit",
    types=WORKLOADS,
    severity="high",
    prod=MANDATORY,
    checklist=["infrastructure.resource-limits"],
    sources=["CIS 5.11", "CKV_K8S_13", "Polaris memoryLimitsMissing", "KICS memory_not_limited"],
    remediation="Set `memory` (MB) on the Container or `resources.limits.memoryBytes` on the Service.",
)
def memory_limit(w: Workload, report, options) -> None:
    """Every container has a memory limit, so one service cannot starve the host."""
    limit = (
        number(get(w.props, "taskSpec", "resources", "limits", "memoryBytes"))
        if w.is_service
        else number(get(w.props, "memory"))
    )
    if not limit or limit <= 0:
        report("no memory limit")


@resource_rule(
    "CTR-020",
    "cpu-limit",
    "CPU limit",
    types=WORKLOADS,
    severity="medium",
    prod=MANDATORY,
    checklist=["infrastructure.resource-limits"],
    sources=["CIS 5.12", "CKV_K8S_11", "Polaris cpuLimitsMissing", "KICS cpus_not_limited"],
    remediation="Set `cpus` (or cpu_quota+cpu_period) on the Container, `limits.nanoCpus` on the Service.",
)
def cpu_limit(w: Workload, report, options) -> None:
    """Every container has a hard CPU cap."""
    if w.is_service:
        if (number(get(w.props, "taskSpec", "resources", "limits", "nanoCpus")) or 0) < 1e6:
            report("no CPU limit (limits.nanoCpus)")
        return
    cpus = number(get(w.props, "cpus")) or 0
    quota = number(get(w.props, "cpuQuota")) or 0
    if cpus <= 0 and quota <= 0:
        report("no CPU limit (cpus or cpuQuota)")


@stack_rule(
    "CTR-021",
    "pids-limit",
    "PIDs limit (daemon evidence)",
    evidence=True,
    types=WORKLOADS,
    severity="medium",
    prod=ADVISORY,
    checklist=["infrastructure.resource-limits"],
    sources=["CIS 5.29", "KICS pids_limit_not_set"],
    reason="pulumi-docker has no pidsLimit; the policy config attests the daemon's default-pids-limit.",
    options={
        "daemonDefaultPidsLimit": {
            "type": "integer",
            "minimum": 0,
            "default": 0,
            "description": "default-pids-limit in the host's daemon.json",
        }
    },
    remediation="Set `default-pids-limit` in /etc/docker/daemon.json and record it in the policy config.",
)
def pids_limit(stack, report, options) -> None:
    """A fork bomb is bounded: the program cannot set a PIDs limit, so the daemon default is attested
    instead."""
    if stack.workloads and options["daemonDefaultPidsLimit"] <= 0:
        report("no daemonDefaultPidsLimit attested in the policy config (daemon.json default-pids-limit)")


@resource_rule(
    "CTR-022",
    "restart-policy",
    "Bounded restart retries",
    types=WORKLOADS,
    severity="medium",
    prod=MANDATORY,
    checklist=["infrastructure.health-checks"],
    sources=["CIS 5.15", "KICS restart_policy_on_failure_not_set_to_5"],
    options={"maxRetries": {"type": "integer", "minimum": 1, "default": 5}},
    remediation="Use `restart='on-failure'` with `max_retry_count` 1-5 (Service: `maxAttempts`).",
)
def restart_policy(w: Workload, report, options) -> None:
    """A crash-looping container gives up after a bounded number of retries."""
    limit = options["maxRetries"]
    if w.is_service:
        policy = get(w.props, "taskSpec", "restartPolicy", default={})
        condition = str(get(policy, "condition", default="any"))
        attempts = number(get(policy, "maxAttempts")) or 0
        if condition in ("any", "on-failure") and not 1 <= attempts <= limit:
            report(f"restartPolicy {condition} needs maxAttempts between 1 and {limit}")
    elif str(get(w.props, "restart", default="no")) == "on-failure":
        retries = number(get(w.props, "maxRetryCount")) or 0
        if not 1 <= retries <= limit:
            report(f"restart on-failure needs maxRetryCount between 1 and {limit}")


@resource_rule(
    "CTR-023",
    "healthcheck",
    "Healthcheck",
    types=WORKLOADS,
    severity="high",
    prod=MANDATORY,
    checklist=["infrastructure.health-checks", "post.hour.services-healthy", "success.health-checks"],
    sources=[
        "CIS 5.27",
        "CKV_DOCKER_2",
        "CKV_K8S_8",
        "CKV_K8S_9",
        "Polaris livenessProbeMissing",
        "KICS healthcheck_not_set",
    ],
    remediation="Set `healthcheck.tests` (apps: probe /actuator/health on the internal port).",
)
def healthcheck(w: Workload, report, options) -> None:
    """Every container declares a healthcheck (an image HEALTHCHECK is invisible to the program)."""
    tests = w.healthcheck_tests
    if not tests or tests[0].upper() == "NONE":
        report("no healthcheck")


@resource_rule(
    "CTR-024",
    "no-privileged-host-ports",
    "No privileged host ports",
    types=WORKLOADS,
    scope=publishes_ports,
    severity="high",
    prod=MANDATORY,
    checklist=["infrastructure.load-balancer"],
    sources=["CIS 5.8", "CKV_K8S_26", "Polaris hostPortSet", "KICS privileged_ports_mapped_in_container"],
    remediation="Publish host ports below 1024 only on the load balancer, and only 80/443.",
)
@reads_identity
def no_privileged_host_ports(w: Workload, report, options) -> None:
    """Host ports below 1024 are published only by the load balancer, and only 80 and 443."""
    for port in w.ports:
        privileged = port.external is not None and port.external < 1024
        if privileged and (w.role != "lb" or port.external not in (80, 443)):
            report(f"publishes privileged host port {port.external} (role {w.role})")


@resource_rule(
    "CTR-025",
    "bind-specific-interface",
    "Published ports bound to an interface",
    types=[CONTAINER],
    scope=publishes_ports,
    severity="high",
    prod=MANDATORY,
    checklist=["security.firewall"],
    sources=["CIS 5.14", "CIS 7.2", "KICS container_traffic_not_bound_to_host_interface"],
    remediation="Set `ports[].ip='127.0.0.1'` for anything but the load balancer.",
)
@reads_identity
def bind_specific_interface(w: Workload, report, options) -> None:
    """Ports published by anything but the load balancer bind to loopback, never to all interfaces."""
    if w.role == "lb":
        return
    for port in w.ports:
        if not (port.ip or "").startswith("127.") and port.ip != "::1":
            report(f"port {port.internal} binds {port.ip or '0.0.0.0'} (role {w.role})")


@resource_rule(
    "CTR-026",
    "only-lb-publishes",
    "Only the load balancer publishes ports",
    types=WORKLOADS,
    scope=publishes_ports,
    severity="high",
    prod=MANDATORY,
    checklist=["infrastructure.network-policies", "infrastructure.load-balancer"],
    sources=["CIS 5.9", "CIS 5.14", "OWASP REST CS management endpoints", "docker-library redis"],
    remediation="Remove `ports` from data stores, monitoring and apps; route through the LB.",
)
@reads_identity
def only_lb_publishes(w: Workload, report, options) -> None:
    """Data stores, monitoring and applications publish no ports; traffic enters through the load balancer."""
    if w.role != "lb" and w.ports:
        published = ", ".join(str(p.internal) for p in w.ports)
        report(f"role {w.role} publishes port(s) {published}")


@resource_rule(
    "CTR-027",
    "no-publish-all",
    "No publish-all-ports",
    types=[CONTAINER],
    severity="high",
    prod=MANDATORY,
    on_unknown="fail",
    checklist=["security.firewall"],
    sources=["CIS 5.9"],
    remediation="Remove `publish_all_ports=True`.",
)
def no_publish_all(w: Workload, report, options) -> None:
    """Containers do not publish every exposed port to random host ports."""
    if truthy(get(w.props, "publishAllPorts")):
        report("publishAllPorts is true")


@resource_rule(
    "CTR-028",
    "no-ssh",
    "No SSH in containers",
    types=WORKLOADS,
    severity="high",
    prod=MANDATORY,
    checklist=SCAN,
    sources=["CIS 5.7", "CKV_DOCKER_1"],
    remediation="Remove sshd and port 22; use `docker exec` for debugging.",
)
def no_ssh(w: Workload, report, options) -> None:
    """Containers run no SSH daemon and expose no port 22."""
    if any(port.internal == 22 or port.external == 22 for port in w.ports):
        report("exposes port 22")
    if any(re.search(r"(^|/)sshd\b", part) for part in w.command):
        report("runs sshd")


@resource_rule(
    "CTR-029",
    "user-defined-network",
    "User-defined network",
    types=WORKLOADS,
    severity="medium",
    prod=MANDATORY,
    checklist=["infrastructure.network-policies"],
    sources=["CIS 5.30", "KICS networks_not_set", "CKV2_K8S_6"],
    remediation="Attach via `networks_advanced` to a named docker.Network, not the default bridge.",
)
def user_defined_network(w: Workload, report, options) -> None:
    """Containers join named user-defined networks, never the default bridge (docker0)."""
    if w.is_service:
        if not w.networks:
            report("no networksAdvanceds")
        return
    mode = str(get(w.props, "networkMode", default="")).lower()
    if mode in ("bridge", "default"):
        report(f"networkMode is {mode}")
    elif not mode and not w.networks:
        report("no networksAdvanced: the container lands on the default bridge")


@resource_rule(
    "CTR-030",
    "ulimits-sane",
    "Sane ulimits",
    types=[CONTAINER],
    severity="low",
    prod=ADVISORY,
    checklist=["infrastructure.resource-limits"],
    sources=["CIS 5.19", "CIS 2.8"],
    options={"ceiling": {"type": "integer", "minimum": 1, "default": 1048576}},
    remediation="Keep soft <= hard and both under the ceiling; override ulimits only when needed.",
)
def ulimits_sane(w: Workload, report, options) -> None:
    """Overridden ulimits are consistent (soft <= hard) and bounded."""
    for limit in items(get(w.props, "ulimits")):
        soft, hard = number(get(limit, "soft")) or 0, number(get(limit, "hard")) or 0
        name = get(limit, "name")
        if soft > hard:
            report(f"ulimit {name}: soft {soft:.0f} > hard {hard:.0f}")
        if hard > options["ceiling"]:
            report(f"ulimit {name}: hard {hard:.0f} above {options['ceiling']}")


FILE_LOG_DRIVERS = ("json-file", "local", "")


@resource_rule(
    "CTR-031",
    "logging-rotated",
    "Logs rotated",
    types=WORKLOADS,
    severity="medium",
    prod=MANDATORY,
    checklist=["monitoring.log-aggregation"],
    sources=["CIS 2.13", "Docker json-file logging driver docs"],
    remediation="Set `log_driver='json-file'` with `log_opts={'max-size': '10m', 'max-file': '5'}`.",
)
def logging_rotated(w: Workload, report, options) -> None:
    """Container logs are kept (driver not none) and file-based logs are size-bounded."""
    if w.is_service:
        driver = str(get(w.props, "taskSpec", "logDriver", "name", default=""))
        opts = get(w.props, "taskSpec", "logDriver", "options", default={})
    else:
        driver = str(get(w.props, "logDriver", default=""))
        opts = get(w.props, "logOpts", default={})
    if driver == "none":
        report("logDriver is none: logs are discarded")
    elif driver in FILE_LOG_DRIVERS and not get(opts, "max-size"):
        report(f"log driver {driver or 'json-file (default)'} without max-size grows without bound")


DEFAULT_SYSCTLS = [
    "net.ipv4.ip_unprivileged_port_start",
    "net.core.somaxconn",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.ip_local_port_range",
]


@resource_rule(
    "CTR-032",
    "sysctls-allowlist",
    "Allowlisted sysctls",
    types=WORKLOADS,
    severity="low",
    prod=ADVISORY,
    checklist=SCAN,
    sources=["docker-library haproxy docs"],
    options={"allowed": {"type": "array", "items": {"type": "string"}, "default": DEFAULT_SYSCTLS}},
    remediation="Remove the sysctl or add it to the rule's `allowed` option after review.",
)
def sysctls_allowlist(w: Workload, report, options) -> None:
    """Containers set only namespaced, allowlisted sysctls."""
    values = get(w.spec, "sysctl", default={}) if w.is_service else get(w.props, "sysctls", default={})
    for key in values:
        if key not in options["allowed"]:
            report(f"sysctl {key} is not allowlisted")


@stack_rule(
    "CTR-033",
    "no-shared-rw-volumes",
    "No volume shared read-write",
    types=WORKLOADS,
    severity="medium",
    prod=ADVISORY,
    checklist=["infrastructure.volumes"],
    sources=["KICS shared_volumes_between_containers", "KICS volume_mounted_in_multiple_containers"],
    remediation="Give each data store its own volume; share read-only where another container reads it.",
)
def no_shared_rw_volumes(stack, report, options) -> None:
    """A named volume or host path is mounted read-write by at most one container."""
    writers: dict[str, list] = {}
    for w in stack.workloads:
        for mount in w.mounts:
            if mount.source and not mount.read_only and mount.type in ("bind", "volume"):
                writers.setdefault(mount.source, []).append(w)
    for source, users in writers.items():
        if len(users) > 1:
            names = ", ".join(sorted(u.name for u in users))
            for w in users:
                report(f"{source} is mounted read-write by {names}", w.urn)
