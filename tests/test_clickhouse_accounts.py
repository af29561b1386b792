"""ClickHouse's accounts in the prod plan, both runtimes: the users.d file the stack uploads gives every client a user
of its own (SHA-256 password, its own addresses, only its grants), `default` stays on loopback, and each client
logs in as its own user with the password its own container holds. The policy rule DS-CH-002's failing cases are
in tests/policies (test_policies_rules.py CASES, test_policies_clickhouse_accounts.py)."""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET

import pytest
import yaml

from platform_infra.components.backup.jobs import CLICKHOUSE_BACKUP_CONFIG, CLICKHOUSE_BACKUP_USER
from platform_infra.components.datastores import CLICKHOUSE_USERS_PATH, ClickHouseUser, clickhouse_spec
from platform_infra.components.runtime import DockerRuntime
from platform_infra.components.spec import ComponentArgsError
from platform_infra.components.zones import ZONES
from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import load_project, run_program
from platform_infra.stacks.platform import CLICKHOUSE_RIGHTS
from tests.helpers import env_of, labels_of, reveal
from tests.swarm.test_swarm_plan import AUTOSCALING, DATA, swarm_project

SERVICE = "docker:index/service:Service"
SECRET = "docker:index/secret:Secret"


@pytest.fixture(scope="module")
def plans(tmp_path_factory) -> dict[str, list]:
    swarm = swarm_project(tmp_path_factory.mktemp("swarm"), runtime="swarm", autoscaling=AUTOSCALING, data=DATA)
    return {"docker": run_program(load_project(REPO_ROOT, "prod"), "prod").resources,
            "swarm": run_program(load_project(swarm, "prod"), "prod").resources}


def service_files(resources, service: str) -> dict[str, str]:
    """Path -> text of every file the service gets: uploads (Docker) or its Swarm secrets and configs."""
    found = {}
    for r in resources:
        labels = labels_of(r.inputs)
        if labels.get("platform.service") != service:
            continue
        for upload in r.inputs.get("uploads") or []:
            if "content" in upload:  # not contentBase64: the binaries
                found[upload["file"]] = reveal(upload["content"])
        if "platform.path" in labels and "data" in r.inputs:
            found[labels["platform.path"]] = base64.b64decode(reveal(r.inputs["data"])).decode(errors="replace")
    return found


def service_env(resources, service: str) -> dict[str, str]:
    for r in resources:
        if labels_of(r.inputs).get("platform.service") != service:
            continue
        if r.type == SERVICE:
            return reveal(r.inputs["taskSpec"]["containerSpec"].get("env", {}))
        if r.type.endswith("container:Container") and r.inputs.get("start", True) is not False:
            return env_of(r.inputs)
    raise AssertionError(f"no {service} in the plan")


def users(resources) -> dict[str, ET.Element]:
    root = ET.fromstring(service_files(resources, "clickhouse")[CLICKHOUSE_USERS_PATH])
    return {user.tag: user for user in root.find("users")}


@pytest.mark.parametrize("runtime", ["docker", "swarm"])
def test_each_client_has_its_own_user_with_only_its_rights(plans, runtime):
    found = users(plans[runtime])
    assert set(found) == {"default", "query-service", "log-aggregator", CLICKHOUSE_BACKUP_USER}
    prefix = "tasks." if runtime == "swarm" else ""
    for name, user in found.items():
        if name == "default":
            # The image's `default` on loopback only, no access management: the entrypoint's CLICKHOUSE_DB.
            assert [ip.text for ip in user.find("networks")] == ["::1", "127.0.0.1"]
            assert user.find("networks").get("replace") == "replace"
            assert user.findtext("access_management") == "0" and user.find("grants") is None
            continue
        assert user.find("password") is None and len(user.findtext("password_sha256_hex")) == 64
        assert [(entry.tag, entry.text) for entry in user.find("networks")] == [("host", f"{prefix}{name}")]
        assert user.findtext("access_management") == "0"
        grants, profile = CLICKHOUSE_RIGHTS[name]
        assert [q.text for q in user.iterfind("grants/query")] == [f"GRANT {g.format(database='logs')}"
                                                                   for g in grants]
        assert user.findtext("profile") == profile
    assert [q.text for q in found["query-service"].iterfind("grants/query")] == ["GRANT SELECT ON logs.*"]
    assert found["query-service"].findtext("profile") == "readonly"
    assert [q.text for q in found["log-aggregator"].iterfind("grants/query")] == [
        "GRANT INSERT ON logs.*", "GRANT CREATE TABLE ON logs.*"]
    assert not any("ALL" in q.text.split() or "*.*" in q.text for u in found.values() for q in u.iterfind("grants/query"))


