"""Function health per minute, and the warnings it raises: pure logic, no I/O.

The issue pass reads every invocation span once (queued at ingest beside the error spans) and
folds it into a ``HealthMinute`` of its function (``fold``); the store merges minutes as they
arrive, so any window is a sum of minutes, never a rescan of spans. What one minute holds:

- invocations, cold starts, throttles and retries (``hoptrace.faas.retry``);
- init duration of cold starts (``hoptrace.faas.init_ms``) and the age of the oldest record at
  invocation (``hoptrace.faas.record_age_ms``, queue and stream triggers): mergeable sketches,
  so p50/p95 of a window are exact to the sketch's 1 %, plus the record age's maximum;
- peak memory (``hoptrace.faas.peak_memory``, bytes) against the configured size
  (``faas.max_memory``): the largest peak and the largest share, and how many invocations
  went above 95 %; duration against the time the invocation had (``hoptrace.faas.deadline_ms``,
  the remaining time at its start): the largest share and how many went above 95 %;
- concurrency: per second of the minute, the milliseconds spent inside invocations (an
  invocation adds its overlap with each second it spans). A second's busy ms / 1000 is the
  average number of invocations running in it, so the minute's average concurrency is the
  sum / 60 000 and its peak is the busiest second's average — exact for invocations of a
  second or more, an average over the second for shorter bursts.

Warnings (issue kind ``warning``, one issue per function and warning subtype, so they follow
the rules, statuses and regressions of every issue) are evaluated per function over the last
``WINDOW_MINUTES`` minutes of data whenever that function's spans are counted, and counted at
most once per window, so a function hovering around a threshold does not flap.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from hoptrace.graph import naming
from hoptrace.graph.rollup import MINUTE_NS
from hoptrace.graph.sketch import LatencySketch
from hoptrace.graph.spans import GraphSpan

from .issues import WARNING, function_of

SECOND_NS = 10**9
NEAR = 0.95  # memory and duration shares above which an invocation is close to being killed
COLD_START_SHARE = 0.01
THROTTLE_SHARE = 0.10
WINDOW_MINUTES = 15  # warnings: evaluated over this many minutes, counted at most once in them
MIN_INVOCATIONS = 50  # share warnings need this many invocations in the window to mean anything
RECORD_AGE_MS = 300_000.0  # default threshold of the record age warning (HOPTRACE_RECORD_AGE_WARN)
BASIS = 10_000  # shares are stored in basis points

MEMORY, TIMEOUT_NEAR, COLD_STARTS, THROTTLES, RECORD_AGE, NEW_ERROR_TYPE = (
    "memory", "near_timeout", "cold_starts", "throttles", "record_age", "new_error_type")  # fmt: skip
SUBTYPES = (MEMORY, TIMEOUT_NEAR, COLD_STARTS, THROTTLES, RECORD_AGE, NEW_ERROR_TYPE)
# The span attributes ``fold`` (with naming.is_invocation and naming.health) reads: a span queued
# only for its health decodes just these.
SPAN_KEYS = frozenset({
    "faas.trigger", "faas.coldstart", "faas.max_memory", "hoptrace.faas.init_ms", "hoptrace.faas.retry",
    "hoptrace.faas.record_age_ms", "hoptrace.faas.peak_memory", "hoptrace.faas.deadline_ms",
    "http.response.status_code", "hoptrace.throttled", "error.type",
})  # fmt: skip
SEQ_BASE = 1000  # a warning's occurrence on a span: seq SEQ_BASE + subtype index, apart from its errors


@dataclass
class HealthMinute:
    """What one function's invocations did in one minute (or, merged, in a window)."""

    invocations: int = 0
    cold_starts: int = 0
    throttles: int = 0
    retries: int = 0
    init: LatencySketch = field(default_factory=LatencySketch)
    record_age: LatencySketch = field(default_factory=LatencySketch)
    record_age_max: int = 0
    memory_count: int = 0  # invocations that reported their peak memory
    memory_peak: int = 0  # bytes
    memory_limit: int = 0  # faas.max_memory, bytes (the largest seen)
    memory_share_max: int = 0  # basis points
    memory_near: int = 0
    deadline_count: int = 0  # invocations that said how long they had
    deadline_share_max: int = 0  # basis points
    deadline_near: int = 0
    busy: dict[int, int] = field(default_factory=dict)  # second of the minute -> ms inside invocations

    def merge(self, other: HealthMinute) -> HealthMinute:
        """Add ``other`` into this one (in place) and return it."""
        self.invocations += other.invocations
        self.cold_starts += other.cold_starts
        self.throttles += other.throttles
        self.retries += other.retries
        self.init.merge(other.init)
        self.record_age.merge(other.record_age)
        self.record_age_max = max(self.record_age_max, other.record_age_max)
        self.memory_count += other.memory_count
        self.memory_peak = max(self.memory_peak, other.memory_peak)
        self.memory_limit = max(self.memory_limit, other.memory_limit)
        self.memory_share_max = max(self.memory_share_max, other.memory_share_max)
        self.memory_near += other.memory_near
        self.deadline_count += other.deadline_count
        self.deadline_share_max = max(self.deadline_share_max, other.deadline_share_max)
        self.deadline_near += other.deadline_near
        busy = self.busy
        for second, ms in other.busy.items():
            busy[second] = busy.get(second, 0) + ms
        return self

    @property
    def concurrency_avg(self) -> float:
        """Average invocations running at once over the minute(s) merged (per minute: busy / 60 s)."""
        return sum(self.busy.values()) / 60_000

    @property
    def concurrency_peak(self) -> float:
        """The busiest second's average number of invocations running (of one minute: merged
        minutes add up their seconds of the same number, so a window's peak is the largest of
        its minutes' peaks, not this)."""
        return max(self.busy.values(), default=0) / 1000


