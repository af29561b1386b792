"""DS-CH-002 on this repository's prod plan, in both runtimes: each weakening of ClickHouse's accounts, in the
uploaded users.d file, the server's environment or a client's, fails `infra check --stack prod` with a mandatory
violation naming it; the plan as it is passes (test_policies_weakenings.py)."""

from __future__ import annotations

import pytest

from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import load_project, run_program
from tests.policies.conftest import messages
from tests.policies.test_policies_weakenings import add_env, check, edit_file
from tests.swarm.test_swarm_plan import AUTOSCALING, DATA, swarm_project

USERS = "users.d/platform-users.xml"


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    swarm = swarm_project(tmp_path_factory.mktemp("swarm"), runtime="swarm", autoscaling=AUTOSCALING, data=DATA)
    return {"docker": run_program(load_project(REPO_ROOT, "prod"), "prod").resources,
            "swarm": run_program(load_project(swarm, "prod"), "prod").resources}


WEAKENINGS = {
    "a user accepting any address (uploaded file)": (
        lambda rt: edit_file(USERS, lambda t: t.replace("<host>query-service</host>", "<ip>::/0</ip>").replace(
            "<host>tasks.query-service</host>", "<ip>0.0.0.0/0</ip>")),
        "user query-service accepts any address"),
    "a user without networks (uploaded file)": (
        lambda rt: edit_file(USERS, lambda t: t.replace(
            f"<networks>\n        <host>{'tasks.' if rt == 'swarm' else ''}log-aggregator</host>\n      </networks>",
            "")),
        "user log-aggregator accepts any address"),
    "a plaintext password (uploaded file)": (
        lambda rt: edit_file(USERS, lambda t: t.replace("<password_sha256_hex>", "<password>Zq8vN3kP0wLx7TbR</password>"
                                                        "<!-- ", 1).replace("</password_sha256_hex>", " -->", 1)),
        "has a plaintext <password>"),
    "a user without a password (uploaded file)": (
        lambda rt: edit_file(USERS, lambda t: t.replace("<password_sha256_hex>", "<!-- ", 1).replace(
            "</password_sha256_hex>", " -->", 1)),
        "user clickhouse-backup has no password"),
    "a grant that can be passed on (uploaded file)": (
        lambda rt: edit_file(USERS, lambda t: t.replace("GRANT INSERT ON logs.*</query>",
                                                        "GRANT INSERT ON logs.* WITH GRANT OPTION</query>", 1)),
        "WITH GRANT OPTION"),
    "default reachable over the network (uploaded file)": (
        lambda rt: edit_file(USERS, lambda t: t.replace("<ip>::1</ip>", "<ip>::/0</ip>")),
        "user default accepts any address"),
    "an application user with access management (uploaded file)": (
        lambda rt: edit_file(USERS, lambda t: t.replace(
            "<profile>readonly</profile>\n      <quota>default</quota>\n      <access_management>0",
            "<profile>readonly</profile>\n      <quota>default</quota>\n      <access_management>1")),
        "user query-service has access_management"),
    "an application user granted ALL (uploaded file)": (
        lambda rt: edit_file(USERS, lambda t: t.replace("GRANT SELECT ON logs.*", "GRANT ALL ON *.*")),
        "user query-service: GRANT ALL ON *.*"),
    "the image's entrypoint user from the server's environment": (
        lambda rt: add_env("clickhouse", "CLICKHOUSE_USER", "platform"),
        "user platform accepts any address"),
    "the image's default user given a password in the environment": (
        lambda rt: add_env("clickhouse", "CLICKHOUSE_PASSWORD_FILE", "/run/secrets/ch"),
        "user default has a plaintext <password>"),
    "two services sharing one user (a client's environment)": (
        lambda rt: add_env("log-aggregator", "CLICKHOUSE_USER", "query-service"),
        "clickhouse user query-service is shared by log-aggregator, query-service"),
    "the backup tool logging in as default (its environment)": (
        lambda rt: add_env("backup-jobs-clickhouse-backup", "CLICKHOUSE_USERNAME", "default"),
        "clickhouse client clickhouse-backup: logs in as default"),
}


@pytest.mark.parametrize("runtime", ["docker", "swarm"])
@pytest.mark.parametrize("weakening", list(WEAKENINGS))
def test_each_clickhouse_weakening_fails_the_prod_plan(plans, runtime, weakening):
    make, expected = WEAKENINGS[weakening]
    report = check(plans, runtime, make(runtime))
    found = messages(report, "DS-CH-002")
    assert any(expected in message for message in found), (weakening, found)
    assert any(v["rule"] == "DS-CH-002" and v["enforcement"] == "mandatory" for v in report.violations)
    assert report.failed


@pytest.mark.parametrize("runtime", ["docker", "swarm"])
def test_the_prod_plan_passes_ds_ch_002(plans, runtime):
    assert messages(check(plans, runtime), "DS-CH-002") == []
