"""`infra checklist`: each catalog line's status for a stack, coverage, exit codes and the four formats; the
HTML report opened in a real headless Chromium."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime
from importlib.metadata import version

import pytest

from platform_infra.infra import catalog
from platform_infra.infra.cli import main
from platform_infra.infra.version import REPO_ROOT
from tests.conftest import require_tool
from tests.policies.conftest import EXAMPLE

STATUSES = {"fail", "stale", "waived", "enforced", "verified", "provided", "proven", "manual", "not applicable"}


def checklist(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["checklist", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def prod_json():
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["checklist", "--stack", "prod", "--format", "json"])
    return code, json.loads(out.getvalue())


def test_prod_json_contract_every_line_once_and_exit_0(prod_json):
    code, report = prod_json
    assert code == 0
    assert set(report) == {"stack", "environment", "commit", "version", "made_at", "evidence_store", "items",
                           "coverage", "remaining"} and report["stack"] == "prod" and report["environment"] == "prod"
    # The report names the code and the time that made it.
    made = datetime.fromisoformat(report["made_at"])
    assert made.tzinfo is not None and abs((datetime.now(UTC) - made).total_seconds()) < 600
    head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert report["commit"].removesuffix("-dirty") == head and report["version"] == version("platform-infra")
    assert [item["id"] for item in report["items"]] == [item.id for _, item in catalog.load().lines()]
    for item in report["items"]:
        assert set(item) == {"id", "section", "text", "status", "evidence"}
        assert item["status"] in STATUSES and item["evidence"]


def test_coverage_per_section_adds_up_to_overall(prod_json):
    _, report = prod_json
    coverage = report["coverage"]
    sections = {item["section"] for item in report["items"]}
    assert set(coverage) == sections | {"overall"}
    for section in sections:
        items = [i for i in report["items"] if i["section"] == section]
        assert coverage[section] == {
            "covered": sum(i["status"] in {"enforced", "waived", "verified", "provided", "proven"} for i in items),
            "total": len(items),
        }
    assert coverage["overall"]["total"] == len(report["items"])
    assert coverage["overall"]["covered"] == sum(coverage[s]["covered"] for s in sections)


def test_statuses_carry_their_evidence(prod_json):
    _, report = prod_json
    items = {item["id"]: item for item in report["items"]}
    for item in report["items"]:
        kinds = [e["kind"] for e in item["evidence"]]
        if item["status"] == "manual":
            assert "runbook" in kinds, f"{item['id']}: a manual line names its runbook step"
            assert "signoff" in kinds, f"{item['id']}: a manual line names who signs it off"
        if item["status"] == "fail":
            assert "violation" in kinds
        if item["status"] == "provided":
            assert any(e["kind"] == "component" and e["deployed"] for e in item["evidence"])
        if item["status"] == "proven":
            assert any(e["kind"] == "test" and e["proves"] for e in item["evidence"])
    # Rules that ran clean on the stack.
    tls = {e["rule"]: e for e in items["security.tls"]["evidence"] if e["kind"] in ("rule", "violation")}
    assert tls["EDGE-001"] == {"kind": "rule", "rule": "EDGE-001", "result": "pass", "enforcement": "mandatory"}
    # Prod's advisory findings fail their lines without blocking the sign-off.
    digest = [e for e in items["infrastructure.images-tagged"]["evidence"] if e["kind"] == "violation"]
    assert items["infrastructure.images-tagged"]["status"] == "fail"
    assert digest and {e["rule"] for e in digest} == {"IMG-002"} and {e["enforcement"] for e in digest} == {"advisory"}
    # cAdvisor's dated socket waiver is listed with its reason and expiry.
    waivers = [e for e in items["success.security-scan"]["evidence"] if e["kind"] == "waiver"]
    assert [(w["rule"], w["expires"]) for w in waivers] == [("CTR-014", "2027-11-30")] and waivers[0]["reason"]
    assert items["security.intrusion-detection"]["status"] == "manual"
    assert items["monitoring.uptime"]["status"] == "provided"


def test_a_stack_with_mandatory_violations_exits_1_and_shows_them(capsys):
    code, out, _ = checklist(capsys, "--project", str(EXAMPLE), "--stack", "prod", "--format", "json")
    report = json.loads(out)
    assert code == 1
    failing = {item["id"]: item for item in report["items"] if item["status"] == "fail"}
    privileged = [e for e in failing["success.security-scan"]["evidence"]
                  if e["kind"] == "violation" and e["rule"] == "CTR-001"]
    assert privileged and privileged[0]["enforcement"] == "mandatory" and privileged[0]["message"]
    assert "security.tls" in failing
    # This repository's tests prove its own program, not another one.
    assert not [item["id"] for item in report["items"] if item["status"] in ("proven", "provided")]
    assert report["coverage"]["overall"]["covered"] < report["coverage"]["overall"]["total"]


def test_disabled_rules_give_no_verdict(capsys, tmp_path):
    config = tmp_path / "off.json"
    config.write_text('{"all": "disabled"}')
    code, out, _ = checklist(capsys, "--stack", "prod", "--format", "json", "--policy-config", str(config))
    report = json.loads(out)
    assert code == 0
    assert {item["status"] for item in report["items"]} <= {"provided", "proven", "manual", "not applicable"}
    evidence = next(i for i in report["items"] if i["id"] == "security.tls")["evidence"]
    assert {"kind": "rule", "rule": "EDGE-001", "result": "disabled", "detail": "disabled by the policy config"} in evidence


def test_text_and_markdown_show_figures_sections_and_the_sign_off(capsys, prod_json):
    _, report = prod_json
    overall = report["coverage"]["overall"]
    code, text, _ = checklist(capsys, "--stack", "prod")
    assert code == 0
    assert f"{overall['covered']}/{overall['total']} lines covered" in text
    assert "Security Incident Response" in text and "Tech Lead: ____" in text
    code, markdown, _ = checklist(capsys, "--stack", "prod", "--format", "md")
    assert code == 0
    assert "| Role | Name | Signature | Date |" in markdown and "| Product Owner | | | |" in markdown
    assert re.search(r"\| Security \| \d+ \| 14 \| \d+% \|", markdown)


def test_html_report_renders_in_headless_chromium(capsys, tmp_path, prod_json):
    chromium = require_tool("chromium")
    _, report = prod_json
    code, page, _ = checklist(capsys, "--stack", "prod", "--format", "html")
    assert code == 0
    assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//|@import|url\(""", page), "self-contained"
    path = tmp_path / "checklist.html"
    path.write_text(page)
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--dump-dom", path.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    overall = report["coverage"]["overall"]
    assert f'covered: {overall["covered"]} of {overall["total"]} lines' in dom
    assert f'{round(100 * overall["covered"] / overall["total"])}%' in dom
    assert dom.count("<details") == len({item["section"] for item in report["items"]})
    failing = [item["id"] for item in report["items"] if item["status"] == "fail"]
    first_rows = re.findall(r'<tr class="line (\w+)">', dom)[: len(failing)]
    assert first_rows == ["fail"] * len(failing), "failing lines come first"
    assert "Before sign-off:" in dom and "Product Owner" in dom