def pack_busy(busy: dict[int, int]) -> bytes:
    """Stored as 60 little-endian uint32: busy ms per second of the minute."""
    return struct.pack("<60I", *(min(busy.get(second, 0), 0xFFFFFFFF) for second in range(60)))


def unpack_busy(data: bytes | None) -> dict[int, int]:
    if not data or len(data) != 240:
        return {}
    return {second: ms for second, ms in enumerate(struct.unpack("<60I", data)) if ms}


@dataclass(frozen=True)
class Candidate:
    """A span that may raise a warning: the worst (or latest) of its function and subtype."""

    subtype: str
    function: str
    trace_id: bytes
    span_id: bytes
    time_ns: int
    value: float  # what is compared: a share in basis points, a record age in ms
    detail: str  # what the occurrence's message says


@dataclass
class Folded:
    """An invocation span's part of its function's health, and the warnings it may raise."""

    span_id: bytes
    function: str
    minutes: dict[int, HealthMinute]
    candidates: list[Candidate]


def _gib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def fold(span: GraphSpan, record_age_ms: float = RECORD_AGE_MS) -> Folded | None:
    """The health an invocation span adds to its function's minutes; None for other spans."""
    if not naming.is_invocation(span):
        return None
    function = function_of(span)
    minute = span.start_ns // MINUTE_NS
    m = HealthMinute(invocations=1)
    ids = (function, span.trace_id, span.span_id, span.end_ns)
    candidates: list[Candidate] = []
    if span.attr("faas.coldstart") is True:
        m.cold_starts = 1
        init = span.number("hoptrace.faas.init_ms")
        if init is not None and init >= 0:
            m.init.add(init)
        candidates.append(Candidate(COLD_STARTS, *ids, 0, "a cold start"))
    if _throttled(span):
        m.throttles = 1
        candidates.append(Candidate(THROTTLES, *ids, 0, "a throttled invocation"))
    if span.attr("hoptrace.faas.retry") is True:
        m.retries = 1
    age = span.number("hoptrace.faas.record_age_ms")
    if age is not None and age >= 0:
        m.record_age.add(age)
        m.record_age_max = int(age)
        if age > record_age_ms:
            detail = f"the oldest record was {age / 1000:.1f} s old (threshold {record_age_ms / 1000:.0f} s)"
            candidates.append(Candidate(RECORD_AGE, *ids, age, detail))
    peak, limit = span.number("hoptrace.faas.peak_memory"), span.number("faas.max_memory")
    if peak is not None and peak >= 0:
        m.memory_count, m.memory_peak = 1, int(peak)
        if limit and limit > 0:
            m.memory_limit = int(limit)
            m.memory_share_max = int(peak * BASIS / limit)
            if peak > NEAR * limit:
                m.memory_near = 1
                detail = f"peak memory {_gib(peak)} of {_gib(limit)} ({peak / limit:.0%})"
                candidates.append(Candidate(MEMORY, *ids, m.memory_share_max, detail))
    deadline = span.number("hoptrace.faas.deadline_ms")
    if deadline is not None and deadline > 0:
        share = span.duration_ms / deadline
        m.deadline_count, m.deadline_share_max = 1, int(share * BASIS)
        if share > NEAR:
            m.deadline_near = 1
            detail = f"ran {span.duration_ms:.0f} ms of the {deadline:.0f} ms it had ({share:.0%})"
            candidates.append(Candidate(TIMEOUT_NEAR, *ids, m.deadline_share_max, detail))
    minutes = {minute: m}
    _busy(minutes, span.start_ns, max(span.start_ns, span.end_ns))
    return Folded(span.span_id, function, minutes, candidates)


