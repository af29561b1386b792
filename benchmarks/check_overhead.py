"""What the policy pack adds to a plan: `infra check` beside `infra plan` on the same stack, in-process.

    python benchmarks/check_overhead.py [--stack prod] [--project .] [--repeat 7] [--json]

Each repetition runs the program under mocks (the plan), then evaluates the pack through the SDK servicer
(the check = plan + evaluation); medians are reported, with the cost per analyzed resource and the same
evaluation with every policy offered every resource (what the engine itself does). Then the commands
themselves, as a user runs them (fresh processes, imports included): `infra check` minus `infra plan`,
and `infra check` beside the bare import of the Pulumi SDKs it builds on.
Goals: policies add under 20% to the plan, and `infra check` takes under 3x the bare import; the output ends
with one verdict line per goal (the commands judged on their best run: the cost without the shared machine's
other load).
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

from platform_infra.infra.check import evaluate, render
from platform_infra.infra.mockrun import load_project, run_program
from platform_infra.policies.policy_config import default_path

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


def wall_seconds(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, capture_output=True, check=False)
    return time.perf_counter() - start


def measure_commands(project_dir: Path, stack: str, repeat: int) -> dict:
    """Fresh processes, interleaved so that machine load hits each command alike; medians, and the best run
    of each (the cost without other load, on a shared machine)."""
    infra = [sys.executable, "-m", "platform_infra.infra"]  # what the `infra` command runs (platform_infra.infra.entry)
    where = ["--stack", stack, "--project", str(project_dir)]
    commands = {
        "plan": [*infra, "plan", *where],
        "check": [*infra, "check", *where],
        "bare_import": [sys.executable, "-c", BARE_IMPORT],
    }
    timings: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, command in commands.items():
            timings[name].append(wall_seconds(command, REPO_ROOT))
    result: dict = {}
    for statistic, pick in (("median", statistics.median), ("best", min)):
        plan_s, check_s, bare_s = (pick(timings[name]) for name in commands)
        result[statistic] = {
            "plan_wall_s": round(plan_s, 4),
            "check_wall_s": round(check_s, 4),
            "bare_import_s": round(bare_s, 4),
            "check_minus_plan": round((check_s - plan_s) / plan_s, 3),
            "check_over_import": round(check_s / bare_s, 2),
            "goals_met": (check_s - plan_s) / plan_s < GOAL and check_s / bare_s < IMPORT_GOAL,
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--project", default=str(REPO_ROOT))
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(Path(args.project), args.stack, args.repeat)
    result["commands"] = measure_commands(Path(args.project), args.stack, args.repeat)
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
    print(f"commands, fresh processes, {result['repetitions']} runs each:")
    print(f"  {'':8} {'infra plan':>11} {'infra check':>12} {'bare import':>12} {'check-plan':>11} {'check/import':>13}")
    for statistic, row in result["commands"].items():
        print(f"  {statistic:8} {row['plan_wall_s'] * 1000:9.1f}ms {row['check_wall_s'] * 1000:10.1f}ms "
              f"{row['bare_import_s'] * 1000:10.1f}ms {row['check_minus_plan']:>+10.0%} "
              f"{row['check_over_import']:>12.2f}x")
    print(f"  (bare import: python -c '{BARE_IMPORT}')")
    best = result["commands"]["best"]
    verdict = {True: "met", False: "NOT met"}
    print(f"goal: policies add under {GOAL:.0%} to the plan (in-process, median): {verdict[result['goal_met']]} "
          f"(+{result['overhead']:.0%})")
    print(f"goal: infra check takes under {GOAL:.0%} more than infra plan (fresh processes, best): "
          f"{verdict[best['check_minus_plan'] < GOAL]} ({best['check_minus_plan']:+.0%})")
    print(f"goal: infra check takes under {IMPORT_GOAL:.0f}x the bare SDK import (fresh processes, best): "
          f"{verdict[best['check_over_import'] < IMPORT_GOAL]} ({best['check_over_import']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
