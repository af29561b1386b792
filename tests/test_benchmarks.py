"""`make benchmark` runs to the end: its short mode (the same scripts, fewer and smaller runs) exits 0 and ends
each benchmark with one verdict line per goal."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import require_tool
from tests.test_setup import REPO_ROOT

VERDICT = re.compile(r"^goal: (.+): (met|NOT met) \((.+)\)$", re.MULTILINE)


@pytest.mark.timeout(600)
def test_benchmark_quick_runs_to_the_end_with_a_verdict_per_goal():
    require_tool("make")
    result = subprocess.run(["make", "--no-print-directory", "benchmark-quick"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    goals = [goal for goal, _, _ in VERDICT.findall(result.stdout)]
    assert goals == [
        "plan within 1.2x of the floor at every size (docker)",
        "plan within 1.2x of the floor at every size (swarm)",
        "the resource count does not grow with the workers (swarm)",
        "policies add under 20% to the plan (in-process, median)",
        "infra check takes under 20% more than infra plan (fresh processes, best)",
        "infra check takes under 3x the bare SDK import (fresh processes, best)",
        "the physical restore is faster than the logical one at the largest size",
    ], result.stdout
    assert "Traceback" not in result.stderr


def test_the_swarm_benchmark_refuses_more_workers_than_a_policy_allows():
    result = subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "python"), "benchmarks/plan_scaling.py", "--runtime",
                             "swarm", "--workers", "3", "501"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == ("plan_scaling.py: error: --workers: with --runtime swarm at most 500 "
                                             "(autoscaling.workers.max_replicas)")
