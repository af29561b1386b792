"""A real Docker engine for the tests: the daemon must answer (`.ci/run` starts one)."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import ON_CI

# Every object a test creates carries this prefix, so a failed run never touches anything else on the daemon.
PREFIX = f"issue9-{uuid.uuid4().hex[:8]}"


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
