"""SwarmRuntime's own definitions created on the real Swarm: secrets mounted as files, configs, an internal
overlay network, update and rollback settings; and a deliberately failing update that rolls back by itself.

The definitions are what the runtime registers (recorded under Pulumi's mocks); tests/live/swarm_engine.py
sends them to the Engine API as the provider does and reads them back as it does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from collections.abc import Callable

import docker
import pulumi
import pytest

from platform_infra.components.apps import APP_USER, HEALTHCHECK_CLASS_DIR, JVM_TMPDIR, Connections, app_spec
from platform_infra.components.spec import ContainerSpec, FileSpec, Healthcheck, VolumeMount
from platform_infra.components.swarm import SwarmRuntime, object_name
from platform_infra.components.swarm_files import retire
from tests.conftest import deploy
from tests.live.swarm_engine import (
    Engine,
    _labels,
    as_sent,
    change_node_labels,
    constraint_labels,
    engine_spec,
    read_back,
    wire_values,
)
from tests.swarm.conftest import unique
from tests.swarm.provider import ConvergeError, converge_create, converge_update

SERVICE = "docker:index/service:Service"
SECRET = "docker:index/secret:Secret"
CONFIG = "docker:index/serviceConfig:ServiceConfig"
NETWORK = "docker:index/network:Network"
RETIRED = "pulumi-python:dynamic/swarm:RetiredFiles"
TOKEN = "i11-token-4f1c9a7e2b6d8035"
API_KEY = "i11-api-key-9d2e7c4b1a6f3058"
CONF = "greeting=hello from a docker config\n"
READY = "/tmp/ready"
PORT = 8080
# Ready once every file it is given can be read by its own user; then it answers HTTP with its hostname.
STARTUP = (f"cat /etc/platform/secrets/token /etc/platform/app.conf $API_KEY_FILE >/dev/null && mkdir /tmp/www && "
           f"/bin/busybox hostname > /tmp/www/index.html && touch {READY} && "
           f"exec /bin/busybox httpd -f -p {PORT} -h /tmp/www")


def standin_spec(image: str, service: str, healthy: bool = True) -> ContainerSpec:
    """A service of the stand-in image with a config file, a secret file and a credential its image would read
    from env, read-only, non-root; its healthcheck reads the secret (or, broken, a file that is never there)."""
    probe = READY if healthy else "/tmp/never"
    return ContainerSpec(
        service=service, role="app", image=image, networks=["scrape"], memory_mb=32, cpus=0.1, replicas=2,
        entrypoint=["/bin/busybox", "sh", "-c"],
        command=[STARTUP],
        files=[FileSpec("/etc/platform/app.conf", CONF), FileSpec("/etc/platform/secrets/token", TOKEN, secret=True)],
        secret_env={"API_KEY": API_KEY},
        tmpfs={"/tmp": "rw,noexec,nosuid,size=1m"},
        healthcheck=Healthcheck(["CMD", "/bin/busybox", "test", "-f", probe], interval="1s", timeout="1s",
                                retries=2, start_period="2s"),
        user="10001:10001", stop_grace_seconds=1,
    )


def definitions(spec: ContainerSpec, prefix: str) -> dict[str, list]:
    """What SwarmRuntime registers for `spec` on an encrypted internal app network, by resource type."""

    def program() -> None:
        runtime = SwarmRuntime(name_prefix=prefix, encrypt_networks=True)
        parent = pulumi.ComponentResource("platform:index:SwarmTest", "swarm-test")
        network = runtime.network("scrape", True, "network", parent)
        runtime.deploy(spec, {"scrape": network}, "test", parent)

    run = deploy(program)
    return {t: [r for r in run.resources if r.type == t] for t in (NETWORK, SECRET, CONFIG, SERVICE, RETIRED)}


def create(engine: Engine, plan: dict[str, list], cleanup: Callable) -> tuple[str, dict[str, str]]:
    """Network, secrets and configs, then the service; returns the service id and the plan-to-engine ids."""
    ids: dict[str, str] = {}
    for network in plan[NETWORK]:
        created = engine.create_network(network.inputs)
        ids[f"{network.name}-id"] = cleanup(engine.client.networks.get(created)).id
    for kind, resource in [("secrets", r) for r in plan[SECRET]] + [("configs", r) for r in plan[CONFIG]]:
        created = engine.create_file_object(kind, wire_values(resource.inputs))
        collection = engine.client.secrets if kind == "secrets" else engine.client.configs
        ids[f"{resource.name}-id"] = cleanup(collection.get(created)).id
    (service,) = plan[SERVICE]
    inputs = wire_values(service.inputs)
    answer = engine.post("/services/create", engine_spec(inputs, ids))
    cleanup(engine.client.services.get(answer["ID"]))
    if "convergeConfig" in inputs:  # the provider returns once every replica runs
        converge_create(engine.client, answer["ID"], inputs["convergeConfig"])
    return answer["ID"], ids


def retired_props(plan: dict[str, list]) -> dict:
    (retired,) = plan[RETIRED]
    return {key: value for key, value in wire_values(retired.inputs).items() if key != "__provider"}


def engine_update(engine: Engine, old: dict[str, list], new: dict[str, list], ids: dict[str, str],
                  service_id: str, cleanup: Callable) -> tuple[str | None, dict[str, str]]:
    """`pulumi up` from the plan `old` to `new`, in the order the engine runs it (pulumi/pulumi
    pkg/resource/deploy): each changed config or secret (named by content: a replacement, create-before-delete)
    is created; the service's dependencies are updated before it (RetiredFiles); the service is updated and the
    provider waits as its converge_config says (tests/swarm/provider.py); replaced objects are deleted only
    once every step succeeded (deployment_executor.go performPostSteps runs unless the step executor cancelled
    on a failed step, step_executor.go cancelDueToError; with --continue-on-error the deletes of a failed
    step's dependencies are skipped), and not at all when they are retained (step.go DeleteStep.Apply:
    RetainOnDelete is a no-op). Returns the provider's failure, if any, and the new plan-to-engine ids."""
    client, new_ids, replaced = engine.client, dict(ids), []
    for kind, type_ in (("secrets", SECRET), ("configs", CONFIG)):
        before = {r.name: r for r in old[type_]}
        for resource in new[type_]:
            inputs = wire_values(resource.inputs)
            if inputs["name"] == before[resource.name].inputs["name"]:
                continue
            collection = client.secrets if kind == "secrets" else client.configs
            new_ids[f"{resource.name}-id"] = cleanup(collection.get(engine.create_file_object(kind, inputs))).id
            replaced.append((before[resource.name], collection, ids[f"{resource.name}-id"]))
    if new.get(RETIRED) and retired_props(new) != retired_props(old):
        retire(retired_props(new))
    (service,) = new[SERVICE]
    inputs = wire_values(service.inputs)
    version = client.api.inspect_service(service_id)["Version"]["Index"]
    engine.post(f"/services/{service_id}/update", engine_spec(inputs, new_ids), version=version)
    failure = None
    if "convergeConfig" in inputs:
        try:
            print("update converged:", converge_update(client, service_id, inputs["convergeConfig"]))
        except ConvergeError as error:
            failure = str(error)
            print("update failed:", failure)
    if failure is None:
        for resource, collection, object_id in replaced:
            if not resource.retain_on_delete:
                collection.get(object_id).remove()
    return failure, new_ids


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def healthy_containers(client: docker.DockerClient, service: str, count: int) -> list:
    """`count` healthy task containers of the service, else []; failed tasks' errors are shown as they come."""
    for task in client.api.tasks(filters={"service": service}):
        if task["Status"].get("Err"):
            print(task["Status"]["State"], task["Status"]["Err"])
    containers = client.containers.list(filters={"label": f"com.docker.swarm.service.name={service}"})
    healthy = [c for c in containers if c.attrs["State"].get("Health", {}).get("Status") == "healthy"]
    return healthy if len(healthy) >= count else []