def test_bad_input_exits_2(capsys, tmp_path):
    code, _, err = checklist(capsys, "--stack", "nosuch")
    assert code == 2 and "nosuch" in err
    code, _, err = checklist(capsys, "--stack", "prod", "--policy-config", str(tmp_path / "missing.json"))
    assert code == 2 and "--policy-config" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["checklist", "--stack", "prod", "--format", "pdf"])
    assert exit_info.value.code == 2


def test_a_line_whose_only_findings_are_waived_is_waived(capsys, tmp_path, prod_json):
    from platform_infra.policies.registry import RULES

    _, report = prod_json
    scan = next(item for item in report["items"] if item["id"] == "success.security-scan")
    failing = {e["rule"] for e in scan["evidence"] if e["kind"] == "violation"}
    config = tmp_path / "prod.json"
    config.write_text(json.dumps({RULES[rule].policy_name: "disabled" for rule in failing}))
    code, out, _ = checklist(capsys, "--stack", "prod", "--format", "json", "--policy-config", str(config))
    scan = next(item for item in json.loads(out)["items"] if item["id"] == "success.security-scan")
    assert code == 0 and scan["status"] == "waived"
    assert [e["rule"] for e in scan["evidence"] if e["kind"] == "waiver"] == ["CTR-014"]


