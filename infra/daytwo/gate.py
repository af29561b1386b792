"""The prod gate's judgement (policies EVD-001 and EVD-002) over a stack's evidence records and its waivers.

Fails: the last successful backup drill older than the freshness of the checklist's "Quarterly disaster
recovery drills" line (or none on record), the newest backup stale (the newest `infra verify` record's
backup ages, grown by the time since, against the max ages recorded with them; or no such record), a waiver
past its expiry date (its findings come back on the rule it waived too, at that rule's level).
Lists: the waivers that expire within `warn_days`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from platform_infra.components.monitoring.model import duration_seconds
from platform_infra.infra import catalog
from platform_infra.infra.daytwo.evidence import Record, newest

DRILL_LINE = "ongoing.dr-drills"
BACKUP_LINES = ("success.backup-job", "post.day.backup-jobs")
WARN_DAYS = 14


@dataclass
class Verdict:
    failures: list[str] = field(default_factory=list)
    expiring: list[str] = field(default_factory=list)


def drill_failure(records: list[Record], stack: str, now: datetime) -> str | None:
    freshness = catalog.load().by_id()[DRILL_LINE].freshness
    drill = newest(records, stack, "drill.backup", ok=True)
    if drill is None:
        return f"no successful backup drill on record (`infra backup drill`; needed every {freshness})"
    if drill.age_seconds(now) > duration_seconds(freshness):
        return f"the last successful backup drill ({drill.created_at:%Y-%m-%d}) is older than {freshness}"
    return None


def backup_failure(records: list[Record], stack: str, now: datetime) -> str | None:
    """From the newest record that measured the backups' ages: each class's age then, plus the time since."""
    measured = sorted(((r, c) for r in records if r.stack == stack for c in r.checks
                       if c.id in BACKUP_LINES and isinstance(c.value, dict) and isinstance(c.threshold, dict)),
                      key=lambda found: found[0].created_at)
    if not measured:
        return "no record of the newest backups' ages (`infra verify --phase success`)"
    record, check = measured[-1]
    since = record.age_seconds(now)
    stale = [f"{name} {age + since:.0f} s old (max {check.threshold[name]} s)" for name, age in check.value.items()
             if age is not None and name in check.threshold and age + since > check.threshold[name]]
    if stale:
        return f"the newest backup is stale as of {record.created_at:%Y-%m-%d %H:%M}: {', '.join(stale)}"
    return None


def waiver_dates(expires: list[tuple[str, str]], today: date, warn_days: int = WARN_DAYS) -> Verdict:
    """`expires`: (what, YYYY-MM-DD) of each waiver."""
    verdict = Verdict()
    for what, when in expires:
        day = date.fromisoformat(when)
        if day < today:
            verdict.failures.append(f"waiver {what} expired on {when}")
        elif day <= today + timedelta(days=warn_days):
            verdict.expiring.append(f"waiver {what} expires on {when}")
    return verdict
