"""Turn registry rules into pulumi_policy policies: type filter, options, waivers and unknowns in one wrapper.

Both the engine (through `policies/__main__.py`) and `infra check` (through the SDK's analyzer servicer)
run exactly these policy objects.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
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
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

from platform_infra.infra import catalog
from platform_infra.policies import waivers
from platform_infra.policies.props import (
    FILE_OBJECTS,
    SERVICE,
    WORKLOADS,
    ImageSource,
    Workload,
    image_source,
    labels,
    workload,
)
from platform_infra.policies.registry import DOCS_PATH, Rule, enforced_rules

PACK_DIR = Path(__file__).resolve().parent
PACK_NAME = "platform-production-checklist"
UNKNOWN_PREFIX = "[unknown] "
GRAPH_UNKNOWN_SEPARATOR = "\n"
"""Between the `<urn>: <what is unknown>` lines of a workload rule judged over the stack."""
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


def image_sources(resource: Any) -> tuple[ImageSource, ...]:
    """The RemoteImages and Images a workload's image property depends on (all its dependencies when the
    engine or state file gives no property dependencies)."""
    field = "taskSpec" if resource.resource_type == SERVICE else "image"
    sources = (getattr(resource, "property_dependencies", None) or {}).get(field) or getattr(
        resource, "dependencies", []
    )
    return tuple(found for found in (image_source(d.resource_type, d.props) for d in sources) if found)


_STACKS: dict[tuple[int, ...], Stack] = {}


class Stack:
    """Every resource of the stack, for stack rules; `resources` are pulumi_policy PolicyResources."""

    def __init__(self, resources: list[Any]):
        self.resources = resources
        every = [
            workload(r.resource_type, r.props, r.name, r.urn, image_sources(r))
            for r in resources
            if r.resource_type in (*WORKLOADS, *FILE_OBJECTS)
        ]
        self.workloads = [w for w in every if w.runs]
        """Running workloads: the subjects of stack rules."""
        self.file_carriers = every
        """Every workload, never-started file carriers included: where uploaded files are found."""

    @classmethod
    def of(cls, resources: list[Any]) -> Stack:
        """The Stack of these resources, shared by every stack policy that reads the same props (one
        `infra check` run); the key's props stay referenced by the cached Stack, so their ids are not reused."""
        key = tuple(id(r.props) for r in resources)
        found = _STACKS.get(key)
        if found is None:
            if len(_STACKS) >= 8:
                _STACKS.clear()
            found = _STACKS[key] = cls(resources)
        return found

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


def _resource_labels(resource_type: str, props: Any, name: str = "", urn: str = "") -> dict[str, str]:
    """Labels that may carry waivers; unknown labels carry none (the findings then stand)."""
    try:
        if resource_type in WORKLOADS:
            return workload(resource_type, props, name, urn).labels
        return labels(props, "labels")
    except UnknownValueError:
        return {}


def _unknown_message(rule: Rule, error: UnknownValueError) -> str:
    return f"{UNKNOWN_PREFIX}{error.message}; {rule.id} fails closed on values not known at preview"


def _judge(
    rule: Rule,
    resource_type: str,
    props: Any,
    name: str,
    urn: str,
    target: Callable[[], Any],
    options: dict[str, Any],
    report: Callable,
) -> tuple[dict[str, Any] | None, UnknownValueError | None] | None:
    """One resource (or workload) through a per-resource rule: None when out of the rule's scope; else the
    waiver that settled its findings (findings not waived are reported) and the unknown that stopped it."""
    findings: list[str] = []
    unknown: UnknownValueError | None = None
    try:
        subject = target()
        if isinstance(subject, Workload) and not applies(rule, subject):
            return None  # out of scope: no finding, and no waiver to list (infra check does not ask)
        rule.check(subject, findings.append, options)
    except UnknownValueError as error:
        unknown = error
    found = waivers.waivers_for(
        rule, _resource_labels(resource_type, props, name, urn), name, urn, options.get("waivers", [])
    )
    return waivers.settle(rule.id, findings, found, report), unknown


def _resource_validate(rule: Rule):
    def validate(args: ResourceValidationArgs, report_violation) -> None:
        if args.resource_type not in rule.types:
            return
        options = _options(rule, args.get_config())

        def target() -> Any:
            if args.resource_type in (*WORKLOADS, *FILE_OBJECTS):
                return workload(args.resource_type, args.props, args.name, args.urn)
            return args

        judged = _judge(
            rule, args.resource_type, args.props, args.name, args.urn, target, options, report_violation
        )
        if judged is None:
            return
        waived, unknown = judged
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
                Stack.of(list(args.resources)),
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
                    rule,
                    _resource_labels(resource.resource_type, resource.props, resource.name, urn),
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


def _graph_validate(rule: Rule):
    """A workload rule judged over the stack: each workload as its resource policy would judge it, with its
    identity followed through the resource graph. Unknowns the rule reports (rather than fails on) are
    gathered into the one "can't run during preview" the SDK allows a stack policy, a line per workload."""

    def validate(args: StackValidationArgs, report_violation) -> None:
        options = _options(rule, args.get_config())
        unknown: list[str] = []
        waived_records = []
        for w in Stack.of(list(args.resources)).file_carriers:
            if w.type not in rule.types:
                continue
            report = partial(report_violation, urn=w.urn)
            judged = _judge(rule, w.type, w.props, w.resource_name, w.urn, lambda w=w: w, options, report)
            if judged is None:
                continue
            waived, error = judged
            if waived is not None:
                waived_records.append({**waived, "resource": w.urn})
            if error is not None and rule.on_unknown == "fail":
                report(_unknown_message(rule, error))
            elif error is not None:
                unknown.append(f"{w.urn}: {error.message}")
        if waived_records:
            args.not_applicable(waivers.waived_reason(waived_records))
        if unknown:
            error = UnknownValueError(UNKNOWN_STRING_VALUE, [])
            error.message = GRAPH_UNKNOWN_SEPARATOR.join(unknown)
            raise error

    return validate


def in_scope(rule: Rule, resource_type: str, props: Any, name: str = "", urn: str = "") -> bool:
    """Whether the rule looks at this resource at all; an unknown value in the scope's inputs counts as
    in scope, so the policy runs and reports the unknown."""
    if not rule.per_resource or resource_type not in rule.types:
        return False
    if resource_type not in (*WORKLOADS, *FILE_OBJECTS):
        return True
    try:
        return applies(rule, workload(resource_type, props, name, urn))
    except UnknownValueError:
        return True


def applies(rule: Rule, w: Workload) -> bool:
    """The rule's declared scope; a never-started file carrier has no process, so only rules that read files
    judge it."""
    if not w.runs and not rule.reads_files:
        return False
    return rule.scope is None or rule.scope(w)


def config_schema(rule: Rule) -> PolicyConfigSchema:
    return PolicyConfigSchema(properties={**rule.options, "waivers": waivers.WAIVERS_SCHEMA})


def build_policy(rule: Rule) -> ResourceValidationPolicy | StackValidationPolicy:
    # The semicolon convention of Pulumi's packs: reference and specification are parallel lists.
    items = catalog.load().by_id()
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
            reference="; ".join(rule.checklist),
            specification="; ".join(items[item].text for item in rule.checklist),
        ),
        "tags": [rule.id, rule.domain, rule.kind],
        "remediation_steps": rule.remediation,
        "url": f"{DOCS_PATH}#{rule.anchor}",
    }
    if rule.per_resource:
        return ResourceValidationPolicy(validate=_resource_validate(rule), **common)
    if rule.kind == "resource":
        return StackValidationPolicy(validate=_graph_validate(rule), **common)
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
