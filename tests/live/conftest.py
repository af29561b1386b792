"""The live tests' Docker engine (the engine tests' session fixture: it must answer; `.ci/run` starts one), and
every image the prod plan runs, built or found in the builder's cache."""

from __future__ import annotations

import pytest

from tests.engine.conftest import engine  # noqa: F401 - a fixture, shared


@pytest.fixture(scope="session")
def live_images(engine) -> dict[str, str]:  # noqa: F811 - the fixture above
    """Each image reference -> what it runs ("PostgreSQL 15.20 ..." or "stand-in: ...")."""
    from tests.live.images import build_all

    described: dict[str, str] = {}
    for result in build_all(engine, describe_images=True, log=lambda line: None):
        for reference in result.reference.split(", "):
            described[reference] = result.software
    return described
