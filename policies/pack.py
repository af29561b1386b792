"""Turn registry rules into pulumi_policy policies: type filter, options, waivers and unknowns in one wrapper.

Both the engine (through `policies/__main__.py`) and `infra check` (through the SDK's analyzer servicer)
run exactly these policy objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pulumi_policy import (
    EnforcementLevel,
    PolicyComplianceFramework,
    PolicyConfigSchema,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from policies import waivers
from policies.props import FILE_OBJECTS, WORKLOADS, Workload, labels
from policies.registry import DOCS_PATH, Rule, enforced_rules

PACK_DIR = Path(__file__).resolve().parent
PACK_NAME = "platform-production-checklist"
UNKNOWN_PREFIX = "[unknown] "
LEVELS = {
    "mandatory": EnforcementLevel.MANDATORY,
    "advisory": EnforcementLevel.ADVISORY,
    "disabled": EnforcementLevel.DISABLED,
    "remediate": EnforcementLevel.REMEDIATE,
}
SEVERITY = {
    "low": Severity.LOW,
    "medium": Severity.MEDIUM,
    "high": Severity.HIGH,
    "critical": Severity.CRITICAL,
}


def pack_metadata() -> dict[str, str]:
    """The pack's name (PolicyPack's argument) with the version and description from PulumiPolicy.yaml,
    the Python pack's only version source."""
    data = yaml.safe_load((PACK_DIR / "PulumiPolicy.yaml").read_text())
    return {"name": PACK_NAME, "version": str(data["version"]), "description": data["description"]}


class Stack:
    """Every resource of the stack, for stack rules; `resources` are pulumi_policy PolicyResources."""

    def __init__(self, resources: list[Any]):
        self.resources = resources
        every = [Workload(r.resource_type, r.props, r.name, r.urn) for r in resources
                 if r.resource_type in (*WORKLOADS, *FILE_OBJECTS)]
        self.workloads = [w for w in every if w.runs]
        """Running workloads: the subjects of stack rules."""
        self.file_carriers = every
        """Every workload, never-started file carriers included: where uploaded files are found."""

    def of_type(self, *types: str) -> list[Any]:
        return [r for r in self.resources if r.resource_type in types]


