"""Evidence records in their two stores (a directory; an S3 bucket, moto's, under `evidence/<stack>/`), the
checklist statuses they give (verified, stale, fail; a run-time line without one never covered; not
applicable; the dev title), and the prod gate (EVD-001/EVD-002) judged by `infra check` as preview does."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from platform_infra.infra import catalog
from platform_infra.infra.cli import main
from platform_infra.infra.daytwo import evidence, gate

NOW = datetime.now(UTC)


def record(kind: str, ok: bool = True, age: timedelta = timedelta(0), stack: str = "dev", checks=()):
    return evidence.Record(kind=kind, stack=stack, created_at=NOW - age, ok=ok,
                           checks=[evidence.Check(**c) for c in checks])


def backup_check(incr_age: float, status: str = "pass") -> dict:
    return {"id": "success.backup-job", "status": status, "value": {"incr": incr_age, "full": 60, "clickhouse": 60},
            "threshold": {"incr": 7200, "full": 93600, "clickhouse": 691200}}


# --- stores ----------------------------------------------------------------------------------------------------


def test_directory_store_round_trip_and_bad_records(tmp_path):
    store = evidence.DirectoryStore(tmp_path / "ev")
    assert store.records() == []
    first = record("verify", checks=[backup_check(10)])
    path = store.write(first)
    assert path.endswith(first.name) and first.name.endswith("-verify.json")
    assert store.records() == [first]
    (tmp_path / "ev" / "broken.json").write_text("{")
    with pytest.raises(evidence.EvidenceError, match="broken.json"):
        store.records()


def test_bucket_store_round_trip_under_evidence_prefix():
    boto3 = pytest.importorskip("boto3")
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="evidence-test")
        store = evidence.BucketStore("evidence-test", "evidence/prod/", client)
        written = store.write(record("drill.backup", stack="prod"))
        assert written.startswith("s3://evidence-test/evidence/prod/")
        assert [r.kind for r in store.records()] == ["drill.backup"]
        assert evidence.BucketStore("missing", "evidence/prod/", client).location == "s3://missing/evidence/prod/"
        with pytest.raises(evidence.EvidenceError, match="s3://missing"):
            evidence.BucketStore("missing", "evidence/prod/", client).records()


def test_the_stack_decides_the_store(tmp_path):
    assert evidence.store_for("prod", "orchestration-prod-backups", tmp_path).location == \
        "s3://orchestration-prod-backups/evidence/prod/"
    assert evidence.store_for("dev", None, tmp_path).location == str(tmp_path / ".evidence" / "dev")


def test_newest_judged_check_per_line_ignores_unknown_and_other_stacks():
    older = record("verify", age=timedelta(hours=2), checks=[{"id": "success.no-5xx", "status": "pass"}])
    newer = record("verify", checks=[{"id": "success.no-5xx", "status": "unknown"}])
    other = record("verify", stack="prod", checks=[{"id": "success.no-5xx", "status": "fail"}])
    from platform_infra.infra.checklist import newest_by_line

    found = newest_by_line([newer, older, other], "dev")
    assert found["success.no-5xx"][0] is older


# --- the checklist reads them ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dev_report():
    from platform_infra.infra.check import evaluate
    from platform_infra.infra.mockrun import load_project, run_program
    from platform_infra.policies.policy_config import default_path

    return evaluate(run_program(load_project(catalog.REPO_ROOT, "dev"), "dev"), default_path("dev"))


def test_runtime_lines_verified_stale_fail_or_awaiting(dev_report):
    from platform_infra.infra.checklist import build

    records = [
        record("verify", age=timedelta(hours=3), checks=[
            {"id": "post.hour.metrics-collected", "status": "pass"},
            {"id": "success.no-5xx", "status": "fail", "evidence": "3 5xx answers"},
            {"id": "success.p95-latency", "status": "unknown"}]),
        record("verify", age=timedelta(days=3), checks=[{"id": "post.hour.sample-job", "status": "pass"}]),
    ]
    lines = {line.id: line for line in build(dev_report, records=records).lines}
    verified = lines["post.hour.metrics-collected"]
    assert verified.status == "verified"
    shown = next(e for e in verified.evidence if e["kind"] == "record")
    assert shown["record"] == records[0].name and shown["date"].startswith(records[0].created_at.isoformat()[:16])
    assert lines["post.hour.sample-job"].status == "stale"  # 3 days old, fresh for 1d
    assert lines["success.no-5xx"].status == "fail" and lines["success.no-5xx"].blocking
    # No judged record: a run-time line is never covered by configuration (CTR-023 runs clean on dev).
    for line_id in ("success.p95-latency", "post.hour.services-healthy", "success.health-checks"):
        assert lines[line_id].status == "manual", line_id
        assert any(e["kind"] == "awaiting" for e in lines[line_id].evidence)
    checklist = build(dev_report, records=records)
    assert checklist.remaining()["failing"] >= 1 and checklist.remaining()["stale"] == 1


def test_first_hour_and_success_criteria_whole_on_a_verified_stack():
    from platform_infra.infra.check import evaluate
    from platform_infra.infra.checklist import COVERED, build
    from platform_infra.infra.mockrun import load_project, run_program
    from platform_infra.policies.policy_config import default_path

    prod = evaluate(run_program(load_project(catalog.REPO_ROOT, "prod"), "prod"), default_path("prod"))
    ids = [i.id for s, i in catalog.load().lines() if s.name in ("Immediate (First Hour)", "Success Criteria")]
    records = [record("verify", stack="prod", checks=[{"id": i, "status": "pass"} for i in ids])]
    checklist = build(prod, records=records)
    assert checklist.coverage()["Immediate (First Hour)"] == {"covered": 8, "total": 8}
    lines = {line.id: line for line in checklist.lines}
    # The security scan line stays its rules' verdict (prod's advisory findings fail it, not blocking).
    assert [i for i in ids if lines[i].status not in COVERED] == ["success.security-scan"]
    assert not lines["success.security-scan"].blocking


def test_a_rule_with_nothing_to_judge_is_not_a_pass(dev_report):
    from platform_infra.infra.checklist import _rule_evidence

    evidence_, verdict = _rule_evidence(dev_report, "SWM-002")  # a Swarm rule on a Docker-runtime stack
    assert verdict == "nothing" and evidence_[0]["result"] == "nothing to judge"


def test_dev_is_not_called_the_production_checklist(capsys):
    code = main(["checklist", "--stack", "dev"])
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert "dev: not the production sign-off" in first and not first.startswith("Production")
    assert "commit" in out.splitlines()[1] and "made" in out.splitlines()[1]
    assert "Before sign-off:" in out
    del code


# --- the prod gate ----------------------------------------------------------------------------------------------


def gate_violations(capsys, tmp_path, directory) -> tuple[list[str], list[dict]]:
    config = tmp_path / "policy.json"
    config.write_text(json.dumps({"evd-001-evidence-gate": {"enforcementLevel": "mandatory",
                                                            "evidence_dir": str(directory)}}))
    main(["check", "--stack", "dev", "--policy-config", str(config), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    return ([v["message"] for v in report["violations"] if v["rule"] == "EVD-001"],
            [u for u in report["unknown"] if u["rule"] == "EVD-001"])


def test_gate_passes_with_a_recent_drill_and_fresh_backups(capsys, tmp_path):
    store = evidence.DirectoryStore(tmp_path / "ev")
    store.write(record("drill.backup", age=timedelta(days=10)))
    store.write(record("verify", age=timedelta(minutes=5), checks=[backup_check(600)]))
    assert gate_violations(capsys, tmp_path, store.directory) == ([], [])


def test_gate_fails_an_old_drill_and_a_stale_backup(capsys, tmp_path):
    store = evidence.DirectoryStore(tmp_path / "ev")
    store.write(record("drill.backup", age=timedelta(days=91)))
    store.write(record("drill.backup", ok=False, age=timedelta(days=1)))  # a failed drill proves nothing
    # 6000 s old when measured, an hour ago: 9600 s now, past the 7200 s max age.
    store.write(record("verify", age=timedelta(hours=1), checks=[backup_check(6000)]))
    violations, _ = gate_violations(capsys, tmp_path, store.directory)
    assert len(violations) == 2
    assert "older than 90d" in violations[0] and "stale" in violations[1] and "incr" in violations[1]


def test_gate_fails_without_evidence_and_is_unknown_when_unreadable(capsys, tmp_path):
    violations, _ = gate_violations(capsys, tmp_path, tmp_path / "empty")
    assert any("no successful backup drill" in v for v in violations)
    assert any("no record of the newest backups" in v for v in violations)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.json").write_text("not json")
    violations, unknown = gate_violations(capsys, tmp_path, tmp_path / "bad")
    assert violations == [] and unknown and "cannot be read" in unknown[0]["message"]


def test_waivers_expired_fail_and_expiring_within_14_days_are_listed():
    today = date(2026, 12, 6)
    verdict = gate.waiver_dates([("CTR-014 on cadvisor", "2026-12-01"), ("CTR-001 on x", "2026-12-15"),
                                 ("CTR-002 on y", "2027-03-01"), ("CTR-003 on z", "2026-12-20")], today)
    assert verdict.failures == ["waiver CTR-014 on cadvisor expired on 2026-12-01"]
    assert verdict.expiring == ["waiver CTR-001 on x expires on 2026-12-15", "waiver CTR-003 on z expires on 2026-12-20"]


def test_expiring_waiver_listed_by_evd_002_on_a_stack(capsys, tmp_path):
    """prod's cAdvisor waiver (its docker_socket_accepted_until) set 7 days out: EVD-002 lists it."""
    import yaml

    project = tmp_path / "project"
    project.mkdir()
    (project / "stacks").symlink_to(catalog.REPO_ROOT / "stacks")
    (project / "Pulumi.yaml").write_text((catalog.REPO_ROOT / "Pulumi.yaml").read_text())
    stack = yaml.safe_load((catalog.REPO_ROOT / "Pulumi.prod.yaml").read_text())
    soon = (date.today() + timedelta(days=7)).isoformat()
    stack["config"]["platform:settings"]["container_metrics"]["docker_socket_accepted_until"] = soon
    (project / "Pulumi.prod.yaml").write_text(yaml.safe_dump(stack))
    main(["check", "--stack", "prod", "--project", str(project), "--policy-config",
          str(catalog.REPO_ROOT / "policies" / "config" / "prod.json"), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    listed = [v["message"] for v in report["violations"] if v["rule"] == "EVD-002"]
    assert listed == [f"waiver CTR-014 on {listed[0].split(' on ')[1].split(' expires')[0]} expires on {soon}"]
    assert {v["enforcement"] for v in report["violations"] if v["rule"] == "EVD-002"} == {"advisory"}


def prod_with_cadvisor_waiver_until(tmp_path, until: str):
    """This repository's prod stack with cAdvisor's socket waiver (its docker_socket_accepted_until) moved."""
    import yaml

    project = tmp_path / "project"
    project.mkdir()
    (project / "stacks").symlink_to(catalog.REPO_ROOT / "stacks")
    (project / "Pulumi.yaml").write_text((catalog.REPO_ROOT / "Pulumi.yaml").read_text())
    stack = yaml.safe_load((catalog.REPO_ROOT / "Pulumi.prod.yaml").read_text())
    stack["config"]["platform:settings"]["container_metrics"]["docker_socket_accepted_until"] = until
    (project / "Pulumi.prod.yaml").write_text(yaml.safe_dump(stack))
    return project


def prod_check(capsys, project, monkeypatch) -> dict:
    # No AWS credential anywhere: the stack's evidence bucket cannot be read.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(project / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(project / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    main(["check", "--stack", "prod", "--project", str(project), "--policy-config",
          str(catalog.REPO_ROOT / "policies" / "config" / "prod.json"), "--format", "json"])
    return json.loads(capsys.readouterr().out)


