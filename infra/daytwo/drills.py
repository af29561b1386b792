"""`infra drill alerts`: a deliberate failure on the running stack, its alert fired, delivered and resolved.

What every drill shares lives here too: the prod guard (`--yes-in-prod`), the stack's own objects only (the
plan's names, with `--name-prefix` for a renamed copy), time caps, and the restore that runs even when the drill
is interrupted (try/finally, SIGINT and SIGTERM turned into an exception so the finally runs).

The alerts drill stops one container of a service (Docker runtime) or scales its Swarm service to 0, waits for
the alert on it (ServiceDown on its scrape target, or ServiceAbsent for its job) to be active in Alertmanager,
then for Alertmanager to deliver a notification (its own counters `alertmanager_notifications_total` less
`alertmanager_notifications_failed_total`, per integration, grown since the drill began: a receiver accepted
it), restores the service and waits for the alert to resolve. It writes a `drill.alerts` evidence record that
proves the checklist line `post.hour.alerts-firing`.

Exit codes: 0 fired, delivered and resolved; 1 not (or interrupted, the service restored); 2 bad input or an
unreachable endpoint.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from platform_infra.components.monitoring.model import duration_seconds
from platform_infra.infra.daytwo import evidence
from platform_infra.infra.daytwo.verify import (
    Alertmanager,
    Engine,
    expected_from,
    settings_prefix,
    stack_settings,
)
from platform_infra.infra.mockrun import ProgramInputError, load_project, run_program
from platform_infra.infra.settings import Settings
from platform_infra.infra.version import commit

MAX_DRILL_SECONDS = 1800
"""No drill keeps a service stopped longer than this, whatever `--timeout` asks."""
POLL_SECONDS = 2.0
DOWN_ALERTS = ("ServiceDown", "ServiceAbsent")


class DrillInterrupted(Exception):
    """SIGINT or SIGTERM arrived: the drill stops and restores what it changed."""


@contextmanager
def restoring_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise DrillInterrupted in the main thread, so the caller's `finally` restores."""
    def interrupt(signum, frame):
        raise DrillInterrupted(signal.Signals(signum).name)

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def refuse_prod(settings: Settings, stack: str, yes_in_prod: bool) -> None:
    if settings.environment == "prod" and not yes_in_prod:
        raise ProgramInputError(f"--yes-in-prod: stack {stack} is prod (environment: prod); a drill stops its "
                                "services or loads its edge: pass --yes-in-prod to run it there")


def bounded_timeout(seconds: float, flag: str = "--timeout") -> float:
    if not 0 < seconds <= MAX_DRILL_SECONDS:
        raise ProgramInputError(f"{flag}: {seconds:g}: allowed 1 to {MAX_DRILL_SECONDS} seconds")
    return seconds


def wait_until(probe: Callable[[], Any], deadline: float) -> Any:
    """The probe's first true answer before the monotonic `deadline`, else None."""
    while True:
        answer = probe()
        if answer:
            return answer
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_SECONDS)


# --- the stack's own objects --------------------------------------------------------------------------------


@dataclass
class Target:
    """One service of the stack the drill stops: a container (Docker runtime) or a Swarm service."""

    service: str
    name: str
    swarm: bool
    replicas: int | None = None
    hostname: str | None = None
    """Docker runtime: the container's host name, its scrape target's instance."""


def find_target(engine: Engine, containers: tuple[str, ...], services: tuple[tuple[str, int | None], ...],
                prefix: str, service: str) -> Target:
    """The service's last container of the plan (`<prefix>-<service>` or `<prefix>-<service>-N`), or its Swarm
    service: only the stack's own objects, by the plan's names."""
    own = re.compile(rf"{re.escape(prefix)}-{re.escape(service)}(-\d+)?")
    for name, _ in services:
        if name == f"{prefix}-{service}":
            return Target(service, name, swarm=True, replicas=swarm_replicas(engine, name, service))
    matching = sorted((c for c in containers if own.fullmatch(c)), key=lambda c: (len(c), c))
    if not matching:
        known = sorted({re.sub(r"-\d+$", "", c.removeprefix(f"{prefix}-")) for c in containers}
                       | {n.removeprefix(f"{prefix}-") for n, _ in services})
        raise ProgramInputError(f"--service {service}: not a service of this stack (one of: {', '.join(known)})")
    name = matching[-1]
    hostname = engine.client.api.inspect_container(name)["Config"]["Hostname"]
    return Target(service, name, swarm=False, hostname=hostname)


