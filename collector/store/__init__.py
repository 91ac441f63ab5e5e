"""Storage: one narrow protocol, two real backends (SQLite embedded, PostgreSQL shared).

The rest of the collector talks to ``SpanStore`` only and never knows which backend it has.
``open_store(url)`` picks the backend from the URL scheme.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from hoptrace.graph.hops import Hop
from hoptrace.graph.rollup import EdgeKey, Rollup
from hoptrace.graph.transactions import Transaction

from ..otlp import SpanBatch

if TYPE_CHECKING:
    from .graph_sql import Sql

T = TypeVar("T")

logger = logging.getLogger("hoptrace.collector")


@dataclass(frozen=True)
class StoredSpan:
    """A span as read back: indexed columns, the span's protobuf bytes and its resource's."""

    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes | None
    service_name: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status: int
    data: bytes
    resource: bytes


@dataclass(frozen=True)
class SpanQuery:
    """Filters of a span search; every one optional, all combined with AND."""

    start_ns: int | None = None
    end_ns: int | None = None
    service: str | None = None
    name: str | None = None
    status: int | None = None
    min_duration_ns: int | None = None
    max_duration_ns: int | None = None
    terms: tuple[tuple[str | None, str], ...] = ()  # (key or None for any key, value)
    limit: int = 100
    before: tuple[int, bytes] | None = None  # cursor: (start_ns, span_id) of the last row seen


def pages_by_term(query: SpanQuery) -> bool:
    """Whether a span search is one keyed term with at most a time window and a cursor: its page
    is then read off the term index (``terms_sql``: by day, then value) in order, newest first, and
    only that page's spans are fetched, however many spans hold the value."""
    return (
        len(query.terms) == 1
        and query.terms[0][0] is not None
        and query.service is None
        and query.name is None
        and query.status is None
        and query.min_duration_ns is None
        and query.max_duration_ns is None
    )


@dataclass(frozen=True)
class TransactionQuery:
    """Filters of a transaction search (DESIGN §7); every one optional, all combined with AND."""

    start_ns: int | None = None
    end_ns: int | None = None
    service: str | None = None
    resource: str | None = None  # a node id: "queue:orders", "table:orders", …
    status: str | None = None  # ok, error, incomplete
    min_duration_ns: int | None = None
    max_duration_ns: int | None = None
    labels: tuple[tuple[str, str], ...] = ()  # (label key without "label.", value)
    text: str | None = None  # a transaction or trace id, or any indexed value (message id, request id, …)
    limit: int = 50
    sort: str = "start"  # or "duration"
    ascending: bool = False  # newest (or longest) first by default
    before: tuple[int, bytes] | None = None  # cursor: (sort value, id) of the last row seen, in that order


@dataclass(frozen=True)
class ServiceSummary:
    service_name: str
    spans: int
    errors: int
    last_seen_ns: int


@dataclass(frozen=True)
class Project:
    id: int
    name: str


@dataclass
class TokenGrant:
    project: Project
    kind: str  # "ingest" or "read"


@dataclass
class StoreStats:
    spans: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class StoreError(Exception):
    """The store cannot be opened or used; the message says what to fix."""


class StepLoop:
    """A daemon thread running ``step`` (one bounded transaction; returns how much it did) until
    it returns 0, then waiting ``idle_s`` or a ``wake()``. A failing step is logged and retried a
    second later: background work (the graph pass, issues, notifications) never stops for good.
    The thread starts on the first ``start()`` or ``wake()``."""

    def __init__(self, step: Callable[[], int], name: str, idle_s: float = 0.5) -> None:
        self._step = step
        self._name = name
        self._idle_s = idle_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def wake(self) -> None:
        self.start()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                done = self._step()
            except Exception:
                if self._stop.is_set():
                    return
                logger.exception("hoptrace: %s failed; it retries in a second", self._name)
                self._stop.wait(1.0)
                continue
            if not done:
                self._wake.wait(self._idle_s)
                self._wake.clear()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)


class GraphPass(StepLoop):
    """A store's background pass over the graph's backlog (see ``graph_sql``).

    Started by the first ``wake()`` (a write), so a store that only reads or manages projects
    runs no thread. ``step()`` does one bounded transaction and returns how many spans it took.
    """

    _external = False

    def external(self) -> None:
        """Another process steps this store's backlog (``graph_worker``): writes wake nothing here."""
        self._external = True

    def wake(self) -> None:
        if not self._external:
            super().wake()

    def sync(self) -> int:
        """Process the whole backlog now, in the caller's thread; returns how many spans."""
        total = 0
        while done := self._step():
            total += done
        return total