def test_a_rule_not_known_at_preview_does_not_pass_its_line():
    from platform_infra.infra.check import evaluate
    from platform_infra.infra.checklist import build
    from platform_infra.infra.mockrun import SECRET_SIG, SIG_KEY, UNKNOWN, load_project, run_program
    from platform_infra.policies.policy_config import default_path

    run = run_program(load_project(catalog.REPO_ROOT, "prod"), "prod")
    gateway = next(r for r in run.resources if r.name == "api-gateway-1")
    # An encrypted config value as the program sees it under mocks: a secret nobody can read.
    gateway.inputs["envs"].append({SIG_KEY: SECRET_SIG, "value": UNKNOWN})
    lines = {line.id: line for line in build(evaluate(run, default_path("prod"))).lines}
    jwt = lines["security.jwt-secret"]
    assert any(e["kind"] == "unknown" and e["rule"] == "SEC-002" for e in jwt.evidence)
    assert jwt.status == "provided"  # SEC-004 passed, but SEC-002 could not judge: the component is the evidence
    assert lines["configuration.log-levels"].status == "proven"


# --- what proves each line, without evidence and with a full set of fresh records --------------------------------

FIRST_HOUR, SUCCESS = "Immediate (First Hour)", "Success Criteria"
ATTESTED_HOST = {"dmn-001-daemon-evidence": {"enforcementLevel": "advisory", "daemon": {
    "icc": False, "live-restore": True, "userland-proxy": False, "no-new-privileges": True, "experimental": False,
    "userns-remap": "default"}}, "ctr-021-pids-limit": {"enforcementLevel": "advisory", "daemonDefaultPidsLimit": 4096}}
"""What the operator attests of the prod host's /etc/docker/daemon.json (rules DMN-001, CTR-021): hardened."""


@pytest.fixture(scope="module")
def prod_run():
    from platform_infra.infra.mockrun import load_project, run_program

    return run_program(load_project(catalog.REPO_ROOT, "prod"), "prod")


def prod_report(prod_run, tmp_path, attested: bool = False):
    from platform_infra.infra.check import evaluate
    from platform_infra.policies.policy_config import default_path

    if not attested:
        return evaluate(prod_run, default_path("prod"))
    config = json.loads(default_path("prod").read_text())
    config.update(ATTESTED_HOST)
    path = tmp_path / "prod-attested.json"
    path.write_text(json.dumps(config))
    return evaluate(prod_run, path)


