"""`infra autoscale review`: the checklist's "Review and tune auto-scaling policies" as a run, with its record.

It reads the lag the controller reads (its own queries, `lag_queries`) from Prometheus over the window (a week by
default), replays it through the stack's scaling policy with the simulator (`decide`, as `infra autoscale
simulate --from-prometheus` does), and reports the worker-seconds the policy used, the longest time the lag
stayed above the policy's target, and the changes the replay suggests. It writes a dated evidence record
(infra/daytwo/evidence.py) whose check is the line's: pass when the lag was seen and nothing needs tuning, fail
naming the suggestions. When Prometheus holds no lag series in the window (kafka-exporter's
kafka_consumergroup_lag) nothing was reviewed: it says so, unknown, and writes no record. A stack without an autoscaling policy (the Docker runtime runs `workers` fixed) is reviewed
against the candidate policy `--policy` names.

Exit codes: 0 pass, 1 fail or unknown, 2 bad input or Prometheus unreachable.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path

from platform_infra.components.autoscaling import ScalingPolicy
from platform_infra.components.monitoring.model import duration_seconds
from platform_infra.infra import catalog
from platform_infra.infra.daytwo import evidence
from platform_infra.infra.daytwo.autoscale import load_policy
from platform_infra.infra.daytwo.autoscale_simulate import prometheus_history, range_seconds, simulate
from platform_infra.infra.daytwo.stackfile import stack_settings
from platform_infra.infra.mockrun import DEFAULT_PROJECT, ProgramInputError
from platform_infra.infra.settings import NAMESPACE, SETTINGS_KEY
from platform_infra.infra.version import commit

LINE = "post.week.auto-scaling"
FLAP_SECONDS = 600
"""A move that undoes the one before (a scale-down after a scale-up, or the reverse) within this time is a flap."""
FLAPS_PER_DAY = 6
"""More flaps than this a day (over a day at least): the scale-downs need damping."""


@dataclass
class Review:
    samples: int
    missing: int
    """Samples without a lag reading."""
    seconds: float
    worker_seconds: float
    """Replicas the policy set, times how long each held."""
    fixed_worker_seconds: float
    """The stack's `workers` held over the same time, for comparison."""
    above_target_seconds: float
    longest_above_target_seconds: float
    at_max_seconds: float
    peak_replicas: int
    needed_replicas: int
    """The most replicas the lag asked for at the policy's target (ceil(counted lag / target_lag_per_replica))."""
    reversals: int
    """Flaps: moves undoing the one before within FLAP_SECONDS."""
    suggestions: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.samples == self.missing:
            return "unknown"
        return "fail" if self.suggestions else "pass"


def _over_target(policy: ScalingPolicy, line: dict) -> bool | None:
    """The lag (stuck partitions left out) more than the replicas it met can absorb at the policy's target: in
    drain mode, more than they drain in target_drain_seconds at the rate measured, else (and without a rate)
    more than target_lag_per_replica each. None without a lag reading."""
    inputs = line["inputs"]
    if inputs["lag"] is None:
        return None
    counted = max(0.0, inputs["lag"] - inputs["stuck_lag"])
    rate = inputs.get("consumed_per_second")
    if policy.drain_mode and rate:
        return counted > rate * policy.target_drain_seconds
    return counted > policy.target_lag_per_replica * line["current"]


def review(policy: ScalingPolicy, lines: list[dict], workers: int, at_max_for: int) -> Review:
    """The simulated decisions, judged: each holds from its time to the next one (the last for one step)."""
    times = [float(line["time"]) for line in lines]
    step = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else float(policy.interval_seconds)
    held = [b - a for a, b in pairwise(times)] + [step]
    over = [_over_target(policy, line) for line in lines]
    above = longest = stretch = at_max = 0.0
    for line, seconds, is_over in zip(lines, held, over, strict=True):
        stretch = stretch + seconds if is_over else 0.0
        longest = max(longest, stretch)
        above += seconds if is_over else 0.0
        at_max += seconds if is_over and line["desired"] >= policy.max_replicas else 0.0
    moves = [(t, line["desired"] - line["current"]) for t, line in zip(times, lines, strict=True)
             if line["desired"] != line["current"]]
    reversals = sum((a > 0) != (b > 0) and t2 - t1 < FLAP_SECONDS
                    for (t1, a), (t2, b) in pairwise(moves))
    counted = [max(0.0, line["inputs"]["lag"] - line["inputs"]["stuck_lag"]) for line in lines
               if line["inputs"]["lag"] is not None]
    needed = max((math.ceil(lag / policy.target_lag_per_replica) for lag in counted), default=0)
    result = Review(
        samples=len(lines), missing=sum(o is None for o in over), seconds=sum(held),
        worker_seconds=sum(line["desired"] * seconds for line, seconds in zip(lines, held, strict=True)),
        fixed_worker_seconds=workers * sum(held), above_target_seconds=above, longest_above_target_seconds=longest,
        at_max_seconds=at_max, peak_replicas=max(line["desired"] for line in lines), needed_replicas=needed,
        reversals=reversals)
    if result.status != "unknown":
        result.suggestions = suggestions(policy, result, at_max_for)
    return result


