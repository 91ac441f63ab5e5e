"""hoptrace's own small span machinery, behind the OpenTelemetry API, for Lambda.

Why not the OpenTelemetry SDK there: importing it costs a Lambda cold start about 15 ms and
each of its spans about 18 µs, against a budget of 30 ms and 20 µs for everything hoptrace
adds. This module does only what the defaults need — parent-based always-on sampling, random
ids, the 128 attributes/events/links limits, the resource from ``OTEL_RESOURCE_ATTRIBUTES`` and
``OTEL_SERVICE_NAME`` — and ``setup`` falls back to the SDK when the environment asks for more
(another sampler, id generator, limits or resource detectors; see ``sdk_needed``).

Spans are made through the OpenTelemetry API and live in its context, so a user's
``trace.get_tracer(__name__).start_as_current_span(...)`` nests under hoptrace's spans. Finished
spans read like the SDK's ``ReadableSpan`` (``name``, ``context``, ``parent``, ``attributes``, …),
which is all the OTLP encoder reads; ``to_readable`` converts them for SDK exporters.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Optional, Protocol

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.util import types
from opentelemetry.util._decorator import _agnosticcontextmanager

from .guard import swallowed

if TYPE_CHECKING:  # pragma: no cover
    from opentelemetry.sdk.trace import ReadableSpan

logger = logging.getLogger("hoptrace")

MAX_ATTRIBUTES = 128  # the SDK's defaults (OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT and friends)
MAX_EVENTS = 128
MAX_LINKS = 128

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
EMPTY_TRACE_STATE = TraceState()  # the trace state of every root span (compared by identity)
_EMPTY_STATE = EMPTY_TRACE_STATE
_UNSET = Status(StatusCode.UNSET)
_PRIMITIVE = (str, bool, int, float)
_end_lock = threading.Lock()

# Variables only the SDK implements: if any is set, setup uses the SDK so they keep working.
SDK_ONLY_VARIABLES = (
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_PYTHON_ID_GENERATOR",
    "OTEL_PYTHON_TRACER_PROVIDER",
    "OTEL_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_EVENT_COUNT_LIMIT",
    "OTEL_SPAN_LINK_COUNT_LIMIT",
    "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS",
)
_DEFAULT_SAMPLERS = ("", "parentbased_always_on", "always_on")


def sdk_needed(env: Mapping[str, str] | None = None) -> str | None:
    """The variable that asks for something only the SDK does, or None if this module suffices."""
    e = os.environ if env is None else env
    for name in SDK_ONLY_VARIABLES:
        value = e.get(name)
        if value is None:
            continue
        if name == "OTEL_TRACES_SAMPLER" and value.strip().lower() in _DEFAULT_SAMPLERS:
            continue
        if name == "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS" and value.strip().lower() in ("", "otel"):
            continue
        if name == "OTEL_TRACES_SAMPLER_ARG" and e.get("OTEL_TRACES_SAMPLER", "").strip().lower() in _DEFAULT_SAMPLERS:
            continue
        return name
    return None


class SpanProcessor(Protocol):
    """What the provider tells about spans: the SDK's processor interface, minus the SDK."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None: ...

    def on_end(self, span: Span) -> None: ...

    def force_flush(self, timeout_millis: int = 30000) -> bool: ...

    def shutdown(self) -> None: ...


class Resource:
    """The process's resource attributes (immutable by convention)."""

    __slots__ = ("_sdk", "attributes", "schema_url")

    def __init__(self, attributes: Mapping[str, types.AnyValue], schema_url: str = "") -> None:
        self.attributes: dict[str, types.AnyValue] = dict(attributes)
        self.schema_url = schema_url
        self._sdk: Any = None  # the SDK's Resource, made once if an SDK exporter is used


