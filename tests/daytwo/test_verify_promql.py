"""The PromQL verify sends, evaluated by Prometheus' own engine (`promtool test rules`, promql_expr_test) over
series shaped like the platform's: each expression is captured from the check itself, so a query that Prometheus
would reject or compute differently fails here."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from platform_infra.infra.daytwo import verify
from tests.conftest import require_tool
from tests.daytwo.test_verify import FakePrometheus, context

WINDOW = 1800


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_tool("promtool", "prometheus")


def sent(check, expected) -> str:
    """The expression `check` asks Prometheus, captured from a scripted one answering one sample to all."""
    server = FakePrometheus()
    try:
        server.results = {"": [{"metric": {}, "value": [0, "1"]}]}
        check(context(expected, server, window=WINDOW))
        return server.queries
    finally:
        server.close()


def evaluate(promtool: str, tmp_path, series: dict[str, str], tests: list[tuple[str, list[dict]]]) -> None:
    """Each (expression, expected samples) at t=60m over `series` (one value a minute)."""
    (tmp_path / "empty.yml").write_text("groups: []\n")
    spec = {"rule_files": ["empty.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": name, "values": values} for name, values in series.items()],
        "promql_expr_test": [{"expr": expr, "eval_time": "60m", "exp_samples": samples} for expr, samples in tests],
    }]}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(spec))
    out = subprocess.run([promtool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def sawtooth(low: float, rise_per_5m: float, peak: float = 800, minutes: int = 61) -> str:
    """Heap use climbing within each 5 minutes, a collection at each 5th bringing it to that block's low."""
    values = []
    for minute in range(minutes):
        block, step = divmod(minute, 5)
        base = low + block * rise_per_5m
        values.append(str(base + step * (peak / 4)))
    return " ".join(values)


def test_memory_leak_query_flags_rising_lows_not_a_steady_sawtooth(promtool, tmp_path, expected):
    (expr,) = sent(verify.no_memory_leaks, expected)
    heap = 'jvm_memory_used_bytes{area="heap",id="G1 Old Gen",job="%s",instance="%s:8080"}'
    limit = 'jvm_memory_max_bytes{area="heap",id="G1 Old Gen",job="%s",instance="%s:8080"}'
    series = {heap % ("worker", "worker-1"): sawtooth(1000, 0),  # the same low after every collection
              limit % ("worker", "worker-1"): "10000+0x60",
              heap % ("api-gateway", "api-gateway-1"): sawtooth(1000, 60),  # 60 more after each 5 minutes
              limit % ("api-gateway", "api-gateway-1"): "10000+0x60",
              # A pool without a maximum reports -1 (Micrometer): left out of the sum, not subtracted.
              'jvm_memory_max_bytes{area="heap",id="G1 Eden",job="worker",instance="worker-1:8080"}': "-1+0x60"}
    threshold = expected.monitoring.alerts.memory_used_ratio
    evaluate(promtool, tmp_path, series, [
        # Only the JVM whose lows rise passes the alerts' ratio a day on; the steady one stays near its 10%.
        (f"count by (job) (({expr}) > {threshold})", [{"labels": '{job="api-gateway"}', "value": 1}]),
        (f"count by (job) (({expr}) > 0.09 < 0.11)", [{"labels": '{job="worker"}', "value": 1}]),
    ])


def test_5xx_p95_and_job_success_queries(promtool, tmp_path, expected):
    (count, errors) = sent(verify.no_5xx, expected)
    (p95,) = sent(verify.p95_latency, expected)
    (jobs,) = sent(verify.job_success_rate, expected)
    gateway = 'job="api-gateway",instance="api-gateway-1:8080",service="api-gateway"'
    req = "http_server_requests_seconds_count{%s,uri=\"/api/v1/jobs\",status=\"%s\"}"
    bucket = 'http_server_requests_seconds_bucket{%s,uri="/api/v1/jobs",status="201",le="%s"}'
    series = {
        req % (gateway, "201"): "0+60x60",
        req % (gateway, "500"): "0+0x40 1+1x19",  # 5xx only in the last 20 minutes
        # Health probes' 5xx do not count (the alert leaves /actuator out too).
        f'http_server_requests_seconds_count{{{gateway},uri="/actuator/health",status="503"}}': "0+5x60",
        bucket % (gateway, "0.1"): "0+50x60", bucket % (gateway, "0.5"): "0+58x60",
        bucket % (gateway, "+Inf"): "0+60x60",
        'orchestrator_jobs_completed_total{job="orchestrator",status="succeeded"}': "0+97x60",
        'orchestrator_jobs_completed_total{job="orchestrator",status="failed"}': "0+3x60",
    }
    evaluate(promtool, tmp_path, series, [
        (count, [{"labels": "{}", "value": 3}]),
        # The last 20 minutes' 5xx, about 20 within the 30-minute window (increase extrapolates).
        (f"count(({errors}) > 15 < 25)", [{"labels": "{}", "value": 1}]),
        # Rank 57 of 60 falls in the (0.1, 0.5] bucket holding requests 51-58: 0.1 + 0.4 * 7/8 = 0.45.
        (f"count(({p95}) > 0.449 < 0.451)", [{"labels": "{}", "value": 1}]),
        (f"count(({jobs}) > 0.969 < 0.971)", [{"labels": "{}", "value": 1}]),
    ])


