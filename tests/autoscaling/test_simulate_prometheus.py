"""`infra autoscale simulate --from-prometheus` against a real Prometheus holding kafka-exporter's series for
the spike-and-drain trace (backfilled with `promtool tsdb create-blocks-from openmetrics`): the controller's
queries as range queries, one row per interval, read as the controller reads them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import platform_infra.infra.daytwo.autoscale_simulate
from platform_infra.infra.cli import main
from tests.autoscaling.scripted_prometheus import read_rows
from tests.conftest import require_tool
from tests.monitoring.conftest import DEBIAN_PACKAGE, start_server  # noqa: F401 (a fixture)

DOCS = Path(__file__).parents[2] / "docs" / "autoscaling"
PARTITIONS = 12
GROUP = 'consumergroup="job-workers",topic="jobs"'
END = 1_700_000_000  # the trace's last row; Prometheus keeps the backfilled blocks whatever their age


def openmetrics(rows: list[dict[str, str]]) -> str:
    """kafka-exporter's series for the trace, each partition an equal share: the topic's offsets grow with the
    arrivals, the group's with what it consumed, and the lag is their difference."""
    start = END - int(rows[-1]["time"])
    produced = consumed = 0.0
    points = []
    for i, row in enumerate(rows):
        if i:
            seconds = int(row["time"]) - int(rows[i - 1]["time"])
            produced += float(row["produced_per_second"]) * seconds
            consumed = produced - float(row["lag"])
        points.append((start + int(row["time"]), produced / PARTITIONS, consumed / PARTITIONS,
                       float(row["lag"]) / PARTITIONS))
    lines = []
    for metric, labels, column in (("kafka_topic_partition_current_offset", 'topic="jobs"', 1),
                                   ("kafka_consumergroup_current_offset", GROUP, 2),
                                   ("kafka_consumergroup_lag", GROUP, 3)):
        lines.append(f"# TYPE {metric} gauge")
        lines += [f'{metric}{{{labels},partition="{p}"}} {point[column]} {point[0]}'
                  for p in range(PARTITIONS) for point in points]
    lines.append("# TYPE kafka_consumergroup_members gauge")
    lines += [f'kafka_consumergroup_members{{consumergroup="job-workers"}} {row["replicas"]} {point[0]}'
              for row, point in zip(rows, points, strict=True)]
    lines.append("# TYPE kafka_topic_partitions gauge")
    lines += [f'kafka_topic_partitions{{topic="jobs"}} {PARTITIONS} {point[0]}' for point in points]
    return "\n".join([*lines, "# EOF"]) + "\n"


def test_from_a_real_prometheus(start_server, tmp_path, capsys, monkeypatch) -> None:  # noqa: F811
    promtool = require_tool("promtool", DEBIAN_PACKAGE["promtool"])
    prometheus = require_tool("prometheus", DEBIAN_PACKAGE["prometheus"])
    rows = read_rows(DOCS / "spike-and-drain.csv")
    (tmp_path / "series.om").write_text(openmetrics(rows))
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(tmp_path / "series.om"),
                    str(tmp_path / "data")], check=True, capture_output=True, timeout=120)
    (tmp_path / "prometheus.yml").write_text("global: {}\n")
    url = start_server([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                        f"--storage.tsdb.path={tmp_path / 'data'}"], "/-/ready")
    monkeypatch.setattr(platform_infra.infra.daytwo.autoscale_simulate.time, "time", lambda: float(END))  # the range ends at the trace's end

    assert main(["autoscale", "simulate", "--policy", str(DOCS / "drain-policy.yaml"), "--from-prometheus", url,
                 "--range", f"{rows[-1]['time']}s"]) == 0, capsys.readouterr().err
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["time"] for line in lines] == [END - int(rows[-1]["time"]) + int(row["time"]) for row in rows]
    assert [line["inputs"]["lag"] for line in lines] == [float(row["lag"]) for row in rows]
    assert {line["inputs"]["partitions"] for line in lines} == {PARTITIONS}
    assert {line["inputs"]["lag_age_seconds"] for line in lines} == {0.0}
    assert {line["inputs"]["stuck_partitions"] for line in lines} == {0}
    # Once the 120 s rate window lies within the spike, the rates are the trace's.
    middle = lines[13]  # 195 s: the window (75 s, 195 s] inside the spike (60 s to 240 s)
    assert middle["inputs"]["produced_per_second"] == pytest.approx(240)
    # Consumed by 2 members (100/s): 50/s per replica, at the simulated replicas.
    assert middle["inputs"]["consumers"] == middle["current"] == 6
    assert middle["inputs"]["consumed_per_second"] == pytest.approx(50 * 6)
    assert middle["mode"] == "drain"
    assert max(line["desired"] for line in lines) == 6
    assert lines[-1]["desired"] == 2
