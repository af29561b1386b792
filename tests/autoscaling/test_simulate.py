"""`infra autoscale simulate`: traces that exercise each rule, replayed through the controller's decision."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from platform_infra.components.autoscaling import ScalingPolicy
from platform_infra.infra.cli import main
from tests.autoscaling.scripted_prometheus import ScriptedPrometheus, read_rows

DOCS = Path(__file__).parents[2] / "docs" / "autoscaling"
SPIKE = DOCS / "spike-and-drain.csv"
BASE = {"min_replicas": 1, "max_replicas": 8, "target_lag_per_replica": 100, "scale_up_step": 8,
        "scale_down_step": 8, "scale_down_stabilization_seconds": 0, "consumer_group": "job-workers",
        "topic": "jobs"}


def run(capsys, *args: str) -> list[dict]:
    assert main(["autoscale", "simulate", *args]) == 0, capsys.readouterr().err
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def replay(tmp_path: Path, capsys, policy: dict, trace: str, *extra: str) -> list[dict]:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump({**BASE, **policy}))
    (tmp_path / "trace.csv").write_text(trace)
    return run(capsys, "--policy", str(tmp_path / "policy.yaml"), "--trace", str(tmp_path / "trace.csv"), *extra)


def changes(lines: list[dict]) -> list[tuple[int, int]]:
    """(time, replicas) at the start and at each change."""
    return [(line["time"], line["desired"]) for i, line in enumerate(lines)
            if i == 0 or line["desired"] != lines[i - 1]["desired"]]


def test_spike_and_drain_with_and_without_drain_time(capsys) -> None:
    lag = run(capsys, "--policy", str(DOCS / "lag-policy.yaml"), "--trace", str(SPIKE))
    drain = run(capsys, "--policy", str(DOCS / "drain-policy.yaml"), "--trace", str(SPIKE))
    # The lag target wants a worker per 1000 messages: all 12 for most of the drain, then down after the window,
    # by the step, or to the partitions with lag, whichever is more.
    assert changes(lag) == [(0, 2), (75, 5), (90, 7), (105, 9), (120, 11), (135, 12), (585, 10), (600, 9),
                            (630, 8), (645, 7), (660, 6), (675, 5), (690, 4), (705, 3), (720, 2)]
    # Drain time measures 50 msg/s per worker: 6 drain the spike within 300 s on top of its arrival, and fewer as
    # the arrival falls back.
    assert changes(drain) == [(0, 2), (60, 5), (120, 6), (345, 4), (360, 3), (450, 2)]
    assert {line["mode"] for line in drain[4:40]} == {"drain"}
    worker_seconds = [sum(line["desired"] * 15 for line in run_) for run_ in (lag, drain)]
    assert worker_seconds[1] < worker_seconds[0] * 0.6, worker_seconds


def test_a_stuck_partition_is_left_out(tmp_path, capsys) -> None:
    trace = ("time,lag,partitions,partitions_with_lag,stuck_partitions,stuck_lag\n"
             "0,5000,12,1,1,5000\n15,5400,12,5,1,5000\n30,5000,12,1,1,5000\n")
    lines = replay(tmp_path, capsys, {}, trace)
    assert [line["desired"] for line in lines] == [1, 4, 1]
    assert "1 stuck partition(s) left out: lag 5400 -> 400" in lines[1]["steps"][0]["note"]
    off = replay(tmp_path, capsys, {"stuck_after_seconds": None}, trace)
    assert [line["desired"] for line in off] == [1, 5, 1]  # capped by the partitions with lag: 1, 5, 1
    off = replay(tmp_path, capsys, {"stuck_after_seconds": None, "limit_to_partitions_with_lag": False}, trace)
    assert [line["desired"] for line in off] == [8, 8, 8]  # one poison message holds them all out


def test_only_partitions_with_lag(tmp_path, capsys) -> None:
    trace = "time,lag,partitions,partitions_with_lag\n0,900,12,2\n15,900,12,6\n30,900,12,12\n"
    lines = replay(tmp_path, capsys, {}, trace)
    assert [(line["desired"], line["limited_by"]) for line in lines] == [
        (2, "partitions_with_lag"), (6, "partitions_with_lag"), (8, "max_replicas")]
    assert [line["desired"] for line in replay(tmp_path, capsys, {"limit_to_partitions_with_lag": False}, trace)] \
        == [8, 8, 8]


def test_the_fallback_on_a_failing_metric(tmp_path, capsys) -> None:
    trace = "time,lag,partitions,lag_age_seconds\n0,300,12,0\n15,,12,0\n30,,12,0\n45,0,12,600\n60,,12,0\n75,0,12,0\n"
    held = replay(tmp_path, capsys, {}, trace)
    assert [(line["desired"], line["mode"]) for line in held] == [
        (3, "lag"), (3, "hold"), (3, "hold"), (3, "fallback"), (3, "fallback"), (1, "lag")]
    raised = replay(tmp_path, capsys, {"fallback": {"replicas_if_higher": 6}}, trace)
    assert [line["desired"] for line in raised] == [3, 3, 3, 6, 6, 1]
    assert "lag metric stale (600s old): fallback (3 failed reads in a row): replicas_if_higher 6" in \
        raised[3]["reason"]


def test_downstream_saturation_stops_the_scale_out(tmp_path, capsys) -> None:
    # Each worker consumed 50/s at 2; at 4 the group still consumes 100/s: whatever is behind them is full. At
    # 150 s it recovers (150/s): one more scale-out, which again does not raise it.
    trace = ("time,lag,partitions,consumed_per_second,produced_per_second\n" +
             "".join(f"{t},{6000 + 500 * i},12,{100 if t < 150 else 150},100\n"
                     for i, t in enumerate(range(0, 300, 30))))
    lines = replay(tmp_path, capsys, {"target_drain_seconds": 60, "rate_window_seconds": 30, "max_replicas": 12,
                                      "scale_up_step": 4, "min_replicas": 2}, trace)
    assert [line["desired"] for line in lines] == [4, 4, 4, 4, 4, 7, 7, 7, 7, 7]
    assert [line["steps"][-2]["step"] == "saturation" for line in lines] == [False, True, True, True, True, False, True, True, True, True]
    assert "did not raise throughput (100/s -> 100/s), downstream saturated" in lines[1]["reason"]


def test_text_and_plot(tmp_path, capsys) -> None:
    plot = tmp_path / "plot.svg"
    assert main(["autoscale", "simulate", "--policy", str(DOCS / "drain-policy.yaml"), "--trace", str(SPIKE),
                 "--format", "text", "--plot", str(plot)]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].split() == ["time", "lag", "counted", "current", "desired", "mode", "reason"]
    assert text[5].split()[:6] == ["60", "2100", "2100", "2", "5", "drain"]
    svg = ET.parse(plot).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    paths = svg.findall(f"{ns}path")
    assert len(paths) == 2  # the lag and the replicas (no stuck partition: no counted-lag line)
    replicas = paths[-1].get("d").split()
    assert len(replicas) == 2 * 81 - 1  # each of the 81 decisions, held until the next


def test_from_prometheus_replays_the_controllers_own_queries(tmp_path, capsys) -> None:
    policy = ScalingPolicy.model_validate(yaml.safe_load((DOCS / "drain-policy.yaml").read_text()))
    rows = read_rows(SPIKE)
    # The trace's `replicas` (2) are, from Prometheus, the consumer group's members.
    expected = run(capsys, "--policy", str(DOCS / "drain-policy.yaml"), "--trace", str(SPIKE))
    with ScriptedPrometheus(policy, rows) as prometheus:
        lines = run(capsys, "--policy", str(DOCS / "drain-policy.yaml"), "--from-prometheus", prometheus.url,
                    "--range", f"{(len(rows) - 1) * 15}s")
    assert len(lines) == len(rows)
    keys = ("current", "desired", "reason", "mode", "limited_by", "steps")
    assert [{k: line[k] for k in keys} for line in lines] == [{k: line[k] for k in keys} for line in expected]


@pytest.mark.parametrize(("args", "message"), [
    (["--trace", "TRACE"], "--policy or --stack: required"),
    (["--policy", "POLICY", "--trace", "missing.csv"], "--trace: cannot read missing.csv"),
    (["--policy", "POLICY", "--trace", "TRACE", "--initial-replicas", "9"],
     "--initial-replicas: must be within min_replicas..max_replicas (1..8), got 9"),
    (["--policy", "POLICY", "--from-prometheus", "ftp://x"], "--from-prometheus: must be an http:// or https://"),
    (["--policy", "POLICY", "--from-prometheus", "http://127.0.0.1:9"], ("--from-prometheus: cannot query "
     "http://127.0.0.1:9")),
    (["--policy", "POLICY", "--from-prometheus", "http://127.0.0.1:9", "--range", "1y"],
     "--range: a duration such as 30m, 24h or 7d, from 1m to 31d; got '1y'"),
])
def test_bad_simulate_input_exits_2(args, message, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "POLICY").write_text(yaml.safe_dump(BASE))
    (tmp_path / "TRACE").write_text("time,lag,partitions\n0,1,12\n")
    assert main(["autoscale", "simulate", *args]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("infra: error: ") and message in error and "\n" not in error, error


@pytest.mark.parametrize(("trace", "message"), [
    ("time,lag\n0,1\n", "missing column(s) partitions; allowed: time, lag, partitions, consumed_per_second"),
    ("time,lag,partitions,lagg\n0,1,12,1\n", "unknown column(s) lagg; allowed:"),
    ("time,lag,partitions\n0,x,12\n", "line 2: column lag: not a number: 'x'"),
    ("time,lag,partitions\n0,-5,12\n", "line 2: column lag: must be a finite number >= 0, got '-5'"),
    ("time,lag,partitions\n15,1,12\n15,1,12\n", "line 3: column time: must increase from row to row, got '15'"),
    ("time,lag,partitions,stuck_partitions\n0,1,12,1\n", "line 2: column stuck_lag: required when stuck_partitions"),
    ("time,lag,partitions\n", "no rows"),
])
def test_bad_traces_name_the_line_and_column(trace, message, tmp_path, capsys) -> None:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(BASE))
    (tmp_path / "trace.csv").write_text(trace)
    assert main(["autoscale", "simulate", "--policy", str(tmp_path / "policy.yaml"),
                 "--trace", str(tmp_path / "trace.csv")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("infra: error: --trace: ") and message in error and "\n" not in error, error


def test_the_plot_in_the_docs_is_what_the_simulator_draws(tmp_path, capsys) -> None:
    plot = tmp_path / "plot.svg"
    run(capsys, "--policy", str(DOCS / "drain-policy.yaml"), "--trace", str(SPIKE), "--plot", str(plot))
    assert plot.read_text() == (DOCS / "spike-and-drain.svg").read_text(), (
        "regenerate it: infra autoscale simulate --policy docs/autoscaling/drain-policy.yaml "
        "--trace docs/autoscaling/spike-and-drain.csv --plot docs/autoscaling/spike-and-drain.svg")


def test_the_docs_table_is_what_the_simulator_decides(capsys) -> None:
    lag = {line["time"]: line["desired"] for line in run(capsys, "--policy", str(DOCS / "lag-policy.yaml"),
                                                              "--trace", str(SPIKE))}
    drain = {line["time"]: line["desired"] for line in run(capsys, "--policy", str(DOCS / "drain-policy.yaml"),
                                                                "--trace", str(SPIKE))}
    text = (DOCS.parent / "AUTOSCALING.md").read_text()
    section = text[text.index("### A spike and its drain"):text.index("## Time to scale")]
    rows = [line.split("|")[1:5] for line in section.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 10
    for time_, _, by_lag, by_drain in rows:
        at = int(time_.split()[0])
        assert (int(by_lag.split()[0]), int(by_drain.split()[0])) == (lag[at], drain[at]), time_


def test_the_docs_name_every_policy_key_with_its_default() -> None:
    text = (DOCS.parent / "AUTOSCALING.md").read_text()
    text = text[text.index("## The policy keys"):text.index("## Explained decisions")]
    table = {row.split("|")[1].strip(): row.split("|")[2].strip() for row in text.splitlines()
             if row.startswith("| `")}
    documented = {key.strip(" `"): default for keys, default in table.items()
                  for key, default in zip(keys.split(","), default.split(", ") * 2, strict=False)}
    assert set(documented) == set(ScalingPolicy.model_fields)
    for key, field in ScalingPolicy.model_fields.items():
        if field.is_required():
            assert documented[key] == "required", key
        elif field.default is None:
            assert documented[key] == "unset", key
        else:
            assert documented[key].strip("`") == str(field.default).lower(), key
