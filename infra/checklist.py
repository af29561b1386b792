"""`infra checklist`: every line of the production checklist with its status for one stack.

A line's status says what kind of proof it has, from the `infra check` report of the stack, the catalog
(infra/checklist.yaml) and the stack's evidence records (infra/daytwo/evidence.py):
fail (a rule it names has violations, or its newest run-time check failed), stale (its run-time record is
older than the line's freshness), waived (only waived findings), enforced (its rules judged resources and ran
clean), verified (a run-time record within its freshness: dated, naming the record), provided (a component
the stack deploys provides it), proven (a named test of this repository proves it), manual (a person signs it
off: the role and the runbook step), or not applicable (its rules had nothing on this stack to judge).
A run-time line (one with a `freshness`) is covered only by a record: configuration never passes it.
Exit 0 when no line fails with a mandatory violation or a failed run-time check, 1 otherwise.
"""

from __future__ import annotations

import argparse
import html
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from platform_infra.components.monitoring.model import duration_seconds
from platform_infra.infra import catalog
from platform_infra.infra.check import Report, _resource_label, check_report
from platform_infra.infra.version import commit, version
from platform_infra.policies.registry import RULES, all_rules

STATUSES = ("fail", "stale", "waived", "enforced", "verified", "provided", "proven", "manual", "not applicable")
COVERED = ("enforced", "waived", "verified", "provided", "proven")
"""Covered: the stack, its evidence or the repository shows the line holds (a waiver is a dated, reviewed
exception)."""


RECORD_COMMANDS = {"verify": "infra verify", "drill.alerts": "infra drill alerts", "drill.load": "infra drill load",
                   "drill.failover": "infra drill failover", "drill.backup": "infra backup drill",
                   "backup.restore": "infra backup restore", "autoscale.review": "infra autoscale review"}
"""The command that writes each kind of evidence record (infra/daytwo/evidence.py KINDS)."""


@dataclass
class Line:
    id: str
    section: str
    text: str
    status: str
    evidence: list[dict[str, Any]]
    blocking: bool
    """Fails with a mandatory violation or a failed run-time check: the stack is not ready to sign off."""
    runtime: bool = False
    """Only run-time evidence covers it (the catalog gives it a freshness)."""

    @property
    def shown_status(self) -> str:
        if self.status != "fail":
            return self.status
        return f"fail ({'mandatory' if self.blocking else 'advisory only'})"

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "section": self.section, "text": self.text, "status": self.status,
                "evidence": self.evidence}


@dataclass
class Checklist:
    stack: str
    project: str
    lines: list[Line]
    sign_off: tuple[str, ...]
    environment: str = "prod"
    commit: str | None = None
    made_at: str = ""
    evidence_store: str | None = None

    @property
    def title(self) -> str:
        if self.environment == "prod":
            return f"Production checklist for stack {self.stack}"
        return f"Checklist for stack {self.stack} ({self.environment}: not the production sign-off)"

    @property
    def failed(self) -> bool:
        return any(line.blocking for line in self.lines)

    def sections(self) -> list[str]:
        return list(dict.fromkeys(line.section for line in self.lines))

    def coverage(self) -> dict[str, dict[str, int]]:
        def figures(lines: list[Line]) -> dict[str, int]:
            return {"covered": sum(line.status in COVERED for line in lines), "total": len(lines)}

        result = {s: figures([line for line in self.lines if line.section == s]) for s in self.sections()}
        result["overall"] = figures(self.lines)
        return result

    def remaining(self) -> dict[str, int]:
        """What stands between the stack and sign-off, by kind."""
        counts = Counter(line.status for line in self.lines)
        return {"failing": counts["fail"], "stale": counts["stale"],
                "awaiting run-time evidence": sum(line.runtime and line.status == "manual" for line in self.lines),
                "to sign by hand": sum(not line.runtime and line.status == "manual" for line in self.lines)}

    def as_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "environment": self.environment, "commit": self.commit, "version": version(),
                "made_at": self.made_at, "evidence_store": self.evidence_store,
                "items": [line.as_json() for line in self.lines], "coverage": self.coverage(),
                "remaining": self.remaining()}


