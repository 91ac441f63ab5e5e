"""Errors grouped into issues, and when a rule notifies: pure logic, no I/O.

An *occurrence* is one error seen in one span: an ``exception`` event (OpenTelemetry semantic
conventions ``exception.type`` / ``exception.message`` / ``exception.stacktrace``, from any SDK),
an invocation marked timed out, a SERVER span answering HTTP 5xx, or a failed invocation that
says no more than its status. Occurrences with the same *fingerprint* are one issue of a project:

- exceptions: the type plus the innermost frames of the user's own code (file, function, line);
  library, runtime and standard-library frames are left out when the user's own are there. With
  no frames at all, the message stands in, with what varies between occurrences (addresses,
  ids, numbers, times) normalised out;
- HTTP 5xx: function, route and status code; killed invocations (``hoptrace.faas.killed``:
  timeout, out_of_memory, crash; or the watchdog's ``hoptrace.faas.timeout``): the function and
  the class; other failed invocations:
  function, span name and the normalised status message.

Notification rules follow faultline: the first occurrence of an issue always notifies (so does a
regression); afterwards a rule notifies when the count in the current bucket (minute, hour or
day) has reached its threshold and is a multiple of its interval; a negative threshold means the
first occurrence only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hoptrace.graph.naming import is_invocation, service_node
from hoptrace.graph.spans import SERVER, AttrValue, GraphSpan

EXCEPTION, HTTP_5XX, TIMEOUT, ERROR = "exception", "http_5xx", "timeout", "error"
OUT_OF_MEMORY, CRASH = "out_of_memory", "crash"  # killed invocations (collector/killed.py), with TIMEOUT
KINDS = (EXCEPTION, HTTP_5XX, TIMEOUT, OUT_OF_MEMORY, CRASH, ERROR)  # error classes
WARNING = "warning"  # raised from a function's health (collector/health.py), not an error
ISSUE_KINDS = (*KINDS, WARNING)
_KILLED_TITLES = {TIMEOUT: "timed out", OUT_OF_MEMORY: "ran out of memory", CRASH: "crashed"}
OPEN, RESOLVED, IGNORED = "open", "resolved", "ignored"
STATUSES = (OPEN, RESOLVED, IGNORED)
BUCKETS = {"minute": 60, "hour": 3600, "day": 86400}  # seconds per bucket (UTC-aligned)

MAX_FRAMES = 10  # innermost user frames in a fingerprint
MAX_TITLE = 200
MAX_MESSAGE = 2000
MAX_STACKTRACE = 16 * 1024


@dataclass(frozen=True)
class Frame:
    file: str
    function: str
    line: int

    def __str__(self) -> str:
        return f"{self.function} ({self.file}:{self.line})"


@dataclass(frozen=True)
class Occurrence:
    """One error in one span; ``seq`` tells apart several exception events of a span."""

    trace_id: bytes
    span_id: bytes
    seq: int
    time_ns: int
    kind: str
    fingerprint: str
    title: str
    culprit: str
    function: str
    message: str
    stacktrace: str
    error_key: str = ""  # exceptions: a hash of type and raw message, to recognise one propagated through spans
    exception_type: str = ""  # exceptions: ``exception.type`` (a function's first of a type warns)


# -- stack traces -------------------------------------------------------------------------------

_PY_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+), in (.+?)\s*$')
_NODE_FRAME = re.compile(r"^\s*at (?:(.+?) \()?((?:[A-Za-z]:)?[^():]+):(\d+):\d+\)?\s*$")
_JAVA_FRAME = re.compile(r"^\s*at ([\w$.<>/]+)\.([\w$<>]+)\(([^:()]+):(\d+)\)\s*$")

_LIBRARY_PATHS = (
    "/site-packages/", "/dist-packages/", "<frozen", "/var/runtime/", "/var/lang/", "/node_modules/", "node:",
    "internal/", "/opt/python/", "/lib/python3", "/usr/lib/python", "<string>",
)  # fmt: skip
_LIBRARY_CLASSES = (
    "java.", "javax.", "jdk.", "sun.", "kotlin.", "scala.", "software.amazon.awssdk.", "com.amazonaws.",
    "io.opentelemetry.", "org.springframework.", "reactor.", "io.netty.",
)  # fmt: skip


def parse_frames(stacktrace: str) -> list[tuple[Frame, bool]]:
    """The frames of a Python, Node.js or Java stack trace, innermost first, each with whether
    it is the user's own code (not a library, the runtime or the standard library)."""
    python: list[tuple[Frame, bool]] = []
    others: list[tuple[Frame, bool]] = []
    for line in stacktrace.splitlines():
        m = _PY_FRAME.match(line)
        if m:
            file = m.group(1)
            python.append((Frame(file, m.group(3), int(m.group(2))), not _library_path(file)))
            continue
        j = _JAVA_FRAME.match(line)
        if j:
            cls, method, file, number = j.groups()
            own = not cls.startswith(_LIBRARY_CLASSES)
            others.append((Frame(f"{cls}/{file}", method, int(number)), own))
            continue
        n = _NODE_FRAME.match(line)
        if n:
            function, file, number = n.groups()
            others.append((Frame(file, function or "<anonymous>", int(number)), not _library_path(file)))
    # Python prints the innermost frame last; Node.js and Java first.
    return list(reversed(python)) + others


