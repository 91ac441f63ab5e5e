"""Telling the collector an invocation began, so one that never ends is still seen.

A function killed by Lambda (timeout, out of memory, a crash of the runtime) sends nothing at
its end: its tracer died with it. So each invocation is *announced* as it starts: a copy of the
invocation span, same trace and span id, ended at its own start and marked
``hoptrace.faas.announcement = "start"``, with the invocation's deadline
(``hoptrace.faas.deadline_ms``) and the configured memory (``faas.max_memory``). While the
invocation runs, the watchdog thread reads the process's memory; once it comes near the
configured size, one more copy marked ``"memory"`` carries that reading
(``hoptrace.faas.memory_rss``). The collector keeps announcements aside (they are not spans of
their own) and turns one whose real end never came by its deadline plus a grace period into the
invocation span, marked ``hoptrace.faas.killed``.

Both are handed to the export worker without waiting (``ExportWorker.send_later``): the
handler's own time is not spent on them, and the end-of-invocation flush, which waits for
everything queued before it, bounds them by the flush budget like every other span.
"""

from __future__ import annotations

import os
import resource
import time
from typing import Any

ANNOUNCEMENT = "hoptrace.faas.announcement"  # "start" or "memory"; the collector keeps these aside
DEADLINE_MS = "hoptrace.faas.deadline_ms"
MEMORY_READ_NS = "hoptrace.faas.memory_read_ns"
MEMORY_RSS = "hoptrace.faas.memory_rss"
PEAK_MEMORY = "hoptrace.faas.peak_memory"
INIT_MS = "hoptrace.faas.init_ms"
KILLED = "hoptrace.faas.killed"
WATCHDOG = "hoptrace.faas.watchdog"  # on the start announcement: the timeout watchdog is armed
# A memory reading is sent once the resident set reaches this share of the configured memory;
# the collector calls the last reading "near the limit" from the same share.
NEAR_LIMIT = 0.85
MEMORY_EVERY_S = 0.05  # how often the watchdog thread reads the memory during an invocation

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_IMPORTED_NS = time.time_ns()


def memory_rss() -> int | None:
    """The process's resident set now, in bytes (Linux ``/proc/self/statm``), or None elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def peak_memory() -> int | None:
    """The process's resident-set high-water mark, in bytes (``getrusage`` ``ru_maxrss``).

    What it measures: the most physical memory this process has held at any moment since it
    started, so at the end of an invocation it is at least what that invocation used at its
    peak (more if an earlier invocation of the same sandbox used more). Lambda's own "Max Memory
    Used" is the same high-water mark of the sandbox.
    """
    try:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (OSError, ValueError):
        return None
    return int(kib) * 1024 if kib > 0 else None  # Linux reports KiB (macOS bytes; Lambda is Linux)


def init_ms(now_ns: int) -> float:
    """How long the process took before its first invocation: its age at ``now_ns``.

    The process's start time from ``/proc/self/stat`` (field 22, clock ticks since boot, against
    ``/proc/uptime``), which covers the runtime's start and the handler module's imports, as
    Lambda's Init Duration does; elsewhere, the time since this module was imported.
    """
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rindex(b")") + 2 :].split()
        started_s = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        with open("/proc/uptime", "rb") as f:
            uptime_s = float(f.read().split()[0])
        age_ms = (uptime_s - started_s) * 1000.0
        if age_ms >= 0:
            return round(age_ms, 1)
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    return round(max(0, now_ns - _IMPORTED_NS) / 1e6, 1)


def copy_of(span: Any, phase: str, extra: dict[str, Any]) -> Any:
    """An ended copy of the (still open) invocation span, same ids, ended at its own start.

    hoptrace's own spans are copied as such (the OTLP encoder and ``to_readable`` read them);
    with the SDK's tracer provider, an SDK ``ReadableSpan``.
    """
    from .. import spans

    attributes = dict(span.attributes)
    attributes.update(extra)
    attributes[ANNOUNCEMENT] = phase
    if type(span) is spans.Span:
        record = spans.Span(span.name, span.context, span.parent, span.kind, attributes, span.start_time, span._tracer)
        record.links = list(span.links)
        record._end_time = span.start_time  # ended without the processor: it is not a span of this invocation
        return record
    from opentelemetry.sdk.trace import ReadableSpan

    return ReadableSpan(
        name=span.name,
        context=span.get_span_context(),
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        links=list(span.links),
        kind=span.kind,
        start_time=span.start_time,
        end_time=span.start_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class MemoryWatch:
    """Reads the memory of one running invocation and announces the first reading near the limit.

    ``tick`` runs on the watchdog thread every ``MEMORY_EVERY_S``; it sends at most one reading
    per invocation (what the collector needs is the last one before a kill, and a function that
    stays near its limit is what gets killed).
    """

    def __init__(self, span: Any, limit_bytes: int, send: Any) -> None:
        self._span = span
        self._threshold = limit_bytes * NEAR_LIMIT
        self._send = send
        self.sent = False
        self.highest = 0

    def tick(self) -> None:
        rss = memory_rss()
        if rss is None:
            return
        if rss > self.highest:
            self.highest = rss
        if not self.sent and rss >= self._threshold and self._span.is_recording():
            self.sent = True
            # With the log records so far: a function killed for its memory flushes nothing after.
            self._send(copy_of(self._span, "memory", {MEMORY_RSS: rss, MEMORY_READ_NS: time.time_ns()}), True)
