"""`infra autoscale simulate`: replay a lag trace through the controller's own decision, offline.

Each row of the trace is one decision: the row's observation at the replicas the previous decision set, passed
to `platform_infra.components.autoscaling.decide` with the state it returned before, exactly as `infra autoscale` does every
interval. With `--from-prometheus` the rows are the answers of the controller's own queries (`lag_queries`)
over a past range, read by the controller's own `observation`. No engine, no service is touched.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from html import escape
from pathlib import Path

from platform_infra.components.autoscaling import Observation, ScalingPolicy, State, decide
from platform_infra.infra.daytwo.autoscale import (
    Answer,
    _prometheus_api,
    add_policy_arguments,
    decision_line,
    lag_queries,
    load_policy,
    observation,
)
from platform_infra.infra.mockrun import ProgramInputError

REQUIRED_COLUMNS = ("time", "lag", "partitions")
OPTIONAL_COLUMNS = ("consumed_per_second", "produced_per_second", "stuck_partitions", "stuck_lag",
                    "partitions_with_lag", "lag_age_seconds", "replicas")
RANGE = re.compile(r"^(\d+)([smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_RANGE_SECONDS = 31 * 86400
MAX_POINTS = 11_000  # Prometheus refuses a range query of more points per series


@dataclass(frozen=True)
class Sample:
    time: float
    """Seconds from the trace's start (or Unix time, from Prometheus)."""
    seen: Callable[[int], Observation]
    """The observation at the given current replicas."""


