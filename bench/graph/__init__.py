"""``python -m bench graph`` (or ``python -m bench.graph``): the graph's costs, each beside a
baseline measured in the same run.

- correlation: N spans through ``hoptrace.graph.correlator.Correlator`` in export batches
  (keys, matching, membership, rollups, per-trace facts), against generating the same spans
  and touching each once (the floor of any incremental pass);
- ingest and the graph pass, SQLite and a throwaway PostgreSQL server: the store's ``write``
  with its graph queue, against the same writes with nothing queued; then the graph pass over
  the queue, in spans/s against that ingest, and how long its write transactions hold the lock;
- map: ``graph_window`` + the networkx model + JSON for 1 h and 24 h of minute rollups, against
  reading the same rollup rows raw;
- transaction fetch: a transaction with the spans of all its traces, against fetching its entry
  trace alone (the query API's trace fetch).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any
from unittest import mock

from bench.collector.postgres import database, postgres_server
from bench.graph.workload import SPANS_PER_ORDER, batches, orders, to_request
from bench.measure import median, percentile, progress
from bench.report import Report, Row, Section
from hoptrace.collector.otlp import Limits, normalise
from hoptrace.collector.store import postgres as postgres_store
from hoptrace.collector.store import sqlite as sqlite_store
from hoptrace.collector.store.graph_sql import GRAPH_STEP_SPANS, ROLLUP_COLUMNS, backlog_rows, to_row
from hoptrace.graph.correlator import Correlator
from hoptrace.graph.rollup import MINUTE_NS, Rollups
from hoptrace.graph.servicemap import ServiceMap

START_NS = (time.time_ns() // MINUTE_NS - 25 * 60) * MINUTE_NS  # a day and an hour ago, on a minute


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--graph-spans", type=int, default=1_000_000, help="spans to correlate (default 1M)")
    group.add_argument("--graph-ingest-spans", type=int, default=60_000, help="spans written through the store")
    group.add_argument(
        "--graph-sections", default="correlation,ingest", help="comma-separated: correlation, ingest (default both)"
    )
    group.add_argument(
        "--graph-stores", default="", help="comma-separated SQLite stores (e.g. bench populate's) to read, read-only: "
        "map of 1 h / 24 h and transaction fetch p95 at their size",
    )  # fmt: skip


def run(args: argparse.Namespace) -> Report:
    quick = bool(getattr(args, "quick", False))
    n_corr = 60_000 if quick else args.graph_spans
    n_ingest = 12_000 if quick else args.graph_ingest_spans
    sections = set(getattr(args, "graph_sections", "correlation,ingest").split(","))
    stores = [p for p in getattr(args, "graph_stores", "").split(",") if p]
    report = Report("graph", config={"correlation_spans": n_corr, "ingest_spans": n_ingest, "quick": quick,
                                     "sections": sorted(sections), "stores": stores})  # fmt: skip
    for path in stores:
        report.sections.append(_big_store(Path(path), repeats=5 if quick else 20))
    if "correlation" in sections:
        report.sections.append(_correlation(n_corr))
    if "ingest" not in sections:
        return report
    with tempfile.TemporaryDirectory(prefix="hoptrace-bench-graph-") as tmp:
        with postgres_server() as server:  # a throwaway server, stopped with this block
            pg_section, pg_store = _ingest(Path(tmp), n_ingest, "postgresql", server)
            pg_store.close()
        report.sections.append(pg_section)
        ingest, store = _ingest(Path(tmp), n_ingest, "sqlite")
        report.sections.append(ingest)
        try:
            report.sections.append(_agreement(store, n_ingest))
            report.sections.append(_transactions(store))
            report.sections.append(_map(store, Path(store.path), repeats=5 if quick else 20))
        finally:
            store.close()
    return report


# -- correlation ------------------------------------------------------------------------------------


def _correlation(n: int) -> Section:
    progress(f"graph: generating {n} spans (baseline pass)")
    started = time.perf_counter()
    seen: dict[tuple[bytes, bytes], int] = {}
    for batch in batches(n, START_NS):
        for s in batch:
            seen[(s.trace_id, s.span_id)] = s.start_ns
    floor = time.perf_counter() - started
    total = len(seen)
    seen.clear()
    progress(f"graph: correlating {total} spans")
    correlator = Correlator()
    started = time.perf_counter()
    in_add = 0.0  # time inside Correlator.add alone: the spans' generation is the workload's, not ours
    cpu = time.process_time()
    hops = 0
    for batch in batches(n, START_NS):
        t0 = time.perf_counter()
        hops += len(correlator.add(batch))
        in_add += time.perf_counter() - t0
    value = time.perf_counter() - started
    cpu = time.process_time() - cpu
    txns = len(correlator.index.members)
    per_million = value * 1_000_000 / total
    add_per_million = in_add * 1_000_000 / total
    return Section(
        "incremental correlation (in memory, one core)",
        f"{total} spans of {total // SPANS_PER_ORDER} orders (API → queue → worker → table → stream; 30 % with "
        "context lost) in export batches of 500, 10 % of batches overtaking their predecessor; seconds for "
        "the whole stream, generation included on both sides; then the time inside Correlator.add alone "
        "(what correlation costs, against the goal).",
        rows=[
            Row(
                f"correlate {total} spans",
                "s",
                "generate + touch each span once",
                floor,
                value,
                note=f"{per_million:.1f} s per 1M, {total / value:,.0f} spans/s, process CPU {cpu:.1f} s",
            ),
            Row(
                "Correlator.add alone",
                "s",
                "generate + touch each span once",
                floor,
                in_add,
                goal="≤ 10 s per 1M spans",
                met=add_per_million <= 10.0,
                note=f"{add_per_million:.1f} s per 1M, {1e6 * in_add / total:.1f} µs per span",
            ),
        ],
        notes=[f"{hops} hops, {txns} transactions ({total // SPANS_PER_ORDER} expected)"],
        raw={
            "spans": total,
            "hops": hops,
            "transactions": txns,
            "seconds": value,
            "floor_seconds": floor,
            "add_seconds": in_add,
            "cpu_seconds": cpu,
        },
    )


# -- ingest through the store ---------------------------------------------------------------------------


INGEST_START_NS = START_NS + 3600 * 10**9  # the ingest run's spans: an hour into the rollups' day


def _requests(n: int) -> list[Any]:
    return [normalise(to_request(b), Limits(max_spans=100_000)) for b in batches(n, INGEST_START_NS)]


def _ingest(tmp: Path, n: int, backend: str, server_url: str = "") -> tuple[Section, Any]:
    """Ingest with and without the graph's queue (ABBA), then the graph pass over what was queued,
    timing its write transactions apart (what ingest waits for while the pass runs)."""
    module: Any = sqlite_store if backend == "sqlite" else postgres_store
    progress(f"graph: encoding {n} spans as OTLP batches")
    timings: dict[str, list[float]] = {"without-graph": [], "with-graph": [], "graph-pass": [], "write-ms": []}
    kept: Any = None
    real_apply = module.apply_backlog

    def timed_apply(*args: Any, **kwargs: Any) -> bool:
        started = time.perf_counter()
        try:
            return bool(real_apply(*args, **kwargs))
        finally:
            timings["write-ms"].append((time.perf_counter() - started) * 1000)

    # ABBA: a machine that speeds up or slows down during the run weighs on both variants.
    for run, variant in enumerate(("without-graph", "with-graph", "with-graph", "without-graph")):
        work = _requests(n)  # fresh batches each time: normalise's output is what the writer gets
        if backend == "sqlite":
            store: Any = sqlite_store.SqliteStore(str(tmp / f"{variant}-{run}.db"))
        else:
            store = postgres_store.PostgresStore(database(server_url, f"graph_{run}", fresh=True))
        store.migrate()
        store._graph.stop()  # measured apart below, not competing with the writes
        queue = (lambda items: []) if variant == "without-graph" else backlog_rows
        with mock.patch.object(module, "backlog_rows", queue):
            progress(f"graph: ingest {variant} ({backend})")
            started = time.perf_counter()
            for b in work:
                store.write([(1, b)])
            timings[variant].append(time.perf_counter() - started)
        if variant == "with-graph":
            progress(f"graph: graph pass over the backlog ({backend})")
            with mock.patch.object(module, "apply_backlog", timed_apply):
                started = time.perf_counter()
                store.graph_sync()
                timings["graph-pass"].append(time.perf_counter() - started)
        if variant == "with-graph" and kept is None:
            kept = store
        else:
            store.close()
    spans = n - n % SPANS_PER_ORDER
    without, queued, derived = (spans / median(timings[k]) for k in ("without-graph", "with-graph", "graph-pass"))
    writes = timings["write-ms"]
    name = "SQLite" if backend == "sqlite" else "PostgreSQL"
    section = Section(
        f"ingest and the graph pass ({name}, durable commits)",
        f"{spans} spans written batch by batch (500 spans per commit) through the store's write, then the graph "
        f"pass over the queued backlog (passes of ~{GRAPH_STEP_SPANS:,} spans: read and derived outside the write "
        "lock, written in one transaction each); spans/s, median of two runs each in ABBA order.",
        rows=[
            Row(
                "ingest spans/s, graph queued",
                "spans/s",
                "ingest spans/s, nothing queued",
                without,
                queued,
                note="what acknowledging costs more",
            ),
            Row(
                "graph pass spans/s",
                "spans/s",
                "ingest spans/s, nothing queued",
                without,
                derived,
                note="how fast the graph catches up; it runs beside ingest",
            ),
        ],
        notes=[
            f"graph pass write transactions: {len(writes)}, p50 {percentile(writes, 50):.0f} ms, "
            f"p95 {percentile(writes, 95):.0f} ms, max {max(writes):.0f} ms (ingest waits at most this long)"
        ],
        raw=timings,
    )
    return section, kept


# -- transaction fetch ----------------------------------------------------------------------------------


def _transactions(store: sqlite_store.SqliteStore) -> Section:
    from hoptrace.collector.store import TransactionQuery

    found = store.search_transactions(1, TransactionQuery(limit=500))
    rng = random.Random(3)
    sample = [rng.choice(found) for _ in range(300)]
    fetch, baseline = [], []
    for t in sample:
        started = time.perf_counter()
        store.trace(1, bytes.fromhex(t.root_trace_id))
        baseline.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        got = store.transaction(1, bytes.fromhex(t.id))
        assert got is not None
        for trace_id in got[0].trace_ids:
            store.trace(1, bytes.fromhex(trace_id))
        fetch.append((time.perf_counter() - started) * 1000)
    p95, base95 = percentile(fetch, 95), percentile(baseline, 95)
    return Section(
        "transaction fetch (SQLite)",
        "300 random transactions of the ingest run: summary, hops and every span of every member trace "
        "(what GET /api/v1/transactions/{id} reads), p95 in ms.",
        rows=[
            Row("transaction fetch p95", "ms", "its entry trace alone, p95", base95, p95, goal="< 10 ms", met=p95 < 10)
        ],
        raw={"fetch_ms": fetch, "trace_ms": baseline},
    )


# -- map windows ----------------------------------------------------------------------------------------


def _fill_rollups(path: Path) -> int:
    """Minute (and hourly) rollups for a whole day: each minute the map of 50 orders (written directly)."""
    sample = Rollups()
    for spans in orders(50, START_NS, seed=9):
        for s in spans:
            sample.add_span(s)
    ten, hour = Rollups(), Rollups()  # what 10 and 60 such minutes merge to, as the store keeps them
    for _ in range(10):
        ten.merge(sample)
    for _ in range(60):
        hour.merge(sample)
    first = START_NS // MINUTE_NS
    rows: dict[str, list[tuple[Any, ...]]] = {"": [], "_10m": [], "_hourly": []}
    node_rows, edge_rows = [], []
    for tier, step, source_rollups in (("", 1, sample), ("_10m", 10, ten), ("_hourly", 60, hour)):
        for minute in range(first, first + 25 * 60, step):
            for (_, node), r in source_rollups.nodes.items():
                node_rows.append((tier, (1, minute, node, *to_row(r))))
            for (_, src, target, kind), r in source_rollups.edges.items():
                edge_rows.append((tier, (1, minute, src, target, kind, *to_row(r))))
    with closing(sqlite3.connect(path)) as conn, conn:
        for tier in rows:
            conn.executemany(
                f"INSERT OR REPLACE INTO node_rollups{tier} (project_id, minute, node, {ROLLUP_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [r for t, r in node_rows if t == tier],
            )
            conn.executemany(
                f"INSERT OR REPLACE INTO edge_rollups{tier} (project_id, minute, source, target, kind,"
                f" {ROLLUP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [r for t, r in edge_rows if t == tier],
            )
    return sum(1 for t, _ in node_rows + edge_rows if t == "")


def _map(store: sqlite_store.SqliteStore, path: Path, repeats: int) -> Section:
    rows = _fill_rollups(path)
    section = Section(
        "service map of a window (SQLite)",
        f"{rows} minute rollup rows (and their ten-minute and hourly merges) over 25 h; map = merge of the "
        "window's rows (whole hours from the hourly rows, whole ten minutes from the ten-minute rows, ragged ends "
        "from the minutes) + networkx model + JSON, "
        f"p95 of {repeats} runs, in ms.",
    )
    end = START_NS + 25 * 3600 * 10**9
    with closing(sqlite3.connect(path)) as raw:
        for label, hours, goal in (("1 h", 1, 100.0), ("24 h", 24, 100.0)):
            start = end - hours * 3600 * 10**9
            built, fetched = [], []
            for _ in range(repeats):
                t0 = time.perf_counter()
                for table in ("edge_rollups", "node_rollups"):  # every minute row of the window, unmerged
                    raw.execute(
                        f"SELECT * FROM {table} WHERE project_id = 1 AND minute >= ? AND minute < ?",
                        (start // MINUTE_NS, end // MINUTE_NS),
                    ).fetchall()
                fetched.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                ServiceMap(*store.graph_window(1, start, end)).to_json()
                built.append((time.perf_counter() - t0) * 1000)
            p95 = percentile(built, 95)
            section.rows.append(Row(f"map of {label}", "ms", "reading its minute rows raw, p95",
                                    percentile(fetched, 95), p95, goal=f"< {goal:.0f} ms", met=p95 < goal))  # fmt: skip
            section.raw[label] = {"map_ms": built, "rows_ms": fetched}
    return section


# -- same results ---------------------------------------------------------------------------------------


def _agreement(store: sqlite_store.SqliteStore, n: int) -> Section:
    """The store's graph pass (SQL, derived in passes beside ingest) against the in-memory
    correlator (the reference) on the same spans: what either optimises must not change results."""
    from hoptrace.collector.store import TransactionQuery

    progress("graph: the same spans through the in-memory correlator, compared with the store")
    correlator = Correlator()
    for b in batches(n, INGEST_START_NS):
        correlator.add(b)
    expected = {t.id: t for t in correlator.transactions()}
    stored = {t.id: t for t in store.search_transactions(1, TransactionQuery(limit=10 * len(expected) + 10))}
    same = sum(1 for tid, t in expected.items() if stored.get(tid) == t)
    hops = sorted(correlator.hops)
    stored_hops = []
    for tid in stored:
        found = store.transaction(1, bytes.fromhex(tid))
        stored_hops += found[1] if found is not None else []
    first = INGEST_START_NS // MINUTE_NS
    window = (first - 1, first + 24 * 60)
    map_same = (
        ServiceMap(*correlator.rollups.window(*window)).to_json()
        == ServiceMap(*store.graph_window(1, window[0] * MINUTE_NS, window[1] * MINUTE_NS)).to_json()
    )
    all_same = same == len(expected) == len(stored) and sorted(stored_hops) == hops and map_same
    return Section(
        "same results: the store's graph pass and the in-memory correlator (SQLite)",
        f"the ingest run's {n} spans also through Correlator in the same export batches; transactions compared "
        "field by field, hops of every transaction, and the map's JSON of the whole window.",
        rows=[
            Row(
                "transactions identical to the correlator's",
                "transactions",
                "transactions the correlator found",
                len(expected),
                same,
                goal="all, and no others",
                met=all_same,
                note=f"store has {len(stored)}; hops {'identical' if sorted(stored_hops) == hops else 'DIFFER'} "
                f"({len(hops)}); map {'identical' if map_same else 'DIFFERS'}",
            )
        ],
        raw={
            "transactions": len(expected),
            "stored": len(stored),
            "identical": same,
            "hops": len(hops),
            "hops_same": sorted(stored_hops) == hops,
            "map_same": map_same,
        },
    )


# -- a big store, read-only -------------------------------------------------------------------------------


class _ReadOnly:
    """``graph_sql.Sql`` on a read-only connection: a populated store (maybe still being filled by
    another process) is only read, never migrated, analysed or written."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)

    def rows(self, sql: str, args: Any) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, args).fetchall()

    def run(self, sql: str, args: Any) -> int:
        raise RuntimeError("read-only")

    def run_many(self, sql: str, rows: Any) -> None:
        raise RuntimeError("read-only")

    def insert(self, table: str, columns: Any, rows: Any) -> None:
        raise RuntimeError("read-only")


