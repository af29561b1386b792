"""Harness for the policy tests: every evaluation goes through `platform_infra.infra.check.evaluate`, as `infra check` does
(policy config resolution, then the SDK servicer's Configure/Analyze/AnalyzeStack on wire-form props)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from platform_infra.infra.check import Report, evaluate
from platform_infra.infra.mockrun import ProgramRun, Registration
from tests.policies.fixtures import DAEMON_ATTESTED, PROJECT, STACK, secure_stack

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "insecure"


def as_run(resources: list[Registration]) -> ProgramRun:
    # Stack policies read outputs; in preview the engine propagates inputs into them, and so do we.
    for resource in resources:
        resource.outputs = {**resource.outputs, **copy.deepcopy(resource.inputs)}
    return ProgramRun(PROJECT, STACK, resources, {})


@pytest.fixture
def check(tmp_path: Path) -> Callable[..., Report]:
    """check(resources=None, config=None, mutate=None) -> Report; config merges over the attested daemon,
    `mutate(resources)` edits the list (default: the secure stack) before evaluation."""

    def run(
        resources: list[Registration] | None = None,
        config: dict | None = None,
        mutate: Callable[[list[Registration]], None] | None = None,
        attested: bool = True,
    ) -> Report:
        resources = secure_stack() if resources is None else resources
        if mutate is not None:
            mutate(resources)
        merged = {**(DAEMON_ATTESTED if attested else {}), **(config or {})}
        path = tmp_path / "policy-config.json"
        path.write_text(json.dumps(merged))
        return evaluate(as_run(resources), path)

    return run


def named(resources: list[Registration], name: str) -> Registration:
    return next(r for r in resources if r.name == name)


def ids(report: Report, enforcement: str | None = None) -> set[str]:
    return {v["rule"] for v in report.violations if enforcement is None or v["enforcement"] == enforcement}


def messages(report: Report, rule: str) -> list[str]:
    return [
        f"{v['resource'].rsplit('::', 1)[-1]}: {v['message']}" for v in report.violations if v["rule"] == rule
    ]