def _library_path(path: str) -> bool:
    return any(part in path for part in _LIBRARY_PATHS)


def fingerprint_frames(stacktrace: str) -> list[Frame]:
    """The frames a fingerprint is made of: the innermost user frames, else the innermost frames."""
    frames = parse_frames(stacktrace)
    own = [f for f, mine in frames if mine]
    return (own or [f for f, _ in frames])[:MAX_FRAMES]


# -- messages ---------------------------------------------------------------------------------------

_NORMALISERS = [
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<id>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"), "<time>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<addr>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{12,}\b"), "<id>"),
    (re.compile(r"(?<![\w.<])[-+]?\d+(?:\.\d+)?(?![\d.>])"), "<n>"),  # 3001ms -> <n>ms; v2, 1.2.3 stay
]


def normalise_message(message: str) -> str:
    """The message with what differs between occurrences of one error replaced by placeholders:
    ids (UUIDs, long hex), memory addresses, times and numbers."""
    text = message.strip()
    for pattern, placeholder in _NORMALISERS:
        text = pattern.sub(placeholder, text)
    return text[:MAX_MESSAGE]


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()[:32]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- occurrences of a span ----------------------------------------------------------------------


@dataclass(frozen=True)
class ExceptionEvent:
    """An ``exception`` event of a span: its time and attributes."""

    time_ns: int
    attributes: Mapping[str, AttrValue]


def function_of(span: GraphSpan) -> str:
    """The function (or service) an error belongs to: the map's name for it."""
    return service_node(span).name


def _status_code(span: GraphSpan) -> int | None:
    code = span.number("http.response.status_code")
    if code is None:
        code = span.number("http.status_code")
    return int(code) if code is not None else None


def occurrences(span: GraphSpan, exceptions: Sequence[ExceptionEvent], status_message: str = "") -> list[Occurrence]:
    """The errors one span reports (often none): see the module docstring for what counts."""
    function = function_of(span)
    ids = (span.trace_id, span.span_id)
    killed = span.attr("hoptrace.faas.killed")
    if not (isinstance(killed, str) and killed in _KILLED_TITLES):
        killed = TIMEOUT if span.attr("hoptrace.faas.timeout") is True else None
    if killed is not None and span.is_error:  # one issue per function and class
        title = f"{function} {_KILLED_TITLES[killed]}"
        return [Occurrence(*ids, 0, span.end_ns, killed, _fingerprint(killed, function), title, function,
                           function, _cut(status_message, MAX_MESSAGE), "")]  # fmt: skip
    found = []
    for seq, event in enumerate(exceptions):
        found.append(_exception(span, seq, event, function))
    if found:
        return found
    code = _status_code(span)
    if span.kind == SERVER and code is not None and code >= 500:
        route = span.text("http.route") or span.name
        title = _cut(f"HTTP {code} from {function} {route}", MAX_TITLE)
        return [Occurrence(*ids, 0, span.end_ns, HTTP_5XX, _fingerprint(HTTP_5XX, function, route, code), title,
                           f"{function} {route}", function, status_message, "")]  # fmt: skip
    if span.is_error and is_invocation(span) and span.attr("hoptrace.record.failed") is not True:
        normalised = normalise_message(status_message)
        title = _cut(f"{function}: {_first_line(normalised) or span.name + ' failed'}", MAX_TITLE)
        return [Occurrence(*ids, 0, span.end_ns, ERROR, _fingerprint(ERROR, function, span.name, normalised), title,
                           f"{function} {span.name}", function, _cut(status_message, MAX_MESSAGE), "")]  # fmt: skip
    return []