def suggestions(policy: ScalingPolicy, seen: Review, at_max_for: int) -> list[str]:
    """What to change, each with the figure that calls for it; none when the policy kept up without waste."""
    found = []
    if seen.longest_above_target_seconds >= at_max_for:
        if seen.at_max_seconds >= at_max_for:
            found.append(f"raise max_replicas ({policy.max_replicas}) and the topic's partitions: the lag stayed "
                         f"above target at max_replicas for {seen.at_max_seconds:.0f} s (the WorkersAtMax alert's "
                         f"{at_max_for} s)")
        else:
            found.append(f"scale up sooner (scale_up_step {policy.scale_up_step}, scale_up_stabilization_seconds "
                         f"{policy.scale_up_stabilization_seconds}): the lag stayed above target for "
                         f"{seen.longest_above_target_seconds:.0f} s in a row below max_replicas")
    if policy.min_replicas > 1 and seen.needed_replicas < policy.min_replicas and seen.above_target_seconds == 0:
        found.append(f"lower min_replicas ({policy.min_replicas}) to {max(1, seen.needed_replicas)}: the lag never "
                     f"asked for more than {seen.needed_replicas} replicas at target_lag_per_replica "
                     f"{policy.target_lag_per_replica}")
    if seen.reversals > FLAPS_PER_DAY * max(seen.seconds / 86400, 1):
        found.append(f"damp the scale-downs (scale_down_stabilization_seconds "
                     f"{policy.scale_down_stabilization_seconds}, tolerance {policy.tolerance}): a move undid the "
                     f"one before within {FLAP_SECONDS} s {seen.reversals} times in {seen.seconds / 3600:.1f} h")
    return found


def review_check(seen: Review, window: int, source: str) -> evidence.Check:
    """The checklist line's check from a review (what `infra checklist` reads from the record)."""
    item = catalog.load().by_id()[LINE]
    section = next(s.name for s, i in catalog.load().lines() if i.id == LINE)
    if seen.status == "unknown":
        said = (f"no lag reading in {seen.samples} samples over {window} s from {source} "
                "(kafka_consumergroup_lag: kafka-exporter's consumer group series)")
    else:
        said = (f"{source}, {window} s replayed: {seen.worker_seconds:.0f} worker-seconds "
                f"(fixed workers: {seen.fixed_worker_seconds:.0f}), peak {seen.peak_replicas} replicas, lag above "
                f"target {seen.above_target_seconds:.0f} s, longest {seen.longest_above_target_seconds:.0f} s"
                + ("; " + "; ".join(seen.suggestions) if seen.suggestions else "; nothing to tune"))
    value = {k: v for k, v in asdict(seen).items() if k != "suggestions"}
    return evidence.Check(id=LINE, section=section, text=item.text, status=seen.status, value=value,
                          threshold={"suggestions": 0}, evidence=said)


def cmd_review(args: argparse.Namespace) -> int:
    window = range_seconds(args.window, "--window")
    if not args.prometheus_url:
        raise ProgramInputError("--prometheus-url: required (the Prometheus that scrapes the stack's kafka-exporter)")
    project = Path(args.project)
    settings = stack_settings(project, args.stack)
    if args.policy:
        policy, source = load_policy(argparse.Namespace(policy=args.policy, stack=None, project=args.project)), \
            args.policy
    elif settings.autoscaling is not None:
        policy, source = settings.autoscaling.workers, f"Pulumi.{args.stack}.yaml"
    else:
        raise ProgramInputError(f"Pulumi.{args.stack}.yaml: {NAMESPACE}:{SETTINGS_KEY}.autoscaling.workers: not set "
                                "(its workers are fixed); give --policy FILE, the policy to review against its lag")
    samples = prometheus_history(args.prometheus_url, policy, window, time.time(), "--prometheus-url")
    workers = min(max(settings.workers, policy.min_replicas), policy.max_replicas)
    lines = simulate(policy, samples, workers)
    at_max_for = duration_seconds(settings.deployed_monitoring().alerts.workers_at_max_for)
    seen = review(policy, lines, settings.workers, at_max_for)
    check = review_check(seen, window, args.prometheus_url)
    if check.status == "unknown":
        if args.format == "json":
            print(json.dumps({"stack": args.stack, "window_seconds": window, "policy": source, **check.value,
                              "suggestions": [], "status": "unknown", "evidence": check.evidence, "record": None},
                             indent=2))
        else:
            print(f"infra autoscale review: stack {args.stack}: [unknown] {check.evidence}; no record written")
        return 1
    record = evidence.Record(kind="autoscale.review", stack=args.stack, created_at=evidence.now(),
                             commit=commit(project), ok=check.status == "pass", checks=[check],
                             data={"window_seconds": window, "policy": source, "policy_settings": policy.model_dump()})
    store = evidence.store_for(args.stack, settings.backups.bucket if settings.backups else None, project)
    try:
        where = store.write(record)
    except evidence.EvidenceError as error:
        raise ProgramInputError(f"evidence not written: {error}") from None
    if args.format == "json":
        print(json.dumps({"stack": args.stack, "reviewed_at": record.created_at.isoformat(), "window_seconds": window,
                          "policy": source, **check.value, "suggestions": seen.suggestions, "status": check.status,
                          "evidence": check.evidence, "record": where}, indent=2))
    else:
        print(f"infra autoscale review: stack {args.stack}, policy {source}, window {window} s\n"
              f"[{check.status}] {check.evidence}\nevidence: {where}")
    return 0 if record.ok else 1


def add_review_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", required=True, help="the stack whose lag is reviewed (and whose record it is)")
    parser.add_argument("--project", default=DEFAULT_PROJECT, help="directory holding the stack files")
    parser.add_argument("--prometheus-url", help="the Prometheus scraping the stack's kafka-exporter (required)")
    parser.add_argument("--window", default="7d", help="how far back to replay (30m .. 31d; default 7d)")
    parser.add_argument("--policy", help="YAML scaling policy to review instead of the stack's "
                        "(autoscaling.workers' keys): needed when the stack has none")
    parser.add_argument("--format", choices=("text", "json"), default="text")
