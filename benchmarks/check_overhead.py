"""What the policy pack adds to a plan: `infra check` beside `infra plan` on the same stack, in-process.

    python benchmarks/check_overhead.py [--stack prod] [--project .] [--repeat 7] [--json]

Each repetition runs the program under mocks (the plan), then evaluates the pack through the SDK servicer
(the check = plan + evaluation); medians are reported, with the cost per analyzed resource and the same
evaluation with every policy offered every resource (what the engine itself does). Then the commands
themselves, as a user runs them (fresh processes, imports included): `infra check` minus `infra plan`,
and `infra check` beside the bare import of the Pulumi SDKs it builds on.
Goals: policies add under 20% to the plan, and `infra check` takes under 3x the bare import.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from infra.check import evaluate, render
from infra.mockrun import load_project, run_program
from policies.policy_config import default_path

REPO_ROOT = Path(__file__).resolve().parent.parent
GOAL = 0.20
IMPORT_GOAL = 3.0
BARE_IMPORT = "import pulumi, pulumi_docker, pulumi_random, pulumi_tls, pulumi_policy"


def _timed(function, *args, **kwargs):
    start = time.perf_counter()
    # Programs may log warnings; keep the benchmark's own output readable.
    with contextlib.redirect_stderr(io.StringIO()):
        result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def measure(project_dir: Path, stack: str, repeat: int) -> dict:
    config = default_path(stack)
    plan_times, check_times, evaluate_times, whole_times = [], [], [], []
    run = None
    _timed(run_program, load_project(project_dir, stack), stack)  # warm imports and caches once
    for _ in range(repeat):
        plan_time, run = _timed(run_program, load_project(project_dir, stack), stack)
        evaluate_time, report = _timed(evaluate, run, config)
        render(report, "json")
        whole_time, _ = _timed(evaluate, run, config, split_by_type=False)
        plan_times.append(plan_time)
        evaluate_times.append(evaluate_time)
        check_times.append(plan_time + evaluate_time)
        whole_times.append(whole_time)
    analyzed = sum(1 for r in run.resources if r.custom)
    plan, evaluation = statistics.median(plan_times), statistics.median(evaluate_times)
    return {
        "stack": stack,
        "resources": len(run.resources),
        "analyzed_resources": analyzed,
        "repetitions": repeat,
        "plan_s": round(plan, 4),
        "check_s": round(statistics.median(check_times), 4),
        "policy_s": round(evaluation, 4),
        "overhead": round(evaluation / plan, 3),
        "per_resource_ms": round(evaluation / analyzed * 1000, 3),
        "every_policy_every_resource_s": round(statistics.median(whole_times), 4),
        "goal": GOAL,
        "goal_met": evaluation / plan < GOAL,
    }


def wall_seconds(command: list[str], repeat: int, cwd: Path) -> float:
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, cwd=cwd, capture_output=True, check=False)
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def measure_commands(project_dir: Path, stack: str, repeat: int) -> dict:
    """Fresh processes, interleaved so that machine load hits each command alike."""
    infra = [sys.executable, "-m", "infra.cli"]
    where = ["--stack", stack, "--project", str(project_dir)]
    plan, check, bare = [], [], []
    for _ in range(repeat):
        plan.append(wall_seconds([*infra, "plan", *where], 1, REPO_ROOT))
        check.append(wall_seconds([*infra, "check", *where], 1, REPO_ROOT))
        bare.append(wall_seconds([sys.executable, "-c", BARE_IMPORT], 1, REPO_ROOT))
    plan_s, check_s, bare_s = (statistics.median(t) for t in (plan, check, bare))
    return {
        "plan_wall_s": round(plan_s, 4),
        "check_wall_s": round(check_s, 4),
        "bare_import_s": round(bare_s, 4),
        "check_minus_plan": round((check_s - plan_s) / plan_s, 3),
        "check_over_import": round(check_s / bare_s, 2),
        "wall_goals_met": (check_s - plan_s) / plan_s < GOAL and check_s / bare_s < IMPORT_GOAL,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--project", default=str(REPO_ROOT))
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(Path(args.project), args.stack, args.repeat)
    result.update(measure_commands(Path(args.project), args.stack, args.repeat))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"stack {result['stack']}: {result['resources']} resources, {result['analyzed_resources']} analyzed, "
        f"median of {result['repetitions']}"
    )
    print(f"  infra plan   {result['plan_s'] * 1000:8.1f} ms")
    print(
        f"  infra check  {result['check_s'] * 1000:8.1f} ms  (policies {result['policy_s'] * 1000:.1f} ms, "
        f"+{result['overhead']:.0%} over plan, {result['per_resource_ms']:.2f} ms per resource)"
    )
    print(
        f"  every policy offered every resource (engine-style): "
        f"{result['every_policy_every_resource_s'] * 1000:.1f} ms"
    )
    print(f"  goal: policies add under {GOAL:.0%} to plan time: {'met' if result['goal_met'] else 'NOT met'}")
    print(f"commands, fresh processes, median of {result['repetitions']}:")
    print(f"  infra plan   {result['plan_wall_s'] * 1000:8.1f} ms")
    print(f"  infra check  {result['check_wall_s'] * 1000:8.1f} ms  (+{result['check_minus_plan']:.0%} over plan)")
    print(f"  python -c '{BARE_IMPORT}'  {result['bare_import_s'] * 1000:.1f} ms  "
          f"(check is {result['check_over_import']:.2f}x; goal under {IMPORT_GOAL:.0f}x)")
    print(f"  goals: check - plan under {GOAL:.0%} of plan, check under {IMPORT_GOAL:.0f}x the import: "
          f"{'met' if result['wall_goals_met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