def test_secrets_configs_and_the_internal_overlay_from_the_runtimes_definitions(swarm, standin_image, cleanup):
    prefix = unique("rt")
    spec = standin_spec(standin_image, "store-client")
    plan = definitions(spec, prefix)
    engine = Engine(swarm)
    service_id, _ = create(engine, plan, cleanup)
    name = f"{prefix}-store-client"

    running = wait_for(lambda: healthy_containers(swarm, name, 2), 90, "two healthy replicas")
    container = running[0]

    def run(*command: str) -> str:
        code, output = container.exec_run(["/bin/busybox", *command], user="10001")
        assert code == 0, (command, output)
        return output.decode()

    assert run("cat", "/etc/platform/secrets/token") == TOKEN
    assert run("cat", "/run/secrets/api_key") == API_KEY
    assert run("cat", "/etc/platform/app.conf") == CONF
    assert run("stat", "-c", "%a %u:%g", "/etc/platform/secrets/token").strip() == "440 10001:10001"
    code, _ = container.exec_run(["/bin/busybox", "cat", "/etc/platform/secrets/token"], user="20000:20000")
    assert code != 0, "another user of the container reads none of its secrets"
    assert run("stat", "-c", "%a", "/etc/platform/app.conf").strip() == "444"
    code, _ = container.exec_run(["/bin/busybox", "touch", "/etc/probe"], user="10001")
    assert code != 0, "the root filesystem is read-only"
    # Credentials are files: no value in the service's env, nor in the container's.
    env = container.attrs["Config"]["Env"]
    assert "API_KEY_FILE=/run/secrets/api_key" in env
    assert not [entry for entry in env if TOKEN in entry or API_KEY in entry]
    # The alias resolves on the internal overlay to the service's virtual IP, and tasks.<service> to each
    # task (what Prometheus scrapes in Swarm mode).
    assert "Address" in run("nslookup", "store-client")
    task_ips = {c.attrs["NetworkSettings"]["Networks"][f"{prefix}-scrape"]["IPAddress"] for c in running}
    assert len(task_ips) == 2

    def resolved() -> set[str]:
        return set(re.findall(r"Address(?: \d+)?:\s*([\d.]+)", run("nslookup", "tasks.store-client")))

    # The overlay's DNS learns a task's address by gossip, a moment after the task runs: wait for both.
    wait_for(lambda: task_ips <= resolved(), 30, f"tasks.store-client resolving to {task_ips}")
    # Every task answers over the overlay, each by its own address (busybox's own nc, since a static glibc wget
    # cannot resolve).
    request = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 5"
    answers = {run("sh", "-c", f"{request} {ip} {PORT}").split("\r\n\r\n")[-1].strip() for ip in task_ips}
    assert answers == {c.attrs["Config"]["Hostname"] for c in running}
    network = swarm.networks.get(f"{prefix}-scrape")
    assert (network.attrs["Driver"], network.attrs["Internal"], network.attrs["Options"].get("encrypted")) == (
        "overlay", True, "true")
    # The engine reads the options back exactly as sent, the VXLAN id included: no diff, no replacement.
    (sent,) = plan[NETWORK]
    assert network.attrs["Options"] == wire_values(sent.inputs)["options"]

    inspected = swarm.api.inspect_service(service_id)["Spec"]
    # Read back as the provider does, every value the runtime sends comes back unchanged: no diff on refresh.
    (service,) = plan[SERVICE]
    assert read_back(inspected) == as_sent(wire_values(service.inputs))
    assert inspected["UpdateConfig"]["FailureAction"] == "rollback"
    assert inspected["UpdateConfig"]["Order"] == "start-first"
    assert inspected["RollbackConfig"]["FailureAction"] == "pause"
    assert inspected["TaskTemplate"]["RestartPolicy"]["MaxAttempts"] == 5


