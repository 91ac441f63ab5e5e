"""``python -m bench issues``: what errors and logs cost ingest, issue 9's performance item.

Per backend (``--backends``), in one run, on fresh stores, in ABCCBA order:

- baseline: the realistic mix of ``hoptrace.collector.populate`` with no failed trace and no logs;
- errors: the same traces, every 20th failed, no logs;
- issues: the same traces, every 20th failed (5 %: its API invocation answers 500 and carries
  an ``exception`` event with a stack trace, one of three exception types per app, so they group
  into a dozen issues) and log records posted to ``/v1/logs`` beside the spans (a WARNING on every
  10th worker invocation, a WARNING and an ERROR on each failed one), tied to their spans.

All run ``hoptrace serve`` with the same set-up: one notification rule (``threshold`` 1,
``interval`` 100, hour buckets) to a webhook channel whose receiver is a local HTTP server of
the run. ``--clients`` closed-loop keep-alive clients post the bodies; a span counts once its
request got 200 (committed). Figures: spans/s acknowledged, and spans/s until the graph pass,
the issue pass and the notification outbox all caught up (everything derived and delivered),
with the collector's CPU per span (its graph worker included). Goal: ≥ 0.9 × baseline.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.measure import Budget, median, progress
from bench.report import OUT_DIR, Report, Row, Section

PROTOBUF = {"Content-Type": "application/x-protobuf"}
NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
WORK = OUT_DIR / "issues"
ERROR_EVERY = 20  # 5 % of traces
LOG_EVERY = 10  # a WARNING on every 10th worker invocation
CATCH_UP_S = 300.0
EXCEPTIONS = ("PaymentDeclined", "InventoryTimeout", "ValidationError")


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--issues-spans", type=int, default=60_000, help="spans per variant run (default 60000)")
    group.add_argument("--issues-rounds", type=int, default=1, help="ABBA rounds per backend (default 1)")


# -- the two mixes ---------------------------------------------------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = data[pos]
        n |= (b & 0x7F) << shift
        pos += 1
        if b < 0x80:
            return n, pos
        shift += 7


def _with_exception(span_field: bytes, i: int, app: str, at_ns: int) -> bytes:
    """A span (as ``SpanMix`` encodes it: a ScopeSpans ``spans`` field) with an exception event added."""
    from hoptrace.collector.populate import _field, _kv

    length, start = _varint(span_field, 1)
    body = span_field[start : start + length]
    kind = EXCEPTIONS[i // ERROR_EVERY % len(EXCEPTIONS)]
    stack = (
        "Traceback (most recent call last):\n"
        f'  File "/var/task/{app}/handler.py", line 42, in handler\n    return place(order)\n'
        f'  File "/var/task/{app}/orders.py", line {100 + EXCEPTIONS.index(kind)}, in place\n'
        f"    raise {kind}(order_id)\n{kind}: order ord-{i} failed"
    )
    event = b"\x09" + at_ns.to_bytes(8, "little") + _field(2, b"exception")
    event += _kv("exception.type", kind, 3) + _kv("exception.message", f"order ord-{i} failed", 3)
    event += _kv("exception.stacktrace", stack, 3)
    return _field(2, body + _field(11, event))


def _span_id(span_field: bytes) -> bytes:
    """The span id of a span as ``SpanMix`` encodes it (trace_id is field 1, span_id field 2, first)."""
    _, start = _varint(span_field, 1)
    return span_field[start + 20 : start + 28]


def _log_records(mix: Any, i: int) -> list[tuple[str, bytes]]:
    """The log records of trace ``i`` (encoded LogRecord messages) with the function that logged
    each, tied to its span: the failed API invocation's, or the worker invocation's."""
    from hoptrace.collector.populate import _field, _kv, trace_id

    failed = mix.failed(i)
    if not failed and i % LOG_EVERY:
        return []
    spans = mix.trace(i)
    service, span = spans[0] if failed else next((name, s) for name, s in spans if name.endswith("-worker"))
    wanted = [(13, "WARNING", "payment gateway slow, retrying")]
    if failed:
        wanted.append((17, "ERROR", f"order ord-{i} failed for good"))
    out = []
    for number, text, message in wanted:
        record = b"\x09" + (mix.trace_start(i) + 5_000_000).to_bytes(8, "little")
        record += b"\x10" + bytes([number]) + _field(3, text.encode()) + _field(5, _field(1, message.encode()))
        record += _kv("code.function", "handler", 6) + _kv("log.logger", "shop", 6)
        record += b"\x4a\x10" + trace_id(mix.seed, i) + b"\x52\x08" + _span_id(span)
        out.append((service, record))
    return out


@dataclass
class Item:
    """One request's spans (an ExportTraceServiceRequest) and its logs (ExportLogsServiceRequest or empty)."""

    spans_body: bytes
    spans: int
    logs_body: bytes = b""
    logs: int = 0


