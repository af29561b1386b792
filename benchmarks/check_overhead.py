"""What the policy pack adds to a plan: `infra check` beside `infra plan` on the same stack, in-process.

    python benchmarks/check_overhead.py [--stack prod] [--project .] [--repeat 7] [--json]

Each repetition runs the program under mocks (the plan), then evaluates the pack through the SDK servicer
(the check = plan + evaluation); medians are reported, with the cost per analyzed resource and the same
evaluation with every policy offered every resource (what the engine itself does). Goal: under 20%.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import time
from pathlib import Path

from infra.check import evaluate, render
from infra.mockrun import load_project, run_program
from policies.policy_config import default_path

REPO_ROOT = Path(__file__).resolve().parent.parent
GOAL = 0.20


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--project", default=str(REPO_ROOT))
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(Path(args.project), args.stack, args.repeat)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
