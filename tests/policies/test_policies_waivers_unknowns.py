"""Waivers (label and config; valid, expired, refused) and values not known at preview."""

from __future__ import annotations

import datetime
import json
import xml.etree.ElementTree as ET

import pytest

from platform_infra.infra.check import evaluate, render
from platform_infra.infra.mockrun import UNKNOWN, load_project, run_program
from platform_infra.policies import waivers
from platform_infra.policies.policy_config import PolicyConfigError, resolve
from tests.policies.conftest import EXAMPLE, REPO_ROOT, as_run, ids, messages, named
from tests.policies.fixtures import secret, secure_stack
from tests.policies.test_policies_cli import run_cli, write_program

FUTURE = (datetime.date.today() + datetime.timedelta(days=30)).isoformat()
"""Within every rule's waiver horizon (platform_infra.policies.waivers.MAX_WAIVER_DAYS)."""
PAST = "2001-01-01"


def privileged_api(waiver: str | None = None):
    def mutate(rs):
        api = named(rs, "api-gateway")
        api.inputs["privileged"] = True
        if waiver is not None:
            api.inputs["labels"].append({"label": "platform.waiver.CTR-001", "value": waiver})

    return mutate


def test_label_waiver_suppresses_the_rule_and_stays_listed(check):
    report = check(mutate=privileged_api(f"reason=needs /dev/kvm for the sandbox;expires={FUTURE}"))
    assert "CTR-001" not in ids(report)
    assert report.waived == [
        {
            "rule": "CTR-001",
            "source": "label platform.waiver.CTR-001",
            "reason": "needs /dev/kvm for the sandbox",
            "expires": FUTURE,
            "findings": ["privileged is true"],
            "resource": named(secure_stack(), "api-gateway").urn,
        }
    ]
    assert not report.failed


def test_expired_waiver_is_a_violation_again(check):
    report = check(mutate=privileged_api(f"reason=temporary;expires={PAST}"))
    assert messages(report, "CTR-001") == [
        f"api-gateway: privileged is true (waiver expired {PAST}: temporary)"
    ]
    assert report.waived == [] and report.failed


@pytest.mark.parametrize(
    ("label", "problem"),
    [
        (f"expires={FUTURE}", "it has no reason (reason=...)"),
        (f"reason=  ;expires={FUTURE}", "it has no reason (reason=...)"),
        ("reason=forever", "it has no valid expiry date (expires=YYYY-MM-DD)"),
    ],
)
def test_waiver_without_reason_or_expiry_is_refused(check, label, problem):
    report = check(mutate=privileged_api(label))
    found = messages(report, "CTR-001")
    assert f"api-gateway: waiver for CTR-001 (label platform.waiver.CTR-001) refused: {problem}" in found
    assert "api-gateway: privileged is true" in found
    assert report.waived == [] and report.failed


def test_config_waiver_matches_names_by_glob(check):
    config = {
        "ctr-001-no-privileged": {
            "waivers": [{"resource": "api-*", "reason": "vendor appliance", "expires": FUTURE}]
        }
    }
    report = check(mutate=privileged_api(), config=config)
    assert "CTR-001" not in ids(report)
    assert [(w["rule"], w["source"], w["reason"]) for w in report.waived] == [
        ("CTR-001", "policy config", "vendor appliance")
    ]


def test_config_waiver_without_reason_is_rejected_as_bad_config():
    with pytest.raises(PolicyConfigError, match=r"ctr-001-no-privileged\.waivers\.0"):
        resolve({"ctr-001-no-privileged": {"waivers": [{"resource": "x", "expires": FUTURE}]}}, "test")


def test_unused_waiver_is_still_listed(check):
    report = check(
        mutate=lambda rs: (
            named(rs, "api-gateway")
            .inputs["labels"]
            .append(
                {"label": "platform.waiver.CTR-001", "value": f"reason=kept for rollback;expires={FUTURE}"}
            )
        )
    )
    assert [(w["rule"], w["findings"]) for w in report.waived] == [("CTR-001", [])]


def test_stack_rule_findings_can_be_waived_per_resource(check):
    def mutate(rs):
        rs.remove(named(rs, "postgres-backup"))
        rs.remove(named(rs, "clickhouse-backup"))
        named(rs, "postgres").inputs["labels"].append(
            {"label": "platform.waiver.BAK-001", "value": f"reason=managed snapshots;expires={FUTURE}"}
        )

    report = check(mutate=mutate)
    assert messages(report, "BAK-001") == ["clickhouse: clickhouse clickhouse has no backup job"]
    assert [(w["rule"], w["resource"].rsplit("::", 1)[-1], w["findings"]) for w in report.waived] == [
        ("BAK-001", "postgres", ["postgres postgres has no backup job"])
    ]


