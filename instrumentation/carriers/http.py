"""Outgoing HTTP: one CLIENT span per request and W3C ``traceparent`` in its headers.

Patched at the level everything shares: the standard library's ``http.client.HTTPConnection``.
``http.client``'s own ``request()``, urllib3 1.x and 2.x (whose ``HTTPConnection.request`` calls
``putrequest``/``putheader``/``endheaders`` itself) and therefore ``requests`` all go through
these four steps, once per request:

- ``putrequest``  decide whether to trace (hoptrace initialised, not suppressed);
- ``putheader``   watch for an existing ``traceparent`` or a SigV4 ``Authorization``;
- ``endheaders``  start the span and add ``traceparent``/``tracestate`` just before the headers
                  are sent (this also connects, so connection errors end the span here);
- ``getresponse`` record the status code and end the span.

Requests signed with AWS SigV4 are left alone: botocore calls already have their own span,
and a header added after signing is at best noise. So are requests made while OpenTelemetry's
suppress-instrumentation key is set (the exporter's own requests).

Known limit: urllib3 opens HTTPS connections before sending the request, so a TLS connection
that cannot be established through urllib3 fails before ``putrequest`` and has no span.
"""

from __future__ import annotations

import http.client
import re
import sys
import threading
from typing import Any, Callable

from opentelemetry import context as otel_context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from .. import setup
from ..guard import guarded
from .w3c import headers_for

# The methods patched on http.client.HTTPConnection; originals are kept here for good, so a
# request in flight in another thread still finds them after uninstall().
_PATCHED = ("putrequest", "putheader", "endheaders", "getresponse", "close")
_original: dict[str, Callable[..., Any]] = {}
_install_lock = threading.Lock()

# Per-connection state of the request being sent: one request at a time per connection.
_REQUEST_ATTR = "_hoptrace_http_request"

_SUPPRESS_KEYS = tuple(
    key
    for key in (
        getattr(otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", None),
        # Set by OpenTelemetry's requests/urllib3/botocore instrumentations around their own span.
        getattr(otel_context, "_SUPPRESS_HTTP_INSTRUMENTATION_KEY", None),
    )
    if key is not None
)

_KNOWN_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE", "QUERY"})
_USERINFO = re.compile(r"^(https?://)[^/?#@]*@")
# Query parameters semantic conventions ask to redact in url.full (presigned URLs).
_SENSITIVE_QUERY = re.compile(
    r"([?&](?:AWSAccessKeyId|Signature|sig|X-Goog-Signature|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token)=)"
    r"[^&#]*"
)


class _Request:
    """What is known of the request being written on one connection."""

    __slots__ = ("has_traceparent", "method", "signed", "span", "target")

    def __init__(self, method: str, target: str) -> None:
        self.method = method
        self.target = target
        self.signed = False  # carries a SigV4 Authorization header: leave it alone
        self.has_traceparent = False  # the caller propagates context itself
        self.span: Span | None = None


# --- the patched methods: call the original untouched, tracing only inside the guard ---


def _putrequest(self: http.client.HTTPConnection, method: str, url: str, *args: Any, **kwargs: Any) -> None:
    _original["putrequest"](self, method, url, *args, **kwargs)
    _begin(self, method, url)


def _putheader(self: http.client.HTTPConnection, header: str | bytes, *values: Any) -> None:
    _original["putheader"](self, header, *values)
    request = getattr(self, _REQUEST_ATTR, None)
    if request is not None:
        _note_header(request, header, values)


def _endheaders(self: http.client.HTTPConnection, *args: Any, **kwargs: Any) -> None:
    request = getattr(self, _REQUEST_ATTR, None)
    if request is None:
        return _original["endheaders"](self, *args, **kwargs)  # type: ignore[no-any-return]
    _start(self, request)
    try:
        _original["endheaders"](self, *args, **kwargs)
    except BaseException as exc:
        _end_failed(self, request, exc)
        raise  # the caller's exception, unchanged


def _getresponse(self: http.client.HTTPConnection, *args: Any, **kwargs: Any) -> Any:
    request = getattr(self, _REQUEST_ATTR, None)
    if request is None:
        return _original["getresponse"](self, *args, **kwargs)
    # Forget the request first: getresponse() itself may close() the connection.
    _forget(self)
    try:
        response = _original["getresponse"](self, *args, **kwargs)
    except BaseException as exc:
        _end_failed(self, request, exc)
        raise
    _end_with_response(request, response)
    return response


def _close(self: http.client.HTTPConnection) -> None:
    request = getattr(self, _REQUEST_ATTR, None)
    if request is not None:
        _end_abandoned(self, request)
    _original["close"](self)


_WRAPPERS: dict[str, Callable[..., Any]] = {
    "putrequest": _putrequest,
    "putheader": _putheader,
    "endheaders": _endheaders,
    "getresponse": _getresponse,
    "close": _close,
}


# --- tracing, each step guarded: a bug here must never break the request ---


@guarded("http.begin")
def _begin(conn: http.client.HTTPConnection, method: str, url: str) -> None:
    stale = getattr(conn, _REQUEST_ATTR, None)
    if stale is not None:  # a request whose response was never read; should not happen
        _end_abandoned(conn, stale)
    st = setup.state()
    if st is None or not st.config.enabled or _suppressed():
        return
    setattr(conn, _REQUEST_ATTR, _Request(method, url))


@guarded("http.header")
def _note_header(request: _Request, header: str | bytes, values: tuple[Any, ...]) -> None:
    name = header.lower() if isinstance(header, str) else header.decode("latin-1").lower()
    if name == "traceparent":
        request.has_traceparent = True
    elif name == "authorization" and values:
        value = values[0]
        if isinstance(value, (bytes, bytearray)):
            request.signed = value.startswith(b"AWS4-")
        else:
            request.signed = str(value).startswith("AWS4-")


@guarded("http.start")
def _start(conn: http.client.HTTPConnection, request: _Request) -> None:
    st = setup.state()
    if request.signed or st is None:
        _forget(conn)
        return
    known = request.method in _KNOWN_METHODS
    url_full, host, port = _target(conn, request.target)
    attributes: dict[str, Any] = {
        "http.request.method": request.method if known else "_OTHER",
        "url.full": url_full,
        "server.address": host,
        "server.port": port,
    }
    if not known:
        attributes["http.request.method_original"] = request.method
    span = st.tracer.start_span(request.method if known else "HTTP", kind=SpanKind.CLIENT, attributes=attributes)
    request.span = span
    if not request.has_traceparent:
        for key, value in headers_for(span).items():
            _original["putheader"](conn, key, value)


@guarded("http.response")
def _end_with_response(request: _Request, response: Any) -> None:
    span = request.span
    if span is None:
        return
    status = int(response.status)
    span.set_attribute("http.response.status_code", status)
    if status >= 400:  # client span rules: 4xx is an error of this call too
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR))
    span.end()


