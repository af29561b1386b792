"""The live tests' Docker engine: the engine tests' session fixture (it must answer; `.ci/run` starts one)."""

from tests.engine.conftest import engine  # noqa: F401 - a fixture, shared
