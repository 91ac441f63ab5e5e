"""OTLP trace requests in, normalised span rows out: decoding, limits and per-span validation.

Protobuf and JSON (OTLP's JSON rules: hex ids, lowerCamelCase, enums as numbers, 64-bit
integers as strings), optionally gzip-compressed. A request that cannot be decoded is refused
whole with a message saying what was wrong; a decodable request has its bad spans rejected one
by one (counted in ``partial_success``) and the rest accepted.

The answers (an ExportTraceServiceResponse, or a google.rpc.Status saying why) are built here
too, so OTLP/HTTP and OTLP/gRPC word them the same way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from .announcements import Announcement, announcement, is_announcement

# Spans dated before this or later than now + FUTURE_SLACK are refused (clock bugs, garbage).
EARLIEST_NS = 946_684_800 * 10**9  # 2000-01-01
FUTURE_SLACK_NS = 24 * 3600 * 10**9
TRUNCATION_MARKER = "…[truncated {n} bytes]"
TRUNCATED_FLAG = "hoptrace.truncated"

# Attributes copied into the search index, as (attribute, index key).
INDEXED_ATTRIBUTES = {
    "faas.invocation_id": "invocation",
    "aws.request_id": "request",
    "messaging.message.id": "message",
    "http.route": "route",
}
LABEL_PREFIX = "hoptrace.label."
POINTERS = "hoptrace.pointers"
# Longer values stay on the span but are not indexed (search is by exact value), and a longer
# service name is cut for its column: PostgreSQL's b-tree refuses index rows past ~2.7 kB,
# which would fail the whole group commit.
MAX_INDEXED_BYTES = 1024

JSON_MEDIA = "application/json"
PROTOBUF_MEDIA = "application/x-protobuf"
ENCODINGS = ("identity", "gzip", "deflate")
MAX_GZIP_MEMBERS = 64  # RFC 1952 allows several members in one body; real clients send one


class RequestError(Exception):
    """The whole request is refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    """What one request may carry; every figure is configurable (flags or environment)."""

    max_body_bytes: int = 5 * 1024 * 1024  # uncompressed
    max_spans: int = 10_000
    max_attribute_bytes: int = 16 * 1024

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_spans", "max_attribute_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"the {name.replace('_', ' ')} limit must be at least 1, not {getattr(self, name)}")


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


class Rejection(NamedTuple):
    """One span refused while decoding (before ``normalise`` saw it): why, and which span."""

    reason: str
    span: str


# Reasons a message lists, and span ids named per reason: the message stays short however
# many spans a request loses.
_MAX_REASONS = 8
_MAX_EXAMPLES = 3


@dataclass
class SpanBatch:
    """Everything one request adds to the store, and which spans it rejected and why."""

    resources: dict[bytes, Resource] = field(default_factory=dict)
    spans: list[SpanRow] = field(default_factory=list)
    terms: list[Term] = field(default_factory=list)
    links: list[LinkRow] = field(default_factory=list)
    # Invocations announced as they started (announcements.py): kept aside, not spans.
    announcements: list[Announcement] = field(default_factory=list)
    # Log records of a /v1/logs request (store.logs_sql.LogRow): committed in the writer's group
    # commit with the spans, not in a transaction of their own beside it.
    logs: list[Any] = field(default_factory=list)
    rejected: int = 0
    # reason -> (count, the first few spans' descriptions)
    rejections: dict[str, tuple[int, list[str]]] = field(default_factory=dict)

    def reject(self, reason: str, span: str) -> None:
        """Count one rejected span under ``reason``; ``span`` names it (its id, in hex)."""
        self.rejected += 1
        count, examples = self.rejections.get(reason, (0, []))
        if count == 0 and len(self.rejections) >= _MAX_REASONS:
            return
        if len(examples) < _MAX_EXAMPLES:
            examples.append(span)
        self.rejections[reason] = (count + 1, examples)

    @property
    def error_message(self) -> str:
        """Why spans were rejected, for ``partial_success.error_message``: reason, then span ids."""
        parts = []
        for reason, (count, examples) in self.rejections.items():
            named = ", ".join(examples)
            more = f" and {count - len(examples)} more" if count > len(examples) else ""
            parts.append(f"{reason}: {'span' if count == 1 else 'spans'} {named}{more}")
        listed = sum(count for count, _ in self.rejections.values())
        if listed < self.rejected:
            parts.append(f"{self.rejected - listed} more for other reasons")
        return "; ".join(parts)


