"""Registry credentials (platform:registryUsername, platform:registryPassword): the login for the registry host
of `settings.registry` reaches every place that talks to the registry, and stays a Pulumi secret.

- the provider's `registry_auth`: kreuzwerker/terraform-provider-docker (v4.5, under pulumi-docker) keys it by
  host (internal/provider/provider.go providerSetToRegistryAuth) and uses it for `getRegistryImage` (the
  digests Swarm services are pinned to: data_source_docker_registry_image.go getAuthConfigForRegistry) and for
  a service's pulls when the service has no `auth` of its own (resource_docker_service_funcs.go
  retrieveAndMarshalAuth falls back to fromRegistryAuth(image, provider's configs)): no per-service `auth`;
- each `docker.Image`'s `registry`, which pulumi-docker's own build pushes with (provider/image.go
  getRegistryAuth; without it, the deploying machine's docker config).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pulumi
import pytest

from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import UNKNOWN, PlanMocks, load_project, run_program
from platform_infra.infra.settings import SettingsError, parse_settings
from platform_infra.infra.stackconfig import StackInputs, check_secret_value
from platform_infra.stacks.platform import build
from tests.conftest import deploy, registered
from tests.helpers import is_secret, reveal
from tests.swarm.test_swarm_plan import AUTOSCALING, DATA

PROVIDER = "pulumi:providers:docker"
IMAGE = "docker:index/image:Image"
SERVICE = "docker:index/service:Service"
USERNAME, PASSWORD = "robot$orchestration+deploy", "x7Kq2mVt9Lp4Rz8Wn3Yc"
PROD = json.loads(load_project(REPO_ROOT, "prod").config["platform:settings"])


class InvokeRecorder(PlanMocks):
    def __init__(self) -> None:
        self.calls: list = []

    def call(self, args):
        self.calls.append(args)
        return super().call(args)


def run_stack(settings: dict, secrets: dict[str, str]):
    mocks = InvokeRecorder()
    parsed = parse_settings(settings, "Pulumi.prod.yaml")
    run = deploy(lambda: build(StackInputs(parsed, {k: pulumi.Output.secret(v) for k, v in secrets.items()})),
                 preview=True, mocks=mocks)
    return parsed, run, mocks.calls


SWARM = {**PROD, "runtime": "swarm", "autoscaling": AUTOSCALING, "data": DATA}
LOGIN = {"registry_username": USERNAME, "registry_password": PASSWORD}


def test_the_login_reaches_the_provider_the_digest_lookups_the_service_pulls_and_the_pushes():
    settings, run, calls = run_stack(SWARM, LOGIN)
    (provider,) = registered(run, PROVIDER)
    # Provider config travels JSON-encoded; a secret inside makes the whole value secret.
    assert is_secret(provider.inputs["registryAuth"])
    assert json.loads(reveal(provider.inputs["registryAuth"])) == [
        {"address": "registry.internal", "username": USERNAME, "password": PASSWORD}]
    reference = f"{provider.urn}::{provider.name}-id"

    lookups = [c for c in calls if c.token == "docker:index/getRegistryImage:getRegistryImage"]
    own = [c for c in lookups if c.args["name"].startswith(settings.registry + "/")]
    assert {c.args["name"] for c in own} >= {settings.image("api-gateway"), settings.image("autoscaler")}
    assert all(c.provider == reference for c in lookups), {c.provider for c in lookups}

    services = registered(run, SERVICE)
    pulled_from_registry = [s for s in services if reveal(s.inputs["taskSpec"]["containerSpec"]["image"])
                            .startswith(settings.registry + "/")]
    assert len(pulled_from_registry) >= 6  # the five Spring services, the autoscaler, the backup job
    for service in services:
        assert service.provider == reference, service.name
        assert "auth" not in service.inputs, "the provider's registry_auth serves the pulls"

    images = registered(run, IMAGE)
    assert {reveal(i.inputs["imageName"]) for i in images} == {settings.image("postgres-backup"),
                                                                settings.image("autoscaler")}
    for image in images:
        registry = image.inputs["registry"]
        assert registry["server"] == "registry.internal"
        assert is_secret(registry["username"]) and is_secret(registry["password"])
        assert (reveal(registry["username"]), reveal(registry["password"])) == (USERNAME, PASSWORD)
        assert image.provider == reference


def test_the_docker_runtime_pulls_with_the_same_login():
    _, run, _ = run_stack(PROD, LOGIN)
    (provider,) = registered(run, PROVIDER)
    assert is_secret(provider.inputs["registryAuth"])
    reference = f"{provider.urn}::{provider.name}-id"
    assert all(r.provider == reference for r in run.resources if r.custom and r.type.startswith("docker:"))


def test_without_a_login_nothing_changes():
    _, run, calls = run_stack(SWARM, {})
    assert registered(run, PROVIDER) == []
    assert all("registry" not in image.inputs for image in registered(run, IMAGE))
    assert all(not c.provider for c in calls)


def test_with_a_docker_host_the_login_joins_the_same_provider():
    _, run, _ = run_stack({**PROD, "docker_host": "ssh://deploy@swarm-1"}, LOGIN)
    (provider,) = registered(run, PROVIDER)
    assert provider.inputs["host"] == "ssh://deploy@swarm-1"
    assert json.loads(reveal(provider.inputs["registryAuth"]))[0]["address"] == "registry.internal"


@pytest.mark.parametrize(("registry", "host"), [
    ("registry.internal/orchestration", "registry.internal"),
    ("registry.example.com:5000/platform/images", "registry.example.com:5000"),
    ("localhost:5000", "localhost:5000"),
    ("orchestration", "docker.io"),
])
def test_the_login_is_for_the_host_docker_reads_from_the_reference(registry, host):
    assert parse_settings({**PROD, "registry": registry}, "Pulumi.prod.yaml").registry_host == host


def _project(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "Pulumi.yaml").write_text((REPO_ROOT / "Pulumi.yaml").read_text().replace(
        "main: stacks/", f"main: {REPO_ROOT}/stacks/"))
    (tmp_path / "Pulumi.prod.yaml").write_text((REPO_ROOT / "Pulumi.prod.yaml").read_text() + extra)
    return tmp_path


def test_encrypted_credentials_in_the_stack_file_reach_the_provider_as_unknown_secrets(tmp_path):
    extra = ("  platform:registryUsername:\n    secure: v1:AAAA\n"
             "  platform:registryPassword:\n    secure: v1:BBBB\n")
    run = run_program(load_project(_project(tmp_path, extra), "prod"), "prod")
    (provider,) = registered(run, PROVIDER)
    assert is_secret(provider.inputs["registryAuth"])
    (image,) = registered(run, IMAGE)
    assert image.inputs["registry"]["server"] == "registry.internal"
    assert image.inputs["registry"]["password"] == {**image.inputs["registry"]["password"], "value": UNKNOWN}


@pytest.mark.parametrize(("extra", "message"), [
    ("  platform:registryUsername:\n    secure: v1:AAAA\n",
     ("platform:registryUsername and platform:registryPassword: set both (the login for registry.internal) or "
      "neither")),
    ("  platform:registryPassword:\n    secure: v1:AAAA\n", "set both"),
    ("  platform:registryPassword: x7Kq2mVt9Lp4Rz8Wn3Yc\n",
     "platform:registryPassword: must be set with `pulumi config set --secret platform:registryPassword`"),
])
def test_half_a_login_or_a_plain_one_is_refused(tmp_path, extra, message):
    with pytest.raises(Exception, match=re.escape(message)) as error:
        run_program(load_project(_project(tmp_path, extra), "prod"), "prod")
    assert type(error.value).__name__ == "RunError"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("registryUsername", "robot:ci", "must be a registry user name"),
    ("registryUsername", "two words", "must be a registry user name"),
    ("registryPassword", "changeme", "default or weak"),
    ("registryPassword", "Sh0rt-token", "at least 16 bytes"),
])
def test_bad_registry_credentials_are_refused(key, value, message):
    with pytest.raises(SettingsError, match=message):
        check_secret_value(key, value, "Pulumi.prod.yaml")
    check_secret_value("registryUsername", USERNAME, "Pulumi.prod.yaml")
    check_secret_value("registryPassword", PASSWORD, "Pulumi.prod.yaml")