def test_an_update_whose_tasks_fail_their_healthcheck_rolls_back(swarm, standin_image, cleanup):
    prefix = unique("rb")
    engine = Engine(swarm)
    good = definitions(standin_spec(standin_image, "rollout"), prefix)
    service_id, ids = create(engine, good, cleanup)
    name = f"{prefix}-rollout"
    wait_for(lambda: healthy_containers(swarm, name, 2), 90, "two healthy replicas")

    broken = definitions(standin_spec(standin_image, "rollout", healthy=False), prefix)
    (service,) = broken[SERVICE]
    version = swarm.api.inspect_service(service_id)["Version"]["Index"]
    engine.post(f"/services/{service_id}/update", engine_spec(wire_values(service.inputs), ids), version=version)

    def update_state() -> str | None:
        state = swarm.api.inspect_service(service_id).get("UpdateStatus", {}).get("State")
        return state if state in ("rollback_completed", "rollback_paused", "paused", "completed") else None

    assert wait_for(update_state, 120, "the update to settle") == "rollback_completed"
    after = swarm.api.inspect_service(service_id)["Spec"]["TaskTemplate"]["ContainerSpec"]["Healthcheck"]["Test"]
    assert after == ["CMD", "/bin/busybox", "test", "-f", READY]
    wait_for(lambda: healthy_containers(swarm, name, 2), 60, "two healthy replicas after the rollback")