def make_items(spans: int, seed: int, errors: bool, logs: bool, traces_per_request: int = 37) -> list[Item]:
    """The bodies of one variant; the same traces (ids, times) whichever."""
    from hoptrace.collector.populate import SpanMix, _field, _resource

    base = SpanMix.for_spans(spans, seed=seed, days=0.02)
    mix = SpanMix(base.seed, base.traces, base.start_ns, base.end_ns, failed_every=ERROR_EVERY if errors else 0)
    items = []
    for first in range(0, mix.traces, traces_per_request):
        stop = min(mix.traces, first + traces_per_request)
        body, count = next(mix.requests(first, stop, 10**9))
        by_service: dict[str, list[bytes]] = {}
        failed = [i for i in range(first, stop) if mix.failed(i)]
        if failed:
            body = _add_exceptions(mix, first, stop, failed)
        for i in range(first, stop) if logs else ():
            for service, record in _log_records(mix, i):
                by_service.setdefault(service, []).append(record)
        scope = _field(1, _field(1, b"shop"))
        logs_body = b"".join(
            _field(1, _resource(service) + _field(2, scope + b"".join(_field(2, r) for r in records)))
            for service, records in by_service.items()
        )
        items.append(Item(body, count, logs_body, sum(len(r) for r in by_service.values())))
    return items


def _add_exceptions(mix: Any, first: int, stop: int, failed: list[int]) -> bytes:
    """The request body of traces ``first … stop-1`` with an exception event on each failed root span."""
    from hoptrace.collector.populate import _SCOPE, APPS, _field, _resource

    groups: dict[str, list[bytes]] = {}
    for i in range(first, stop):
        for n, (service, span) in enumerate(mix.trace(i)):
            if n == 0 and i in failed:
                span = _with_exception(span, i, APPS[i % len(APPS)], mix.trace_start(i) + 40_000_000)
            groups.setdefault(service, []).append(span)
    return b"".join(_field(1, _resource(s) + _field(2, _SCOPE + b"".join(spans))) for s, spans in groups.items())


# -- the receiver and the load ---------------------------------------------------------------


@contextmanager
def receiver() -> Iterator[tuple[str, list[int]]]:
    """A webhook receiver on loopback answering 200; yields its URL and a one-item call counter."""
    calls = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            calls[0] += 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", calls
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Run:
    spans: int = 0
    logs: int = 0
    errors: int = 0
    first_error: str = ""
    seconds: float = 0.0
    until_caught_up_s: float = 0.0
    cpu_s: float = 0.0
    cpu_all_s: float = 0.0
    issues: int = 0
    notified: int = 0
    logs_stored: int = 0
    load: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.spans / self.seconds if self.seconds else float("nan")

    @property
    def rate_caught_up(self) -> float:
        return self.spans / self.until_caught_up_s if self.until_caught_up_s else float("nan")