def _number(raw: str, where: str, column: str, kind: type = float) -> float | int | None:
    if raw is None or raw.strip() == "":
        return None
    try:
        value = kind(raw) if kind is float else kind(float(raw))
    except ValueError:
        raise ProgramInputError(f"{where}: column {column}: not a number: {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ProgramInputError(f"{where}: column {column}: must be a finite number >= 0, got {raw!r}")
    return value


def read_trace(path: Path) -> list[Sample]:
    """The CSV trace: `time` (seconds from the start), `lag` (the group's total; empty: the metric is missing),
    `partitions`, and the optional OPTIONAL_COLUMNS; `replicas`: the consumers the trace was recorded at."""
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ProgramInputError(f"--trace: cannot read {path}: {error}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    unknown = [c for c in columns if c not in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)]
    if missing or unknown:
        problem = f"missing column(s) {', '.join(missing)}" if missing else f"unknown column(s) {', '.join(unknown)}"
        raise ProgramInputError(f"--trace: {path}: {problem}; allowed: {', '.join((*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS))}")
    if not rows:
        raise ProgramInputError(f"--trace: {path}: no rows")
    samples, last = [], -1.0
    for number, raw in enumerate(rows, start=2):
        row = {k.strip(): v for k, v in raw.items() if k is not None}
        where = f"--trace: {path}: line {number}"
        at = _number(row["time"], where, "time")
        if at is None or at <= last:
            raise ProgramInputError(f"{where}: column time: must increase from row to row, got {row['time']!r}")
        last = at
        stuck = _number(row.get("stuck_partitions"), where, "stuck_partitions", int) or 0
        stuck_lag = _number(row.get("stuck_lag"), where, "stuck_lag")
        if stuck and stuck_lag is None:
            raise ProgramInputError(f"{where}: column stuck_lag: required when stuck_partitions is above 0")
        fields = {
            "lag": _number(row["lag"], where, "lag"),
            "partitions": _number(row["partitions"], where, "partitions", int),
            "lag_age_seconds": _number(row.get("lag_age_seconds"), where, "lag_age_seconds") or 0.0,
            "partitions_with_lag": _number(row.get("partitions_with_lag"), where, "partitions_with_lag", int),
            "stuck_partitions": stuck,
            "stuck_lag": stuck_lag or 0.0,
            "consumed_per_second": _number(row.get("consumed_per_second"), where, "consumed_per_second"),
            "produced_per_second": _number(row.get("produced_per_second"), where, "produced_per_second"),
        }
        fields["consumers"] = _number(row.get("replicas"), where, "replicas", int)
        samples.append(Sample(at, lambda current, f=fields: at_simulated_replicas(Observation(current=current, **f))))
    return samples


def at_simulated_replicas(seen: Observation) -> Observation:
    """A trace recorded at other replicas: when it says how many consumed, the consumption rate per replica is
    kept and scaled to the simulated replicas (a replay cannot know better); otherwise it is the group's."""
    if not seen.consumers or seen.consumed_per_second is None:
        return seen
    return replace(seen, consumed_per_second=seen.consumed_per_second / seen.consumers * seen.current,
                   consumers=seen.current)


def range_seconds(text: str, flag: str = "--range") -> int:
    match = RANGE.match(text)
    seconds = int(match[1]) * UNIT_SECONDS[match[2]] if match else 0
    if not 60 <= seconds <= MAX_RANGE_SECONDS:
        raise ProgramInputError(f"{flag}: a duration such as 30m, 24h or 7d, from 1m to 31d; got {text!r}")
    return seconds


def prometheus_history(url: str, policy: ScalingPolicy, seconds: int, end: float,
                       flag: str = "--from-prometheus") -> list[Sample]:
    """The controller's queries over the range, one row per interval (coarser when the range needs it)."""
    if not url.startswith(("http://", "https://")):
        raise ProgramInputError(f"{flag}: must be an http:// or https:// URL, got {url!r}")
    step = max(policy.interval_seconds, math.ceil(seconds / MAX_POINTS))
    start = end - seconds
    times = [start + i * step for i in range(seconds // step + 1)]
    answers: dict[float, dict[str, Answer]] = {t: {} for t in times}
    for name, expr in lag_queries(policy).items():
        try:
            series = _prometheus_api(url, "query_range", {"query": expr, "start": f"{start:.3f}",
                                                          "end": f"{times[-1]:.3f}", "step": f"{step}s"}, 30)
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise ProgramInputError(f"{flag}: cannot query {url}: {error}") from None
        for t in times:
            answers[t][name] = []
        for one in series:
            for at, value in one["values"]:
                # The row of the evaluation time the sample was answered for (Prometheus answers on the steps).
                key = times[min(len(times) - 1, max(0, round((float(at) - start) / step)))]
                answers[key][name].append((one["metric"], float(value)))
    return [Sample(t, lambda current, a=answers[t], now=t: at_simulated_replicas(observation(a, current, now, False)))
            for t in times]


def simulate(policy: ScalingPolicy, samples: list[Sample], initial: int) -> list[dict]:
    """One decision per sample, each applied at once (the next sees its replicas)."""
    replicas, state, lines = initial, State(), []
    for sample in samples:
        decision = decide(policy, sample.seen(replicas), state, sample.time)
        state = decision.state
        when = int(sample.time) if float(sample.time).is_integer() else sample.time
        lines.append(decision_line(when, "simulated", replicas, decision, decision.desired != replicas))
        replicas = decision.desired
    return lines


def text_report(lines: list[dict]) -> str:
    rows = [("time", "lag", "counted", "current", "desired", "mode", "reason")]
    for line in lines:
        lag = line["inputs"]["lag"]
        counted = None if lag is None else max(0.0, lag - line["inputs"]["stuck_lag"])
        rows.append((str(line["time"]), "-" if lag is None else f"{lag:g}", "-" if counted is None else f"{counted:g}",
                     str(line["current"]), str(line["desired"]), line["mode"], line["reason"]))
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    return "\n".join("  ".join(cell.rjust(widths[i]) if i < 6 else cell for i, cell in enumerate(row)) for row in rows)


def _axis_top(value: float) -> float:
    """The least of 4, 8, 10, 20, 40, ... (4 ticks of 1, 2, 2.5 or 5 times a power of ten) at or above value."""
    power = 10 ** math.floor(math.log10(max(value, 1) / 4))
    return next(4 * m * power * scale for scale in (1, 10) for m in (1, 2, 2.5, 5) if 4 * m * power * scale >= value)


def plot_svg(lines: list[dict], policy: ScalingPolicy, title: str) -> str:
    """Lag (total and counted) above, replicas below, on one time axis; failed reads and pauses marked."""
    width, left, right, panel, gap, top = 860, 70, 20, 170, 50, 50
    times = [float(line["time"]) for line in lines]
    t0, t1 = times[0], max(times[-1], times[0] + 1)
    lags = [line["inputs"]["lag"] for line in lines]
    counted = [None if lag is None else max(0.0, lag - line["inputs"]["stuck_lag"]) for lag, line in zip(lags, lines)]
    lag_top = _axis_top(max([v for v in lags if v is not None] or [1]))
    replicas_top = _axis_top(policy.max_replicas + 1)
    height = top + 2 * panel + gap + 60

    def x(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * (width - left - right)

    def y(value: float, scale: float, panel_top: float) -> float:
        return panel_top + panel - value / scale * panel

    def path(values: list[float | None], scale: float, panel_top: float, steps: bool) -> str:
        """A line through the values (a gap where one is missing); `steps`: each value holds until the next."""
        parts, previous = [], None
        for t, value in zip(times, values, strict=True):
            if value is None:
                previous = None
                continue
            here = y(value, scale, panel_top)
            if previous is None:
                parts.append(f"M{x(t):.1f},{here:.1f}")
            else:
                if steps:
                    parts.append(f"L{x(t):.1f},{previous:.1f}")
                parts.append(f"L{x(t):.1f},{here:.1f}")
            previous = here
        return " ".join(parts)

    lower = top + panel + gap
    minutes = (t1 - t0) >= 600
    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">'),
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="24" font-size="15" font-weight="bold">{escape(title)}</text>']
    for panel_top, scale, name in ((top, lag_top, "lag (messages)"), (lower, replicas_top, "replicas")):
        out.append(f'<rect x="{left}" y="{panel_top}" width="{width - left - right}" height="{panel}" '
                   'fill="#fafafa" stroke="#999"/>')
        out.append(f'<text x="14" y="{panel_top + panel / 2}" transform="rotate(-90 14 {panel_top + panel / 2})" '
                   f'text-anchor="middle">{name}</text>')
        for k in range(5):
            value = scale * k / 4
            out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(value, scale, panel_top):.1f}" '
                       f'y2="{y(value, scale, panel_top):.1f}" stroke="#e3e3e3"/>')
            out.append(f'<text x="{left - 6}" y="{y(value, scale, panel_top) + 4:.1f}" text-anchor="end">'
                       f'{value:.0f}</text>')
    for k in range(7):
        t = t0 + (t1 - t0) * k / 6
        label = f"{(t - t0) / 60:.0f} min" if minutes else f"{t - t0:.0f} s"
        out.append(f'<text x="{x(t):.1f}" y="{lower + panel + 18}" text-anchor="middle">{label}</text>')
    for i, line in enumerate(lines):
        if line["mode"] in ("hold", "fallback", "paused"):
            colour = "#d9534f" if line["mode"] != "paused" else "#999"
            out.append(f'<rect x="{x(times[i]) - 2:.1f}" y="{top}" width="4" height="{2 * panel + gap}" '
                       f'fill="{colour}" opacity="0.25"/>')
    out.append(f'<path d="{path(lags, lag_top, top, False)}" fill="none" stroke="#888" stroke-width="2"/>')
    if counted != lags:
        out.append(f'<path d="{path(counted, lag_top, top, False)}" fill="none" stroke="#e67e22" '
                   'stroke-width="2" stroke-dasharray="5 3"/>')
    for value, colour in ((policy.max_replicas, "#c0392b"), (policy.min_replicas, "#27ae60")):
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(value, replicas_top, lower):.1f}" '
                   f'y2="{y(value, replicas_top, lower):.1f}" stroke="{colour}" stroke-dasharray="4 4"/>')
    out.append(f'<path d="{path([line["desired"] for line in lines], replicas_top, lower, True)}" fill="none" '
               'stroke="#2c6fbb" stroke-width="2.5"/>')
    legend = [("#888", "total lag"), ("#e67e22", "lag counted (stuck partitions left out)"),
              ("#2c6fbb", "replicas set"), ("#c0392b", "max_replicas"), ("#27ae60", "min_replicas"),
              ("#d9534f", "metric failed: hold / fallback")]
    for k, (colour, text) in enumerate(legend):
        lx = left + (k % 3) * 260
        ly = height - 30 + (k // 3) * 16
        out.append(f'<rect x="{lx}" y="{ly - 9}" width="14" height="4" fill="{colour}"/>'
                   f'<text x="{lx + 20}" y="{ly - 4}">{escape(text)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def cmd_simulate(args: argparse.Namespace) -> int:
    if not args.policy and not args.stack:
        raise ProgramInputError("--policy or --stack: required (the scaling policy to replay)")
    policy = load_policy(args)
    if args.initial_replicas is not None and not policy.min_replicas <= args.initial_replicas <= policy.max_replicas:
        raise ProgramInputError(f"--initial-replicas: must be within min_replicas..max_replicas "
                                f"({policy.min_replicas}..{policy.max_replicas}), got {args.initial_replicas}")
    if args.trace:
        samples, source = read_trace(Path(args.trace)), Path(args.trace).name
    else:
        samples = prometheus_history(args.from_prometheus, policy, range_seconds(args.range), time.time())
        source = f"{args.from_prometheus}, last {args.range}"
    lines = simulate(policy, samples, args.initial_replicas or policy.min_replicas)
    if args.plot:
        mode = (f"drain within {policy.target_drain_seconds}s" if policy.drain_mode
                else f"{policy.target_lag_per_replica} lag per replica")
        try:
            Path(args.plot).write_text(plot_svg(lines, policy, f"{source}: {mode}"))
        except OSError as error:
            raise ProgramInputError(f"--plot: cannot write {args.plot}: {error}") from None
    if args.format == "json":
        sys.stdout.writelines(json.dumps(line) + "\n" for line in lines)
    else:
        print(text_report(lines))
    return 0


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    add_policy_arguments(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--trace", help="CSV: time, lag, partitions[, consumed_per_second, produced_per_second, "
                        "stuck_partitions, stuck_lag, partitions_with_lag, lag_age_seconds, replicas]")
    source.add_argument("--from-prometheus", metavar="URL", help="replay the controller's queries over a past range")
    parser.add_argument("--range", default="24h", help="with --from-prometheus: how far back (e.g. 30m, 24h, 7d)")
    parser.add_argument("--format", choices=("json", "text"), default="json", help="one JSON line per decision, "
                        "or a table")
    parser.add_argument("--plot", metavar="FILE.svg", help="draw lag and replicas over time")
    parser.add_argument("--initial-replicas", type=int, help="replicas before the first row (default: min_replicas)")
