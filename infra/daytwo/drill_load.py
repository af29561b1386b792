"""`infra drill load`: a bounded load through the stack's edge, and how its rate limits answer it.

The load is closed-loop: `--concurrency` clients, each sending its next request when the last is answered, until
`--requests` are sent or `--duration` has passed (both capped: MAX_REQUESTS, MAX_SECONDS, MAX_CONCURRENCY). It
goes only to a loopback address or one of the stack's public hosts (`--endpoint`), over TLS checked for the
stack's first public host name (the system's CAs or SSL_CERT_FILE), that name also its Host header, as verify
reaches the edge. It reports throughput, p50/p95/p99 of every answer and of the 2xx ones, the answers by status,
and the rate limit judged at the stack's configured rate (`edge.api_rate_per_second`, `edge.api_burst`; the login
path has its own per-minute zone): every client shares one address at the edge, so no more than rate × seconds +
burst requests may pass, and a load offered faster than that must see 429s.

Its evidence record proves the checklist line `testing.load`. Exit 0: no 5xx, no connection error, the rate
limit held; 1 otherwise; 2 bad input or an unreachable endpoint.
"""

from __future__ import annotations

import argparse
import ipaddress
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import urllib3

from platform_infra.components.edge.model import EdgeConfig
from platform_infra.infra.daytwo import evidence
from platform_infra.infra.daytwo.drills import (
    DrillInterrupted,
    add_guard_arguments,
    refuse_prod,
    restoring_on_signals,
    write_record,
)
from platform_infra.infra.daytwo.verify import HEALTH_PATH, Unreachable, stack_settings
from platform_infra.infra.mockrun import ProgramInputError
from platform_infra.infra.settings import Settings

MAX_REQUESTS, MAX_SECONDS, MAX_CONCURRENCY = 20000, 300, 64
REQUEST_TIMEOUT = 10
RATE_TOLERANCE = 1.1
"""nginx's leaky bucket counts in milliseconds and its burst refills as the load runs: 10% and two requests of
slack over rate × seconds + burst."""


@dataclass
class Load:
    """What came back: each answer's status and latency, each failed request's error."""

    latencies: list[tuple[int, float]] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (the smallest value with at least `fraction` of the values at or below it)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(fraction * len(ordered) + 0.999999) - 1))]


def edge_pool(url: str, server_name: str | None, concurrency: int) -> urllib3.HTTPConnectionPool:
    parts = urlsplit(url)
    if parts.scheme == "http":
        return urllib3.HTTPConnectionPool(parts.hostname, parts.port or 80, maxsize=concurrency, block=True,
                                          retries=False, timeout=REQUEST_TIMEOUT)
    return urllib3.HTTPSConnectionPool(parts.hostname, parts.port or 443, ssl_context=ssl.create_default_context(),
                                       server_hostname=server_name, assert_hostname=server_name, maxsize=concurrency,
                                       block=True, retries=False, timeout=REQUEST_TIMEOUT)


def run_load(pool: urllib3.HTTPConnectionPool, path: str, host: str | None, requests: int, seconds: float,
             concurrency: int, stop: threading.Event | None = None) -> Load:
    """The closed-loop load; stops at `requests`, `seconds`, or when `stop` is set (an interruption)."""
    stop = stop or threading.Event()
    load = Load()
    tickets = iter(range(requests))
    started = time.monotonic()
    deadline = started + seconds
    headers = {"Host": host} if host else {}

    def client() -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            with load.lock:
                if next(tickets, None) is None:
                    return
            sent = time.perf_counter()
            try:
                answer = pool.request("GET", path, headers=headers, preload_content=True)
                with load.lock:
                    load.latencies.append((answer.status, time.perf_counter() - sent))
            except urllib3.exceptions.HTTPError as error:
                with load.lock:
                    load.errors[type(getattr(error, "reason", None) or error).__name__] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    finally:
        stop.set()  # an interruption (DrillInterrupted) ends every client before the caller reports
        for thread in threads:
            thread.join(REQUEST_TIMEOUT + 1)
        load.seconds = time.monotonic() - started
    return load


def summary(load: Load) -> dict[str, Any]:
    every = [latency for _, latency in load.latencies]
    ok = [latency for status, latency in load.latencies if 200 <= status < 300]

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 1)

    return {"answered": len(every), "errors": dict(load.errors), "seconds": round(load.seconds, 2),
            "throughput_per_second": round(len(every) / load.seconds, 1) if load.seconds else 0.0,
            "by_status": {str(k): v for k, v in sorted(Counter(s for s, _ in load.latencies).items())},
            "p50_ms": ms(percentile(every, 0.50)), "p95_ms": ms(percentile(every, 0.95)),
            "p99_ms": ms(percentile(every, 0.99)), "p95_ms_2xx": ms(percentile(ok, 0.95))}


