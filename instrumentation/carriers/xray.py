"""AWS X-Ray trace header (``Root=1-…;Parent=…;Sampled=1``) to and from OpenTelemetry context.

SQS carries it as the ``AWSTraceHeader`` system attribute, which does not count against the
10 message-attribute quota; EventBridge as an entry's ``TraceHeader``.
"""

from __future__ import annotations

from opentelemetry.trace import SpanContext, TraceFlags


def format_header(ctx: SpanContext) -> str:
    """The X-Ray header for a span context."""
    tid = f"{ctx.trace_id:032x}"
    sampled = "1" if ctx.trace_flags.sampled else "0"
    return f"Root=1-{tid[:8]}-{tid[8:]};Parent={ctx.span_id:016x};Sampled={sampled}"


def parse_header(header: str | None) -> SpanContext | None:
    """A remote span context from an X-Ray header, or None if it has no usable Root and Parent."""
    if not header or not isinstance(header, str):
        return None
    root = parent = None
    sampled = True
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == "Root":
            pieces = value.split("-")
            if len(pieces) == 3 and pieces[0] == "1" and len(pieces[1]) == 8 and len(pieces[2]) == 24:
                root = pieces[1] + pieces[2]
        elif key == "Parent":
            parent = value
        elif key == "Sampled":
            sampled = value != "0"
    if root is None or parent is None or len(parent) != 16:
        return None
    try:
        trace_id, span_id = int(root, 16), int(parent, 16)
    except ValueError:
        return None
    if trace_id == 0 or span_id == 0:
        return None
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)