def _plain(value: Any) -> Any:
    """Config arrives through a protobuf Struct, where every number is a double: 16 comes back as 16.0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _options(rule: Rule, config: Any) -> dict[str, Any]:
    return {**rule.defaults(), **_plain(dict(config or {}))}


def _resource_labels(resource_type: str, props: Any) -> dict[str, str]:
    """Labels that may carry waivers; unknown labels carry none (the findings then stand)."""
    try:
        found = labels(props, "labels")
        if resource_type in WORKLOADS:
            found.update(labels(props, "taskSpec", "containerSpec", "labels"))
        return found
    except UnknownValueError:
        return {}


def _unknown_message(rule: Rule, error: UnknownValueError) -> str:
    return f"{UNKNOWN_PREFIX}{error.message}; {rule.id} fails closed on values not known at preview"


def _resource_validate(rule: Rule):
    def validate(args: ResourceValidationArgs, report_violation) -> None:
        if args.resource_type not in rule.types:
            return
        options = _options(rule, args.get_config())
        findings: list[str] = []
        unknown: UnknownValueError | None = None
        try:
            target = (
                Workload(args.resource_type, args.props, args.name, args.urn)
                if args.resource_type in (*WORKLOADS, *FILE_OBJECTS)
                else args
            )
            if isinstance(target, Workload) and not applies(rule, target):
                return  # out of scope: no finding, and no waiver to list (infra check does not ask)
            rule.check(target, findings.append, options)
        except UnknownValueError as error:
            unknown = error
        found = waivers.waivers_for(
            rule.id,
            _resource_labels(args.resource_type, args.props),
            args.name,
            args.urn,
            options.get("waivers", []),
        )
        waived = waivers.settle(rule.id, findings, found, report_violation)
        if waived is not None:
            args.not_applicable(waivers.waived_reason([{**waived, "resource": args.urn}]))
        if unknown is not None:
            if rule.on_unknown == "fail":
                report_violation(_unknown_message(rule, unknown))
            else:
                raise unknown  # the SDK turns it into its advisory "can't run ... during preview" diagnostic

    return validate


def _stack_validate(rule: Rule):
    def validate(args: StackValidationArgs, report_violation) -> None:
        options = _options(rule, args.get_config())
        findings: list[tuple[str, str | None]] = []
        unknown: UnknownValueError | None = None
        try:
            rule.check(
                Stack(list(args.resources)),
                lambda message, urn=None: findings.append((message, urn)),
                options,
            )
        except UnknownValueError as error:
            unknown = error
        by_urn = {r.urn: r for r in args.resources}
        waived_records = []
        for urn in dict.fromkeys(urn for _, urn in findings):
            messages = [message for message, at in findings if at == urn]
            resource = by_urn.get(urn) if urn else None
            found = (
                []
                if resource is None
                else waivers.waivers_for(
                    rule.id,
                    _resource_labels(resource.resource_type, resource.props),
                    resource.name,
                    urn,
                    options.get("waivers", []),
                )
            )
            waived = waivers.settle(
                rule.id, messages, found, lambda message, at=urn: report_violation(message, at)
            )
            if waived is not None:
                waived_records.append({**waived, "resource": urn})
        if unknown is not None and rule.on_unknown == "fail":
            report_violation(_unknown_message(rule, unknown))
        if waived_records:
            args.not_applicable(waivers.waived_reason(waived_records))
        if unknown is not None and rule.on_unknown != "fail":
            raise unknown

    return validate


def in_scope(rule: Rule, resource_type: str, props: Any, name: str = "", urn: str = "") -> bool:
    """Whether the rule looks at this resource at all; an unknown value in the scope's inputs counts as
    in scope, so the policy runs and reports the unknown."""
    if rule.kind != "resource" or resource_type not in rule.types:
        return False
    if resource_type not in (*WORKLOADS, *FILE_OBJECTS):
        return True
    try:
        return applies(rule, Workload(resource_type, props, name, urn))
    except UnknownValueError:
        return True


def applies(rule: Rule, workload: Workload) -> bool:
    """The rule's declared scope; a never-started file carrier has no process, so only rules that read files
    judge it."""
    if not workload.runs and not rule.reads_files:
        return False
    return rule.scope is None or rule.scope(workload)


def config_schema(rule: Rule) -> PolicyConfigSchema:
    return PolicyConfigSchema(properties={**rule.options, "waivers": waivers.WAIVERS_SCHEMA})


def build_policy(rule: Rule) -> ResourceValidationPolicy | StackValidationPolicy:
    # The semicolon convention of Pulumi's packs: reference and specification are parallel lists.
    sections = [line.split(":", 1)[0] for line in rule.checklist]
    common: dict[str, Any] = {
        "name": rule.policy_name,
        "description": f"[{rule.id}] {rule.description}",
        "enforcement_level": LEVELS[rule.prod],
        "config_schema": config_schema(rule),
        "display_name": f"{rule.id} {rule.title}",
        "severity": SEVERITY[rule.severity],
        "framework": PolicyComplianceFramework(
            name="production-checklist",
            version="1",
            reference="; ".join(sections),
            specification="; ".join(rule.checklist),
        ),
        "tags": [rule.id, rule.domain, rule.kind],
        "remediation_steps": rule.remediation,
        "url": f"{DOCS_PATH}#{rule.anchor}",
    }
    if rule.kind == "resource":
        return ResourceValidationPolicy(validate=_resource_validate(rule), **common)
    return StackValidationPolicy(validate=_stack_validate(rule), **common)


def build_policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    return [build_policy(rule) for rule in enforced_rules()]


def pack_arguments() -> dict[str, Any]:
    """Keyword arguments for `PolicyPack`: each policy defaults to its prod level, the strictest."""
    meta = pack_metadata()
    return {
        "name": meta["name"],
        "description": meta["description"],
        "policies": build_policies(),
        "enforcement_level": EnforcementLevel.ADVISORY,
        "display_name": "Platform production checklist",
        "provider": "docker",
        "tags": ["docker", "production-checklist"],
    }