HTTP_CHECK = "components/healthcheck/HttpCheck.class"


def app_standin_spec(image: str, service: str) -> ContainerSpec:
    """A Spring service exactly as `app_spec` defines it (user, read-only root, tmpfs mounts, JVM temp dir, the
    healthcheck class delivered as a file), but for the image, which no registry here has: the stand-in
    sleeps, and its healthcheck only says it runs."""
    connections = Connections(*(["unused"] * len(dataclasses.fields(Connections))))
    # Built as the worker's (a service of the zones table), then named `service` on the one network the test makes.
    spec = app_spec({"runtime": SwarmRuntime(name_prefix="unused"), "networks": {}, "service": "worker",
                     "image": "registry.internal/orchestration/api-gateway:1.0.0", "memory_mb": 64, "cpus": 0.1,
                     "environment": "prod", "log_level": "INFO", "swagger_enabled": False, "needs": ["jwt"],
                     "connections": connections, "replicas": 2})
    return dataclasses.replace(
        spec, service=service, networks=["scrape"], image=image, entrypoint=["/bin/busybox", "sleep"],
        command=["3600"], stop_grace_seconds=1,
        healthcheck=Healthcheck(["CMD", "/bin/busybox", "true"], interval="1s", timeout="1s", retries=2,
                                start_period="1s"))


def test_an_app_task_gets_the_healthcheck_class_as_its_bytes_and_an_exec_able_jvm_temp_dir(
        swarm, standin_image, cleanup):
    """Defects 3 and 6 of issue 16, on the real Swarm: the class file in a running task is the shipped class,
    byte for byte; the JVM temp dir allows exec (a binary copied there runs, as the app's user), one per
    replica, while /tmp stays noexec."""
    from platform_infra.infra.cli import REPO_ROOT

    prefix = unique("app")
    spec = app_standin_spec(standin_image, "jvm-app")
    assert JVM_TMPDIR in spec.tmpfs and spec.user == APP_USER
    plan = definitions(spec, prefix)
    service_id, _ = create(Engine(swarm), plan, cleanup)
    name = f"{prefix}-jvm-app"
    running = wait_for(lambda: healthy_containers(swarm, name, 2), 90, "two running replicas")
    for volume in swarm.volumes.list(filters={"label": "platform.service=jvm-app"}):
        if volume.name.startswith(prefix):
            cleanup(volume)

    def run(container, *command: str) -> tuple[int, bytes]:
        return container.exec_run(["/bin/busybox", *command], user="10001:10001")

    shipped = (REPO_ROOT / HTTP_CHECK).read_bytes()
    first, second = running
    code, mounted = run(first, "cat", f"{HEALTHCHECK_CLASS_DIR}/HttpCheck.class")
    assert code == 0 and mounted == shipped, mounted[:40]
    code, digest = run(first, "md5sum", f"{HEALTHCHECK_CLASS_DIR}/HttpCheck.class")
    assert digest.split()[0].decode() == hashlib.md5(shipped).hexdigest()

    assert run(first, "sh", "-c", f"cp /bin/busybox {JVM_TMPDIR}/busybox && {JVM_TMPDIR}/busybox true") == (0, b"")
    code, output = run(first, "sh", "-c", "cp /bin/busybox /tmp/busybox && /tmp/busybox true")
    assert code != 0 and b"Permission denied" in output, output
    mounts = {line.split()[1]: line.split() for line in run(first, "cat", "/proc/mounts")[1].decode().splitlines()}
    print("/tmp:", " ".join(mounts["/tmp"][2:4]), f"\n{JVM_TMPDIR}:", " ".join(mounts[JVM_TMPDIR][2:4]))
    assert mounts["/tmp"][2] == "tmpfs" and "noexec" in mounts["/tmp"][3].split(",")
    jvm_flags = mounts[JVM_TMPDIR][3].split(",")
    assert mounts[JVM_TMPDIR][2] == "tmpfs" and "noexec" not in jvm_flags and {"nosuid", "nodev"} <= set(jvm_flags)
    # One per replica: the other task's JVM temp dir is its own.
    assert run(second, "test", "-e", f"{JVM_TMPDIR}/busybox")[0] == 1
    volumes = {v.name: v.attrs for v in swarm.volumes.list(filters={"label": "platform.purpose=tmpfs"})
               if v.name.startswith(f"{prefix}-jvm-app-var-tmp-jvm-")}
    assert sorted(name.rsplit("-", 1)[1] for name in volumes) == ["1", "2"]
    assert {v["Options"]["type"] for v in volumes.values()} == {"tmpfs"}

    inspected = swarm.api.inspect_service(service_id)["Spec"]
    (service,) = plan[SERVICE]
    assert read_back(inspected) == as_sent(wire_values(service.inputs))
    assert read_back(inspected)["volumes"]