def fresh_records(stack: str = "prod", ok: bool = True, age=None) -> list:
    """One record of each kind, as its command writes it: the checks come from verify's and the drills' own code."""
    from datetime import timedelta

    from platform_infra.infra.daytwo import (
        autoscale_review,
        drill_failover,
        drill_load,
        drills,
        evidence,
        verify,
    )

    created = datetime.now(UTC) - (age or timedelta(minutes=5))
    status = "pass" if ok else "fail"

    def record(kind: str, checks: list, on: str = stack) -> evidence.Record:
        return evidence.Record(kind=kind, stack=on, created_at=created, ok=ok, checks=checks)

    alerts = drills.alerts_check({"interrupted": None, "target": "worker-1", "seconds_to_fire": 70 if ok else None,
                                  "delivered_by": ["webhook"], "failed_integrations": [], "seconds_to_deliver": 71,
                                  "seconds_to_resolve": 40, "alert": "ServiceDown", "ok": ok}, 300)
    load = drill_load.load_check(ok, {"by_status": {"200": 500}, "errors": {}, "throughput_per_second": 90,
                                      "p50_ms": 5, "p95_ms": 20, "p99_ms": 40, "answered": 500}, "429s as configured")
    failover = drill_failover.failover_check({"interrupted": None, "faults": [
        {"target": "api-gateway-1", "fault": "kill", "seconds_to_replace": 12}], "accepted": 40, "lost_jobs": [],
        "client_errors": {}, "ok": ok}, 180)
    week = autoscale_review.Review(samples=40320, missing=0, seconds=604800, worker_seconds=1.9e6,
                                   fixed_worker_seconds=1.8e6, above_target_seconds=600,
                                   longest_above_target_seconds=300, at_max_seconds=0, peak_replicas=6,
                                   needed_replicas=6, reversals=1,
                                   suggestions=[] if ok else ["raise max_replicas (6) and the topic's partitions"])
    review = autoscale_review.review_check(week, 604800, "http://prometheus:9090")
    return [
        record("verify", [evidence.Check(id=i, status=status) for i in verify.check_ids("all")]),
        record("drill.alerts", [alerts]), record("drill.load", [load]), record("drill.failover", [failover]),
        record("drill.backup", []), record("backup.restore", []), record("autoscale.review", [review]),
        # The release verified in staging first (`infra verify --stack staging --phase first-hour`).
        record("verify", [evidence.Check(id=i, status=status) for i in verify.check_ids("first-hour")], "staging"),
    ]


NEWLY_PROVEN = {"incident.contain": "proven", "documentation.incident-response": "proven",
                "documentation.troubleshooting": "proven", "metrics.success-rate": "proven"}
"""Lines this repository's tests cover without any run-time evidence."""
BY_RECORD = {"post.hour.logs-aggregated": "verify", "ongoing.dr-drills": "drill.backup",
             "ongoing.backup-verification": "drill.backup", "rollback.restore-database": "backup.restore",
             "incident.recover": "backup.restore", "testing.load": "drill.load", "post.day.failover": "drill.failover",
             "post.hour.alerts-firing": "drill.alerts", "infrastructure.tested-in-staging": "verify",
             "post.week.auto-scaling": "autoscale.review"}
"""Run-time lines and the kind of record that verifies them (besides verify's own lines)."""


def test_every_run_time_line_has_a_command_that_proves_it():
    """A line with a freshness is covered only by a record: one whose checks name it (verify, the drills) or a
    kind of record that proves it. Otherwise nothing could ever cover it."""
    records = fresh_records()
    checked, kinds = {c.id for r in records for c in r.checks}, {r.kind for r in records}
    for _, item in catalog.load().lines():
        if item.freshness:
            assert item.id in checked or set(item.records) & kinds, f"{item.id}: no command writes its proof"


def test_lines_proven_without_evidence_keep_their_proof(prod_json):
    _, report = prod_json
    items = {item["id"]: item for item in report["items"]}
    for line_id, status in NEWLY_PROVEN.items():
        assert items[line_id]["status"] == status, line_id
    # A run-time line is never covered without a record, whatever its tests prove.
    for line_id in BY_RECORD:
        assert items[line_id]["status"] == "manual", line_id
        awaiting = next(e for e in items[line_id]["evidence"] if e["kind"] == "awaiting")
        assert "run `infra" in awaiting["detail"], line_id
    restore = next(e for e in items["incident.recover"]["evidence"] if e["kind"] == "awaiting")
    assert "`infra backup restore`" in restore["detail"]


