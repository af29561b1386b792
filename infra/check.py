"""`infra check`: the policy pack against a stack, offline, through pulumi_policy's own validation path.

The program runs under mocks as in `infra plan` (or a `pulumi stack export` file is read); each recorded
resource then goes, in engine wire form, into the SDK's analyzer servicer (`Configure`, `Analyze` per
resource with its inputs, `AnalyzeStack` with every resource's outputs), exactly the calls the Pulumi engine
makes during `pulumi preview --policy-pack policies`. Exit codes: 0 no mandatory violation, 1 some,
2 bad input or a failing program.
"""

from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi.runtime import proto
from pulumi_policy import EnforcementLevel
from pulumi_policy.policy import _PolicyAnalyzerServicer

from platform_infra.infra.analyze_once import Conversions, converted_once, struct_form
from platform_infra.infra.fastrun import collector_paused
from platform_infra.infra.mockrun import (
    SECRET_SIG,
    SIG_KEY,
    STACK_TYPE,
    UNKNOWN,
    ProgramInputError,
    ProgramRun,
    Registration,
    run_project,
)
from platform_infra.policies import waivers
from platform_infra.policies.pack import (
    GRAPH_UNKNOWN_SEPARATOR,
    UNKNOWN_PREFIX,
    build_policies,
    in_scope,
    pack_metadata,
)
from platform_infra.policies.policy_config import PolicyConfigError, default_path, read, resolve
from platform_infra.policies.props import IMAGE_SOURCE_FIELDS, SENSITIVE_NAME
from platform_infra.policies.registry import DOCS_PATH, Rule, by_policy_name

PROTO_LEVEL = {
    "advisory": proto.ADVISORY,
    "mandatory": proto.MANDATORY,
    "remediate": proto.REMEDIATE,
    "disabled": proto.DISABLED,
}
LEVEL_NAME = {
    proto.ADVISORY: "advisory",
    proto.MANDATORY: "mandatory",
    proto.REMEDIATE: "mandatory",
    proto.DISABLED: "disabled",
}
CANT_RUN = "can't run policy"
SARIF_SCHEMA_URI = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)


@dataclass
class Report:
    stack: str
    project: str
    pack: dict[str, str]
    config: str | None
    resources: list[Registration]
    levels: dict[str, str]
    violations: list[dict[str, Any]] = field(default_factory=list)
    unknown: list[dict[str, Any]] = field(default_factory=list)
    waived: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""
    """The file results point at in SARIF: the stack's Pulumi.<stack>.yaml or the state export."""

    @property
    def stack_urn(self) -> str:
        return f"urn:pulumi:{self.stack}::{self.project}::{STACK_TYPE}::{self.project}-{self.stack}"

    @property
    def failed(self) -> bool:
        return any(v["enforcement"] == "mandatory" for v in self.violations)

    def summary(self) -> dict[str, Any]:
        levels = Counter(v["enforcement"] for v in self.violations)
        return {
            "resources": len(self.resources),
            "policies": sum(1 for lv in self.levels.values() if lv != "disabled"),
            "violations": len(self.violations),
            "mandatory": levels["mandatory"],
            "advisory": levels["advisory"],
            "unknown": len(self.unknown),
            "waived": len(self.waived),
            "byRule": dict(sorted(Counter(v["rule"] for v in self.violations).items())),
            "result": "failed" if self.failed else "passed",
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "project": self.project,
            "policyPack": self.pack,
            "policyConfig": self.config,
            "violations": self.violations,
            "unknown": self.unknown,
            "waived": self.waived,
            "summary": self.summary(),
        }


# --- input ---------------------------------------------------------------------------------------------


