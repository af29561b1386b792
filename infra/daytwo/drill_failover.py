"""`infra drill failover`: under a bounded load of job submissions through the edge, an api-gateway replica and a
worker crash and PostgreSQL restarts; what clients saw, how long until each came back, and whether a job was lost.

The crash, Docker runtime: SIGSEGV to the replica's main process from inside its container, as a JVM's fatal
error ends it (it writes its hs_err file and aborts); the container's restart policy (`on-failure`) replaces it.
Not a kill through the Engine API: the engine marks such a container as stopped by hand and never restarts it
(moby daemon/kill.go, killWithSignal: HasBeenManuallyStopped and ExitOnNext). Swarm runtime: the task's
container is killed and the orchestrator starts a new task. PostgreSQL is restarted through the Engine API.
Replaced means running again with a new start time and healthy (Swarm: the service's running tasks back at its
desired count, one of them new).

The load: job submissions (`POST /api/v1/jobs`, an `echo` job, as the admin) at `--rate` per second (at most the
edge's `api_rate_per_second`, so that its rate limit does not answer in place of the platform); 429s are counted
apart. Every job answered 201 must end `succeeded` within `--timeout` after the faults: a job that does not is
lost. The record (`drill.failover`) proves `post.day.failover`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import urllib3

from platform_infra.infra.daytwo import evidence
from platform_infra.infra.daytwo.drill_load import checked_endpoint, edge_pool
from platform_infra.infra.daytwo.drills import (
    DrillInterrupted,
    Target,
    add_engine_arguments,
    add_guard_arguments,
    bounded_timeout,
    find_target,
    restoring_on_signals,
    stack_of,
    wait_until,
    write_record,
)
from platform_infra.infra.daytwo.verify import ADMIN_PASSWORD_ENV, JOBS_PATH, LOGIN_PATH, Engine, Unreachable
from platform_infra.infra.mockrun import ProgramInputError

FAULTS = (("api-gateway", "crash"), ("worker", "crash"), ("postgres", "restart"))
MAX_RATE = 50


class Jobs:
    """The submissions during the drill: each answer's status, the ids of the jobs accepted."""

    def __init__(self) -> None:
        self.statuses: Counter = Counter()
        self.errors: Counter = Counter()
        self.ids: list[str] = []
        self.lock = threading.Lock()


