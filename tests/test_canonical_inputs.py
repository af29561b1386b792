"""Every input of every Docker resource of every stack is in the form the provider reads back, so a second
`pulumi up` finds nothing to change (kreuzwerker/terraform-provider-docker, wrapped by pulumi-docker 5.x)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from components.runtime import (
    canonical_capability,
    canonical_cpus,
    duration_nanos,
    go_duration,
    go_duration_string,
    nano_decimal,
    service_duration,
    service_duration_string,
)
from infra.cli import REPO_ROOT
from infra.mockrun import UNKNOWN, load_project, run_program
from tests.helpers import is_secret, reveal

STACKS = ["dev", "staging", "prod"]


def test_cpus_follow_the_providers_own_table():
    # internal/provider/helpers_test.go TestNanoInt64ToDecimalString, and the quirks of the same function.
    assert [nano_decimal(n) for n in (0, 1_000_000_000, 1_500_000_000, 2_000_000_000, 2_250_000_000)] == [
        "0", "1.0", "1.5", "2.0", "2.25"]
    assert [canonical_cpus(c) for c in (1, 1.0, "2", 0.5, 0.25, 0.1, 1.5, 10)] == [
        "1.0", "1.0", "2.0", "0.5", "0.25", "0.1", "1.5", "10."]
    with pytest.raises(ValueError):
        canonical_cpus(0.0000000001)


def test_durations_follow_go():
    assert [go_duration(d) for d in ("60s", "90s", "15s", "1h", "500ms", "1.5s", "0s", "2m")] == [
        "1m0s", "1m30s", "15s", "1h0m0s", "500ms", "1.5s", "0s", "2m0s"]
    assert [service_duration(d) for d in ("60s", "90s", "3600s", "5s")] == ["1m", "1m30s", "1h", "5s"]
    assert go_duration_string(1_500_000) == "1.5ms"
    assert [service_duration_string(seconds * 10**9) for seconds in (0, 15, 60, 90, 190, 3600, 3660, 3725)] == [
        "0s", "15s", "1m", "1m30s", "3m10s", "1h", "1h1m", "1h2m5s"]
    for bad in ("60", "1 m", "", "5sec"):
        with pytest.raises(ValueError):
            duration_nanos(bad)


def _string(value: Any) -> bool:
    return isinstance(value, str)


def _integer(value: Any) -> bool:
    return isinstance(value, (int, float)) and float(value).is_integer()


def _boolean(value: Any) -> bool:
    return isinstance(value, bool)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(item, str) for item in value.values())


def _labels(value: Any) -> bool:
    return isinstance(value, list) and all(set(item) == {"label", "value"} and _string(item["value"])
                                           for item in value)


def _record(checks: dict[str, Callable[[Any], bool]]) -> Callable[[Any], bool]:
    """A nested block: every key known and in form."""
    def check(value: Any) -> bool:
        return isinstance(value, dict) and all(key in checks and checks[key](item) for key, item in value.items())
    return check


def _records(checks: dict[str, Callable[[Any], bool]]) -> Callable[[Any], bool]:
    one = _record(checks)
    return lambda value: isinstance(value, list) and all(one(item) for item in value)


def _duration(value: Any) -> bool:
    return _string(value) and go_duration(value) == value


def _capabilities(value: Any) -> bool:
    return _strings(value) and all(canonical_capability(cap) == cap for cap in value)


# What resource_docker_container_funcs.go reads back for each input we send (and the inputs it never reads,
# which are sent once and kept in state as sent: envs, labels, uploads, networks_advanced, must_run ...).
CONTAINER: dict[str, Callable[[Any], bool]] = {
    "name": _string, "hostname": _string, "image": _string, "user": _string,
    "envs": _strings, "command": _strings, "entrypoints": _strings,
    "readOnly": _boolean, "mustRun": _boolean, "start": _boolean, "wait": _boolean, "waitTimeout": _integer,
    "networkMode": _string, "tmpfs": _string_map, "securityOpts": _strings,
    "capabilities": _record({"drops": _capabilities, "adds": _capabilities}),
    "memory": _integer, "memorySwap": _integer,
    "cpus": lambda value: _string(value) and canonical_cpus(value) == value,
    "restart": lambda value: value in ("no", "on-failure", "always", "unless-stopped"),
    "maxRetryCount": _integer, "destroyGraceSeconds": _integer,
    "healthcheck": _record({"tests": _strings, "interval": _duration, "timeout": _duration,
                            "startPeriod": _duration, "startInterval": _duration, "retries": _integer}),
    "logDriver": _string, "logOpts": _string_map,
    # aliases is a set in the schema: a repeated alias is stored once.
    "networksAdvanced": _records({"name": _string,
                                  "aliases": lambda value: _strings(value) and len(set(value)) == len(value)}),
    "volumes": _records({"volumeName": _string, "containerPath": _string, "readOnly": _boolean}),
    "mounts": _records({"type": _string, "source": _string, "target": _string, "readOnly": _boolean,
                        "bindOptions": _record({"propagation": _string})}),
    "uploads": _records({"file": _string, "content": _string, "contentBase64": _string, "permissions": _string,
                         "owner": _string, "group": _string}),
    "ports": _records({"internal": _integer, "external": _integer, "ip": _string, "protocol": _string}),
    "ulimits": _records({"name": lambda value: _string(value) and value == value.lower(),
                         "soft": _integer, "hard": _integer}),
    "labels": _labels,
}
# resource_docker_network_funcs.go and resource_docker_volume.go read these back as Docker reports them.
NETWORK = {"name": _string, "driver": lambda value: value == "bridge", "internal": _boolean, "labels": _labels}
VOLUME = {"name": _string, "labels": _labels}
# resource_docker_image_funcs.go keeps `name` as given and looks the image up by it.
REMOTE_IMAGE = {"name": lambda value: _string(value) and ":" in value.rsplit("/", 1)[-1],
                "keepLocally": _boolean}
# docker.Image is pulumi-docker's own resource (provider/image.go), not the bridged one: it keeps its inputs
# in state as given and diffs the build by a digest of the context.
IMAGE = {"imageName": lambda value: _string(value) and ":" in value.rsplit("/", 1)[-1],
         "build": _record({"context": _string, "dockerfile": _string, "platform": _string, "args": _string_map}),
         "buildOnPreview": _boolean, "skipPush": _boolean}
RULES = {
    "docker:index/container:Container": CONTAINER,
    "docker:index/image:Image": IMAGE,
    "docker:index/network:Network": NETWORK,
    "docker:index/volume:Volume": VOLUME,
    "docker:index/remoteImage:RemoteImage": REMOTE_IMAGE,
}
ENGINE_FREE = ("random:", "tls:", "pulumi:providers:", "platform:",
               # Our own dynamic provider decides its diff (components/backup/store.py); idempotence is proven
               # against S3 in tests/backup/test_backup_store.py.
               "pulumi-python:dynamic/")


def non_canonical(type_: str, inputs: dict[str, Any]) -> list[str]:
    rules = RULES[type_]
    found = []
    for key, value in inputs.items():
        value = reveal(value)
        if value == UNKNOWN or key == "__defaults":
            continue
        if key not in rules:
            found.append(f"{key}: no read-back rule for this input")
        elif not rules[key](value):
            found.append(f"{key}: {value!r}")
    return found


@pytest.fixture(scope="module", params=STACKS)
def stack_resources(request):
    return run_program(load_project(REPO_ROOT, request.param), request.param).resources


def test_every_input_of_every_resource_is_in_read_back_form(stack_resources):
    problems = {}
    for resource in stack_resources:
        if resource.type.startswith(ENGINE_FREE):
            continue
        assert resource.type in RULES, f"{resource.type}: a resource type without read-back rules"
        found = non_canonical(resource.type, resource.inputs)
        if found:
            problems[resource.name] = found
    assert problems == {}


@pytest.mark.parametrize("key,value", [
    ("cpus", "1"), ("cpus", "2"), ("healthcheck", {"tests": ["CMD", "true"], "startPeriod": "60s"}),
    ("capabilities", {"drops": ["ALL"], "adds": ["cap_chown"]}), ("memory", 1.5), ("logOpts", {"max-file": 3}),
    ("ulimits", [{"name": "NOFILE", "soft": 1, "hard": 1}]), ("privileged", True),
])
def test_the_walk_fails_on_what_the_provider_reads_back_differently(key, value):
    assert non_canonical("docker:index/container:Container", {key: value})


def test_secret_wrappers_are_looked_through():
    assert is_secret({"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": "x"})
    assert non_canonical("docker:index/container:Container", {
        "cpus": {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": "1"}})