def test_each_run_time_line_is_verified_by_its_record_and_fails_with_it(prod_run, tmp_path):
    from platform_infra.infra.checklist import build

    report = prod_report(prod_run, tmp_path)
    good = {line.id: line for line in build(report, records=fresh_records()).lines}
    bad = {line.id: line for line in build(report, records=fresh_records(ok=False)).lines}
    for line_id, kind in BY_RECORD.items():
        shown = next(e for e in good[line_id].evidence if e["kind"] == "record")
        assert good[line_id].status == "verified" and shown["record"].endswith(f"-{kind}.json"), line_id
        assert bad[line_id].status == "fail" and bad[line_id].blocking, line_id
    # Only its own kind proves a line: a backup drill restores into a throwaway instance, not the stack's database.
    only_drill = [r for r in fresh_records() if r.kind == "drill.backup"]
    lines = {line.id: line for line in build(report, records=only_drill).lines}
    assert lines["ongoing.dr-drills"].status == "verified" and lines["rollback.restore-database"].status == "manual"
    # Only staging's verify proves the release was tested in staging; prod's own does not.
    prod_only = [r for r in fresh_records() if r.stack == "prod"]
    lines = {line.id: line for line in build(report, records=prod_only).lines}
    assert lines["infrastructure.tested-in-staging"].status == "manual"
    assert lines["post.hour.services-healthy"].status == "verified"


def test_the_checklist_reads_the_staging_stacks_records_for_the_release_tested_there(capsys, tmp_path):
    from platform_infra.infra.daytwo import evidence

    project = tmp_path / "project"
    project.mkdir()
    (project / "stacks").symlink_to(catalog.REPO_ROOT / "stacks")
    for name in ("Pulumi.yaml", "Pulumi.prod.yaml", "Pulumi.staging.yaml"):
        (project / name).write_text((catalog.REPO_ROOT / name).read_text())
    staging = next(r for r in fresh_records() if r.stack == "staging")
    evidence.store_for("staging", None, project).write(staging)
    code, out, _ = checklist(capsys, "--stack", "prod", "--project", str(project), "--format", "json")
    line = next(i for i in json.loads(out)["items"] if i["id"] == "infrastructure.tested-in-staging")
    shown = next(e for e in line["evidence"] if e["kind"] == "record")
    assert code == 0 and line["status"] == "verified" and shown["record"] == staging.name
    assert "stack staging" in shown["detail"]


def test_old_records_are_stale_by_each_lines_freshness(prod_run, tmp_path):
    from datetime import timedelta

    from platform_infra.infra.checklist import build

    report = prod_report(prod_run, tmp_path)
    lines = {line.id: line for line in build(report, records=fresh_records(age=timedelta(days=45))).lines}
    # 45 days: past the monthly backup verification and the alerts drill, within the quarterly drills.
    assert lines["ongoing.backup-verification"].status == "stale"
    assert lines["post.hour.alerts-firing"].status == "stale"
    assert lines["ongoing.dr-drills"].status == "verified" and lines["incident.recover"].status == "verified"


# The figures of docs/VERIFY.md "Coverage": prod as the repository declares it, without evidence and with a full set
# of fresh records; then with the host's daemon.json attested as well.
WITHOUT_EVIDENCE = {"Security": 13, "Configuration": 9, "Infrastructure": 6, "Monitoring & Observability": 8,
                    "Testing": 3, "Documentation": 7, FIRST_HOUR: 0, "First Day": 0, "First Week": 0, "Ongoing": 1,
                    "Rollback Plan": 0, "Key Metrics": 19, "Alerts": 10, "Backup Strategy": 8,
                    "Security Incident Response": 1, SUCCESS: 0}
WITH_RECORDS = {**WITHOUT_EVIDENCE, "Configuration": 10, "Infrastructure": 7, "Testing": 4, FIRST_HOUR: 8,
                "First Day": 5, "First Week": 1, "Ongoing": 3, "Rollback Plan": 1, "Security Incident Response": 2,
                SUCCESS: 7}
ATTESTED = {**WITH_RECORDS, "Infrastructure": 8, SUCCESS: 8}


def covered(checklist) -> dict[str, int]:
    return {section: f["covered"] for section, f in checklist.coverage().items() if section != "overall"}


