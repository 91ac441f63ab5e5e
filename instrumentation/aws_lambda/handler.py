"""Tracing a Lambda handler: one invocation span per call, flushed before the sandbox freezes.

The wrapper never changes what the handler returns or raises: every piece of tracing runs
inside the guard, and the handler's exception is re-raised as the same object.
"""

from __future__ import annotations

import functools
import os
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Callable, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Status, StatusCode

from .. import setup
from ..guard import count, guard
from . import announce
from . import invocation as inv_mod
from .triggers import Trigger, parse
from .watchdog import watchdog

F = TypeVar("F", bound=Callable[..., Any])

_cold_start = True
_seen_request_ids: OrderedDict[str, None] = OrderedDict()
_SEEN_MAX = 256


def _is_cold_start() -> bool:
    """First invocation of this process, unless provisioned concurrency initialised it ahead."""
    global _cold_start
    cold, _cold_start = _cold_start, False
    if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "provisioned-concurrency":
        return False
    return cold


def _is_repeated(request_id: str | None) -> bool:
    """Lambda retries an async invocation with the same request id."""
    if not request_id:
        return False
    if request_id in _seen_request_ids:
        return True
    _seen_request_ids[request_id] = None
    if len(_seen_request_ids) > _SEEN_MAX:
        _seen_request_ids.popitem(last=False)
    return False


