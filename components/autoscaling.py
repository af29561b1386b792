"""Worker autoscaling on Kafka consumer lag: the policy, and the pure decision the controller applies.

`decide` is the one decision: the controller (`infra autoscale`) and the simulator (`infra autoscale
simulate`) both call it, with the state it returned the time before, so a replayed trace decides exactly as
the controller would have.

The algorithm is Kubernetes' Horizontal Pod Autoscaler (desired = ceil(metric / target), a tolerance band,
stabilisation windows over recent recommendations, step limits; kubernetes/pkg/controller/podautoscaler/
horizontal.go, stabilizeRecommendationWithBehaviors) fed with KEDA's Kafka scaler metric (total lag of a
consumer group on a topic, an activation threshold, and never more consumers than partitions:
kedacore/keda pkg/scalers/kafka_scaler.go).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from platform_infra.components.kafka import KAFKA_NAME


class ReplicasIfHigher(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    replicas_if_higher: int = Field(ge=1, le=500)


class ScalingPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_replicas: int = Field(default=1, ge=1, le=500)
    max_replicas: int = Field(ge=1, le=500)
    """Also the least partition count of `topic`: the stack creates it with at least this many."""
    target_lag_per_replica: int = Field(default=100, ge=1)
    """Messages of lag one worker is expected to absorb: desired = ceil(total lag / this)."""
    activation_lag: int = Field(default=0, ge=0)
    """At or below this total lag the workers are idle: scale towards min_replicas."""
    tolerance: float = Field(default=0.1, ge=0, lt=1)
    """No change while lag / (current * target) is within 1 +- tolerance (HPA's default 0.1)."""
    scale_up_step: int = Field(default=4, ge=1)
    """Most replicas added by one decision."""
    scale_up_stabilization_seconds: int = Field(default=0, ge=0, le=3600)
    """Scale up only to the lowest recommendation of this window (0: react at once, as HPA)."""
    scale_down_step: int = Field(default=1, ge=1)
    """Most replicas removed by one decision."""
    scale_down_stabilization_seconds: int = Field(default=300, ge=0, le=3600)
    """Scale down only to the highest recommendation of this window (HPA's default 300 s)."""
    interval_seconds: int = Field(default=15, ge=1, le=600)
    """Polling interval of the controller."""
    stale_after_seconds: int = Field(default=120, ge=1)
    """A lag sample older than this is stale: the controller holds instead of scaling down."""
    consumer_group: str = Field(pattern=KAFKA_NAME)
    topic: str = Field(pattern=KAFKA_NAME)
    target_drain_seconds: int | None = Field(default=None, ge=1, le=86_400)
    """Drain-time mode: replicas that drain the lag within this time at the measured consumption rate per
    replica, on top of the arrival rate; unset (or a rate unknown): target_lag_per_replica decides."""
    rate_window_seconds: int = Field(default=120, ge=30, le=3600)
    """Window of the consumption and arrival rates (PromQL rate()); a scale-out is judged this long after."""
    stuck_after_seconds: int | None = Field(default=600, ge=60, le=86_400)
    """A partition with lag whose committed offset has not moved this long is stuck: left out of the lag
    (a poison message cannot hold the workers scaled out); null: every partition counts."""
    limit_to_partitions_with_lag: bool = True
    """Never more replicas than partitions that have lag (a consumer on an empty partition idles)."""
    failure_threshold: int = Field(default=3, ge=1, le=100)
    """Failed or stale reads in a row after which the fallback applies (and its alert fires)."""
    fallback: Literal["hold"] | ReplicasIfHigher = "hold"
    """What a failing metric does once failure_threshold is reached: `hold`, or `{replicas_if_higher: N}`
    (raise to N, never lower). Before it, and always, a failing metric never scales in."""

    @model_validator(mode="after")
    def _bounds(self) -> ScalingPolicy:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        if isinstance(self.fallback, ReplicasIfHigher) and self.fallback.replicas_if_higher > self.max_replicas:
            raise ValueError("fallback.replicas_if_higher must not exceed max_replicas")
        return self

    @property
    def drain_mode(self) -> bool:
        return self.target_drain_seconds is not None

    @property
    def window_seconds(self) -> int:
        """How long the controller keeps recommendations."""
        return max(self.scale_up_stabilization_seconds, self.scale_down_stabilization_seconds)



PAUSE_LABEL = "platform.autoscaling.paused"
"""`docker service update --label-add platform.autoscaling.paused=true <service>`: the controller holds."""


@dataclass(frozen=True)
class Observation:
    current: int
    """Replicas of the worker service now."""
    lag: float | None
    """Total lag of the consumer group on the topic, every partition; None when the metric is missing."""
    lag_age_seconds: float | None
    """Age of the newest lag sample."""
    partitions: int | None
    """Partitions of the topic; None when unknown."""
    partitions_with_lag: int | None = None
    """Partitions whose lag is above 0, stuck ones included; None when unknown (no cap from it)."""
    stuck_partitions: int = 0
    """Partitions with lag whose committed offset has not moved for stuck_after_seconds."""
    stuck_lag: float = 0.0
    """The lag those stuck partitions hold."""
    consumed_per_second: float | None = None
    """The group's consumption rate (committed offsets), all replicas together; None when unknown."""
    produced_per_second: float | None = None
    """The topic's arrival rate; None when unknown."""
    consumers: int | None = None
    """Members of the consumer group, the workers consuming now (tasks still starting are not); None when
    unknown: the current replicas stand for them."""
    lag_by_partition: dict[str, float] | None = None
    """Reported in the decision's inputs only."""
    paused: bool = False
    """The service carries PAUSE_LABEL=true."""
    error: str | None = None
    """Why the read failed (Prometheus unreachable, a failed query); the other fields are then unknown."""


@dataclass(frozen=True)
class Recommendation:
    time: float
    replicas: int


@dataclass(frozen=True)
class ScaleOut:
    """A run of scale-outs, to judge whether it raised throughput."""
    time: float
    """The last scale-out of the run."""
    replicas: int
    """The count it set."""
    consumed_before: float
    """The consumption rate before the run's first scale-out."""


@dataclass(frozen=True)
class State:
    """What a decision remembers for the next ones."""
    recommendations: tuple[Recommendation, ...] = ()
    failures: int = 0
    """Failed or stale reads in a row."""
    scale_out: ScaleOut | None = None


@dataclass(frozen=True)
class Decision:
    desired: int
    reason: str
    recommendation: Recommendation | None
    """What this decision recommends, for the window of later decisions; None when the metric was unusable."""
    state: State
    """The state to pass to the next decision."""
    mode: Literal["lag", "drain", "hold", "fallback", "paused"]
    inputs: dict = field(default_factory=dict)
    steps: tuple[dict, ...] = ()
    """From the raw recommendation to `desired`: {"step", "replicas", "note"}, each rule that acted."""
    limited_by: str | None = None
    """The cap that won (min_replicas, max_replicas, partitions, partitions_with_lag), None when none acted."""
    saturated: bool = False

    def explained(self) -> dict:
        """The decision's fields of the controller's (and the simulator's) JSON line."""
        return {"desired": self.desired, "reason": self.reason, "mode": self.mode, "limited_by": self.limited_by,
                "inputs": self.inputs, "steps": list(self.steps)}


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _inputs(seen: Observation) -> dict:
    inputs = {"current": seen.current, "lag": seen.lag, "lag_age_seconds": seen.lag_age_seconds,
              "partitions": seen.partitions, "partitions_with_lag": seen.partitions_with_lag,
              "stuck_partitions": seen.stuck_partitions, "stuck_lag": seen.stuck_lag,
              "consumed_per_second": seen.consumed_per_second, "produced_per_second": seen.produced_per_second,
              "consumers": seen.consumers}
    if seen.lag_by_partition is not None:
        inputs["lag_by_partition"] = seen.lag_by_partition
    return inputs


def decide(policy: ScalingPolicy, seen: Observation, state: State, now: float) -> Decision:
    """The replica count the worker service should have now, from what is seen and what earlier decisions
    left in `state`; pure (the controller and the simulator both thread its state)."""
    inputs = _inputs(seen)
    if seen.paused:
        return Decision(seen.current, f"paused ({PAUSE_LABEL}=true on the service): holding", None, state,
                        "paused", inputs, ({"step": "paused", "replicas": seen.current, "note": "label set"},))
    failure = _failure(policy, seen)
    if failure is not None:
        return _fail(policy, seen, replace(state, failures=state.failures + 1), failure, inputs)
    state = replace(state, failures=0)
    recent = [r for r in state.recommendations if r.time > now - policy.window_seconds]
    steps: list[dict] = []

    lag = seen.lag
    stuck = policy.stuck_after_seconds is not None and seen.stuck_partitions > 0
    if stuck:
        lag = max(0.0, seen.lag - seen.stuck_lag)
        steps.append({"step": "stuck", "replicas": None,
                      "note": f"{seen.stuck_partitions} stuck partition(s) left out: lag {seen.lag:g} -> {lag:g}"})
    with_lag = seen.partitions_with_lag
    if with_lag is not None and stuck:
        with_lag = max(0, with_lag - seen.stuck_partitions)

    consuming = seen.consumers or seen.current
    per_replica = seen.consumed_per_second / consuming if seen.consumed_per_second and consuming > 0 else None
    mode: Literal["lag", "drain"] = "lag"
    if lag <= policy.activation_lag:
        raw, why = policy.min_replicas, f"lag {lag:g} at or below activation {policy.activation_lag}"
    elif policy.drain_mode and per_replica is not None and seen.produced_per_second is not None:
        mode = "drain"
        needed = lag / policy.target_drain_seconds + seen.produced_per_second
        exact = needed / per_replica
        if abs(exact / seen.current - 1) <= policy.tolerance:
            raw, why = seen.current, f"drain: {exact:.2f} replicas within tolerance"
        else:
            raw = math.ceil(exact)
            why = (f"drain: (lag {lag:g} / {policy.target_drain_seconds}s + arrival {seen.produced_per_second:.3g}/s)"
                   f" / {per_replica:.3g}/s per replica = {raw}")
    else:
        if policy.drain_mode:
            unknown = "consumption" if per_replica is None else "arrival"
            steps.append({"step": "drain", "replicas": None,
                          "note": f"{unknown} rate unknown: target_lag_per_replica decides"})
        prefix = steps[-1]["note"] + "; " if policy.drain_mode else ""
        if seen.current > 0 and abs(lag / (seen.current * policy.target_lag_per_replica) - 1) <= policy.tolerance:
            raw, why = seen.current, f"{prefix}lag {lag:g} within tolerance"
        else:
            raw = math.ceil(lag / policy.target_lag_per_replica)
            why = f"{prefix}lag {lag:g} / target {policy.target_lag_per_replica} = {raw}"
    steps.append({"step": "raw", "replicas": raw, "note": why})

    caps = {"max_replicas": policy.max_replicas, "partitions": seen.partitions}
    if policy.limit_to_partitions_with_lag and with_lag is not None:
        caps["partitions_with_lag"] = with_lag
    cap_name, cap = min(caps.items(), key=lambda item: item[1])
    upper = max(policy.min_replicas, cap)
    recommended = _clamp(raw, policy.min_replicas, upper)
    limited_by = None
    if recommended != raw:
        limited_by = "min_replicas" if recommended == policy.min_replicas and raw < recommended else cap_name
        why += f", capped to [{policy.min_replicas}, {upper}] by {limited_by}"
        bounds = ", ".join(f"{name} {value}" for name, value in {"min_replicas": policy.min_replicas, **caps}.items())
        steps.append({"step": "cap", "replicas": recommended, "note": f"{limited_by} won ({bounds})"})

    # Stabilisation (HPA): go up only to the lowest recommendation of the up-window, down only to the
    # highest of the down-window, so one quiet sample after a spike does not shed workers.
    up_to, down_to = recommended, recommended
    for past in recent:
        if past.time > now - policy.scale_up_stabilization_seconds:
            up_to = min(up_to, past.replicas)
        if past.time > now - policy.scale_down_stabilization_seconds:
            down_to = max(down_to, past.replicas)
    desired = seen.current
    if up_to > desired:
        desired = min(up_to, seen.current + policy.scale_up_step)
    elif down_to < desired:
        desired = max(down_to, seen.current - policy.scale_down_step)
    if desired == seen.current and recommended < seen.current:
        why += f"; scale-down held by the {policy.scale_down_stabilization_seconds}s window"
        steps.append({"step": "down_window", "replicas": desired, "note": f"highest of the window {down_to}"})
    elif desired == seen.current and recommended > seen.current:
        why += f"; scale-up held by the {policy.scale_up_stabilization_seconds}s window"
        steps.append({"step": "up_window", "replicas": desired, "note": f"lowest of the window {up_to}"})
    elif desired != recommended:
        why += f"; step limited to {desired}"
        up = desired > seen.current
        steps.append({"step": "step", "replicas": desired, "note": f"window allows {up_to if up else down_to}, "
                      f"step {policy.scale_up_step if up else policy.scale_down_step}"})

    saturated = False
    run = state.scale_out
    if (policy.drain_mode and desired > seen.current and run is not None and seen.current >= run.replicas
            and now - run.time >= policy.rate_window_seconds and seen.consumed_per_second is not None
            and seen.consumed_per_second < run.consumed_before * (1 + policy.tolerance)):
        saturated = True
        why += (f"; scale-out held: the last one (to {run.replicas}) did not raise throughput "
                f"({run.consumed_before:.3g}/s -> {seen.consumed_per_second:.3g}/s), downstream saturated")
        steps.append({"step": "saturation", "replicas": seen.current,
                      "note": f"consumed {run.consumed_before:.3g}/s before, {seen.consumed_per_second:.3g}/s now"})
        desired = seen.current
    # The hard bounds: a consumer beyond the partitions idles for sure, so above them comes down at once. The
    # partitions with lag only cap the recommendation (as KEDA's limitToPartitionsWithLag caps its metric):
    # coming down to them follows the window and the step, or a quiet partition would shed workers at once.
    hard_upper = max(policy.min_replicas, min(policy.max_replicas, seen.partitions))
    final = _clamp(desired, policy.min_replicas, hard_upper)
    if final != desired:
        steps.append({"step": "cap", "replicas": final, "note": f"bounds [{policy.min_replicas}, {hard_upper}]"})
    steps.append({"step": "applied", "replicas": final, "note": f"{seen.current} -> {final}"})

    if final > seen.current and seen.consumed_per_second is not None:
        # A run of scale-outs keeps the rate from before its first one.
        before = run.consumed_before if run is not None and now - run.time < policy.rate_window_seconds \
            else seen.consumed_per_second
        scale_out = ScaleOut(now, final, before)
    elif final < seen.current:
        scale_out = None
    else:
        scale_out = run
    recommendation = Recommendation(now, recommended)
    state = State((*recent, recommendation), 0, scale_out)
    return Decision(final, why, recommendation, state, mode, inputs, tuple(steps), limited_by, saturated)


def _failure(policy: ScalingPolicy, seen: Observation) -> str | None:
    if seen.error is not None:
        return f"metric read failed ({seen.error})"
    if seen.lag is None or seen.partitions is None:
        return f"{'lag' if seen.lag is None else 'partition count'} metric missing"
    if seen.lag_age_seconds is not None and seen.lag_age_seconds > policy.stale_after_seconds:
        return f"lag metric stale ({seen.lag_age_seconds:.0f}s old)"
    return None


def _fail(policy: ScalingPolicy, seen: Observation, state: State, failure: str, inputs: dict) -> Decision:
    """Without a usable metric nothing is known about the load: never scale in (inside the policy's bounds);
    after failure_threshold reads in a row, the fallback."""
    held = _clamp(seen.current, policy.min_replicas, policy.max_replicas)
    steps = [{"step": "hold", "replicas": held, "note": failure}]
    if state.failures < policy.failure_threshold:
        why = f"{failure}: holding ({state.failures} of {policy.failure_threshold} before the fallback)"
        mode: Literal["hold", "fallback"] = "hold"
        desired = held
    else:
        mode = "fallback"
        fallback = policy.fallback
        desired = held if fallback == "hold" else max(held, fallback.replicas_if_higher)
        what = "hold" if fallback == "hold" else f"replicas_if_higher {fallback.replicas_if_higher}"
        why = f"{failure}: fallback ({state.failures} failed reads in a row): {what}"
        steps.append({"step": "fallback", "replicas": desired, "note": what})
    if held != seen.current:
        why += f", within [{policy.min_replicas}, {policy.max_replicas}]"
    return Decision(desired, why, None, state, mode, inputs, tuple(steps))
