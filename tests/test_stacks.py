"""The program on each stack file, run exactly as `infra plan` runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import UNKNOWN, load_project, run_program
from tests.conftest import CountingMocks, registered
from tests.helpers import env_of, files_of, is_secret, labels_of, running_containers

STACKS = ["dev", "staging", "prod"]
CONTAINER = "docker:index/container:Container"
COMPONENTS = {"platform:index:Network", "platform:index:Secrets", "platform:index:Tls", "platform:index:Postgres",
              "platform:index:Redis", "platform:index:Kafka", "platform:index:ClickHouse",
              "platform:index:AppService", "platform:index:WorkerPool", "platform:index:LoadBalancer",
              "platform:index:Monitoring"}


@pytest.fixture(scope="module", params=STACKS)
def stack_run(request):
    return request.param, run_program(load_project(REPO_ROOT, request.param), request.param)


def containers(run) -> dict[str, dict]:
    return running_containers(run.resources)


def test_every_component_and_container_is_planned(stack_run):
    stack, run = stack_run
    assert COMPONENTS <= {r.type for r in run.resources}
    expected_workers = {"dev": 1, "staging": 2, "prod": 3}[stack]
    gateways = {"dev": ["api-gateway"], "staging": ["api-gateway-1", "api-gateway-2"],
                "prod": ["api-gateway-1", "api-gateway-2"]}[stack]
    expected = {"postgres", "redis", "kafka", "clickhouse", "orchestrator", "log-aggregator", "query-service",
                "load-balancer", "prometheus", "alertmanager", "grafana", "blackbox-exporter", "node-exporter",
                "postgres-exporter", "redis-exporter", "kafka-exporter",
                *(["cadvisor", "cadvisor-socket-proxy"] if stack != "dev" else []),
                *(["postgres-backup", "clickhouse-backup", "s3-gateway"] if stack == "prod" else []),
                *gateways, *[f"worker-{i}" for i in range(1, expected_workers + 1)]}
    assert set(containers(run)) == expected
    assert all(r.parent for r in run.resources if r.custom), "every resource belongs to a component"


def test_environment_settings_reach_the_services(stack_run):
    stack, run = stack_run
    for name, inputs in containers(run).items():
        if labels_of(inputs)["platform.role"] != "app":
            continue
        env = env_of(inputs)
        assert env["LOGGING_LEVEL_ROOT"] == ("DEBUG" if stack == "dev" else "INFO"), name
        assert env["SPRINGDOC_SWAGGER_UI_ENABLED"] == ("true" if stack == "dev" else "false"), name
        assert env["SPRING_PROFILES_ACTIVE"] == stack


def _secret_values(value, found: set[str]) -> set[str]:
    if is_secret(value):
        found.add(json.dumps(value["value"]).strip('"'))
    elif isinstance(value, dict):
        for item in value.values():
            _secret_values(item, found)
    elif isinstance(value, list):
        for item in value:
            _secret_values(item, found)
    return found


def _plain_strings(value):
    if is_secret(value):
        return
    if isinstance(value, dict):
        for item in value.values():
            yield from _plain_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _plain_strings(item)
    elif isinstance(value, str):
        yield value


def test_no_secret_value_appears_in_plain_outputs_or_inputs(stack_run):
    _, run = stack_run
    secrets: set[str] = set()
    for resource in run.resources:
        _secret_values(resource.outputs, secrets)
        _secret_values(resource.inputs, secrets)
    passwords = {r.outputs["result"]["value"] for r in registered(run, "random:index/randomPassword:RandomPassword")}
    assert passwords and passwords <= secrets, "generated credentials are secret outputs"
    plain = [*_plain_strings(run.stack_outputs)]
    for resource in run.resources:
        plain += _plain_strings(resource.inputs)
    leaks = [(password[:4] + "...") for password in passwords if any(password in text for text in plain)]
    assert leaks == []
    assert is_secret(run.stack_outputs["grafana_admin_password"])
    assert not is_secret(run.stack_outputs["endpoints"])


def _project_with(tmp_path: Path, stack_text: str, stack: str = "prod") -> Path:
    (tmp_path / "Pulumi.yaml").write_text((REPO_ROOT / "Pulumi.yaml").read_text().replace("main: stacks/",
                                                                                         f"main: {REPO_ROOT}/stacks/"))
    (tmp_path / f"Pulumi.{stack}.yaml").write_text(stack_text)
    return tmp_path


def test_bad_stack_file_stops_before_any_resource(tmp_path):
    text = (REPO_ROOT / "Pulumi.prod.yaml").read_text().replace("workers: 3", "wrokers: 3")
    project = load_project(_project_with(tmp_path, text), "prod")
    mocks = CountingMocks()
    with pytest.raises(Exception, match=r"Pulumi.prod.yaml: platform:settings.wrokers: unknown key") as error:
        run_program(project, "prod", mocks=mocks)
    assert type(error.value).__name__ == "RunError"
    assert mocks.created == []


def test_encrypted_credentials_are_used_and_stay_unknown_secrets(tmp_path):
    text = (REPO_ROOT / "Pulumi.prod.yaml").read_text() + "  platform:jwtSecret:\n    secure: v1:AAAA\n"
    run = run_program(load_project(_project_with(tmp_path, text), "prod"), "prod")
    generated = {r.name for r in registered(run, "random:index/randomPassword:RandomPassword")}
    assert "secrets-jwt-secret" not in generated and "secrets-postgres-password" in generated
    jwt = files_of(run.resources, "api-gateway")["/etc/platform/secrets/jwt.secret"]
    assert is_secret(jwt["content"]) and jwt["content"]["value"] == UNKNOWN, "unknown until deployment"


def test_unencrypted_credential_in_stack_file_is_refused(tmp_path):
    text = (REPO_ROOT / "Pulumi.prod.yaml").read_text() + "  platform:postgresPassword: hunter2hunter2hunter2\n"
    with pytest.raises(Exception, match="platform:postgresPassword: must be set with `pulumi config set --secret"):
        run_program(load_project(_project_with(tmp_path, text), "prod"), "prod")
