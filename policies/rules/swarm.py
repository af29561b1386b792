"""Swarm service rules (docker.Service) and the Docker daemon evidence the program cannot show."""

from __future__ import annotations

import yaml
from pydantic import ValidationError

from platform_infra.components.autoscaling import ScalingPolicy
from platform_infra.components.kafka import TOPICS_ENV, parse_topics
from platform_infra.policies.props import (
    FILE_OBJECTS,
    SERVICE,
    SERVICE_LABEL,
    WORKLOADS,
    Workload,
    get,
    number,
    sensitive_env,
)
from platform_infra.policies.registry import ADVISORY, MANDATORY, resource_rule, stack_rule
from platform_infra.policies.scope import reads_identity


@resource_rule(
    "SWM-001",
    "swarm-secrets",
    "Swarm credentials as docker secrets",
    types=[SERVICE],
    severity="high",
    prod=MANDATORY,
    checklist=["security.database-passwords"],
    sources=["CIS 7.4", "Polaris sensitiveContainerEnvVar", "CKV_K8S_35"],
    remediation="Create a docker.Secret, list it in containerSpec.secrets and point `<NAME>_FILE` at "
    "/run/secrets/<name>.",
)
def swarm_secrets(w: Workload, report, options) -> None:
    """Swarm services read credentials from docker secrets (`*_FILE`), never from env values."""
    for key in sorted(sensitive_env(w.env)):
        report(f"env {key} carries a credential; use a docker secret and {key}_FILE")


@resource_rule(
    "SWM-002",
    "replicas",
    "Stateless services replicated",
    types=[SERVICE],
    severity="medium",
    prod=ADVISORY,
    checklist=["testing.failover"],
    sources=["kube-score deployment-replicas", "Polaris deploymentMissingReplicas"],
    options={"minReplicas": {"type": "integer", "minimum": 1, "default": 2}},
    remediation="Set mode.replicated.replicas >= 2 for application services.",
)
@reads_identity
def replicas(w: Workload, report, options) -> None:
    """Stateless application services run at least two replicas."""
    if w.role != "app" or get(w.props, "mode", "global"):
        return
    count = number(get(w.props, "mode", "replicated", "replicas")) or 1
    if count < options["minReplicas"]:
        report(f"{count:.0f} replica(s), fewer than {options['minReplicas']}")


@resource_rule(
    "SWM-003",
    "safe-rollout",
    "Rollback on failed update",
    types=[SERVICE],
    severity="low",
    prod=ADVISORY,
    checklist=["rollback.stop-new-version"],
    sources=["kube-score deployment-strategy (analogue)"],
    remediation="update_config: failure_action=rollback, order, monitor; and a rollback_config.",
)
def safe_rollout(w: Workload, report, options) -> None:
    """A failed rolling update rolls back by itself."""
    update = get(w.props, "updateConfig", default={})
    if get(update, "failureAction") != "rollback":
        report("updateConfig.failureAction is not rollback")
    for field in ("order", "monitor"):
        if not get(update, field):
            report(f"updateConfig.{field} is not set")
    if not get(w.props, "rollbackConfig"):
        report("no rollbackConfig")


@resource_rule(
    "SWM-004",
    "stateful-placement",
    "Stateful services pinned",
    types=[SERVICE],
    severity="low",
    prod=ADVISORY,
    checklist=["infrastructure.volumes"],
    sources=["Docker docs: swarm service placement constraints", "kube-score statefulset analogue"],
    remediation="Pin data stores with taskSpec.placement.constraints on a node label.",
)
@reads_identity
def stateful_placement(w: Workload, report, options) -> None:
    """Data store services are pinned to the nodes holding their volumes."""
    if w.role == "ds" and not get(w.props, "taskSpec", "placement", "constraints"):
        report("no placement constraints")


WORKER_SERVICE = "worker"
KAFKA_DEFAULT_PARTITIONS = 1  # Kafka's num.partitions default


def _flag(args: list[str], flag: str) -> str | None:
    return next((args[i + 1] for i, arg in enumerate(args[:-1]) if arg == flag), None)