def test_waivers_show_in_every_format(check):
    report = check(mutate=privileged_api(f"reason=needs kvm;expires={FUTURE}"))
    assert "Waived (1):\n    CTR-001  (api-gateway: docker:index/container:Container)  needs kvm" in render(
        report, "text"
    )
    assert json.loads(render(report, "json"))["summary"]["waived"] == 1
    sarif = json.loads(render(report, "sarif"))
    suppressed = [r for r in sarif["runs"][0]["results"] if "suppressions" in r]
    assert [(r["ruleId"], r["suppressions"][0]["justification"]) for r in suppressed] == [
        ("CTR-001", f"needs kvm (until {FUTURE}, label platform.waiver.CTR-001)")
    ]
    junit = ET.fromstring(render(report, "junit"))
    skipped = [c for c in junit.iter("testcase") if c.find("skipped") is not None]
    assert [c.get("classname") for c in skipped] == ["CTR-001"]


def test_unknown_value_is_reported_not_passed(check):
    report = check(mutate=lambda rs: named(rs, "api-gateway").inputs.update(user=UNKNOWN))
    assert "CTR-004" not in ids(report)
    assert {(u["rule"], u["resource"].rsplit("::", 1)[-1], u["failClosed"]) for u in report.unknown} == {
        ("CTR-004", "api-gateway", False)
    }
    assert report.unknown[0]["message"] == "string value at .user can't be known during preview"
    assert report.summary()["unknown"] == 1
    assert "Not known at preview (1):" in render(report, "text")
    sarif_results = json.loads(render(report, "sarif"))["runs"][0]["results"]
    assert [(r["ruleId"], r["kind"], r["level"]) for r in sarif_results] == [("CTR-004", "review", "none")]
    junit = ET.fromstring(render(report, "junit"))
    assert junit.get("skipped") == "1"


def test_fail_closed_rule_turns_an_unknown_into_a_violation(check):
    report = check(mutate=lambda rs: named(rs, "api-gateway").inputs.update(privileged=UNKNOWN))
    assert messages(report, "CTR-001") == [
        (
            "api-gateway: [unknown] string value at .privileged can't be known during preview; "
            "CTR-001 fails closed on values not known at preview"
        )
    ]
    assert [v["enforcement"] for v in report.violations] == ["mandatory"]
    assert [(u["rule"], u["failClosed"]) for u in report.unknown] == [("CTR-001", True)]
    assert report.failed


def test_unknown_inside_a_secret_env_entry(check):
    # As mockrun renders an encrypted config value: a secret whose value is not known.
    report = check(mutate=lambda rs: named(rs, "api-gateway").inputs["envs"].append(secret(UNKNOWN)))
    assert {"SEC-002", "SEC-003", "CFG-001"} <= {u["rule"] for u in report.unknown}
    assert not {"SEC-002", "SEC-003", "CFG-001"} & ids(report)


def test_unknown_from_an_encrypted_config_value_through_the_cli(tmp_path, capsys):
    project = write_program(
        tmp_path / "u",
        (
            'jwt = pulumi.Config().require_secret("jwtSecret")\n'
            'docker.Container("api", image="sha256:'
            + "0" * 64
            + '", envs=[jwt.apply(lambda v: "JWT_SECRET=" + v)])\n'
        ),
        config="config:\n  tiny:jwtSecret:\n    secure: v1:AAAA\n",
    )
    code, out, _ = run_cli(capsys, "--project", str(project), "--stack", "prod", "--format", "json")
    report = json.loads(out)
    assert "SEC-002" in {u["rule"] for u in report["unknown"]}
    assert report["summary"]["unknown"] == len(report["unknown"]) > 0
    assert "SEC-002" not in {v["rule"] for v in report["violations"]}
    assert code == 1  # the container breaks mandatory rules regardless


def test_scoped_routing_gives_the_same_result_as_offering_every_policy():
    run = run_program(load_project(EXAMPLE, "prod"), "prod")
    split = evaluate(run, None)
    whole = evaluate(run, None, split_by_type=False)
    assert split.violations == whole.violations
    assert split.unknown == whole.unknown and split.waived == whole.waived

    resources = secure_stack()
    named(resources, "api-gateway").inputs.update(user=UNKNOWN, privileged=True)
    named(resources, "nginx").inputs["labels"] = [{"label": "platform.role", "value": UNKNOWN}]
    run = as_run(resources)
    split, whole = evaluate(run, None), evaluate(run, None, split_by_type=False)
    assert {"CTR-001", "CTR-004"} <= ids(split) | {u["rule"] for u in split.unknown}
    assert split.violations == whole.violations and split.unknown == whole.unknown


def test_waiver_for_a_rule_out_of_scope_is_ignored_both_ways():
    resources = secure_stack()
    named(resources, "api-gateway").inputs["labels"].append(
        {"label": "platform.waiver.DS-PG-001", "value": f"reason=not a database;expires={FUTURE}"})
    run = as_run(resources)
    assert evaluate(run, None).waived == evaluate(run, None, split_by_type=False).waived == []


