"""The pack as the engine loads it, its metadata, the per-environment config files and the generated docs."""

from __future__ import annotations

import json
import re
import runpy

import jsonschema
import pytest
import yaml
from pulumi.runtime import proto
from pulumi_policy import EnforcementLevel
from pulumi_policy import policy as sdk_policy
from pulumi_policy.policy import _PolicyAnalyzerServicer

from platform_infra.policies import docs
from platform_infra.policies.pack import PACK_DIR, build_policies, pack_arguments
from platform_infra.policies.policy_config import CONFIG_DIR, file_schema, read, resolve
from platform_infra.policies.registry import ENVIRONMENTS, all_rules, enforced_rules


def test_importing_the_pack_entry_point_builds_nothing(monkeypatch):
    built = []
    monkeypatch.setattr("pulumi_policy.PolicyPack", lambda **kwargs: built.append(kwargs))
    runpy.run_path(str(PACK_DIR / "__main__.py"), run_name="policies_main_imported")
    assert built == []


def test_pack_constructs_and_serves_under_the_engine_entry(monkeypatch, capfdbinary):
    """Run the pack as the analyzer host does (`runpy.run_path(<dir>, run_name="__main__")`) with the real
    PolicyPack: its gRPC server starts on a loopback port, then the forever-sleep is interrupted."""
    servicers = []
    original_add = sdk_policy.analyzer_pb2_grpc.add_AnalyzerServicer_to_server
    monkeypatch.setattr(
        sdk_policy.analyzer_pb2_grpc,
        "add_AnalyzerServicer_to_server",
        lambda servicer, server: (servicers.append(servicer), original_add(servicer, server)),
    )

    def interrupt(_seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(sdk_policy.time, "sleep", interrupt)
    runpy.run_path(str(PACK_DIR), run_name="__main__")
    assert re.fullmatch(rb"\d+\n", capfdbinary.readouterr().out)  # the port the engine reads
    info = servicers[0].GetAnalyzerInfo(None, None)
    assert info.name == "platform-production-checklist"
    assert len(info.policies) == len(enforced_rules())


def analyzer_info():
    args = pack_arguments()
    servicer = _PolicyAnalyzerServicer(args["name"], "0.1.0", args["policies"], args["enforcement_level"])
    return servicer.GetAnalyzerInfo(None, None)


def test_policy_metadata_as_the_engine_sees_it():
    info = analyzer_info()
    by_name = {p.name: p for p in info.policies}
    assert len(by_name) == len(info.policies)
    for rule in enforced_rules():
        policy = by_name[rule.policy_name]
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]{1,99}", policy.name) and policy.name != "all"
        assert policy.description.startswith(f"[{rule.id}] ") and policy.description.endswith(".")
        assert policy.severity != proto.POLICY_SEVERITY_UNSPECIFIED
        assert policy.enforcementLevel == (proto.MANDATORY if rule.prod == "mandatory" else proto.ADVISORY)
        assert policy.remediation_steps and policy.url.endswith(f"#{rule.anchor}")
        assert policy.framework.name == "production-checklist" and policy.framework.specification
        assert rule.id in policy.tags
        expected_type = proto.POLICY_TYPE_RESOURCE if rule.per_resource else proto.POLICY_TYPE_STACK
        assert policy.policy_type == expected_type
        assert "waivers" in policy.configSchema.properties


def test_registry_is_complete_and_consistent():
    rules = all_rules()
    assert len({r.id for r in rules}) == len(rules)
    for rule in rules:
        assert re.fullmatch(r"[A-Z]+(-[A-Z]+)?-\d{3}", rule.id)
        assert rule.checklist and rule.sources and rule.remediation and rule.description.endswith(".")
        if rule.kind == "not-enforceable" or rule.kind == "evidence":
            assert rule.reason, f"{rule.id} must say why it is not a plain policy"
        if rule.kind == "resource":
            assert rule.types and rule.check is not None
        for schema in rule.options.values():
            jsonschema.Draft7Validator.check_schema(schema)
            jsonschema.validate(schema["default"], schema)
    assert {r.id for r in rules if r.kind == "not-enforceable"} >= {"CTR-013", "IMG-005", "VAL-001"}


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_config_files_validate_and_match_the_registry(environment):
    path = CONFIG_DIR / f"{environment}.json"
    raw = read(path)
    jsonschema.Draft7Validator(file_schema()).validate(raw)
    resolved = resolve(raw, str(path))
    for rule in enforced_rules():
        assert resolved[rule.policy_name][0] == rule.enforcement(environment), rule.id
    mandatory = sum(1 for level, _ in resolved.values() if level == "mandatory")
    assert (mandatory > 40) if environment == "prod" else (mandatory == 0)


def test_file_schema_rejects_what_the_engine_would():
    validator = jsonschema.Draft7Validator(file_schema())
    assert list(validator.iter_errors({"ctr-001-no-privileged": "blocking"}))
    assert list(validator.iter_errors({"no-such-rule": "advisory"}))
    assert list(validator.iter_errors({"sec-004-generated-secret-strength": {"minLength": "long"}}))
    assert not list(
        validator.iter_errors(
            {
                "all": "advisory",
                "sec-004-generated-secret-strength": {"enforcementLevel": "mandatory", "minLength": 24},
            }
        )
    )


def test_all_sets_every_level_and_entries_override_it():
    resolved = resolve({"all": "disabled", "ctr-001-no-privileged": "mandatory"}, "test")
    assert resolved["ctr-001-no-privileged"][0] == "mandatory"
    assert {level for name, (level, _) in resolved.items() if name != "ctr-001-no-privileged"} == {"disabled"}


def test_disabled_policy_does_not_run(check):
    from tests.policies.conftest import ids, named

    report = check(
        mutate=lambda rs: named(rs, "api-gateway").inputs.update(privileged=True),
        config={"ctr-001-no-privileged": "disabled"},
    )
    assert "CTR-001" not in ids(report)


def test_generated_docs_and_config_levels_are_current():
    assert docs.main(["--check"]) == 0, "run `python -m platform_infra.policies.docs`"
    text = docs.DOCS_FILE.read_text()
    for rule in all_rules():
        assert f"| [{rule.id}](#{rule.anchor}) | " in text
        assert f'<a id="{rule.anchor}"></a>' in text


def test_pack_project_files():
    project = yaml.safe_load((PACK_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python" and project["version"]
    requirements = (PACK_DIR / "requirements.txt").read_text().splitlines()
    assert "pulumi-policy>=1.21,<1.22" in requirements and "-e .." in requirements


def test_every_policy_object_is_a_sdk_policy_with_a_prod_default():
    policies = build_policies()
    levels = {p.name: p.enforcement_level for p in policies}
    assert levels["ctr-001-no-privileged"] == EnforcementLevel.MANDATORY
    assert levels["img-002-digest-pinned"] == EnforcementLevel.ADVISORY
    assert json.dumps(sorted(levels)) == json.dumps(sorted(r.policy_name for r in enforced_rules()))
