"""A real single-node Swarm (the local Docker engine) and a stand-in image for its services.

No registry is reachable, so the stand-in image is imported (`docker import`) from Debian's busybox-static:
one static binary, enough for a service that sleeps, answers a healthcheck or fails one. Everything created
here is named `i11-<random>` and removed after the test.
"""

from __future__ import annotations

import io
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from tests.conftest import ON_CI, require_tool

BUSYBOX = "/bin/busybox"


@pytest.fixture(scope="session")
def swarm() -> docker.DockerClient:
    """A client of the local engine, which must be an active Swarm manager."""
    require_tool("docker", "docker.io")
    try:
        client = docker.from_env()
        state = client.info()["Swarm"]
    except docker.errors.DockerException as error:
        message = f"no Docker engine answers ({error}); .ci/run starts dockerd"
        if ON_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    if state.get("LocalNodeState") != "active" or not state.get("ControlAvailable"):
        message = "the Docker engine is not a Swarm manager; .ci/run runs `docker swarm init`"
        if ON_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return client


def unique(kind: str) -> str:
    return f"i11-{kind}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def standin_image(swarm: docker.DockerClient) -> Iterator[str]:
    """`i11-standin-<random>:1`, a root filesystem of busybox-static alone, imported into the engine."""
    busybox = require_tool("busybox", "busybox-static")
    # The image holds this one file: it must need no dynamic loader (Debian's busybox package does).
    if not Path(BUSYBOX).is_file() or b"ld-linux" in Path(BUSYBOX).read_bytes()[:4096]:
        pytest.fail(f"{BUSYBOX} is missing or not static (Debian: busybox-static); found {busybox}", pytrace=False)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for directory, mode in (("bin", 0o755), ("tmp", 0o1777)):
            entry = tarfile.TarInfo(directory)
            entry.type, entry.mode = tarfile.DIRTYPE, mode
            tar.addfile(entry)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in ("sh", "sleep", "test", "cat", "wget", "httpd", "mkdir", "hostname"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    repository = unique("standin")
    swarm.api.import_image_from_data(archive.getvalue(), repository=repository, tag="1")
    image = f"{repository}:1"
    yield image
    swarm.images.remove(image, force=True)


@pytest.fixture
def cleanup(swarm: docker.DockerClient) -> Iterator[Callable[[object], object]]:
    """Register a Swarm object (service, secret, config, network) to be removed after the test; services
    first, since they hold the others."""
    created: list[object] = []
    yield lambda thing: created.append(thing) or thing
    for thing in sorted(created, key=lambda t: not isinstance(t, docker.models.services.Service)):
        for _ in range(60):  # a network stays in use until the removed service's tasks have left it
            try:
                thing.remove()
                break
            except docker.errors.NotFound:
                break
            except docker.errors.APIError:
                time.sleep(0.5)
