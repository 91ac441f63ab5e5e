"""Outgoing HTTP through requests, urllib3 and http.client: one CLIENT span, context in the headers.

A real HTTP server on loopback records the headers it receives, so propagation is checked on
the wire, not on our own bookkeeping.
"""

from __future__ import annotations

import http.client
import http.server
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import urllib3
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from hoptrace.instrumentation.carriers import http as http_carrier
from tests.conftest import Tracing, free_port

pytestmark = pytest.mark.integration


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every request with the status named in its path (``/status/500``), else 200."""

    protocol_version = "HTTP/1.1"  # keep-alive, so pooled connections are reused
    received: list[dict[str, str]]

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.received.append({k.lower(): v for k, v in self.headers.items()})
        status = int(self.path.rsplit("/", 1)[-1]) if self.path.startswith("/status/") else 200
        body = b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


class Server:
    def __init__(self, httpd: http.server.ThreadingHTTPServer, received: list[dict[str, str]]) -> None:
        self.httpd = httpd
        self.received = received
        self.port = int(httpd.server_address[1])
        self.base = f"http://127.0.0.1:{self.port}"

    def only_request(self) -> dict[str, str]:
        assert len(self.received) == 1, f"expected one request, server got {len(self.received)}"
        return self.received[0]


@pytest.fixture
def server() -> Iterator[Server]:
    received: list[dict[str, str]] = []
    handler = type("Handler", (_Recorder,), {"received": received})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(httpd, received)
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def traced_http(tracing: Tracing) -> Iterator[Tracing]:
    """Tracing on and HTTP instrumented (init() may have installed it already: install is idempotent)."""
    http_carrier.install()
    try:
        yield tracing
    finally:
        http_carrier.install()  # leave it as init() leaves it, whatever a test did


def http_spans(tracing: Tracing) -> list[ReadableSpan]:
    return [s for s in tracing.spans() if s.attributes and "http.request.method" in s.attributes]


def only_http_span(tracing: Tracing) -> ReadableSpan:
    spans = http_spans(tracing)
    assert len(spans) == 1, f"expected exactly one HTTP span, got {[s.name for s in spans]}"
    return spans[0]


def assert_names_span(traceparent: str, span: ReadableSpan) -> None:
    version, trace_id, span_id, flags = traceparent.split("-")
    assert span.context is not None
    assert version == "00"
    assert trace_id == format(span.context.trace_id, "032x")
    assert span_id == format(span.context.span_id, "016x")
    assert int(flags, 16) & 0x01, "the sampled flag is set"


def unused_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    return free_port()


def test_requests_call_makes_one_client_span_named_by_its_method(traced_http: Tracing, server: Server) -> None:
    with requests.Session() as session:
        session.trust_env = False  # no proxy from the environment
        response = session.get(f"{server.base}/orders?id=7")
    assert response.status_code == 200

    span = only_http_span(traced_http)
    assert span.kind is SpanKind.CLIENT
    assert span.name == "GET"
    assert span.attributes is not None
    assert span.attributes["http.request.method"] == "GET"
    assert span.attributes["url.full"] == f"{server.base}/orders?id=7"
    assert span.attributes["server.address"] == "127.0.0.1"
    assert span.attributes["server.port"] == server.port
    assert span.attributes["http.response.status_code"] == 200
    assert span.status.status_code is StatusCode.UNSET
    assert_names_span(server.only_request()["traceparent"], span)


def test_urllib3_call_makes_one_client_span_and_propagates_it(traced_http: Tracing, server: Server) -> None:
    with urllib3.PoolManager() as pool:
        response = pool.request("POST", f"{server.base}/things", body=b'{"a": 1}')
    assert response.status == 200

    span = only_http_span(traced_http)
    assert span.kind is SpanKind.CLIENT
    assert span.name == "POST"
    assert_names_span(server.only_request()["traceparent"], span)


def test_plain_http_client_call_makes_one_client_span_and_propagates_it(traced_http: Tracing, server: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("PUT", "/items/1", body=b"x", headers={"X-Custom": "1"})
        response = conn.getresponse()
        assert response.read() == b'{"ok": true}'
    finally:
        conn.close()

    span = only_http_span(traced_http)
    assert span.name == "PUT"
    assert span.attributes is not None
    assert span.attributes["url.full"] == f"{server.base}/items/1"
    assert span.attributes["http.response.status_code"] == 200
    received = server.only_request()
    assert received["x-custom"] == "1"
    assert_names_span(received["traceparent"], span)


def test_headers_sent_one_by_one_with_putheader_still_get_traceparent(traced_http: Tracing, server: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.putrequest("GET", "/manual")
        conn.putheader("Accept", "application/json")
        conn.endheaders()
        conn.getresponse().read()
    finally:
        conn.close()

    assert_names_span(server.only_request()["traceparent"], only_http_span(traced_http))


def test_each_request_on_a_reused_connection_gets_its_own_span(traced_http: Tracing, server: Server) -> None:
    with requests.Session() as session:
        session.trust_env = False
        session.get(f"{server.base}/one")
        session.get(f"{server.base}/two")

    spans = sorted(http_spans(traced_http), key=lambda s: s.start_time or 0)
    assert [s.attributes and s.attributes["url.full"] for s in spans] == [f"{server.base}/one", f"{server.base}/two"]
    assert len(server.received) == 2
    for span, received in zip(spans, server.received):
        assert_names_span(received["traceparent"], span)


def test_span_is_a_child_of_the_current_span(traced_http: Tracing, server: Server) -> None:
    with traced_http.state.tracer.start_as_current_span("handler") as parent:
        requests.get(f"{server.base}/child", timeout=5)

    span = only_http_span(traced_http)
    assert span.parent is not None
    assert span.parent.span_id == parent.get_span_context().span_id
    assert span.context is not None and span.context.trace_id == parent.get_span_context().trace_id


def test_server_error_marks_the_span_as_error_with_the_status_code(traced_http: Tracing, server: Server) -> None:
    response = requests.get(f"{server.base}/status/500", timeout=5)
    assert response.status_code == 500  # the caller's result is untouched

    span = only_http_span(traced_http)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 500
    assert span.attributes["error.type"] == "500"


def test_client_error_status_is_an_error_of_a_client_span(traced_http: Tracing, server: Server) -> None:
    requests.get(f"{server.base}/status/404", timeout=5)

    span = only_http_span(traced_http)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"] == "404"


def test_refused_connection_reaches_the_caller_and_is_recorded_on_the_span(traced_http: Tracing) -> None:
    port = unused_port()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    with pytest.raises(ConnectionRefusedError):
        conn.request("GET", "/")
    conn.close()

    span = only_http_span(traced_http)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "ConnectionRefusedError"
    assert span.attributes["url.full"] == f"http://127.0.0.1:{port}/"
    assert [e.name for e in span.events] == ["exception"]
    assert span.events[0].attributes is not None
    assert span.events[0].attributes["exception.type"] == "ConnectionRefusedError"


def test_refused_connection_through_requests_raises_requests_own_error(traced_http: Tracing) -> None:
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{unused_port()}/", timeout=5)

    span = only_http_span(traced_http)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"] == "NewConnectionError"


def test_connection_error_is_re_raised_as_the_very_same_object(traced_http: Tracing) -> None:
    failure = OSError("network is unreachable (test)")

    class Unreachable(http.client.HTTPConnection):
        def connect(self) -> None:
            raise failure

    conn = Unreachable("198.51.100.1", 80)
    with pytest.raises(OSError) as caught:
        conn.request("GET", "/")
    assert caught.value is failure
    assert only_http_span(traced_http).attributes["error.type"] == "OSError"  # type: ignore[index]


def test_traceparent_set_by_the_caller_is_not_overwritten(traced_http: Tracing, server: Server) -> None:
    theirs = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    requests.get(f"{server.base}/", headers={"traceparent": theirs}, timeout=5)

    received = server.only_request()
    assert received["traceparent"] == theirs
    assert "tracestate" not in received
    assert len(http_spans(traced_http)) == 1  # still traced, just not re-parented


def test_request_signed_with_sigv4_is_left_alone(traced_http: Tracing, server: Server) -> None:
    signature = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/sqs/aws4_request, Signature=abc"
    requests.post(f"{server.base}/", data=b"{}", headers={"Authorization": signature}, timeout=5)

    assert "traceparent" not in server.only_request()
    assert http_spans(traced_http) == []


def test_other_authorization_schemes_are_traced(traced_http: Tracing, server: Server) -> None:
    requests.get(f"{server.base}/", headers={"Authorization": "Bearer abc"}, timeout=5)

    assert "traceparent" in server.only_request()
    assert len(http_spans(traced_http)) == 1


def test_boto3_call_to_moto_makes_no_http_span(traced_http: Tracing, boto_session: Any) -> None:
    sqs = boto_session.client("sqs")
    url = sqs.create_queue(QueueName="http-propagation-test")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="hello")

    # botocore's hooks describe the call; the signed HTTP request under it is not traced twice.
    assert http_spans(traced_http) == []


def test_boto3_request_reaches_the_wire_without_traceparent(traced_http: Tracing, server: Server) -> None:
    import boto3

    client: Any = boto3.session.Session(region_name="us-east-1").client("sqs", endpoint_url=server.base)
    try:
        client.list_queues()
    except Exception:  # our recorder is not SQS; only the request it received matters
        pass

    assert server.received, "botocore did not reach the recording server"
    for received in server.received:
        assert received["authorization"].startswith("AWS4-")
        assert "traceparent" not in received
    assert http_spans(traced_http) == []


def test_requests_under_the_suppress_key_are_not_traced(traced_http: Tracing, server: Server) -> None:
    token = otel_context.attach(otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        requests.get(f"{server.base}/", timeout=5)
    finally:
        otel_context.detach(token)

    assert "traceparent" not in server.only_request()
    assert http_spans(traced_http) == []


def test_nothing_is_traced_before_hoptrace_is_initialised(server: Server) -> None:
    from hoptrace.instrumentation import setup

    setup.shutdown()
    http_carrier.install()
    requests.get(f"{server.base}/", timeout=5)

    assert setup.state() is None
    assert "traceparent" not in server.only_request()


def test_nothing_is_traced_after_uninstall(traced_http: Tracing, server: Server) -> None:
    http_carrier.uninstall()
    assert not http_carrier.installed()
    requests.get(f"{server.base}/", timeout=5)

    assert "traceparent" not in server.only_request()
    assert http_spans(traced_http) == []


def test_install_twice_still_makes_one_span(traced_http: Tracing, server: Server) -> None:
    http_carrier.install()
    http_carrier.install()
    requests.get(f"{server.base}/", timeout=5)

    assert len(http_spans(traced_http)) == 1
    assert len(server.received) == 1


def test_uninstall_then_install_traces_again(traced_http: Tracing, server: Server) -> None:
    http_carrier.uninstall()
    http_carrier.uninstall()
    http_carrier.install()
    requests.get(f"{server.base}/", timeout=5)

    assert http_carrier.installed()
    assert_names_span(server.only_request()["traceparent"], only_http_span(traced_http))


def test_a_bug_in_tracing_does_not_break_the_request(
    traced_http: Tracing, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hoptrace.instrumentation import guard

    def broken(*_: Any, **__: Any) -> dict[str, str]:
        raise RuntimeError("bug in tracing")

    monkeypatch.setattr(http_carrier, "headers_for", broken)
    guard.reset_stats()
    response = requests.get(f"{server.base}/", timeout=5)

    assert response.status_code == 200
    assert guard.stats().get("internal_errors.http.start") == 1


def test_credentials_in_a_proxied_url_are_not_recorded(traced_http: Tracing, server: Server) -> None:
    # A forwarding proxy receives the absolute URL; our recorder plays the proxy.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", "http://user:pa55@example.com/file?Signature=s3cr3t&x=1")
        conn.getresponse().read()
    finally:
        conn.close()

    span = only_http_span(traced_http)
    assert span.attributes is not None
    assert span.attributes["url.full"] == "http://REDACTED:REDACTED@example.com/file?Signature=REDACTED&x=1"
    assert span.attributes["server.address"] == "example.com"
    assert span.attributes["server.port"] == 80


def test_closed_socket_before_response_ends_the_span(traced_http: Tracing) -> None:
    # A server that accepts and hangs up without answering.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def hang_up() -> None:
        client, _ = listener.accept()
        client.recv(65536)
        client.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/")
        with pytest.raises(http.client.RemoteDisconnected):
            conn.getresponse()
    finally:
        conn.close()
        listener.close()
        thread.join(5)

    span = only_http_span(traced_http)
    assert span.end_time is not None
    assert span.attributes is not None and span.attributes["error.type"] == "RemoteDisconnected"
