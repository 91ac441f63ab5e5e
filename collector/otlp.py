"""OTLP trace requests in, normalised span rows out: decoding, limits and per-span validation.

Protobuf and JSON (OTLP's JSON rules: hex ids, lowerCamelCase, enums as numbers, 64-bit
integers as strings), optionally gzip-compressed. A request that cannot be decoded is refused
whole with a message saying what was wrong; a decodable request has its bad spans rejected one
by one (counted in ``partial_success``) and the rest accepted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

# Spans dated before this or later than now + FUTURE_SLACK are refused (clock bugs, garbage).
EARLIEST_NS = 946_684_800 * 10**9  # 2000-01-01
FUTURE_SLACK_NS = 24 * 3600 * 10**9
TRUNCATION_MARKER = "…[truncated {n} bytes]"

# Attributes copied into the search index, as (index key, attribute).
INDEXED_ATTRIBUTES = {
    "faas.invocation_id": "invocation",
    "aws.request_id": "request",
    "messaging.message.id": "message",
    "http.route": "route",
}
LABEL_PREFIX = "hoptrace.label."
POINTERS = "hoptrace.pointers"


class RequestError(Exception):
    """The whole request is refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    """What one request may carry; every figure is configurable on the command line."""

    max_body_bytes: int = 5 * 1024 * 1024  # uncompressed
    max_spans: int = 10_000
    max_attribute_bytes: int = 16 * 1024


class SpanRow(NamedTuple):
    """One span as stored: indexed columns plus the span itself as protobuf bytes."""

    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes | None
    resource_key: bytes
    service_name: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status: int  # 0 unset, 1 ok, 2 error
    data: bytes


class Term(NamedTuple):
    """One searchable value of a span: label, id or correlation pointer."""

    key: str  # "label.order_id", "invocation", "message", "pointer", …
    value: str
    trace_id: bytes
    span_id: bytes
    start_ns: int


class LinkRow(NamedTuple):
    trace_id: bytes
    span_id: bytes
    linked_trace_id: bytes
    linked_span_id: bytes


@dataclass
class Resource:
    key: bytes
    service_name: str
    data: bytes


@dataclass
class SpanBatch:
    """Everything one request adds to the store."""

    resources: dict[bytes, Resource] = field(default_factory=dict)
    spans: list[SpanRow] = field(default_factory=list)
    terms: list[Term] = field(default_factory=list)
    links: list[LinkRow] = field(default_factory=list)
    rejected: int = 0
    rejections: list[str] = field(default_factory=list)

    def reject(self, why: str) -> None:
        self.rejected += 1
        if len(self.rejections) < 5 and why not in self.rejections:
            self.rejections.append(why)

    @property
    def error_message(self) -> str:
        return "; ".join(self.rejections)


def read_body(body: bytes, content_encoding: str | None, limits: Limits) -> bytes:
    """The uncompressed body, refusing bodies (and decompression bombs) past the size limit."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        raw = body
    elif encoding in ("gzip", "deflate"):
        wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
        inflater = zlib.decompressobj(wbits)
        try:
            raw = inflater.decompress(body, limits.max_body_bytes + 1)
        except zlib.error as exc:
            raise RequestError(400, f"the body is not valid {encoding} data: {exc}") from None
        if len(raw) > limits.max_body_bytes or inflater.unconsumed_tail:
            raise RequestError(
                413, f"the body is larger than {limits.max_body_bytes} bytes once decompressed; send smaller batches"
            )
        if not inflater.eof:
            raise RequestError(400, f"the {encoding} body is truncated")
    else:
        raise RequestError(415, f"Content-Encoding {content_encoding!r} is not supported; use gzip or none")
    if len(raw) > limits.max_body_bytes:
        raise RequestError(413, f"the body is larger than {limits.max_body_bytes} bytes; send smaller batches")
    return raw


def parse_request(raw: bytes, content_type: str | None) -> ExportTraceServiceRequest:
    """Decode an ExportTraceServiceRequest from protobuf or OTLP JSON."""
    media = (content_type or "").split(";")[0].strip().lower()
    request = ExportTraceServiceRequest()
    if media == "application/x-protobuf":
        try:
            request.ParseFromString(raw)
        except DecodeError as exc:
            raise RequestError(400, f"the body is not a valid OTLP protobuf ExportTraceServiceRequest: {exc}") from None
        return request
    if media == "application/json":
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestError(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise RequestError(400, "the JSON body must be an object with a resourceSpans list")
        try:
            _hex_ids_to_base64(doc)
            json_format.ParseDict(doc, request, ignore_unknown_fields=True)
        except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
            raise RequestError(400, f"the JSON body is not a valid OTLP ExportTraceServiceRequest: {exc}") from None
        return request
    raise RequestError(
        415, f"Content-Type {content_type!r} is not supported; use application/x-protobuf or application/json"
    )


_ID_FIELDS = {"traceId": 16, "spanId": 8, "parentSpanId": 8}


def _hex_ids_to_base64(doc: dict[str, Any]) -> None:
    """OTLP JSON writes ids as hex where protobuf's JSON mapping expects base64: translate."""
    for rs in _list(doc.get("resourceSpans", [])):
        for ss in _list(_dict(rs).get("scopeSpans", [])):
            for span in _list(_dict(ss).get("spans", [])):
                span = _dict(span)
                _translate_ids(span)
                for link in _list(span.get("links", [])):
                    _translate_ids(_dict(link))


