"""Spans for the graph's specifications: small builders and the scenarios the tests share.

Attribute names follow DESIGN §3 (and, where noted, what OpenTelemetry's own botocore
instrumentation writes). Times are milliseconds after ``T0``.
"""

from __future__ import annotations

import itertools
from typing import Any

from hoptrace.graph.spans import CLIENT, CONSUMER, INTERNAL, PRODUCER, SERVER, GraphSpan, SpanLink

T0 = 1_700_000_000_000 * 10**6  # ns, on a minute boundary
MS = 10**6
_ids = itertools.count(1)

__all__ = ["CLIENT", "CONSUMER", "INTERNAL", "MS", "PRODUCER", "SERVER", "T0", "lam", "new_trace", "span"]


def new_trace() -> bytes:
    return next(_ids).to_bytes(16, "big")


def _span_id() -> bytes:
    return next(_ids).to_bytes(8, "big")


def span(
    trace: bytes,
    service: str,
    name: str,
    kind: int,
    start_ms: float,
    duration_ms: float,
    parent: GraphSpan | bytes | None = None,
    status: int = 0,
    links: tuple[SpanLink, ...] = (),
    resource: dict[str, Any] | None = None,
    **attributes: Any,
) -> GraphSpan:
    """A span; ``attributes`` use ``__`` for dots (``messaging__system``) unless given as a dict."""
    attrs = {k.replace("__", "."): tuple(v) if isinstance(v, list) else v for k, v in attributes.items()}
    parent_id = parent.span_id if isinstance(parent, GraphSpan) else parent
    start = T0 + int(start_ms * MS)
    return GraphSpan(
        trace_id=trace,
        span_id=_span_id(),
        parent_span_id=parent_id,
        service=service,
        name=name,
        kind=kind,
        start_ns=start,
        end_ns=start + int(duration_ms * MS),
        status=status,
        attributes=attrs,
        resource={"service.name": service, **(resource or {})},
        links=links,
    )


def lam(fn: str) -> dict[str, Any]:
    """The resource of a Lambda function traced by hoptrace."""
    return {
        "faas.name": fn,
        "cloud.provider": "aws",
        "cloud.platform": "aws_lambda",
        "telemetry.distro.name": "hoptrace",
    }


def otel_lam(fn: str) -> dict[str, Any]:
    """The resource of a Lambda function traced by OpenTelemetry's own Lambda instrumentation."""
    return {"faas.name": fn, "cloud.provider": "aws", "cloud.platform": "aws_lambda"}


def link(to: GraphSpan, type: str | None = None) -> SpanLink:
    return SpanLink(to.trace_id, to.span_id, type)