def test_logs_queries_measure_the_offsets_moved_and_the_inserts(promtool, tmp_path, expected):
    produced, consumed, lag, inserted = sent(verify.logs_aggregated, expected)
    topic = 'job="kafka-exporter",topic="%s",partition="%s"'
    group = 'job="kafka-exporter",consumergroup="log-aggregator",topic="%s",partition="%s"'
    series = {
        # Two partitions of the logs topic, 10 and 5 lines a minute; another topic does not count.
        f"kafka_topic_partition_current_offset{{{topic % ('logs', 0)}}}": "100+10x60",
        f"kafka_topic_partition_current_offset{{{topic % ('logs', 1)}}}": "0+5x60",
        f"kafka_topic_partition_current_offset{{{topic % ('jobs', 0)}}}": "0+1000x60",
        f"kafka_consumergroup_current_offset{{{group % ('logs', 0)}}}": "90+10x60",
        f"kafka_consumergroup_current_offset{{{group % ('logs', 1)}}}": "0+4x60",
        f"kafka_consumergroup_lag{{{group % ('logs', 0)}}}": "10+0x60",
        f"kafka_consumergroup_lag{{{group % ('logs', 1)}}}": "0+1x60",
        'ClickHouseProfileEvents_InsertedRows{job="clickhouse",instance="clickhouse:9363"}': "0+14x60",
    }
    evaluate(promtool, tmp_path, series, [
        (produced, [{"labels": "{}", "value": (10 + 5) * 30}]),  # over the 30-minute window, exactly
        (consumed, [{"labels": "{}", "value": (10 + 4) * 30}]),
        (lag, [{"labels": "{}", "value": 10 + 60}]),  # the group's partitions summed
        (f"count(({inserted}) > 400 < 440)", [{"labels": "{}", "value": 1}]),  # increase extrapolates
    ])


def test_table_scan_queries_per_table_over_the_window(promtool, tmp_path, expected):
    live, seq, idx, rows = sent(verify.database_indexes, expected)
    table = 'job="postgres-exporter",instance="postgres-exporter:9187",datname="orchestration",schemaname="public"'
    series = {
        # postgres_exporter 0.17.1's stat_user_tables series: a large table scanned sequentially 2 a minute from
        # the window's start, and through its index 1 a minute; a small one.
        f'pg_stat_user_tables_n_live_tup{{{table},relname="jobs"}}': "50000+0x60",
        f'pg_stat_user_tables_seq_scan{{{table},relname="jobs"}}': "0+2x60",
        f'pg_stat_user_tables_idx_scan{{{table},relname="jobs"}}': "0+1x60",
        f'pg_stat_user_tables_seq_tup_read{{{table},relname="jobs"}}': "0+100000x60",
        f'pg_stat_user_tables_n_live_tup{{{table},relname="users"}}': "3+0x60",
        f'pg_stat_user_tables_seq_scan{{{table},relname="users"}}': "0+0x60",
    }
    jobs = '{datname="orchestration",schemaname="public",relname="jobs"}'
    users = '{datname="orchestration",schemaname="public",relname="users"}'
    evaluate(promtool, tmp_path, series, [
        (live, [{"labels": jobs, "value": 50000}, {"labels": users, "value": 3}]),
        (seq, [{"labels": jobs, "value": 60}, {"labels": users, "value": 0}]),  # 30 minutes, 2 a minute
        (idx, [{"labels": jobs, "value": 30}]),
        (rows, [{"labels": jobs, "value": 3_000_000}]),
    ])