def _nothing_to_judge(report: Report, rule_id: str) -> bool:
    """The rule looks at resource types the stack has none of (Swarm rules on a Docker-runtime stack)."""
    types = RULES[rule_id].types
    return bool(types) and not any(r.type in types for r in report.resources)


def _rule_evidence(report: Report, rule_id: str) -> tuple[list[dict[str, Any]], str | None]:
    """Evidence of one rule, and its verdict: fail, waived, pass, "nothing" (nothing of its kind to judge on
    this stack) or None (no verdict on this stack)."""
    rule = RULES[rule_id]
    if not rule.enforced:
        return [{"kind": "rule", "rule": rule_id, "result": "not enforceable", "detail": rule.reason}], None
    level = report.levels.get(rule.policy_name, rule.prod)
    if level == "disabled":
        return [{"kind": "rule", "rule": rule_id, "result": "disabled", "detail": "disabled by the policy config"}], None
    if _nothing_to_judge(report, rule_id):
        return [{"kind": "rule", "rule": rule_id, "result": "nothing to judge",
                 "detail": f"the stack has no {', '.join(t.split(':')[-1] for t in rule.types)}"}], "nothing"
    violations = [
        {"kind": "violation", "rule": rule_id, "enforcement": v["enforcement"], "resource": v["resource"],
         "message": v["message"], "remediation": v["remediation"]}
        for v in report.violations if v["rule"] == rule_id
    ]
    if violations:
        return violations, "fail"
    waived = [
        {"kind": "waiver", "rule": rule_id, "resource": w["resource"], "reason": w["reason"],
         "expires": w["expires"]}
        for w in report.waived if w["rule"] == rule_id
    ]
    unknown = [
        {"kind": "unknown", "rule": rule_id, "resource": u["resource"], "message": u["message"]}
        for u in report.unknown if u["rule"] == rule_id
    ]
    if unknown:
        return waived + unknown, None
    if waived:
        return waived, "waived"
    return [{"kind": "rule", "rule": rule_id, "result": "pass", "enforcement": level}], "pass"


def own_project() -> str | None:
    """The name of this repository's Pulumi project: the program its tests exercise. None when installed from
    the wheel, which ships neither the project nor its tests."""
    project_file = catalog.REPO_ROOT / "Pulumi.yaml"
    return yaml.safe_load(project_file.read_text())["name"] if project_file.is_file() else None


def _runtime_status(item: catalog.Item, found: tuple[Any, Any] | None, now: datetime) -> tuple[str, dict]:
    """A run-time line's status from its newest judged check: verified, stale, fail, or manual (no record)."""
    if found is None:
        on = f" --stack {item.stack}" if item.stack else ""
        commands = " or ".join(f"`{RECORD_COMMANDS.get(kind, kind)}{on}`" for kind in item.records)
        return "manual", {"kind": "awaiting",
                          "detail": f"no run-time evidence: run {commands or '`infra verify` (or the drill)'}"}
    record, check = found
    age = (now - record.created_at).total_seconds()
    shown = {"kind": "record", "record": record.name, "date": record.created_at.isoformat(), "result": check.status,
             "detail": check.evidence, "freshness": item.freshness}
    if item.stack:
        shown["detail"] = f"stack {record.stack} at commit {record.commit or 'unknown'}: {check.evidence}"
    if check.status == "fail":
        return "fail", shown
    return ("stale" if age > duration_seconds(item.freshness) else "verified"), shown


def newest_by_line(records: list, stack: str) -> dict[str, tuple[Any, Any]]:
    """Each checklist line's newest judged check (pass or fail; unknown proves nothing) and its record."""
    found: dict[str, tuple[Any, Any]] = {}
    for record in sorted((r for r in records if r.stack == stack), key=lambda r: r.created_at):
        for check in record.checks:
            if check.status != "unknown":
                found[check.id] = (record, check)
    return found