def swarm_replicas(engine: Engine, name: str, service: str) -> int:
    """The replicas the Swarm service runs now (the plan's, the autoscaler's or an operator's): what a drill
    puts back. A global service cannot be scaled; one at 0 has nothing to take down."""
    import docker

    try:
        mode = engine.client.services.get(name).attrs["Spec"]["Mode"]
    except docker.errors.NotFound:
        raise ProgramInputError(f"--service {service}: no Swarm service {name} on the engine") from None
    replicas = (mode.get("Replicated") or {}).get("Replicas")
    if replicas is None:
        raise ProgramInputError(f"--service {service}: {name} is a global Swarm service (a task per node), which "
                                "cannot be scaled: drill a replicated one")
    if replicas == 0:
        raise ProgramInputError(f"--service {service}: {name} is scaled to 0 already: nothing to drill")
    return replicas


def stop(engine: Engine, target: Target) -> None:
    if target.swarm:
        engine.client.services.get(target.name).scale(0)
    else:
        engine.client.api.stop(target.name, timeout=10)


def restore(engine: Engine, target: Target) -> None:
    """Idempotent: the container started, or the service back at its replicas."""
    if target.swarm:
        service = engine.client.services.get(target.name)
        if target.replicas is not None:
            service.scale(target.replicas)
    else:
        engine.client.api.start(target.name)


# --- Alertmanager -------------------------------------------------------------------------------------------


def drill_alerts(alertmanager: Alertmanager, target: Target) -> list[dict]:
    """The active alerts on the target: ServiceDown on its scrape target (its host name), or either down alert
    naming its service (Swarm: the job's targets are its tasks)."""
    answer = alertmanager.request("GET", "/api/v2/alerts?active=true")
    if answer.status != 200:
        raise RuntimeError(f"Alertmanager /api/v2/alerts: {answer.status}")

    def ours(labels: dict[str, str]) -> bool:
        if labels.get("alertname") not in DOWN_ALERTS:
            return False
        if target.swarm:
            return labels.get("service") == target.service
        return labels.get("instance", "").split(":")[0] == target.hostname

    return [a for a in json.loads(answer.data) if ours(a.get("labels", {}))]


def delivered_by_integration(alertmanager: Alertmanager) -> dict[str, tuple[float, float]]:
    """Each integration's (successful, failed) notifications since Alertmanager started."""
    from prometheus_client.parser import text_string_to_metric_families

    answer = alertmanager.request("GET", "/metrics")
    if answer.status != 200:
        raise RuntimeError(f"Alertmanager /metrics: {answer.status}")
    totals: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(answer.data.decode()):
        for s in family.samples:
            if s.name in ("alertmanager_notifications_total", "alertmanager_notifications_failed_total"):
                pair = totals.setdefault(s.labels.get("integration", "?"), [0.0, 0.0])
                pair[s.name.endswith("failed_total")] += s.value
    return {name: (sent - failed, failed) for name, (sent, failed) in totals.items()}


def grown(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]], index: int) -> list[str]:
    return sorted(i for i, counts in after.items() if counts[index] > before.get(i, (0.0, 0.0))[index])


# --- the drill ----------------------------------------------------------------------------------------------


