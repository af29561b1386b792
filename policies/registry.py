"""The rule registry: one `Rule` per stable id, the single source for policies, config, docs and reports.

Rule modules register with the `resource_rule` / `stack_rule` decorators (the function's docstring is the
policy description); rules the pulumi-docker schema or a policy cannot check are registered with
`not_enforceable` so the docs and reports still list them, with the reason.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from platform_infra.policies.props import FILE_OBJECTS, SERVICE

ENVIRONMENTS = ("dev", "staging", "prod")
MANDATORY, ADVISORY, DISABLED = "mandatory", "advisory", "disabled"
SEVERITIES = ("low", "medium", "high", "critical")
KINDS = ("resource", "stack", "evidence", "not-enforceable")
ON_UNKNOWN = ("report", "fail")
"""report: the SDK's advisory "can't run during preview" diagnostic, counted as unknown by `infra check`;
fail: fail closed, a violation at the rule's enforcement level (for flags that must be literals)."""

DOCS_PATH = "docs/policies.md"


@dataclass(frozen=True)
class Rule:
    id: str
    slug: str
    title: str
    domain: str
    severity: str
    prod: str
    """Default enforcement in prod; staging and dev default to advisory."""
    kind: str
    description: str
    remediation: str
    checklist: tuple[str, ...]
    sources: tuple[str, ...]
    types: tuple[str, ...] = ()
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """JSON schema of each option, each with a `default`."""
    on_unknown: str = "report"
    reason: str = ""
    """Why a not-enforceable rule is not a policy, or what an evidence rule reads instead."""
    check: Callable[..., None] | None = None
    scope: Callable[..., bool] | None = None
    """Workloads the rule looks at (see platform_infra.policies.scope); None: every resource of `types`."""
    reads_files: bool = False
    """The rule reads uploaded files, so it also applies to never-started containers that only carry files;
    every other rule is about a running process and skips them."""
    label_waivable: bool = True
    """False: a resource label never waives the rule; only its policy config can, with an approver (the
    weakenings that open a store or an administrative API to anyone)."""
    reads_identity: bool = False
    """The rule's scope or check reads what a workload is (its kind or role). A workload's image is often
    another resource's output (`RemoteImage.image_id`), which a resource policy cannot follow, so the rule
    judges each workload from the stack's resource graph instead (see platform_infra.policies.scope.reads_identity)."""

    @property
    def policy_name(self) -> str:
        return f"{self.id.lower()}-{self.slug}"

    @property
    def anchor(self) -> str:
        return self.id.lower()

    @property
    def per_resource(self) -> bool:
        """A ResourceValidationPolicy; every other enforced rule is a StackValidationPolicy."""
        return self.kind == "resource" and not self.reads_identity

    @property
    def enforced(self) -> bool:
        return self.kind != "not-enforceable"

    def enforcement(self, environment: str) -> str:
        return self.prod if environment == "prod" else ADVISORY

    def defaults(self) -> dict[str, Any]:
        return {name: schema["default"] for name, schema in self.options.items()}


RULES: dict[str, Rule] = {}


def _register(rule: Rule) -> None:
    if rule.id in RULES:
        raise ValueError(f"rule {rule.id} registered twice")
    if rule.severity not in SEVERITIES or rule.prod not in (MANDATORY, ADVISORY) or rule.kind not in KINDS:
        raise ValueError(f"rule {rule.id}: bad severity, enforcement or kind")
    if rule.on_unknown not in ON_UNKNOWN:
        raise ValueError(f"rule {rule.id}: on_unknown must be one of {ON_UNKNOWN}")
    for name, schema in rule.options.items():
        if "default" not in schema:
            raise ValueError(f"rule {rule.id}: option {name} needs a default")
    RULES[rule.id] = rule


def _decorator(kind: str, **meta: Any) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def wrap(check: Callable[..., None]) -> Callable[..., None]:
        description = inspect.cleandoc(check.__doc__ or "").split("\n\n")[0].replace("\n", " ")
        domain = check.__module__.rsplit(".", 1)[-1]
        reads_files = meta.pop("reads_files", False) or getattr(check, "reads_files", False)
        types = tuple(meta.pop("types", ()))
        if kind == "resource" and reads_files and SERVICE in types:
            # A Swarm service's files are its configs and secrets: the rules reading files judge those.
            types += tuple(t for t in FILE_OBJECTS if t not in types)
        _register(
            Rule(
                kind=kind,
                description=description,
                domain=domain,
                check=check,
                checklist=tuple(meta.pop("checklist")),
                sources=tuple(meta.pop("sources")),
                types=types,
                reads_files=reads_files,
                reads_identity=getattr(check, "reads_identity", False)
                or getattr(meta.get("scope"), "reads_identity", False),
                **meta,
            )
        )
        return check

    return wrap


def resource_rule(id: str, slug: str, title: str, **meta: Any):
    """Register `check(resource, report, options)`: called once per resource of one of `types`."""
    return _decorator("resource", id=id, slug=slug, title=title, **meta)


def stack_rule(id: str, slug: str, title: str, evidence: bool = False, **meta: Any):
    """Register `check(stack, report, options)`: called once with every resource; `report(msg, urn)`."""
    return _decorator("evidence" if evidence else "stack", id=id, slug=slug, title=title, **meta)


def not_enforceable(id: str, slug: str, title: str, *, domain: str, reason: str, **meta: Any) -> None:
    _register(
        Rule(
            id=id,
            slug=slug,
            title=title,
            domain=domain,
            kind="not-enforceable",
            reason=reason,
            prod=ADVISORY,
            description=reason,
            checklist=tuple(meta.pop("checklist")),
            sources=tuple(meta.pop("sources")),
            **meta,
        )
    )


def all_rules() -> list[Rule]:
    """Every registered rule (importing the rule modules registers them), in id order."""
    import platform_infra.policies.rules  # noqa: F401 registration happens on import

    return sorted(RULES.values(), key=lambda r: _sort_key(r.id))


def enforced_rules() -> list[Rule]:
    return [r for r in all_rules() if r.enforced]


def by_policy_name() -> dict[str, Rule]:
    return {r.policy_name: r for r in enforced_rules()}


def _sort_key(rule_id: str) -> tuple[str, int]:
    prefix, _, number = rule_id.rpartition("-")
    return prefix, int(number)
