"""Announcements at ingest and the killed invocation made of one: pure parts, no I/O."""

from __future__ import annotations

import time

from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from hoptrace.collector.announcements import Announcement
from hoptrace.collector.killed import classify, killed_span
from hoptrace.collector.otlp import Limits, normalise
from tests.otlp_build import request, span

MIB = 1024 * 1024


def announcement_span(**attributes: object) -> Span:
    attrs = {"faas.trigger": "http", "faas.max_memory": 128 * MIB, "hoptrace.faas.announcement": "start"}
    return span("POST /orders", duration_ms=0, attributes={**attrs, **attributes})


def test_ingest_keeps_announcements_aside_and_stores_spans_as_before() -> None:
    start = announcement_span(**{"hoptrace.faas.deadline_ms": 3000, "hoptrace.faas.memory_rss": 40 * MIB})
    real = span("POST /orders", attributes={"faas.trigger": "http"})
    zero = span("instant", duration_ms=0)  # a zero-length span is still a span
    batch = normalise(request([start, real, zero]), Limits(), now_ns=time.time_ns())
    assert [s.name for s in batch.spans] == ["POST /orders", "instant"]
    (a,) = batch.announcements
    assert (a.trace_id, a.span_id) == (start.trace_id, start.span_id)
    assert a.deadline_ns == start.start_time_unix_nano + 3000 * 1_000_000
    assert (a.max_memory, a.rss) == (128 * MIB, 40 * MIB)
    assert batch.rejected == 0


def row(rss: int = 0, max_memory: int = 128 * MIB, watchdog: bool = False) -> Announcement:
    s = announcement_span(**{"hoptrace.faas.deadline_ms": 3000, "hoptrace.faas.watchdog": watchdog})
    batch = normalise(request([s]), Limits(), now_ns=time.time_ns())
    a = batch.announcements[0]
    return a._replace(rss=rss, rss_ns=a.start_ns + 500_000_000 if rss else 0, max_memory=max_memory)


def test_the_class_comes_from_the_last_memory_reading_and_whether_a_watchdog_was_armed() -> None:
    assert classify(row(rss=120 * MIB), watchdog=True) == "out_of_memory"
    assert classify(row(rss=100 * MIB), watchdog=True) == "crash"  # 78 %: not near the limit
    assert classify(row(rss=100 * MIB), watchdog=False) == "timeout"
    assert classify(row(rss=120 * MIB, max_memory=0), watchdog=False) == "timeout"  # no size known


def test_a_killed_span_is_the_announced_span_ended_as_an_error_with_its_class() -> None:
    r = row(watchdog=False)
    s = killed_span(r)
    attrs = {kv.key: kv.value for kv in s.attributes}
    assert "hoptrace.faas.announcement" not in attrs
    assert attrs["hoptrace.faas.killed"].string_value == "timeout"
    assert attrs["hoptrace.faas.timeout"].bool_value is True
    assert s.status.code == Status.STATUS_CODE_ERROR and "timed out after 3000 ms" in s.status.message
    assert s.end_time_unix_nano == r.deadline_ns and (s.trace_id, s.span_id) == (r.trace_id, r.span_id)
    oom = killed_span(row(rss=126 * MIB, watchdog=True))
    oom_attrs = {kv.key: kv.value for kv in oom.attributes}
    assert oom_attrs["hoptrace.faas.killed"].string_value == "out_of_memory"
    assert oom_attrs["hoptrace.faas.peak_memory"].int_value == 126 * MIB
    assert "126 MiB of 128 MiB" in oom.status.message
    # through ingest again it is a span, not an announcement
    again = normalise(request([oom]), Limits(), now_ns=time.time_ns())
    assert len(again.spans) == 1 and again.spans[0].status == 2 and not again.announcements
