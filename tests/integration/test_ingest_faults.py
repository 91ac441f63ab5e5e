"""Process-level faults of ``hoptrace serve``: kill -9 mid-ingest, overload, SIGTERM mid-request.

Each test runs the real collector as a subprocess on SQLite and on PostgreSQL, posts batches
with unique trace and span ids from several concurrent clients, and afterwards reads every
batch back through the query API of a restarted collector. The promise under test (DESIGN §6):
a span is acknowledged (HTTP 200) only once committed, so nothing acknowledged is ever lost;
and a request is stored whole or not at all.

The writer is made slow by holding the database's write lock from the test (a real fault: a
backup, a migration, a long transaction of another process), not by a hook in the collector.
"""

from __future__ import annotations

import functools
import os
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.collector_server import CollectorProcess
from tests.otlp_build import request, span
from tests.pg import create_database, drop_database

PROTO = {"Content-Type": "application/x-protobuf"}
RETRYABLE = (429, 503)


# -- stores and their write lock ----------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store of each backend (PostgreSQL: a new database on the session's server)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'faults.db'}"
        return
    server: str = request.getfixturevalue("postgres_url")
    url = create_database(server)
    try:
        yield url
    finally:
        drop_database(server, url)


class WriteLock:
    """Holds the store's write lock so the collector's writer blocks: ``release()`` lets it go.

    SQLite: a ``BEGIN IMMEDIATE`` transaction (the writer waits in its busy timeout, 30 s).
    PostgreSQL: ``LOCK TABLE spans IN SHARE MODE`` (COPY waits; reads still run).
    """

    def __init__(self, store_url: str) -> None:
        self._held: sqlite3.Connection | psycopg.Connection[tuple[object, ...]] | None
        if store_url.startswith("sqlite:///"):
            self._held = sqlite3.connect(store_url[len("sqlite:///") :], isolation_level=None)
            self._held.execute("BEGIN IMMEDIATE")
        else:
            self._held = psycopg.connect(store_url)
            self._held.execute("LOCK TABLE spans IN SHARE MODE")

    def release(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            held.rollback()
            held.close()

    def __enter__(self) -> WriteLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# -- batches with unique ids, and what became of them -------------------------------------------


@functools.cache
def invocation_template(value_bytes: int) -> Span:
    """A Lambda invocation span with 16 attributes (semconv + labels), the realistic ingest mix."""
    pad = "x" * max(0, value_bytes - 12)
    return span(
        "checkout-fn",
        attributes={
            "faas.trigger": "pubsub",
            "faas.invocation_id": "3f2c1e6a-9d1b-4c0e-8f7a-1b2c3d4e5f60",
            "faas.coldstart": False,
            "faas.max_memory": 1024,
            "cloud.region": "eu-west-1",
            "cloud.account.id": "123456789012",
            "cloud.resource_id": "arn:aws:lambda:eu-west-1:123456789012:function:checkout-fn",
            "messaging.system": "aws_sqs",
            "messaging.operation.type": "process",
            "messaging.destination.name": "orders",
            "messaging.message.id": "0f6c1b2e-7a8d-4e3f-9b0a-1c2d3e4f5a6b",
            "aws.request_id": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "hoptrace.label.order_id": "o-20931",
            "hoptrace.label.tenant": "acme",
            "payload.summary": f"order {pad}",
            "payload.items": f"items {pad}",
        },
    )


@dataclass
class Batch:
    """One request's spans: a trace of its own, so it is read back with one trace fetch."""

    trace_id: str
    span_ids: frozenset[str]
    body: bytes = field(repr=False)


def make_batch(spans: int, value_bytes: int = 40) -> Batch:
    trace_id = os.urandom(16)
    req = request([], service="checkout-fn", resource={"faas.name": "checkout-fn", "cloud.provider": "aws"})
    scope = req.resource_spans[0].scope_spans[0]
    ids = []
    for _ in range(spans):
        s = scope.spans.add()
        s.CopyFrom(invocation_template(value_bytes))
        s.trace_id = trace_id
        s.span_id = os.urandom(8)
        ids.append(s.span_id.hex())
    return Batch(trace_id.hex(), frozenset(ids), req.SerializeToString())


@dataclass
class Outcomes:
    """What each client saw, shared by the client threads."""

    acknowledged: list[Batch] = field(default_factory=list)
    refused: list[tuple[Batch, httpx.Response]] = field(default_factory=list)  # 429/503
    failed: list[tuple[Batch, str]] = field(default_factory=list)  # no answer: reset, timeout, …
    other: list[tuple[Batch, int, str]] = field(default_factory=list)  # any other status
    lock: threading.Lock = field(default_factory=threading.Lock)

    def post(self, http: httpx.Client, batch: Batch) -> str:
        """Post one batch and file the outcome: ``ack``, ``refused``, ``failed`` or ``other``."""
        try:
            response = http.post("/v1/traces", content=batch.body, headers=PROTO)
        except httpx.TransportError as exc:
            with self.lock:
                self.failed.append((batch, type(exc).__name__))
            return "failed"
        with self.lock:
            if response.status_code == 200:
                self.acknowledged.append(batch)
                return "ack"
            if response.status_code in RETRYABLE:
                self.refused.append((batch, response))
                return "refused"
            self.other.append((batch, response.status_code, response.text[:200]))
            return "other"

    @property
    def unacknowledged(self) -> list[Batch]:
        """Batches never acknowledged, however often they were sent."""
        acknowledged = {b.trace_id for b in self.acknowledged}
        sent = [b for b, _ in self.refused] + [b for b, _ in self.failed] + [b for b, _, _ in self.other]
        return list({b.trace_id: b for b in sent if b.trace_id not in acknowledged}.values())


def stored_ids(http: httpx.Client, batch: Batch) -> set[str]:
    """The span ids of the batch's trace that the collector has (empty if none)."""
    response = http.get(f"/api/v1/traces/{batch.trace_id}")
    if response.status_code == 404:
        return set()
    assert response.status_code == 200, response.text
    return {s["span_id"] for s in response.json()["spans"]}


def check_after_restart(store_url: str, outcomes: Outcomes, refused_must_be_absent: bool = False) -> int:
    """Restart on the store: every acknowledged span present, every batch whole or absent.

    Returns how many unacknowledged batches were stored anyway (accepted, then the answer lost).
    """
    with CollectorProcess(store_url) as restarted, restarted.client() as http:
        missing = {b.trace_id: len(b.span_ids - stored_ids(http, b)) for b in outcomes.acknowledged}
        lost = {trace: n for trace, n in missing.items() if n}
        acked_spans = sum(len(b.span_ids) for b in outcomes.acknowledged)
        assert not lost, (
            f"{len(lost)} of {len(outcomes.acknowledged)} acknowledged batches lost spans "
            f"({sum(lost.values())} of {acked_spans} acknowledged spans missing): {dict(list(lost.items())[:5])}"
        )
        partial, stored_anyway = [], 0
        for b in outcomes.unacknowledged:
            found = stored_ids(http, b)
            if found and found != b.span_ids:
                partial.append((b.trace_id, len(found), len(b.span_ids)))
            stored_anyway += bool(found)
        assert not partial, f"batches stored in part (trace, stored, sent): {partial[:5]}"
        if refused_must_be_absent:
            never_failed = {b.trace_id for b, _ in outcomes.failed}
            only_refused = [b for b in outcomes.unacknowledged if b.trace_id not in never_failed]
            kept = [b.trace_id for b in only_refused if stored_ids(http, b)]
            assert not kept, f"{len(kept)} of {len(only_refused)} refused (429/503) batches were stored"
        return stored_anyway


def pending_spans(http: httpx.Client) -> int:
    return int(http.get("/healthz").json()["pending_spans"])


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting until {what}")
        time.sleep(0.05)


def port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


# -- kill -9 -------------------------------------------------------------------------------------

KILL_CLIENTS = 4
KILL_MAX_BATCHES = 150  # per client: bounds the load if the kill never comes
KILL_AFTER_ACKS = 60


def test_every_batch_acknowledged_before_a_kill_9_is_there_after_restart(store_url: str) -> None:
    collector = CollectorProcess(store_url).start()
    outcomes = Outcomes()
    enough = threading.Event()

    def client() -> None:
        with collector.client() as http:
            for _ in range(KILL_MAX_BATCHES):
                result = outcomes.post(http, make_batch(50))
                if result == "failed":
                    return  # the collector is gone
                if len(outcomes.acknowledged) >= KILL_AFTER_ACKS:
                    enough.set()
        enough.set()

    try:
        with ThreadPoolExecutor(KILL_CLIENTS) as pool:
            clients = [pool.submit(client) for _ in range(KILL_CLIENTS)]
            assert enough.wait(60), f"only {len(outcomes.acknowledged)} batches acknowledged in 60 s"
            collector.kill()
            for c in clients:
                c.result(60)
    finally:
        collector.kill()
    assert collector.wait(10) == -9
    assert not outcomes.other, f"unexpected answers: {outcomes.other[:3]}"
    assert len(outcomes.failed) >= 1, (
        f"the kill came after the load ended ({len(outcomes.acknowledged)} acknowledged): not mid-stream"
    )
    check_after_restart(store_url, outcomes)


# -- overload ------------------------------------------------------------------------------------

FLOOD_CLIENTS = 8
FLOOD_REQUESTS = 160  # while the store is locked, in all
FLOOD_BATCH_SPANS = 200
FLOOD_VALUE_BYTES = 160  # 2 padded attributes: ~3 kB per span on the wire, ~600 kB per request
MAX_PENDING_SPANS = 1000  # 5 requests' worth
# Once the lock is gone: clients whose requests in flight all fit in the backlog at once
# (4 × 200 spans ≤ MAX_PENDING_SPANS) must never be refused, however slow the store.
AFTER_CLIENTS = 4
AFTER_REQUESTS = 4  # per client
# While the store is locked the backlog may hold MAX_PENDING_SPANS plus the one batch the
# writer took first; the rest of the flood must be refused. The RSS bound: that backlog (≈ 6
# requests, ≈ 4 MB decoded) plus FLOOD_CLIENTS requests read and decoded at once (each ≈ 0.6 MB
# of body and ≈ 2 MB while parsed), ≈ 25 MB, with room for the allocator's slack. Measured on
# this flood: the bounded collector grows by ≈ 6 MB; with the bound lifted (--max-pending-spans
# 1000000000, every request queued behind the lock) it grew by ≈ 85 MB, so the bound fails it.
RSS_GROWTH_BOUND_KIB = 40 * 1024


def test_a_flood_is_refused_with_retry_after_memory_stays_bounded_and_nothing_acknowledged_is_lost(
    store_url: str,
) -> None:
    outcomes = Outcomes()
    with CollectorProcess(store_url, "--max-pending-spans", str(MAX_PENDING_SPANS)) as collector:
        with collector.client() as http:  # warm up: imports, first commit, connections
            for _ in range(3):
                outcomes.post(http, make_batch(FLOOD_BATCH_SPANS, FLOOD_VALUE_BYTES))
        assert len(outcomes.acknowledged) == 3, f"warm-up not acknowledged: {outcomes.refused or outcomes.other}"
        baseline_kib = collector.status_kib("VmHWM")

        sent = iter(range(FLOOD_REQUESTS))
        sent_lock = threading.Lock()

        def flood() -> None:
            # A short timeout, as an exporter has: a request that waits on the locked store is
            # abandoned and the client moves on, so the load is not throttled by the server.
            with collector.client(timeout=5) as http:
                while True:
                    with sent_lock:
                        if next(sent, None) is None:
                            return
                    outcomes.post(http, make_batch(FLOOD_BATCH_SPANS, FLOOD_VALUE_BYTES))

        with WriteLock(store_url) as lock:
            with ThreadPoolExecutor(FLOOD_CLIENTS) as pool:
                for f in [pool.submit(flood) for _ in range(FLOOD_CLIENTS)]:
                    f.result(120)
            peak_kib = collector.status_kib("VmHWM")
            lock.release()

        with collector.client() as http:
            wait_until(lambda: pending_spans(http) == 0, 60, "the writer drained the backlog")

        def steady() -> list[str]:
            with collector.client() as http:
                return [
                    outcomes.post(http, make_batch(FLOOD_BATCH_SPANS, FLOOD_VALUE_BYTES)) for _ in range(AFTER_REQUESTS)
                ]

        with ThreadPoolExecutor(AFTER_CLIENTS) as pool:
            after = [r for f in [pool.submit(steady) for _ in range(AFTER_CLIENTS)] for r in f.result(120)]
        assert collector.stop() == 0

    assert not outcomes.other, f"unexpected answers: {outcomes.other[:3]}"
    refused = [r for _, r in outcomes.refused]
    growth = peak_kib - baseline_kib

    assert len(refused) >= FLOOD_REQUESTS // 2, (
        f"only {len(refused)} of {FLOOD_REQUESTS} requests sent to a locked store were refused "
        f"({len(outcomes.failed)} timed out, {len(outcomes.acknowledged)} acknowledged)"
    )
    bad_retry = [(r.status_code, r.headers.get("retry-after")) for r in refused if not _seconds(r)]
    assert not bad_retry, f"{len(bad_retry)} refusals without a Retry-After in seconds: {bad_retry[:3]}"
    assert growth < RSS_GROWTH_BOUND_KIB, (
        f"peak RSS grew by {growth} KiB under the flood (from {baseline_kib} KiB), over the "
        f"{RSS_GROWTH_BOUND_KIB} KiB bound: the backlog is not bounded"
    )
    assert after == ["ack"] * (AFTER_CLIENTS * AFTER_REQUESTS), (
        f"once the store was free, a load the backlog holds was answered {after}"
    )
    stored_anyway = check_after_restart(store_url, outcomes, refused_must_be_absent=True)
    # Flood requests the collector accepted but whose client gave up: the bounded backlog.
    most = MAX_PENDING_SPANS // FLOOD_BATCH_SPANS + 1
    assert stored_anyway <= most, (
        f"{stored_anyway} abandoned flood requests were accepted while the store was locked; the "
        f"backlog of {MAX_PENDING_SPANS} spans holds at most {most}"
    )