def resource_from_env(
    attributes: Mapping[str, types.AnyValue], version: str, env: Mapping[str, str] | None = None
) -> Resource:
    """What ``Resource.create(attributes)`` gives with the default detectors, without the SDK.

    Telemetry SDK attributes, then ``OTEL_RESOURCE_ATTRIBUTES``, then ``OTEL_SERVICE_NAME``,
    then ``attributes`` (the SDK's order); ``service.name`` falls back to ``unknown_service``.
    """
    e = os.environ if env is None else env
    merged: dict[str, types.AnyValue] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "hoptrace",
        "telemetry.sdk.version": version,
    }
    raw = e.get("OTEL_RESOURCE_ATTRIBUTES")
    if raw:
        from urllib.parse import unquote

        for item in raw.split(","):
            key, sep, value = item.partition("=")
            if not sep:
                logger.warning("hoptrace: ignoring %r in OTEL_RESOURCE_ATTRIBUTES: expected key=value", item)
                continue
            merged[key.strip()] = unquote(value.strip())
    if e.get("OTEL_SERVICE_NAME"):
        merged["service.name"] = e["OTEL_SERVICE_NAME"]
    merged.update(attributes)
    if not merged.get("service.name"):
        merged["service.name"] = "unknown_service" + (f":{os.path.basename(sys.executable)}" if sys.executable else "")
    return Resource(merged)


class Scope:
    """The instrumentation scope of a tracer (``trace.get_tracer(name, version)``)."""

    __slots__ = ("attributes", "name", "schema_url", "version")

    def __init__(
        self, name: str, version: str | None = None, schema_url: str | None = None, attributes: types.Attributes = None
    ) -> None:
        self.name = name
        self.version = version
        self.schema_url = schema_url
        self.attributes = dict(attributes) if attributes else None


class Event:
    """A span event (``exception`` and whatever ``add_event`` records)."""

    __slots__ = ("attributes", "name", "timestamp")

    def __init__(self, name: str, attributes: dict[str, types.AnyValue], timestamp: int) -> None:
        self.name = name
        self.attributes = attributes
        self.timestamp = timestamp


def clean_value(value: Any) -> Any:
    """A value as the OpenTelemetry API keeps it: sequences as tuples, mappings copied, oddities as text.

    Returns ``_DROP`` for what cannot be kept (an object with neither ``__str__`` nor ``__repr__``).
    """
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if type(value) is tuple:
        for item in value:
            if type(item) not in _PRIMITIVE:
                break
        else:
            return value  # the common case (pointers, table names): nothing to clean
    if isinstance(value, Sequence):
        return tuple(clean_value(v) for v in value if v is not _DROP)
    if isinstance(value, Mapping):
        cleaned = {}
        for k, v in value.items():
            if not k:
                continue
            cleaned[str(k)] = clean_value(v)
        return cleaned
    cls: Any = type(value)
    if cls.__str__ is not object.__str__ or cls.__repr__ is not object.__repr__:
        return str(value)
    return _DROP


_DROP: Any = object()


def _clean_attributes(attributes: Mapping[str, Any], into: dict[str, Any], limit: int) -> int:
    """Add valid ``attributes`` into ``into`` (newest win past ``limit``); returns how many were dropped."""
    dropped = 0
    for key, value in attributes.items():
        if type(value) not in _PRIMITIVE:
            value = clean_value(value)
            if value is _DROP:
                dropped += 1
                continue
        if not key or type(key) is not str:
            dropped += 1
            continue
        if key not in into and len(into) >= limit:
            del into[next(iter(into))]
            dropped += 1
        into[key] = value
    return dropped


def _span_context_checked(trace_id: int, span_id: int, trace_state: TraceState) -> SpanContext:
    return SpanContext(trace_id, span_id, False, _SAMPLED, trace_state)


def _span_context_direct(trace_id: int, span_id: int, trace_state: TraceState) -> SpanContext:
    # SpanContext is a tuple whose Python __new__ only validates and computes is_valid; our ids
    # are valid by construction (non-zero, 128 and 64 bits), so build the tuple directly.
    return tuple.__new__(SpanContext, (trace_id, span_id, False, _SAMPLED, trace_state, True))  # type: ignore[type-var]


