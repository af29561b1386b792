"""Table tests of the rules beyond HPA's: drain time, saturation, stuck partitions, partitions with lag, the
fallback, the pause; and the explanation every decision carries."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from platform_infra.components.autoscaling import (
    Observation,
    Recommendation,
    ScaleOut,
    ScalingPolicy,
    State,
    decide,
)

NOW = 10_000.0
POLICY = ScalingPolicy(min_replicas=1, max_replicas=12, target_lag_per_replica=100, activation_lag=10,
                       tolerance=0.1, scale_up_step=12, scale_down_step=12, scale_down_stabilization_seconds=0,
                       stale_after_seconds=60, stuck_after_seconds=600, failure_threshold=3,
                       consumer_group="workers", topic="jobs")
DRAIN = POLICY.model_copy(update={"target_drain_seconds": 60})


def fallback(replicas: int) -> ScalingPolicy:
    return ScalingPolicy.model_validate({**POLICY.model_dump(), "fallback": {"replicas_if_higher": replicas}})


def seen(current: int, lag: float | None, **fields) -> Observation:
    return Observation(**{"current": current, "lag": lag, "lag_age_seconds": 5, "partitions": 12, **fields})


CASES = [
    # id, policy, observation, state, desired, mode, reason fragment
    # Drain time: (lag / target_drain + arrival) / rate per replica.
    ("drain scales to drain the lag in time", DRAIN,
     seen(2, 6000, consumed_per_second=40, produced_per_second=20), State(), 6, "drain",
     "(lag 6000 / 60s + arrival 20/s) / 20/s per replica = 6"),
    ("drain keeps up with arrival alone", DRAIN,
     seen(4, 60, consumed_per_second=40, produced_per_second=80), State(), 9, "drain", "= 9"),
    ("drain within tolerance holds", DRAIN,
     seen(5, 1200, consumed_per_second=50, produced_per_second=31), State(), 5, "drain", "within tolerance"),
    ("drain: consumption unknown, the lag target decides", DRAIN,
     seen(2, 600, produced_per_second=20), State(), 6, "lag",
     "consumption rate unknown: target_lag_per_replica decides; lag 600 / target 100 = 6"),
    ("drain: nothing consumed yet, the lag target decides", DRAIN,
     seen(2, 600, consumed_per_second=0, produced_per_second=20), State(), 6, "lag", "consumption rate unknown"),
    ("drain: the group's members are the consumers", DRAIN,
     seen(4, 6000, consumed_per_second=40, produced_per_second=20, consumers=2), State(), 6, "drain",
     "/ 20/s per replica = 6"),
    ("drain: arrival unknown, the lag target decides", DRAIN,
     seen(2, 600, consumed_per_second=40), State(), 6, "lag", "arrival rate unknown"),
    ("lag mode ignores the rates", POLICY,
     seen(2, 600, consumed_per_second=1, produced_per_second=1000), State(), 6, "lag", "lag 600 / target 100 = 6"),
    # Saturation: the last scale-out (a rate window ago) did not raise throughput: no further scale-out.
    ("a scale-out that did not raise throughput stops the next", DRAIN,
     seen(6, 12000, consumed_per_second=41, produced_per_second=20), State(scale_out=ScaleOut(NOW - 120, 6, 40)),
     6, "drain", "did not raise throughput (40/s -> 41/s), downstream saturated"),
    ("one that did raise it allows the next", DRAIN,
     seen(6, 12000, consumed_per_second=60, produced_per_second=20), State(scale_out=ScaleOut(NOW - 120, 6, 40)),
     12, "drain", "per replica = 22, capped to [1, 12] by max_replicas"),
    ("a scale-out is judged only after the rate window", DRAIN,
     seen(6, 12000, consumed_per_second=41, produced_per_second=20), State(scale_out=ScaleOut(NOW - 60, 6, 40)),
     12, "drain", "by max_replicas"),
    ("saturation never holds a scale-in", DRAIN,
     seen(6, 0, consumed_per_second=41, produced_per_second=0), State(scale_out=ScaleOut(NOW - 120, 6, 40)),
     1, "lag", "activation"),
    # Stuck partitions: their lag is left out.
    ("a stuck partition cannot hold the workers out", POLICY,
     seen(6, 5005, partitions_with_lag=2, stuck_partitions=1, stuck_lag=5000), State(), 1, "lag",
     "lag 5 at or below activation"),
    ("the other partitions' lag still counts", POLICY,
     seen(1, 5300, partitions_with_lag=4, stuck_partitions=1, stuck_lag=5000), State(), 3, "lag",
     "lag 300 / target 100 = 3"),
    ("stuck detection off: every partition counts", POLICY.model_copy(update={"stuck_after_seconds": None}),
     seen(1, 5300, partitions_with_lag=4, stuck_partitions=1, stuck_lag=5000), State(), 4, "lag",
     "capped to [1, 4] by partitions_with_lag"),
    # Only partitions with lag.
    ("never more replicas than partitions with lag", POLICY,
     seen(1, 900, partitions_with_lag=3), State(), 3, "lag", "capped to [1, 3] by partitions_with_lag"),
    ("stuck partitions do not count as partitions with lag", POLICY,
     seen(1, 1900, partitions_with_lag=4, stuck_partitions=2, stuck_lag=1000), State(), 2, "lag",
     "lag 900 / target 100 = 9, capped to [1, 2] by partitions_with_lag"),
    ("partitions with lag cap the recommendation; coming down follows the step",
     POLICY.model_copy(update={"scale_down_step": 1}), seen(8, 300, partitions_with_lag=1), State(), 7, "lag",
     "capped to [1, 1] by partitions_with_lag; step limited to 7"),
    ("the cap off: the lag decides", POLICY.model_copy(update={"limit_to_partitions_with_lag": False}),
     seen(1, 900, partitions_with_lag=3), State(), 9, "lag", "= 9"),
    ("the partition count wins when lower", POLICY,
     seen(1, 900, partitions=4, partitions_with_lag=6), State(), 4, "lag", "capped to [1, 4] by partitions"),
    ("max_replicas wins when lowest", POLICY,
     seen(1, 5000, partitions=16, partitions_with_lag=16), State(), 12, "lag", "by max_replicas"),
    ("min_replicas wins over a lower raw count", POLICY.model_copy(update={"min_replicas": 2}),
     seen(2, 20), State(), 2, "lag", "capped to [2, 12] by min_replicas"),
    # Fallback on a failing metric.
    ("first failure holds", POLICY, seen(4, None), State(), 4, "hold", "lag metric missing: holding (1 of 3"),
    ("a failed query is a failure, never zero lag", POLICY,
     Observation(4, None, None, None, error="prometheus unreachable: refused"), State(failures=1), 4, "hold",
     "metric read failed (prometheus unreachable: refused): holding (2 of 3"),
    ("threshold reached: the hold fallback", POLICY, seen(4, 0, lag_age_seconds=600), State(failures=2), 4,
     "fallback", "lag metric stale (600s old): fallback (3 failed reads in a row): hold"),
    ("threshold reached: replicas_if_higher raises", fallback(8),
     seen(4, None), State(failures=2), 8, "fallback", "replicas_if_higher 8"),
    ("replicas_if_higher never scales in", fallback(3),
     seen(6, None), State(failures=5), 6, "fallback", "replicas_if_higher 3"),
    ("before the threshold replicas_if_higher holds", fallback(8),
     seen(4, None), State(failures=1), 4, "hold", "holding (2 of 3"),
    # Pause.
    ("paused holds whatever the lag", POLICY, seen(2, 5000, paused=True), State(), 2, "paused",
     "paused (platform.autoscaling.paused=true on the service): holding"),
    ("paused holds above max_replicas too", POLICY, seen(20, 0, paused=True), State(), 20, "paused", "paused"),
]


@pytest.mark.parametrize(("policy", "observation", "state", "desired", "mode", "reason"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_rule(policy, observation, state, desired, mode, reason) -> None:
    decision = decide(policy, observation, state, NOW)
    assert (decision.desired, decision.mode) == (desired, mode), decision.reason
    assert reason in decision.reason, decision.reason


def test_failures_count_up_and_a_good_read_resets_them() -> None:
    state = State()
    for failures in (1, 2, 3, 4):
        state = decide(POLICY, seen(4, None), state, NOW).state
        assert state.failures == failures
    assert decide(POLICY, seen(4, 400), state, NOW).state.failures == 0


def test_a_pause_keeps_the_state_for_when_it_ends() -> None:
    state = State((Recommendation(NOW - 30, 6),), failures=2)
    assert decide(POLICY, seen(3, 0, paused=True), state, NOW).state == state


def test_a_run_of_scale_outs_is_judged_against_the_rate_before_its_first() -> None:
    first = decide(DRAIN, seen(2, 6000, consumed_per_second=40, produced_per_second=20), State(), NOW)
    assert first.state.scale_out == ScaleOut(NOW, 6, 40)
    # 15 s later, within the rate window: up again, the run keeps its first rate.
    second = decide(DRAIN, seen(6, 12000, consumed_per_second=45, produced_per_second=20), first.state, NOW + 15)
    assert (second.desired, second.state.scale_out) == (12, ScaleOut(NOW + 15, 12, 40))
    # A scale-in ends the run.
    third = decide(DRAIN, seen(12, 0, consumed_per_second=45, produced_per_second=0), second.state, NOW + 30)
    assert (third.desired, third.state.scale_out) == (1, None)


def test_every_decision_is_explained_from_raw_to_applied() -> None:
    policy = POLICY.model_copy(update={"scale_up_step": 2})
    decision = decide(policy, seen(1, 5300, partitions_with_lag=6, stuck_partitions=1, stuck_lag=5000,
                                   lag_by_partition={"0": 5000, "1": 300}), State(), NOW)
    assert decision.explained() == {
        "desired": 3, "mode": "lag", "limited_by": None,
        "reason": "lag 300 / target 100 = 3",
        "inputs": {"current": 1, "lag": 5300, "lag_age_seconds": 5, "partitions": 12, "partitions_with_lag": 6,
                   "stuck_partitions": 1, "stuck_lag": 5000, "consumed_per_second": None,
                   "produced_per_second": None, "consumers": None, "lag_by_partition": {"0": 5000, "1": 300}},
        "steps": [{"step": "stuck", "replicas": None, "note": "1 stuck partition(s) left out: lag 5300 -> 300"},
                  {"step": "raw", "replicas": 3, "note": "lag 300 / target 100 = 3"},
                  {"step": "applied", "replicas": 3, "note": "1 -> 3"}]}
    capped = decide(policy, seen(1, 900, partitions_with_lag=5), State(), NOW)
    assert [(s["step"], s["replicas"]) for s in capped.steps] == [("raw", 9), ("cap", 5), ("step", 3), ("applied", 3)]
    assert capped.limited_by == "partitions_with_lag"
    assert capped.steps[1]["note"] == ("partitions_with_lag won (min_replicas 1, max_replicas 12, partitions 12, "
                                       "partitions_with_lag 5)")


@pytest.mark.parametrize(("fields", "message"), [
    ({"fallback": {"replicas_if_higher": 13}}, "fallback.replicas_if_higher must not exceed max_replicas"),
    ({"fallback": "scale_in"}, "Input should be 'hold'"),
    ({"fallback": {"replicas": 3}}, "Extra inputs are not permitted"),
    ({"target_drain_seconds": 0}, "greater than or equal to 1"),
    ({"stuck_after_seconds": 10}, "greater than or equal to 60"),
    ({"failure_threshold": 0}, "greater than or equal to 1"),
])
def test_policy_refuses_bad_new_keys(fields, message) -> None:
    with pytest.raises(ValidationError, match=message):
        ScalingPolicy.model_validate({"max_replicas": 12, "consumer_group": "workers", "topic": "jobs", **fields})
