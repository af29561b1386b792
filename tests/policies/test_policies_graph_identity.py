"""Plain programs, written as pulumi-docker's docs show (`image=remote.image_id`), are judged by what they
run: a workload's identity is followed through the resource graph to the image it came from, and an image
not known at preview is reported as unknown, never passed."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from platform_infra.infra.check import evaluate, load_state
from platform_infra.infra.mockrun import UNKNOWN, PlanMocks, load_project, run_program
from platform_infra.policies.policy_config import default_path
from tests.policies.test_policies_cli import _export, run_cli, write_program

PROD_CONFIG = default_path("prod")
SOON = (datetime.date.today() + datetime.timedelta(days=30)).isoformat()
"""An expiry within every rule's waiver horizon."""

POSTGRES = """
img = docker.RemoteImage("db-image", name="postgres:16.4-alpine")
docker.Container("db", image=img.{ref}, envs=["POSTGRES_HOST_AUTH_METHOD=trust", "POSTGRES_DB=jobs"])
"""
REDIS = """
img = docker.RemoteImage("cache-image", name="redis:7.4.1-alpine")
docker.Container("cache", image=img.{ref}, command=["redis-server", "--appendonly", "yes"])
"""
CLICKHOUSE = """
img = docker.RemoteImage("olap-image", name="clickhouse/clickhouse-server:24.8.4.13")
docker.Container("olap", image=img.{ref}, envs=["CLICKHOUSE_SKIP_USER_SETUP=1"])
"""
# A PostgreSQL with a password, so only its network is wrong.
NETWORK = """
net = docker.Network("shared", name="shared")
img = docker.RemoteImage("db-image", name="postgres:16.4-alpine")
docker.Container("db", image=img.{ref}, envs=["POSTGRES_PASSWORD_FILE=/run/secrets/db"],
                 networks_advanced=[{{"name": net.name}}])
"""
SERVICE = """
img = docker.RemoteImage("db-image", name="postgres:16.4-alpine")
docker.Service("db", task_spec={{"container_spec": {{"image": img.{ref},
                                                  "env": {{"POSTGRES_HOST_AUTH_METHOD": "trust"}}}}}})
"""
CASES = {"postgres": (POSTGRES, "DS-PG-001", "db"), "redis": (REDIS, "DS-REDIS-001", "cache"),
         "clickhouse": (CLICKHOUSE, "DS-CH-001", "olap"), "network": (NETWORK, "NET-001", "db"),
         "service": (SERVICE, "DS-PG-001", "db")}


def findings(report, rule: str) -> list[str]:
    return [v["resource"].rsplit("::", 1)[-1] for v in report.violations if v["rule"] == rule]


@pytest.mark.parametrize("ref", ["image_id", "repo_digest"])
@pytest.mark.parametrize("case", CASES)
def test_plain_program_fails_the_rule_of_what_it_runs(case, ref, tmp_path, capsys):
    body, rule, resource = CASES[case]
    project = write_program(tmp_path / case, body.format(ref=ref))
    code, out, err = run_cli(capsys, "--stack", "prod", "--project", str(project), "--policy-config",
                             str(PROD_CONFIG), "--format", "json")
    assert code == 1, err
    violations = [v for v in json.loads(out)["violations"] if v["rule"] == rule]
    assert resource in {v["resource"].rsplit("::", 1)[-1] for v in violations}
    assert {v["enforcement"] for v in violations} == {"mandatory"}


def test_the_same_container_with_its_own_image_name_is_judged_alike(tmp_path):
    named = write_program(tmp_path / "named", POSTGRES.replace("img.{ref}", '"postgres:16.4-alpine"'))
    through_graph = write_program(tmp_path / "graph", POSTGRES.format(ref="image_id"))
    reports = [evaluate(run_program(load_project(p, "prod"), "prod"), PROD_CONFIG) for p in (named, through_graph)]
    assert findings(reports[0], "DS-PG-001") == findings(reports[1], "DS-PG-001") == ["db", "db"]


def test_a_named_postgres_image_a_program_did_not_pull_passes(tmp_path):
    body = POSTGRES.replace('"POSTGRES_HOST_AUTH_METHOD=trust", ', '"POSTGRES_PASSWORD_FILE=/run/secrets/db", ')
    report = evaluate(run_program(load_project(write_program(tmp_path, body.format(ref="image_id")), "prod"),
                                  "prod"), PROD_CONFIG)
    assert findings(report, "DS-PG-001") == [] and not report.unknown


class PreviewMocks(PlanMocks):
    """What the engine gives a preview before the image is pulled: imageId and repoDigest unknown; with
    `name_unknown`, the image's name too (computed from another resource's output)."""

    def __init__(self, name_unknown: bool = False):
        self.name_unknown = name_unknown

    def new_resource(self, args):
        resource_id, state = super().new_resource(args)
        if args.typ == "docker:index/remoteImage:RemoteImage":
            state.update(imageId=UNKNOWN, repoDigest=UNKNOWN)
        if args.typ == "random:index/randomString:RandomString" and self.name_unknown:
            state.update(result=UNKNOWN)
        return resource_id, state


