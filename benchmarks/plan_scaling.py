"""How `infra plan` scales with the worker count, against the floor of registering as many bare containers.

    python benchmarks/plan_scaling.py [--workers 3 30 300 1000] [--repeat 3]

Runs the prod stack in-process (as `infra plan --stack prod` does) with each worker count, and, under the
same runner and mocks, a program registering the same number of bare `docker.Container`s with inputs shaped
like a worker's (env, labels, healthcheck, networks, limits). Prints seconds, per-resource milliseconds, the
ratio plan/floor (goal: within 1.2x), then a least-squares line over the worker counts with its residuals:
a constant cost per added worker shows as small residuals.

`--runtime swarm` plans the Swarm runtime with the workers autoscaled: one worker service whatever their
count, so the resource count must not grow with it (checked); its largest count is the most replicas a scaling
policy allows. Ends with one verdict line per goal.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

import pulumi_docker as docker
import yaml

from platform_infra.components.autoscaling import ScalingPolicy
from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import load_project, run_program, run_under_mocks

GOAL = 1.2
# The most replicas a scaling policy allows (its `max_replicas` bound): the Swarm runtime's largest count.
SWARM_MOST = next(m.le for m in ScalingPolicy.model_fields["max_replicas"].metadata if hasattr(m, "le"))


def prod_project(workers: int, directory: Path, runtime: str = "docker") -> Path:
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    project["main"] = str(REPO_ROOT / "stacks")
    (directory / "Pulumi.yaml").write_text(yaml.safe_dump(project))
    stack = yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text())
    settings = stack["config"]["platform:settings"]
    settings["workers"] = workers
    # Within PostgreSQL's connection budget at any size: small worker pools, max_connections to match.
    settings["apps"] = {"worker": {"db_pool_size": 2, "db_pool_min_idle": 1}}
    settings.setdefault("data", {})["postgres_max_connections"] = 2 * workers + 200
    # A partition of the workers' topic for every worker (settings refuse fewer).
    settings["data"]["kafka_topics"] = {"jobs": max(workers, 12), "logs": 6}
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
    """`count` plain containers, each with the inputs a worker container has, and nothing around them."""

    def program() -> None:
        for i in range(count):
            docker.Container(
                f"bare-{i}",
                name=f"bare-{i}",
                hostname=f"bare-{i}",
                image="registry.example.internal/orchestration/worker:1.0.0",
                envs=[f"SETTING_{n}=value-{n}" for n in range(22)] + [f"WORKER_ID=bare-{i}"],
                labels=[{"label": "platform.role", "value": "app"}, {"label": "platform.service", "value": "bare"}],
                healthcheck={"tests": ["CMD", "curl", "-fsS", "http://127.0.0.1:8080/actuator/health"],
                             "interval": "15s", "timeout": "5s", "start_period": "90s", "retries": 5},
                networks_advanced=[{"name": "app", "aliases": [f"bare-{i}", "bare"]},
                                   {"name": "data", "aliases": [f"bare-{i}", "bare"]}],
                volumes=[{"volume_name": "files", "container_path": "/etc/platform", "read_only": True}],
                tmpfs={"/tmp": "rw,noexec,nosuid,size=128m"},
                capabilities={"drops": ["ALL"]},
                security_opts=["no-new-privileges:true"],
                user="10001:10001", read_only=True, memory=1024, memory_swap=1024, cpus="1",
                restart="on-failure", max_retry_count=5, must_run=True, destroy_grace_seconds=30,
                log_driver="json-file", log_opts={"max-size": "10m", "max-file": "3"},
            )

    return program


def linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float, list[float]]:
    """Least squares y = a + b x: (a, b, residuals)."""
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
    intercept = mean_y - slope * mean_x
    return intercept, slope, [y - (intercept + slope * x) for x, y in zip(xs, ys)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+",
                        help=f"worker counts (default: 3 30 300 1000; with swarm 3 30 300 {SWARM_MOST})")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--runtime", choices=["docker", "swarm"], default="docker")
    args = parser.parse_args()
    if args.workers is None:
        args.workers = [3, 30, 300, 1000] if args.runtime == "docker" else [3, 30, 300, SWARM_MOST]
    if args.runtime == "swarm" and max(args.workers) > SWARM_MOST:
        parser.error(f"--workers: with --runtime swarm at most {SWARM_MOST} (autoscaling.workers.max_replicas)")
    counts = set()
    ratios: dict[int, float] = {}

    print(f"{'workers':>7} {'resources':>9} {'plan s':>8} {'floor s':>8} {'plan ms/res':>11} "
          f"{'floor ms/res':>12} {'ratio':>6}")
    plans: list[float] = []
    floors: list[float] = []
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            project = load_project(prod_project(workers, Path(tmp), args.runtime), "prod")
            plan_s, run = median_seconds(lambda project=project: run_program(project, "prod"), args.repeat)
        count = len(run.resources)
        counts.add(count)
        floor_s, bare = median_seconds(
            lambda count=count: run_under_mocks(bare_program(count), "bench", "prod"), args.repeat)
        assert len(bare.resources) == count
        plans.append(plan_s)
        floors.append(floor_s)
        ratio = ratios[workers] = plan_s / floor_s
        print(f"{workers:>7} {count:>9} {plan_s:>8.3f} {floor_s:>8.3f} {1000 * plan_s / count:>11.3f} "
              f"{1000 * floor_s / count:>12.3f} {ratio:>6.2f}{'' if ratio <= GOAL else '  (over goal)'}")
    if len(args.workers) >= 3:
        intercept, slope, residuals = linear_fit([float(w) for w in args.workers], plans)
        print(f"plan s = {intercept:.3f} + {1000 * slope:.3f} ms x workers; residuals (s): "
              + ", ".join(f"{w}: {r:+.3f}" for w, r in zip(args.workers, residuals)))
        intercept, slope, residuals = linear_fit([float(w) for w in args.workers], floors)
        print(f"floor s = {intercept:.3f} + {1000 * slope:.3f} ms x workers; residuals (s): "
              + ", ".join(f"{w}: {r:+.3f}" for w, r in zip(args.workers, residuals)))
    worst = max(ratios, key=ratios.get)
    print(f"goal: plan within {GOAL}x of the floor at every size ({args.runtime}): "
          f"{'met' if ratios[worst] <= GOAL else 'NOT met'} (worst {ratios[worst]:.2f}x at {worst} workers)")
    if args.runtime == "swarm":
        print(f"goal: the resource count does not grow with the workers (swarm): "
              f"{'met' if len(counts) == 1 else 'NOT met'} ({', '.join(map(str, sorted(counts)))} resources)")
        if len(counts) > 1:  # not a slow plan but a wrong one: the worker service was multiplied
            raise SystemExit(1)


if __name__ == "__main__":
    main()