# -- headers ---------------------------------------------------------------------------------


def media_type(content_type: str | None) -> str:
    """The request's OTLP encoding from its Content-Type; 415 for anything but protobuf or JSON."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media in (PROTOBUF_MEDIA, JSON_MEDIA):
        return media
    raise RequestError(
        415, f"Content-Type {content_type!r} is not supported; use application/x-protobuf or application/json"
    )


def content_encoding(header: str | None) -> str:
    """The body's compression from Content-Encoding; 415 for anything but gzip, deflate or none."""
    encoding = (header or "").strip().lower() or "identity"
    if encoding in ENCODINGS:
        return encoding
    raise RequestError(415, f"Content-Encoding {header!r} is not supported; use gzip or none")


# -- body ------------------------------------------------------------------------------------


def read_body(body: bytes, encoding: str | None, limits: Limits) -> bytes:
    """The uncompressed body, refusing bodies (and decompression bombs) past the size limit.

    Inflation stops one byte past the limit, so a bomb costs at most ``max_body_bytes`` of
    memory however far it would expand.
    """
    encoding = content_encoding(encoding)
    raw = body if encoding == "identity" else _inflate(body, encoding, limits.max_body_bytes)
    if len(raw) > limits.max_body_bytes:
        raise RequestError(413, f"the body is larger than {limits.max_body_bytes} bytes; send smaller batches")
    return raw


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """gzip (one or more members) or zlib data, inflated to at most ``limit`` bytes."""
    if not body:
        return b""  # nothing compressed is nothing (what gzip(1) and Python's gzip make of it)
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    pieces: list[bytes] = []
    size = 0
    data = body
    for _ in range(MAX_GZIP_MEMBERS):
        inflater = zlib.decompressobj(wbits)
        try:
            piece = inflater.decompress(data, limit - size + 1)  # never 0, which means "no limit"
        except zlib.error as exc:
            raise RequestError(400, f"the body is not valid {encoding} data: {exc}") from None
        size += len(piece)
        if size > limit:
            raise RequestError(413, f"the body is larger than {limit} bytes once decompressed; send smaller batches")
        if not inflater.eof:
            raise RequestError(400, f"the {encoding} body is truncated")
        pieces.append(piece)
        data = inflater.unused_data
        if not data.strip(b"\0"):  # gzip(1) accepts zero padding after the last member
            return b"".join(pieces)
        if encoding != "gzip":
            raise RequestError(400, f"the {encoding} body has {len(data)} bytes of trailing data")
    raise RequestError(400, f"the gzip body has more than {MAX_GZIP_MEMBERS} members")


# -- decoding --------------------------------------------------------------------------------