def _trace_rows(sql: _ReadOnly, trace_id: bytes) -> list[tuple[Any, ...]]:
    """A trace's spans as ``SqliteStore.trace`` reads them (spans + resources)."""
    return sql.rows(
        "SELECT s.trace_id, s.span_id, s.parent_span_id, s.service_name, s.name, s.kind, s.start_ns, s.end_ns,"
        " s.status, s.data, r.data FROM spans s INDEXED BY spans_by_trace"
        " JOIN resources r ON r.project_id = s.project_id AND r.key = s.resource_key"
        " WHERE s.project_id = ? AND s.trace_id = ? ORDER BY s.start_ns, s.span_id",
        (1, trace_id),
    )


def _big_store(path: Path, repeats: int) -> Section:
    from hoptrace.collector.store.graph_reads import read_rollups, read_transaction
    from hoptrace.collector.store.schema import LATEST

    sql = _ReadOnly(path)
    progress(f"graph: reading {path} (read-only)")
    (version,) = sql.rows("SELECT max(version) FROM schema_version", [])[0]
    if (version or 0) < LATEST:  # read-only: never migrated here, and older tables lack what is read
        raise RuntimeError(
            f"{path} has schema version {version}, this hoptrace reads {LATEST}: migrate a copy first "
            f"(hoptrace serve --store sqlite:///COPY migrates it at start)"
        )
    (spans,) = sql.rows("SELECT count(*) FROM spans WHERE project_id = 1", [])[0]
    (txns,) = sql.rows("SELECT count(*) FROM transactions WHERE project_id = 1", [])[0]
    (last,) = sql.rows("SELECT max(minute) FROM edge_rollups WHERE project_id = 1", [])[0]
    section = Section(
        f"map and transaction fetch with {spans:,} spans stored (SQLite, {path.name})",
        f"a store filled by `hoptrace bench populate` ({spans:,} spans, {txns:,} transactions), opened read-only; "
        "map of the 1 h and 24 h windows ending at its last minute (merge of hourly, ten-minute and minute rollups, "
        f"networkx model, JSON), p95 of {repeats}; transaction fetch (summary, hops, every span of every member trace) "
        "of 300 random transactions, p95.",
    )
    end_minute = int(last) + 1
    for label, hours in (("1 h", 1), ("24 h", 24)):
        start_minute = end_minute - hours * 60
        built, fetched = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for table in ("edge_rollups", "node_rollups"):  # every minute row of the window, unmerged
                sql.rows(f"SELECT * FROM {table} WHERE project_id = 1 AND minute >= ? AND minute < ?",
                         (start_minute, end_minute))  # fmt: skip
            fetched.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            ServiceMap(*read_rollups(sql, 1, start_minute, end_minute)).to_json()
            built.append((time.perf_counter() - t0) * 1000)
        p95 = percentile(built, 95)
        section.rows.append(Row(f"map of {label}", "ms", "reading its minute rows raw, p95", percentile(fetched, 95),
                                p95, goal="< 100 ms", met=p95 < 100))  # fmt: skip
        section.raw[label] = {"map_ms": built, "rows_ms": fetched}
    rng = random.Random(3)
    (top,) = sql.rows("SELECT max(rowid) FROM transactions", [])[0]
    sample: list[bytes] = []
    while len(sample) < 300 and top:
        found = sql.rows("SELECT id FROM transactions WHERE rowid >= ? AND project_id = 1 LIMIT 1",
                         (rng.randint(1, int(top)),))  # fmt: skip
        if found:
            sample.append(bytes(found[0][0]))
    fetch, baseline = [], []
    for txn in sample:
        t0 = time.perf_counter()
        _trace_rows(sql, txn)  # the entry trace alone (a transaction's id is its root trace's)
        baseline.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        got = read_transaction(sql, 1, txn)
        assert got is not None
        for trace_id in got[0].trace_ids:
            _trace_rows(sql, bytes.fromhex(trace_id))
        fetch.append((time.perf_counter() - t0) * 1000)
    if sample:
        p95 = percentile(fetch, 95)
        note = f"p50 {percentile(fetch, 50):.2f} ms"
        section.rows.append(Row("transaction fetch p95", "ms", "its entry trace alone, p95", percentile(baseline, 95),
                                p95, goal="< 10 ms", met=p95 < 10, note=note))  # fmt: skip
        section.raw["fetch_ms"], section.raw["trace_ms"] = fetch, baseline
    sql.conn.close()
    return section