HEALTHY_CONF, BROKEN_CONF = "state=healthy\n", "state=broken\n"


def config_spec(image: str, service: str, conf: str, stateful: bool) -> ContainerSpec:
    """The stand-in whose healthcheck reads its config file, so that a new file can break it; with a volume it
    is stateful and updated stop-first (the old task stops before the new one starts)."""
    return dataclasses.replace(
        standin_spec(image, service), files=[FileSpec("/etc/platform/app.conf", conf),
                                             FileSpec("/etc/platform/secrets/token", TOKEN, secret=True)],
        volumes=[VolumeMount("data", "/var/lib/data")] if stateful else [],
        healthcheck=Healthcheck(["CMD", "/bin/busybox", "grep", "-q", "state=healthy", "/etc/platform/app.conf"],
                                interval="1s", timeout="1s", retries=2, start_period="2s"))


@pytest.fixture
def node_labels(swarm):
    """Adds labels to this node (a stateful service's placement) and removes them after the test."""
    node_id = swarm.info()["Swarm"]["NodeID"]
    added: list[str] = []

    def add(constraints: list[str]) -> None:
        labels = constraint_labels(constraints)
        added.extend(labels)
        change_node_labels(swarm, node_id, lambda current: current.update(dict.fromkeys(labels, "true")))

    yield add
    if added:
        change_node_labels(swarm, node_id, lambda current: [current.pop(label, None) for label in added])


@pytest.mark.parametrize("stateful", [False, True], ids=["start-first", "stop-first"])
def test_an_update_to_a_file_that_breaks_the_service_fails_the_up_and_rolls_back_to_the_old_file(
        swarm, standin_image, cleanup, node_labels, stateful):
    """`pulumi up` of a new config whose tasks fail (`engine_update`: the engine's order, the provider's wait).
    Swarm guards only the objects its current spec uses (moby/swarmkit manager/controlapi/config.go
    RemoveConfig, services indexed by Spec alone in manager/state/store/services.go), not the rollback's."""
    prefix = unique("cv")
    engine = Engine(swarm)
    name = f"{prefix}-converge"
    good = definitions(config_spec(standin_image, "converge", HEALTHY_CONF, stateful), prefix)
    (planned,) = good[SERVICE]
    assert planned.inputs["updateConfig"]["order"] == ("stop-first" if stateful else "start-first")
    node_labels(planned.inputs["taskSpec"].get("placement", {}).get("constraints", []))
    if stateful:
        cleanup(type("Volume", (), {"remove": lambda _: swarm.volumes.get(f"{prefix}-data").remove(force=True)})())
    service_id, ids = create(engine, good, cleanup)
    (old_config,) = good[CONFIG]
    assert len(healthy_containers(swarm, name, 2)) == 2, "the create converged: both replicas run healthy"

    broken = definitions(config_spec(standin_image, "converge", BROKEN_CONF, stateful), prefix)
    failure, _ = engine_update(engine, good, broken, ids, service_id, cleanup)

    def settled() -> str | None:
        state = swarm.api.inspect_service(service_id).get("UpdateStatus", {}).get("State")
        return state if state in ("rollback_completed", "rollback_paused", "paused", "completed") else None

    status = wait_for(settled, 120, "the update to settle")
    print("update status:", swarm.api.inspect_service(service_id)["UpdateStatus"])
    assert status == "rollback_completed"
    current = swarm.api.inspect_service(service_id)
    assert [c["ConfigName"] for c in current["Spec"]["TaskTemplate"]["ContainerSpec"]["Configs"]] == [
        old_config.inputs["name"]]
    wait_for(lambda: healthy_containers(swarm, name, 2), 60, "two healthy replicas after the rollback")
    # Every task started from now on (a restart, a rescheduled or an added replica) needs the old file.
    swarm.api.update_service(service_id, current["Version"]["Index"], fetch_current_spec=True,
                             mode=docker.types.ServiceMode("replicated", replicas=3))
    running = wait_for(lambda: healthy_containers(swarm, name, 3), 60, "three healthy replicas after the rollback")
    for container in running:
        code, output = container.exec_run(["/bin/busybox", "cat", "/etc/platform/app.conf"], user="10001")
        assert (code, output.decode()) == (0, HEALTHY_CONF)
    # The step failed: `pulumi up` fails, and the engine deleted nothing.
    assert failure and "rollback" in failure, failure


