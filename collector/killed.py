"""Invocations that never finished: announced at their start, never ended, made into killed spans.

``KilledPass`` (a ``StepLoop`` of the collector) claims announcements (``announcements.py``) whose
deadline plus a grace period has passed. An invocation whose span is stored by then ended after
all (or was synthesised before a restart): its row is just deleted. Any other becomes its
invocation span — the announced span, ended, status ERROR, marked ``hoptrace.faas.killed`` with
its class — pushed through the normal ingest path (``otlp.normalise``, then the writer, the
collector's one entry point for spans), so the map, transactions, search, function health and
issues see an error like any other. The row is deleted only once that span is committed; a pass
that dies in between leaves the row, and the next finds the span stored and writes nothing again.

Classes, from what the function said before it went silent:

- ``out_of_memory``: its last memory reading was near its configured memory (the share the
  instrumentation reads against, ``NEAR_LIMIT``);
- ``crash``: its timeout watchdog was armed, yet reported nothing: the process died before the
  deadline (a watchdog that sees the deadline ends the span itself, marked ``timeout``);
- ``timeout``: otherwise — no news until past the deadline.

A real end arriving after the kill was synthesised is stored too; reads and the graph keep the
first span of an id (the killed one), so the invocation counts once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from .announcements import ANNOUNCEMENT_ONLY, WATCHDOG, Announcement
from .otlp import Limits, SpanBatch, normalise
from .store import SpanStore, StepLoop
from .store import killed_sql as db

logger = logging.getLogger("hoptrace.collector")

KILLED = "hoptrace.faas.killed"
TIMEOUT, OUT_OF_MEMORY, CRASH = "timeout", "out_of_memory", "crash"
CLASSES = (TIMEOUT, OUT_OF_MEMORY, CRASH)
NEAR_LIMIT = 0.85  # as the instrumentation's announce.NEAR_LIMIT
KILLED_LOCK = 0x686F706B696C6C  # replicas sharing a PostgreSQL store take turns claiming
STEP_ROWS = 200
RECLAIM_S = 60.0  # a row claimed this long ago by a pass that never finished is claimed again
MIB = 1024 * 1024


def classify(row: Announcement, watchdog: bool) -> str:
    """The class of a killed invocation (see the module docstring)."""
    if row.max_memory > 0 and row.rss >= NEAR_LIMIT * row.max_memory:
        return OUT_OF_MEMORY
    return CRASH if watchdog else TIMEOUT


def killed_span(row: Announcement) -> Span:
    """The invocation span of an announcement whose invocation never ended, marked killed."""
    span = Span.FromString(row.data)
    watchdog = False
    kept = []
    for kv in span.attributes:
        if kv.key == WATCHDOG:
            watchdog = kv.value.bool_value
        if kv.key not in ANNOUNCEMENT_ONLY:
            kept.append(kv)
    del span.attributes[:]
    span.attributes.extend(kept)
    cls = classify(row, watchdog)
    if cls == TIMEOUT:
        end = row.deadline_ns
        message = f"killed: timed out after {(row.deadline_ns - row.start_ns) / 1e6:.0f} ms"
        span.attributes.append(KeyValue(key="hoptrace.faas.timeout", value=AnyValue(bool_value=True)))
    elif cls == OUT_OF_MEMORY:
        end = max(row.rss_ns, row.start_ns)
        message = f"killed: out of memory ({row.rss / MIB:.0f} MiB of {row.max_memory / MIB:.0f} MiB in use)"
        span.attributes.append(KeyValue(key="hoptrace.faas.peak_memory", value=AnyValue(int_value=row.rss)))
    else:
        end = max(row.rss_ns, row.start_ns)
        message = "killed: the function's process died before the invocation ended"
    span.end_time_unix_nano = end
    span.attributes.append(KeyValue(key=KILLED, value=AnyValue(string_value=cls)))
    span.attributes.append(KeyValue(key="error.type", value=AnyValue(string_value=cls)))
    span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=message))
    return span


Submit = Callable[[int, SpanBatch], "Future[SpanBatch]"]


class KilledPass:
    """The background step (see the module docstring); ``submit`` is the writer's."""

    def __init__(
        self, store: SpanStore, submit: Submit, grace_s: float = 10.0, limits: Limits | None = None, idle_s: float = 1.0
    ) -> None:
        self.store = store
        self._submit = submit
        self.grace_ns = int(grace_s * 1e9)
        self._limits = limits or Limits()
        self._loop = StepLoop(self.step, "hoptrace-killed", idle_s=idle_s)

    def step(self, now_ns: int | None = None) -> int:
        """Claim expired announcements, synthesise the killed ones, forget them; how many rows."""
        now = time.time_ns() if now_ns is None else now_ns
        if not self.store.run_read(partial(db.any_expired, expired_ns=now - self.grace_ns)):
            return 0  # a reader's look first: the write lock, which ingest needs, only when there is work
        claimed = self.store.run_write(
            lambda sql: db.claim_expired(sql, now - self.grace_ns, now - int(RECLAIM_S * 1e9), now, STEP_ROWS),
            lock=KILLED_LOCK,
        )
        if not claimed:
            return 0
        by_project: dict[int, ExportTraceServiceRequest] = {}
        for project_id, row in claimed:
            if self.store.run_read(partial(db.span_stored, project_id=project_id, trace_id=row.trace_id,
                                           span_id=row.span_id)):  # fmt: skip
                continue  # it ended after all, or was synthesised before a restart
            request = by_project.setdefault(project_id, ExportTraceServiceRequest())
            resource = self.store.run_read(partial(db.resource_data, project_id=project_id, key=row.resource_key))
            rs = request.resource_spans.add()
            if resource is not None:
                rs.resource.CopyFrom(Resource.FromString(resource))
            rs.scope_spans.add().spans.append(killed_span(row))
        for project_id, request in by_project.items():
            batch = normalise(request, self._limits, now_ns=now)
            if batch.rejected:
                logger.warning("killed invocations refused by ingest: %s", batch.error_message)
            self._submit(project_id, batch).result(timeout=120)  # committed before the rows go
        self.store.run_write(
            lambda sql: db.forget(sql, [(p, row.trace_id, row.span_id) for p, row in claimed]), lock=KILLED_LOCK
        )
        if by_project:
            logger.info("%d invocation(s) never finished: recorded as killed", sum(
                len(r.resource_spans) for r in by_project.values()))  # fmt: skip
        return len(claimed)

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()
