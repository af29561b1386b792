"""The prod gate: run-time evidence (infra/daytwo/evidence.py) a preview must find before prod changes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

from platform_infra.infra.daytwo import evidence, gate
from platform_infra.policies.props import WORKLOADS
from platform_infra.policies.registry import ADVISORY, MANDATORY, RULES, stack_rule
from platform_infra.policies.waivers import WAIVER_LABEL_PREFIX, parse_label

BUCKET_TYPE = "pulumi-python:dynamic/backup:BackupBucket"
STORE_OPTIONS = {
    "evidence_dir": {"type": "string", "default": "", "description": "the evidence directory of a stack without "
                     "a backup bucket (a stack with one keeps its evidence under the bucket's evidence/<stack>/)"},
}


def _stack_name(stack) -> str:
    """A URN's stack: urn:pulumi:<stack>::<project>::..."""
    return next((r.urn.split(":")[2] for r in stack.resources if r.urn.startswith("urn:pulumi:")), "")


def _store(stack, options) -> evidence.Store | None:
    """The store the stack gives: its backup bucket's `evidence/<stack>/`, else the policy config's directory."""
    buckets = stack.of_type(BUCKET_TYPE)
    bucket = buckets[0].props.get("bucket") if buckets else None
    if isinstance(bucket, str) and bucket:
        return evidence.BucketStore(bucket, f"{evidence.EVIDENCE_PREFIX}{_stack_name(stack)}/")
    return evidence.DirectoryStore(Path(options["evidence_dir"])) if options["evidence_dir"] else None


def _records(store: evidence.Store) -> list[evidence.Record]:
    """An unreadable store is unknown, never a pass."""
    try:
        return store.records()
    except evidence.EvidenceError as error:
        unknown = UnknownValueError(UNKNOWN_STRING_VALUE, [])
        unknown.message = f"the evidence store cannot be read: {error}"
        raise unknown from None


def _waivers(stack) -> list[tuple[str, str]]:
    found = []
    for w in stack.workloads:
        for key, value in w.labels.items():
            rule = RULES.get(key.removeprefix(WAIVER_LABEL_PREFIX)) if key.startswith(WAIVER_LABEL_PREFIX) else None
            if rule is not None:  # a label naming no rule waives nothing (the waiver rules report it)
                waiver = parse_label(rule, value)
                if waiver.problem is None:
                    found.append((f"{waiver.rule} on {w.name}", waiver.expires))
    return found


@stack_rule(
    "EVD-001",
    "evidence-gate",
    "Recent backup drill, fresh backups, no expired waiver",
    types=(*WORKLOADS, BUCKET_TYPE),
    severity="high",
    prod=MANDATORY,
    checklist=["ongoing.dr-drills", "success.backup-job"],
    sources=["Production checklist: Ongoing (quarterly disaster recovery drills)", "NIST SP 800-34 §3.5"],
    options=STORE_OPTIONS,
    remediation="Run `infra backup drill` and `infra verify --phase success` against the stack (they write the "
    "evidence), take a backup (`infra backup now`) when the newest is stale, and fix what an expired waiver "
    "excused (or review it and set a new expiry date).",
)
def evidence_gate(stack, report, options) -> None:
    """No waiver of the stack has expired (its findings also come back on the waived rule, at that rule's
    level, which may be advisory: here it fails the gate), and the stack's evidence store (its backup bucket, or
    the policy config's `evidence_dir`) says the last successful backup drill is within its freshness and the
    newest backup is fresh; an unreadable store is unknown, never a pass."""
    if not stack.workloads:
        return
    for failure in gate.waiver_dates(_waivers(stack), date.today()).failures:
        report(failure)
    store = _store(stack, options)
    if store is None:
        return
    name, now = _stack_name(stack), datetime.now(UTC)
    records = _records(store)
    for failure in (gate.drill_failure(records, name, now), gate.backup_failure(records, name, now)):
        if failure:
            report(failure)


@stack_rule(
    "EVD-002",
    "waivers-expiring",
    "Waivers expiring within 14 days",
    types=WORKLOADS,
    severity="low",
    prod=ADVISORY,
    checklist=["success.security-scan"],
    sources=["Production checklist: Ongoing"],
    remediation="Fix what the waiver excuses, or review it and set a new expiry date.",
)
def waivers_expiring(stack, report, options) -> None:
    """Lists each waiver of the stack that expires within the next 14 days, so it is reviewed before it lapses."""
    for line in gate.waiver_dates(_waivers(stack), date.today()).expiring:
        report(line)