def _translate_ids(obj: dict[str, Any]) -> None:
    for name, size in _ID_FIELDS.items():
        value = obj.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str) or len(value) != size * 2:
            raise ValueError(f"{name} must be {size * 2} hex characters, got {value!r:.60}")
        try:
            obj[name] = base64.b64encode(bytes.fromhex(value)).decode()
        except ValueError:
            raise ValueError(f"{name} is not hex: {value!r:.60}") from None


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {type(value).__name__}")
    return value


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"expected an object, got {type(value).__name__}")
    return value


def _string(value: AnyValue) -> str | None:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return str(value.int_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "double_value":
        return repr(value.double_value)
    return None


def _truncate(value: AnyValue, limit: int) -> bool:
    """Cut an oversized string or bytes value in place, leaving a marker; True if it was cut."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        encoded = value.string_value.encode("utf-8")
        if len(encoded) > limit:
            kept = encoded[:limit].decode("utf-8", "ignore")
            value.string_value = kept + TRUNCATION_MARKER.format(n=len(encoded) - len(kept.encode()))
            return True
    elif kind == "bytes_value" and len(value.bytes_value) > limit:
        value.bytes_value = value.bytes_value[:limit]
        return True
    elif kind == "array_value":
        return any([_truncate(v, limit) for v in value.array_value.values])
    elif kind == "kvlist_value":
        return any([_truncate(kv.value, limit) for kv in value.kvlist_value.values])
    return False


def normalise(request: ExportTraceServiceRequest, limits: Limits, now_ns: int | None = None) -> SpanBatch:
    """Turn a decoded request into rows; bad spans are rejected one by one, never the request."""
    now = time.time_ns() if now_ns is None else now_ns
    latest = now + FUTURE_SLACK_NS
    batch = SpanBatch()
    total = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    if total > limits.max_spans:
        raise RequestError(413, f"the request has {total} spans, more than the limit of {limits.max_spans}")
    max_attr = limits.max_attribute_bytes
    for rs in request.resource_spans:
        resource_bytes = rs.resource.SerializeToString(deterministic=True)
        key = hashlib.blake2b(resource_bytes, digest_size=16).digest()
        service = "unknown_service"
        for kv in rs.resource.attributes:
            if kv.key == "service.name":
                service = _string(kv.value) or service
        if key not in batch.resources:
            batch.resources[key] = Resource(key, service, resource_bytes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                _add_span(batch, span, key, service, max_attr, latest)
    return batch


def _add_span(batch: SpanBatch, span: Span, resource_key: bytes, service: str, max_attr: int, latest: int) -> None:
    tid, sid, pid = span.trace_id, span.span_id, span.parent_span_id
    if len(tid) != 16 or tid == b"\0" * 16:
        batch.reject("a span has an invalid trace id (must be 16 non-zero bytes)")
        return
    if len(sid) != 8 or sid == b"\0" * 8:
        batch.reject("a span has an invalid span id (must be 8 non-zero bytes)")
        return
    if pid and len(pid) != 8:
        batch.reject("a span has an invalid parent span id (must be empty or 8 bytes)")
        return
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if start < EARLIEST_NS or start > latest:
        batch.reject(f"span {sid.hex()} starts at an absurd time ({start} ns since the epoch)")
        return
    if end < start or end > latest + FUTURE_SLACK_NS:
        batch.reject(f"span {sid.hex()} ends before it starts or at an absurd time")
        return
    truncated = False
    for kv in span.attributes:
        key, value = kv.key, kv.value
        truncated |= _truncate(value, max_attr)
        if key.startswith(LABEL_PREFIX):
            text = _string(value)
            if text is not None:
                batch.terms.append(Term("label." + key[len(LABEL_PREFIX) :], text, tid, sid, start))
        elif key == POINTERS:
            for item in value.array_value.values:
                if item.string_value:
                    batch.terms.append(Term("pointer", item.string_value, tid, sid, start))
        else:
            index_key = INDEXED_ATTRIBUTES.get(key)
            if index_key is not None:
                text = _string(value)
                if text:
                    batch.terms.append(Term(index_key, text, tid, sid, start))
    for event in span.events:
        for kv in event.attributes:
            truncated |= _truncate(kv.value, max_attr)
    if truncated:
        span.attributes.add(key="hoptrace.truncated", value=AnyValue(bool_value=True))
    for link in span.links:
        if len(link.trace_id) == 16 and len(link.span_id) == 8:
            batch.links.append(LinkRow(tid, sid, link.trace_id, link.span_id))
    batch.spans.append(
        SpanRow(
            tid,
            sid,
            pid or None,
            resource_key,
            service,
            span.name,
            int(span.kind),
            start,
            end,
            int(span.status.code),
            span.SerializeToString(),
        )
    )


def response_body(batch: SpanBatch | None, json_response: bool) -> tuple[bytes, str]:
    """An ExportTraceServiceResponse, with partial_success when spans were rejected."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    response = ExportTraceServiceResponse()
    if batch is not None and batch.rejected:
        response.partial_success.rejected_spans = batch.rejected
        response.partial_success.error_message = batch.error_message
    if json_response:
        doc = json_format.MessageToDict(response)
        return json.dumps(doc).encode(), "application/json"
    return response.SerializeToString(), "application/x-protobuf"


def hex_id(raw: bytes) -> str:
    """Ids in lowercase hex, as OTLP JSON writes them."""
    return binascii.hexlify(raw).decode()
