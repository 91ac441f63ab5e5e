"""W3C trace context (``traceparent``/``tracestate``) as plain string maps.

Used by every carrier that has somewhere to put a few strings: SQS and SNS message
attributes, HTTP headers, the Lambda ClientContext.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanContext

FIELDS = ("traceparent", "tracestate")
_propagator: Any = None  # OpenTelemetry's W3C parser, imported when a consumer first reads context


def headers_for(span: Span) -> dict[str, str]:
    """``traceparent`` (and ``tracestate`` when non-empty) naming ``span`` as the parent.

    Formatted directly (the W3C format is fixed) rather than through the propagator API,
    which costs several times more on every message sent.
    """
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return {}
    carrier = {"traceparent": f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"}
    if ctx.trace_state:
        carrier["tracestate"] = ctx.trace_state.to_header()
    return carrier


def extract(carrier: Mapping[str, str]) -> SpanContext | None:
    """The remote span context in a string map, or None if there is none or it is malformed."""
    global _propagator
    if not carrier.get("traceparent"):
        return None
    if _propagator is None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        _propagator = TraceContextTextMapPropagator()
    ctx = trace.get_current_span(_propagator.extract(carrier)).get_span_context()
    return ctx if ctx.is_valid else None
