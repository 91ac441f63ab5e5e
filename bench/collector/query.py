"""Query latency with millions of spans stored, against the HTTP round trip as the floor.

Stores are filled once by ``hoptrace bench populate`` (a child process, progress on stderr)
with a fixed seed, and kept under ``bench/out/collector/stores/``: a later run reuses a store
holding exactly the spans that seed and size produce, and fills it again otherwise. Trace ids
and label values are recomputed from the seed (``hoptrace.collector.populate``), so every query
asks for something that exists.

One keep-alive client asks, in turns, ``/healthz`` (the baseline: an HTTP round trip through
the same server), a trace by id, a selective label search (``label.order_id``: one trace's
spans), a common one (``label.customer_id``: every ~10,000th trace, first page of 50) and, every
5th round, a low-cardinality one (``label.tier``: a third of all spans, first page of 50).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.measure import REPO_ROOT, Budget, child_env, percentile, progress
from bench.report import OUT_DIR, Row, Section
from hoptrace.collector.populate import TIERS, SpanMix, customer_id, order_id, trace_id

SEED = 1
STORES = OUT_DIR / "collector" / "stores"
NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
TIER_EVERY = 5  # rounds per low-cardinality label search


def parse_size(text: str) -> int:
    """``100k``, ``1M``, ``10M`` or a plain number of spans."""
    text = text.strip().lower().replace("_", "")
    scale = {"k": 10**3, "m": 10**6}.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    try:
        return int(float(number) * scale)
    except ValueError:
        raise SystemExit(f"--sizes: {text!r} is not a number of spans (write e.g. 100k, 1M, 10M)") from None


def size_name(spans: int) -> str:
    if spans % 10**6 == 0:
        return f"{spans // 10**6}M"
    if spans % 10**3 == 0:
        return f"{spans // 10**3}k"
    return str(spans)


def sqlite_url(spans: int) -> str:
    return f"sqlite:///{STORES / f'sqlite-{spans}.db'}"


def ensure_populated(store_url: str, spans: int, fresh: Callable[[], None]) -> tuple[SpanMix, float | None]:
    """The mix the store holds; populated first (after ``fresh()``) unless it already holds exactly that.

    Returns the mix and the seconds populating took (None when the store was reused).
    """
    from hoptrace.collector.store import open_store

    mix = SpanMix.for_spans(spans, seed=SEED, days=1.0)
    expected = mix.spans
    try:
        store = open_store(store_url)
        try:
            store.migrate()
            held = store.count_spans()
            if held == expected:
                _derive_graph(store)
        finally:
            store.close()
    except Exception:  # a broken or half-made store is made again
        held = -1
    if held == expected:
        progress(f"query: reusing {store_url} ({held:,} spans)")
        return mix, None
    started = time.monotonic()
    cmd = [sys.executable, "-m", "hoptrace.collector.cli", "bench", "populate", "--store", store_url,
           "--spans", str(spans), "--seed", str(SEED), "--days", "1"]  # fmt: skip
    done = None
    if 0 < held < expected:  # an interrupted populate (of this seed, or refused below): continue it
        progress(f"query: resuming the populate of {store_url} at {held:,} of {expected:,} spans; progress follows")
        done = subprocess.run([*cmd, "--resume"], cwd=str(REPO_ROOT), env=child_env(), stdout=subprocess.DEVNULL)
    if done is None or done.returncode != 0:
        progress(f"query: populating {store_url} with {expected:,} spans (found {held:,}); progress follows")
        fresh()
        done = subprocess.run(cmd, cwd=str(REPO_ROOT), env=child_env(), stdout=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"populating {store_url} failed with {done.returncode}")
    seconds = time.monotonic() - started
    (STORES / f"{store_url.rsplit('/', 1)[-1].replace('.db', '')}.json").write_text(
        json.dumps({"store": store_url, "spans": expected, "traces": mix.traces, "seed": SEED, "seconds": seconds})
    )
    return mix, seconds


def _derive_graph(store: Any) -> None:
    """Finish the graph's backlog first, or the collector would derive it while being measured."""
    backlog = getattr(store, "graph_backlog", None)
    behind = backlog() if backlog is not None else 0
    if behind:
        progress(f"query: deriving the graph of {behind:,} spans before measuring")
        store.graph_sync()


