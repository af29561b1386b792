"""The runner's speed measures (collector paused, Outputs awaited together) change nothing in the plan, and
plans are byte-for-byte reproducible."""

from __future__ import annotations

import contextlib
import gc
import json
import subprocess
import sys

import pulumi
import pytest

import infra.mockrun
from infra.cli import REPO_ROOT, plan_report
from infra.mockrun import load_project, run_program, run_under_mocks

STACKS = ("dev", "staging", "prod")


def plan_json(stack: str) -> str:
    return json.dumps(plan_report(run_program(load_project(REPO_ROOT, stack), stack)), indent=2)


@pytest.mark.parametrize("stack", STACKS)
def test_plan_is_the_same_with_and_without_the_speed_measures(stack, monkeypatch):
    fast = plan_json(stack)

    async def nothing() -> None:
        return None

    # The SDK's own path: collections whenever they come, every Output left to its final wait.
    monkeypatch.setattr(infra.mockrun, "settle_outputs", nothing)
    monkeypatch.setattr(infra.mockrun, "collector_paused", contextlib.nullcontext)
    monkeypatch.setattr("infra.fastrun.settle_outputs", nothing)
    monkeypatch.setattr("infra.fastrun.collector_paused", contextlib.nullcontext)
    slow = plan_json(stack)
    assert fast == slow
    assert json.loads(fast)["counts"]["docker:index/container:Container"] > 20


@pytest.mark.parametrize("output_format", ["text", "json"])
def test_two_plans_print_the_same_bytes(output_format):
    runs = [subprocess.run([sys.executable, "-m", "infra.cli", "plan", "--stack", "prod", "--format",
                            output_format], capture_output=True, cwd=REPO_ROOT, timeout=120, check=True).stdout
            for _ in range(2)]
    assert runs[0] == runs[1]
    assert runs[0].count(b"\n") > 100


def test_collector_state_is_restored_after_a_run():
    assert gc.isenabled()
    states = []

    def program() -> None:
        states.append(gc.isenabled())
        pulumi.CustomResource("test:index:Thing", "thing", {"value": 1})

    run_under_mocks(program, "p", "s")
    assert states == [False] and gc.isenabled()
    gc.disable()
    try:
        run_under_mocks(program, "p", "s")
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_failing_output_still_fails_the_run():
    def program() -> None:
        thing = pulumi.CustomResource("test:index:Thing", "thing", {"value": 1})
        thing.urn.apply(lambda _: 1 / 0)

    with pytest.raises(ZeroDivisionError):
        run_under_mocks(program, "p", "s")


def test_outputs_created_while_settling_are_awaited_too():
    seen = []

    def program() -> None:
        first = pulumi.CustomResource("test:index:Thing", "first", {"value": 1})
        # An apply that registers another resource, whose own outputs then chain once more.
        first.urn.apply(lambda _: pulumi.CustomResource("test:index:Thing", "second", {"value": 2})
                        .urn.apply(seen.append))

    run = run_under_mocks(program, "p", "s")
    assert [r.name for r in run.resources] == ["first", "second"]
    assert len(seen) == 1