def run_with(tmp_path: Path, body: str, mocks: PlanMocks):
    return run_program(load_project(write_program(tmp_path, body), "prod"), "prod", mocks=mocks)


@pytest.mark.parametrize("ref", ["image_id", "repo_digest"])
def test_image_unknown_at_preview_is_followed_to_the_image_name(ref, tmp_path):
    run = run_with(tmp_path, POSTGRES.format(ref=ref), PreviewMocks())
    db = next(r for r in run.resources if r.name == "db")
    assert db.inputs["image"] == UNKNOWN
    report = evaluate(run, PROD_CONFIG)
    assert findings(report, "DS-PG-001") == ["db", "db"]


def test_image_unknown_at_preview_is_reported_unknown_never_passed(tmp_path):
    body = """
tag = random.RandomString("tag", length=8)
img = docker.RemoteImage("db-image", name=tag.result.apply(lambda t: f"postgres:{t}"))
docker.Container("db", image=img.image_id, envs=["POSTGRES_HOST_AUTH_METHOD=trust"])
"""
    report = evaluate(run_with(tmp_path, body, PreviewMocks(name_unknown=True)), PROD_CONFIG)
    assert findings(report, "DS-PG-001") == []
    unknown = {u["rule"]: u for u in report.unknown}
    for rule in ("DS-PG-001", "DS-REDIS-001", "DS-CH-001"):
        assert unknown[rule]["resource"].endswith("docker:index/container:Container::db")
        assert unknown[rule]["message"] == "string value at .image can't be known during preview"
    assert all(not u["failClosed"] for u in unknown.values())
    # The same program with the image known at preview: judged, and failing.
    known = evaluate(run_with(tmp_path / "known", body, PreviewMocks()), PROD_CONFIG)
    assert findings(known, "DS-PG-001") == ["db", "db"]


def test_identity_rules_are_stack_policies_in_the_engine():
    """Under `pulumi preview` a resource policy sees one resource; these rules need the graph."""
    from pulumi_policy import StackValidationPolicy

    from platform_infra.policies.pack import build_policies
    from platform_infra.policies.registry import RULES

    policies = {p.name: p for p in build_policies()}
    for rule_id in ("DS-PG-001", "DS-REDIS-001", "DS-CH-001", "DS-KAFKA-001", "NET-001", "CTR-003"):
        assert RULES[rule_id].reads_identity or RULES[rule_id].kind == "stack"
        assert isinstance(policies[RULES[rule_id].policy_name], StackValidationPolicy)
    assert not RULES["CTR-001"].reads_identity


def test_a_waiver_label_settles_a_finding_judged_over_the_graph(tmp_path):
    body = POSTGRES.format(ref="image_id").replace(
        'envs=[', 'labels=[{"label": "platform.waiver.DS-PG-001", "value": "reason=lab only;expires='
                  f'{SOON}"}}], envs=[')
    report = evaluate(run_program(load_project(write_program(tmp_path, body), "prod"), "prod"), PROD_CONFIG)
    assert findings(report, "DS-PG-001") == []
    waived = [w for w in report.waived if w["rule"] == "DS-PG-001"]
    assert len(waived) == 1 and waived[0]["resource"].endswith("::db") and len(waived[0]["findings"]) == 2


@pytest.mark.parametrize("property_dependencies", [True, False])
def test_a_state_export_is_judged_through_the_same_graph(property_dependencies, tmp_path):
    """`--state`: the engine records each property's dependencies; older state has only `dependencies`."""
    run = run_program(load_project(write_program(tmp_path, POSTGRES.format(ref="image_id")), "prod"), "prod")
    export = _export(run)
    if not property_dependencies:
        for entry in export["deployment"]["resources"]:
            entry.pop("propertyDependencies", None)
    state = tmp_path / "export.json"
    state.write_text(json.dumps(export))
    report = evaluate(load_state(state, "prod"), PROD_CONFIG)
    assert "db" in findings(report, "DS-PG-001")


def test_every_rule_reading_kind_or_role_is_judged_over_the_graph():
    """A new rule that reads what a workload is must be marked (platform_infra.policies.scope.reads_identity) or use a kind
    or role scope; otherwise it would judge `image=remote.image_id` workloads as unknown apps."""
    import inspect
    import re

    from platform_infra.policies.registry import enforced_rules

    reads = re.compile(r"\bw\.(kind|role)\b")
    for rule in enforced_rules():
        if rule.kind != "resource" or rule.check is None:
            continue
        sources = inspect.getsource(rule.check) + (inspect.getsource(rule.scope) if rule.scope else "")
        if reads.search(sources):
            assert rule.reads_identity, f"{rule.id} reads a workload's kind or role"
