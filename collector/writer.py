"""The single writer: group commit with a bounded queue.

Requests hand their batch to the writer and wait; the writer thread takes everything queued
(up to a group size) and commits it in one transaction, then wakes every waiting request. A
span is acknowledged only after that commit. When the queue holds too many spans, new
requests are refused at once (the HTTP layer answers 503 with ``Retry-After``), so memory
stays bounded under overload.

Requests hand over their rows made (``SpanBatch``, normalised on the request's worker thread);
``otlp.Parsed`` (decoded, not yet normalised) is accepted too and normalised here. The store
inserts the rows with a few multi-row statements (``sqlite._insert_rows``), so the writer holds
the GIL only between them: SQLite's work and the commit run beside the requests' Python work,
on the other core. (With one ``executemany`` step per row, the writer took the GIL back after
every row and waited behind the normalising threads; normalising moved into the writer then.)

A waiter may give up on its future (a cancelled request task cancels it); the writer still
commits that batch, and nothing a waiter does can stop the writer thread: if it died, every
later request would wait forever and shutdown would drain nothing.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager

from .otlp import Parsed, RequestError, SpanBatch
from .store import SpanStore

logger = logging.getLogger("hoptrace.collector")

# Admission control. A request is refused at once (503 + Retry-After) rather than queued when the
# backlog would take the writer longer than MAX_WAIT_S to commit, at the rate it has been
# committing (exporters time out after ~10 s: a request answered later is resent anyway); small
# backlogs (below MIN_TIMED_SPANS) are always taken, whatever the rate says.
MAX_WAIT_S = 5.0
MIN_TIMED_SPANS = 5000
# Bodies being read and decoded are not in the backlog yet, but hold memory (several times their
# size once parsed): past this many bytes of them, more requests are refused before being read.
MAX_BODY_BYTES_IN_FLIGHT = 64 * 1024 * 1024
MAX_RETRY_AFTER_S = 30


class Overloaded(Exception):
    """The writer is full; retry after ``retry_after_s`` seconds."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"the collector is overloaded; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class ShuttingDown(Exception):
    """The writer no longer accepts work (the collector is stopping)."""


