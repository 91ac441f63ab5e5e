"""OTLP/HTTP protobuf export without protobuf: a small encoder and a keep-alive ``http.client`` sender.

Why: OpenTelemetry's OTLP/HTTP exporter pulls ``requests`` and the generated protobuf classes,
about 50 ms of a Lambda cold start. The wire format of ``ExportTraceServiceRequest`` is small
(varints, fixed64 times, length-delimited strings and messages), so spans are encoded here
directly, field for field as the SDK's encoder writes them (field numbers from
``opentelemetry/proto/trace/v1/trace.proto`` and ``common/v1/common.proto``).

The encoder reads spans through the attributes the SDK's ``ReadableSpan`` has (``context``,
``parent``, ``attributes``, ``events``, ``links``, ``status``, ``resource``,
``instrumentation_scope``…), so it serves hoptrace's own spans and the SDK's alike.
"""

from __future__ import annotations

import http.client
import os
import socket
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from .guard import logger

PROTOBUF = "application/x-protobuf"
DEFAULT_ENDPOINT = "http://localhost:4318/v1/traces"

# Span.flags: bit 8 says whether bit 9 (the parent is remote) is known.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack
_pack_double = struct.Struct("<d").pack


# --- protobuf primitives -----------------------------------------------------------------


def _varint(out: bytearray, n: int) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _bytes_field(out: bytearray, tag: int, data: bytes | bytearray) -> None:
    """A length-delimited field; ``tag`` is ``field_number << 3 | 2``."""
    out.append(tag)
    _varint(out, len(data))
    out += data


def _string_field(out: bytearray, tag: int, text: str) -> None:
    if text:
        _bytes_field(out, tag, text.encode("utf-8", "surrogatepass"))


# --- OTLP messages -----------------------------------------------------------------------


def _any_value(value: Any) -> bytearray:
    """``AnyValue``: string 1, bool 2, int 3, double 4, array 5, kvlist 6, bytes 7."""
    out = bytearray()
    if value is None:
        return out
    kind = type(value)
    if kind is str:
        _bytes_field(out, 0x0A, value.encode("utf-8", "surrogatepass"))
    elif kind is bool:
        out.append(0x10)
        out.append(1 if value else 0)
    elif kind is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            out.append(0x18)
            _varint(out, value & 0xFFFFFFFFFFFFFFFF)
        else:  # beyond int64: the protobuf encoder would refuse the whole batch; keep it as text
            _bytes_field(out, 0x0A, str(value).encode())
    elif kind is float:
        out.append(0x21)
        out += _pack_double(value)
    elif isinstance(value, (bytes, bytearray)):
        _bytes_field(out, 0x3A, value)
    elif isinstance(value, str):
        _bytes_field(out, 0x0A, value.encode("utf-8", "surrogatepass"))
    elif isinstance(value, bool):
        out.append(0x10)
        out.append(1 if value else 0)
    elif isinstance(value, int):
        return _any_value(int(value))
    elif isinstance(value, float):
        return _any_value(float(value))
    elif isinstance(value, Mapping):
        kvlist = bytearray()
        for k, v in value.items():
            _bytes_field(kvlist, 0x0A, _key_value(str(k), v))
        _bytes_field(out, 0x32, kvlist)
    elif isinstance(value, Sequence):
        array = bytearray()
        for item in value:
            _bytes_field(array, 0x0A, _any_value(item))
        _bytes_field(out, 0x2A, array)
    else:
        raise TypeError(f"cannot encode a {type(value).__name__} as an OTLP attribute value")
    return out


def _key_value(key: str, value: Any) -> bytearray:
    """``KeyValue``: key 1, value 2."""
    out = bytearray()
    _string_field(out, 0x0A, key)
    _bytes_field(out, 0x12, _any_value(value))
    return out