def post_all(url: str, items: list[Item], clients: int, run: Run) -> None:
    """Every item from ``clients`` keep-alive connections: its spans, then its logs."""
    port = int(url.rsplit(":", 1)[1])
    lock = threading.Lock()
    next_index = [0]

    def post(conn: http.client.HTTPConnection, path: str, body: bytes) -> bool:
        while True:
            conn.request("POST", path, body=body, headers=PROTOBUF)
            response = conn.getresponse()
            answer = response.read()
            if response.status in (429, 503):
                time.sleep(min(1.0, float(response.getheader("Retry-After") or 1)))
                continue
            if response.status != 200:
                with lock:
                    run.errors += 1
                    run.first_error = run.first_error or f"{path} {response.status}: {answer[:200]!r}"
            return response.status == 200

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while True:
                with lock:
                    i = next_index[0]
                    next_index[0] += 1
                if i >= len(items):
                    return
                item = items[i]
                if post(conn, "/v1/traces", item.spans_body):
                    with lock:
                        run.spans += item.spans
                if item.logs_body and post(conn, "/v1/logs", item.logs_body):
                    with lock:
                        run.logs += item.logs
        finally:
            conn.close()

    threads = [threading.Thread(target=client, name=f"bench-issues-{n}") for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as answer:
        data: dict[str, Any] = json.loads(answer.read())
        return data


def _post_json(url: str, doc: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, json.dumps(doc).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        data: dict[str, Any] = json.loads(answer.read())
        return data


def caught_up(url: str) -> bool:
    graph = _get(url + "/api/v1/graph/status")
    issues = _get(url + "/api/v1/issues/status")
    return bool(graph["backlog_spans"] == 0 and issues["queued_spans"] == 0 and issues["pending_notifications"] == 0)


def one_run(store_url: str, name: str, items: list[Item], clients: int, hook: str, calls: list[int]) -> Run:
    """A fresh collector with the rule set up, the load, then the wait until everything is derived."""
    from bench.collector.serve import collector
    from hoptrace.collector.store import open_store

    run = Run(load=[f"{os.getloadavg()[0]:.2f}"])
    calls[0] = 0
    with collector(store_url, f"issues-{name}") as served:
        channel = _post_json(
            served.url + "/api/v1/channels", {"name": "bench", "type": "webhook", "url": hook, "secret": "bench-secret"}
        )
        _post_json(
            served.url + "/api/v1/rules",
            {"name": "bench", "channel_id": channel["id"], "threshold": 1, "interval": 100, "bucket": "hour"},
        )
        cpu0 = served.cpu_seconds()
        started = time.perf_counter()
        post_all(served.url, items, clients, run)
        run.seconds = time.perf_counter() - started
        run.cpu_s = served.cpu_seconds() - cpu0
        deadline = time.monotonic() + CATCH_UP_S
        while not caught_up(served.url) and time.monotonic() < deadline:
            time.sleep(0.2)
        run.until_caught_up_s = time.perf_counter() - started
        run.cpu_all_s = served.cpu_seconds() - cpu0
        run.issues = len(_get(served.url + "/api/v1/issues?limit=100")["issues"])
        run.notified = calls[0]
    store = open_store(store_url)
    try:
        run.logs_stored = store.run_read(lambda sql: int(sql.rows("SELECT count(*) FROM logs", [])[0][0]))
    finally:
        store.close()
    run.load.append(f"{os.getloadavg()[0]:.2f}")
    return run


# -- the group -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> Report:
    import secrets

    quick = bool(getattr(args, "quick", False))
    spans = 5_000 if quick else max(1000, args.issues_spans)
    rounds = 1 if quick else max(1, args.issues_rounds)
    clients = int(getattr(args, "clients", 4))
    backends = [b.strip() for b in getattr(args, "backends", "sqlite").split(",") if b.strip()]
    report = Report(
        "issues",
        config={
            "spans": spans,
            "rounds": rounds,
            "clients": clients,
            "backends": backends,
            "error_share": 1 / ERROR_EVERY,
            "quick": quick,
        },
    )
    budget = Budget(3600.0)
    seed = secrets.randbits(31)
    variants = {
        "baseline": make_items(spans, seed, errors=False, logs=False),
        "errors": make_items(spans, seed, errors=True, logs=False),
        "issues": make_items(spans, seed, errors=True, logs=True),
    }
    report.sections.append(_in_process(variants, rounds))
    for backend in backends:
        if budget.expired():
            report.warnings.append(f"FAILED issues {backend}: out of time")
            continue
        try:
            runs = _backend(backend, variants, clients, rounds)
        except RuntimeError as exc:
            report.warnings.append(f"FAILED issues {backend}: {exc}")
            continue
        report.sections.append(_section(backend, runs, spans, variants["issues"]))
    return report


def _backend(backend: str, variants: dict[str, list[Item]], clients: int, rounds: int) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = {name: [] for name in variants}
    order = [*variants, *reversed(variants)] * rounds  # ABCCBA: a drifting load weighs on each alike
    with receiver() as (hook, calls), _stores(backend) as fresh:
        for n, variant in enumerate(order):
            progress(f"issues {backend}: run {n + 1}/{len(order)}, {variant}")
            done = one_run(fresh(f"{variant}{n}"), f"{backend}-{variant}{n}", variants[variant], clients, hook, calls)
            if done.errors:
                raise RuntimeError(f"{done.errors} requests failed ({done.first_error})")
            runs[variant].append(done)
            progress(
                f"issues {backend}: {variant}: {done.rate:,.0f} spans/s acknowledged, "
                f"{done.rate_caught_up:,.0f} until caught up, {done.cpu_all_s / done.spans * 1e6:.0f} µs CPU per "
                f"span; {done.issues} issues, {done.notified} notified (load {done.load[0]} → {done.load[1]})"
            )
    return runs


@contextmanager
def _stores(backend: str) -> Iterator[Any]:
    """A factory of fresh store URLs of one backend."""
    if backend == "sqlite":
        WORK.mkdir(parents=True, exist_ok=True)
        for f in WORK.glob("*.db*"):
            f.unlink()
        yield lambda name: f"sqlite:///{WORK / name}.db"
        return
    from bench.collector.postgres import database, postgres_server

    with postgres_server() as server:
        yield lambda name: database(server, name, fresh=True)


def _cpu_per_span(items: list[Item], path: Path) -> dict[str, float]:
    """CPU µs per span of each step the collector takes, in this process on a fresh SQLite store."""
    from hoptrace.collector.logs import _decode
    from hoptrace.collector.notify import IssuePass
    from hoptrace.collector.otlp import Limits, decode
    from hoptrace.collector.store import open_store
    from hoptrace.collector.store.logs_sql import insert_logs

    for f in path.parent.glob(path.name + "*"):
        f.unlink()
    store = open_store(f"sqlite:///{path}")
    try:
        store.migrate()
        store.graph_pass_external()  # derived below, step by step, in this thread
        limits = Limits()
        cpu = dict.fromkeys(("spans", "logs", "graph", "issues"), 0.0)
        t = time.process_time()
        for item in items:
            store.write([(1, decode(item.spans_body, None, PROTOBUF["Content-Type"], limits))])
        cpu["spans"] = time.process_time() - t
        t = time.process_time()
        for item in items:
            if item.logs_body:
                rows = _decode(item.logs_body, "identity", PROTOBUF["Content-Type"], limits).rows
                store.run_write(partial(insert_logs, project_id=1, rows=rows))
        cpu["logs"] = time.process_time() - t
        t = time.process_time()
        store.graph_sync()
        cpu["graph"] = time.process_time() - t
        t = time.process_time()
        issues = IssuePass(store)
        while issues.step():
            pass
        cpu["issues"] = time.process_time() - t
    finally:
        store.close()
    spans = sum(i.spans for i in items)
    return {k: v / spans * 1e6 for k, v in cpu.items()}


def _in_process(variants: dict[str, list[Item]], rounds: int) -> Section:
    """The same work without HTTP, threads or other processes: CPU time, which a loaded machine
    inflates far less than the throughput of a run."""
    WORK.mkdir(parents=True, exist_ok=True)
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for n, variant in enumerate([*variants, *reversed(variants)] * rounds):
        progress(f"issues in-process: {variant} ({n + 1}/{len(variants) * 2 * rounds})")
        samples[variant].append(_cpu_per_span(variants[variant], WORK / "in-process.db"))
    total = {name: median([sum(s.values()) for s in runs]) for name, runs in samples.items()}
    s = Section(
        "errors and logs, in-process CPU per span — SQLite",
        "The bodies of each variant decoded and written through the store (spans; then the log records), the "
        "graph derived and the issue pass run to the end, in one process, CPU time (ABCCBA, medians).",
    )
    for variant, label in VARIANTS.items():
        s.rows.append(Row(f"{label}: write, logs, graph and issues", "µs", "same mix, no errors, no logs",
                          total["baseline"], total[variant], goal="≤ 1.1× baseline",
                          met=total[variant] <= 1.1 * total["baseline"]))  # fmt: skip
    for variant, runs in samples.items():
        steps = {k: median([r[k] for r in runs]) for k in runs[0]}
        s.notes.append(f"{variant}: " + ", ".join(f"{k} {v:.1f} µs" for k, v in steps.items()))
    s.notes.append(f"load average (1 min) after: {os.getloadavg()[0]:.2f}")
    s.raw = samples
    return s


VARIANTS = {
    "errors": "5 % failed traces (exception events, issues, a rule), no logs",
    "issues": "5 % failed traces and their logs",
}


def _section(backend: str, runs: dict[str, list[Run]], spans: int, with_logs: list[Item]) -> Section:
    name = NAMES.get(backend, backend)
    base = runs["baseline"]
    med = lambda rs, f: median([f(r) for r in rs])  # noqa: E731
    logs_posted = sum(i.logs for i in with_logs)
    s = Section(
        f"errors, logs and notifications on ingest — {name}",
        f"~{spans:,} spans of the realistic mix per run posted by closed-loop clients to `hoptrace serve` "
        f"(fresh store each run, ABCCBA order, medians of {len(base)} runs per variant). Baseline: no failed "
        "trace, no logs. Then 5 % of traces failed with an exception event (issue grouping, occurrences, one rule "
        f"notifying a local webhook receiver), and the same with {logs_posted:,} log records to /v1/logs beside "
        "the spans. Health rollups run in every variant.",
    )
    rates = (
        ("acknowledged", "spans/s", lambda r: r.rate, True),
        ("until graph, issues and notifications caught up", "spans/s", lambda r: r.rate_caught_up, True),
        ("collector CPU per span, everything derived", "µs", lambda r: r.cpu_all_s / r.spans * 1e6, False),
    )
    for variant, label in VARIANTS.items():
        for what, unit, figure, goal in rates:
            b, v = med(base, figure), med(runs[variant], figure)
            s.rows.append(
                Row(f"{name}, {label}: {what}", unit, "same mix, no errors, no logs", b, v,
                    goal="≥ 0.9× baseline" if goal else "", met=(v >= 0.9 * b) if goal else None)
            )  # fmt: skip
    last = runs["issues"][-1]
    s.notes.append(
        f"with logs: {last.issues} issues grouped, {last.notified} notifications delivered to the receiver, "
        f"{last.logs_stored:,} of {logs_posted:,} log records stored"
        + ("" if last.logs_stored == logs_posted else " (**MISSING LOG RECORDS**)")
    )
    for variant, rs in runs.items():
        s.notes.append(
            f"{variant} runs: "
            + "; ".join(
                f"{r.rate:,.0f} spans/s acked, {r.rate_caught_up:,.0f} until caught up, "
                f"{r.cpu_all_s / r.spans * 1e6:.0f} µs/span (load {r.load[0]} → {r.load[1]})"
                for r in rs
            )
        )
    s.raw = {k: [r.__dict__ for r in v] for k, v in runs.items()}
    return s
