"""Shared test harness: Pulumi mocks that record every registration, reset between tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest

from platform_infra.infra.mockrun import PlanMocks, ProgramRun, Registration, run_under_mocks

ON_CI = os.environ.get("CI") == "true"


def require_tool(name: str, debian_package: str | None = None) -> str:
    """Path of a system tool the test needs: skipped locally when absent, a failure on CI (CI=true), where a
    check that silently vanished would pass."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None)
    if path:
        return path
    message = f"{name} not found (Debian: apt-get install {debian_package or name}; .ci/run installs it)"
    if ON_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


class CountingMocks(PlanMocks):
    def __init__(self) -> None:
        self.created: list[str] = []

    def new_resource(self, args):
        self.created.append(args.name)
        return super().new_resource(args)


def deploy(program: Callable[[], object], preview: bool = False, mocks: PlanMocks | None = None) -> ProgramRun:
    """Run `program` in a fresh stack under the recording mocks, exactly as `infra plan` runs a project."""
    return run_under_mocks(program, "platform", "test", mocks=mocks, preview=preview)


def registered(run: ProgramRun, type_: str) -> list[Registration]:
    return [r for r in run.resources if r.type == type_]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # On CI a skipped test is a test that did not run: fail the run instead of passing quietly.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if ON_CI and reporter is not None and reporter.stats.get("skipped"):
        reporter.write_line(f"CI: {len(reporter.stats['skipped'])} skipped test(s); failing the run", red=True)
        session.exitstatus = 1