def _attributes(out: bytearray, tag: int, attributes: Mapping[str, Any] | None) -> None:
    if not attributes:
        return
    # A snapshot (one C call): the watchdog thread may export a span the handler is still writing to.
    for key, value in list(attributes.items()):
        try:
            encoded = _key_value(key, value)
        except Exception:  # one odd value must not cost the span
            logger.debug("hoptrace: could not encode attribute %r", key, exc_info=True)
            continue
        _bytes_field(out, tag, encoded)


def _flags(parent: Any) -> int:
    return _HAS_IS_REMOTE | _IS_REMOTE if parent is not None and parent.is_remote else _HAS_IS_REMOTE


def _trace_state(state: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in state.items()) if state else ""


def encode_span(span: Any) -> bytearray:
    """One ``Span`` message (trace.proto field numbers in the comments)."""
    out = bytearray()
    ctx = span.context
    _bytes_field(out, 0x0A, ctx.trace_id.to_bytes(16, "big"))  # 1 trace_id
    _bytes_field(out, 0x12, ctx.span_id.to_bytes(8, "big"))  # 2 span_id
    _string_field(out, 0x1A, _trace_state(ctx.trace_state))  # 3 trace_state
    parent = span.parent
    if parent is not None:
        _bytes_field(out, 0x22, parent.span_id.to_bytes(8, "big"))  # 4 parent_span_id
    _string_field(out, 0x2A, span.name)  # 5 name
    out.append(0x30)  # 6 kind: the API's SpanKind counts from INTERNAL = 0, OTLP from UNSPECIFIED = 0
    _varint(out, span.kind.value + 1)
    out.append(0x39)  # 7 start_time_unix_nano
    out += _pack_fixed64(span.start_time or 0)
    out.append(0x41)  # 8 end_time_unix_nano
    out += _pack_fixed64(span.end_time or 0)
    _attributes(out, 0x4A, span.attributes)  # 9 attributes
    if span.dropped_attributes:
        out.append(0x50)  # 10 dropped_attributes_count
        _varint(out, span.dropped_attributes)
    for event in list(span.events):  # 11 events
        _bytes_field(out, 0x5A, _event(event))
    if span.dropped_events:
        out.append(0x60)  # 12 dropped_events_count
        _varint(out, span.dropped_events)
    for link in list(span.links):  # 13 links
        _bytes_field(out, 0x6A, _link(link))
    if span.dropped_links:
        out.append(0x70)  # 14 dropped_links_count
        _varint(out, span.dropped_links)
    status = span.status
    encoded_status = bytearray()
    _string_field(encoded_status, 0x12, status.description or "")  # Status.message 2
    if status.status_code.value:
        encoded_status.append(0x18)  # Status.code 3
        _varint(encoded_status, status.status_code.value)
    out += b"\x7a"  # 15 status
    _varint(out, len(encoded_status))
    out += encoded_status
    out += b"\x85\x01"  # 16 flags (fixed32; tag 133 is two bytes as a varint)
    out += _pack_fixed32(_flags(parent))
    return out


def _event(event: Any) -> bytearray:
    """``Span.Event``: time 1, name 2, attributes 3, dropped_attributes_count 4."""
    out = bytearray()
    out.append(0x09)
    out += _pack_fixed64(event.timestamp or 0)
    _string_field(out, 0x12, event.name)
    _attributes(out, 0x1A, event.attributes)
    dropped = getattr(event, "dropped_attributes", 0)
    if dropped:
        out.append(0x20)
        _varint(out, dropped)
    return out


def _link(link: Any) -> bytearray:
    """``Span.Link``: trace_id 1, span_id 2, attributes 4, dropped 5, flags 6 (as the SDK writes it)."""
    out = bytearray()
    ctx = link.context
    _bytes_field(out, 0x0A, ctx.trace_id.to_bytes(16, "big"))
    _bytes_field(out, 0x12, ctx.span_id.to_bytes(8, "big"))
    _attributes(out, 0x22, link.attributes)
    dropped = getattr(link, "dropped_attributes", 0)
    if dropped:
        out.append(0x28)
        _varint(out, dropped)
    out.append(0x35)
    out += _pack_fixed32(_flags(ctx))
    return out