def run_alerts_drill(engine: Engine, alertmanager: Alertmanager, target: Target, timeout: float,
                     log: Callable[[str], None]) -> dict[str, Any]:
    """Stop, await the alert and its delivery, restore, await its resolution; the service is restored whatever
    happens (an interruption, an error). The figures are seconds from the stop (fire, delivery) and from the
    restore (resolution)."""
    result: dict[str, Any] = {"target": target.name, "service": target.service, "alert": None,
                              "seconds_to_fire": None, "seconds_to_deliver": None, "delivered_by": [],
                              "failed_integrations": [], "seconds_to_resolve": None, "restored": False,
                              "interrupted": None}
    before = delivered_by_integration(alertmanager)
    if drill_alerts(alertmanager, target):
        raise ProgramInputError(f"--service {target.service}: its down alert is already active: nothing to drill")
    started = time.monotonic()
    deadline = started + timeout
    stopped = False
    try:
        with restoring_on_signals():
            log(f"stopping {target.name}")
            stopped = True
            stop(engine, target)
            firing = wait_until(lambda: drill_alerts(alertmanager, target), deadline)
            if firing:
                result["seconds_to_fire"] = round(time.monotonic() - started, 1)
                result["alert"] = firing[0]["labels"].get("alertname")
                log(f"{result['alert']} active in Alertmanager after {result['seconds_to_fire']} s")
                sent = wait_until(lambda: grown(before, delivered_by_integration(alertmanager), 0), deadline)
                result["failed_integrations"] = grown(before, delivered_by_integration(alertmanager), 1)
                if sent:
                    result["seconds_to_deliver"] = round(time.monotonic() - started, 1)
                    result["delivered_by"] = sent
                    log(f"delivered by {', '.join(sent)} after {result['seconds_to_deliver']} s")
            log(f"restoring {target.name}")
            restore(engine, target)
            result["restored"] = True
            restored_at = time.monotonic()
            if firing:
                resolve_by = restored_at + max(timeout - (restored_at - started), 0) + 60
                if wait_until(lambda: not drill_alerts(alertmanager, target), resolve_by):
                    result["seconds_to_resolve"] = round(time.monotonic() - restored_at, 1)
                    log(f"resolved {result['seconds_to_resolve']} s after the restore")
    except DrillInterrupted as signal_name:
        result["interrupted"] = str(signal_name)
    finally:
        if stopped and not result["restored"]:
            restore(engine, target)
            result["restored"] = True
            log(f"restored {target.name}")
    result["ok"] = bool(result["seconds_to_fire"] is not None and result["delivered_by"]
                        and result["seconds_to_resolve"] is not None and not result["interrupted"])
    return result


def alerts_check(result: dict[str, Any], timeout: float) -> evidence.Check:
    if result["interrupted"]:
        text = f"interrupted by {result['interrupted']}; {result['target']} restored"
    elif result["seconds_to_fire"] is None:
        text = f"no down alert for {result['target']} within {timeout:g} s"
    elif not result["delivered_by"]:
        failed = ", ".join(result["failed_integrations"]) or "none attempted"
        text = f"{result['alert']} fired after {result['seconds_to_fire']} s but no receiver accepted it " \
               f"(failed: {failed})"
    elif result["seconds_to_resolve"] is None:
        text = f"{result['alert']} fired and was delivered but did not resolve after the restore"
    else:
        text = (f"{result['target']} stopped: {result['alert']} fired after {result['seconds_to_fire']} s, "
                f"delivered by {', '.join(result['delivered_by'])} after {result['seconds_to_deliver']} s, "
                f"resolved {result['seconds_to_resolve']} s after the restore")
    return evidence.Check(id="post.hour.alerts-firing", section="Immediate (First Hour)",
                          text="Alerts firing correctly (test with deliberate failure)",
                          status="pass" if result["ok"] else "fail",
                          value={k: result[k] for k in ("seconds_to_fire", "seconds_to_deliver", "seconds_to_resolve")},
                          threshold={"timeout_seconds": timeout}, evidence=text)