@dataclass(frozen=True)
class RecordVerdict:
    """A whole record as one line's check: the run succeeded or not (the line's `records` kinds)."""

    status: str
    evidence: str


def newest_of_kinds(records: list, stack: str, kinds: tuple[str, ...]) -> tuple[Any, RecordVerdict] | None:
    """The newest record of one of `kinds` for the stack, judged by its own verdict (`ok`)."""
    newest = max((r for r in records if r.stack == stack and r.kind in kinds), key=lambda r: r.created_at,
                 default=None)
    if newest is None:
        return None
    said = "; ".join(c.evidence for c in newest.checks if c.evidence) or ("ok" if newest.ok else "failed")
    return newest, RecordVerdict("pass" if newest.ok else "fail", f"{newest.kind}: {said}")


def _newest(*found: tuple[Any, Any] | None) -> tuple[Any, Any] | None:
    return max((f for f in found if f is not None), key=lambda f: f[0].created_at, default=None)


def build(report: Report, loaded: catalog.Catalog | None = None, records: list | None = None,
          now: datetime | None = None) -> Checklist:
    """`records`: the stack's evidence records (infra/daytwo/evidence.py); None when none were read."""
    loaded = loaded or catalog.load()
    now = now or datetime.now(UTC)
    all_rules()  # registers the rules
    deployed = {r.type for r in report.resources}
    # The tests prove this repository's program; another project is judged by its resources alone.
    tested = report.project == own_project()
    runtime = newest_by_line(records or [], report.stack)
    lines = []
    for section, item in loaded.lines():
        evidence: list[dict[str, Any]] = []
        verdicts = set()
        for rule_id in item.rules:
            found, verdict = _rule_evidence(report, rule_id)
            evidence += found
            verdicts.add(verdict)
        provided = [c for c in item.components if catalog.component_type(c) in deployed]
        evidence += [{"kind": "component", "component": c, "deployed": c in provided} for c in item.components]
        proven = [t for t in item.tests if tested and catalog.named_test_exists(t)]
        evidence += [{"kind": "test", "test": t, "proves": t in proven} for t in item.tests]
        if item.runbook:
            evidence.append({"kind": "runbook", "step": item.runbook})
        if "fail" in verdicts:
            status = "fail"
        elif item.freshness:
            by_kind = newest_of_kinds(records or [], item.stack or report.stack, item.records)
            found = by_kind if item.stack and item.stack != report.stack else _newest(runtime.get(item.id), by_kind)
            status, shown = _runtime_status(item, found, now)
            evidence.append(shown)
        elif "waived" in verdicts:
            status = "waived"
        elif "pass" in verdicts and not any(e["kind"] == "unknown" for e in evidence):
            status = "enforced"
        elif provided:
            status = "provided"
        elif proven:
            status = "proven"
        elif verdicts == {"nothing"} and not item.runbook:
            status = "not applicable"
        else:
            status = "manual"
        if status == "manual":
            evidence.append({"kind": "signoff", "role": item.signoff or section.signoff or loaded.sign_off[0]})
        # Blocking: a mandatory violation, or a failed run-time check (advisory findings never block).
        blocking = any(e["kind"] == "violation" and e["enforcement"] == "mandatory"
                       or e["kind"] == "record" and e["result"] == "fail" for e in evidence)
        lines.append(Line(item.id, section.name, item.text, status, evidence, blocking, item.freshness is not None))
    return Checklist(report.stack, report.project, lines, loaded.sign_off, made_at=now.isoformat(timespec="seconds"))


# --- output --------------------------------------------------------------------------------------------