def _scope(scope: Any) -> bytearray:
    """``InstrumentationScope``: name 1, version 2, attributes 3."""
    out = bytearray()
    if scope is None:
        return out
    _string_field(out, 0x0A, scope.name or "")
    _string_field(out, 0x12, scope.version or "")
    _attributes(out, 0x1A, getattr(scope, "attributes", None))
    return out


def _scope_key(scope: Any) -> Any:
    """Scopes are equal by value (the SDK makes one object per span it converts)."""
    if scope is None:
        return None
    attributes = getattr(scope, "attributes", None)
    return (scope.name, scope.version, getattr(scope, "schema_url", None), repr(attributes) if attributes else None)


def encode_request(spans: Iterable[Any]) -> bytes:
    """An ``ExportTraceServiceRequest``: spans grouped by resource, then by instrumentation scope."""
    grouped: dict[int, tuple[Any, dict[Any, tuple[Any, list[bytearray]]]]] = {}
    for span in spans:
        resource = span.resource
        scope = span.instrumentation_scope
        by_scope = grouped.setdefault(id(resource), (resource, {}))[1]
        by_scope.setdefault(_scope_key(scope), (scope, []))[1].append(encode_span(span))
    out = bytearray()
    for resource, by_scope in grouped.values():
        resource_spans = bytearray()
        encoded_resource = bytearray()
        _attributes(encoded_resource, 0x0A, resource.attributes if resource is not None else None)
        _bytes_field(resource_spans, 0x0A, encoded_resource)  # ResourceSpans.resource 1
        for scope, encoded_spans in by_scope.values():
            scope_spans = bytearray()
            _bytes_field(scope_spans, 0x0A, _scope(scope))  # ScopeSpans.scope 1
            for encoded in encoded_spans:
                _bytes_field(scope_spans, 0x12, encoded)  # ScopeSpans.spans 2
            _string_field(scope_spans, 0x1A, (getattr(scope, "schema_url", None) or ""))  # schema_url 3
            _bytes_field(resource_spans, 0x12, scope_spans)  # ResourceSpans.scope_spans 2
        _string_field(resource_spans, 0x1A, getattr(resource, "schema_url", "") or "")  # schema_url 3
        _bytes_field(out, 0x0A, resource_spans)  # ExportTraceServiceRequest.resource_spans 1
    return bytes(out)


# --- configuration -----------------------------------------------------------------------