def measure(url: str, mix: SpanMix, queries: int, budget: Budget) -> dict[str, list[float]]:
    """Milliseconds per call for each kind of query, asked in turns on one keep-alive connection."""
    host, _, port = url.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    rng = random.Random(SEED)
    samples: dict[str, list[float]] = {"healthz": [], "trace": [], "label_order": [], "label_customer": [],
                                       "label_tier": []}  # fmt: skip
    sizes: dict[str, list[int]] = {"trace": [], "label_order": [], "label_customer": [], "label_tier": []}

    def call(path: str) -> tuple[float, Any]:
        t0 = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        ms = (time.perf_counter() - t0) * 1000
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}: {body[:300]!r}")
        return ms, json.loads(body)

    warm = max(5, queries // 10)
    for n in range(warm + queries):
        if budget.expired():
            break
        i = rng.randrange(mix.traces)
        asked = {
            "healthz": "/healthz",
            "trace": f"/api/v1/traces/{trace_id(mix.seed, i).hex()}",
            "label_order": "/api/v1/spans?" + urlencode({"label.order_id": order_id(mix.seed, i)}),
            "label_customer": "/api/v1/spans?" + urlencode({"label.customer_id": customer_id(i)}),
        }
        if n % TIER_EVERY == 0:  # slow by design (a third of the spans match): fewer rounds
            asked["label_tier"] = "/api/v1/spans?" + urlencode({"label.tier": TIERS[i % len(TIERS)]})
        for kind, path in asked.items():
            ms, answer = call(path)
            if n >= warm:
                samples[kind].append(ms)
                if kind in sizes:
                    sizes[kind].append(len(answer["spans"]))
    conn.close()
    samples.update({f"{k}_spans": [float(v) for v in vs] for k, vs in sizes.items()})
    return samples


def rows(backend: str, size: int, samples: dict[str, list[float]]) -> list[Row]:
    name = f"{NAMES[backend]}, {size_name(size)} spans"
    base = samples["healthz"]
    out = []
    for kind, label, goal_ms in (
        ("trace", "trace fetch", 10.0),
        ("label_order", "label search, order_id", 50.0),
        ("label_customer", "label search, customer_id", 50.0),
        ("label_tier", "label search, tier", 50.0),
    ):
        values = samples[kind]
        spans = samples.get(f"{kind}_spans") or [float("nan")]
        note = f"{sum(spans) / len(spans):.1f} spans per answer"
        out.append(Row(f"{label} p50, {name}", "ms", "/healthz p50", percentile(base, 50), percentile(values, 50),
                       note=note))  # fmt: skip
        p95 = percentile(values, 95)
        out.append(Row(f"{label} p95, {name}", "ms", "/healthz p95", percentile(base, 95), p95,
                       goal=f"< {goal_ms:.0f} ms", met=p95 < goal_ms))  # fmt: skip
    return out


def run_store(backend: str, size: int, store_url: str, fresh: Callable[[], None], queries: int,
              budget: Budget) -> Section:  # fmt: skip
    from .serve import collector

    mix, populate_s = ensure_populated(store_url, size, fresh)
    load_before = f"{os.getloadavg()[0]:.2f}"
    with collector(store_url, f"query-{backend}-{size_name(size)}") as served:
        progress(f"query {backend} {size_name(size)}: {queries} rounds of 4 calls")
        samples = measure(served.url, mix, queries, budget)
    section = Section(
        f"query latency — {NAMES[backend]}, {size_name(size)} spans",
        f"{len(samples['trace'])} rounds on one keep-alive connection to `hoptrace serve`, each: `/healthz` "
        "(baseline), "
        "`GET /api/v1/traces/{id}` of a random stored trace, `GET /api/v1/spans?label.order_id=…` (that trace's "
        "spans), `?label.customer_id=…` (first page of a customer's spans) and every 5th round `?label.tier=…` "
        "(first page of a third of all spans); after a warm-up.",
    )
    section.rows = rows(backend, size, samples)
    how = "reused" if populate_s is None else f"populated in {populate_s:,.0f} s"
    section.notes.append(
        f"store {store_url.split('://', 1)[1] if backend == 'sqlite' else 'database ' + store_url.rsplit('/', 1)[-1]}: "
        f"{mix.spans:,} spans in {mix.traces:,} traces ({how}); load average (1 min) before "
        f"{load_before}, after {os.getloadavg()[0]:.2f}"
    )
    section.raw = samples
    return section


def run(backends: list[str], sizes: list[int], queries: int, budget: Budget, warnings: list[str]) -> list[Section]:
    """One section per backend and size."""
    from .postgres import database, postgres_server

    sections = []
    STORES.mkdir(parents=True, exist_ok=True)
    for size in sizes:
        if "sqlite" in backends:
            path = Path(sqlite_url(size).split(":///", 1)[1])

            def fresh(path: Path = path) -> None:
                for suffix in ("", "-wal", "-shm"):
                    Path(str(path) + suffix).unlink(missing_ok=True)

            sections.append(run_store("sqlite", size, sqlite_url(size), fresh, queries, budget))
        if "postgresql" in backends:
            with postgres_server(keep_in=STORES / "pg") as server:
                name = f"spans_{size}"
                url = database(server, name, fresh=False)

                def recreate(server: str = server, name: str = name) -> None:
                    database(server, name, fresh=True)

                sections.append(run_store("postgresql", size, url, recreate, queries, budget))
        if budget.expired():
            warnings.append(f"query: the time budget ran out after {size_name(size)} spans")
            break
    return sections