def _pick_span_context_factory() -> Any:
    """The direct constructor, if this OpenTelemetry API lays SpanContext out as it expects."""
    try:
        probe = _span_context_direct(3, 5, _EMPTY_STATE)
        expected = _span_context_checked(3, 5, _EMPTY_STATE)
        if tuple(probe) == tuple(expected) and probe.is_valid and probe.trace_flags.sampled:
            return _span_context_direct
    except Exception:
        pass
    return _span_context_checked


_new_tuple: Any = tuple.__new__
_random_bits = random.getrandbits
_span_context = _pick_span_context_factory()
# SpanContext is the tuple (trace_id, span_id, is_remote, trace_flags, trace_state, is_valid):
# hot paths may read it by position instead of through its properties.
CONTEXT_IS_TUPLE = _span_context is _span_context_direct

_SPAN_KEY: str | None
try:  # the API's context key for the current span (what trace.get_current_span reads)
    from opentelemetry.trace.propagation import _SPAN_KEY
except ImportError:  # pragma: no cover - a future API that moved it: start_child takes the long way
    _SPAN_KEY = None


class Span(trace.Span):
    """A recording span; reads like the SDK's ``ReadableSpan`` once ended."""

    # Defaults on the class: a span only pays for what it changes (most have no events or links).
    status: Status = _UNSET
    events: Sequence[Event] = ()
    links: Sequence[Link] = ()
    dropped_attributes = 0
    dropped_events = 0
    dropped_links = 0
    _record_exception = True
    _set_status_on_exception = True
    # Work that describes the span and may wait until it is exported: (function, argument), run
    # by ``settle`` before the span leaves the process. The botocore hooks leave an AWS call's
    # usual answer here, so reading it is off the call's path (it runs at the invocation's flush).
    _deferred: tuple[Any, Any] | None = None

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, Any],
        start_time: int,
        tracer: Tracer,
    ) -> None:
        """Made by ``Tracer``; ``attributes`` are already clean and the span takes the dict over."""
        self.name = name
        self.context = context
        self.parent = parent
        self.kind = kind
        self.start_time = start_time
        self._end_time: int | None = None
        self._tracer = tracer
        self.attributes = attributes

    @property
    def resource(self) -> Resource:
        return self._tracer.resource

    @property
    def instrumentation_scope(self) -> Scope:
        return self._tracer.scope

    @property
    def end_time(self) -> int | None:
        return self._end_time

    # --- the API -------------------------------------------------------------------------

    def get_span_context(self) -> SpanContext:
        return self.context

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self._end_time is not None:
            return
        if type(value) not in _PRIMITIVE:
            value = clean_value(value)
            if value is _DROP:
                self.dropped_attributes += 1
                return
        if not key or type(key) is not str:
            self.dropped_attributes += 1
            return
        attributes = self.attributes
        if key not in attributes and len(attributes) >= MAX_ATTRIBUTES:
            del attributes[next(iter(attributes))]
            self.dropped_attributes += 1
        attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if self._end_time is None:
            self.dropped_attributes += _clean_attributes(attributes, self.attributes, MAX_ATTRIBUTES)

    def update_trusted(self, attributes: dict[str, Any]) -> None:
        """``set_attributes`` for hoptrace's own values, known to be valid: no per-value checks."""
        if self._end_time is None:
            if len(self.attributes) + len(attributes) <= MAX_ATTRIBUTES:
                self.attributes.update(attributes)
            else:
                self.set_attributes(attributes)

    def add_event(self, name: str, attributes: types.Attributes = None, timestamp: int | None = None) -> None:
        if self._end_time is not None:
            return
        cleaned: dict[str, Any] = {}
        if attributes:
            _clean_attributes(attributes, cleaned, MAX_ATTRIBUTES)
        events = self.events
        if not isinstance(events, list):
            events = self.events = []
        if len(events) >= MAX_EVENTS:
            del events[0]
            self.dropped_events += 1
        events.append(Event(name, cleaned, time.time_ns() if timestamp is None else timestamp))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self._end_time is not None or context is None or not context.is_valid:
            return
        cleaned: dict[str, Any] = {}
        if attributes:
            _clean_attributes(attributes, cleaned, MAX_ATTRIBUTES)
        links = self.links
        if not isinstance(links, list):
            links = self.links = []
        if len(links) >= MAX_LINKS:
            self.dropped_links += 1
            return
        links.append(Link(context, cleaned))

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        # The SDK's rules: OK is final, UNSET is never set, a Status object ignores `description`.
        if self._end_time is not None or self.status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is not StatusCode.UNSET:
                self.status = status
        elif isinstance(status, StatusCode) and status is not StatusCode.UNSET:
            self.status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        import traceback

        module = type(exception).__module__
        qualname = type(exception).__qualname__
        recorded: dict[str, Any] = {
            "exception.type": f"{module}.{qualname}" if module and module != "builtins" else qualname,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(
                traceback.format_exception(type(exception), exception, exception.__traceback__)
            ),
            "exception.escaped": str(escaped),
        }
        if attributes:
            recorded.update(attributes)
        self.add_event("exception", recorded, timestamp)

    def end(self, end_time: int | None = None) -> None:
        # The watchdog thread may end a span the handler is ending too. acquire/release rather
        # than ``with``: half the cost, and this runs once per span.
        _end_lock.acquire()
        try:
            if self._end_time is not None:
                return
            self._end_time = time.time_ns() if end_time is None else end_time
        finally:
            _end_lock.release()
        self._tracer.processor.on_end(self)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> None:
        if exc_val is not None and self._end_time is None:
            if self._record_exception:
                self.record_exception(exc_val, escaped=True)
            if self._set_status_on_exception:
                self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        self.end()

    def __repr__(self) -> str:
        return (
            f"Span(name={self.name!r}, trace_id=0x{self.context.trace_id:032x}, span_id=0x{self.context.span_id:016x})"
        )


