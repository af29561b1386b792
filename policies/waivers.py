"""Waivers: a resource opts out of one rule, with a reason and an expiry date, and stays visible.

Two sources:
* a label on the resource: `platform.waiver.<RULE-ID>` = `reason=...;expires=YYYY-MM-DD`;
* the rule's policy config: `"waivers": [{"resource": "<name, URN or glob>", "reason": ..., "expires": ...}]`
  (the engine validates these against the rule's schema, which requires all three fields).

A waiver may not run longer than its rule's severity allows (MAX_WAIVER_DAYS, from the day it is checked):
one dated further out is refused, so an exception is re-decided at least that often. A rule registered with
`label_waivable=False` is never waived by a label: only its policy config waives it, and only a config
waiver naming its `approver`.

A valid waiver turns the rule's findings on that resource into a `not_applicable` reason starting with
`waived: ` + JSON, which `infra check` lists under "waived"; an expired waiver lets the findings through
again, marked as such; a waiver without a reason or a valid expiry is refused and reported as a violation.
"""

from __future__ import annotations

import datetime
import fnmatch
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from platform_infra.policies.registry import Rule

MAX_WAIVER_DAYS = {"critical": 365, "high": 365, "medium": 730, "low": 730}
"""The furthest a waiver's expiry may lie, in days from today, by the severity of the rule it waives."""
WAIVER_LABEL_PREFIX = "platform.waiver."
CONFIG_SOURCE = "policy config"
WAIVED_PREFIX = "waived: "

WAIVERS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "description": "Resources this rule does not apply to, each with a reason and an expiry date.",
    "default": [],
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["resource", "reason", "expires"],
        "properties": {
            "resource": {
                "type": "string",
                "minLength": 1,
                "description": "resource name or URN; globs allowed",
            },
            "reason": {"type": "string", "minLength": 1},
            "approver": {
                "type": "string",
                "minLength": 1,
                "description": "who accepted the exception; required by the rules no label may waive",
            },
            "expires": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
        },
    },
}


def today() -> datetime.date:
    return datetime.date.today()


@dataclass(frozen=True)
class Waiver:
    rule: str
    source: str
    reason: str
    expires: str
    problem: str | None = None
    approver: str | None = None

    @property
    def expired(self) -> bool:
        return self.problem is None and datetime.date.fromisoformat(self.expires) < today()

    @property
    def valid(self) -> bool:
        return self.problem is None and not self.expired


def parse_label(rule: Rule, text: str) -> Waiver:
    fields: dict[str, str] = {}
    for part in text.split(";"):
        key, _, value = part.partition("=")
        if key.strip():
            fields[key.strip().lower()] = value.strip()
    source = f"label {WAIVER_LABEL_PREFIX}{rule.id}"
    waiver = _waiver(rule, source, fields.get("reason", ""), fields.get("expires", ""))
    if not rule.label_waivable and waiver.problem is None:
        problem = "no label waives this rule; only its policy config does, with an approver"
        return Waiver(rule.id, source, waiver.reason, waiver.expires, problem)
    return waiver


def _waiver(rule: Rule, source: str, reason: str, expires: str, approver: str | None = None) -> Waiver:
    problem = None
    if not reason.strip():
        problem = "it has no reason (reason=...)"
    else:
        try:
            until = datetime.date.fromisoformat(expires)
        except ValueError:
            problem = "it has no valid expiry date (expires=YYYY-MM-DD)"
        else:
            days = MAX_WAIVER_DAYS[rule.severity]
            latest = today() + datetime.timedelta(days=days)
            if until > latest:
                problem = (f"it expires {expires}, beyond the {days} days a {rule.severity} rule may be waived "
                           f"(at most {latest.isoformat()})")
            elif not rule.label_waivable and source == CONFIG_SOURCE and not (approver or "").strip():
                problem = "it has no approver (approver: who accepted it)"
    return Waiver(rule.id, source, reason.strip(), expires, problem, (approver or "").strip() or None)


def waivers_for(
    rule: Rule, resource_labels: dict[str, str], name: str, urn: str, config_waivers: list[Any]
) -> list[Waiver]:
    found = [
        parse_label(rule, value)
        for key, value in resource_labels.items()
        if key == WAIVER_LABEL_PREFIX + rule.id
    ]
    for entry in config_waivers or []:
        pattern = str(entry.get("resource", ""))
        if pattern and (fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(urn, pattern)):
            approver = entry.get("approver")
            found.append(
                _waiver(
                    rule,
                    CONFIG_SOURCE,
                    str(entry.get("reason", "")),
                    str(entry.get("expires", "")),
                    None if approver is None else str(approver),
                )
            )
    return found


def settle(rule_id: str, findings: list[str], waivers: list[Waiver], report) -> dict[str, Any] | None:
    """Report what is not waived through `report(message)`; return the waiver record when one applies."""
    for waiver in waivers:
        if waiver.problem:
            report(f"waiver for {rule_id} ({waiver.source}) refused: {waiver.problem}")
    valid = [w for w in waivers if w.valid]
    if valid:
        chosen = valid[0]
        record = {
            "rule": rule_id,
            "source": chosen.source,
            "reason": chosen.reason,
            "expires": chosen.expires,
            "findings": findings,
        }
        return {**record, "approver": chosen.approver} if chosen.approver else record
    expired = [w for w in waivers if w.expired]
    suffix = f" (waiver expired {expired[0].expires}: {expired[0].reason})" if expired else ""
    for finding in findings:
        report(finding + suffix)
    return None


def waived_reason(records: list[dict[str, Any]]) -> str:
    return WAIVED_PREFIX + json.dumps(records, sort_keys=True)


def parse_waived_reason(reason: str) -> list[dict[str, Any]] | None:
    if not reason.startswith(WAIVED_PREFIX):
        return None
    return json.loads(reason[len(WAIVED_PREFIX) :])