def test_gate_fails_an_expired_waiver_even_when_the_store_is_unreadable(capsys, tmp_path, monkeypatch):
    """CTR-014 is waived for cAdvisor until yesterday: EVD-001 (mandatory in prod) fails on it, and is also
    unknown, not passed, on the store it cannot read."""
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    report = prod_check(capsys, prod_with_cadvisor_waiver_until(tmp_path, yesterday), monkeypatch)
    gate_findings = [v for v in report["violations"] if v["rule"] == "EVD-001"]
    assert [v["message"] for v in gate_findings] == [
        f"waiver CTR-014 on {gate_findings[0]['message'].split(' on ')[1].split(' expired')[0]} expired on {yesterday}"]
    assert gate_findings[0]["enforcement"] == "mandatory"
    unknown = [u for u in report["unknown"] if u["rule"] == "EVD-001"]
    assert unknown and "the evidence store cannot be read" in unknown[0]["message"]
    assert "s3://orchestration-prod-backups/evidence/prod/" in unknown[0]["message"]


def test_gate_is_unknown_not_a_pass_when_the_stacks_bucket_cannot_be_read(capsys, tmp_path, monkeypatch):
    later = (date.today() + timedelta(days=200)).isoformat()
    report = prod_check(capsys, prod_with_cadvisor_waiver_until(tmp_path, later), monkeypatch)
    assert not [v for v in report["violations"] if v["rule"] == "EVD-001"]
    unknown = [u for u in report["unknown"] if u["rule"] == "EVD-001"]
    assert len(unknown) == 1 and "cannot be read" in unknown[0]["message"]