def test_a_full_backlog_refuses_a_request_before_decoding_it(store_url: str) -> None:
    """Refused with 503 and Retry-After while the backlog is full, however bad the body: decoding
    it would be work thrown away. Once the backlog drains, the same body gets its 400."""
    garbage = b"\x0a\xff\xff\xff\xff\x0f not protobuf"
    with CollectorProcess(store_url, "--max-pending-spans", "10") as collector, collector.client() as http:
        assert http.post("/v1/traces", content=garbage, headers=PROTO).status_code == 400
        waiting = make_batch(10)

        def post_waiting() -> httpx.Response:
            with collector.client(timeout=60) as other:
                return other.post("/v1/traces", content=waiting.body, headers=PROTO)

        with WriteLock(store_url) as lock, ThreadPoolExecutor(1) as pool:
            accepted = pool.submit(post_waiting)
            wait_until(lambda: pending_spans(http) >= 10, 30, "the first batch waits for the locked store")
            refused = http.post("/v1/traces", content=garbage, headers=PROTO)
            also_refused = http.post("/v1/traces", content=make_batch(1).body, headers=PROTO)
            lock.release()
            assert accepted.result(60).status_code == 200
        assert (refused.status_code, also_refused.status_code) == (503, 503), (refused.text, also_refused.text)
        assert _seconds(refused) and _seconds(also_refused)
        assert http.post("/v1/traces", content=garbage, headers=PROTO).status_code == 400
        assert stored_ids(http, waiting) == set(waiting.span_ids)


