"""Stored spans as the JSON the query API returns (ids in lowercase hex, as in OTLP JSON)."""

from __future__ import annotations

import base64
import math
from datetime import datetime, timezone
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from .store import StoredSpan

KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
STATUSES = {0: "UNSET", 1: "OK", 2: "ERROR"}


def value(v: AnyValue) -> Any:
    """An OTLP AnyValue as plain JSON."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        # JSON has no NaN or infinity: write them as protobuf's JSON mapping does, as strings.
        d = v.double_value
        if math.isnan(d):
            return "NaN"
        if math.isinf(d):
            return "Infinity" if d > 0 else "-Infinity"
        return d
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return attributes(v.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return None


def attributes(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kv: KeyValue
    for kv in kvs:
        out[kv.key] = value(kv.value)
    return out


def label_params(params: Any) -> list[tuple[str, str]]:
    """The ``label.KEY=VALUE`` query parameters as (KEY, VALUE) pairs, repeats kept (all must match)."""
    return [
        (key[len("label.") :], value)
        for key, value in params.multi_items()
        if key.startswith("label.") and len(key) > len("label.")
    ]


def rfc3339(ns: int) -> str:
    """Nanoseconds since the epoch as RFC 3339 with microseconds, UTC (any uint64 fits: year 2554)."""
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def span_json(stored: StoredSpan, resources: dict[bytes, dict[str, Any]] | None = None) -> dict[str, Any]:
    """One span for the API; ``resources`` caches decoded resources across the spans of a response."""
    span = Span()
    span.ParseFromString(stored.data)
    cache = resources if resources is not None else {}
    resource = cache.get(stored.resource)
    if resource is None:
        decoded = Resource()
        decoded.ParseFromString(stored.resource)
        resource = cache[stored.resource] = attributes(decoded.attributes)
    return {
        "trace_id": stored.trace_id.hex(),
        "span_id": stored.span_id.hex(),
        "parent_span_id": stored.parent_span_id.hex() if stored.parent_span_id else None,
        "name": span.name,  # the column may hold a stand-in (PostgreSQL text has no NUL)
        "kind": KINDS.get(stored.kind, str(stored.kind)),
        "service": stored.service_name,
        "start": rfc3339(stored.start_ns),
        "start_unix_nano": str(stored.start_ns),
        "end_unix_nano": str(stored.end_ns),
        "duration_ms": (stored.end_ns - stored.start_ns) / 1e6,
        "status": {"code": STATUSES.get(stored.status, str(stored.status)), "message": span.status.message},
        "attributes": attributes(span.attributes),
        "events": [
            {"name": e.name, "time": rfc3339(e.time_unix_nano), "attributes": attributes(e.attributes)}
            for e in span.events
        ],
        "links": [
            {"trace_id": k.trace_id.hex(), "span_id": k.span_id.hex(), "attributes": attributes(k.attributes)}
            for k in span.links
        ],
        "resource": resource,
    }