def test_coverage_per_section_without_evidence_with_records_and_attested(prod_run, tmp_path):
    from platform_infra.infra.checklist import build

    plain, attested = prod_report(prod_run, tmp_path), prod_report(prod_run, tmp_path, attested=True)
    assert covered(build(plain, records=[])) == WITHOUT_EVIDENCE
    verified = build(plain, records=fresh_records())
    assert covered(verified) == WITH_RECORDS
    # Every line of the two sections is verified; the security scan only fails the host attestation's absence.
    lines = {line.id: line for line in verified.lines}
    scan = lines["success.security-scan"]
    assert scan.status == "fail" and {e["rule"] for e in scan.evidence if e["kind"] == "violation"} == {"DMN-001"}
    whole = build(attested, records=fresh_records())
    assert covered(whole) == ATTESTED
    assert whole.coverage()[FIRST_HOUR] == {"covered": 8, "total": 8}
    assert whole.coverage()[SUCCESS] == {"covered": 8, "total": 8}
    assert whole.coverage()["overall"]["covered"] == sum(ATTESTED.values()) == 115
    assert verified.coverage()["overall"]["covered"] == sum(WITH_RECORDS.values()) == 113
    assert build(plain, records=[]).coverage()["overall"]["covered"] == sum(WITHOUT_EVIDENCE.values()) == 85


def test_the_runbook_documents_each_incident_response_step(prod_run):
    """The plan: the six steps of the checklist's incident response, in order, each with what to do (the Docker
    objects it names are the prod stack's), and every incident line of the catalog pointing at a runbook step
    that exists."""
    runbook = (catalog.REPO_ROOT / "docs" / "RUNBOOK.md").read_text()
    section = runbook.split("### Incident response\n", 1)[1].split("\n### ", 1)[0]
    steps = re.findall(r"^(\d)\. \*\*(\w+)\*\*: (.+)$", section, re.MULTILINE)
    lines = [item for section_, item in catalog.load().lines() if section_.name == "Security Incident Response"]
    assert [name for _, name, _ in steps] == [item.text.split(":")[0] for item in lines]
    assert [int(n) for n, _, _ in steps] == list(range(1, len(lines) + 1))
    assert all(len(action.split()) >= 5 for _, _, action in steps)
    anchors = catalog.runbook_anchors()
    for item in lines:
        assert item.runbook in anchors, item.id
    for link in re.findall(r"\]\(#([a-z0-9-]+)\)", section):
        assert f"docs/RUNBOOK.md#{link}" in anchors, link
    objects = {r.name for r in prod_run.resources} | {str(r.inputs.get("name")) for r in prod_run.resources}
    named = re.findall(r"\b(orchestration-prod-[a-z-]+)\b(?!<)", section)
    assert named and all(name in objects for name in named), named


def test_the_runbooks_troubleshooting_guide_points_at_real_steps_and_objects(prod_run):
    """Each entry of the guide: its links lead to runbook steps that exist, the containers and networks it names
    are the prod stack's, and so are the environment variables and files it tells to look at."""
    from tests.helpers import CONTAINER, reveal

    runbook = (catalog.REPO_ROOT / "docs" / "RUNBOOK.md").read_text()
    section = runbook.split("### Troubleshooting\n", 1)[1].split("\n## ", 1)[0]
    entries = re.findall(r"^- \*\*(.+?)\*\*: (.+?)(?=^- |\Z)", section, re.MULTILINE | re.DOTALL)
    assert len(entries) >= 5
    anchors = catalog.runbook_anchors()
    for link in re.findall(r"\]\(#([a-z0-9-]+)\)", section):
        assert f"docs/RUNBOOK.md#{link}" in anchors, link
    containers = [reveal(r.inputs) for r in prod_run.resources if r.type == CONTAINER]
    names = {c["name"] for c in containers}
    for name in re.findall(r"\b(orchestration-prod-[a-z-]+)\b", section):
        assert name in names, name
    envs = {e.split("=", 1)[0] for c in containers for e in c.get("envs", []) if isinstance(e, str)}
    for variable in re.findall(r"`([A-Z][A-Z_]+)`", section):
        assert variable in envs, variable
    uploads = {u.get("file", "").rsplit("/", 1)[-1] for c in containers for u in c.get("uploads", [])}
    for file_name in re.findall(r"`([a-z]+\.[a-z]+)`\s+file", section):
        assert file_name in uploads, file_name
