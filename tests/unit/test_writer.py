"""The single writer: group commit, the bounded backlog, and waiters that give up."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from hoptrace.collector.app import Collector
from hoptrace.collector.config import CollectorConfig
from hoptrace.collector.otlp import Limits, SpanBatch, decode
from hoptrace.collector.store import Project
from hoptrace.collector.writer import MAX_RETRY_AFTER_S, MIN_TIMED_SPANS, Overloaded, ShuttingDown, SpanWriter
from tests.otlp_build import request, span


class GatedStore:
    """A store whose writes wait for ``gate``: the test decides when a commit finishes."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.writing = threading.Event()
        self.written: list[list[tuple[int, SpanBatch]]] = []

    def write(self, items: list[tuple[int, SpanBatch]]) -> None:
        self.writing.set()
        if not self.gate.wait(10):
            raise TimeoutError("the test never opened the gate")
        self.written.append(items)


class GatedCollectorStore(GatedStore):
    """Just enough of a SpanStore for a Collector around the gated writes."""

    closed = False

    def migrate(self) -> int:
        return 1

    def project(self, name: str) -> Project:
        return Project(1, name)

    def close(self) -> None:
        self.closed = True


def batch(spans: int = 1) -> SpanBatch:
    return decode(request([span() for _ in range(spans)]).SerializeToString(), None, "application/x-protobuf", Limits())


@pytest.fixture
def store() -> Iterator[GatedStore]:
    s = GatedStore()
    yield s
    s.gate.set()


def test_a_waiter_that_gives_up_does_not_stop_the_writer(store: GatedStore) -> None:
    """A cancelled request (client gone, shutdown timeout) must not kill the writer thread:
    a dead writer would leave every later request waiting forever and drain nothing."""
    writer = SpanWriter(store)  # type: ignore[arg-type]

    async def scenario() -> None:
        abandoned = asyncio.ensure_future(asyncio.wrap_future(writer.submit(1, batch())))
        assert await asyncio.to_thread(store.writing.wait, 10), "the writer never started the first commit"
        abandoned.cancel()
        await asyncio.sleep(0)
        store.gate.set()
        later = writer.submit(1, batch())
        await asyncio.wait_for(asyncio.wrap_future(later), 10)

    # In a thread of its own: a test run earlier may have left an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, scenario()).result(30)
    assert len(store.written) == 2, f"expected both batches committed, got {len(store.written)} commits"
    assert writer.close(10)


def test_a_batch_whose_waiter_left_before_the_commit_is_still_written(store: GatedStore) -> None:
    writer = SpanWriter(store)  # type: ignore[arg-type]
    first = writer.submit(1, batch())
    assert store.writing.wait(10)
    queued = writer.submit(1, batch(3))
    assert queued.cancel(), "a queued future is still cancellable by its waiter"
    store.gate.set()
    first.result(10)
    assert writer.close(10)
    assert sorted(len(b.spans) for group in store.written for _, b in group) == [1, 3]


def test_a_full_backlog_refuses_with_a_retry_delay(store: GatedStore) -> None:
    writer = SpanWriter(store, max_pending_spans=10)  # type: ignore[arg-type]
    writer.submit(1, batch(4))  # taken by the writer, which now waits on the gate
    assert store.writing.wait(10)
    accepted = [writer.submit(1, batch(3)) for _ in range(2)]  # 4 + 6 = 10 pending: still fits
    with pytest.raises(Overloaded) as refused:
        writer.submit(1, batch(1))
    assert refused.value.retry_after_s >= 1
    assert writer.pending_spans == 10
    store.gate.set()
    for future in accepted:
        future.result(10)
    assert writer.pending_spans == 0
    writer.submit(1, batch(1)).result(10)  # room again


def test_a_backlog_that_would_take_too_long_to_commit_is_refused_at_once(store: GatedStore) -> None:
    writer = SpanWriter(store, max_wait_s=5.0)  # type: ignore[arg-type]
    first = writer.submit(1, batch())
    assert store.writing.wait(10)
    time.sleep(0.2)  # the first commit takes at least this long: at most 5 spans/s so far
    store.gate.set()
    first.result(10)
    store.gate.clear()
    writer.check_room()  # nothing pending: room
    writer.submit(1, batch(MIN_TIMED_SPANS))  # taken by the writer, which waits on the gate again
    with pytest.raises(Overloaded) as refused:
        writer.check_room()  # 5,000 spans at <= 5 spans/s: far more than 5 s of waiting
    assert refused.value.retry_after_s == MAX_RETRY_AFTER_S
    store.gate.set()
    assert writer.close(10)


def test_bodies_in_flight_count_against_their_budget_until_handed_over(store: GatedStore) -> None:
    writer = SpanWriter(store, max_body_bytes_in_flight=100)  # type: ignore[arg-type]
    with writer.body_in_flight(60) as first:
        with pytest.raises(Overloaded), writer.body_in_flight(60):
            pass
        with writer.body_in_flight(30) as second:
            with pytest.raises(Overloaded):
                second.grow(20)  # a chunked body past the budget as it arrives
            assert writer.body_bytes_in_flight == 90
        assert first.size == 60 and writer.body_bytes_in_flight == 60
    assert writer.body_bytes_in_flight == 0
    with writer.body_in_flight(500):  # alone, a body larger than the budget is still let in
        assert writer.body_bytes_in_flight == 500
    assert writer.body_bytes_in_flight == 0
    store.gate.set()
    assert writer.close(10)


def test_closing_commits_what_was_accepted_and_refuses_the_rest(store: GatedStore) -> None:
    writer = SpanWriter(store)  # type: ignore[arg-type]
    batches = [batch(2) for _ in range(5)]
    accepted = [writer.submit(1, b) for b in batches]
    closer = threading.Thread(target=writer.close, args=(10,))
    closer.start()
    deadline = time.monotonic() + 10
    while not writer._closing and time.monotonic() < deadline:  # close() has begun
        closer.join(0.01)
    with pytest.raises(ShuttingDown):
        writer.submit(1, batch())
    store.gate.set()
    closer.join(10)
    assert [f.result(0) for f in accepted] == batches  # each answered with its committed rows
    assert sum(len(b.spans) for group in store.written for _, b in group) == 10


def test_a_collector_that_cannot_drain_in_time_says_so_and_leaves_the_store_open() -> None:
    """``hoptrace serve`` exits 1 on this answer: a stop that lost accepted work must not look clean."""
    store = GatedCollectorStore()
    collector = Collector(CollectorConfig(), store)  # type: ignore[arg-type]
    try:
        pending = collector.writer.submit(1, batch())
        assert store.writing.wait(10)
        assert collector.close(timeout_s=0.2) is False
        assert not store.closed, "the store was closed under a commit in progress"
    finally:
        store.gate.set()
    pending.result(10)
    assert collector.close(timeout_s=10) is True
    assert store.closed