def _exception(span: GraphSpan, seq: int, event: ExceptionEvent, function: str) -> Occurrence:
    attrs = event.attributes
    type_ = str(attrs.get("exception.type") or "")
    message = str(attrs.get("exception.message") or "")
    stacktrace = str(attrs.get("exception.stacktrace") or "")
    frames = fingerprint_frames(stacktrace)
    normalised = normalise_message(message)
    if frames:
        key = _fingerprint(EXCEPTION, type_, *(f"{f.file}:{f.function}:{f.line}" for f in frames))
    else:
        key = _fingerprint(EXCEPTION, type_, normalised)
    head = _first_line(normalised)
    title = _cut(f"{type_}: {head}" if type_ and head else type_ or head or "exception", MAX_TITLE)
    culprit = str(frames[0]) if frames else function
    time_ns = event.time_ns or span.end_ns
    error_key = _fingerprint(type_, message)
    return Occurrence(span.trace_id, span.span_id, seq, time_ns, EXCEPTION, key, title, culprit, function,
                      _cut(message, MAX_MESSAGE), _cut(stacktrace, MAX_STACKTRACE), error_key, type_)  # fmt: skip


def raised_into(found: Sequence[tuple[GraphSpan, list[Occurrence]]]) -> set[tuple[bytes, str]]:
    """(span id, error key) of each span an exception went up into from a span below it: its
    parent, or the invocation a batch record's span links to."""
    below: set[tuple[bytes, str]] = set()
    for span, occurrences_ in found:
        above = [link.span_id for link in span.links if link.type == "invocation"]
        if span.parent_span_id:
            above.append(span.parent_span_id)
        for occ in occurrences_:
            if occ.kind == EXCEPTION:
                below.update((span_id, occ.error_key) for span_id in above)
    return below


def without_propagated(
    found: Sequence[tuple[GraphSpan, list[Occurrence]]],
    also: set[tuple[bytes, str]] | frozenset[tuple[bytes, str]] = frozenset(),
) -> list[Occurrence]:
    """The occurrences of spans read together, each error once: an exception recorded on a span
    and again (same type and message) on the span it ran under went up through both; it counts
    once, where it was raised. ``also``: what ``raised_into`` said of spans read before."""
    below = raised_into(found) | set(also)
    return [
        occ
        for _, occurrences_ in found
        for occ in occurrences_
        if not (occ.kind == EXCEPTION and (occ.span_id, occ.error_key) in below)
    ]


# -- notification rules -------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A notification rule of a project (stored; see the module docstring for its semantics)."""

    id: int
    channel_id: int
    threshold: int = 1
    interval: int = 1
    bucket: str = "hour"
    kinds: tuple[str, ...] = ()  # empty: every kind
    functions: tuple[str, ...] = ()  # empty: every function
    enabled: bool = True

    def applies(self, kind: str, function: str) -> bool:
        return (
            self.enabled
            and (not self.kinds or kind in self.kinds)
            and (not self.functions or function in self.functions)
        )

    def notifies(self, first: bool, bucket_count: int) -> bool:
        """Whether an occurrence notifies: ``first`` (the issue's first, or a regression) always
        does; otherwise when the bucket's count (this occurrence included) reached the threshold
        and is a multiple of the interval. A negative threshold: the first only."""
        if first:
            return True
        if self.threshold < 0:
            return False
        interval = max(1, self.interval)
        return bucket_count >= self.threshold and bucket_count % interval == 0


def bucket_start_minute(minute: int, bucket: str) -> int:
    """The first minute (since the epoch) of the bucket holding ``minute``."""
    size = BUCKETS[bucket] // 60
    return minute // size * size