def describe(evidence: dict[str, Any], resource_label: Callable[[str], str]) -> str:
    kind = evidence["kind"]
    if kind == "violation":
        return (f"{evidence['rule']} [{evidence['enforcement']}] {resource_label(evidence['resource'])}: "
                f"{evidence['message']}")
    if kind == "waiver":
        return (f"{evidence['rule']} waived on {resource_label(evidence['resource'])}: {evidence['reason']} "
                f"(until {evidence['expires']})")
    if kind == "unknown":
        return f"{evidence['rule']} not known at preview on {resource_label(evidence['resource'])}"
    if kind == "rule":
        level = f" ({evidence['enforcement']})" if "enforcement" in evidence else ""
        return f"{evidence['rule']} {evidence['result']}{level}"
    if kind == "component":
        return f"component {evidence['component']} {'deployed' if evidence['deployed'] else 'not deployed'}"
    if kind == "test":
        return f"test {evidence['test']}" + ("" if evidence["proves"] else " (not for this program)")
    if kind == "record":
        return (f"{evidence['result']} on {evidence['date'][:16].replace('T', ' ')} (record {evidence['record']}, "
                f"fresh for {evidence['freshness']}): {evidence['detail']}")
    if kind == "awaiting":
        return evidence["detail"]
    if kind == "signoff":
        return f"signed off by {evidence['role']}"
    return f"runbook {evidence['step']}"


def _ordered(lines: list[Line]) -> list[Line]:
    """Failing lines first, then by status, in catalog order within a status."""
    return sorted(lines, key=lambda line: STATUSES.index(line.status))


def _percent(figures: dict[str, int]) -> str:
    return f"{100 * figures['covered'] / figures['total']:.0f}%" if figures["total"] else "n/a"


def _headline(checklist: Checklist) -> str:
    overall = checklist.coverage()["overall"]
    counts = Counter(line.status for line in checklist.lines)
    by_status = ", ".join(f"{counts[s]} {s}" for s in STATUSES)
    return f"{overall['covered']}/{overall['total']} lines covered ({_percent(overall)}): {by_status}"


def _remaining_text(checklist: Checklist) -> str:
    remaining = {what: n for what, n in checklist.remaining().items() if n}
    if not remaining:
        return "Nothing remains before sign-off."
    return "Before sign-off: " + ", ".join(f"{n} {what}" for what, n in remaining.items()) + "."


def _made(checklist: Checklist) -> str:
    return (f"project {checklist.project}, commit {checklist.commit or 'unknown'}, made {checklist.made_at} "
            f"by infra {version()} (commit {commit()}); "
            f"evidence: {checklist.evidence_store or 'none read'}")


def text_report(checklist: Checklist, label: Callable[[str], str]) -> str:
    out = [checklist.title, _made(checklist), _headline(checklist), _remaining_text(checklist), "",
           "Coverage by section:"]
    coverage = checklist.coverage()
    width = max(len(s) for s in coverage)
    out += [f"  {name:<{width}}  {f['covered']:3d}/{f['total']:<3d} {_percent(f):>5}" for name, f in coverage.items()]
    for section in checklist.sections():
        out += ["", f"{section}:"]
        for line in _ordered([line for line in checklist.lines if line.section == section]):
            out.append(f"  [{line.shown_status}] {line.id}  {line.text}")
            out += [f"      {describe(e, label)}" for e in line.evidence]
    out += ["", "Sign-off (name, signature, date to fill in):"]
    out += [f"  {role}: ____________________" for role in checklist.sign_off]
    return "\n".join(out)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_report(checklist: Checklist, label: Callable[[str], str]) -> str:
    out = [f"# {_md(checklist.title)}", "", _md(_made(checklist)), "", _headline(checklist), "",
           f"**{_remaining_text(checklist)}**", "",
           "| Section | Covered | Total | |", "|---|---|---|---|"]
    out += [f"| {_md(name)} | {f['covered']} | {f['total']} | {_percent(f)} |"
            for name, f in checklist.coverage().items()]
    failing = [line for line in checklist.lines if line.status == "fail"]
    if failing:
        out += ["", "## Failing lines", ""]
        out += [f"- **{line.id}** {_md(line.text)}" for line in failing]
    for section in checklist.sections():
        out += ["", f"## {section}", "", "| Status | Id | Line | Evidence |", "|---|---|---|---|"]
        for line in _ordered([line for line in checklist.lines if line.section == section]):
            evidence = "<br>".join(_md(describe(e, label)) for e in line.evidence)
            out.append(f"| {line.shown_status} | `{line.id}` | {_md(line.text)} | {evidence} |")
    out += ["", "## Sign-off", "", "| Role | Name | Signature | Date |", "|---|---|---|---|"]
    out += [f"| {role} | | | |" for role in checklist.sign_off]
    return "\n".join(out) + "\n"


CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2430;background:#f5f6f8}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px}
.sub{color:#5b6475;margin:0 0 18px}
.figures{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:18px}
.figure{flex:1 1 0;background:#fff;border-radius:8px;padding:12px 16px;min-width:90px;box-shadow:0 1px 2px #0002}
.figure .value{display:block;font-size:28px;font-weight:700}
.figure .label{color:#5b6475;font-size:13px}
.verdict{padding:10px 14px;border-radius:8px;font-weight:600;margin-bottom:18px}
.verdict.ready{background:#e3f5e8;color:#1c6b34}.verdict.blocked{background:#fde8e8;color:#9b1c1c}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e4e7ec;vertical-align:top}
table.lines{table-layout:fixed}table.lines th:nth-child(1){width:150px}table.lines th:nth-child(2){width:210px}
table.lines th:nth-child(3){width:26%}table.lines td{overflow-wrap:anywhere}
th{background:#eef0f4;font-size:13px}
.bar{background:#e4e7ec;border-radius:4px;height:10px;width:160px}
.bar span{display:block;height:10px;border-radius:4px;background:#2f7d4a}
details{background:#fff;border-radius:8px;margin:10px 0;box-shadow:0 1px 2px #0002}
summary{cursor:pointer;padding:10px 14px;font-weight:600}
details table{border-top:1px solid #e4e7ec}
code{font-size:13px}ul.ev{margin:0;padding-left:18px;font-size:13px;color:#3a4252}
.st{display:inline-block;white-space:nowrap;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:700;text-transform:uppercase}
.st-fail{background:#fde8e8;color:#9b1c1c}.st-waived{background:#fff4d6;color:#8a5a00}
.st-pass{background:#e3f5e8;color:#1c6b34}.st-provided{background:#e3eefc;color:#1d4f91}
.st-proven{background:#ece6fb;color:#4b2a91}.st-manual{background:#eef0f4;color:#4a5160}
.st-enforced{background:#e3f5e8;color:#1c6b34}.st-verified{background:#d5f0e0;color:#14532d}
.st-stale{background:#fff4d6;color:#8a5a00}.st-not{background:#f1f2f4;color:#6b7280}
.signoff td{height:28px}
"""


def html_report(checklist: Checklist, label: Callable[[str], str]) -> str:
    esc = html.escape
    coverage = checklist.coverage()
    counts = Counter(line.status for line in checklist.lines)
    overall = coverage["overall"]

    def rows(lines: list[Line]) -> str:
        return "".join(
            f'<tr class="line {line.status}"><td><span class="st st-{line.status}">{line.shown_status}</span></td>'
            f"<td><code>{esc(line.id)}</code></td><td>{esc(line.text)}</td><td><ul class=\"ev\">"
            + "".join(f"<li>{esc(describe(e, label))}</li>" for e in line.evidence)
            + "</ul></td></tr>"
            for line in lines
        )

    head = "<tr><th>Status</th><th>Id</th><th>Line</th><th>Evidence</th></tr>"
    figures = [(f'<div class="figure" id="figure-overall"><span class="value">{_percent(overall)}</span>'
               f'<span class="label">covered: {overall["covered"]} of {overall["total"]} lines</span></div>')]
    figures += [f'<div class="figure" id="figure-{s}"><span class="value">{counts[s]}</span>'
                f'<span class="label">{s}</span></div>' for s in STATUSES]
    section_rows = "".join(
        f"<tr><td>{esc(name)}</td><td>{f['covered']}</td><td>{f['total']}</td><td>{_percent(f)}</td>"
        f'<td><div class="bar"><span style="width:{100 * f["covered"] // max(f["total"], 1)}%"></span></div></td></tr>'
        for name, f in coverage.items()
    )
    failing = [line for line in checklist.lines if line.status == "fail"]
    body = [
        f"<h1>{esc(checklist.title)}</h1>",
        f'<p class="sub">{esc(_made(checklist))}. {esc(_headline(checklist))}.</p>',
        f'<div class="verdict {"ready" if not any(checklist.remaining().values()) else "blocked"}">'
        + esc(_remaining_text(checklist)) + "</div>",
        f'<div class="figures">{"".join(figures)}</div>',
        ('<table class="coverage"><tr><th>Section</th><th>Covered</th><th>Total</th><th>%</th><th></th></tr>'
        f"{section_rows}</table>"),
    ]
    if failing:
        body += ['<h2 id="failing">Failing lines</h2>', f'<table class="lines">{head}{rows(failing)}</table>']
    body.append("<h2>Sections</h2>")
    for section in checklist.sections():
        lines = [line for line in checklist.lines if line.section == section]
        f = coverage[section]
        fails = sum(line.status == "fail" for line in lines)
        body.append(
            f'<details{" open" if fails else ""}><summary>{esc(section)}: {f["covered"]}/{f["total"]} covered'
            + (f", {fails} failing" if fails else "") + f'</summary><table class="lines">{head}{rows(_ordered(lines))}</table>'
            "</details>"
        )
    body += ['<h2 id="signoff">Sign-off</h2>',
             '<table class="signoff"><tr><th>Role</th><th>Name</th><th>Signature</th><th>Date</th></tr>'
             + "".join(f"<tr><td>{esc(role)}</td><td></td><td></td><td></td></tr>" for role in checklist.sign_off)
             + "</table>"]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Checklist {esc(checklist.stack)}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


def render(checklist: Checklist, report: Report, output_format: str) -> str:
    def label(urn: str) -> str:
        return _resource_label(report, urn)

    if output_format == "json":
        return json.dumps(checklist.as_json(), indent=2)
    if output_format == "md":
        return markdown_report(checklist, label)
    if output_format == "html":
        return html_report(checklist, label)
    return text_report(checklist, label)


# The stack's run-time evidence, read by the day-two layer (the `infra` command passes
# platform_infra.infra.daytwo.verify.stack_evidence): its environment, its records (None when unreadable), where they are.
EvidenceReader = Callable[[Path, str], tuple[str, list | None, str]]


def cmd_checklist(args: argparse.Namespace, read_evidence: EvidenceReader) -> int:
    report = check_report(args)
    project = Path(args.project)
    environment, records, where = read_evidence(project, args.stack)
    # Lines proven on another stack (the release verified in staging) read that stack's records too.
    for other in sorted(catalog.load().other_stacks() - {args.stack}):
        if (project / f"Pulumi.{other}.yaml").is_file():
            records = [*(records or []), *(read_evidence(project, other)[1] or [])]
    checklist = build(report, records=records)
    checklist.environment, checklist.evidence_store = environment, where
    checklist.commit = commit(project)
    print(render(checklist, report, args.format))
    return 1 if checklist.failed else 0


def add_checklist_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["text", "md", "html", "json"], default="text")
    parser.add_argument("--policy-config", help="policy config JSON (default: policies/config/<stack>.json)")
    parser.add_argument("--state", help="judge a `pulumi stack export` file instead of running the program")