@pytest.mark.parametrize("runtime", ["docker", "swarm"])
def test_each_client_logs_in_with_the_password_its_own_container_holds(plans, runtime):
    resources, found = plans[runtime], users(plans[runtime])
    held = {}
    for service in ("query-service", "log-aggregator"):
        env = service_env(resources, service)
        assert env["CLICKHOUSE_USER"] == service
        host = "tasks.clickhouse" if runtime == "swarm" else "clickhouse"
        assert env["CLICKHOUSE_URL"] == f"jdbc:clickhouse://{host}:8123/logs"
        held[service] = service_files(resources, service)["/etc/platform/secrets/clickhouse.password"]
    backup_env = service_env(resources, "clickhouse-backup")
    assert backup_env["CLICKHOUSE_USERNAME"] == CLICKHOUSE_BACKUP_USER
    assert backup_env["CLICKHOUSE_HOST"] == ("tasks.clickhouse" if runtime == "swarm" else "clickhouse")
    config = yaml.safe_load(service_files(resources, "clickhouse-backup")[CLICKHOUSE_BACKUP_CONFIG])
    held[CLICKHOUSE_BACKUP_USER] = config["clickhouse"]["password"]
    # Nothing shared: three passwords, each the hash of its own user alone.
    assert len(set(held.values())) == 3
    for client, password in held.items():
        assert found[client].findtext("password_sha256_hex") == hashlib.sha256(password.encode()).hexdigest()
    # No ClickHouse credential in the server's environment: the image would make a user of every right of it.
    assert not {"CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "CLICKHOUSE_PASSWORD_FILE"} & set(
        service_env(resources, "clickhouse"))
    assert service_files(resources, "clickhouse")["/etc/clickhouse-server/config.d/dns.xml"].count(
        "<disable_internal_dns_cache>1</disable_internal_dns_cache>") == 1


def test_the_swarm_backup_tool_is_healthy_while_it_waits_for_its_login(plans):
    spec = next(r for r in plans["swarm"] if r.type == SERVICE
                and labels_of(r.inputs).get("platform.service") == "clickhouse-backup")
    test = spec.inputs["taskSpec"]["containerSpec"]["healthcheck"]["tests"]
    assert test[0] == "CMD-SHELL" and "|| { curl -s -o /dev/null http://127.0.0.1:7171/backup/status; test $? -eq 7; }" \
        in test[1]


def test_a_user_without_grants_of_its_own_or_named_default_is_refused():
    args = {"runtime": DockerRuntime("t"), "networks": dict.fromkeys(ZONES), "image": "clickhouse/clickhouse-server:24.8.4.13",
            "memory_mb": 512, "cpus": 0.5}
    for users_, message in (({"query-service": ClickHouseUser("p", grants=())}, "never ALL"),
                            ({"query-service": ClickHouseUser("p", grants=("ALL ON logs.*",))}, "never ALL"),
                            ({"query-service": ClickHouseUser("p", grants=("ACCESS MANAGEMENT ON *.*",))}, "never ALL"),
                            ({"default": ClickHouseUser("p", grants=("SELECT ON logs.*",))}, "not 'default'"), ({}, "one or more")):
        with pytest.raises(ComponentArgsError, match=message):
            clickhouse_spec({**args, "users": users_})