def _seconds(response: httpx.Response) -> bool:
    value = response.headers.get("retry-after", "")
    return value.isdigit() and int(value) >= 1


# -- SIGTERM -------------------------------------------------------------------------------------

IN_FLIGHT = 6
LATE_CLIENTS = 2
LATE_MAX = 100  # per late client
SIGTERM_EXIT_BOUND_S = 60  # generous: the drain here is a few small commits once the lock goes


def test_sigterm_answers_the_requests_in_flight_drains_them_and_exits_0(store_url: str) -> None:
    collector = CollectorProcess(store_url).start()
    outcomes = Outcomes()
    in_flight = [make_batch(50) for _ in range(IN_FLIGHT)]
    stop_late = threading.Event()

    def post_one(batch: Batch) -> str:
        with collector.client(timeout=90) as http:
            return outcomes.post(http, batch)

    def late() -> None:
        # Keeps posting through the shutdown: each request is answered 200 (and stored) or refused.
        with collector.client(timeout=90) as http:
            for _ in range(LATE_MAX):
                if outcomes.post(http, make_batch(20)) == "failed" or stop_late.is_set():
                    return

    try:
        with collector.client() as http:
            assert outcomes.post(http, make_batch(5)) == "ack"
            with WriteLock(store_url) as lock, ThreadPoolExecutor(IN_FLIGHT + LATE_CLIENTS) as pool:
                waiting = [pool.submit(post_one, b) for b in in_flight]
                wait_until(lambda: pending_spans(http) >= 50 * IN_FLIGHT, 30, "every in-flight batch was accepted")
                lates = [pool.submit(late) for _ in range(LATE_CLIENTS)]
                collector.terminate()
                wait_until(lambda: port_closed(collector.port), 30, "the collector stopped listening")
                lock.release()
                try:
                    status: int | None = collector.wait(SIGTERM_EXIT_BOUND_S)
                except subprocess.TimeoutExpired:
                    status = None  # still running: reported below
                stop_late.set()
                answers = [w.result(60) for w in waiting]
                for f in lates:
                    f.result(60)
    finally:
        collector.kill()
    assert status == 0, (
        f"exit status {status} (None: still running after {SIGTERM_EXIT_BOUND_S} s) after SIGTERM:\n"
        f"{collector.output()[-2000:]}"
    )
    assert answers == ["ack"] * IN_FLIGHT, f"requests in flight at SIGTERM were answered {answers}"
    assert not outcomes.other, f"unexpected answers: {outcomes.other[:3]}"
    assert "Traceback" not in collector.output(), collector.output()[-2000:]
    check_after_restart(store_url, outcomes)
