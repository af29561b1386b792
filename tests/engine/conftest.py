"""A real Docker engine for the tests: the daemon must answer (`.ci/run` starts one), and a stand-in image is
built locally from busybox-static with `docker import` (no registry is reachable)."""

from __future__ import annotations

import io
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ON_CI, require_tool

# Every object a test creates carries this prefix, so a failed run never touches anything else on the daemon.
PREFIX = f"issue9-{uuid.uuid4().hex[:8]}"
# Whatever command a definition gives, the stand-in keeps running: `sh -c '...' standin <command...>`.
STANDIN_ENTRYPOINT = '["/bin/sh", "-c", "exec sleep 600", "standin"]'
BUSYBOX_LINKS = ("sh", "sleep", "cat", "wget", "true", "ls", "id")


def _unavailable(message: str) -> None:
    if ON_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def engine():
    docker = pytest.importorskip("docker") if not ON_CI else __import__("docker")
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any reason the daemon does not answer
        _unavailable(f"no Docker engine answers ({exc}); .ci/run starts dockerd")
    yield client
    client.close()


@pytest.fixture(scope="session")
def standin_image(engine) -> Iterator[str]:
    """An image holding busybox-static, whose entrypoint sleeps whatever command it is given."""
    busybox = Path(require_tool("busybox", "busybox-static")).resolve()
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for directory, mode in (("bin", 0o755), ("etc", 0o755), ("etc/platform", 0o755), ("tmp", 0o1777)):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for name in BUSYBOX_LINKS:
            link = tarfile.TarInfo(f"bin/{name}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    tag = f"{PREFIX}-standin:1"
    engine.api.import_image_from_data(data.getvalue(), repository=f"{PREFIX}-standin", tag="1",
                                      changes=[f"ENTRYPOINT {STANDIN_ENTRYPOINT}"])
    yield tag
    engine.api.remove_image(tag, force=True)