def parse_headers(raw: str | None) -> dict[str, str]:
    """``OTEL_EXPORTER_OTLP_HEADERS``: ``key=value`` pairs, comma-separated, values URL-encoded."""
    headers: dict[str, str] = {}
    for item in (raw or "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            headers[key.strip().lower()] = unquote(value.strip())
        elif item.strip():
            logger.warning("hoptrace: ignoring %r in the OTLP headers: expected key=value", item)
    return headers


def traces_url(endpoint: str | None, env: Mapping[str, str] | None = None) -> str:
    """Where spans go: ``endpoint`` (a base URL), else the OTLP variables, else localhost:4318."""
    e = os.environ if env is None else env
    if endpoint:
        base = endpoint.rstrip("/")
        return base if base.endswith("/v1/traces") else base + "/v1/traces"
    if e.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return e["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]  # used as given, as the specification says
    if e.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return e["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    return DEFAULT_ENDPOINT


def exporter_settings(
    endpoint: str | None, headers: Mapping[str, str] | None, env: Mapping[str, str] | None = None
) -> tuple[str, dict[str, str], str | None]:
    """URL, headers and compression from ``init()`` options first, then the OTLP variables."""
    e = os.environ if env is None else env
    if headers is None:
        raw = e.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        headers = parse_headers(raw if raw is not None else e.get("OTEL_EXPORTER_OTLP_HEADERS"))
    compression = (
        e.get("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION") or e.get("OTEL_EXPORTER_OTLP_COMPRESSION") or ""
    ).strip()
    return traces_url(endpoint, e), dict(headers), (compression.lower() or None)


# Variables this exporter does not implement (TLS client set-up): with them, setup uses OpenTelemetry's.
TLS_VARIABLES = tuple(
    f"OTEL_EXPORTER_OTLP_{scope}{name}"
    for scope in ("", "TRACES_")
    for name in ("CERTIFICATE", "CLIENT_KEY", "CLIENT_CERTIFICATE")
)


def needs_otel_exporter(env: Mapping[str, str] | None = None) -> str | None:
    """The variable that asks for what only OpenTelemetry's exporter does, if any."""
    e = os.environ if env is None else env
    for name in TLS_VARIABLES:
        if e.get(name):
            return name
    compression = (
        e.get("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION") or e.get("OTEL_EXPORTER_OTLP_COMPRESSION") or ""
    ).strip()
    if compression.lower() not in ("", "none", "gzip"):
        return "OTEL_EXPORTER_OTLP_COMPRESSION"
    return None


# --- sending -----------------------------------------------------------------------------


class _Connection(http.client.HTTPConnection):
    """Resolves the host as bytes: given text, the socket module imports the IDNA codec (and
    ``unicodedata``) on first use, a few milliseconds of the first flush. No proxy tunnels."""

    def connect(self) -> None:
        host: str | bytes = self.host.encode("ascii") if self.host.isascii() else self.host
        address: Any = (host, self.port)  # bytes are a valid host for getaddrinfo; typeshed says str
        self.sock = socket.create_connection(address, self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class OtlpHttpExporter:
    """POSTs encoded spans over one keep-alive connection; ``export`` returns True on a 2xx.

    A connection the collector (or a frozen Lambda sandbox) let go stale is re-opened once
    per export. Not thread-safe: the export worker is its only caller.
    """

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
        compression: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the OTLP endpoint {url!r} is not an http:// or https:// URL")
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout = timeout_s
        self._gzip = compression == "gzip"
        self._headers = {"Content-Type": PROTOBUF, "User-Agent": "hoptrace"}
        if self._gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._headers.update(headers or {})
        self._connection: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout)
        return _Connection(self._host, self._port, timeout=self._timeout)

    def export(self, spans: Sequence[Any]) -> bool:
        return self._post(self._path, encode_request(spans))

    def export_logs(self, records: Sequence[Any]) -> bool:
        """Log records (``logs.LogRecordData``) to the same collector's ``/v1/logs``."""
        from .logs import encode_logs_request, logs_path

        return self._post(logs_path(self._path), encode_logs_request(records))

    def _post(self, path: str, body: bytes) -> bool:
        if self._gzip:
            import zlib

            compressor = zlib.compressobj(wbits=31)  # 31: the gzip container
            body = compressor.compress(body) + compressor.flush()
        deadline = time.monotonic() + self._timeout
        for attempt in (1, 2):
            fresh = self._connection is None
            try:
                if self._connection is None:
                    self._connection = self._connect()
                self._connection.timeout = max(0.05, deadline - time.monotonic())
                if self._connection.sock is not None:
                    self._connection.sock.settimeout(self._connection.timeout)
                self._connection.request("POST", path, body, self._headers)
                response = self._connection.getresponse()
                response.read()
                if response.will_close:
                    self.close()
                if 200 <= response.status < 300:
                    return True
                logger.debug("hoptrace: the collector answered %s to an export", response.status)
                return False
            except (
                http.client.RemoteDisconnected,
                ConnectionResetError,
                BrokenPipeError,
                http.client.CannotSendRequest,
            ):
                # A kept-alive connection the other side closed: one retry on a new one.
                self.close()
                if fresh or attempt == 2 or time.monotonic() >= deadline:
                    raise
            except BaseException:
                self.close()
                raise
        return False  # pragma: no cover

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

    def shutdown(self) -> None:
        self.close()
