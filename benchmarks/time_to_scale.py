"""Time to scale on the real Swarm: from a lag spike to the new worker tasks running, beside the decision interval.

    python benchmarks/time_to_scale.py [--interval 1 5 15] [--repeat 3] [--replicas 6]

The controller runs as the stack runs it (images/autoscaler built from this checkout, the Docker socket
mounted) against a scripted Prometheus (a stand-in: tests/autoscaling/scripted_prometheus.py) whose lag is 0
until the spike, then enough for `--replicas` workers at once. For each decision interval and repeat it
measures, from the spike: the decision applied (the controller's JSON line, printed once the service is
updated) and the last of the new tasks running (the Engine API's task states, polled every 0.2 s). The worker service is a stand-in (`sleep`
in the controller's own image): the time measured is the controller's and Swarm's, not a JVM's start-up.
Needs the local engine to be a Swarm manager; everything it creates is named `i18-bench-*` and removed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from platform_infra.components.autoscaling import ScalingPolicy
from tests.autoscaling.scripted_prometheus import ScriptedPrometheus
from tests.swarm.controller import Controller, build_autoscaler, running_tasks

IDLE = {"time": "0", "lag": "0", "partitions": "12"}


def policy(interval: int, replicas: int) -> ScalingPolicy:
    return ScalingPolicy(min_replicas=1, max_replicas=replicas, target_lag_per_replica=100, scale_up_step=replicas,
                         interval_seconds=interval, consumer_group="job-workers", topic="jobs")


def one_run(client: docker.DockerClient, image: str, interval: int, replicas: int) -> tuple[float, float]:
    """(seconds from the spike to the decision applying it, seconds to the last new task running)."""
    scaling = policy(interval, replicas)
    service = client.services.create(
        image, ["sleep", "3600"], name=f"i18-bench-worker-{uuid.uuid4().hex[:8]}",
        mode=docker.types.ServiceMode("replicated", replicas=1), stop_grace_period=1_000_000_000,
        labels={"platform.test": "issue18-benchmark"})
    try:
        while running_tasks(client, service.name) != 1:
            time.sleep(0.2)
        with ScriptedPrometheus(scaling, [IDLE]) as prometheus, \
                Controller(client, image, service.name, prometheus.url, scaling) as controller:
            controller.wait_for(2, timeout=4 * interval + 60)  # it runs, idle
            time.sleep(random.uniform(0, interval))  # the spike lands anywhere in an interval
            prometheus.rows = [{**IDLE, "lag": str(100 * replicas)}]
            spike = time.time()
            while running_tasks(client, service.name) != replicas:
                if time.time() - spike > 4 * interval + 120:
                    raise RuntimeError(f"{service.name}: {running_tasks(client, service.name)} tasks running "
                                       f"after {time.time() - spike:.0f}s, not {replicas}")
                time.sleep(0.2)
            running = time.time() - spike
            applied = next(i for i, line in enumerate(controller.lines) if line["applied"])
            decided = controller.arrived[applied] - spike
        if controller.exit_code != 0:
            raise RuntimeError(f"the controller exited {controller.exit_code}: {controller.errors}")
        return decided, running
    finally:
        service.remove()
        # Its tasks' containers outlive the service by their stop: the image is removed after them.
        deadline = time.monotonic() + 60
        while client.api.containers(all=True, filters={"label": f"com.docker.swarm.service.name={service.name}"}):
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=int, nargs="+", default=[1, 5, 15])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=6)
    args = parser.parse_args(argv)
    client = docker.from_env()
    image = build_autoscaler(client, f"i18-bench-{uuid.uuid4().hex[:8]}")
    try:
        print(f"scale 1 -> {args.replicas} workers on a lag spike; seconds from the spike "
              f"(median, max of {args.repeat})")
        print(f"{'interval':>8}  {'decision':>15}  {'tasks running':>15}")
        for interval in args.interval:
            runs = [one_run(client, image, interval, args.replicas) for _ in range(args.repeat)]
            decided, running = zip(*runs, strict=True)
            print(f"{interval:>7}s  {statistics.median(decided):>6.1f} {max(decided):>6.1f}s  "
                  f"{statistics.median(running):>6.1f} {max(running):>6.1f}s", flush=True)
    finally:
        client.images.remove(image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