@guarded("http.failure")
def _end_failed(conn: http.client.HTTPConnection, request: _Request, exc: BaseException) -> None:
    _forget(conn)
    span = request.span
    if span is None:
        return
    span.record_exception(exc)
    span.set_attribute("error.type", type(exc).__qualname__)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    span.end()


@guarded("http.abandon")
def _end_abandoned(conn: http.client.HTTPConnection, request: _Request) -> None:
    """The connection closed (or was reused) before a response: urllib3 does this on errors."""
    _forget(conn)
    span = request.span
    if span is None:
        return
    exc = sys.exc_info()[1]  # the error being handled when the caller closed, if any
    if exc is not None:
        _end_failed(conn, request, exc)
        return
    span.set_attribute("hoptrace.http.no_response", True)
    span.end()


def _forget(conn: http.client.HTTPConnection) -> None:
    if getattr(conn, _REQUEST_ATTR, None) is not None:
        setattr(conn, _REQUEST_ATTR, None)


def _suppressed() -> bool:
    return any(otel_context.get_value(key) for key in _SUPPRESS_KEYS)


def _target(conn: http.client.HTTPConnection, target: str) -> tuple[str, str, int]:
    """``url.full``, ``server.address`` and ``server.port`` of a request on ``conn``."""
    if target.startswith(("http://", "https://")):  # absolute form: sent through a forwarding proxy
        from urllib.parse import urlsplit

        parts = urlsplit(target)
        scheme = parts.scheme
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        return _redact_url(target), host, port
    scheme = "https" if getattr(conn, "default_port", 80) == 443 else "http"
    tunnel_host = getattr(conn, "_tunnel_host", None)  # HTTPS through a CONNECT proxy
    host = str(tunnel_host or conn.host)
    port = (getattr(conn, "_tunnel_port", None) if tunnel_host else conn.port) or (443 if scheme == "https" else 80)
    authority = f"[{host}]" if ":" in host else host
    if port != (443 if scheme == "https" else 80):
        authority = f"{authority}:{port}"
    path = target if target.startswith("/") else ""
    return _redact_url(f"{scheme}://{authority}{path}"), host, int(port)


def _redact_url(url: str) -> str:
    """Drop credentials from a URL, as the semantic conventions ask for ``url.full``."""
    if "@" in url:
        url = _USERINFO.sub(r"\1REDACTED:REDACTED@", url)
    if "?" in url:
        url = _SENSITIVE_QUERY.sub(r"\1REDACTED", url)
    return url


# --- lifecycle ---


def install() -> None:
    """Trace outgoing requests of http.client, urllib3 and requests; safe to call again."""
    with _install_lock:
        cls = http.client.HTTPConnection
        for name in _PATCHED:
            current = getattr(cls, name)
            if current is _WRAPPERS[name]:
                continue
            _original[name] = current
            setattr(cls, name, _WRAPPERS[name])


def uninstall() -> None:
    """Restore http.client; requests already in flight finish untraced or with their span."""
    with _install_lock:
        cls = http.client.HTTPConnection
        for name in _PATCHED:
            if getattr(cls, name) is _WRAPPERS[name] and name in _original:
                setattr(cls, name, _original[name])


def installed() -> bool:
    """Whether outgoing HTTP is currently traced."""
    return http.client.HTTPConnection.putrequest is _WRAPPERS["putrequest"]  # type: ignore[comparison-overlap]