@stack_rule(
    "SWM-005",
    "worker-autoscaling",
    "Workers autoscaled within the topic's partitions",
    types=[SERVICE, *FILE_OBJECTS],
    severity="medium",
    prod=MANDATORY,
    checklist=["infrastructure.auto-scaling"],
    sources=["Kubernetes HorizontalPodAutoscaler", "KEDA Kafka scaler (at most one consumer per partition)"],
    remediation="Set platform:settings.autoscaling.workers (the stack then runs `infra autoscale` on the worker "
    "service) with max_replicas at most the partitions of its topic (platform:settings.data.kafka_topics).",
)
def worker_autoscaling(stack, report, options) -> None:
    """A Swarm worker service has an autoscaler applying a valid scaling policy, whose topic the stack
    creates ($PLATFORM_KAFKA_TOPICS of the Kafka service) with at least max_replicas partitions (an extra
    consumer of a group would idle); a Kafka without that list auto-creates topics with num.partitions."""
    services = [w for w in stack.workloads if w.is_service]
    workers = [w for w in services if w.labels.get(SERVICE_LABEL) == WORKER_SERVICE]
    if not workers:
        return
    files = {path: text for w in stack.file_carriers if w.is_file_object for path, text in w.uploads.items()}
    kafka = next((w for w in services if w.kind == "kafka"), None)
    created = parse_topics(kafka.env[TOPICS_ENV]) if kafka and TOPICS_ENV in kafka.env else None
    auto_created = int(number(kafka.env.get("KAFKA_NUM_PARTITIONS")) or KAFKA_DEFAULT_PARTITIONS) if kafka else None
    for worker in workers:
        scalers = [w for w in services if _flag(w.command, "--service") == worker.name]
        if not scalers:
            report(f"no autoscaler targets {worker.name}: its replicas do not follow the Kafka lag", worker.urn)
            continue
        for scaler in scalers:
            path = _flag(scaler.command, "--policy")
            try:
                policy = ScalingPolicy.model_validate(yaml.safe_load(files.get(path or "", "")))
            except (ValidationError, yaml.YAMLError) as error:
                report(f"the autoscaler's policy {path} is missing or invalid: {str(error).splitlines()[0]}",
                       scaler.urn)
                continue
            if created is not None and policy.topic not in created:
                report(f"topic {policy.topic} is not among the topics the stack creates ({TOPICS_ENV} of "
                       f"{kafka.name}): the workers would consume nothing", scaler.urn)
                continue
            partitions = created[policy.topic] if created is not None else auto_created
            if partitions is not None and policy.max_replicas > partitions:
                report(f"max_replicas {policy.max_replicas} is above the {partitions} partition(s) of topic "
                       f"{policy.topic}: workers beyond them would idle", scaler.urn)


DAEMON_EXPECTED = {
    "icc": False,
    "live-restore": True,
    "userland-proxy": False,
    "no-new-privileges": True,
    "experimental": False,
}


@stack_rule(
    "DMN-001",
    "daemon-evidence",
    "Daemon hardening attested",
    evidence=True,
    types=WORKLOADS,
    severity="medium",
    prod=ADVISORY,
    checklist=["success.security-scan"],
    sources=["CIS 2.2", "CIS 2.9", "CIS 2.13", "CIS 2.14", "CIS 2.15", "CIS 2.16", "CIS 2.18", "CIS 5.1"],
    reason="daemon.json is host configuration no resource shows; the policy config attests it.",
    options={
        "daemon": {
            "type": "object",
            "default": {},
            "description": "daemon.json keys as set on the target host",
            "properties": {
                "icc": {"type": "boolean"},
                "live-restore": {"type": "boolean"},
                "userland-proxy": {"type": "boolean"},
                "no-new-privileges": {"type": "boolean"},
                "experimental": {"type": "boolean"},
                "userns-remap": {"type": "string"},
                "default-pids-limit": {"type": "integer"},
                "log-driver": {"type": "string"},
            },
        }
    },
    remediation="Harden /etc/docker/daemon.json (icc false, userns-remap, live-restore, userland-proxy "
    "false, no-new-privileges, no experimental) and record it under `daemon` in the config.",
)
def daemon_evidence(stack, report, options) -> None:
    """The Docker daemon's own hardening (CIS §2) is attested for the target host, since resource policies
    cannot see daemon.json; Swarm services rely on its no-new-privileges."""
    if not stack.workloads:
        return
    daemon = options["daemon"]
    for key, expected in DAEMON_EXPECTED.items():
        if daemon.get(key) is not expected:
            report(f"daemon.json {key} is not attested as {str(expected).lower()}")
    if not daemon.get("userns-remap"):
        report("daemon.json userns-remap is not attested")
