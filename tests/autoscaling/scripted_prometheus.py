"""A stand-in for Prometheus's HTTP API (no Kafka consumer group can be had here to give kafka-exporter real
lag): it answers exactly the PromQL the autoscaler sends (`platform_infra.infra.daytwo.autoscale.lag_queries`) from the rows of a
trace in the simulator's CSV format, per the documented API (GET /api/v1/query and /api/v1/query_range,
`{"status": "success", "data": {"resultType": "vector"|"matrix", "result": [...]}}`).

Instant queries: each `lag_by_partition` query (the first the controller sends) moves to the next row, so every
decision of the controller sees one row; the last row holds once the trace ends. Range queries: row i answers
the step start + i * step. A query it does not know is refused (HTTP 400), so a changed query fails loudly.
"""

from __future__ import annotations

import csv
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

from platform_infra.components.autoscaling import ScalingPolicy
from platform_infra.infra.daytwo.autoscale import lag_queries


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _number(row: dict[str, str], column: str) -> float | None:
    raw = (row.get(column) or "").strip()
    return None if raw == "" else float(raw)


def partition_lags(row: dict[str, str]) -> dict[str, int] | None:
    """Each partition's lag, as kafka-exporter exports it: the stuck partitions first, holding stuck_lag, then
    the other partitions with lag sharing the rest, in whole messages; None when the lag is missing."""
    lag = _number(row, "lag")
    if lag is None:
        return None
    partitions = int(_number(row, "partitions") or 0)
    stuck = int(_number(row, "stuck_partitions") or 0)
    stuck_lag = int(_number(row, "stuck_lag") or 0)
    with_lag = _number(row, "partitions_with_lag")
    moving = (partitions - stuck if with_lag is None else int(with_lag) - stuck) if lag > stuck_lag else 0
    lags = [0] * partitions
    for i in range(stuck):
        lags[i] = stuck_lag // stuck + (i < stuck_lag % stuck)
    rest = int(lag) - stuck_lag
    for i in range(moving):
        lags[stuck + i] = rest // moving + (i < rest % moving)
    return {str(i): value for i, value in enumerate(lags)}


class ScriptedPrometheus(ThreadingHTTPServer):
    def __init__(self, policy: ScalingPolicy, rows: list[dict[str, str]], address: str = "127.0.0.1") -> None:
        super().__init__((address, 0), _Handler)
        self.rows, self.policy = rows, policy
        self.names = {expr: name for name, expr in lag_queries(policy).items()}
        self.decision = -1
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()

    def answer(self, name: str, row: dict[str, str], now: float) -> list[tuple[dict[str, str], float]]:
        lags = partition_lags(row)
        if name == "partitions":
            partitions = _number(row, "partitions")
            return [] if partitions is None else [({}, partitions)]
        if name in ("consumed", "produced"):
            rate = _number(row, f"{name}_per_second")
            return [] if rate is None else [({}, rate)]
        if name == "consumers":
            members = _number(row, "replicas")
            return [] if members is None else [({}, members)]
        if lags is None:
            return []
        if name == "lag_by_partition":
            return [({"partition": p}, float(v)) for p, v in lags.items()]
        if name == "lag_time":
            return [({}, now - (_number(row, "lag_age_seconds") or 0.0))]
        if name == "stuck_lag":
            stuck = int(_number(row, "stuck_partitions") or 0)
            return [({"partition": p}, float(v)) for p, v in list(lags.items())[:stuck] if v > 0]
        raise KeyError(name)

    def instant(self, expr: str) -> list[dict]:
        name = self.names[expr]
        with self.lock:
            if name == "lag_by_partition":
                self.decision += 1
            row = self.rows[min(max(self.decision, 0), len(self.rows) - 1)]
        now = time.time()
        return [{"metric": labels, "value": [now, repr(value)]} for labels, value in self.answer(name, row, now)]

    def range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        name = self.names[expr]
        series: dict[tuple, dict] = {}
        for i, row in enumerate(self.rows):
            at = start + i * step
            if at > end:
                break
            for labels, value in self.answer(name, row, at):
                one = series.setdefault(tuple(sorted(labels.items())), {"metric": labels, "values": []})
                one["values"].append([at, repr(value)])
        return list(series.values())


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedPrometheus

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        params = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        expr = params.get("query", "")
        if expr not in self.server.names:
            self._send(400, {"status": "error", "errorType": "bad_data", "error": f"unscripted query {expr!r}"})
        elif url.path == "/api/v1/query":
            self._send(200, {"status": "success", "data": {"resultType": "vector",
                                                            "result": self.server.instant(expr)}})
        elif url.path == "/api/v1/query_range":
            step = float(params["step"].removesuffix("s"))
            result = self.server.range(expr, float(params["start"]), float(params["end"]), step)
            self._send(200, {"status": "success", "data": {"resultType": "matrix", "result": result}})
        else:
            self.send_error(404)

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass
