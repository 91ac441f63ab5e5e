"""SQLite backend: the embedded default. WAL, one writer connection, readers on their own.

Durability: ``synchronous=FULL`` so a commit that returned is on disk; the collector's single
writer groups many requests into one transaction, which keeps that affordable.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from hoptrace.graph.hops import Hop
from hoptrace.graph.rollup import MINUTE_NS, EdgeKey, Rollup
from hoptrace.graph.transactions import Transaction

from ..otlp import SpanBatch
from . import (
    GraphPass,
    Project,
    ServiceSummary,
    SpanQuery,
    StoredSpan,
    StoreError,
    TokenGrant,
    TransactionQuery,
    pages_by_term,
)
from .graph_reads import read_last_seen, read_minutes, read_rollups, read_transaction, search_transactions
from .graph_sql import (
    BACKLOG_INSERT,
    GRAPH_STEP_SPANS,
    apply_backlog,
    backfill_hourly,
    backfill_ten_minutes,
    backlog_rows,
    backlog_size,
    prepare_backlog,
    requeue_backlog,
)
from .issues_sql import QUEUE_INSERT, queue_rows
from .killed_sql import UPSERT as ANNOUNCEMENT_UPSERT
from .killed_sql import upsert_rows as announcement_rows
from .logs_sql import insert_logs
from .schema import DEFAULT_PROJECT, GRAPH_RETENTION, HOURLY_ROLLUPS, LATEST, MIGRATIONS, TEN_MINUTE_ROLLUPS
from .terms_sql import DAY_NS, PROJECT_DAYS, batch_days, for_backend, search_days, term_day
from .terms_sql import retention as term_retention

logger = logging.getLogger("hoptrace.collector")

# Planner statistics are refreshed after the 1st, 16th and every ANALYZE_EVERY-th commit,
# sampling ANALYZE_ROWS rows per index (see SqliteStore._analyze).
ANALYZE_EVERY = 256
ANALYZE_ROWS = 1000
T = TypeVar("T")
WRITER_CACHE_KIB = 64 * 1024
WAL_AUTOCHECKPOINT_PAGES = 65_536  # 256 MiB of 4 KiB pages
CHECKPOINT_EVERY_S = 1.0
_SPAN_COLUMNS = (
    "s.trace_id, s.span_id, s.parent_span_id, s.service_name, s.name, s.kind, s.start_ns, s.end_ns, s.status, s.data"
)


class SqliteStore:
    """A SpanStore in one SQLite file."""

    def __init__(self, path: str) -> None:
        self.path = path
        if path != ":memory:":
            parent = Path(path).expanduser().resolve().parent
            if not parent.is_dir():
                raise StoreError(f"cannot open SQLite store {path!r}: the folder {parent} does not exist")
        self._write_lock = threading.Lock()
        self._commits = 0
        self._local = threading.local()
        self._writer = self._connect()
        # The writer's page cache: the term index takes values in random order, and past the
        # default 2 MiB each insert would read its b-tree pages back from the file.
        self._writer.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        # Checkpoints run beside ingest (``_Checkpointer``), not inside the commit that crossed
        # the threshold: this is only the bound on the WAL should that thread fall behind.
        self._writer.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        self._checkpointer = _Checkpointer(self._connect) if path != ":memory:" else None
        self._graph = GraphPass(self.graph_step, "hoptrace-graph-sqlite")

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        parsed = urlparse(url)
        if parsed.scheme != "sqlite" or parsed.netloc not in ("", "localhost"):
            raise StoreError(f"bad SQLite URL {url!r}: write sqlite:///relative.db or sqlite:////absolute/path.db")
        path = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
        if not path:
            raise StoreError(f"bad SQLite URL {url!r}: it names no file (sqlite:///hoptrace.db)")
        return cls(path)

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False, cached_statements=256
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store {self.path!r}: {exc}") from None
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
        return conn

    # -- schema ------------------------------------------------------------------------------

    def migrate(self) -> int:
        with self._write_lock:
            conn = self._writer
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > LATEST:
                raise StoreError(
                    f"the database has schema version {current}, newer than this hoptrace ({LATEST}): upgrade hoptrace"
                )
            for version in range(current + 1, LATEST + 1):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in MIGRATIONS[version - 1]:
                        if for_backend(statement, "sqlite"):
                            conn.execute(statement.format(blob="BLOB", serial="INTEGER"))
                    if version == HOURLY_ROLLUPS:
                        backfill_hourly(_Sql(conn))
                    if version == TEN_MINUTE_ROLLUPS:
                        backfill_ten_minutes(_Sql(conn))
                    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            if conn.execute("SELECT count(*) FROM projects").fetchone()[0] == 0:
                conn.execute("INSERT INTO projects (name, created_ns) VALUES (?, ?)", (DEFAULT_PROJECT, time.time_ns()))
            self._analyze()  # a store filled before statistics were kept gets them now
            return LATEST

    # -- ingest ------------------------------------------------------------------------------

    def write(self, items: list[tuple[int, SpanBatch]]) -> None:
        # Rows are flattened into the parameter lists of multi-row INSERTs (``_insert_rows``).
        resources: list[Any] = []
        spans: list[Any] = []
        terms: list[Any] = []
        links: list[Any] = []
        for project_id, batch in items:
            for r in batch.resources.values():
                resources += (project_id, r.key, r.service_name, r.data)
            for s in batch.spans:
                spans += (project_id, s.trace_id, s.span_id, s.parent_span_id, s.resource_key, s.service_name,
                          s.name, s.kind, s.start_ns, s.end_ns, s.end_ns - s.start_ns, s.status, s.data)  # fmt: skip
            for t in batch.terms:
                terms += (project_id, t.start_ns // DAY_NS, t.value, t.key, t.start_ns, t.span_id, t.trace_id)
            if batch.links:
                starts = {(s.trace_id, s.span_id): s.start_ns for s in batch.spans}
                for k in batch.links:
                    links += (project_id, k.trace_id, k.span_id, k.linked_trace_id, k.linked_span_id,
                              starts.get((k.trace_id, k.span_id), 0))  # fmt: skip
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                _insert_rows(conn, _INSERT_RESOURCES, 4, resources)
                _insert_rows(conn, _INSERT_SPANS, 13, spans)
                _insert_rows(conn, _INSERT_TERMS, 7, terms)
                conn.executemany(_INSERT_DAYS, batch_days(list(zip(terms[::7], terms[1::7]))))
                _insert_rows(conn, _INSERT_LINKS, 6, links)
                conn.executemany(BACKLOG_INSERT, backlog_rows(items))  # queued for the graph, durably
                conn.executemany(QUEUE_INSERT, queue_rows(items))  # error spans queued for issues
                conn.executemany(ANNOUNCEMENT_UPSERT, announcement_rows(items))  # invocations started
                for project_id, batch in items:
                    if batch.logs:  # /v1/logs requests, in the same group commit
                        insert_logs(_Sql(conn), project_id, batch.logs)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._commits += 1
            if self._commits in (1, 16) or self._commits % ANALYZE_EVERY == 0:
                self._analyze()
        self._graph.wake()
        if self._checkpointer is not None:
            self._checkpointer.start()

    def _analyze(self) -> None:
        """Refresh the planner's statistics (sampled: milliseconds at any size).

        Without them SQLite takes ``(project_id, …)`` indexes for lookups by trace: the primary
        key of transaction_members for "transactions of this trace", hops_by_to for "hops from this
        trace", each a scan of the whole project, so ingest slowed down as the store grew (from
        ~2,000 to ~400 spans/s by 300,000 spans; 3.1× faster there with them). The writer's connection, which runs those
        lookups, uses the new statistics at once; readers opened afterwards load them too.
        """
        self._writer.execute(f"PRAGMA analysis_limit={ANALYZE_ROWS}")
        self._writer.execute("ANALYZE")

    # -- queries -----------------------------------------------------------------------------

    def trace(self, project_id: int, trace_id: bytes) -> list[StoredSpan]:
        rows = (
            self._reader()
            .execute(
                # INDEXED BY: without statistics SQLite walks spans_by_start for the ORDER BY,
                # a scan of the project's spans (1 s at a million), instead of the trace's few.
                f"SELECT {_SPAN_COLUMNS}, r.data FROM spans s INDEXED BY spans_by_trace"
                " JOIN resources r ON r.project_id = s.project_id AND r.key = s.resource_key"
                " WHERE s.project_id = ? AND s.trace_id = ? ORDER BY s.start_ns, s.span_id",
                (project_id, trace_id),
            )
            .fetchall()
        )
        return _dedupe([StoredSpan(*row) for row in rows])

    def search_spans(self, project_id: int, query: SpanQuery) -> list[StoredSpan]:
        if pages_by_term(query):
            return self._search_by_term(project_id, query)
        where = ["s.project_id = ?"]
        args: list[Any]
        joins = ""
        args = []
        for i, (key, value) in enumerate(query.terms):
            # DISTINCT: a value held under two keys (any-key search) still matches the span once.
            joins += (
                " JOIN (SELECT DISTINCT trace_id, span_id FROM span_terms WHERE project_id = ?"
                f" AND day IN ({PROJECT_DAYS.format(mark='?')}) AND value = ?"
                + (" AND key = ?" if key is not None else "")
                + f") t{i} ON t{i}.trace_id = s.trace_id AND t{i}.span_id = s.span_id"
            )
            args += [project_id, project_id, value] + ([key] if key is not None else [])
        args.append(project_id)
        for column, op, bound in (
            ("s.start_ns", ">=", query.start_ns),
            ("s.start_ns", "<", query.end_ns),
            ("s.service_name", "=", query.service),
            ("s.name", "=", query.name),
            ("s.status", "=", query.status),
            ("s.duration_ns", ">=", query.min_duration_ns),
            ("s.duration_ns", "<=", query.max_duration_ns),
        ):
            if bound is not None:
                where.append(f"{column} {op} ?")
                args.append(bound)
        if query.before is not None:
            where.append("(s.start_ns < ? OR (s.start_ns = ? AND s.span_id < ?))")
            args.extend([query.before[0], query.before[0], query.before[1]])
        sql = (
            f"SELECT {_SPAN_COLUMNS}, r.data FROM spans s{joins}"
            " JOIN resources r ON r.project_id = s.project_id AND r.key = s.resource_key"
            f" WHERE {' AND '.join(where)} ORDER BY s.start_ns DESC, s.span_id DESC LIMIT ?"
        )
        args.append(query.limit)
        return [StoredSpan(*row) for row in self._reader().execute(sql, args).fetchall()]

    def _search_by_term(self, project_id: int, query: SpanQuery) -> list[StoredSpan]:
        """One keyed term and nothing but a time window: the page is read off the term index in
        order, day by day newest first until it is full, then its spans are fetched: a value that
        a third of all spans hold costs no more than a rare one."""
        ((key, value),) = query.terms
        where = ["project_id = ?", "day = ?", "value = ?", "key = ?"]
        if query.start_ns is not None:
            where.append("start_ns >= ?")
        if query.end_ns is not None:
            where.append("start_ns < ?")
        if query.before is not None:
            where.append("start_ns <= ? AND (start_ns < ? OR span_id < ?)")  # bounds the index range
        sql = (
            f"SELECT {_SPAN_COLUMNS}, r.data FROM"
            f" (SELECT DISTINCT trace_id, span_id, start_ns FROM span_terms"
            f" WHERE {' AND '.join(where)} ORDER BY start_ns DESC, span_id DESC, trace_id DESC LIMIT ?) t"
            " JOIN spans s INDEXED BY spans_by_trace"
            " ON s.project_id = ? AND s.trace_id = t.trace_id AND s.span_id = t.span_id AND s.start_ns = t.start_ns"
            " JOIN resources r ON r.project_id = s.project_id AND r.key = s.resource_key"
            " ORDER BY s.start_ns DESC, s.span_id DESC LIMIT ?"
        )
        reader = self._reader()
        known = [int(d) for (d,) in reader.execute(PROJECT_DAYS.format(mark="?"), (project_id,)).fetchall()]
        out: list[StoredSpan] = []
        for day in search_days(known, query.start_ns, query.end_ns, query.before):
            args: list[Any] = [project_id, day, value, key]
            args += [b for b in (query.start_ns, query.end_ns) if b is not None]
            if query.before is not None:
                args += [query.before[0], query.before[0], query.before[1]]
            left = query.limit - len(out)
            args += [left, project_id, left]
            out += [StoredSpan(*row) for row in reader.execute(sql, args).fetchall()]
            if len(out) >= query.limit:
                break
        return out

    def services(self, project_id: int, start_ns: int, end_ns: int) -> list[ServiceSummary]:
        rows = (
            self._reader()
            .execute(
                "SELECT service_name, count(*), sum(status = 2), max(start_ns) FROM spans"
                " WHERE project_id = ? AND start_ns >= ? AND start_ns < ? GROUP BY service_name ORDER BY service_name",
                (project_id, start_ns, end_ns),
            )
            .fetchall()
        )
        return [ServiceSummary(name, int(n), int(errors or 0), int(last)) for name, n, errors, last in rows]

    def delete_before(self, cutoff_ns: int) -> int:
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                deleted = 0
                for (project_id,) in conn.execute("SELECT id FROM projects").fetchall():
                    deleted += conn.execute(
                        "DELETE FROM spans WHERE project_id = ? AND start_ns < ?", (project_id, cutoff_ns)
                    ).rowcount
                    conn.execute(
                        "DELETE FROM span_links WHERE project_id = ? AND start_ns < ?", (project_id, cutoff_ns)
                    )
                    day = term_day(cutoff_ns)
                    for statement, args in zip(term_retention("?"), _term_retention_args(project_id, day, cutoff_ns)):
                        conn.execute(statement, args)
                for statement in GRAPH_RETENTION:
                    named = statement.replace("%(cutoff)s", ":cutoff").replace("%(minute)s", ":minute")
                    conn.execute(named, {"cutoff": cutoff_ns, "minute": cutoff_ns // MINUTE_NS})
                requeue_backlog(_Sql(conn))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return deleted

    # -- graph -------------------------------------------------------------------------------

    def graph_window(
        self, project_id: int, start_ns: int, end_ns: int
    ) -> tuple[dict[str, Rollup], dict[EdgeKey, Rollup]]:
        return read_rollups(_Sql(self._reader()), project_id, start_ns // MINUTE_NS, -(-end_ns // MINUTE_NS))

    def search_transactions(self, project_id: int, query: TransactionQuery) -> list[Transaction]:
        return search_transactions(_Sql(self._reader()), project_id, query)

    def graph_minutes(
        self, project_id: int, start_ns: int, end_ns: int, node: str | None = None, edge: EdgeKey | None = None
    ) -> list[tuple[int, Rollup]]:
        first, last = start_ns // MINUTE_NS, -(-end_ns // MINUTE_NS)
        return read_minutes(_Sql(self._reader()), project_id, first, last, node, edge)

    def graph_last_seen(self, project_id: int, start_ns: int, end_ns: int) -> dict[str, int]:
        first, last = start_ns // MINUTE_NS, -(-end_ns // MINUTE_NS)
        return read_last_seen(_Sql(self._reader()), project_id, first, last)

    def graph_step(self, max_spans: int = GRAPH_STEP_SPANS) -> int:
        """One pass over the graph's backlog (see ``graph_sql``): read and derive on this thread's
        reader, outside the write lock, then write in one short transaction (which ingest waits
        for). Two passes at once (``graph_sync`` beside the background pass): the later finds its
        batches gone and prepares again."""
        while True:
            prepared = prepare_backlog(_Sql(self._reader()), max_spans)
            if prepared is None:
                return 0
            with self._write_lock:
                conn = self._writer
                conn.execute("BEGIN IMMEDIATE")
                try:
                    applied = apply_backlog(_Sql(conn), prepared)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            if applied:
                return prepared.size

    def graph_sync(self) -> int:
        return self._graph.sync()

    def graph_pass_external(self) -> None:
        self._graph.external()

    def graph_backlog(self) -> int:
        return backlog_size(_Sql(self._reader()))

    def transaction(self, project_id: int, transaction_id: bytes) -> tuple[Transaction, list[Hop]] | None:
        return read_transaction(_Sql(self._reader()), project_id, transaction_id)

    # -- projects and tokens -----------------------------------------------------------------

    def create_project(self, name: str) -> Project:
        with self._write_lock:
            try:
                cur = self._writer.execute(
                    "INSERT INTO projects (name, created_ns) VALUES (?, ?)", (name, time.time_ns())
                )
            except sqlite3.IntegrityError:
                raise StoreError(f"a project named {name!r} already exists") from None
            return Project(int(cur.lastrowid or 0), name)

    def project(self, name: str) -> Project | None:
        row = self._reader().execute("SELECT id, name FROM projects WHERE name = ?", (name,)).fetchone()
        return Project(int(row[0]), row[1]) if row else None

    def add_token(self, project_id: int, kind: str, token_hash: str) -> None:
        with self._write_lock:
            self._writer.execute(
                "INSERT INTO tokens (token_hash, project_id, kind, created_ns) VALUES (?, ?, ?, ?)",
                (token_hash, project_id, kind, time.time_ns()),
            )

    def grant(self, token_hash: str) -> TokenGrant | None:
        row = (
            self._reader()
            .execute(
                "SELECT p.id, p.name, t.kind FROM tokens t JOIN projects p ON p.id = t.project_id"
                " WHERE t.token_hash = ?",
                (token_hash,),
            )
            .fetchone()
        )
        return TokenGrant(Project(int(row[0]), row[1]), row[2]) if row else None

    def has_tokens(self) -> bool:
        return self._reader().execute("SELECT 1 FROM tokens LIMIT 1").fetchone() is not None

    def count_spans(self, project_id: int | None = None) -> int:
        if project_id is None:
            row = self._reader().execute("SELECT count(*) FROM spans").fetchone()
        else:
            row = self._reader().execute("SELECT count(*) FROM spans WHERE project_id = ?", (project_id,)).fetchone()
        return int(row[0])

    def run_write(self, work: Callable[[_Sql], T], lock: int | None = None) -> T:
        with self._write_lock:  # one writer: ``lock`` has nothing to add
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(_Sql(conn))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return result

    def run_read(self, work: Callable[[_Sql], T]) -> T:
        return work(_Sql(self._reader()))

    def close(self) -> None:
        self._graph.stop()
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._write_lock:
            self._writer.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()


_INSERT_RESOURCES = "INSERT OR IGNORE INTO resources (project_id, key, service_name, data) VALUES "
_INSERT_SPANS = (
    "INSERT INTO spans (project_id, trace_id, span_id, parent_span_id, resource_key, service_name, name, kind,"
    " start_ns, end_ns, duration_ns, status, data) VALUES "
)
# A term stored already (a span sent twice) is skipped: ON CONFLICT covers the key only (OR IGNORE
# would skip rows breaking NOT NULL too, and a bad row must fail the write).
_INSERT_TERMS = (
    "INSERT INTO span_terms (project_id, day, value, key, start_ns, span_id, trace_id)"
    " VALUES {rows} ON CONFLICT DO NOTHING"
)
_INSERT_DAYS = "INSERT OR IGNORE INTO term_days (project_id, day) VALUES (?, ?)"
_INSERT_LINKS = (
    "INSERT INTO span_links (project_id, trace_id, span_id, linked_trace_id, linked_span_id, start_ns) VALUES "
)
MAX_ROWS_PER_INSERT = 2048


def _insert_rows(conn: sqlite3.Connection, head: str, width: int, flat: list[Any]) -> None:
    """Insert ``flat`` (rows of ``width`` values, end to end) with a few multi-row statements.

    ``executemany`` steps SQLite once per row and gives up the GIL around every step; while
    request threads run Python, taking it back costs the writer up to a switch interval each
    time. One statement per 2,048 rows lets SQLite work through them with the GIL released
    (beside the request threads, on the other core). Chunks are powers of two, so a handful of
    statement texts cover every size and stay in the connection's statement cache.
    """
    rows = len(flat) // width
    done = 0
    while done < rows:
        size = min(MAX_ROWS_PER_INSERT, 1 << ((rows - done).bit_length() - 1))
        conn.execute(_values(head, width, size), flat[done * width : (done + size) * width])
        done += size


@functools.lru_cache(maxsize=64)
def _values(head: str, width: int, rows: int) -> str:
    row = "(" + ", ".join("?" * width) + ")"
    values = ", ".join([row] * rows)
    return head.replace("{rows}", values) if "{rows}" in head else head + values


class _Checkpointer:
    """Copies committed WAL pages back into the database file once a second, on a connection and
    thread of its own (PASSIVE: it never blocks the writer, nor waits for readers).

    With the checkpoint inside the writer's commit (SQLite's default past 1,000 WAL pages, which
    one group commit of the search index's random inserts crosses), every acknowledgement also
    waited for the database file's writes and fsync.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="hoptrace-checkpoint", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        conn = self._connect()
        try:
            while not self._stop.wait(CHECKPOINT_EVERY_S):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    logger.exception("hoptrace: a WAL checkpoint failed; the next one retries")
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(30)


def _term_retention_args(project_id: int, day: int, cutoff_ns: int) -> list[tuple[int, ...]]:
    """The parameters of ``terms_sql.retention``'s statements, in order."""
    return [(project_id, day), (project_id, day, cutoff_ns), (project_id, day)]


def _dedupe(spans: list[StoredSpan]) -> list[StoredSpan]:
    """A client that resent a batch whose acknowledgement it lost stored it twice: show it once."""
    seen: set[bytes] = set()
    out = []
    for span in spans:
        if span.span_id not in seen:
            seen.add(span.span_id)
            out.append(span)
    return out


class _Sql:
    """The graph's SQL handle on a SQLite connection (already ``?`` placeholders)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def rows(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, args).fetchall()

    def run(self, sql: str, args: Sequence[Any]) -> int:
        return self._conn.execute(sql, args).rowcount

    def run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._conn.executemany(sql, rows)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._conn.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows
            )
