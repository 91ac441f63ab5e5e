"""One Lambda invocation in flight: its span, its records' spans, and how it ends.

Lambda runs one invocation at a time per process, so the current one is a module global
(visible to threads the handler starts, unlike a context variable).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from ..carriers import RecordContext
from .triggers import Trigger


class RecordSpan:
    """The ``process`` span of one record; ended at invocation end so the outcome is known."""

    __slots__ = ("end_ns", "error", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.end_ns: int | None = None
        self.error: BaseException | None = None


class Invocation:
    """State of the running invocation."""

    def __init__(self, span: Span, trigger: Trigger, event: Any, start_ns: int) -> None:
        self.span = span
        self.trigger = trigger
        self.event = event
        self.start_ns = start_ns
        self.record_spans: dict[int, RecordSpan] = {}
        self.current_record: RecordSpan | None = None
        self.current_token: object | None = None
        self.finished = False
        self.lock = threading.Lock()

    def start_record_span(self, tracer: trace.Tracer, index: int, rc: RecordContext) -> RecordSpan:
        """Open the process span of record ``index``.

        In a batch it is a child of the record's own producer (so that transaction's timeline
        holds it) linked to this invocation; a single record's invocation already continues the
        producer's trace, so there it is simply the invocation's child.
        """
        rs = RecordSpan(start_process_span(tracer, rc, self.span, self.trigger.is_batch))
        self.record_spans[index] = rs
        return rs

    def enter_record(self, rs: RecordSpan) -> None:
        self.leave_record()
        self.current_record = rs
        self.current_token = otel_context.attach(trace.set_span_in_context(rs.span))

    def leave_record(self, detach: bool = True) -> None:
        """The loop moved on: stamp the end time of the current record and restore the context.

        ``detach=False`` from another thread (the watchdog): a context token can only be
        detached in the thread that attached it.
        """
        rs, token = self.current_record, self.current_token
        self.current_record = None
        if rs is not None and rs.end_ns is None:
            rs.end_ns = time.time_ns()
        if not detach:
            return
        self.current_token = None
        if token is not None:
            try:
                otel_context.detach(token)  # type: ignore[arg-type]
            except Exception:
                pass

    def finish_records(
        self, tracer: trace.Tracer, error: BaseException | None, response: Any, end_ns: int
    ) -> None:
        """End every record span with its outcome; records the handler never iterated get one too.

        Without ``records()`` a batch's records still get a span each (spanning the invocation),
        so every transaction in the batch shows its own record.
        """
        if self.current_record is not None and error is not None:
            self.current_record.error = error
        self.leave_record(detach=False)
        failed = _failed_item_ids(response)
        for index, (_, rc) in enumerate(self.trigger.records):
            rs = self.record_spans.get(index)
            iterated = rs is not None
            if rs is None:
                if not self.trigger.is_batch:
                    continue  # one record, not iterated: the invocation span already tells its story
                rs = self.start_record_span(tracer, index, rc)
                rs.span.set_attribute("hoptrace.record.iterated", False)
            if rs.error is not None:
                rs.span.record_exception(rs.error)
                rs.span.set_status(Status(StatusCode.ERROR, f"{type(rs.error).__name__}: {rs.error}"))
            elif rc.record_id is not None and rc.record_id in failed:
                rs.span.set_attribute("hoptrace.record.failed", True)
                rs.span.set_status(Status(StatusCode.ERROR, "reported in batchItemFailures"))
            elif error is not None and not iterated:
                rs.span.set_status(Status(StatusCode.ERROR, f"invocation failed: {type(error).__name__}"))
            if rs.span.is_recording():
                rs.span.end(end_time=rs.end_ns or end_ns)


def start_process_span(tracer: trace.Tracer, rc: RecordContext, invocation: Span | None, batch: bool) -> Span:
    """A CONSUMER ``process`` span for one record (also used outside Lambda, with no invocation)."""
    links: list[Link] = []
    if rc.parent is not None and (batch or invocation is None):
        ctx = trace.set_span_in_context(trace.NonRecordingSpan(rc.parent))
        if invocation is not None:
            links.append(Link(invocation.get_span_context(), {"hoptrace.link.type": "invocation"}))
    elif invocation is not None:
        ctx = trace.set_span_in_context(invocation)
    else:
        ctx = None
    attributes = dict(rc.attributes)
    if rc.failed_to_extract:
        attributes["hoptrace.propagation.error"] = rc.failed_to_extract
    return tracer.start_span(rc.name, context=ctx, kind=SpanKind.CONSUMER, attributes=attributes, links=links)


def _failed_item_ids(response: Any) -> set[str]:
    """Ids named in a partial batch response (``{"batchItemFailures": [{"itemIdentifier": …}]}``)."""
    if not isinstance(response, Mapping):
        return set()
    items = response.get("batchItemFailures")
    if not isinstance(items, list):
        return set()
    return {str(i.get("itemIdentifier")) for i in items if isinstance(i, Mapping) and i.get("itemIdentifier")}


_current: Invocation | None = None


def current() -> Invocation | None:
    """The invocation running now, if any."""
    return _current


def set_current(inv: Invocation | None) -> None:
    global _current
    _current = inv