def test_a_replaced_file_outlives_a_converged_update_for_a_rollback_by_hand_then_is_retired(
        swarm, standin_image, cleanup):
    """The provider's wait returns once every replica runs a task, old or new: before Swarm's update is over
    (tests/swarm/provider.py). The replaced config is retained, so `docker service rollback` after the `up`
    finds it; RetiredFiles removes what neither the spec nor the previous spec uses, and all once the service
    is gone."""
    prefix = unique("rh")
    engine = Engine(swarm)
    name = f"{prefix}-retire"
    first = definitions(config_spec(standin_image, "retire", HEALTHY_CONF, False), prefix)
    service_id, ids = create(engine, first, cleanup)
    second = definitions(config_spec(standin_image, "retire", HEALTHY_CONF + "generation=2\n", False), prefix)
    (old_config,), (new_config,) = first[CONFIG], second[CONFIG]
    assert all(r.retain_on_delete for r in (*first[CONFIG], *first[SECRET]))
    failure, _ = engine_update(engine, first, second, ids, service_id, cleanup)
    assert failure is None
    update = swarm.api.inspect_service(service_id).get("UpdateStatus", {})
    print("Swarm's update when the provider returned:", update)
    assert swarm.configs.get(ids[f"{old_config.name}-id"]).name == old_config.inputs["name"], "retained"

    def settled(states: tuple[str, ...]) -> Callable[[], str | None]:
        def state() -> str | None:
            value = swarm.api.inspect_service(service_id).get("UpdateStatus", {}).get("State")
            return value if value in states else None
        return state

    assert wait_for(settled(("completed", "rollback_completed", "paused")), 120, "the update") == "completed"
    # `docker service rollback` (docker/cli cli/command/service/rollback.go): the current spec, rollback=previous.
    current = swarm.api.inspect_service(service_id)
    engine.post(f"/services/{service_id}/update", current["Spec"], version=current["Version"]["Index"],
                rollback="previous")
    assert wait_for(settled(("rollback_completed", "rollback_paused")), 120, "the rollback") == "rollback_completed"
    running = wait_for(lambda: healthy_containers(swarm, name, 2), 60, "two healthy replicas after the rollback")
    for container in running:
        code, output = container.exec_run(["/bin/busybox", "cat", "/etc/platform/app.conf"], user="10001")
        assert (code, output.decode()) == (0, HEALTHY_CONF)

    # The next `up` retires what neither the spec (the first generation, rolled back to) nor the previous spec
    # (the second) uses: an older generation of this service's file, and nothing of another stack's.
    path, labels = "/etc/platform/app.conf", _labels(old_config.inputs["labels"])
    stale = cleanup(swarm.configs.create(name=object_name(prefix, "retire", path, "generation=0\n"),
                                         data=b"generation=0\n", labels=labels))
    foreign = cleanup(swarm.configs.create(name=object_name(f"{prefix}x", "retire", path, "generation=0\n"),
                                           data=b"generation=0\n", labels=labels))
    third = object_name(prefix, "retire", path, "generation=3\n")
    assert retire({**retired_props(second), "current": [third]}) == [stale.name]
    kept = {c.name for c in swarm.configs.list(filters={"label": "platform.service=retire"})}
    assert {old_config.inputs["name"], new_config.inputs["name"], foreign.name} <= kept

    # `pulumi destroy`: the service goes first (it depends on RetiredFiles), then RetiredFiles removes the rest.
    swarm.api.remove_service(service_id)
    retired = retire({**retired_props(second), "current": []})
    assert set(retired) == {r.inputs["name"] for plan in (first, second) for r in (*plan[CONFIG], *plan[SECRET])}
    assert foreign.name in {c.name for c in swarm.configs.list(filters={"label": "platform.service=retire"})}