def _context_attributes(context: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    request_id = getattr(context, "aws_request_id", None)
    if request_id:
        attrs["faas.invocation_id"] = str(request_id)
    arn = getattr(context, "invoked_function_arn", None)
    if arn:
        attrs["cloud.resource_id"] = str(arn)
        parts = str(arn).split(":")
        if len(parts) > 4 and parts[4]:
            attrs["cloud.account.id"] = parts[4]
    memory = getattr(context, "memory_limit_in_mb", None)
    try:
        if memory is not None:
            attrs["faas.max_memory"] = int(memory) * 1024 * 1024
    except (TypeError, ValueError):
        pass
    name = getattr(context, "function_name", None) or os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
    if name:
        attrs["faas.name"] = str(name)
    version = getattr(context, "function_version", None)
    if version:
        attrs["faas.version"] = str(version)
    return attrs


def _remaining_ms(context: Any) -> float | None:
    fn = getattr(context, "get_remaining_time_in_millis", None)
    if fn is None:
        return None
    try:
        return float(fn())
    except Exception:
        return None


class _Run:
    """Bookkeeping of one wrapped call, so the happy path and the guard share one place."""

    def __init__(self, st: setup.State, event: Any, context: Any) -> None:
        self.st = st
        self.inv: inv_mod.Invocation | None = None
        self.token: object | None = None
        self.timed_out = False
        with guard("lambda.start"):
            self._start(event, context)

    def _start(self, event: Any, context: Any) -> None:
        trigger: Trigger = parse(event, context)
        attrs = _context_attributes(context)
        attrs.update(trigger.attributes)
        attrs["faas.trigger"] = trigger.faas_trigger
        attrs["hoptrace.trigger.source"] = trigger.source
        attrs["faas.coldstart"] = cold = _is_cold_start()
        start_ns = time.time_ns()
        if cold:
            attrs[announce.INIT_MS] = announce.init_ms(start_ns)
        remaining = _remaining_ms(context)
        if remaining is not None:
            attrs[announce.DEADLINE_MS] = int(remaining)
        init_type = os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")
        if init_type:
            attrs["hoptrace.faas.initialization_type"] = init_type
        retry = _is_repeated(attrs.get("faas.invocation_id")) or attrs.get("hoptrace.faas.receive_count", 1) > 1
        if retry:
            attrs["hoptrace.faas.retry"] = True
        if trigger.problem:
            attrs["hoptrace.trigger.error"] = trigger.problem
        cfg = self.st.config
        if cfg.capture_payloads:
            from ..payload import EVENT_ATTRIBUTE, capture

            captured = capture(event, cfg)
            if captured is not None:
                attrs[EVENT_ATTRIBUTE] = captured
        links = []
        if trigger.is_batch:
            for _, rc in trigger.records:
                if rc.parent is not None:
                    link_attrs = {"hoptrace.link.type": "producer"}
                    if "messaging.message.id" in rc.attributes:
                        link_attrs["messaging.message.id"] = rc.attributes["messaging.message.id"]
                    links.append(Link(rc.parent, link_attrs))
        parent_ctx = trace.set_span_in_context(trace.NonRecordingSpan(trigger.parent)) if trigger.parent else None
        name = trigger.span_name or attrs.get("faas.name") or "lambda"
        span = self.st.tracer.start_span(
            str(name), context=parent_ctx, kind=trigger.kind, attributes=attrs, links=links, start_time=start_ns
        )
        self.inv = inv_mod.Invocation(span, trigger, event, start_ns)
        inv_mod.set_current(self.inv)
        self.token = otel_context.attach(trace.set_span_in_context(span))
        armed = cfg.watchdog and remaining is not None and remaining > 0
        tick = self._announce(span, attrs.get("faas.max_memory"), armed) if cfg.announce else None
        if remaining is not None and remaining > 0 and (cfg.watchdog or tick is not None):
            margin = min(cfg.watchdog_margin_ms, remaining / 2.0)
            on_deadline = self._on_deadline if cfg.watchdog else _nothing
            watchdog.arm(time.monotonic() + (remaining - margin) / 1000.0, on_deadline, tick, announce.MEMORY_EVERY_S)

    def _announce(self, span: Any, max_memory: Any, watchdog_armed: bool) -> Callable[[], None] | None:
        """Send the start announcement in the background; the memory watch's tick, if any.

        ``hoptrace.faas.watchdog`` tells the collector a silent end is no timeout: the watchdog
        would have reported one."""
        send = getattr(self.st.processor, "send_later", None)
        if send is None:  # not Lambda mode: spans are batched in the background anyway
            return None
        rss = announce.memory_rss()
        extra: dict[str, Any] = {announce.WATCHDOG: watchdog_armed}
        if rss is not None:
            extra[announce.MEMORY_RSS] = rss
        send(announce.copy_of(span, "start", extra))
        if isinstance(max_memory, int) and max_memory > 0 and rss is not None:
            return announce.MemoryWatch(span, max_memory, send).tick
        return None

    def _on_deadline(self) -> None:
        """Called by the watchdog thread shortly before Lambda kills the process."""
        inv = self.inv
        if inv is None:
            return
        with inv.lock:
            if inv.finished:
                return
            inv.finished = True
            self.timed_out = True
        count("invocations_timed_out")
        _supersede_announcements(self.st.processor)
        end_ns = time.time_ns()
        span = inv.span
        span.set_attribute("hoptrace.faas.timeout", True)
        span.set_attribute(announce.KILLED, "timeout")
        _set_peak_memory(span)
        span.set_status(Status(StatusCode.ERROR, "the invocation was about to time out"))
        inv.finish_records(self.st.tracer, TimeoutError("Lambda deadline reached"), None, end_ns)
        processor = self.st.processor
        open_spans = processor.open_spans() if hasattr(processor, "open_spans") else []
        for open_span in reversed(open_spans):  # children before parents
            if open_span is not span and open_span.is_recording():
                open_span.set_attribute("hoptrace.span.unfinished", True)
                open_span.set_attribute("hoptrace.faas.timeout", True)
                open_span.end(end_time=end_ns)
        span.end(end_time=end_ns)
        self.st.flush()

    def finish(self, response: Any, error: BaseException | None) -> None:
        with guard("lambda.finish"):
            watchdog.disarm()
            inv = self.inv
            if inv is None:
                return
            if error is not None and inv.current_record is not None:
                inv.current_record.error = error
            inv.leave_record()  # the record's context first: it was attached after the invocation's
            if self.token is not None:
                try:
                    otel_context.detach(self.token)  # type: ignore[arg-type]
                except Exception:
                    pass
            inv_mod.set_current(None)
            with inv.lock:
                if inv.finished:
                    return  # the watchdog already ended and flushed it
                inv.finished = True
            _supersede_announcements(self.st.processor)
            self._end(inv, response, error)
            self.st.flush()
            processor = self.st.processor
            if hasattr(processor, "forget_open"):
                processor.forget_open()

    def _end(self, inv: inv_mod.Invocation, response: Any, error: BaseException | None) -> None:
        span = inv.span
        end_ns = time.time_ns()
        inv.finish_records(self.st.tracer, error, response, end_ns)
        _set_peak_memory(span)
        if isinstance(error, MemoryError):
            # Out of memory: in Lambda the sandbox is usually killed for it; say so the same way.
            span.set_attribute(announce.KILLED, "out_of_memory")
        if error is not None:
            span.record_exception(error)
            span.set_attribute("error.type", type(error).__qualname__)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        elif inv.trigger.is_http:
            status = _http_status(response)
            if status is not None:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_attribute("error.type", str(status))
                    span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
        if error is None and self.st.config.capture_payloads:
            from ..payload import RESPONSE_ATTRIBUTE, capture

            captured = capture(response, self.st.config)
            if captured is not None:
                span.set_attribute(RESPONSE_ATTRIBUTE, captured)
        # Spans a child left open (a botocore call that failed validation) would never export.
        processor = self.st.processor
        for open_span in getattr(processor, "open_spans", list)():
            if open_span is not span and open_span.is_recording():
                open_span.set_attribute("hoptrace.span.unfinished", True)
                open_span.end(end_time=end_ns)
        span.end(end_time=end_ns)


def _supersede_announcements(processor: Any) -> None:
    """The invocation span goes out now: its announcements not yet sent are not needed."""
    supersede = getattr(processor, "supersede_announcements", None)
    if supersede is not None:
        supersede()


def _nothing() -> None:
    """The deadline callback when the watchdog is off but the memory is watched."""


def _set_peak_memory(span: Any) -> None:
    peak = announce.peak_memory()
    if peak is not None:
        span.set_attribute(announce.PEAK_MEMORY, peak)


def _http_status(response: Any) -> int | None:
    """The status code of an HTTP-triggered response (payload 2.0 defaults to 200)."""
    if isinstance(response, Mapping):
        code = response.get("statusCode")
        if code is None:
            return 200
        try:
            return int(code)
        except (TypeError, ValueError):
            return None
    return 200


def wrap_handler(fn: F) -> F:
    """Trace ``fn(event, context)``; initialises tracing now (import time) if not done yet."""
    with guard("lambda.init"):
        setup.init()

    @functools.wraps(fn)
    def traced(event: Any, context: Any = None, *args: Any, **kwargs: Any) -> Any:
        st = setup.state()
        if st is None or not st.config.enabled or inv_mod.current() is not None:
            return fn(event, context, *args, **kwargs)
        run = _Run(st, event, context)
        try:
            response = fn(event, context, *args, **kwargs)
        except BaseException as error:
            run.finish(None, error)
            raise
        run.finish(response, None)
        return response

    traced.__wrapped_by_hoptrace__ = True  # type: ignore[attr-defined]
    return traced  # type: ignore[return-value]