def json_object(raw: bytes, top: str) -> dict[str, Any]:
    """An OTLP JSON body's top-level object (``top``: the list it holds), or a 400 saying why not."""
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise RequestError(400, "the JSON body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise RequestError(400, f"the JSON body must be an object with a {top} list")
    return doc


def parse_request(
    raw: bytes, content_type: str | None, limits: Limits | None = None
) -> tuple[ExportTraceServiceRequest, list[Rejection]]:
    """Decode an ExportTraceServiceRequest from protobuf or OTLP JSON.

    Also returns the JSON spans refused while decoding (an id that is not hex cannot become
    bytes), to be counted with the rest by ``normalise``. With ``limits``, a JSON body with too
    many spans is refused before the (slow) conversion.
    """
    media = media_type(content_type)
    request = ExportTraceServiceRequest()
    if media == PROTOBUF_MEDIA:
        try:
            request.ParseFromString(raw)
        except DecodeError as exc:
            raise RequestError(400, f"the body is not a valid OTLP protobuf ExportTraceServiceRequest: {exc}") from None
        return request, []
    doc = json_object(raw, "resourceSpans")
    try:
        spans, entries, rejected = _translate_json_ids(doc)
    except ValueError as exc:
        raise RequestError(400, f"the JSON body is not a valid OTLP ExportTraceServiceRequest: {exc}") from None
    if limits is not None:
        _check_counts(spans, entries, limits)
    try:
        json_format.ParseDict(doc, request, ignore_unknown_fields=True)
    except RecursionError:
        raise RequestError(400, "the JSON body is nested too deeply") from None
    except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
        raise RequestError(400, f"the JSON body is not a valid OTLP ExportTraceServiceRequest: {exc}") from None
    except SystemError as exc:
        # protobuf's upb looks a member name up as UTF-8: one with an unpaired surrogate escape
        # ("\udc00") fails inside it and surfaces as a SystemError caused by the encode error.
        if isinstance(exc.__cause__, UnicodeError):
            raise RequestError(
                400, f"the JSON body has a member name that is not valid Unicode: {exc.__cause__}"
            ) from None
        raise
    return request, rejected


# Where OTLP JSON has hex ids (protobuf's JSON mapping would expect base64 there).
_ID_FIELDS = {"traceId": 16, "spanId": 8, "parentSpanId": 8}
_HEX = re.compile("(?:[0-9a-fA-F]{2})*")


def _translate_json_ids(doc: dict[str, Any]) -> tuple[int, int, list[Rejection]]:
    """Turn OTLP JSON's hex ids into base64 in place, taking out spans whose ids are not hex.

    Returns the number of spans the body holds, of its resourceSpans and scopeSpans entries, and
    the rejections. A body whose shape is wrong (``resourceSpans`` not a list, …) raises
    ValueError: that is a malformed request.
    """
    count = 0
    rejected: list[Rejection] = []
    resource_spans = _list(doc.get("resourceSpans"), "resourceSpans")
    entries = len(resource_spans)
    for rs in resource_spans:
        scope_spans = _list(_dict(rs, "resourceSpans").get("scopeSpans"), "scopeSpans")
        entries += len(scope_spans)
        for ss in scope_spans:
            ss = _dict(ss, "scopeSpans")
            spans = _list(ss.get("spans"), "spans")
            kept = []
            for span in spans:
                count += 1
                span = _dict(span, "spans")
                links = _list(span.get("links"), "links")
                name = _json_span_name(span)  # before its ids turn into base64
                problem = _translate_ids(span, "")
                for i, link in enumerate(links):
                    problem = problem or _translate_ids(_dict(link, "links"), f"links[{i}].")
                if problem:
                    rejected.append(Rejection(problem, name))
                else:
                    kept.append(span)
            if len(kept) != len(spans):
                ss["spans"] = kept
    return count, entries, rejected


def _translate_ids(obj: dict[str, Any], where: str) -> str | None:
    """Hex ids to base64 in place; a reason (for rejecting the span) if one is not hex.

    Any even-length hex becomes bytes: the lengths are checked by ``normalise``, the same way
    for protobuf and JSON (and link ids of odd sizes are kept, as in protobuf).
    """
    for name in _ID_FIELDS:
        value = obj.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str) or not _HEX.fullmatch(value):
            return f"{where}{name} is not hex (OTLP JSON writes ids in hex, e.g. {_ID_FIELDS[name] * 2} characters)"
        obj[name] = base64.b64encode(bytes.fromhex(value)).decode()
    return None


def _json_span_name(span: dict[str, Any]) -> str:
    """How a message names a JSON span: its id when that is hex, else what it holds."""
    span_id = span.get("spanId")
    if isinstance(span_id, str) and len(span_id) == 16 and _HEX.fullmatch(span_id):
        return span_id.lower()
    return f"with spanId {span_id!r:.40}"


def _list(value: Any, name: str) -> list[Any]:
    if value is None:  # JSON null is the field's default, as in protobuf's JSON mapping
        return []
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list, got {_json_type(value)}")
    return value


