"""Every input of every Docker resource of every stack is in the form the provider reads back, so a second
`pulumi up` finds nothing to change (kreuzwerker/terraform-provider-docker, wrapped by pulumi-docker 5.x)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

import pytest

from platform_infra.components.runtime import (
    OVERLAY_VNI_OPTION,
    canonical_capability,
    canonical_cpus,
    config_data,
    cpu_nanos,
    duration_nanos,
    go_duration,
    go_duration_string,
    memory_bytes,
    nano_decimal,
    service_duration,
    service_duration_string,
    tmpfs_bytes,
)
from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import UNKNOWN, load_project, run_program
from tests.helpers import is_secret, reveal
from tests.swarm.test_swarm_plan import AUTOSCALING, DATA, swarm_project

STACKS = ["dev", "staging", "prod"]
SWARM_STACK = "prod-swarm"
"""The prod stack with `runtime: swarm` and worker autoscaling, as tests/swarm/test_swarm_plan.py builds it."""


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


def test_swarm_sizes_are_bytes():
    assert [tmpfs_bytes(options) for options in ("rw,noexec,nosuid,size=64m,uid=101", "size=1g", "size=512k", "rw")
            ] == [64 * 2**20, 2**30, 512 * 2**10, None]
    assert memory_bytes(1536) == 1536 * 2**20
    assert cpu_nanos(1.5) == 1_500_000_000


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
    "networkMode": _string, "tmpfs": _string_map, "sysctls": _string_map, "securityOpts": _strings,
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
def _overlay_options(value: Any) -> bool:
    """resource_docker_network_funcs.go reads an overlay network's options back as the engine reports them, and
    the overlay driver adds the VXLAN id it assigned (moby daemon/libnetwork/drivers/overlay/ovmanager/ovmanager.go
    NetworkAllocate): options (ForceNew) without it replace the network at every `pulumi up`."""
    return _string_map(value) and str(value.get(OVERLAY_VNI_OPTION, "")).isdigit()


# resource_docker_network_funcs.go and resource_docker_volume.go read these back as Docker reports them.
NETWORK = {"name": _string, "driver": lambda value: value in ("bridge", "overlay"), "internal": _boolean,
           "attachable": _boolean, "options": _overlay_options, "labels": _labels}
VOLUME = {"name": _string, "labels": _labels}
# resource_docker_image_funcs.go keeps `name` as given and looks the image up by it.
REMOTE_IMAGE = {"name": lambda value: _string(value) and ":" in value.rsplit("/", 1)[-1],
                "keepLocally": _boolean}
# docker.Image is pulumi-docker's own resource (provider/image.go), not the bridged one: it keeps its inputs
# in state as given and diffs the build by a digest of the context.
IMAGE = {"imageName": lambda value: _string(value) and ":" in value.rsplit("/", 1)[-1],
         "build": _record({"context": _string, "dockerfile": _string, "platform": _string, "args": _string_map}),
         "buildOnPreview": _boolean, "skipPush": _boolean}


def _service_duration(value: Any) -> bool:
    return _string(value) and service_duration(value) == value


def _unique_strings(value: Any) -> bool:
    """A TypeSet of strings: a repeated item is stored once."""
    return _strings(value) and len(set(value)) == len(value)


def _one_of(*allowed: str) -> Callable[[Any], bool]:
    return lambda value: value in allowed


def _environment(value: Any) -> bool:
    """flattenContainerSpec reads Env back through mapStringSliceToMap, splitting each entry at its first "="."""
    return _string_map(value) and all("=" not in key for key in value)


def _service_image(value: Any) -> bool:
    # As the Docker client stores it (test_service_images_are_read_back_with_their_digest_and_platforms).
    return _string(value) and "@sha256:" in value


def _file_references(id_key: str, name_key: str) -> Callable[[Any], bool]:
    """flattenServiceSecrets/flattenServiceConfigs: the id, the name and the file target as stored; the mode an
    integer (int(v.File.Mode)), uid and gid strings."""
    return _records({id_key: _string, name_key: _string, "fileName": _string, "fileUid": _string,
                     "fileGid": _string, "fileMode": lambda value: _integer(value) and 0 <= value <= 0o7777})


# What resource_docker_service_funcs.go (resourceDockerServiceReadRefreshFunc) reads back through the
# flatten* functions of resource_docker_service_structures.go: durations through `shortDur`, resources, tmpfs
# sizes, file modes and counts as integers, sets (labels, constraints, aliases, mounts) with each item once.
ROLLOUT = _record({  # flattenServiceUpdateOrRollbackConfig
    "parallelism": _integer, "delay": _service_duration, "monitor": _service_duration,
    "failureAction": _one_of("pause", "continue", "rollback"), "order": _one_of("stop-first", "start-first"),
    # strconv.FormatFloat(MaxFailureRatio, 'f', 1, 64)
    "maxFailureRatio": lambda value: _string(value) and f"{float(value):.1f}" == value,
})
CONTAINER_SPEC = _record({  # flattenContainerSpec
    "image": _service_image, "commands": _strings, "args": _strings, "env": _environment, "user": _string,
    "readOnly": _boolean, "capAdds": _capabilities, "capDrops": _capabilities, "labels": _labels,
    "sysctl": _string_map, "stopGracePeriod": _service_duration,
    "healthcheck": _record({"tests": _strings, "interval": _service_duration, "timeout": _service_duration,
                            "startPeriod": _service_duration, "retries": _integer}),
    "mounts": _records({  # flattenServiceMounts
        "type": _one_of("bind", "volume", "tmpfs"), "source": _string, "target": _string, "readOnly": _boolean,
        "bindOptions": _record({"propagation": _string}),
        # Driver options as stored; driver_name only when not empty (`if len(...DriverConfig.Name) > 0`).
        "volumeOptions": _record({"noCopy": _boolean, "labels": _labels,
                                  "driverName": lambda value: _string(value) and value != "",
                                  "driverOptions": _string_map}),
        # Mode read back through FileMode.Perm(): a sticky, setuid or setgid bit is dropped.
        "tmpfsOptions": _record({"sizeBytes": _integer, "mode": lambda value: _integer(value) and value <= 0o777}),
    }),
    "secrets": _file_references("secretId", "secretName"),
    "configs": _file_references("configId", "configName"),
})
RESOURCES = _record({"nanoCpus": _integer, "memoryBytes": _integer})  # flattenResourceLimits/Reservations


def _parsed_duration(value: Any) -> bool:
    """A duration Go's time.ParseDuration takes (the schema's validateDurationGeq0)."""
    try:
        return _string(value) and duration_nanos(value) >= 0
    except ValueError:
        return False


# converge_config is never read back (resourceDockerServiceReadRefreshFunc sets no converge_config): the state
# keeps it as sent, so any valid form is stable; both keys are sent, none left to the schema's defaults.
def _converge(value: Any) -> bool:
    return _record({"delay": _parsed_duration, "timeout": _parsed_duration})(value) and set(value) == {
        "delay", "timeout"}


SERVICE: dict[str, Callable[[Any], bool]] = {
    "name": _string, "labels": _labels,
    "mode": _record({"replicated": _record({"replicas": _integer}), "global": _boolean}),  # flattenServiceMode
    "taskSpec": _record({  # flattenTaskSpec
        "containerSpec": CONTAINER_SPEC,
        "resources": _record({"limits": RESOURCES, "reservation": RESOURCES}),
        "restartPolicy": _record({"condition": _one_of("none", "on-failure", "any"), "delay": _service_duration,
                                  "maxAttempts": _integer, "window": _service_duration}),
        "placement": _record({"constraints": _unique_strings}),
        "logDriver": _record({"name": _string, "options": _string_map}),
        # flattenTaskNetworksAdvanced reads back `id` (the engine stores network ids, never names) and the
        # aliases as a set.
        "networksAdvanceds": _records({"id": _string, "aliases": _unique_strings}),
    }),
    "updateConfig": ROLLOUT, "rollbackConfig": ROLLOUT, "convergeConfig": _converge,
    "endpointSpec": _record({  # flattenServiceEndpoint
        "mode": _one_of("vip", "dnsrr"),
        "ports": _records({"targetPort": _integer, "publishedPort": _integer,
                           "publishMode": _one_of("host", "ingress"), "protocol": _one_of("tcp", "udp", "sctp")}),
    }),
}


def _base64(value: Any) -> bool:
    """Standard base64 that re-encodes to itself: resource_docker_config.go reads `data` back as
    base64.StdEncoding.EncodeToString(Spec.Data); resource_docker_secret.go decodes it with StdEncoding."""
    try:
        return _string(value) and base64.b64encode(base64.b64decode(value, validate=True)).decode() == value
    except binascii.Error:
        return False


# resource_docker_secret.go reads back only the name (data and labels are kept as sent, all ForceNew);
# resource_docker_config.go reads back name, data and labels.
SECRET = {"name": _string, "data": _base64, "labels": _labels}
SERVICE_CONFIG = {"name": _string, "data": _base64, "labels": _labels}
RULES = {
    "docker:index/container:Container": CONTAINER,
    "docker:index/service:Service": SERVICE,
    "docker:index/secret:Secret": SECRET,
    "docker:index/serviceConfig:ServiceConfig": SERVICE_CONFIG,
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


@pytest.fixture(scope="module")
def swarm_resources(tmp_path_factory):
    project = swarm_project(tmp_path_factory.mktemp("swarm"), runtime="swarm", autoscaling=AUTOSCALING, data=DATA)
    return run_program(load_project(project, "prod"), "prod").resources


@pytest.fixture(scope="module", params=[*STACKS, SWARM_STACK])
def stack_resources(request):
    if request.param == SWARM_STACK:
        return request.getfixturevalue("swarm_resources")
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


def _task(**container_spec) -> dict:
    return {"containerSpec": {"image": "nginx:1.26.3@sha256:" + "0" * 64, **container_spec}}


@pytest.mark.parametrize("key,value", [
    ("updateConfig", {"monitor": "60s"}),  # shortDur: "1m"
    ("rollbackConfig", {"delay": "1m0s"}),
    ("updateConfig", {"maxFailureRatio": "0"}),  # FormatFloat(.., 'f', 1, ..): "0.0"
    ("updateConfig", {"failureAction": "Rollback"}),
    ("taskSpec", {"containerSpec": {"image": "nginx:1.26.3"}}),  # the client appends the digest
    ("taskSpec", _task(stopGracePeriod="1m0s")),
    ("taskSpec", _task(healthcheck={"tests": ["CMD", "true"], "interval": "90s"})),
    ("taskSpec", _task(capAdds=["cap_chown"])),
    ("taskSpec", _task(env={"A=B": "c"})),
    ("taskSpec", _task(mounts=[{"type": "tmpfs", "target": "/tmp", "tmpfsOptions": {"mode": 0o1777}}])),
    ("taskSpec", _task(mounts=[{"type": "tmpfs", "target": "/tmp", "tmpfsOptions": {"sizeBytes": "64m"}}])),
    ("taskSpec", _task(secrets=[{"secretId": "s", "fileName": "/run/secrets/x", "fileMode": "0400"}])),
    ("taskSpec", _task(mounts=[{"type": "volume", "target": "/t", "volumeOptions": {"driverName": ""}}])),
    ("taskSpec", _task(mounts=[{"type": "volume", "target": "/t", "volumeOptions": {"driverOptions": {"o": 1}}}])),
    ("taskSpec", _task(privileges={"seLinuxContext": {"disable": True}})),
    ("taskSpec", {"resources": {"limits": {"nanoCpus": "1.5", "memoryBytes": 2**30}}}),
    ("taskSpec", {"resources": {"reservation": {"nanoCpus": 10**9, "memoryBytes": 1.5}}}),
    ("taskSpec", {"restartPolicy": {"condition": "on-failure", "window": "120s"}}),
    ("taskSpec", {"placement": {"constraints": ["node.role==manager", "node.role==manager"]}}),
    ("taskSpec", {"networksAdvanceds": [{"name": "orchestration-prod-app", "aliases": ["api"]}]}),  # read back as id
    ("taskSpec", {"networksAdvanceds": [{"id": "n", "aliases": ["api", "api"]}]}),
    ("mode", {"replicated": {"replicas": 1.5}}),
    ("endpointSpec", {"mode": "VIP"}),
    ("endpointSpec", {"ports": [{"targetPort": 8080, "publishedPort": 80, "publishMode": "Host"}]}),
    ("labels", [{"label": "platform.role", "value": 1}]),
    ("convergeConfig", {"delay": "7s", "timeout": "5 min"}),  # not a Go duration: refused at plan
    ("convergeConfig", {"timeout": "300s"}),  # the delay left to the schema's default
])
def test_the_walk_fails_on_service_inputs_the_provider_reads_back_differently(key, value):
    assert non_canonical("docker:index/service:Service", {key: value})


@pytest.mark.parametrize("type_,key,value", [
    ("docker:index/secret:Secret", "data", "aGk"),  # unpadded: StdEncoding refuses it
    ("docker:index/serviceConfig:ServiceConfig", "data", "aGk"),
    ("docker:index/serviceConfig:ServiceConfig", "data", "a-_b"),  # URL-safe alphabet
    ("docker:index/network:Network", "options", {"encrypted": "true"}),  # the engine adds the VXLAN id
    ("docker:index/network:Network", "driver", "Overlay"),
])
def test_the_walk_fails_on_swarm_objects_the_provider_reads_back_differently(type_, key, value):
    assert non_canonical(type_, {key: value})


def test_service_rules_pass_what_the_provider_reads_back():
    """The failing cases above fail for their value, not for an unknown key."""
    assert non_canonical("docker:index/service:Service", {
        "updateConfig": {"monitor": "1m", "delay": "10s", "maxFailureRatio": "0.0", "failureAction": "rollback"},
        "taskSpec": {**_task(stopGracePeriod="1m", capAdds=["CHOWN"], env={"A": "b=c"}),
                     "restartPolicy": {"condition": "on-failure", "window": "2m"},
                     "networksAdvanceds": [{"id": "n", "aliases": ["api"]}]},
        "mode": {"global": True}, "endpointSpec": {"mode": "vip"},
        "convergeConfig": {"delay": "7s", "timeout": "305s"},
    }) == []
    assert non_canonical("docker:index/serviceConfig:ServiceConfig", {"data": "aGk="}) == []
    assert non_canonical("docker:index/network:Network", {"options": {OVERLAY_VNI_OPTION: "8400000"}}) == []


def test_service_images_are_read_back_with_their_digest_and_platforms(swarm_resources):
    """The provider creates services with QueryRegistry (resource_docker_service_funcs.go), so the Docker client
    (moby client/service_create.go resolveContainerSpecImage) stores a tag-only image as `name:tag@sha256:...`
    and sets the image's platforms under placement; the provider reads both back (`image` without diff
    suppression, `placement.platforms` not computed, resource_docker_service.go). Each service is sent with
    the digest already (imageWithDigestString keeps a digested reference as it is), and leaves the platforms,
    which follow the image, to the engine: no in-place update at every `pulumi up`."""
    services = [r for r in swarm_resources if r.type == "docker:index/service:Service"]
    assert services
    for service in services:
        image = service.inputs["taskSpec"]["containerSpec"]["image"]
        name, _, digest = image.partition("@sha256:")
        assert ":" in name.rsplit("/", 1)[-1] and len(digest) == 64, image
        assert "taskSpec.placement.platforms" in service.ignore_changes
        assert "platforms" not in service.inputs["taskSpec"].get("placement", {})


def test_secret_wrappers_are_looked_through():
    assert is_secret({"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": "x"})
    assert non_canonical("docker:index/container:Container", {
        "cpus": {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": "1"}})


def test_a_files_data_is_base64_of_its_bytes_once():
    """A binary file (FileSpec.base64) is sent as its own encoding, decoded once by the provider; text is encoded."""
    binary = bytes(range(256))
    encoded = base64.b64encode(binary).decode()
    assert base64.b64decode(config_data(encoded, True)) == binary
    assert config_data("hi\n", False) == "aGkK" and config_data("aGkK", False) == "YUdrSw=="
    assert non_canonical("docker:index/serviceConfig:ServiceConfig", {"data": config_data(encoded, True)}) == []


def test_every_replicated_service_waits_for_convergence_and_no_global_one(swarm_resources):
    """The provider refuses converge_config beside global mode (resource_docker_service.go: ConflictsWith
    mode.0.global); every replicated service converges before `pulumi up` goes on."""
    services = [r for r in swarm_resources if r.type == "docker:index/service:Service"]
    replicated = [s for s in services if "replicated" in s.inputs["mode"]]
    assert replicated and len(replicated) < len(services)
    for service in services:
        assert ("convergeConfig" in service.inputs) == (service in replicated), service.name
