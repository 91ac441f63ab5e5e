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


def attributes(kvs: Any, keep: frozenset[str] | None = None) -> dict[str, AttrValue]:
    """Decoded attributes; with ``keep``, only those keys (the rest are never decoded)."""
    out: dict[str, AttrValue] = {}
    kv: KeyValue
    for kv in kvs:  # per attribute of every span the graph pass reads: no checks beyond the type
        key = kv.key
        if keep is not None and key not in keep:
            continue
        v = _value(kv.value)
        if v is not None:
            out[key] = v
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
    return decoded_span(
        row.trace_id, row.span_id, row.parent_span_id or None, service or row.service_name, row.name, row.kind,
        row.start_ns, row.end_ns, row.status, row.data, resource,
    )  # fmt: skip


def decoded_span(
    trace_id: bytes, span_id: bytes, parent_span_id: bytes | None, service: str, name: str, kind: int, start_ns: int,
    end_ns: int, status: int, data: bytes, resource: dict[str, AttrValue], keep: frozenset[str] | None = None,
) -> GraphSpan:  # fmt: skip
    """A ``GraphSpan`` from a span row's columns and its protobuf bytes (the graph pass's path:
    no intermediate row object per span); ``keep``: the span attributes to decode (all: None)."""
    span = Span()
    span.ParseFromString(data)
    exceptions = (
        tuple(
            kv.value.string_value
            for event in span.events
            if event.name == "exception"
            for kv in event.attributes
            if kv.key == "exception.type"
        )
        if span.events
        else ()
    )
    links = (
        tuple(
            SpanLink(link.trace_id, link.span_id, _link_type(link))
            for link in span.links
            if len(link.trace_id) == 16 and len(link.span_id) == 8
        )
        if span.links
        else ()
    )
    return GraphSpan(
        trace_id, span_id, parent_span_id, service, name, kind, start_ns, end_ns, status,
        attributes(span.attributes, keep), resource, links, exceptions,
    )  # fmt: skip