def submit_loop(pool, host: str, token: str, rate: float, stop: threading.Event, jobs: Jobs) -> None:
    headers = {"Host": host, "Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    n = 0
    while not stop.is_set():
        n += 1
        body = json.dumps({"type": "echo", "payload": {"drill": "failover", "n": n}})
        try:
            answer = pool.request("POST", JOBS_PATH, body=body, headers=headers)
            with jobs.lock:
                jobs.statuses[str(answer.status)] += 1
                if answer.status == 201:
                    jobs.ids.append(json.loads(answer.data)["id"])
        except urllib3.exceptions.HTTPError as error:
            with jobs.lock:
                jobs.errors[type(getattr(error, "reason", None) or error).__name__] += 1
        stop.wait(1 / rate)


def started_at(engine: Engine, name: str) -> str:
    return engine.client.api.inspect_container(name)["State"]["StartedAt"]


def back(engine: Engine, name: str, before: str) -> bool:
    state = engine.client.api.inspect_container(name)["State"]
    return (state["Running"] and state["StartedAt"] != before
            and state.get("Health", {}).get("Status", "healthy") == "healthy")


def running_tasks(engine: Engine, target: Target) -> set[str]:
    service = engine.client.services.get(target.name)
    return {t["ID"] for t in service.tasks({"desired-state": "running"}) if t["Status"]["State"] == "running"}


def inject(engine: Engine, target: Target, how: str) -> Callable[[], bool]:
    """The fault done; a probe that answers once the service is back."""
    if target.swarm:
        service = engine.client.services.get(target.name)
        before = running_tasks(engine, target)
        wanted = max(target.replicas or 0, len(before))
        if how == "restart":
            # `docker service update --force`: every task replaced as the service's update config says (stop-first
            # for a stateful one). Stopping a task's container instead ends it cleanly (exit 0), which the
            # `on-failure` restart condition never replaces.
            service.force_update()
        else:
            # The first task that runs: one still starting has no container to kill yet.
            task = next(t for t in service.tasks({"desired-state": "running"}) if t["Status"]["State"] == "running")
            engine.client.api.kill(task["Status"]["ContainerStatus"]["ContainerID"])

        def replaced() -> bool:
            now = running_tasks(engine, target)
            return len(now) >= wanted and (not now & before if how == "restart" else bool(now - before))

        return replaced
    before = started_at(engine, target.name)
    if how == "restart":
        engine.client.api.restart(target.name, timeout=30)
    else:
        engine.client.containers.get(target.name).exec_run(["sh", "-c", "kill -SEGV 1"])
    return lambda: back(engine, target.name, before)


def restore(engine: Engine, target: Target) -> None:
    """Docker runtime: a container left stopped (its restart policy gave up, or the drill was interrupted) is
    started; Swarm replaces tasks itself."""
    if not target.swarm and not engine.client.api.inspect_container(target.name)["State"]["Running"]:
        engine.client.api.start(target.name)


def job_outcomes(pool, host: str, token: str, ids: list[str], rate: float, deadline: float) -> dict[str, str]:
    """Each job's last status, polled at `rate` until every one has ended or the deadline passed."""
    headers = {"Host": host, "Authorization": f"Bearer {token}"}
    outcome = dict.fromkeys(ids, "unknown")
    while time.monotonic() < deadline:
        open_ids = [i for i, s in outcome.items() if s not in ("succeeded", "failed")]
        if not open_ids:
            break
        for job_id in open_ids:
            try:
                answer = pool.request("GET", f"{JOBS_PATH}/{job_id}", headers=headers)
                if answer.status == 200:
                    outcome[job_id] = json.loads(answer.data).get("status", "unknown")
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(1 / rate)
            if time.monotonic() >= deadline:
                break
    return outcome


def login(pool, host: str, password: str, url: str) -> str:
    try:
        answer = pool.request("POST", LOGIN_PATH, body=json.dumps({"username": "admin", "password": password}),
                              headers={"Host": host, "Content-Type": "application/json"})
    except urllib3.exceptions.HTTPError as error:
        raise Unreachable(f"--endpoint: nothing answers at {url} ({getattr(error, 'reason', None) or error})") \
            from None
    if answer.status != 200:
        raise ProgramInputError(f"{ADMIN_PASSWORD_ENV}: login as admin at {url} answered {answer.status}")
    return json.loads(answer.data)["token"]


def run_failover(engine: Engine, targets: list[tuple[Target, str]], pool, host: str, token: str, rate: float,
                 timeout: float, log: Callable[[str], None]) -> dict[str, Any]:
    jobs, stop = Jobs(), threading.Event()
    loader = threading.Thread(target=submit_loop, args=(pool, host, token, rate, stop, jobs), daemon=True)
    faults: list[dict[str, Any]] = []
    interrupted = None
    loader.start()
    try:
        with restoring_on_signals():
            time.sleep(5)  # a few jobs before the first fault
            for target, how in targets:
                log(f"{how}: {target.name}")
                started = time.monotonic()
                is_back = inject(engine, target, how)
                replaced = wait_until(is_back, started + timeout)
                seconds = round(time.monotonic() - started, 1) if replaced else None
                faults.append({"service": target.service, "target": target.name, "fault": how,
                               "seconds_to_replace": seconds})
                log(f"{target.name} back after {seconds} s" if replaced else f"{target.name} not back in {timeout} s")
            time.sleep(5)  # and a few after the last
    except DrillInterrupted as signal_name:
        interrupted = str(signal_name)
    finally:
        stop.set()
        loader.join(15)
        for target, _ in targets:
            restore(engine, target)
    outcome = {} if interrupted else job_outcomes(pool, host, token, jobs.ids, rate * 2, time.monotonic() + timeout)
    lost = sorted(i for i, s in outcome.items() if s != "succeeded")
    client_errors = {k: v for k, v in jobs.statuses.items() if k not in ("201", "429")}
    return {"faults": faults, "submitted": sum(jobs.statuses.values()) + sum(jobs.errors.values()),
            "accepted": len(jobs.ids), "by_status": dict(sorted(jobs.statuses.items())),
            "client_errors": {**client_errors, **dict(jobs.errors)}, "lost_jobs": lost,
            "jobs_by_outcome": dict(Counter(outcome.values())), "interrupted": interrupted,
            "ok": not interrupted and bool(jobs.ids) and not lost
            and all(f["seconds_to_replace"] is not None for f in faults)}


def failover_check(result: dict[str, Any], timeout: float) -> evidence.Check:
    if result["interrupted"]:
        text = f"interrupted by {result['interrupted']}; every stopped container started again"
    else:
        backs = ", ".join(f"{f['target']} ({f['fault']}) back after {f['seconds_to_replace']} s"
                          if f["seconds_to_replace"] is not None else f"{f['target']} not back in {timeout:g} s"
                          for f in result["faults"])
        errors = sum(result["client_errors"].values())
        text = (f"{backs}; {result['accepted']} jobs accepted, {len(result['lost_jobs'])} lost; {errors} client "
                f"errors ({json.dumps(result['client_errors'])})")
    return evidence.Check(id="post.day.failover", section="First Day", text="Test failover scenarios",
                          status="pass" if result["ok"] else "fail",
                          value={"lost_jobs": len(result["lost_jobs"]), "client_errors": result["client_errors"],
                                 "seconds_to_replace": {f["target"]: f["seconds_to_replace"]
                                                        for f in result["faults"]}},
                          threshold={"lost_jobs": 0, "seconds_to_replace": timeout}, evidence=text)


def cmd_drill_failover(args: argparse.Namespace) -> int:
    bounded_timeout(args.timeout)
    if not 0 < args.rate <= MAX_RATE:
        raise ProgramInputError(f"--rate: {args.rate:g}: allowed above 0 to {MAX_RATE} jobs per second")
    settings, expected, prefix = stack_of(args)
    password = os.environ.get(ADMIN_PASSWORD_ENV)
    if not password:
        raise ProgramInputError(f"{ADMIN_PASSWORD_ENV}: not set (the stack output app_admin_password): the load "
                                "submits jobs as the admin")
    if args.rate > settings.edge.api_rate_per_second:
        raise ProgramInputError(f"--rate: {args.rate:g}: allowed up to the edge's api_rate_per_second "
                                f"({settings.edge.api_rate_per_second})")
    host = settings.public_hosts[0]
    url = checked_endpoint(args.endpoint or f"https://{host}", settings)
    if urlsplit(url).path.rstrip("/"):
        raise ProgramInputError(f"--endpoint {url}: the edge's root, without a path")
    pool = edge_pool(url, host, 4)
    token = login(pool, host, password, url)
    engine = Engine(args.docker_host)
    targets = [(find_target(engine, expected.containers, expected.services, prefix, service), how)
               for service, how in FAULTS]
    log = (lambda line: print(line, file=sys.stderr)) if args.format == "text" else (lambda line: None)
    result = run_failover(engine, targets, pool, host, token, args.rate, args.timeout, log)
    code = write_record(args, settings, "drill.failover", result["ok"], [failover_check(result, args.timeout)],
                        {**result, "rate": args.rate, "timeout_seconds": args.timeout})
    return 130 if result["interrupted"] else code


def add_failover_arguments(parser: argparse.ArgumentParser, add_program_arguments: Callable) -> None:
    add_program_arguments(parser)
    add_guard_arguments(parser)
    add_engine_arguments(parser)
    parser.add_argument("--endpoint", help="where the edge answers (default: https://<first public host>); only a "
                        "loopback address or one of the stack's public hosts")
    parser.add_argument("--rate", type=float, default=2, help="job submissions per second during the drill "
                        "(default 2; at most the edge's api_rate_per_second)")
    parser.add_argument("--timeout", type=float, default=180, help="seconds each fault may take to be replaced, and "
                        "the jobs to end after the last (default 180, at most 1800)")
    parser.set_defaults(handler=cmd_drill_failover)

