"""A stack's plan deployed on the real Docker engine, as `pulumi up` would deploy it.

The plan is the program's own registrations (infra/mockrun.py, with the providers of tests/live/providers.py so
that generated credentials and certificates are real). Each resource is sent to the Engine API the way
kreuzwerker/terraform-provider-docker (under pulumi-docker 4.x/5.x) sends it, and in the engine's order:
a resource is created once every resource it depends on (`depends_on`, and every resource an input came from;
a component stands for all of its children) is created, in parallel otherwise (pulumi/pulumi
pkg/resource/deploy/step_executor.go). A container with `wait` counts as created once healthy
(resource_docker_container_funcs.go, resourceDockerContainerCreate: `wait` polls State.Health until healthy,
fails on unhealthy or after `wait_timeout`).

What it does not do, as the engine would: pull images (none can be pulled here: the images exist locally, built by
tests/live/images.py and tagged with the stack's references) and keep a state (`down` removes by name).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, ClassVar

import docker

from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import ProgramRun, Registration, load_project, run_program
from tests.helpers import reveal
from tests.live.plan import (
    CONTAINER,
    NETWORK,
    VOLUME,
    create_container,
    daemon_nofile_limit,
    free_port,
    on_this_engine,
)
from tests.live.providers import LiveMocks

REMOTE_IMAGE, BUILT_IMAGE = "docker:index/remoteImage:RemoteImage", "docker:index/image:Image"
DOCKER_TYPES = {CONTAINER, NETWORK, VOLUME, REMOTE_IMAGE, BUILT_IMAGE}


def _merge(base: dict, update: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def live_plan(stack: str, settings_update: dict | None = None, secrets: dict[str, str] | None = None) -> ProgramRun:
    """The stack's plan as `pulumi up` would register it, its settings updated (a test's schedule, a local
    endpoint) and its config secrets set."""
    project = load_project(REPO_ROOT, stack)
    config = dict(project.config)
    settings = json.loads(config["platform:settings"])
    config["platform:settings"] = json.dumps(_merge(on_this_engine(settings), settings_update or {}))
    secret_keys = list(project.secret_keys)
    for key, value in (secrets or {}).items():
        config[f"platform:{key}"] = value
        secret_keys.append(f"platform:{key}")
    project = dataclasses.replace(project, config=config, secret_keys=secret_keys)
    run = run_program(project, stack, mocks=LiveMocks(), preview=False)
    run.settings = json.loads(config["platform:settings"])
    return run


def host_ulimits(ulimits: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Ulimits lowered to the engine's own hard limit where they exceed it (runc cannot grant more: the Debian
    package's docker.service runs dockerd with LimitNOFILE=infinity, this sandbox with a limit it may not
    raise), and a note for each lowering."""
    limit, lowered, notes = daemon_nofile_limit(), [], []
    for ulimit in ulimits:
        if int(ulimit["hard"]) > limit:
            notes.append(f"ulimit {ulimit['name']} {ulimit['hard']} lowered to {limit}, the engine's own limit here")
            ulimit = {**ulimit, "soft": min(int(ulimit["soft"]), limit), "hard": limit}
        lowered.append(ulimit)
    return lowered, notes


@dataclass
class Created:
    kind: str
    name: str
    seconds_to_ready: float | None = None


