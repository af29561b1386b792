"""Table tests of the autoscaling decision (HPA's algorithm on Kafka lag)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from platform_infra.components.autoscaling import (
    Decision,
    Observation,
    Recommendation,
    ScalingPolicy,
    State,
    decide,
)

NOW = 10_000.0
POLICY = ScalingPolicy(min_replicas=1, max_replicas=6, target_lag_per_replica=100, activation_lag=10,
                       tolerance=0.1, scale_up_step=2, scale_up_stabilization_seconds=0, scale_down_step=1,
                       scale_down_stabilization_seconds=300, stale_after_seconds=60,
                       consumer_group="workers", topic="jobs")


def seen(current: int, lag: float | None, partitions: int | None = 12, age: float | None = 5) -> Observation:
    return Observation(current=current, lag=lag, lag_age_seconds=age, partitions=partitions)


def ago(seconds: float, replicas: int) -> Recommendation:
    return Recommendation(NOW - seconds, replicas)


CASES = [
    # id, policy overrides, observation, history, desired, reason fragment
    ("spike scales up by the step", {}, seen(1, 500), [], 3, "step limited"),
    ("next decision continues up", {}, seen(3, 500), [ago(15, 5)], 5, "= 5"),
    ("up reaches the target without a step", {"scale_up_step": 10}, seen(1, 500), [], 5, "= 5"),
    ("capped at max", {"scale_up_step": 10}, seen(2, 5000), [], 6, "capped to [1, 6]"),
    ("capped at partitions", {"scale_up_step": 10}, seen(2, 5000, partitions=4), [], 4, "capped to [1, 4]"),
    ("above partitions comes down at once", {}, seen(6, 5000, partitions=3), [], 3, "capped to [1, 3]"),
    ("never below min", {"min_replicas": 2}, seen(2, 20), [], 2, "= 1, capped to [2, 6]"),
    ("within tolerance no change", {}, seen(4, 430), [], 4, "within tolerance"),
    ("just outside tolerance scales", {}, seen(4, 460), [], 5, "= 5"),
    ("below activation goes to min after the window", {}, seen(3, 10), [], 2, "activation"),
    ("below activation held by the window", {}, seen(3, 10), [ago(100, 3)], 3, "held by the 300s window"),
    ("scale-down to the highest of the window", {"scale_down_step": 5}, seen(5, 100),
     [ago(400, 6), ago(200, 3), ago(100, 2)], 3, "step limited to 3"),
    ("scale-down step limit", {}, seen(5, 100), [ago(400, 5)], 4, "step limited to 4"),
    ("scale-up stabilisation takes the lowest of its window", {"scale_up_stabilization_seconds": 60,
                                                               "scale_up_step": 10},
     seen(1, 600), [ago(30, 3), ago(90, 1)], 3, "step limited to 3"),
    ("scale-up held when the window saw no need", {"scale_up_stabilization_seconds": 60},
     seen(2, 600), [ago(30, 2)], 2, "scale-up held"),
    ("missing lag holds", {}, seen(4, None), [], 4, "lag metric missing"),
    ("missing lag holds even when low before", {}, seen(4, None), [ago(400, 1)], 4, "lag metric missing"),
    ("missing partitions holds", {}, seen(4, 5000, partitions=None), [], 4, "partition count metric missing"),
    ("stale lag holds", {}, seen(4, 0, age=61), [], 4, "stale (61s old)"),
    ("missing metric still respects max", {}, seen(9, None), [], 6, "within [1, 6]"),
    ("fresh at the edge of staleness scales", {}, seen(4, 0, age=60), [ago(400, 4)], 3, "activation"),
]


@pytest.mark.parametrize(("overrides", "observation", "history", "desired", "reason"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_decision(overrides, observation, history, desired, reason) -> None:
    policy = POLICY.model_copy(update=overrides)
    decision = decide(policy, observation, State(tuple(history)), NOW)
    assert (decision.desired, reason in decision.reason) == (desired, True), decision.reason


def test_decision_records_its_recommendation_only_when_the_metric_is_usable() -> None:
    assert decide(POLICY, seen(1, 500), State(), NOW).recommendation == Recommendation(NOW, 5)
    assert decide(POLICY, seen(1, None), State(), NOW).recommendation is None
    assert decide(POLICY, seen(1, 500, age=600), State(), NOW).recommendation is None


def test_a_trace_never_exceeds_the_cap_and_sheds_only_after_the_window() -> None:
    """Replay a spike then calm, one decision every 15 s, as the controller keeps its history."""
    policy = POLICY.model_copy(update={"scale_down_stabilization_seconds": 60})
    replicas, state, trace = 1, State(), []
    lags = [0, 900, 900, 900, 900, None, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    for step, lag in enumerate(lags):
        now = NOW + 15 * step
        decision: Decision = decide(policy, seen(replicas, lag, partitions=4), state, now)
        state = decision.state
        replicas = decision.desired
        trace.append(replicas)
    # The last high recommendation is at 60 s; the 60 s window lets go of it at 120 s (step 8).
    assert trace == [1, 3, 4, 4, 4, 4, 4, 4, 3, 2, 1, 1, 1, 1, 1]


@pytest.mark.parametrize(("fields", "message"), [
    ({"min_replicas": 5, "max_replicas": 2}, "min_replicas must not exceed max_replicas"),
    ({"max_replicas": 4, "topic": "jobs topic"}, "String should match pattern"),
    ({"max_replicas": 4, "tolerance": 1}, "less than 1"),
    ({"max_replicas": 4, "lag_target": 3}, "Extra inputs are not permitted"),
])
def test_policy_refuses_bad_values(fields, message) -> None:
    with pytest.raises(ValidationError, match=message):
        ScalingPolicy.model_validate({"consumer_group": "workers", "topic": "jobs", **fields})
