"""`infra backup restore`: the running stack's PostgreSQL returned to a point in time (`--to`) or to the end of
its archived WAL (`--latest`) from its pgBackRest backups, then `infra verify --phase first-hour`.

pgBackRest runs where the stack's own backups run: a one-off container (Docker runtime) or a one-off,
never-restarted Swarm task with PostgreSQL's image, files (the pgBackRest configuration and the store's
credentials), data volume and network, as PostgreSQL's user. The configuration paths are options, not
environment values, so that the `restore_command` pgBackRest writes into the restored cluster carries them
(without them PostgreSQL's `archive-get` finds no configuration and fetches no WAL); `hot_standby=off` keeps
PostgreSQL unanswering, and unhealthy, until it has replayed to the target and promoted.

In order: `pgbackrest info --output=json` (the plan: the backup set pgBackRest picks for the target, the WAL
range, the size to fetch, the services to stop; `--plan` stops here and changes nothing: pgBackRest has no
restore dry-run, its issue 773); the writers stopped (the autoscaler first, which would scale them back, then
every application, the backup job and the exporter) and waited for, then PostgreSQL; the restore
(`--delta --set=<the planned set>`); PostgreSQL started and awaited healthy, then the writers at their old
counts; the one-off removed. SIGINT or SIGTERM before the restore starts everything again at once; during the
restore it lets pgBackRest finish first (a half-done restore leaves no `pg_control`, PostgreSQL could not
start), then starts everything. The record (`backup.restore`) holds the plan, the timings and verify's checks.

Exit codes: 0 restored and verified; 1 the restore or verify failed (or interrupted, everything started again);
2 bad input, an unreachable Docker host or store (nothing stopped).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from platform_infra.components.backup.jobs import (
    PGBACKREST_CONF,
    PGBACKREST_INCLUDE,
    POSTGRES_UID,
)
from platform_infra.components.backup.model import store_route
from platform_infra.infra.daytwo import evidence, verify
from platform_infra.infra.daytwo.drills import (
    MAX_DRILL_SECONDS,
    DrillInterrupted,
    add_engine_arguments,
    add_guard_arguments,
    bounded_timeout,
    restoring_on_signals,
    stack_of,
    wait_until,
    write_record,
)
from platform_infra.infra.mockrun import ProgramInputError
from platform_infra.infra.settings import Settings

POSTGRES = "postgres"
WRITERS_BESIDE_APPS = ("postgres-backup", "postgres-exporter")
"""PostgreSQL's clients besides the Spring services (every one of `apps` has a pool): the backup job and the
exporter."""
CONTROLLERS = ("autoscaler",)
"""Stopped first: the autoscaler would scale the stopped workers back."""
WAL_SEGMENT_BYTES = 16 * 1024 * 1024
"""PostgreSQL's default WAL segment size (the stack does not change it at initdb): 256 segments a log file."""
ACTIVE_TASK_STATES = {"new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running"}
ENDED_TASK_STATES = {"complete", "failed", "rejected", "shutdown", "orphaned", "remove"}
FAILED_RESTORE_WAIT = 300
"""Seconds PostgreSQL is given to come back after a failed restore (it may have nothing to start from)."""
ENGINE_CALL_SECONDS = 120
"""The HTTP timeout of each Engine API call the restore makes (a stop adds its own stop timeout)."""


def writer_services(settings: Settings) -> tuple[str, ...]:
    """The stack's services that write to PostgreSQL or would start its writers again, in stopping order."""
    return (*CONTROLLERS, *(name.replace("_", "-") for name, _ in settings.apps), *WRITERS_BESIDE_APPS)


# --- the target ----------------------------------------------------------------------------------------------


def parse_target(text: str) -> datetime:
    """`--to`: a time with its offset (PostgreSQL's own `2026-12-03 10:00:00+00`, or ISO 8601)."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ProgramInputError(f"--to {text}: allowed a time with its UTC offset, e.g. '2026-12-03 10:00:00+00' "
                                "or 2026-12-03T10:00:00Z")
    return when.astimezone(UTC)


def pgbackrest_target(when: datetime) -> str:
    """The form pgBackRest's --target parses (restore.c getEpoch: `YYYY-MM-DD HH:MM:SS[.ffffff]+HH:MM`)."""
    return when.astimezone(UTC).isoformat(sep=" ")