class SpanStore(Protocol):
    """What the collector needs from a database."""

    def migrate(self) -> int:
        """Bring the schema to the latest version (forward only); returns that version."""
        ...

    def write(self, items: list[tuple[int, SpanBatch]]) -> None:
        """Store batches of several projects in one transaction; returns only once committed."""
        ...

    def trace(self, project_id: int, trace_id: bytes) -> list[StoredSpan]:
        """Every span of a trace, oldest first."""
        ...

    def search_spans(self, project_id: int, query: SpanQuery) -> list[StoredSpan]:
        """Spans matching the query, newest first, at most ``query.limit``."""
        ...

    def services(self, project_id: int, start_ns: int, end_ns: int) -> list[ServiceSummary]:
        """Services seen in the window, with span and error counts."""
        ...

    def delete_before(self, cutoff_ns: int) -> int:
        """Retention: remove spans (and graph facts) from before the cutoff; returns how many spans."""
        ...

    # The graph's facts, derived by the store's background pass from what ``write`` queued (graph_sql).

    def graph_window(
        self, project_id: int, start_ns: int, end_ns: int
    ) -> tuple[dict[str, Rollup], dict[EdgeKey, Rollup]]:
        """Node and edge rollups of the minutes overlapping [start, end), merged."""
        ...

    def search_transactions(self, project_id: int, query: TransactionQuery) -> list[Transaction]:
        """Transactions matching the query in its sort order (newest first), at most ``query.limit``."""
        ...

    def graph_minutes(
        self, project_id: int, start_ns: int, end_ns: int, node: str | None = None, edge: EdgeKey | None = None
    ) -> list[tuple[int, Rollup]]:
        """The minute rollups of one node (or edge) overlapping [start, end), oldest first: (minute, rollup)."""
        ...

    def graph_last_seen(self, project_id: int, start_ns: int, end_ns: int) -> dict[str, int]:
        """Per node with rollups in the minutes overlapping [start, end): its last such minute."""
        ...

    def transaction(self, project_id: int, transaction_id: bytes) -> tuple[Transaction, list[Hop]] | None:
        """A transaction and the hops among its traces."""
        ...

    def graph_sync(self) -> int:
        """Derive the graph facts of everything written so far, now; returns how many spans it took.

        A background pass does this continuously after writes; tests and tools call it to wait.
        """
        ...

    def graph_backlog(self) -> int:
        """Spans written whose graph facts are not derived yet."""
        ...

    def graph_step(self) -> int:
        """One bounded step of the graph pass (derive and write a few queued batches); how many spans."""
        ...

    def graph_pass_external(self) -> None:
        """Leave the background graph pass to another process (``hoptrace serve``'s graph worker):
        writes no longer start one in this process. ``graph_sync`` still works."""
        ...

    def create_project(self, name: str) -> Project: ...

    def project(self, name: str) -> Project | None: ...

    def add_token(self, project_id: int, kind: str, token_hash: str) -> None: ...

    def grant(self, token_hash: str) -> TokenGrant | None:
        """The project and kind a token (by hash) gives access to, if any."""
        ...

    def has_tokens(self) -> bool: ...

    def count_spans(self, project_id: int | None = None) -> int: ...

    # Issues and notifications (issues_sql) run their SQL through these two, on either backend.

    def run_write(self, work: Callable[[Sql], T], lock: int | None = None) -> T:
        """``work`` inside one write transaction, committed when it returns; ``lock``: a key that
        makes such transactions take turns across replicas sharing the database."""
        ...

    def run_read(self, work: Callable[[Sql], T]) -> T:
        """``work`` on a reader."""
        ...

    def close(self) -> None: ...


def open_store(url: str) -> SpanStore:
    """A store for ``sqlite:///path.db`` or ``postgresql://…``; clear errors for anything else."""
    if url.startswith("sqlite:"):
        from .sqlite import SqliteStore

        return SqliteStore.from_url(url)
    if url.startswith(("postgresql:", "postgres:")):
        from .postgres import PostgresStore

        return PostgresStore.from_url(url)
    raise StoreError(
        f"unsupported store URL {url!r}: use sqlite:///path/to/hoptrace.db or postgresql://user@host/dbname"
    )
