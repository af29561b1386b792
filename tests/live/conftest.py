"""The live stack's fixtures: the real engine, and every image the prod plan runs, built or found in the cache."""

from __future__ import annotations

import pytest

from tests.engine.conftest import engine  # noqa: F401 - the real engine, shared with the engine tests


@pytest.fixture(scope="session")
def live_images(engine):  # noqa: F811
    """Each image reference -> what it runs ("PostgreSQL 15.20 (Debian ...)" or "stand-in: ...")."""
    from tests.live.images import build_all
    return build_all(engine)