@dataclass
class DockerDeployment:
    """The plan's Docker objects on the engine; object names get `prefix` instead of the stack's own."""

    client: docker.DockerClient
    run: ProgramRun
    prefix: str
    stack_prefix: str
    host_ports: dict[int, int] = field(default_factory=dict)
    """Published ports: the container port -> a free loopback port (the host is shared with other tests)."""
    created: dict[str, Created] = field(default_factory=dict)
    host_differences: set[str] = field(default_factory=set)
    """Where this host cannot run a definition as sent, and what it runs instead."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    kinds: ClassVar[frozenset[str]] = frozenset(DOCKER_TYPES)
    """The resource types it creates (the Swarm deployment, tests/live/swarm_deploy.py, names its own)."""

    def __post_init__(self) -> None:
        self.by_urn = {r.urn: r for r in self.run.resources}
        self.children: dict[str, list[str]] = {}
        for r in self.run.resources:
            if r.parent:
                self.children.setdefault(r.parent, []).append(r.urn)
        for r in self.of_type(CONTAINER):
            for p in r.inputs.get("ports", []):
                self.host_ports.setdefault(int(p["internal"]), free_port())

    def of_type(self, kind: str) -> list[Registration]:
        return [r for r in self.run.resources if r.type == kind]

    def local(self, name: str) -> str:
        return name.replace(self.stack_prefix, self.prefix, 1)

    def inputs(self, r: Registration) -> dict[str, Any]:
        return reveal(r.inputs)

    def _custom_below(self, urn: str) -> set[str]:
        """A resource, or for a component every custom resource below it."""
        r = self.by_urn.get(urn)
        if r is None:
            return set()
        if r.custom:
            return {urn}
        return set().union(*(self._custom_below(child) for child in self.children.get(urn, [])))

    def needs(self, r: Registration) -> set[str]:
        direct = set(r.dependencies) | {u for urns in r.property_dependencies.values() for u in urns}
        return {u for d in direct for u in self._custom_below(d)
                if self.by_urn[u].type in self.kinds and u != r.urn}

    def image_of(self, r: Registration, key: str = "image") -> str:
        """The local tag of the image a container runs: the RemoteImage its `image` input came from."""
        source = next(self.by_urn[u] for u in r.property_dependencies.get(key, [])
                      if self.by_urn[u].type in (REMOTE_IMAGE, BUILT_IMAGE))
        return source.inputs.get("name") or source.inputs["imageName"]

    # -- creation, one resource at a time, as the provider's Create does -------------------------------------

    def _network(self, r: Registration) -> None:
        i = self.inputs(r)
        self.client.api.create_network(
            self.local(i["name"]), driver=i.get("driver", "bridge"), internal=i.get("internal", False),
            attachable=i.get("attachable", False), options=i.get("options"),
            labels={item["label"]: item["value"] for item in i.get("labels", [])})

    def _volume(self, r: Registration) -> None:
        i = self.inputs(r)
        self.client.api.create_volume(self.local(i["name"]),
                                      labels={item["label"]: item["value"] for item in i.get("labels", [])})

    def _image(self, r: Registration) -> None:
        name = r.inputs.get("name") or r.inputs["imageName"]
        try:
            self.client.images.get(name)
        except docker.errors.ImageNotFound:
            raise RuntimeError(f"image {name} is not on the engine: build it with `python -m tests.live.images`") \
                from None

    def _container(self, r: Registration) -> float | None:
        i = self.inputs(r)
        api = self.client.api
        container = create_container(self.client, self.image_of(r), self.within_host_limits(i), self.host_ports,
                                     rename=self.local)
        if i.get("start", True) is False:
            return None
        started = time.monotonic()
        api.start(container)
        if not i.get("wait"):
            return None
        deadline = started + int(i.get("waitTimeout", 60))
        while True:
            state = api.inspect_container(container)["State"]
            health = state.get("Health", {}).get("Status")
            if health == "healthy":
                return time.monotonic() - started
            if health == "unhealthy" or not state["Running"] and state["Status"] != "restarting":
                raise RuntimeError(f"container {self.local(i['name'])} is {health or state['Status']}:\n"
                                   + self.logs(self.local(i["name"])))
            if time.monotonic() > deadline:
                raise RuntimeError(f"container {self.local(i['name'])} not healthy within its wait_timeout "
                                   f"{i.get('waitTimeout')} s:\n" + self.logs(self.local(i["name"])))
            time.sleep(0.5)

    def within_host_limits(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The definition with its ulimits as this host can grant them (`host_ulimits`); each lowering is
        recorded in `host_differences`."""
        ulimits, notes = host_ulimits(inputs.get("ulimits", []))
        self.host_differences |= {f"{inputs['name']}: {note}" for note in notes}
        return {**inputs, "ulimits": ulimits} if ulimits else inputs

    def logs(self, name: str, lines: int = 40) -> str:
        try:
            return self.client.api.logs(name, tail=lines).decode(errors="replace")
        except docker.errors.APIError as error:
            return str(error)

    def _create(self, r: Registration) -> None:
        create: dict[str, Callable[[Registration], Any]] = {
            NETWORK: self._network, VOLUME: self._volume, REMOTE_IMAGE: self._image, BUILT_IMAGE: self._image,
            CONTAINER: self._container}
        ready = create[r.type](r)
        name = self.local(self.inputs(r).get("name") or r.inputs.get("imageName", r.name))
        with self.lock:
            self.created[r.urn] = Created(r.type, name, ready)

    def up(self) -> None:
        """Every Docker resource of the plan, each once its dependencies are created (a thread each, as the
        engine runs independent steps in parallel); raises the first failure."""
        todo = [r for r in self.run.resources if r.type in self.kinds]
        futures: dict[str, Future] = {r.urn: Future() for r in todo}

        def after(r: Registration) -> None:
            try:
                for urn in self.needs(r):
                    futures[urn].result()
                self._create(r)
                futures[r.urn].set_result(None)
            except BaseException as error:  # noqa: BLE001 - handed to the dependents and to the caller
                futures[r.urn].set_exception(error)

        threads = [threading.Thread(target=after, args=(r,), daemon=True) for r in todo]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        failures = [futures[r.urn].exception() for r in todo if futures[r.urn].exception() is not None]
        # The root causes: a dependent fails with its dependency's own error, raised again.
        if failures:
            raise failures[0]

    def down(self) -> None:
        """Everything the plan names, whether or not `up` got to it: containers, then volumes and networks."""
        api = self.client.api
        for r in self.of_type(CONTAINER):
            try:
                # v: with the anonymous volumes an image's VOLUME gives a container.
                api.remove_container(self.local(self.inputs(r)["name"]), force=True, v=True)
            except docker.errors.NotFound:
                pass
        for kind, remove in ((VOLUME, api.remove_volume), (NETWORK, api.remove_network)):
            for r in self.of_type(kind):
                try:
                    remove(self.local(self.inputs(r)["name"]))
                except docker.errors.NotFound:
                    pass