def rate_limit_verdict(edge: EdgeConfig, path: str, figures: dict[str, Any]) -> tuple[bool, dict[str, Any], str]:
    """Whether the edge let through no more than its configured rate allows, and refused (429) beyond it."""
    login = path.rstrip("/").split(";")[0] == edge.login_path
    rate = edge.login_rate_per_minute / 60 if login else edge.api_rate_per_second
    burst = edge.login_burst if login else edge.api_burst
    allowed = rate * figures["seconds"] + burst
    passed = sum(v for k, v in figures["by_status"].items() if k != "429")
    refused = figures["by_status"].get("429", 0)
    held = passed <= allowed * RATE_TOLERANCE + 2
    needed_429 = figures["answered"] > allowed * RATE_TOLERANCE + 2
    ok = held and (refused > 0 or not needed_429)
    zone = "login" if login else "api"
    value = {"passed": passed, "refused_429": refused, "allowed": round(allowed, 1)}
    text = (f"{zone} zone at {rate:g} r/s, burst {burst}: {passed} passed of {figures['answered']} "
            f"(allowed {allowed:.0f} in {figures['seconds']} s), {refused} refused with 429")
    return ok, value, text


def checked_endpoint(url: str, settings: Settings) -> str:
    """The edge's URL, only at loopback or one of the stack's public hosts: a load goes nowhere else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProgramInputError(f"--endpoint {url!r}: not an http(s) URL")
    host = parts.hostname
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and host not in settings.public_hosts:
        raise ProgramInputError(f"--endpoint {url}: allowed: a loopback address or the stack's public hosts "
                                f"({', '.join(settings.public_hosts)})")
    return url


def bounded(value: float, flag: str, most: float) -> float:
    if not 0 < value <= most:
        raise ProgramInputError(f"{flag}: {value:g}: allowed 1 to {most:g}")
    return value


def load_check(ok: bool, figures: dict[str, Any], verdict: str) -> evidence.Check:
    problems = [f"{v} answered {k}" for k, v in figures["by_status"].items() if k.startswith("5")]
    problems += [f"{v} failed: {k}" for k, v in figures["errors"].items()]
    return evidence.Check(
        id="testing.load", section="Testing", text="Load testing completed", status="pass" if ok else "fail",
        value={k: figures[k] for k in ("throughput_per_second", "p50_ms", "p95_ms", "p99_ms", "answered")},
        threshold={"5xx": 0, "errors": 0},
        evidence="; ".join([*problems, verdict]) + f"; p95 {figures['p95_ms']} ms at "
                 f"{figures['throughput_per_second']} answers/s")


def cmd_drill_load(args: argparse.Namespace) -> int:
    requests = int(bounded(args.requests, "--requests", MAX_REQUESTS))
    seconds = bounded(args.duration, "--duration", MAX_SECONDS)
    concurrency = int(bounded(args.concurrency, "--concurrency", MAX_CONCURRENCY))
    if not args.path.startswith("/"):
        raise ProgramInputError(f"--path {args.path!r}: must start with /")
    settings = stack_settings(Path(args.project), args.stack)
    refuse_prod(settings, args.stack, args.yes_in_prod)
    host = settings.public_hosts[0]
    url = checked_endpoint(args.endpoint or f"https://{host}", settings)
    pool = edge_pool(url, host, concurrency)
    path = urlsplit(url).path.rstrip("/") + args.path
    try:
        pool.request("GET", path, headers={"Host": host})
    except urllib3.exceptions.HTTPError as error:
        raise Unreachable(f"--endpoint: nothing answers at {url} ({getattr(error, 'reason', None) or error})") from None
    time.sleep(1)  # the probe's token back in the bucket
    stop = threading.Event()
    interrupted = None
    try:
        with restoring_on_signals():
            load = run_load(pool, path, host, requests, seconds, concurrency, stop)
    except DrillInterrupted as signal_name:
        interrupted = str(signal_name)
        load = Load()
    figures = summary(load) if not interrupted else {"interrupted": interrupted}
    if interrupted:
        check = evidence.Check(id="testing.load", section="Testing", text="Load testing completed", status="fail",
                               evidence=f"interrupted by {interrupted}")
        write_record(args, settings, "drill.load", False, [check], figures)
        return 130
    held, value, verdict = rate_limit_verdict(settings.edge, args.path, figures)
    clean = not figures["errors"] and not any(k.startswith("5") for k in figures["by_status"])
    ok = held and clean
    data = {**figures, "rate_limit": value, "endpoint": url, "path": args.path, "requests": requests,
            "duration": seconds, "concurrency": concurrency}
    return write_record(args, settings, "drill.load", ok, [load_check(ok, figures, verdict)], data)


def add_load_arguments(parser: argparse.ArgumentParser, add_program_arguments: Callable) -> None:
    add_program_arguments(parser)
    add_guard_arguments(parser)
    parser.add_argument("--endpoint", help="where the edge answers (default: https://<first public host>); only a "
                        "loopback address or one of the stack's public hosts")
    parser.add_argument("--path", default=HEALTH_PATH, help=f"the path requested (default: {HEALTH_PATH})")
    parser.add_argument("--requests", type=int, default=500, help=f"requests at most (default 500, max {MAX_REQUESTS})")
    parser.add_argument("--duration", type=float, default=30, help=f"seconds at most (default 30, max {MAX_SECONDS})")
    parser.add_argument("--concurrency", type=int, default=8,
                        help=f"clients at once (default 8, max {MAX_CONCURRENCY})")
    parser.set_defaults(handler=cmd_drill_load)
