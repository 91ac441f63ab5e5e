"""Stored rows to the graph's ``GraphSpan``: decode the span's and its resource's protobuf bytes."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from hoptrace.graph.spans import AttrValue, GraphSpan, SpanLink

from ..otlp import SpanRow
from . import StoredSpan


def _value(value: AnyValue) -> AttrValue | None:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "array_value":
        items = [_value(v) for v in value.array_value.values]
        return tuple(i for i in items if i is not None and not isinstance(i, tuple))
    return None


def attributes(kvs: Any) -> dict[str, AttrValue]:
    out: dict[str, AttrValue] = {}
    kv: KeyValue
    for kv in kvs:  # per attribute of every span the graph pass reads: no checks beyond the type
        v = _value(kv.value)
        if v is not None:
            out[kv.key] = v
    return out


def resource_attributes(data: bytes) -> dict[str, AttrValue]:
    resource = Resource()
    resource.ParseFromString(data)
    return attributes(resource.attributes)


def _link_type(link: Span.Link) -> str | None:
    for kv in link.attributes:
        if kv.key == "hoptrace.link.type":
            return kv.value.string_value or None
    return None


def graph_span(row: SpanRow | StoredSpan, resource: dict[str, AttrValue], service: str | None = None) -> GraphSpan:
    """The graph's view of a stored span (``resource``: its resource's decoded attributes)."""
    span = Span()
    span.ParseFromString(row.data)
    exceptions = tuple(
        kv.value.string_value
        for event in span.events
        if event.name == "exception"
        for kv in event.attributes
        if kv.key == "exception.type"
    )
    links = tuple(
        SpanLink(link.trace_id, link.span_id, _link_type(link))
        for link in span.links
        if len(link.trace_id) == 16 and len(link.span_id) == 8
    )
    return GraphSpan(
        trace_id=row.trace_id,
        span_id=row.span_id,
        parent_span_id=row.parent_span_id or None,
        service=service or row.service_name,
        name=row.name,
        kind=row.kind,
        start_ns=row.start_ns,
        end_ns=row.end_ns,
        status=row.status,
        attributes=attributes(span.attributes),
        resource=resource,
        links=links,
        exception_types=exceptions,
    )