def _throttled(span: GraphSpan) -> bool:
    """``naming.health(span) == "throttled"``, asked only of spans that say anything it reads
    (most invocations do not: the check is per invocation)."""
    a = span.attributes
    if not (span.is_error or span.exception_types or "hoptrace.throttled" in a or "error.type" in a
            or a.get("http.response.status_code") == 429):  # fmt: skip
        return False
    return naming.health(span) == "throttled"


def _busy(minutes: dict[int, HealthMinute], start_ns: int, end_ns: int) -> None:
    """Add the invocation's overlap with each second it spans (ms) to those seconds' minutes."""
    second = start_ns // SECOND_NS
    while second * SECOND_NS < end_ns:
        lo, hi = max(start_ns, second * SECOND_NS), min(end_ns, (second + 1) * SECOND_NS)
        minute = second // 60
        slot = minutes.get(minute)
        if slot is None:
            slot = minutes[minute] = HealthMinute()
        busy, at = slot.busy, second % 60
        busy[at] = busy.get(at, 0) + (hi - lo + 500_000) // 1_000_000
        second += 1


def worst(candidates: Iterable[Candidate]) -> dict[tuple[str, str], Candidate]:
    """Per (function, subtype), the candidate to attach an occurrence to: the highest value, the
    latest on a tie (share warnings, valued 0: the latest span that counted)."""
    out: dict[tuple[str, str], Candidate] = {}
    for c in candidates:
        key = (c.function, c.subtype)
        seen = out.get(key)
        if seen is None or (c.value, c.time_ns) > (seen.value, seen.time_ns):
            out[key] = c
    return out


def raises(c: Candidate, window: HealthMinute) -> str | None:
    """Whether a candidate raises its warning given its function's window: the message when it
    does. Per-invocation thresholds raise as soon as one invocation passes them; shares need
    ``MIN_INVOCATIONS`` in the window."""
    n = window.invocations
    if c.subtype == COLD_STARTS:
        if n < MIN_INVOCATIONS or window.cold_starts <= COLD_START_SHARE * n:
            return None
        return f"{window.cold_starts} cold starts in {n} invocations ({window.cold_starts / n:.1%}, above 1 %)"
    if c.subtype == THROTTLES:
        if n < MIN_INVOCATIONS or window.throttles <= THROTTLE_SHARE * n:
            return None
        return f"{window.throttles} throttled of {n} invocations ({window.throttles / n:.1%}, above 10 %)"
    return c.detail


TITLES = {
    MEMORY: "memory above 95 % of the configured size",
    TIMEOUT_NEAR: "duration above 95 % of the timeout",
    COLD_STARTS: "cold starts above 1 % of invocations",
    THROTTLES: "throttles above 10 % of invocations",
    RECORD_AGE: "records waiting too long",
    NEW_ERROR_TYPE: "a new error type",
}


def fingerprint(subtype: str, function: str) -> str:
    """One issue per function and warning subtype."""
    return hashlib.sha256(f"{WARNING}\0{subtype}\0{function}".encode()).hexdigest()[:32]


def title(subtype: str, function: str) -> str:
    return f"{function}: {TITLES[subtype]}"


def seq(subtype: str) -> int:
    return SEQ_BASE + SUBTYPES.index(subtype)
