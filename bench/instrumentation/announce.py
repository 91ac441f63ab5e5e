"""The start announcement: what telling the collector an invocation began costs the invocation.

Each invocation is announced as it starts (``hoptrace.instrumentation.aws_lambda.announce``),
handed to the export thread without waiting. One worker process per condition alternates the
same traced handler with announcements on and off (the running instance's ``announce`` option,
switched between invocations), after warm-ups:

- ``collector up``: exporting to the endpoint on loopback (the sink, or ``--endpoint``). Goal: the
  whole invocation (handler + end-of-invocation flush; announcements go out on a connection of
  their own, so the flush does not wait behind one) ≤ 1 ms more at p50;
- ``collector down``: exporting to a closed loopback port. Goal: the handler's own time (measured
  inside it) unchanged — the announcement is never waited for; the invocation's total is the
  flush budget's business either way.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import sys
import time
from typing import Any

from bench.measure import REPO_ROOT, Budget, ChildFailed, child_env, percentile, progress, run_json_child
from bench.report import Row, Section

from . import lambda_env

WARMUP = 20
UP_GOAL_MS = 1.0
WORK_STEPS = 2000  # the handler's own work: a little Python, a fraction of a millisecond
SLOW_WAIT_MS = 20  # the "slow" handler also waits this long on I/O: its announcement is always sent


def _handler(tracer: Any, own_ns: list[int], wait_s: float) -> Any:
    def handler(event: Any, context: Any) -> dict[str, Any]:
        start = time.perf_counter_ns()
        if wait_s:
            time.sleep(wait_s)  # waiting on I/O: the announcement goes out meanwhile
        total = 0
        for step in range(3):
            with tracer.start_as_current_span(f"step {step}") as span:
                span.set_attribute("bench.step", step)
                total += sum(i * i for i in range(WORK_STEPS))
        own_ns.append(time.perf_counter_ns() - start)
        return {"statusCode": 200, "total": total}

    return handler


def worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: alternate announced and unannounced invocations; time each and the handler's own part."""
    from opentelemetry import trace

    import hoptrace

    state = hoptrace.init()
    own: list[int] = []
    traced = hoptrace.lambda_handler(_handler(trace.get_tracer("bench.announce"), own, cfg["wait_ms"] / 1000.0))
    configs = {True: state.config, False: dataclasses.replace(state.config, announce=False)}
    samples: dict[str, list[int]] = {"on_ns": [], "off_ns": [], "own_on_ns": [], "own_off_ns": []}
    for i in range(WARMUP + cfg["invocations"]):
        for announce in (True, False) if i % 2 == 0 else (False, True):
            state.config = configs[announce]
            context = lambda_env.LambdaContext(f"bench-announce-{cfg['condition']}")
            start = time.perf_counter_ns()
            traced(lambda_env.EVENT, context)
            elapsed = time.perf_counter_ns() - start
            if i < WARMUP:
                continue
            key = "on" if announce else "off"
            samples[f"{key}_ns"].append(elapsed)
            samples[f"own_{key}_ns"].append(own[-1])
    hoptrace.flush(2000)
    return {**samples, "stats": dict(hoptrace.stats())}


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens once the socket is closed


def run_worker(condition: str, endpoint: str, invocations: int) -> dict[str, Any]:
    cfg = {"condition": condition, "invocations": invocations, "wait_ms": SLOW_WAIT_MS if condition == "slow" else 0}
    env = child_env(lambda_env.environment(f"bench-announce-{condition}", "unused.handler"))
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    args = [sys.executable, "-m", "bench.instrumentation.worker", "announce", json.dumps(cfg)]
    result, _ = run_json_child(args, env=env, cwd=REPO_ROOT, timeout_s=300)
    return result


def _ms(values: list[int], q: float) -> float:
    return percentile([v / 1e6 for v in values], q)


def run(endpoint: str, invocations: int, budget: Budget, warnings: list[str]) -> Section:
    section = Section(
        "Start announcement",
        f"{invocations} invocations per condition of a handler making 4 spans, announced and not announced "
        f"alternately in one worker (after {WARMUP} warm-ups); `own time` is measured inside the handler.",
    )
    results: dict[str, dict[str, Any]] = {}
    for condition, url in (("up", endpoint), ("slow", endpoint), ("down", _closed_port())):
        if budget.expired() and results:
            warnings.append("announce: time budget spent before the collector-down run")
            break
        progress(f"announce: collector {condition}, {invocations} invocations each way")
        try:
            results[condition] = run_worker(condition, url, invocations)
        except ChildFailed as exc:
            warnings.append(f"FAILED announce {condition}: {exc}")
            return Section("Start announcement", "failed", notes=[str(exc)])
    up = results.get("up")
    if up is not None:
        for q in (50.0, 95.0):
            row = Row(f"invocation p{q:.0f}, collector up: announced", "ms", f"not announced p{q:.0f}",
                      _ms(up["off_ns"], q), _ms(up["on_ns"], q))  # fmt: skip
            if q == 50.0:
                row.goal = f"≤ +{UP_GOAL_MS:g} ms"
                row.met = row.value - row.baseline <= UP_GOAL_MS
            section.rows.append(row)
        section.rows.append(Row("handler's own time p50, collector up: announced", "ms", "not announced",
                                _ms(up["own_off_ns"], 50.0), _ms(up["own_on_ns"], 50.0)))  # fmt: skip
        sent = up["stats"].get("announcements_exported", 0)
        superseded = up["stats"].get("announcements_superseded", 0)
        if sent + superseded < invocations:
            warnings.append(f"announce: only {sent} announcements were sent and {superseded} superseded of "
                            f"{invocations + WARMUP // 2}")  # fmt: skip
        section.notes.append(
            f"collector up: {sent} announcements sent, {superseded} superseded (the invocation ended before its "
            "announcement went out: its span went instead)."
        )
    slow = results.get("slow")
    if slow is not None:
        row = Row(f"invocation p50, collector up, {SLOW_WAIT_MS} ms handler (announcement sent): announced", "ms",
                  "not announced", _ms(slow["off_ns"], 50.0), _ms(slow["on_ns"], 50.0))  # fmt: skip
        row.goal = f"≤ +{UP_GOAL_MS:g} ms"
        row.met = row.value - row.baseline <= UP_GOAL_MS
        section.rows.append(row)
        section.notes.append(
            f"{SLOW_WAIT_MS} ms handler: {slow['stats'].get('announcements_exported', 0)} announcements sent, "
            f"{slow['stats'].get('announcements_superseded', 0)} superseded."
        )
    down = results.get("down")
    if down is not None:
        for q in (50.0, 95.0):
            row = Row(f"handler's own time p{q:.0f}, collector down: announced", "ms", f"not announced p{q:.0f}",
                      _ms(down["own_off_ns"], q), _ms(down["own_on_ns"], q))  # fmt: skip
            if q == 50.0:
                row.goal = "nothing measurable"
            section.rows.append(row)
        section.rows.append(Row("invocation p50, collector down: announced", "ms", "not announced",
                                _ms(down["off_ns"], 50.0), _ms(down["on_ns"], 50.0)))  # fmt: skip
        section.notes.append(
            "collector down: the invocation's total includes the end-of-invocation flush, bounded by the flush "
            "budget with or without the announcement."
        )
    section.raw = {c: {k: [x / 1e6 for x in r[k]] for k in ("on_ns", "off_ns", "own_on_ns", "own_off_ns")}
                   | {"stats": r["stats"]} for c, r in results.items()}  # fmt: skip
    return section
