"""The autoscaler as the stack runs it: images/autoscaler built from this checkout, run as a container on the
host's network as the stack's user, reaching the engine through its socket proxy (HAProxy with the stack's
rendered haproxy.cfg, as the stack runs it: user 99:<socket group>, read-only, no capability), published on a
loopback port (the live tests and benchmarks/time_to_scale.py)."""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
import threading
import time
import uuid
from typing import Self

import docker
import yaml
from prometheus_client.parser import text_string_to_metric_families

from platform_infra.components.autoscaler import USER
from platform_infra.components.autoscaling import ScalingPolicy
from platform_infra.components.socketproxy import (
    DOCKER_SOCKET,
    PROXY_CONFIG,
    PROXY_PORT,
    autoscaler_calls,
    proxy_spec,
)
from platform_infra.infra.settings import Images
from tests.monitoring.conftest import free_port, http_request


def build_autoscaler(client: docker.DockerClient, prefix: str) -> str:
    """images/autoscaler built from this checkout as tests/live/images.py builds it, under a tag of its own
    (`<prefix>-autoscaler:<inputs hash>`: the shared tag may hold another checkout's build)."""
    from tests.live import images

    python = images._dockerfile_from(images.AUTOSCALER_DOCKERFILE)
    standin = next((s for s in images.load_standins() if python in s.tags), None)
    if standin is None or not client.images.list(name=python):
        raise RuntimeError(f"the python stand-in {python} is not built: .venv/bin/python -m tests.live.images")
    wanted = images.inputs_hash(standin.hash, images.REPO_ROOT,
                                images._copied_paths(images.AUTOSCALER_DOCKERFILE, images.REPO_ROOT))
    tag = f"{prefix}-autoscaler:{wanted[:12]}"
    images.build_image(client, context=images.REPO_ROOT, dockerfile=images.AUTOSCALER_DOCKERFILE, tags=(tag,),
                       wanted=wanted)
    return tag


class EngineProxy:
    """The autoscaler's socket proxy for `service`, as components/socketproxy.py defines it."""

    def __init__(self, client: docker.DockerClient, service: str, name: str) -> None:
        spec = proxy_spec("autoscaler", autoscaler_calls(service), Images().socket_proxy,
                          os.stat(DOCKER_SOCKET).st_gid, "2099-12-31")
        if not client.images.list(name=spec.image):
            raise RuntimeError(f"the HAProxy image {spec.image} is not built: .venv/bin/python -m tests.live.images")
        self.config = tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False)  # noqa: SIM115 - removed in stop
        self.config.write(spec.files[0].content)
        self.config.close()
        os.chmod(self.config.name, 0o444)
        self.port = free_port()
        self.container = client.containers.run(
            spec.image, spec.command, name=name, user=spec.user, read_only=True, cap_drop=["ALL"],
            security_opt=["no-new-privileges"], detach=True, labels={"platform.test": "issue20"},
            volumes={DOCKER_SOCKET: {"bind": DOCKER_SOCKET, "mode": "ro"},
                     self.config.name: {"bind": PROXY_CONFIG, "mode": "ro"}},
            ports={f"{PROXY_PORT}/tcp": ("127.0.0.1", self.port)})
        self.url = f"tcp://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if http_request(f"http://127.0.0.1:{self.port}/proxy-health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the socket proxy did not answer: {self.container.logs().decode()[-2000:]}")

    def stop(self) -> None:
        self.container.remove(force=True, v=True)
        os.unlink(self.config.name)


class Controller:
    """The image's container on the host's network (it reaches the scripted Prometheus on loopback), reading
    its JSON lines as they come; the engine only through its socket proxy."""

    def __init__(self, swarm: docker.DockerClient, image: str, service: str, prometheus_url: str,
                 policy: ScalingPolicy) -> None:
        self.metrics_port = free_port()
        name = f"{image.split(':')[0]}-{uuid.uuid4().hex[:8]}"
        self.proxy = EngineProxy(swarm, service, f"{name}-proxy")
        self.container = swarm.containers.create(
            image, ["--service", service, "--prometheus-url", prometheus_url, "--policy", "/tmp/policy.yaml",
                    "--metrics-port", str(self.metrics_port), "--metrics-address", "127.0.0.1",
                    "--docker-host", self.proxy.url],
            name=name, network_mode="host", labels={"platform.test": "issue18"}, user=USER)
        archive = io.BytesIO()
        data = yaml.safe_dump(policy.model_dump()).encode()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            entry = tarfile.TarInfo("policy.yaml")
            entry.size, entry.mode = len(data), 0o444
            tar.addfile(entry, io.BytesIO(data))
        self.container.put_archive("/tmp", archive.getvalue())
        self.lines: list[dict] = []
        self.arrived: list[float] = []
        """When each line was read: after the decision was applied."""
        self.metrics: list[dict] = []
        self.done = threading.Event()

    def __enter__(self) -> Self:
        self.container.start()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._scrape, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.container.stop(timeout=10)
        self.exit_code = self.container.wait(timeout=20)["StatusCode"]
        self.errors = self.container.logs(stdout=False, stderr=True).decode()
        self.container.remove(v=True, force=True)
        self.proxy_log = self.proxy.container.logs().decode()
        self.proxy.stop()

    def _read(self) -> None:
        buffer = b""
        for chunk in self.container.logs(stream=True, follow=True, stdout=True, stderr=False):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                self.arrived.append(time.time())
                self.lines.append(json.loads(line))

    def _scrape(self) -> None:
        while not self.done.wait(0.2):
            try:
                text = http_request(f"http://127.0.0.1:{self.metrics_port}/metrics")[1]
            except OSError:
                continue
            self.metrics.append({s.name: s.value for family in text_string_to_metric_families(text)
                                 for s in family.samples if s.name.startswith("autoscaler_")
                                 and "cap" not in s.labels and "mode" not in s.labels})

    def wait_for(self, count: int, timeout: float = 90) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.lines) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(self.lines) >= count, (self.lines, self.container.logs(stderr=True).decode())
        return self.lines[:count]


def running_tasks(swarm: docker.DockerClient, name: str) -> int:
    tasks = swarm.api.tasks(filters={"service": name, "desired-state": "running"})
    return sum(task["Status"]["State"] == "running" for task in tasks)


def wait_running(swarm: docker.DockerClient, name: str, replicas: int, timeout: float = 60) -> float:
    started = time.monotonic()
    while running_tasks(swarm, name) != replicas:
        assert time.monotonic() - started < timeout, f"{name}: {running_tasks(swarm, name)} running, not {replicas}"
        time.sleep(0.2)
    return time.monotonic() - started