def _when(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


# --- the plan -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stopped:
    """A container (Docker runtime) or Swarm service the restore stops and starts again."""

    name: str
    service: str
    replicas: int | None = None
    """Swarm: its replicas before the restore, given back after."""


def _segment_index(segment: str) -> int:
    """A WAL segment file name's position in the WAL (timeline aside): log * 256 + segment, for 16 MiB."""
    return int(segment[8:16], 16) * (0x100000000 // WAL_SEGMENT_BYTES) + int(segment[16:24], 16)


def choose_backup(info: list[dict], target: datetime | None, now: datetime, stanza: str) -> dict:
    """The backup set pgBackRest restores: the newest, or for a time the newest whose stop time is before it
    (pgBackRest 2.45 src/command/restore/restore.c restoreBackupSet: `backupTimestampStop < target`, the
    target in whole seconds). A target it could not reach is bad input."""
    backups = info[0].get("backup", []) if info else []
    if not backups:
        flag = "--latest" if target is None else f"--to {target.isoformat()}"
        raise ProgramInputError(f"{flag}: no PostgreSQL backup of stanza {stanza} in the store: take one first "
                                "(infra backup now)")
    if target is None:
        return backups[-1]
    oldest = backups[0]["timestamp"]["stop"]
    if target > now:
        raise ProgramInputError(f"--to {target.isoformat()}: in the future; allowed after the oldest backup's end "
                                f"({_when(oldest)}) up to now ({now.isoformat(timespec='seconds')})")
    usable = [b for b in backups if b["timestamp"]["stop"] < math.floor(target.timestamp())]
    if not usable:
        raise ProgramInputError(f"--to {target.isoformat()}: before the oldest backup's end ({_when(oldest)}); "
                                f"allowed after it up to now ({now.isoformat(timespec='seconds')})")
    return usable[-1]


def wal_range(info: list[dict], backup: dict) -> dict[str, Any]:
    """The archived WAL replay may read: from the backup's first segment through the newest archived one of
    its database (recovery to a time stops at the first commit after it, so it may read fewer)."""
    archives = [a for a in info[0].get("archive", []) if a.get("database", {}).get("id") == backup["database"]["id"]]
    first = backup["archive"]["start"]
    last = max((a["max"] for a in archives if a.get("max")), default=backup["archive"]["stop"])
    segments = max(_segment_index(last) - _segment_index(first) + 1, 0)
    return {"archive_id": archives[0]["id"] if archives else None, "from": first, "through": last,
            "segments_at_most": segments, "bytes_at_most": segments * WAL_SEGMENT_BYTES}


def make_plan(info: list[dict], target: datetime | None, now: datetime, stanza: str, postgres: Stopped,
              writers: list[Stopped]) -> dict[str, Any]:
    backup = choose_backup(info, target, now, stanza)
    wal = wal_range(info, backup)
    stored = backup["info"]["repository"]["size"]
    return {
        "target": "latest" if target is None else target.isoformat(),
        "backup": {"label": backup["label"], "type": backup["type"], "started": _when(backup["timestamp"]["start"]),
                   "stopped": _when(backup["timestamp"]["stop"]), "database_bytes": backup["info"]["size"],
                   "stored_bytes": stored, "references": backup.get("reference") or []},
        "wal": wal,
        "fetch_bytes_at_most": stored + wal["bytes_at_most"],
        "stop": [asdict(w) for w in writers] + [asdict(postgres)],
    }


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


def plan_text(stack: str, plan: dict[str, Any]) -> str:
    b, w = plan["backup"], plan["wal"]
    refs = f" on {', '.join(b['references'])}" if b["references"] else ""
    lines = [f"infra backup restore --stack {stack}: to {plan['target']}",
             (f"  backup set {b['label']} ({b['type']}{refs}), taken {b['started']} .. {b['stopped']}: "
              f"{_mib(b['stored_bytes'])} stored, {_mib(b['database_bytes'])} of database"),
             (f"  WAL {w['from']} .. {w['through']} (archive {w['archive_id']}): at most {w['segments_at_most']} "
              f"segments, {_mib(w['bytes_at_most'])}"),
             f"  to fetch: at most {_mib(plan['fetch_bytes_at_most'])}",
             "  stops, then starts again at these counts:"]
    lines += [f"    {s['name']}" + (f" ({s['replicas']} tasks)" if s["replicas"] is not None else "")
              for s in plan["stop"]]
    return "\n".join(lines)


# --- the engine -------------------------------------------------------------------------------------------


class Runtime:
    """The stack's objects on the engine: what to stop and start, and the one-off pgBackRest runs in."""

    def __init__(self, engine: verify.Engine, expected: verify.Expected, prefix: str, stanza: str):
        # Stopping ten containers at once on a loaded host can keep the engine's answer past verify's 10 s.
        engine.client.api.timeout = ENGINE_CALL_SECONDS
        self.engine, self.api, self.expected, self.prefix, self.stanza = engine, engine.client.api, expected, prefix, stanza
        self.swarm = expected.settings.runtime == "swarm"
        self.one_off = f"{prefix}-restore"

    # -- finding
    def _own(self, service: str) -> list[str]:
        import re

        own = re.compile(rf"{re.escape(self.prefix)}-{re.escape(service)}(-\d+)?")
        if self.swarm:
            return [name for name, _ in self.expected.services if name == f"{self.prefix}-{service}"]
        return sorted((c for c in self.expected.containers if own.fullmatch(c)), key=lambda c: (len(c), c))

    def running(self, service: str) -> list[Stopped]:
        """The service's running containers, or its Swarm service at its current replicas (not at 0)."""
        import docker

        found = []
        for name in self._own(service):
            try:
                if self.swarm:
                    mode = self.api.inspect_service(name)["Spec"]["Mode"]
                    if "Replicated" not in mode:
                        raise ProgramInputError(f"--stack: {name} runs in global mode; the restore can only stop "
                                                "replicated services")
                    replicas = int(mode["Replicated"].get("Replicas", 0))
                    if replicas:
                        found.append(Stopped(name, service, replicas))
                elif self.api.inspect_container(name)["State"]["Running"]:
                    found.append(Stopped(name, service))
            except docker.errors.NotFound:
                continue
        return found

    def postgres(self) -> Stopped:
        found = self.running(POSTGRES)
        if not found:
            raise ProgramInputError(f"--docker-host: no running PostgreSQL of the stack ({self.prefix}-{POSTGRES}) "
                                    f"at {self.engine.flag_value} (the stack's engine? --name-prefix for a renamed copy)")
        return found[0]

    def no_one_off_left(self) -> None:
        import docker

        try:
            (self.api.inspect_service if self.swarm else self.api.inspect_container)(self.one_off)
        except docker.errors.NotFound:
            return
        raise ProgramInputError(f"{self.one_off}: a restore is already under way (or was left by one killed): wait "
                                f"for it, or remove it (docker {'service ' if self.swarm else ''}rm {self.one_off})")

    # -- stopping and starting
    def stop(self, target: Stopped) -> None:
        if self.swarm:
            self.engine.client.services.get(target.name).scale(0)
        else:
            # PostgreSQL: a fast shutdown within 60 s, as the runbook had it; the others: their own stop timeout.
            self.api.stop(target.name, timeout=60 if target.service == POSTGRES else None)

    def stopped(self, target: Stopped) -> bool:
        if not self.swarm:
            return not self.api.inspect_container(target.name)["State"]["Running"]
        return not [t for t in self.api.tasks(filters={"service": target.name})
                    if t["Status"]["State"] in ACTIVE_TASK_STATES]

    def start(self, target: Stopped) -> None:
        """Idempotent: the container started, or the service back at its replicas."""
        if self.swarm:
            self.engine.client.services.get(target.name).scale(target.replicas)
        elif not self.api.inspect_container(target.name)["State"]["Running"]:
            self.api.start(target.name)

    def healthy(self, target: Stopped) -> bool:
        if self.swarm:
            return self.engine.service_problem(target.name, target.replicas) is None
        return self.engine.container_problem(target.name) is None

    # -- the one-off
    def run_one_off(self, postgres: Stopped, pgbackrest_args: list[str]) -> None:
        command = [f"--config={PGBACKREST_CONF}", f"--config-include-path={PGBACKREST_INCLUDE}",
                   f"--stanza={self.stanza}", *pgbackrest_args]
        labels = {"platform.restore": self.prefix}
        if self.swarm:
            spec = self.api.inspect_service(postgres.name)["Spec"]
            task = copy.deepcopy(spec["TaskTemplate"])
            container = task["ContainerSpec"]
            container.update(Command=["pgbackrest", *command], User=POSTGRES_UID, Labels=labels,
                             Healthcheck={"Test": ["NONE"]})
            container.pop("Args", None)
            # Its networks without PostgreSQL's aliases: clients must not find the one-off by them.
            task["Networks"] = [{k: v for k, v in n.items() if k != "Aliases"} for n in task.get("Networks", [])]
            task["RestartPolicy"] = {"Condition": "none", "MaxAttempts": 0}
            task.pop("ForceUpdate", None)
            self.api.create_service(task, name=self.one_off, labels=labels, mode={"Replicated": {"Replicas": 1}},
                                    endpoint_spec={"Mode": "dnsrr"})
            return
        state = self.api.inspect_container(postgres.name)
        networks = list(state["NetworkSettings"]["Networks"])
        created = self.engine.client.containers.create(
            state["Image"], command=command, entrypoint=["pgbackrest"], name=self.one_off, user=POSTGRES_UID,
            read_only=True, tmpfs={"/tmp": "rw,noexec,nosuid,size=64m"}, cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"], volumes_from=[postgres.name], network=networks[0],
            labels=labels)
        for network in networks[1:]:
            self.engine.client.networks.get(network).connect(created)
        created.start()

    def one_off_ended(self) -> tuple[int, str] | None:
        """(exit code, error) once the one-off has ended; None while it runs."""
        if self.swarm:
            tasks = self.api.tasks(filters={"service": self.one_off})
            ended = [t for t in tasks if t["Status"]["State"] in ENDED_TASK_STATES]
            if not tasks or len(ended) < len(tasks):
                return None
            status = ended[-1]["Status"]
            return int(status.get("ContainerStatus", {}).get("ExitCode", -1)), status.get("Err", status["State"])
        state = self.api.inspect_container(self.one_off)["State"]
        if state["Status"] == "created":  # run_one_off starts it at once: one left created never ran
            return -1, "never started"
        return None if state["Status"] in ("running", "restarting") else (state["ExitCode"], state["Error"])

    def one_off_logs(self, stdout: bool = True, stderr: bool = True) -> str:
        if self.swarm:
            chunks = self.api.service_logs(self.one_off, stdout=stdout, stderr=stderr, is_tty=False)
            return b"".join(chunks).decode(errors="replace")
        return self.api.logs(self.one_off, stdout=stdout, stderr=stderr).decode(errors="replace")

    def exists(self) -> bool:
        import docker

        try:
            (self.api.inspect_service if self.swarm else self.api.inspect_container)(self.one_off)
            return True
        except docker.errors.NotFound:
            return False

    def remove_one_off(self) -> None:
        """The one-off removed, and in Swarm its container gone (it would hold the data volume)."""
        import docker

        try:
            if self.swarm:
                self.api.remove_service(self.one_off)
                wait_until(lambda: not self.api.containers(all=True, filters={
                    "label": f"com.docker.swarm.service.name={self.one_off}"}), time.monotonic() + 60)
            else:
                self.api.remove_container(self.one_off, force=True)
        except docker.errors.NotFound:
            pass

    def promoted(self, database: str) -> bool | None:
        """PostgreSQL out of recovery, asked in its container (None: no container of it on this engine)."""
        if self.swarm:
            found = self.engine.client.containers.list(
                filters={"label": f"com.docker.swarm.service.name={self.prefix}-{POSTGRES}"})
            if not found:
                return None
            container = found[0]
        else:
            container = self.engine.client.containers.get(f"{self.prefix}-{POSTGRES}")
        code, out = container.exec_run(["psql", "-X", "-tAq", "-d", database, "-c", "SELECT pg_is_in_recovery()"],
                                       user="postgres")
        return None if code != 0 else out.decode().strip() == "f"


def backup_info(runtime: Runtime, postgres: Stopped, timeout: float) -> list[dict]:
    """`pgbackrest info --output=json` in a one-off beside PostgreSQL; a store it cannot read is exit 2."""
    runtime.run_one_off(postgres, ["--output=json", "info"])
    try:
        ended = wait_until(runtime.one_off_ended, time.monotonic() + min(timeout, 300))
        out, err = runtime.one_off_logs(stderr=False), runtime.one_off_logs(stdout=False)
    finally:
        runtime.remove_one_off()
    route = store_route(runtime.expected.settings.backups)
    where = f"the store {route.server_name} (bucket {runtime.expected.settings.backups.bucket})"
    if ended is None:
        raise ProgramInputError(f"store unreachable: pgbackrest info did not answer in time from {where}")
    try:
        info = json.loads(out) if ended[0] == 0 else None
    except ValueError:
        info = None
    if not isinstance(info, list) or (info and info[0].get("status", {}).get("code") not in (0, 2, 6)):
        detail = (err or out).strip().splitlines()[-1:] or [str(ended[1])]
        status = info[0].get("status", {}).get("message") if isinstance(info, list) and info else None
        raise ProgramInputError(f"store unreachable: pgbackrest info (exit {ended[0]}) from {where}: "
                                f"{status or detail[0]}")
    return info


# --- the restore ----------------------------------------------------------------------------------------------


def _wait_through_signals(probe: Callable[[], Any], deadline: float, noted: list[str],
                          log: Callable[[str], None]) -> Any:
    """wait_until, but a SIGINT or SIGTERM is noted and the wait goes on (the step must end), and an engine call
    that fails (a timeout on a loaded host) is a "not yet"."""
    def quietly() -> Any:
        try:
            return probe()
        except DrillInterrupted:
            raise
        except Exception:  # noqa: BLE001 asked again at the next poll
            return None

    while True:
        try:
            return wait_until(quietly, deadline)
        except DrillInterrupted as signal_name:
            noted.append(str(signal_name))
            log(f"{signal_name}: finishing this step first, then starting everything again")


def run_restore(runtime: Runtime, postgres: Stopped, writers: list[Stopped], restore_args: list[str],
                timeout: float, log: Callable[[str], None]) -> dict[str, Any]:
    """Stop, restore, start: everything stopped is started again whatever happens (an error, a signal)."""
    result: dict[str, Any] = {"seconds": {}, "restore_exit": None, "restore_error": None, "restore_log": None,
                              "unhealthy": [], "interrupted": None}
    noted: list[str] = []
    stopped: list[Stopped] = []
    started_at = time.monotonic()
    try:
        with restoring_on_signals():
            # The writers at once (their own stop timeouts run side by side), then PostgreSQL; every stop call
            # has returned before the pool is left, even on a signal, so no start below races a stop.
            with ThreadPoolExecutor(max_workers=8) as pool:
                for target in writers:
                    log(f"stopping {target.name}")
                    stopped.append(target)
                for future in [pool.submit(runtime.stop, target) for target in writers]:
                    future.result()
            log(f"stopping {postgres.name}")
            stopped.append(postgres)
            runtime.stop(postgres)
            if not wait_until(lambda: all(runtime.stopped(s) for s in stopped), time.monotonic() + timeout):
                raise RuntimeError(f"not stopped within {timeout:g} s: "
                                   f"{', '.join(s.name for s in stopped if not runtime.stopped(s))}")
            result["seconds"]["stop"] = round(time.monotonic() - started_at, 1)
            log(f"restoring in {runtime.one_off}: pgbackrest {' '.join(restore_args)}")
            restoring = time.monotonic()
            runtime.run_one_off(postgres, restore_args)
    except DrillInterrupted as signal_name:
        noted.append(str(signal_name))
    except Exception as error:  # noqa: BLE001 reported; everything is started again below
        result["restore_error"] = f"{type(error).__name__}: {error}"
    finally:
        with restoring_on_signals():
            if runtime.exists():
                ended = _wait_through_signals(runtime.one_off_ended, time.monotonic() + timeout, noted, log)
                result["restore_log"] = "\n".join(runtime.one_off_logs().strip().splitlines()[-15:])
                if ended is None:
                    result["restore_error"] = f"the restore did not end within {timeout:g} s"
                else:
                    result["restore_exit"] = ended[0]
                    if ended[0] != 0:
                        result["restore_error"] = f"pgbackrest restore exited {ended[0]} {ended[1] or ''}".strip()
                    result["seconds"]["restore"] = round(time.monotonic() - restoring, 1)
                runtime.remove_one_off()
            ok = result["restore_exit"] == 0
            bound = timeout if ok else min(timeout, FAILED_RESTORE_WAIT)
            for group, step in (([postgres], "postgres"), (writers, "writers")):
                group = [s for s in group if s in stopped]
                if not group:
                    continue
                began = time.monotonic()
                for target in group:
                    log(f"starting {target.name}")
                    try:
                        runtime.start(target)
                    except DrillInterrupted as signal_name:
                        noted.append(str(signal_name))
                        runtime.start(target)
                    except Exception as error:  # noqa: BLE001 the others are started still; its health says
                        log(f"starting {target.name}: {error}")
                if not _wait_through_signals(lambda g=group: all(runtime.healthy(s) for s in g),
                                             time.monotonic() + bound, noted, log):
                    result["unhealthy"] += [s.name for s in group if not runtime.healthy(s)]
                result["seconds"][f"start_{step}"] = round(time.monotonic() - began, 1)
    result["interrupted"] = noted[0] if noted else None
    result["seconds"]["total"] = round(time.monotonic() - started_at, 1)
    result["started_again"] = [s.name for s in stopped]
    result["ok"] = result["restore_exit"] == 0 and not result["unhealthy"] and not noted
    return result


def restore_check(result: dict[str, Any], plan: dict[str, Any]) -> evidence.Check:
    if result["interrupted"]:
        text = f"interrupted by {result['interrupted']}; every stopped service started again"
    elif result["restore_error"]:
        text = f"{result['restore_error']}; every stopped service started again"
    else:
        text = (f"restored backup set {plan['backup']['label']} to {plan['target']} in {result['seconds'].get('restore')} s"
                f", PostgreSQL {'promoted' if result.get('promoted') else 'NOT promoted'}; "
                + (f"unhealthy after: {', '.join(result['unhealthy'])}" if result["unhealthy"]
                   else f"{len(result['started_again'])} stopped containers/services healthy again"))
    return evidence.Check(id="rollback.restore-database", section="Rollback Plan",
                          text="Restore the database (if the schema changed)",
                          status="pass" if result["ok"] else "fail", value=result["seconds"],
                          threshold={"target": plan["target"]}, evidence=text)


# --- the command ------------------------------------------------------------------------------------------------

TARGETS_UP_SECONDS = 120


def _targets_up(context: verify.Context) -> bool:
    try:
        return verify.metrics_collected(context).status == "pass"
    except Exception:  # noqa: BLE001 Prometheus restarting or slow: asked again; verify reports it after
        return False



def cmd_restore(args: argparse.Namespace) -> int:
    if (args.to is None) == (not args.latest):
        raise ProgramInputError("--to/--latest: allowed exactly one: --to TIME (a point in time, with its offset) or "
                                "--latest (the end of the archived WAL)")
    timeout = bounded_timeout(args.timeout)
    target = parse_target(args.to) if args.to is not None else None
    now = evidence.now()
    if target is not None and target > now:  # bad input before anything is read
        raise ProgramInputError(f"--to {target.isoformat()}: in the future; allowed up to now "
                                f"({now.isoformat(timespec='seconds')})")
    # --plan changes nothing: no prod guard for it.
    settings, expected, prefix = stack_of(argparse.Namespace(**{**vars(args), "yes_in_prod": args.yes_in_prod or args.plan}))
    if settings.backups is None:
        raise ProgramInputError(f"--stack {args.stack}: the stack declares no backups (platform:settings.backups)")
    log = (lambda line: print(line, file=sys.stderr)) if args.format == "text" else (lambda line: None)
    project = Path(args.project)
    store = evidence.store_for(args.stack, settings.backups.bucket, project)
    verify_args = argparse.Namespace(**{**vars(args), "window": "1h"})
    ids = verify.check_ids("first-hour")
    context = None
    if not args.plan:
        # The evidence store and the sources verify reads, reached before anything is stopped.
        try:
            store.records()
        except evidence.EvidenceError as error:
            raise ProgramInputError(f"store unreachable: {error}") from None
        context = verify.build_context(verify_args, expected, ids, store.records)
    runtime = Runtime(verify.Engine(args.docker_host), expected, prefix, settings.backups.stanza)
    runtime.no_one_off_left()
    postgres = runtime.postgres()
    writers = [w for service in writer_services(settings) for w in runtime.running(service)]
    info = backup_info(runtime, postgres, timeout)
    plan = make_plan(info, target, evidence.now(), settings.backups.stanza, postgres, writers)
    plan = {"stack": args.stack, "runtime": settings.runtime, **plan}
    if args.plan:
        print(json.dumps(plan, indent=2) if args.format == "json" else plan_text(args.stack, plan))
        return 0
    if args.format == "text":
        log(plan_text(args.stack, plan))
    restore_args = ["--delta", f"--set={plan['backup']['label']}", "--recovery-option=hot_standby=off"]
    if target is not None:
        restore_args += ["--type=time", f"--target={pgbackrest_target(target)}", "--target-action=promote"]
    result = run_restore(runtime, postgres, writers, [*restore_args, "restore"], timeout, log)
    database = settings.data.postgres_database
    result["promoted"] = runtime.promoted(database) if result["restore_exit"] == 0 else None
    result["ok"] = result["ok"] and result["promoted"] is not False
    checks = [restore_check(result, plan)]
    verified = None
    if result["ok"]:
        # The restarted targets are down in Prometheus until its next scrape of each: verify once they are up
        # again (or after TARGETS_UP_SECONDS, when the check says which are not).
        log("infra verify --phase first-hour, once Prometheus scrapes every target again")
        wait_until(lambda: _targets_up(context), time.monotonic() + TARGETS_UP_SECONDS)
        checks += verify.run_checks(context, ids)
        verified = all(c.status == "pass" for c in checks[1:])
    data = {"plan": plan, **{k: v for k, v in result.items() if k != "ok"}, "restored": result["ok"],
            "verify_first_hour": None if verified is None else
            {"ok": verified, "statuses": {c.id: c.status for c in checks[1:]}}}
    code = write_record(args, settings, "backup.restore", result["ok"] and bool(verified), checks, data)
    return 130 if result["interrupted"] else code


def add_restore_arguments(parser: argparse.ArgumentParser, add_program_arguments: Callable) -> None:
    add_program_arguments(parser)
    # Exactly one of the two, checked by cmd_restore: its one line says what is allowed (argparse adds its usage).
    parser.add_argument("--to", metavar="TIME", help="the time to return to, with its offset ('2026-12-03 "
                        "10:00:00+00'): after the oldest backup's end, not in the future")
    parser.add_argument("--latest", action="store_true", help="to the end of the archived WAL (one of --to, --latest)")
    parser.add_argument("--plan", action="store_true", help="print the backup set, the WAL range, the size to "
                        "fetch and the services it would stop; change nothing")
    add_guard_arguments(parser)
    add_engine_arguments(parser)
    parser.add_argument("--timeout", type=float, default=MAX_DRILL_SECONDS, help="seconds each step (stopping, "
                        f"the restore, each start) may take (default and at most {MAX_DRILL_SECONDS})")
    parser.add_argument("--prometheus-url", default="http://127.0.0.1:9090", help="for verify: Prometheus' API")
    parser.add_argument("--alertmanager-url", default="http://127.0.0.1:9093", help="for verify: Alertmanager's API")
    parser.add_argument("--endpoint", help="for verify: where the edge answers (default: https://<first public "
                        "host>)")
    parser.add_argument("--grafana-url", help="for verify: Grafana's URL (default: the stack's grafana_url)")
    parser.set_defaults(handler=cmd_restore)
