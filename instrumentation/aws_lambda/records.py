"""``hoptrace.records(event)``: iterate a batch with one ``process`` span per record.

Inside a traced invocation the records' contexts were already read when the invocation
started; the span of a record stays current while the loop body runs (so AWS calls made for
that record are its children) and gets its outcome when the invocation ends. Outside Lambda
(a container polling SQS) it accepts a ReceiveMessage response too, and spans end as the loop
moves on.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from .. import setup
from ..carriers import RecordContext
from ..guard import guard
from . import invocation as inv_mod
from .triggers import extract_record


def _raw_records(event: Any) -> list[Any]:
    if isinstance(event, Mapping):
        for key in ("Records", "Messages"):
            value = event.get(key)
            if isinstance(value, list):
                return value
        if "detail-type" in event:
            return [event]
        return []
    if isinstance(event, (list, tuple)):
        return list(event)
    try:
        return list(event)
    except TypeError:
        return []


def _context_of(record: Any) -> RecordContext:
    if isinstance(record, Mapping) and "MessageId" in record and "Body" in record:
        from ..carriers import sqs

        rc: RecordContext = sqs.extract_message(record, None)
        return rc
    return extract_record(record)


def _is_invocation_event(event: Any, invocation_event: Any) -> bool:
    if event is invocation_event:
        return True
    return isinstance(invocation_event, Mapping) and event is invocation_event.get("Records")


def iterate(event: Mapping[str, Any] | Iterable[Any]) -> Iterator[Any]:
    """Yield each record unchanged, inside its own process span (see module docstring)."""
    inv = inv_mod.current()
    st = setup.state()
    if st is None:
        yield from _raw_records(event)
        return
    if inv is not None and inv.trigger.records and _is_invocation_event(event, inv.event):
        for index, (record, rc) in enumerate(inv.trigger.records):
            with guard("records.enter"):
                inv.enter_record(inv.start_record_span(st.tracer, index, rc))
            yield record
        with guard("records.leave"):
            inv.leave_record()
        return
    yield from _iterate_detached(st, event, inv)


def _iterate_detached(st: setup.State, event: Any, inv: inv_mod.Invocation | None) -> Iterator[Any]:
    """Records that are not the invocation's own event: spans end as the loop moves on."""
    for record in _raw_records(event):
        span = token = None
        with guard("records.start"):
            rc = _context_of(record)
            span = inv_mod.start_process_span(st.tracer, rc, inv.span if inv else None, batch=True)
            token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield record
        finally:
            with guard("records.end"):
                if token is not None:
                    otel_context.detach(token)
                if span is not None:
                    span.end(end_time=time.time_ns())
