"""Invocation start announcements, as they arrive: kept aside, not stored as spans.

The instrumentation (``hoptrace.instrumentation.aws_lambda.announce``) sends, as each invocation
starts, an ended copy of its invocation span — same trace and span id, ended at its own start,
marked ``hoptrace.faas.announcement`` — with its deadline and configured memory, and once more
(``"memory"``) when its memory comes near that size. Any OpenTelemetry SDK may send the same.
Ingest keeps these in ``invocation_starts`` (one row per invocation, in the same transaction as
the batch's spans) instead of ``spans``; ``killed.KilledPass`` turns a row whose invocation never
ended by its deadline plus a grace period into the invocation span, marked killed.
"""

from __future__ import annotations

from typing import NamedTuple

from opentelemetry.proto.trace.v1.trace_pb2 import Span

ANNOUNCEMENT = "hoptrace.faas.announcement"
DEADLINE_MS = "hoptrace.faas.deadline_ms"
MEMORY_RSS = "hoptrace.faas.memory_rss"
MEMORY_READ_NS = "hoptrace.faas.memory_read_ns"
WATCHDOG = "hoptrace.faas.watchdog"
ANNOUNCEMENT_ONLY = (ANNOUNCEMENT, MEMORY_READ_NS)  # what a synthesised invocation span leaves out
# With no deadline announced, the longest a Lambda invocation can run (15 minutes).
LONGEST_NS = 15 * 60 * 1_000_000_000


class Announcement(NamedTuple):
    """One announcement as stored (``invocation_starts``); ``data`` is the span as it came."""

    trace_id: bytes
    span_id: bytes
    resource_key: bytes
    service_name: str
    start_ns: int
    deadline_ns: int
    max_memory: int
    rss: int
    rss_ns: int
    data: bytes


def is_announcement(span: Span) -> bool:
    """Whether a span (already known to end at its start) is an announcement, not a span."""
    return any(kv.key == ANNOUNCEMENT for kv in span.attributes)


def announcement(span: Span, resource_key: bytes, service: str) -> Announcement:
    """The row of one announcement."""
    values: dict[str, int] = {}
    for kv in span.attributes:
        if kv.key in (DEADLINE_MS, MEMORY_RSS, MEMORY_READ_NS, "faas.max_memory"):
            v = kv.value
            if v.HasField("int_value"):
                values[kv.key] = v.int_value
            elif v.HasField("double_value"):
                values[kv.key] = int(v.double_value)
    start = span.start_time_unix_nano
    deadline_ms = values.get(DEADLINE_MS)
    deadline = start + deadline_ms * 1_000_000 if deadline_ms is not None and deadline_ms > 0 else start + LONGEST_NS
    rss = max(0, values.get(MEMORY_RSS, 0))
    rss_ns = values.get(MEMORY_READ_NS, start) if rss else 0
    return Announcement(
        span.trace_id, span.span_id, resource_key, service, start, deadline, max(0, values.get("faas.max_memory", 0)),
        rss, rss_ns, span.SerializeToString(),
    )  # fmt: skip
