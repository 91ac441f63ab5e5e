"""Build OTLP ExportTraceServiceRequest messages for tests, close to what real SDKs send."""

from __future__ import annotations

import os
import time
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status


def any_value(v: Any) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, (list, tuple)):
        return AnyValue(array_value=ArrayValue(values=[any_value(x) for x in v]))
    return AnyValue(string_value=str(v))


def kvs(attrs: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attrs.items()]


def new_id(n: int) -> bytes:
    return os.urandom(n)


def span(
    name: str = "op",
    trace_id: bytes | None = None,
    span_id: bytes | None = None,
    parent: bytes | None = None,
    kind: int = Span.SPAN_KIND_SERVER,
    start_ns: int | None = None,
    duration_ms: float = 10.0,
    error: bool = False,
    attributes: dict[str, Any] | None = None,
) -> Span:
    start = start_ns if start_ns is not None else time.time_ns() - 60 * 10**9
    s = Span(
        trace_id=trace_id or new_id(16),
        span_id=span_id or new_id(8),
        parent_span_id=parent or b"",
        name=name,
        kind=kind,  # type: ignore[arg-type]
        start_time_unix_nano=start,
        end_time_unix_nano=start + int(duration_ms * 1e6),
        attributes=kvs(attributes or {}),
    )
    if error:
        s.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="failed"))
    return s


def request(
    spans: list[Span], service: str = "svc", resource: dict[str, Any] | None = None
) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(kvs({"service.name": service, **(resource or {})}))
    rs.scope_spans.add().spans.extend(spans)
    return req


def json_attrs(d: dict[str, Any]) -> list[dict[str, Any]]:
    """Attributes in OTLP JSON (booleans, 64-bit integers as strings, the rest as strings)."""
    out = []
    for k, v in d.items():
        if isinstance(v, bool):
            value: dict[str, Any] = {"boolValue": v}
        elif isinstance(v, int):
            value = {"intValue": str(v)}
        else:
            value = {"stringValue": str(v)}
        out.append({"key": k, "value": value})
    return out
