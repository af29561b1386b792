"""The controller's PromQL (`platform_infra.infra.daytwo.autoscale.lag_queries`) evaluated by Prometheus's own engine (`promtool test
rules`) on kafka-exporter's series: the stuck partition found (and a new one not taken for stuck), the lag per
partition, the rates, the partition count."""

from __future__ import annotations

import subprocess

import yaml

from platform_infra.components.autoscaling import ScalingPolicy
from platform_infra.infra.daytwo.autoscale import lag_queries
from tests.conftest import require_tool
from tests.monitoring.conftest import DEBIAN_PACKAGE

POLICY = ScalingPolicy(max_replicas=3, consumer_group="job-workers", topic="jobs", stuck_after_seconds=600,
                       target_drain_seconds=60, rate_window_seconds=120)
GROUP = 'consumergroup="job-workers",topic="jobs"'
# One sample a minute for 20 minutes. Partition 0: lag 500 and a committed offset that never moves (stuck).
# Partition 1: lag 100, consumed at 1/s. Partition 2: appeared at minute 15 with lag 300 and no progress yet: not
# there for the whole window, so not stuck. Another group's stuck partition is not ours.
SERIES = [
    (f'kafka_consumergroup_lag{{{GROUP},partition="0"}}', "500x20"),
    (f'kafka_consumergroup_lag{{{GROUP},partition="1"}}', "100x20"),
    (f'kafka_consumergroup_lag{{{GROUP},partition="2"}}', "_x15 300x5"),
    ('kafka_consumergroup_lag{consumergroup="other",topic="jobs",partition="0"}', "900x20"),
    (f'kafka_consumergroup_current_offset{{{GROUP},partition="0"}}', "1000x20"),
    (f'kafka_consumergroup_current_offset{{{GROUP},partition="1"}}', "0+60x20"),
    (f'kafka_consumergroup_current_offset{{{GROUP},partition="2"}}', "_x15 2000x5"),
    ('kafka_consumergroup_current_offset{consumergroup="other",topic="jobs",partition="0"}', "7x20"),
    ('kafka_topic_partition_current_offset{topic="jobs",partition="0"}', "1500x20"),
    ('kafka_topic_partition_current_offset{topic="jobs",partition="1"}', "100+120x20"),
    ('kafka_topic_partition_current_offset{topic="jobs",partition="2"}', "_x15 2300x5"),
    ('kafka_topic_partitions{topic="jobs"}', "3x20"),
    ('kafka_consumergroup_members{consumergroup="job-workers"}', "2x20"),
    ('kafka_consumergroup_members{consumergroup="other"}', "5x20"),
]
EXPECTED = {
    "stuck_lag": [('{partition="0"}', 500)],
    "lag_by_partition": [('{partition="0"}', 500), ('{partition="1"}', 100), ('{partition="2"}', 300)],
    "lag_time": [("{}", 1200)],
    "partitions": [("{}", 3)],
    "consumed": [("{}", 1)],
    "produced": [("{}", 2)],
    "consumers": [("{}", 2)],
}


def test_prometheus_answers_the_controllers_queries_as_it_reads_them(tmp_path) -> None:
    promtool = require_tool("promtool", DEBIAN_PACKAGE["promtool"])
    queries = lag_queries(POLICY)
    assert set(queries) == set(EXPECTED)
    (tmp_path / "none.yml").write_text("groups: []\n")
    tests = {"rule_files": ["none.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": series, "values": values} for series, values in SERIES],
        "promql_expr_test": [{"expr": queries[name], "eval_time": "20m",
                              "exp_samples": [{"labels": labels, "value": value} for labels, value in samples]}
                             for name, samples in EXPECTED.items()],
    }]}
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", "tests.yml"], check=False, cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