def settle(finished: Sequence[Any]) -> None:
    """Run the deferred description of each of our ended spans (see ``Span._deferred``), once.

    The span is described as if it were still open (its end time is set aside meanwhile), so a
    deferred description gives exactly the attributes it would have given before ``end``. Runs
    on the thread that flushes; a deferred description must not end spans.
    """
    for span in finished:
        deferred = getattr(span, "_deferred", None)
        if deferred is None or type(span) is not Span:
            continue
        with _end_lock:  # an ``end`` racing this one waits, then finds the span ended
            span._deferred = None
            end_time = span._end_time
            span._end_time = None
            try:
                deferred[0](span, deferred[1])
            except Exception:
                swallowed("spans.settle")
            finally:
                span._end_time = end_time


def set_many(span: trace.Span, attributes: dict[str, Any]) -> None:
    """Set hoptrace's own attributes (valid by construction) on any span, cheaply on ours."""
    if type(span) is Span:
        # update_trusted written out: this runs several times per AWS call.
        if span._end_time is None and len(span.attributes) + len(attributes) <= MAX_ATTRIBUTES:
            span.attributes.update(attributes)
        else:
            span.update_trusted(attributes)
    else:
        span.set_attributes(attributes)


class Tracer(trace.Tracer):
    """Starts spans of one instrumentation scope."""

    def __init__(self, provider: TracerProvider, scope: Scope) -> None:
        self.resource = provider.resource
        self.processor = provider.processor
        self.scope = scope
        # A processor that only records open spans by id on start offers that dict
        # (``started_by_id``): the hot path then stores into it instead of calling ``on_start``.
        self._started: dict[int, Any] | None = getattr(provider.processor, "started_by_id", None)

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        cleaned: dict[str, Any] = {}
        dropped = _clean_attributes(attributes, cleaned, MAX_ATTRIBUTES) if attributes else 0
        span = self._start(trace.get_current_span(context), name, kind, cleaned, start_time)
        if type(span) is Span:
            if dropped:
                span.dropped_attributes = dropped
            if not record_exception:
                span._record_exception = False
            if not set_status_on_exception:
                span._set_status_on_exception = False
            if links:
                for link in links:
                    span.add_link(link.context, link.attributes)
        return span

    def start_child(self, current: Context, name: str, kind: SpanKind, attributes: dict[str, Any]) -> trace.Span:
        """``start_span`` for hoptrace's hot paths: ``current`` is the current context, already
        fetched, and ``attributes`` a fresh dict of valid values that the span takes over."""
        parent_span = current.get(_SPAN_KEY) if _SPAN_KEY is not None else None
        if type(parent_span) is Span and _span_context is _span_context_direct:
            # The usual parent, one of our own spans (an invocation's): its context is valid and
            # sampled by construction, and a tuple laid out as checked at import.
            parent = parent_span.context
            span = Span(
                name,
                # _span_context_direct, written out
                _new_tuple(SpanContext, (parent[0], _random_bits(64) or 1, False, _SAMPLED, parent[4], True)),
                parent,
                kind,
                attributes,
                time.time_ns(),
                self,
            )
            started = self._started
            if started is not None:
                started[id(span)] = span  # on_start, written out
            else:
                self.processor.on_start(span, None)
            return span
        return self._start(trace.get_current_span(current), name, kind, attributes, None)

    def _start(
        self, parent_span: trace.Span, name: str, kind: SpanKind, attributes: dict[str, Any], start_time: int | None
    ) -> trace.Span:
        parent: SpanContext | None = parent_span.get_span_context()
        span_id = random.getrandbits(64) or 1
        if parent.is_valid:  # type: ignore[union-attr]
            trace_id, trace_state = parent.trace_id, parent.trace_state  # type: ignore[union-attr]
            if not parent.trace_flags & TraceFlags.SAMPLED:  # type: ignore[union-attr]
                # Parent-based sampling: an unsampled parent's children are not recorded either.
                return trace.NonRecordingSpan(SpanContext(trace_id, span_id, False, _NOT_SAMPLED, trace_state))
        else:
            trace_id, trace_state, parent = random.getrandbits(128) or 1, _EMPTY_STATE, None
        span = Span(
            name,
            _span_context(trace_id, span_id, trace_state),
            parent,
            kind,
            attributes,
            time.time_ns() if start_time is None else start_time,
            self,
        )
        self.processor.on_start(span, None)
        return span

    @_agnosticcontextmanager
    def start_as_current_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        span = self.start_span(
            name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
        )
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