def drill_text(record: evidence.Record, where: str | None) -> str:
    data = record.data
    verdict = "ok" if record.ok else "FAILED"
    lines = [(f"infra drill {record.kind.removeprefix('drill.')} --stack {record.stack}: {verdict} "
              f"({record.created_at:%Y-%m-%d %H:%M:%S}Z)")]
    lines += [f"  {key}: {json.dumps(value)}" for key, value in data.items()]
    lines += [f"  [{c.status}] {c.id}: {c.evidence}" for c in record.checks]
    if where:
        lines.append(f"evidence: {where}")
    return "\n".join(lines)


def write_record(args: argparse.Namespace, settings: Settings, kind: str, ok: bool, checks: list[evidence.Check],
                 data: dict[str, Any]) -> int:
    """The drill's evidence record written, its report printed; the exit code."""
    project = Path(args.project)
    store = evidence.store_for(args.stack, settings.backups.bucket if settings.backups else None, project)
    record = evidence.Record(kind=kind, stack=args.stack, created_at=evidence.now(), commit=commit(project), ok=ok,
                             checks=checks, data=data)
    try:
        where = store.write(record)
    except evidence.EvidenceError as error:
        print(drill_text(record, None), file=sys.stderr)
        raise ProgramInputError(f"evidence not written: {error}") from None
    if args.format == "json":
        print(json.dumps({**evidence.to_json(record), "evidence_record": where}, indent=2))
    else:
        print(drill_text(record, where))
    return 0 if ok else 1


def stack_of(args: argparse.Namespace):
    """The stack's settings, the plan's object names (renamed by `--name-prefix`) and their prefix."""
    project = Path(args.project)
    settings = stack_settings(project, args.stack)
    refuse_prod(settings, args.stack, args.yes_in_prod)
    run = run_program(load_project(project, args.stack), args.stack)
    return settings, expected_from(run, settings, args.name_prefix), args.name_prefix or settings_prefix(run)


def cmd_drill_alerts(args: argparse.Namespace) -> int:
    if args.timeout is not None:
        bounded_timeout(args.timeout)  # bad input first, before the program runs
    settings, expected, prefix = stack_of(args)
    down_for = expected.monitoring.alerts.service_down_for
    timeout = bounded_timeout(args.timeout if args.timeout is not None else duration_seconds(down_for) + 180)
    alertmanager = Alertmanager(args.alertmanager_url, "--alertmanager-url")
    alertmanager.reach("/-/ready")
    engine = Engine(args.docker_host)
    target = find_target(engine, expected.containers, expected.services, prefix, args.service)
    log = (lambda line: print(line, file=sys.stderr)) if args.format == "text" else (lambda line: None)
    result = run_alerts_drill(engine, alertmanager, target, timeout, log)
    code = write_record(args, settings, "drill.alerts", result["ok"], [alerts_check(result, timeout)],
                        {**result, "timeout_seconds": timeout, "service_down_for": down_for})
    return 130 if result["interrupted"] else code


def add_alerts_arguments(alerts: argparse.ArgumentParser, add_program_arguments: Callable) -> None:
    add_program_arguments(alerts)
    add_guard_arguments(alerts)
    add_engine_arguments(alerts)
    alerts.add_argument("--alertmanager-url", default="http://127.0.0.1:9093", help="Alertmanager's HTTP API")
    alerts.add_argument("--service", default="worker", help="the service stopped (default: worker; its last "
                        "container, or its Swarm service scaled to 0)")
    alerts.add_argument("--timeout", type=float, help="seconds the service may stay stopped awaiting its alert and "
                        f"delivery (default: the alert's `for` + 180; at most {MAX_DRILL_SECONDS})")
    alerts.set_defaults(handler=cmd_drill_alerts)


def add_guard_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes-in-prod", action="store_true", help="run the drill on a prod stack")
    parser.add_argument("--format", choices=["text", "json"], default="text")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--docker-host", help="the Docker Engine API (default: DOCKER_HOST, else the local socket)")
    parser.add_argument("--name-prefix", help="the prefix the engine's objects carry instead of the stack's own "
                        "(a renamed copy of the stack)")
