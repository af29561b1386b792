"""Shared test harness: Pulumi mocks that record every registration, reset between tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest

from platform_infra.infra.mockrun import PlanMocks, ProgramRun, Registration, run_under_mocks

ON_CI = os.environ.get("CI") == "true"

SERIAL_GROUPS = {
    "swarm": ("tests/live/test_live_swarm.py", "tests/live/test_load_balancer_temp_paths.py",
              "tests/swarm/test_swarm_runtime_live.py", "tests/swarm/test_autoscale_live.py",
              "tests/swarm/test_autoscaler_image_live.py"),
    "docker-stack": ("tests/live/",),
}
"""`make test` runs the suite on two xdist workers (`-n 2`). Each group here runs on one worker, its modules one
after the other, since they share what two at once would fight over: the Swarm modules the one node's CPU and
memory reservations, the Docker live modules the engine's bridge address pools (a stack takes 14 of about 29).
Every other module is a group of its own. The two go first, so both stacks run side by side and the rest fills
in around them."""


def xdist_group(nodeid: str) -> str:
    path = nodeid.split("::")[0]
    return next((name for name, paths in SERIAL_GROUPS.items() if path.startswith(paths)), path)


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """xdist's scheduler by scope, the scope being the group. (Not `--dist loadgroup`: with pytest 9 its marks
    never reach the scheduler, since xdist/remote.py renames `item._nodeid`, which pytest no longer reads.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid)

    return ByGroup(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Stable: within a group, and among the other modules, collection order stays.
    first = list(SERIAL_GROUPS)
    items.sort(key=lambda item: first.index(g) if (g := xdist_group(item.nodeid)) in first else len(first))


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
