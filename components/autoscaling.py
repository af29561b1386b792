"""Worker autoscaling on Kafka consumer lag: the policy, and the pure decision the controller applies.

The algorithm is Kubernetes' Horizontal Pod Autoscaler (desired = ceil(metric / target), a tolerance band,
stabilisation windows over recent recommendations, step limits; kubernetes/pkg/controller/podautoscaler/
horizontal.go, stabilizeRecommendationWithBehaviors) fed with KEDA's Kafka scaler metric (total lag of a
consumer group on a topic, an activation threshold, and never more consumers than partitions:
kedacore/keda pkg/scalers/kafka_scaler.go).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.kafka import KAFKA_NAME


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

    @model_validator(mode="after")
    def _bounds(self) -> ScalingPolicy:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self

    @property
    def window_seconds(self) -> int:
        """How long the controller keeps recommendations."""
        return max(self.scale_up_stabilization_seconds, self.scale_down_stabilization_seconds)


@dataclass(frozen=True)
class Observation:
    current: int
    """Replicas of the worker service now."""
    lag: float | None
    """Total lag of the consumer group on the topic; None when the metric is missing."""
    lag_age_seconds: float | None
    """Age of the newest lag sample."""
    partitions: int | None
    """Partitions of the topic; None when unknown."""


@dataclass(frozen=True)
class Recommendation:
    time: float
    replicas: int


@dataclass(frozen=True)
class Decision:
    desired: int
    reason: str
    recommendation: Recommendation | None
    """What this decision recommends, for the window of later decisions; None when the metric was unusable."""


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def decide(policy: ScalingPolicy, seen: Observation, history: Sequence[Recommendation], now: float) -> Decision:
    """The replica count the worker service should have now; `history` is the earlier recommendations."""
    if seen.lag is None or seen.partitions is None:
        missing = "lag" if seen.lag is None else "partition count"
        return _hold(policy, seen, f"{missing} metric missing: holding")
    if seen.lag_age_seconds is not None and seen.lag_age_seconds > policy.stale_after_seconds:
        return _hold(policy, seen, f"lag metric stale ({seen.lag_age_seconds:.0f}s old): holding")

    upper = max(policy.min_replicas, min(policy.max_replicas, seen.partitions))
    if seen.lag <= policy.activation_lag:
        raw, why = policy.min_replicas, f"lag {seen.lag:g} at or below activation {policy.activation_lag}"
    elif seen.current > 0 and abs(seen.lag / (seen.current * policy.target_lag_per_replica) - 1) <= policy.tolerance:
        raw, why = seen.current, f"lag {seen.lag:g} within tolerance"
    else:
        raw = math.ceil(seen.lag / policy.target_lag_per_replica)
        why = f"lag {seen.lag:g} / target {policy.target_lag_per_replica} = {raw}"
    recommended = _clamp(raw, policy.min_replicas, upper)
    if recommended != raw:
        why += f", capped to [{policy.min_replicas}, {upper}]"

    # Stabilisation (HPA): go up only to the lowest recommendation of the up-window, down only to the
    # highest of the down-window, so one quiet sample after a spike does not shed workers.
    up_to, down_to = recommended, recommended
    for past in history:
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
    elif desired == seen.current and recommended > seen.current:
        why += f"; scale-up held by the {policy.scale_up_stabilization_seconds}s window"
    elif desired != recommended:
        why += f"; step limited to {desired}"
    return Decision(_clamp(desired, policy.min_replicas, upper), why, Recommendation(now, recommended))


def _hold(policy: ScalingPolicy, seen: Observation, why: str) -> Decision:
    """Without a usable metric nothing is known about the load: keep the replicas, inside the policy's bounds."""
    desired = _clamp(seen.current, policy.min_replicas, policy.max_replicas)
    return Decision(desired, why if desired == seen.current else f"{why}, within [{policy.min_replicas}, "
                    f"{policy.max_replicas}]", None)
