"""``python -m bench scale``: the query API with 10M spans stored (about 1.5M transactions with async hops).

The store is the collector bench's 10M store (``bench/out/collector/stores/sqlite-10000000.db``,
filled by ``hoptrace bench populate --seed 1``) or any ``--scale-store``. A store holding fewer
spans than ``--scale-spans`` (an interrupted populate) is continued for at most
``--scale-populate`` seconds (``populate --resume``, niced), then measured as it is: populate
commits whole traces in order, so the first ``traces_holding(spans)`` traces of the mix are there,
and the section says how many spans it measured.

One keep-alive client asks ``hoptrace serve``, in turns: ``/healthz`` (the baseline), a random
stored trace, its transaction (``/api/v1/transactions/{entry trace id}``: every span of every trace
it crossed), label searches (``order_id``: one trace; ``customer_id``: first page of 50; every
10th round ``tier``: a third of all spans, first page), and every 5th round the service map of the
last hour and of the last 24 hours of the data. p50/p95/p99 of each. Also the database's size per
million spans against the same spans' OTLP protobuf bytes, and the collector's resident memory
after the queries against right after it started.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.measure import REPO_ROOT, Budget, child_env, percentile, progress, tree_memory_mib
from bench.report import Report, Row, Section

SEED = 1  # the collector bench's stores are populated with seed 1
HOUR_NS = 3600 * 10**9
GOALS_MS = {
    "trace": 10.0,
    "transaction": 10.0,
    "label_order": 50.0,
    "label_customer": 50.0,
    "label_tier": 50.0,
    "map_1h": 100.0,
    "map_24h": 100.0,
}
LABELS = {
    "trace": "trace fetch",
    "transaction": "transaction fetch",
    "label_order": "label search, order_id",
    "label_customer": "label search, customer_id (first page)",
    "label_tier": "label search, tier (first page)",
    "map_1h": "map, last 1 h",
    "map_24h": "map, last 24 h",
}
MAP_EVERY = 5
TIER_EVERY = 10


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--scale-spans", type=int, default=10_000_000, help="spans the store should hold (default 10M)")
    group.add_argument(
        "--scale-store", help="store URL to measure (default: the collector bench's SQLite store of --scale-spans)"
    )
    group.add_argument(
        "--scale-populate",
        type=float,
        default=0.0,
        help="seconds to continue an interrupted populate before measuring (default 0: measure what is there)",
    )
    group.add_argument("--scale-queries", type=int, default=300, help="query rounds (default 300)")
    group.add_argument("--scale-budget", type=float, default=1200.0, help="seconds the queries may take")


def run(args: argparse.Namespace) -> Report:
    quick = bool(getattr(args, "quick", False))
    queries = 30 if quick else max(10, args.scale_queries)
    report = Report("scale", config={"quick": quick, "queries": queries})
    with _store(args, quick) as (url, planned):
        report.config.update({"store": url, "planned_spans": planned})
        held = _continue_populate(url, planned, 0.0 if quick else args.scale_populate)
        report.sections.append(measure_store(url, planned, held, queries, Budget(60.0 if quick else args.scale_budget)))
    return report


@contextmanager
def _store(args: argparse.Namespace, quick: bool) -> Iterator[tuple[str, int]]:
    """The store to measure and the spans it should hold; quick: a small fresh one in a temporary dir."""
    if not quick:
        from bench.collector.query import sqlite_url

        yield (args.scale_store or sqlite_url(args.scale_spans)), args.scale_spans
        return
    with tempfile.TemporaryDirectory(prefix="hoptrace-bench-scale-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'scale.db'}"
        _populate(url, 5_000, resume=False, timeout_s=300)
        yield url, 5_000


def _populate(url: str, spans: int, *, resume: bool, timeout_s: float) -> None:
    """``hoptrace bench populate`` (seed 1) as a niced child; stopped with SIGINT at the time limit
    (it commits whole batches, so what it wrote stays usable and a later ``--resume`` continues)."""
    cmd = [
        "nice",
        "-n",
        "10",
        sys.executable,
        "-m",
        "hoptrace.collector.cli",
        "bench",
        "populate",
        "--store",
        url,
        "--spans",
        str(spans),
        "--seed",
        str(SEED),
        "--days",
        "1",
        *(["--resume"] if resume else []),
    ]
    proc = subprocess.Popen(cmd, cwd=str(REPO_ROOT), env=child_env(), stdout=subprocess.DEVNULL)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        progress(f"scale: populate stopped at the time limit ({timeout_s:.0f}s)")
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if proc.returncode not in (0, -signal.SIGINT, 130, 2) and not resume:
        raise RuntimeError(f"populating {url} failed with {proc.returncode}")


def _continue_populate(url: str, planned: int, seconds: float) -> int:
    """Spans the store holds, after continuing an interrupted populate for up to ``seconds``."""
    from hoptrace.collector.populate import SpanMix

    expected = SpanMix.for_spans(planned, seed=SEED, days=1.0).spans
    held = _count(url)
    if held < expected and seconds > 0:
        progress(f"scale: {url} holds {held:,} of {expected:,} spans; continuing populate for up to {seconds:.0f}s")
        _populate(url, planned, resume=True, timeout_s=seconds)
        held = _count(url)
    if held == 0:
        raise RuntimeError(f"{url} holds no spans: fill it with `hoptrace bench populate --seed {SEED}` first")
    return held


def _count(url: str) -> int:
    from hoptrace.collector.store import open_store

    store = open_store(url)
    try:
        store.migrate()
        held = store.count_spans()
        behind = store.graph_backlog()
        if behind:  # or the collector would derive it while being measured
            progress(f"scale: deriving the graph of {behind:,} spans before measuring")
            store.graph_sync()
        return held
    finally:
        store.close()


def _time_range(url: str) -> tuple[int, int]:
    """Earliest and latest span start in the store (the map windows end at the latest)."""
    # One aggregate per query, per project: each is then one step down the (project_id, start_ns) index.
    project = "(SELECT id FROM projects WHERE name = 'default')"
    queries = [f"SELECT {f}(start_ns) FROM spans WHERE project_id = {project}" for f in ("min", "max")]
    if url.startswith("sqlite:"):
        with closing(sqlite3.connect(url.split(":///", 1)[1])) as conn:
            lo, hi = (conn.execute(q).fetchone()[0] for q in queries)
    else:
        import psycopg

        with psycopg.connect(url) as pg:
            lo, hi = (pg.execute(q).fetchone()[0] for q in queries)  # type: ignore[index]
    return int(lo), int(hi)


def _size_bytes(url: str) -> int:
    if url.startswith("sqlite:"):
        path = url.split(":///", 1)[1]
        return sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def _wire_bytes_per_span() -> float:
    """OTLP protobuf bytes per span of the same mix (what clients send for it)."""
    from hoptrace.collector.populate import SpanMix

    mix = SpanMix.for_spans(20_000, seed=SEED, days=1.0)
    sizes = [(len(body), count) for body, count in mix.requests(0, mix.traces, 250)]
    return sum(b for b, _ in sizes) / sum(c for _, c in sizes)


def measure_store(url: str, planned: int, held: int, queries: int, budget: Budget) -> Section:
    from bench.collector.serve import collector
    from hoptrace.collector.populate import TIERS, SpanMix, customer_id, order_id, trace_id, traces_holding

    traces = traces_holding(held) or 0
    if traces <= 0:
        raise RuntimeError(f"{url}: {held:,} spans are not whole traces of the populate mix")
    mix = SpanMix.for_spans(planned, seed=SEED, days=1.0)
    first_ns, last_ns = _time_range(url)
    end_ms = last_ns // 10**6 + 60_000
    windows = {"map_1h": (end_ms - 3_600_000, end_ms), "map_24h": (end_ms - 24 * 3_600_000, end_ms)}
    size = _size_bytes(url)
    wire = _wire_bytes_per_span()
    load_before = os.getloadavg()[0]
    rng = random.Random(SEED)
    kinds = ["healthz", *LABELS]
    samples: dict[str, list[float]] = {k: [] for k in kinds}
    answers: dict[str, list[int]] = {k: [] for k in kinds}
    misses: dict[str, int] = {k: 0 for k in kinds}
    with collector(url, "scale", start_timeout_s=600.0) as served:
        host, _, port = served.url.removeprefix("http://").partition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=120)

        def call(path: str) -> tuple[float, int, Any]:
            t0 = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            ms = (time.perf_counter() - t0) * 1000
            if response.status not in (200, 404):
                raise RuntimeError(f"GET {path} answered {response.status}: {body[:300]!r}")
            return ms, response.status, json.loads(body) if response.status == 200 else None

        call("/healthz")
        rss_start = tree_memory_mib(served.pid)
        warm = max(3, queries // 10)
        progress(f"scale: {held:,} spans ({traces:,} traces) in {url}; {warm} + {queries} rounds")
        for n in range(warm + queries):
            if budget.expired():
                break
            i = rng.randrange(traces)
            tid = trace_id(mix.seed, i).hex()
            asked = {
                "healthz": "/healthz",
                "trace": f"/api/v1/traces/{tid}",
                "transaction": f"/api/v1/transactions/{tid}",
                "label_order": "/api/v1/spans?" + urlencode({"label.order_id": order_id(mix.seed, i)}),
                "label_customer": "/api/v1/spans?" + urlencode({"label.customer_id": customer_id(i)}),
            }
            if n % MAP_EVERY == 0:
                for kind, (lo, hi) in windows.items():
                    asked[kind] = "/api/v1/map?" + urlencode({"from": lo, "to": hi})
            if n % TIER_EVERY == 0:
                asked["label_tier"] = "/api/v1/spans?" + urlencode({"label.tier": TIERS[i % len(TIERS)]})
            for kind, path in asked.items():
                ms, status, answer = call(path)
                if n < warm:
                    continue
                if status != 200:
                    misses[kind] += 1
                    continue
                samples[kind].append(ms)
                answers[kind].append(_answer_size(kind, answer))
            if n == warm:
                progress("scale: warmed up")
        conn.close()
        rss_end = tree_memory_mib(served.pid)
        hwm = tree_memory_mib(served.pid, "VmHWM")
    load_after = os.getloadavg()[0]
    return section(
        url,
        planned,
        held,
        traces,
        samples,
        answers,
        misses,
        size,
        wire,
        rss_start,
        rss_end,
        hwm,
        (first_ns, last_ns),
        (load_before, load_after),
    )


def _answer_size(kind: str, answer: Any) -> int:
    if kind == "healthz":
        return 0
    if kind.startswith("map"):
        return len(answer.get("nodes", []))
    return len(answer.get("spans", []))


def section(
    url: str,
    planned: int,
    held: int,
    traces: int,
    samples: dict[str, list[float]],
    answers: dict[str, list[int]],
    misses: dict[str, int],
    size: int,
    wire: float,
    rss_start: float,
    rss_end: float,
    hwm: float,
    span_range: tuple[int, int],
    load: tuple[float, float],
) -> Section:
    millions = f"{held / 1e6:.1f}M" if held >= 10**6 else f"{held:,}"
    rounds = len(samples["trace"])
    s = Section(
        f"scale — SQLite, {millions} spans stored"
        + ("" if held >= planned * 0.99 else f" (of {planned / 1e6:g}M planned)"),
        f"{rounds} rounds on one keep-alive connection to `hoptrace serve` (after a warm-up), each: `/healthz` "
        "(baseline), a random stored trace, its transaction, label searches by order_id and customer_id, every "
        f"{TIER_EVERY}th round by tier (a third of all spans match), every {MAP_EVERY}th round the map of the last "
        "1 h and 24 h of the data.",
    )
    base = samples["healthz"]
    for kind, label in LABELS.items():
        values = samples[kind]
        if not values:
            continue
        mean = sum(answers[kind]) / len(answers[kind]) if answers[kind] else float("nan")
        what = "nodes" if kind.startswith("map") else "spans"
        for q in (50, 95, 99):
            goal = GOALS_MS[kind] if q == 95 else None
            p = percentile(values, q)
            s.rows.append(
                Row(
                    f"{label} p{q}",
                    "ms",
                    f"/healthz p{q}",
                    percentile(base, q),
                    p,
                    goal=f"< {goal:.0f} ms" if goal else "",
                    met=(p < goal) if goal else None,
                    note=f"{len(values)} samples, {mean:.1f} {what} per answer" if q == 50 else "",
                )
            )
    per_million = size / held * 1e6 / 2**20
    s.rows.append(
        Row(
            "database size per million spans",
            "MiB",
            "OTLP protobuf bytes of the same spans",
            wire * 1e6 / 2**20,
            per_million,
        )
    )
    s.rows.append(
        Row(
            "collector RSS after the queries",
            "MiB",
            "RSS right after start",
            rss_start,
            rss_end,
            note=f"serve and its graph worker; high-water marks summed {hwm:.0f} MiB",
        )
    )
    first, last = span_range
    s.notes += [
        f"store {url.split('://', 1)[1]}: {held:,} spans in {traces:,} traces, {size / 2**30:.2f} GiB, spans from "
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(first / 1e9))} to "
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(last / 1e9))} UTC",
        "answers that were 404 (not counted): " + (", ".join(f"{k} {v}" for k, v in misses.items() if v) or "none"),
        f"load average (1 min) before / after: {load[0]:.2f} / {load[1]:.2f}",
    ]
    s.raw = {
        "samples": samples,
        "answer_sizes": answers,
        "misses": misses,
        "size_bytes": size,
        "wire_bytes_per_span": wire,
        "held": held,
        "planned": planned,
    }
    return s
