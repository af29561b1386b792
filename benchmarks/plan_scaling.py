"""How `infra plan` scales with the worker count, against the bare cost of registering as many resources.

Runs the prod stack in-process (as `infra plan --stack prod` does) with 3, 30 and 300 workers, and a
program that registers the same number of plain custom resources under the same mocks. Prints seconds,
per-resource milliseconds and the ratio plan/bare: the cost our components add over Pulumi itself.

`--runtime swarm` plans the Swarm runtime with the workers autoscaled: one worker service whatever their
count, so the resource count must not grow with it (checked).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

import pulumi
import yaml

from infra.cli import REPO_ROOT
from infra.mockrun import load_project, run_program, run_under_mocks


def prod_project(workers: int, directory: Path, runtime: str = "docker") -> Path:
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    project["main"] = str(REPO_ROOT / "stacks")
    (directory / "Pulumi.yaml").write_text(yaml.safe_dump(project))
    stack = yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text())
    settings = stack["config"]["platform:settings"]
    settings["workers"] = workers
    if runtime == "swarm":
        settings["runtime"] = "swarm"
        settings["autoscaling"] = {"docker_socket_accepted_until": "2027-11-30", "workers": {
            "min_replicas": 1, "max_replicas": workers, "consumer_group": "job-workers", "topic": "jobs"}}
    (directory / "Pulumi.prod.yaml").write_text(yaml.safe_dump(stack))
    return directory


def median_seconds(action, repeat: int) -> tuple[float, object]:
    timings, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        # The program's own warnings (unset alert secrets) would repeat once a run.
        with contextlib.redirect_stderr(io.StringIO()):
            result = action()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings), result


def bare_program(count: int):
    def program() -> None:
        for i in range(count):
            pulumi.CustomResource("bench:index:Plain", f"plain-{i}", {"index": i})
    return program


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, nargs="+", default=[3, 30, 300])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--runtime", choices=["docker", "swarm"], default="docker")
    args = parser.parse_args()
    counts = set()

    print(f"{'workers':>7} {'resources':>9} {'plan s':>8} {'bare s':>8} {'plan ms/res':>11} "
          f"{'bare ms/res':>11} {'ratio':>6}")
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            project = load_project(prod_project(workers, Path(tmp), args.runtime), "prod")
            plan_s, run = median_seconds(lambda project=project: run_program(project, "prod"), args.repeat)
        count = len(run.resources)
        counts.add(count)
        bare_s, bare = median_seconds(lambda count=count: run_under_mocks(bare_program(count), "bench", "prod"),
                                      args.repeat)
        assert len(bare.resources) == count
        print(f"{workers:>7} {count:>9} {plan_s:>8.3f} {bare_s:>8.3f} {1000 * plan_s / count:>11.3f} "
              f"{1000 * bare_s / count:>11.3f} {plan_s / bare_s:>6.2f}")
    if args.runtime == "swarm" and len(counts) > 1:
        raise SystemExit(f"swarm plan grows with the worker count: {sorted(counts)} resources")


if __name__ == "__main__":
    main()