def _dict(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"each item of {name} must be an object, got {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number"}
    return names.get(type(value), "a number" if isinstance(value, float) else "null")


def _check_counts(spans: int, entries: int, limits: Limits) -> None:
    """413 past the span limit, or with more resourceSpans + scopeSpans entries than spans allowed.

    Empty entries cost no spans but a few microseconds each: a body of nothing but them would
    keep a core busy for seconds.
    """
    if spans > limits.max_spans:
        raise RequestError(
            413, f"the request has {spans} spans, more than the limit of {limits.max_spans}; send smaller batches"
        )
    if entries > limits.max_spans:
        raise RequestError(
            413,
            f"the request has {entries} resourceSpans and scopeSpans entries, more than the limit of "
            f"{limits.max_spans}; send smaller batches",
        )


# -- normalising -----------------------------------------------------------------------------


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


def _cut_text(text: str, limit: int) -> str | None:
    """``text`` cut to ``limit`` UTF-8 bytes plus the marker, or None if it fits."""
    if len(text) * 4 <= limit:  # cannot be too long, whatever its characters
        return None
    encoded = text.encode()
    if len(encoded) <= limit:
        return None
    kept = encoded[:limit].decode("utf-8", "ignore")
    return kept + TRUNCATION_MARKER.format(n=len(encoded) - len(kept.encode()))


def _truncate(value: AnyValue, limit: int) -> bool:
    """Cut an oversized value in place, leaving a marker on strings; True if it was cut.

    An array or map counts as one value: its items are cut one by one and the items past the
    limit dropped (an array's items share one type, so no marker item is added).
    """
    kind = value.WhichOneof("value")
    if kind == "string_value":
        text = _cut_text(value.string_value, limit)
        if text is not None:
            value.string_value = text
            return True
    elif kind == "bytes_value":
        if len(value.bytes_value) > limit:
            value.bytes_value = value.bytes_value[:limit]
            return True
    elif kind in ("array_value", "kvlist_value"):
        if value.ByteSize() <= limit:
            return False
        is_array = kind == "array_value"
        items: Any = value.array_value.values if is_array else value.kvlist_value.values
        cut = False
        budget = limit
        for i, item in enumerate(items):
            cut |= _truncate(item if is_array else item.value, limit)
            budget -= item.ByteSize()
            if budget < 0 and i > 0:
                del items[i:]
                return True
        return cut
    return False


def _truncate_attributes(attributes: Iterable[KeyValue], limit: int) -> bool:
    cut = False
    for kv in attributes:
        if kv.value.ByteSize() > limit:
            cut |= _truncate(kv.value, limit)
    return cut


def _truncate_span(span: Span, limit: int) -> bool:
    """Cut every oversized text of a span: name, status message, attributes of span, events, links."""
    cut = _truncate_attributes(span.attributes, limit)
    name = _cut_text(span.name, limit)
    if name is not None:
        span.name, cut = name, True
    message = _cut_text(span.status.message, limit)
    if message is not None:
        span.status.message, cut = message, True
    for event in span.events:
        name = _cut_text(event.name, limit)
        if name is not None:
            event.name, cut = name, True
        cut |= _truncate_attributes(event.attributes, limit)
    for link in span.links:
        cut |= _truncate_attributes(link.attributes, limit)
    return cut