def _in_days(days: int) -> str:
    return (datetime.date.today() + datetime.timedelta(days=days)).isoformat()


@pytest.mark.parametrize(
    ("rule_id", "policy", "mutate", "severity", "days"),
    [
        ("CTR-001", "ctr-001-no-privileged", privileged_api(), "critical", 365),
        ("CTR-005", "ctr-005-read-only-rootfs", lambda rs: named(rs, "api-gateway").inputs.update(readOnly=False),
         "medium", 730),
        ("CTR-018", "ctr-018-default-cgroup", lambda rs: named(rs, "api-gateway").inputs.update(cgroupParent="/custom"),
         "low", 730),
    ],
)
def test_a_waiver_beyond_its_severitys_horizon_is_refused_in_label_and_config(
    check, rule_id, policy, mutate, severity, days
):
    limit = f"beyond the {days} days a {severity} rule may be waived (at most {_in_days(days)})"

    def labelled(until: str):
        def apply(rs):
            mutate(rs)
            named(rs, "api-gateway").inputs["labels"].append(
                {"label": f"platform.waiver.{rule_id}", "value": f"reason=for ever;expires={until}"})
        return apply

    for until in ("2099-12-31", _in_days(days + 1)):
        refused = check(mutate=labelled(until))
        assert any(f"refused: it expires {until}, {limit}" in m for m in messages(refused, rule_id))
        assert refused.waived == []
        config = {policy: {"waivers": [{"resource": "api-gateway", "reason": "for ever", "expires": until}]}}
        refused = check(mutate=mutate, config=config)
        assert any(f"(policy config) refused: it expires {until}" in m for m in messages(refused, rule_id))
        assert refused.waived == []
    at_the_limit = check(mutate=labelled(_in_days(days)))
    assert rule_id not in ids(at_the_limit) and [w["rule"] for w in at_the_limit.waived] == [rule_id]


def trusting_hba(rs):
    upload = next(u for u in named(rs, "postgres").inputs["uploads"] if u["file"].endswith("pg_hba.conf"))
    upload["content"] = upload["content"].replace("peer", "trust")


def test_a_rule_no_label_waives_takes_only_a_config_waiver_with_an_approver(check):
    def labelled(rs):
        trusting_hba(rs)
        named(rs, "postgres").inputs["labels"].append(
            {"label": "platform.waiver.DS-PG-003", "value": f"reason=lab;expires={FUTURE}"})

    by_label = check(mutate=labelled)
    assert "postgres: waiver for DS-PG-003 (label platform.waiver.DS-PG-003) refused: no label waives this rule; " \
           "only its policy config does, with an approver" in messages(by_label, "DS-PG-003")
    assert by_label.waived == [] and by_label.failed

    entry = {"resource": "postgres", "reason": "lab", "expires": FUTURE}
    unapproved = check(mutate=trusting_hba, config={"ds-pg-003-postgres-hba-no-trust": {"waivers": [entry]}})
    assert "postgres: waiver for DS-PG-003 (policy config) refused: it has no approver (approver: who accepted it)" \
        in messages(unapproved, "DS-PG-003")
    assert unapproved.waived == [] and unapproved.failed

    approved = check(mutate=trusting_hba,
                     config={"ds-pg-003-postgres-hba-no-trust": {"waivers": [{**entry, "approver": "security team"}]}})
    assert "DS-PG-003" not in ids(approved) and not approved.failed
    assert [(w["rule"], w["source"], w["approver"]) for w in approved.waived] == [
        ("DS-PG-003", "policy config", "security team")]


def test_label_waivable_rules_need_no_approver(check):
    config = {"ctr-001-no-privileged": {"waivers": [{"resource": "api-gateway", "reason": "kvm", "expires": FUTURE}]}}
    report = check(mutate=privileged_api(), config=config)
    assert "CTR-001" not in ids(report) and "approver" not in report.waived[0]


def test_every_rule_guarding_a_weakening_of_issue_20_is_config_waivable_only():
    from platform_infra.policies.registry import RULES, all_rules

    all_rules()
    for rule_id in ("DS-PG-003", "DS-REDIS-002", "MON-GRAF-002", "MON-PROM-002", "SEC-005"):
        assert not RULES[rule_id].label_waivable, rule_id
    assert RULES["CTR-014"].label_waivable  # the stack's own dated socket waivers are labels


def test_the_documented_horizons_are_the_ones_applied():
    text = (REPO_ROOT / "docs" / "policies.md").read_text()
    assert "365 days from the day it\nis checked for a critical or high rule, 730 for a medium or low one" in text
    assert waivers.MAX_WAIVER_DAYS == {"critical": 365, "high": 365, "medium": 730, "low": 730}