def _state_value(value: Any) -> Any:
    """A stack-export value in wire form: encrypted secrets become secret unknowns (nothing to read)."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            if "plaintext" in value:
                return {SIG_KEY: SECRET_SIG, "value": _state_value(json.loads(value["plaintext"]))}
            if "ciphertext" in value:
                return {SIG_KEY: SECRET_SIG, "value": UNKNOWN}
        return {k: _state_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_state_value(v) for v in value]
    return value


def load_state(path: Path, stack: str) -> ProgramRun:
    """A `pulumi stack export` file as a ProgramRun (state holds no unknowns; secrets stay unreadable)."""
    try:
        data = json.loads(path.read_text())
        entries = (data.get("deployment") or data)["resources"] or []
        stack_urns = {e["urn"] for e in entries if e["type"] == STACK_TYPE}
        registrations = [
            Registration(
                urn=e["urn"],
                type=e["type"],
                name=e["urn"].rsplit("::", 1)[-1],
                parent=None if e.get("parent") in stack_urns else e.get("parent"),
                custom=bool(e.get("custom")),
                inputs=_state_value(e.get("inputs") or {}),
                outputs=_state_value(e.get("outputs") or {}),
                provider=e.get("provider"),
                dependencies=list(e.get("dependencies") or []),
                property_dependencies={k: list(v) for k, v in (e.get("propertyDependencies") or {}).items()},
                protect=bool(e.get("protect")),
                additional_secret_outputs=list(e.get("additionalSecretOutputs") or []),
            )
            for e in entries
            if e["type"] != STACK_TYPE
        ]
        outputs = next((_state_value(e.get("outputs") or {}) for e in entries if e["type"] == STACK_TYPE), {})
        project = entries[0]["urn"].split("::")[1] if entries else ""
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError, IndexError) as error:
        raise ProgramInputError(f"--state {path}: not a `pulumi stack export` file ({error!r})") from None
    return ProgramRun(project, stack, registrations, outputs)


def load_levels(config_path: Path | None) -> dict[str, tuple[str, dict[str, Any]]]:
    try:
        raw = read(config_path) if config_path else {}
        return resolve(raw, str(config_path or "pack defaults"))
    except PolicyConfigError as error:
        raise ProgramInputError(f"--policy-config: {error}") from None


# --- evaluation through the SDK servicer ---------------------------------------------------------------


def _propagate_unknowns(value: Any) -> Any:
    """A string built from an unknown is unknown: under mocks an encrypted config value reaches the program
    as the sentinel string, and `apply` then embeds it ("JWT_SECRET=04da6b54-..."), where the engine would
    hand the policy an unknown. Returned in Struct form, as the servicer reads it."""
    return struct_form(value, _unknown_if_built_from_one)


def _unknown_if_built_from_one(text: str) -> str:
    return UNKNOWN if UNKNOWN in text else text


def _options(resource: Registration) -> Any:
    return proto.AnalyzerResourceOptions(
        protect=resource.protect,
        parent=resource.parent or "",
        additionalSecretOutputs=resource.additional_secret_outputs,
    )


def evaluate(
    run: ProgramRun,
    config_path: Path | None,
    split_by_type: bool = True,
    source: str = "",
    levels: dict[str, tuple[str, dict[str, Any]]] | None = None,
) -> Report:
    """Every resource through `Analyze` (its inputs) and the stack through `AnalyzeStack` (outputs).

    With `split_by_type`, a resource is offered only to the policies in scope for it (its type, and the
    rule's declared workload scope), and the stack only the resource types the stack rules read: every
    other policy would return at its own scope check, while the SDK deserialises the props once per
    policy, which is most of the cost. Results are identical (tests compare both ways).
    """
    rules = by_policy_name()
    resolved = levels if levels is not None else load_levels(config_path)
    meta = pack_metadata()
    configure = proto.ConfigureAnalyzerRequest()
    for name, (level, options) in resolved.items():
        policy_config = proto.PolicyConfig(enforcementLevel=PROTO_LEVEL[level])
        policy_config.properties.update(options)
        configure.policyConfig[name].CopyFrom(policy_config)
    policies = {policy.name: policy for policy in build_policies()}
    servicers: dict[frozenset[str], Any] = {}

    def servicer_for(names: frozenset[str]) -> Any:
        if names and names not in servicers:
            chosen = [policy for name, policy in policies.items() if name in names]
            servicers[names] = _PolicyAnalyzerServicer(
                meta["name"], meta["version"], chosen, EnforcementLevel.ADVISORY
            )
            servicers[names].Configure(configure, None)
        return servicers.get(names)

    every_policy = frozenset(policies)
    report = Report(
        run.stack,
        run.project,
        {"name": meta["name"], "version": meta["version"]},
        str(config_path) if config_path else None,
        run.resources,
        {name: level for name, (level, _) in resolved.items()},
        source=source or f"Pulumi.{run.stack}.yaml",
    )
    with converted_once() as conversions, collector_paused():
        _analyze(report, rules, run, servicer_for, every_policy, split_by_type, conversions)

    order = {"mandatory": 0, "advisory": 1}
    report.violations.sort(key=lambda v: (order.get(v["enforcement"], 2), v["rule"], v["resource"]))
    _scrub(report, run)
    return report


def _analyze(report: Report, rules: dict[str, Rule], run: ProgramRun, servicer_for: Any,
             every_policy: frozenset[str], split_by_type: bool, conversions: Conversions) -> None:
    by_urn = {r.urn: r for r in run.resources}
    candidates: dict[str, dict[str, Rule]] = {}
    for resource in run.resources:
        if not resource.custom:
            continue
        of_type = candidates.setdefault(
            resource.type, {n: r for n, r in rules.items() if r.per_resource and resource.type in r.types}
        )
        if split_by_type and not of_type:
            continue
        request = proto.AnalyzeRequest(
            type=resource.type, urn=resource.urn, name=resource.name, options=_options(resource)
        )
        conversions.give(request.properties, _propagate_unknowns(resource.inputs))
        if split_by_type:
            props = conversions.props(request.properties)
            names = frozenset(
                name
                for name, rule in of_type.items()
                if in_scope(rule, resource.type, props, resource.name, resource.urn)
            )
        else:
            names = every_policy
        servicer = servicer_for(names)
        if servicer is None:
            continue
        provider = by_urn.get((resource.provider or "").rsplit("::", 1)[0])
        if provider is not None:
            request.provider.CopyFrom(
                proto.AnalyzerProviderResource(type=provider.type, urn=provider.urn, name=provider.name)
            )
            request.provider.properties.update(_propagate_unknowns(provider.outputs))
        _collect(report, rules, servicer.Analyze(request, None), resource.urn)

    stack_types = {t for rule in rules.values() if not rule.per_resource for t in rule.types}
    if any(rule.reads_identity for rule in rules.values()):
        stack_types |= set(IMAGE_SOURCE_FIELDS)  # where a workload's image comes from
    stack_request = proto.AnalyzeStackRequest()
    for resource in run.resources:
        if split_by_type and resource.type not in stack_types:
            continue
        entry = stack_request.resources.add(
            type=resource.type,
            urn=resource.urn,
            name=resource.name,
            parent=resource.parent or "",
            dependencies=resource.dependencies,
            options=_options(resource),
        )
        conversions.give(entry.properties, _propagate_unknowns(resource.outputs))
        for key, urns in resource.property_dependencies.items():
            if urns:  # the SDK walks every entry for every stack policy; an empty one says nothing
                entry.propertyDependencies[key].urns.extend(urns)
    stack_policies = frozenset(name for name, rule in rules.items() if not rule.per_resource)
    servicer = servicer_for(stack_policies if split_by_type else every_policy)
    if servicer is not None:
        _collect(report, rules, servicer.AnalyzeStack(stack_request, None), report.stack_urn)


def _unknown_parts(rule: Rule, reason: str, resource: str) -> list[tuple[str, str]]:
    """(resource, what is unknown): a workload rule judged over the stack names each workload on a line."""
    if rule.kind != "resource" or rule.per_resource:
        return [(resource, reason)]
    parts = []
    for line in reason.split(GRAPH_UNKNOWN_SEPARATOR):
        at, _, text = line.partition(": ")
        parts.append((at, text) if at.startswith("urn:") and text else (resource, line))
    return parts


def _collect(report: Report, rules: dict[str, Rule], response: Any, default_urn: str) -> None:
    for diagnostic in response.diagnostics:
        rule = rules[diagnostic.policyName]
        message = diagnostic.message.removeprefix(diagnostic.description).lstrip("\n")
        resource = diagnostic.urn or default_urn
        if message.startswith(CANT_RUN):
            # The SDK's fail-open path: advisory, and the policy stopped on this resource.
            reason = message.split("during preview: ", 1)[-1]
            for at, text in _unknown_parts(rule, reason, resource):
                report.unknown.append({"rule": rule.id, "resource": at, "message": text, "failClosed": False})
            continue
        report.violations.append(
            {
                "rule": rule.id,
                "policy": rule.policy_name,
                "title": rule.title,
                "severity": rule.severity,
                "enforcement": LEVEL_NAME[diagnostic.enforcementLevel],
                "resource": resource,
                "message": message,
                "remediation": rule.remediation,
                "url": f"{DOCS_PATH}#{rule.anchor}",
            }
        )
        if message.startswith(UNKNOWN_PREFIX):
            report.unknown.append(
                {
                    "rule": rule.id,
                    "resource": resource,
                    "message": message.removeprefix(UNKNOWN_PREFIX),
                    "failClosed": True,
                }
            )
    for not_applicable in response.not_applicable:
        records = waivers.parse_waived_reason(not_applicable.reason)
        for record in records or []:
            record.setdefault("resource", default_urn)
            report.waived.append(record)


def _secret_texts(run: ProgramRun) -> set[str]:
    """Secret plaintexts of the run, to scrub from any output: strings a secret wraps directly, and the value
    of every credential-named `KEY=value` under a secret (a secret list or file holds harmless text too)."""
    found: set[str] = set()

    def walk(value: Any, secret: bool, direct: bool = False) -> None:
        if isinstance(value, dict):
            if value.get(SIG_KEY) == SECRET_SIG:
                walk(value.get("value"), True, True)
                return
            for item in value.values():
                walk(item, secret)
        elif isinstance(value, list):
            for item in value:
                walk(item, secret)
        elif secret and isinstance(value, str) and value != UNKNOWN:
            key, _, rest = value.partition("=")
            if direct and len(value) >= 8:
                found.add(value)
            if SENSITIVE_NAME.search(key) and len(rest) >= 8:
                found.add(rest)

    for resource in run.resources:
        walk(resource.inputs, False)
        walk(resource.outputs, False)
    walk(run.stack_outputs, False)
    return found


def _scrub(report: Report, run: ProgramRun) -> None:
    secrets = sorted(_secret_texts(run), key=len, reverse=True)
    if not secrets:
        return

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            for secret in secrets:
                value = value.replace(secret, "[secret]")
            return value
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return value

    report.violations = clean(report.violations)
    report.unknown = clean(report.unknown)
    report.waived = clean(report.waived)


# --- output --------------------------------------------------------------------------------------------


def _resource_label(report: Report, urn: str) -> str:
    parts = urn.split("::")
    return f"{parts[-1]}: {parts[-2].rsplit('$', 1)[-1]}" if len(parts) >= 4 else urn


def text_report(report: Report) -> str:
    pack = f"{report.pack['name']}@v{report.pack['version']}"
    config = report.config or "pack defaults (prod levels)"
    lines = [f"Policies for stack {report.stack} (project {report.project}): {pack}, config {config}"]
    if report.violations:
        lines.append("Policy Violations:")
    for v in report.violations:
        lines.append(
            f"    [{v['enforcement']}]  {v['rule']} {v['policy']} ({v['severity']})  "
            f"({_resource_label(report, v['resource'])})"
        )
        lines.append(f"    {v['message']}")
        lines.append(f"    remediation: {v['remediation']}")
    if report.unknown:
        lines.append(f"Not known at preview ({len(report.unknown)}):")
        lines.extend(
            f"    {u['rule']}  ({_resource_label(report, u['resource'])})  {u['message']}"
            for u in report.unknown
        )
    if report.waived:
        lines.append(f"Waived ({len(report.waived)}):")
        lines.extend(
            f"    {w['rule']}  ({_resource_label(report, w['resource'])})  {w['reason']} "
            f"[until {w['expires']}, {w['source']}; {len(w['findings'])} finding(s)]"
            for w in report.waived
        )
    s = report.summary()
    lines.append(
        f"Summary: {s['mandatory']} mandatory, {s['advisory']} advisory, {s['unknown']} unknown, "
        f"{s['waived']} waived; {s['resources']} resources, {s['policies']} policies: {s['result']}"
    )
    return "\n".join(lines)


def sarif_report(report: Report, rules: list[Rule]) -> dict[str, Any]:
    index = {rule.id: i for i, rule in enumerate(rules)}
    rules_by_id = {rule.id: rule for rule in rules}
    sarif_rules = [
        {
            "id": rule.id,
            "name": rule.policy_name,
            "shortDescription": {"text": rule.title},
            "fullDescription": {"text": rule.description},
            "help": {"text": rule.remediation},
            "helpUri": f"{DOCS_PATH}#{rule.anchor}",
            "defaultConfiguration": {
                "level": "error" if report.levels.get(rule.policy_name) == "mandatory" else "warning"
            },
            "properties": {
                "severity": rule.severity,
                "tags": [rule.domain, rule.kind],
                "checklist": list(rule.checklist),
            },
        }
        for rule in rules
    ]

    def result(
        rule_id: str,
        resource: str,
        message: str,
        level: str,
        kind: str = "fail",
        suppression: dict | None = None,
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "ruleId": rule_id,
            "ruleIndex": index[rule_id],
            "kind": kind,
            "level": level,
            "message": {"text": message},
            "locations": [
                {
                    "physicalLocation": {"artifactLocation": {"uri": report.source}},
                    "logicalLocations": [
                        {
                            "fullyQualifiedName": resource,
                            "kind": "resource",
                            "name": resource.rsplit("::", 1)[-1],
                        }
                    ],
                }
            ],
        }
        if suppression:
            entry["suppressions"] = [suppression]
        return entry

    results = [
        result(
            v["rule"], v["resource"], v["message"], "error" if v["enforcement"] == "mandatory" else "warning"
        )
        for v in report.violations
    ]
    results += [
        result(u["rule"], u["resource"], f"not known at preview: {u['message']}", "none", "review")
        for u in report.unknown
        if not u["failClosed"]
    ]
    # A waived finding is still a finding, at its rule's level, with an accepted suppression: code scanning
    # lists it as suppressed (dismissed), not as a pass (SARIF 2.1.0 3.27.23 `suppressions`).
    results += [
        result(
            w["rule"],
            w["resource"],
            "; ".join(w["findings"]) or "waived (no finding)",
            "error" if report.levels.get(rules_by_id[w["rule"]].policy_name) == "mandatory" else "warning",
            "fail",
            {
                "kind": "external",
                "status": "accepted",
                "justification": f"{w['reason']} (until {w['expires']}, {w['source']})",
            },
        )
        for w in report.waived
    ]
    return {
        "$schema": SARIF_SCHEMA_URI,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": report.pack["name"],
                        "version": report.pack["version"],
                        "rules": sarif_rules,
                    }
                },
                "automationDetails": {"id": f"infra-check/{report.project}/{report.stack}"},
                "invocations": [{"executionSuccessful": True}],
                "results": results,
            }
        ],
    }


def junit_report(report: Report, rules: list[Rule]) -> ET.Element:
    """A testsuite per rule, a testcase per (rule, resource it applies to). Only a mandatory violation is a
    `<failure>` (what fails the check fails the build); an advisory one, a waived one and an unknown value are
    `<skipped>` with a message saying which, so a dashboard shows them without turning a passing check red."""
    custom = [r for r in report.resources if r.custom]
    violations: dict[tuple[str, str], list[dict]] = {}
    for v in report.violations:
        violations.setdefault((v["rule"], v["resource"]), []).append(v)
    skipped = {
        (u["rule"], u["resource"]): f"not known at preview: {u['message']}"
        for u in report.unknown
        if not u["failClosed"]
    }
    skipped.update(
        {(w["rule"], w["resource"]): f"waived: {w['reason']} (until {w['expires']})" for w in report.waived}
    )
    root = ET.Element("testsuites", name=f"infra check {report.project}/{report.stack}")
    totals = Counter()
    for rule in rules:
        if report.levels.get(rule.policy_name) == "disabled":
            continue
        targets = (
            [r.urn for r in custom if r.type in rule.types] if rule.kind == "resource" else [report.stack_urn]
        )
        targets += sorted({v["resource"] for v in report.violations if v["rule"] == rule.id} - set(targets))
        suite = ET.SubElement(root, "testsuite", name=f"{rule.id} {rule.policy_name}")
        counts = Counter()
        for urn in targets:
            case = ET.SubElement(suite, "testcase", name=urn, classname=rule.id)
            counts["tests"] += 1
            found = violations.get((rule.id, urn))
            if found and found[0]["enforcement"] != "mandatory":
                counts["skipped"] += 1
                ET.SubElement(case, "skipped", message="advisory: " + "; ".join(v["message"] for v in found))
            elif found:
                counts["failures"] += 1
                failure = ET.SubElement(
                    case,
                    "failure",
                    type=found[0]["enforcement"],
                    message="; ".join(v["message"] for v in found),
                )
                failure.text = f"{rule.remediation}\n{DOCS_PATH}#{rule.anchor}"
            elif (rule.id, urn) in skipped:
                counts["skipped"] += 1
                ET.SubElement(case, "skipped", message=skipped[(rule.id, urn)])
        for key in ("tests", "failures", "skipped"):
            suite.set(key, str(counts[key]))
        suite.set("errors", "0")
        totals.update(counts)
    for key in ("tests", "failures", "skipped"):
        root.set(key, str(totals[key]))
    root.set("errors", "0")
    return root


def render(report: Report, output_format: str) -> str:
    from platform_infra.policies.registry import enforced_rules

    if output_format == "json":
        return json.dumps(report.as_json(), indent=2)
    if output_format == "sarif":
        return json.dumps(sarif_report(report, enforced_rules()), indent=2)
    if output_format == "junit":
        element = junit_report(report, enforced_rules())
        ET.indent(element)
        return ET.tostring(element, encoding="unicode", xml_declaration=True)
    return text_report(report)


# --- command -------------------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    report = check_report(args)
    print(render(report, args.format))
    return 1 if report.failed else 0


def check_report(args: argparse.Namespace) -> Report:
    """The policy report of the stack `args` name (`--stack`, `--project`, `--policy-config`, `--state`)."""
    config_path = Path(args.policy_config) if args.policy_config else default_path(args.stack)
    if config_path is not None and not config_path.is_file():
        raise ProgramInputError(f"--policy-config: {config_path} does not exist")
    config_path = _relative(config_path) if config_path else None
    levels = load_levels(config_path)  # bad config is exit 2 before the program runs
    if args.state:
        run, source = load_state(Path(args.state), args.stack), _relative(Path(args.state))
    else:
        run, source = run_project(args), _relative(Path(args.project) / f"Pulumi.{args.stack}.yaml")
    return evaluate(run, config_path, source=str(source), levels=levels)


def _relative(path: Path) -> Path:
    """Paths in reports relative to the working directory when below it (stable across machines)."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["text", "json", "sarif", "junit"], default="text")
    parser.add_argument("--policy-config", help="policy config JSON (default: policies/config/<stack>.json)")
    parser.add_argument("--state", help="check a `pulumi stack export` file instead of running the program")
