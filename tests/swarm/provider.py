"""A stand-in for the provider's converge wait (no provider plugin can run here): a port of what
kreuzwerker/terraform-provider-docker v4.5.0 (under pulumi-docker 5.x) does after it creates or updates a
service with `converge_config`, internal/provider/resource_docker_service_funcs.go:

- create (resourceDockerServiceCreateRefreshFunc): "running" once every replica's slot has a running task;
  on a timeout or an error the service is deleted and the create fails;
- update (resourceDockerServiceUpdateRefreshFunc): "completed" when Swarm says so, or as soon as every slot
  has a running task while the update is not rolling back; an error when the update rolled back or paused,
  or when a rollback brought every slot back to running;
- the polling of terraform-plugin-sdk v2 helper/retry/state.go (StateChangeConf.WaitForStateContext): the
  first refresh after `Delay` (converge_config.delay for a create, a fixed 7 s for an update), then waits
  that double from MinTimeout (5 s) up to 10 s; a timeout fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import docker

from platform_infra.components.runtime import duration_nanos

# numberedStates (resource_docker_service_funcs.go)
NUMBERED_STATES = {state: rank for rank, state in enumerate(
    ("new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running",
     "complete", "shutdown", "failed", "rejected"), start=1)}
UPDATE_DELAY_SECONDS = 7
MIN_TIMEOUT_SECONDS = 5
MAX_WAIT_SECONDS = 10


class ConvergeError(Exception):
    """What the provider returns, failing the step (and so `pulumi up`)."""


def _tasks_by_slot(tasks: list[dict], active_nodes: set[str]) -> dict[int, dict]:
    """replicatedConsoleLogUpdater.tasksBySlot: per slot, the task of the lowest desired state, then of the
    lowest observed state."""
    by_slot: dict[int, dict] = {}
    for task in tasks:
        desired, observed = NUMBERED_STATES.get(task["DesiredState"], 0), NUMBERED_STATES.get(
            task["Status"]["State"], 0)
        if not desired or not observed:
            continue
        existing = by_slot.get(task.get("Slot", 0))
        if existing is not None:
            existing_desired = NUMBERED_STATES[existing["DesiredState"]]
            if existing_desired < desired:
                continue
            if existing_desired == desired and NUMBERED_STATES[existing["Status"]["State"]] <= observed:
                continue
        if task.get("NodeID") and task["NodeID"] not in active_nodes:
            continue
        by_slot[task.get("Slot", 0)] = task
    return by_slot


def _all_running(client: docker.DockerClient, service: dict) -> bool:
    """replicatedConsoleLogUpdater.update: as many slots running (and meant to) as the service's replicas."""
    replicas = service["Spec"]["Mode"]["Replicated"]["Replicas"]
    tasks = client.api.tasks(filters={"service": service["ID"], "desired-state": "running"})
    active = {node["ID"] for node in client.api.nodes() if node["Status"]["State"] != "down"}
    running = sum(NUMBERED_STATES[t["DesiredState"]] <= NUMBERED_STATES["running"]
                  and t["Status"]["State"] == "running" for t in _tasks_by_slot(tasks, active).values())
    return running == replicas


def _create_refresh(client: docker.DockerClient, service_id: str) -> str:
    return "running" if _all_running(client, client.api.inspect_service(service_id)) else "creating"


def _update_refresh(client: docker.DockerClient, service_id: str) -> str:
    service = client.api.inspect_service(service_id)
    rollback = False
    state, message = (service.get("UpdateStatus") or {}).get("State"), (service.get("UpdateStatus") or {}).get(
        "Message")
    if state == "completed":
        return "completed"
    if state == "rollback_started":
        rollback = True
    elif state in ("rollback_completed", "paused", "rollback_paused"):
        raise ConvergeError(f"service {state.replace('_', ' ')}: {message}")
    if _all_running(client, service):
        if rollback:
            raise ConvergeError(f"service rollback completed: {message}")
        return "completed"
    return "updating"


def _wait(refresh: Callable[[], str], target: str, delay: float, timeout: float) -> list[tuple[float, str]]:
    """StateChangeConf.WaitForStateContext's schedule; returns what each refresh saw (seconds, state)."""
    start = time.monotonic()
    deadline, seen, wait = start + timeout, [], 0.0
    time.sleep(min(delay, timeout))
    while time.monotonic() < deadline:
        state = refresh()
        seen.append((round(time.monotonic() - start, 1), state))
        if state == target:
            return seen
        wait = min(max(wait * 2, MIN_TIMEOUT_SECONDS), MAX_WAIT_SECONDS)
        time.sleep(max(0.0, min(wait, deadline - time.monotonic())))
    raise ConvergeError(f"timeout while waiting for state to become '{target}' (last: {seen[-1:]})")


def converge_create(client: docker.DockerClient, service_id: str, config: dict,
                    before_delete: Callable[[], str] | None = None) -> list[tuple[float, str]]:
    """The create's wait; on a failure `before_delete` (a test's look at the tasks) runs before the service goes,
    and what it returns is added to the error."""
    try:
        return _wait(lambda: _create_refresh(client, service_id), "running", duration_nanos(config["delay"]) / 1e9,
                     duration_nanos(config["timeout"]) / 1e9)
    except ConvergeError as error:
        seen = before_delete() if before_delete else ""
        client.api.remove_service(service_id)  # "the service will be deleted in case it cannot be converged"
        raise ConvergeError(f"{error}{seen and chr(10) + seen}") from None


def converge_update(client: docker.DockerClient, service_id: str, config: dict) -> list[tuple[float, str]]:
    return _wait(lambda: _update_refresh(client, service_id), "completed", UPDATE_DELAY_SECONDS,
                 duration_nanos(config["timeout"]) / 1e9)