def normalise(
    request: ExportTraceServiceRequest,
    limits: Limits,
    now_ns: int | None = None,
    rejected: Iterable[Rejection] = (),
    raw: bytes | None = None,
) -> SpanBatch:
    """Turn a decoded request into rows; bad spans are rejected one by one, never the request.

    ``rejected`` are spans already refused while decoding (see ``parse_request``): they count
    towards the span limit and the answer. Oversized values are truncated in place (the
    request is modified) and their spans flagged with ``hoptrace.truncated``. ``raw``, the
    protobuf body ``request`` was parsed from, gives each span's stored bytes as sent, instead
    of encoding every span again.
    """
    now = time.time_ns() if now_ns is None else now_ns
    latest = now + FUTURE_SLACK_NS
    batch = SpanBatch()
    for rejection in rejected:
        batch.reject(*rejection)
    total = count_spans(request, limits, batch.rejected)
    max_attr = limits.max_attribute_bytes
    encoded = span_bytes(raw) if raw is not None else None
    if encoded is not None and len(encoded) != total:
        encoded = None
    position = 0
    for rs in request.resource_spans:
        resource = rs.resource
        resource_cut = resource.ByteSize() > max_attr and _truncate_attributes(resource.attributes, max_attr)
        if resource_cut:
            resource.attributes.add(key=TRUNCATED_FLAG, value=AnyValue(bool_value=True))
        resource_bytes = resource.SerializeToString(deterministic=True)
        key = hashlib.blake2b(resource_bytes, digest_size=16).digest()
        service = "unknown_service"
        for kv in resource.attributes:
            if kv.key == "service.name":
                service = _string(kv.value) or service
        service = _cut_text(service, MAX_INDEXED_BYTES) or service
        if key not in batch.resources:
            batch.resources[key] = Resource(key, service, resource_bytes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                data = encoded[position] if encoded is not None else None
                position += 1
                _add_span(batch, span, data, key, service, max_attr, latest, resource_cut)
    return batch


def span_bytes(raw: bytes) -> list[bytes] | None:
    """Each span's bytes as encoded in a protobuf ExportTraceServiceRequest, in order.

    A walk of the three enclosing levels only (requests, resource spans, scope spans: every
    field length-delimited); None for a body holding anything else (unknown fields), whose spans
    are then encoded again. The spans themselves are parsed by protobuf, as before.
    """
    spans: list[bytes] = []
    try:
        for start, end in _fields(raw, 0, len(raw), 0x0A):
            for s_start, s_end in _fields(raw, start, end, 0x12, skip=(0x0A, 0x1A)):
                for p_start, p_end in _fields(raw, s_start, s_end, 0x12, skip=(0x0A, 0x1A)):
                    spans.append(raw[p_start:p_end])
    except ValueError:
        return None
    return spans


def _fields(raw: bytes, pos: int, end: int, wanted: int, skip: tuple[int, ...] = ()) -> list[tuple[int, int]]:
    """(start, end) of each length-delimited field tagged ``wanted`` in raw[pos:end]; fields
    tagged one of ``skip`` are passed over; ValueError on any other tag or a bad length."""
    out = []
    while pos < end:
        tag = raw[pos]
        if tag != wanted and tag not in skip:
            raise ValueError(tag)
        pos += 1
        length = shift = 0
        while True:
            byte = raw[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
            if shift > 35:
                raise ValueError("varint")
        if pos + length > end:
            raise ValueError("length")
        if tag == wanted:
            out.append((pos, pos + length))
        pos += length
    return out


def count_spans(request: ExportTraceServiceRequest, limits: Limits, rejected: int = 0) -> int:
    """The spans a decoded request holds; RequestError (413) past the span limit, counting the
    ``rejected`` ones refused while decoding, or with more entries than spans allowed."""
    resource_spans = request.resource_spans
    entries = len(resource_spans)
    if entries <= limits.max_spans:  # past it, refused without walking them
        entries += sum(len(rs.scope_spans) for rs in resource_spans)
    _check_counts(0, entries, limits)
    spans = sum(len(ss.spans) for rs in resource_spans for ss in rs.scope_spans)
    _check_counts(rejected + spans, 0, limits)
    return spans


def _add_span(
    batch: SpanBatch,
    span: Span,
    data: bytes | None,
    resource_key: bytes,
    service: str,
    max_attr: int,
    latest: int,
    flag: bool,
) -> None:
    tid, sid, pid = span.trace_id, span.span_id, span.parent_span_id
    if len(sid) != 8 or sid == b"\0" * 8:
        shown = f"{sid.hex() or '(none)'} in trace {tid.hex() or '(none)'}"
        batch.reject("invalid span id (must be 8 bytes, not all zero; 16 hex characters in OTLP JSON)", shown)
        return
    if len(tid) != 16 or tid == b"\0" * 16:
        batch.reject("invalid trace id (must be 16 bytes, not all zero; 32 hex characters in OTLP JSON)", sid.hex())
        return
    if pid and len(pid) != 8:
        batch.reject("invalid parent span id (must be empty or 8 bytes)", sid.hex())
        return
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if start < EARLIEST_NS or start > latest:
        batch.reject(
            "start time out of range (before 2000 or more than a day ahead; unix nanoseconds expected)",
            f"{sid.hex()} (starts at {start})",
        )
        return
    if end < start:
        batch.reject("end time before the start", sid.hex())
        return
    if end > latest + FUTURE_SLACK_NS:
        batch.reject("end time out of range (more than two days ahead)", f"{sid.hex()} (ends at {end})")
        return
    if end == start and is_announcement(span):  # an invocation's start (announcements.py): kept aside
        batch.announcements.append(announcement(span, resource_key, service))
        return
    if data is None:
        data = span.SerializeToString()
    # Only a span larger than the limit can hold an oversized value: most skip this walk.
    if (len(data) > max_attr and _truncate_span(span, max_attr)) or flag:
        span.attributes.add(key=TRUNCATED_FLAG, value=AnyValue(bool_value=True))
        data = span.SerializeToString()
    _index_terms(batch, span, tid, sid, start)
    if span.links:
        for link in span.links:
            if len(link.trace_id) == 16 and len(link.span_id) == 8:
                batch.links.append(LinkRow(tid, sid, link.trace_id, link.span_id))
    row = (tid, sid, pid or None, resource_key, service, span.name, span.kind, start, end, span.status.code, data)
    batch.spans.append(_new_row(SpanRow, row))


# Rows are made with tuple.__new__: a NamedTuple's own constructor is a Python call per row.
_new_row = tuple.__new__
_SURELY_INDEXABLE = MAX_INDEXED_BYTES // 4  # characters: at most 4 UTF-8 bytes each


def _indexable(text: str) -> bool:
    return len(text) * 4 <= MAX_INDEXED_BYTES or len(text.encode()) <= MAX_INDEXED_BYTES


# Attribute name -> (index key, whether an empty value is indexed); "" for attributes not indexed.
# Spans repeat a few dozen names, so each is classified once instead of per attribute of every span.
_TERM_KEYS: dict[str, tuple[str, bool]] = {}
_TERM_KEYS_MAX = 4096
_POINTER_KEY = "pointer"


def _term_key(key: str) -> tuple[str, bool]:
    found = _TERM_KEYS.get(key)
    if found is None:
        if key.startswith(LABEL_PREFIX):
            found = ("label." + key[len(LABEL_PREFIX) :], True) if _indexable(key) else ("", False)
        elif key == POINTERS:
            found = (_POINTER_KEY, False)
        else:
            found = (INDEXED_ATTRIBUTES.get(key, ""), False)
        if len(_TERM_KEYS) >= _TERM_KEYS_MAX:  # a client inventing names: stay bounded
            _TERM_KEYS.clear()
        _TERM_KEYS[key] = found
    return found


def _index_terms(batch: SpanBatch, span: Span, tid: bytes, sid: bytes, start: int) -> None:
    """Labels, ids and pointers of one span, for search.

    Per span, this walks every attribute: kept to a dict lookup per name, and for an indexed
    one a string read (most values are strings) and a tuple.
    """
    append = batch.terms.append
    known = _TERM_KEYS.get
    for kv in span.attributes:
        key = kv.key
        index_key, empty_ok = known(key) or _term_key(key)
        if not index_key:
            continue
        value = kv.value
        if index_key is _POINTER_KEY and key == POINTERS:
            for item in value.array_value.values:
                pointer = item.string_value
                if pointer and (len(pointer) <= _SURELY_INDEXABLE or _indexable(pointer)):
                    append(_new_row(Term, (_POINTER_KEY, pointer, tid, sid, start)))
            continue
        text = value.string_value or _string(value)  # "" when unset: then the kind decides
        if text is not None and (text or empty_ok) and (len(text) <= _SURELY_INDEXABLE or _indexable(text)):
            append(_new_row(Term, (index_key, text, tid, sid, start)))


def decode(body: bytes, encoding: str | None, content_type: str | None, limits: Limits) -> SpanBatch:
    """An OTLP/HTTP body as it arrived, to rows: inflate, parse, validate; RequestError if refused."""
    return parse(body, encoding, content_type, limits).normalise()


@dataclass
class Parsed:
    """A request decoded and checked against the limits, not yet turned into rows: the writer
    does that (``normalise``) in its own thread, where it does not compete for the GIL."""

    request: ExportTraceServiceRequest
    rejected: list[Rejection]
    limits: Limits
    spans: int  # how many it holds (some may still be rejected by ``normalise``)
    raw: bytes | None = None  # the protobuf body, for the spans' bytes as sent

    def normalise(self) -> SpanBatch:
        return normalise(self.request, self.limits, rejected=self.rejected, raw=self.raw)


def parse(body: bytes, encoding: str | None, content_type: str | None, limits: Limits) -> Parsed:
    """An OTLP/HTTP body as it arrived, inflated, parsed and counted; RequestError if refused."""
    raw = read_body(body, encoding, limits)
    request, rejected = parse_request(raw, content_type, limits)
    protobuf = media_type(content_type) == PROTOBUF_MEDIA
    return Parsed(request, rejected, limits, count_spans(request, limits, len(rejected)), raw if protobuf else None)


# -- answers ---------------------------------------------------------------------------------

# google.rpc.Code for the HTTP statuses the collector answers with (OTLP clients go by the
# HTTP status; the code is for people and tools reading the body). A refusal that would recur
# on every resend (bad data, too large) is INVALID_ARGUMENT, as over gRPC.
_RPC_CODES = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    403: code_pb2.PERMISSION_DENIED,
    413: code_pb2.INVALID_ARGUMENT,
    415: code_pb2.INVALID_ARGUMENT,
    429: code_pb2.RESOURCE_EXHAUSTED,
    503: code_pb2.UNAVAILABLE,
}


def export_response(batch: SpanBatch | None) -> ExportTraceServiceResponse:
    """The OTLP answer: ``partial_success`` set only when spans were rejected."""
    response = ExportTraceServiceResponse()
    if batch is not None and batch.rejected:
        response.partial_success.rejected_spans = batch.rejected
        response.partial_success.error_message = batch.error_message
    return response


def response_body(batch: SpanBatch | None, json_response: bool) -> tuple[bytes, str]:
    """``export_response`` encoded like the request: (body, media type)."""
    return _encode(export_response(batch), json_response)


def error_status(rpc_code: int, message: str, retry_after_s: int | None = None) -> Any:
    """A google.rpc.Status, with the details the OTLP spec suggests.

    INVALID_ARGUMENT carries a google.rpc.BadRequest (the data is wrong: do not retry), and a
    refusal to come back later a google.rpc.RetryInfo with the delay.
    """
    status = status_pb2.Status(code=rpc_code, message=message)
    if rpc_code == code_pb2.INVALID_ARGUMENT:
        bad = error_details_pb2.BadRequest()
        bad.field_violations.add(field="resource_spans", description=message)
        status.details.add().Pack(bad)
    if retry_after_s is not None:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.seconds = retry_after_s
        status.details.add().Pack(retry)
    return status


def error_body(
    http_status: int, message: str, json_response: bool, retry_after_s: int | None = None
) -> tuple[bytes, str]:
    """The body of an OTLP/HTTP error answer: ``error_status`` encoded like the request."""
    status = error_status(_RPC_CODES.get(http_status, code_pb2.UNKNOWN), message, retry_after_s)
    return _encode(status, json_response)


def _encode(message: Any, as_json: bool) -> tuple[bytes, str]:
    if as_json:
        return json.dumps(json_format.MessageToDict(message)).encode(), JSON_MEDIA
    return message.SerializeToString(), PROTOBUF_MEDIA


def hex_id(raw: bytes) -> str:
    """Ids in lowercase hex, as OTLP JSON writes them."""
    return binascii.hexlify(raw).decode()