class SpanWriter:
    """Owns all writes to the store; see the module docstring."""

    def __init__(
        self,
        store: SpanStore,
        max_pending_spans: int = 100_000,
        max_group_spans: int = 20_000,
        max_wait_s: float = MAX_WAIT_S,
        max_body_bytes_in_flight: int = MAX_BODY_BYTES_IN_FLIGHT,
    ) -> None:
        self._store = store
        self._max_pending = max_pending_spans
        self._max_group = max_group_spans
        self._max_wait_s = max_wait_s
        self._max_in_flight = max_body_bytes_in_flight
        self._in_flight = 0  # bytes of bodies admitted and not yet handed over (``body_in_flight``)
        self._rate = 0.0  # spans per second of commit, a moving average; 0 before the first commit
        self._queue: deque[tuple[int, SpanBatch | Parsed, int, Future[SpanBatch]]] = deque()
        self._pending_spans = 0
        self._cond = threading.Condition()
        self._closing = False
        self.commits = 0
        self._thread = threading.Thread(target=self._run, name="hoptrace-writer", daemon=True)
        self._thread.start()

    @property
    def pending_spans(self) -> int:
        return self._pending_spans

    @property
    def body_bytes_in_flight(self) -> int:
        return self._in_flight

    def check_room(self) -> None:
        """Raise Overloaded when the backlog is already full, or would take longer than
        ``max_wait_s`` to commit: a request is then refused before its body is decoded, which
        would be work thrown away (and CPU the writer needs), and before it waits."""
        pending = self._pending_spans
        if pending >= self._max_pending:
            raise Overloaded(retry_after_s=self._retry_after(pending))
        if pending >= MIN_TIMED_SPANS and self._rate > 0 and pending / self._rate > self._max_wait_s:
            raise Overloaded(retry_after_s=self._retry_after(pending))

    def _retry_after(self, pending: int) -> int:
        """Seconds until the backlog is likely committed (at the recent rate), at least 1."""
        if self._rate > 0:
            return max(1, min(MAX_RETRY_AFTER_S, math.ceil(pending / self._rate)))
        return 1 + pending // max(1, self._max_group)

    @contextmanager
    def body_in_flight(self, size: int) -> Iterator[_BodyTicket]:
        """Count a request body being read and decoded against ``max_body_bytes_in_flight`` until
        its batch is submitted (or refused); Overloaded when there is no room. ``size`` is what
        the request declared (0 if nothing); the ticket's ``grow`` counts what arrives past it.
        One body is always let in, however large, so that no request is refused for ever."""
        ticket = _BodyTicket(self)
        ticket.grow(size)
        try:
            yield ticket
        finally:
            with self._cond:
                self._in_flight -= ticket.size

    def _reserve(self, size: int) -> None:
        with self._cond:
            if self._in_flight and self._in_flight + size > self._max_in_flight:
                raise Overloaded(retry_after_s=self._retry_after(self._pending_spans))
            self._in_flight += size

    def submit(self, project_id: int, batch: SpanBatch | Parsed) -> Future[SpanBatch]:
        """Queue a batch (or a parsed request, normalised by the writer); the future completes
        with its rows once they are committed, or fails with the error (``RequestError``: the
        request was refused whole)."""
        n = max(1, batch.spans if isinstance(batch, Parsed) else len(batch.spans))
        future: Future[SpanBatch] = Future()
        with self._cond:
            if self._closing:
                raise ShuttingDown("the collector is shutting down")
            if self._pending_spans + n > self._max_pending and self._queue:
                raise Overloaded(retry_after_s=self._retry_after(self._pending_spans))
            self._queue.append((project_id, batch, n, future))
            self._pending_spans += n
            self._cond.notify()
        return future

    def _take_group(self) -> list[tuple[int, SpanBatch | Parsed, int, Future[SpanBatch]]] | None:
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            group = [self._queue.popleft()]
            size = group[0][2]
            while self._queue and size + self._queue[0][2] <= self._max_group:
                item = self._queue.popleft()
                size += item[2]
                group.append(item)
        for _, _, _, future in group:
            # From here on the future cannot be cancelled, so completing it below cannot fail;
            # one cancelled earlier stays cancelled and its batch is written all the same.
            future.set_running_or_notify_cancel()
        return group

    def _run(self) -> None:
        while True:
            group = self._take_group()
            if group is None:
                return
            done: list[tuple[Future[SpanBatch], SpanBatch]] = []
            items: list[tuple[int, SpanBatch]] = []
            for project_id, work, _, future in group:
                try:
                    batch = work.normalise() if isinstance(work, Parsed) else work
                except BaseException as exc:  # RequestError: refused whole; anything else: a bug
                    if not isinstance(exc, RequestError):
                        logger.exception("hoptrace: normalising a request failed")
                    if not future.cancelled():
                        future.set_exception(exc)
                    continue
                done.append((future, batch))
                if batch.spans or batch.announcements or batch.logs:
                    items.append((project_id, batch))
            error: BaseException | None = None
            if items:
                try:
                    started = time.monotonic()
                    self._store.write(items)
                    self._observe(sum(len(b.spans) for _, b in items), time.monotonic() - started)
                    self.commits += 1
                except BaseException as exc:
                    logger.exception("hoptrace: writing %d batch(es) failed", len(items))
                    error = exc
            with self._cond:
                self._pending_spans -= sum(n for _, _, n, _ in group)
            for future, batch in done:
                if future.cancelled():
                    continue  # nobody waits for the answer
                if error is None:
                    future.set_result(batch)
                else:
                    future.set_exception(error)

    def _observe(self, spans: int, seconds: float) -> None:
        """Fold one commit into the moving average of the commit rate."""
        rate = spans / max(seconds, 1e-6)
        self._rate = rate if self._rate == 0 else 0.8 * self._rate + 0.2 * rate

    def close(self, timeout_s: float = 30.0) -> bool:
        """Stop accepting work, commit everything already accepted; True if it all drained in time."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


class _BodyTicket:
    """The bytes one request body holds of the writer's in-flight budget."""

    def __init__(self, writer: SpanWriter) -> None:
        self._writer = writer
        self.size = 0

    def grow(self, size: int) -> None:
        """Count ``size`` more bytes; Overloaded (nothing counted) when they do not fit."""
        if size > 0:
            self._writer._reserve(size)
            self.size += size
