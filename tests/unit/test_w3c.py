"""W3C headers written directly must be exactly what the OpenTelemetry propagator writes and reads."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from hoptrace.instrumentation.carriers import w3c


def test_headers_match_the_propagator_with_and_without_tracestate() -> None:
    for state in (TraceState(), TraceState([("vendor", "v1"), ("rojo", "00f067aa0ba902b7")])):
        for flags in (TraceFlags.SAMPLED, TraceFlags.DEFAULT):
            ctx = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, False, TraceFlags(flags), state)
            span = NonRecordingSpan(ctx)
            expected: dict[str, str] = {}
            TraceContextTextMapPropagator().inject(expected, context=trace.set_span_in_context(span))
            assert w3c.headers_for(span) == expected
            back = w3c.extract(w3c.headers_for(span))
            assert back is not None
            assert (back.trace_id, back.span_id, back.trace_flags) == (ctx.trace_id, ctx.span_id, ctx.trace_flags)


def test_an_invalid_span_gives_no_headers() -> None:
    assert w3c.headers_for(NonRecordingSpan(SpanContext(0, 0, False))) == {}
