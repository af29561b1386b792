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