class TracerProvider(trace.TracerProvider):
    """One resource, one span processor, a tracer per instrumentation scope."""

    def __init__(self, resource: Resource, processor: SpanProcessor) -> None:
        self.resource = resource
        self.processor = processor
        self._tracers: dict[tuple[str, Optional[str], Optional[str]], Tracer] = {}
        self._shut_down = False

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: types.Attributes = None,
    ) -> trace.Tracer:
        if self._shut_down:
            return trace.NoOpTracer()
        key = (instrumenting_module_name or "", instrumenting_library_version, schema_url)
        tracer = self._tracers.get(key)
        if tracer is None:
            scope = Scope(key[0], instrumenting_library_version, schema_url, attributes)
            tracer = self._tracers[key] = Tracer(self, scope)
        return tracer

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.processor.force_flush(timeout_millis)

    def shutdown(self) -> None:
        if self._shut_down:
            return
        self._shut_down = True
        self.processor.shutdown()


# --- for SDK exporters -------------------------------------------------------------------


def to_readable(span: Any) -> ReadableSpan:
    """The SDK's ``ReadableSpan`` of one of our spans (for exporters written for the SDK)."""
    from opentelemetry.sdk.resources import Resource as SdkResource
    from opentelemetry.sdk.trace import Event as SdkEvent
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    if not isinstance(span, Span):
        return span  # type: ignore[no-any-return]  # already the SDK's
    scope = span.instrumentation_scope
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=_sdk_resource(span.resource, SdkResource),
        attributes=span.attributes,
        events=[SdkEvent(e.name, e.attributes, e.timestamp) for e in span.events],
        links=list(span.links),
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=InstrumentationScope(scope.name, scope.version, scope.schema_url, scope.attributes),
    )


def _sdk_resource(resource: Resource, factory: Any) -> Any:
    if resource._sdk is None:
        resource._sdk = factory(resource.attributes, resource.schema_url)
    return resource._sdk
