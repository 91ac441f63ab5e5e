"""hoptrace's own OTLP protobuf encoder writes exactly what OpenTelemetry's encoder writes.

Spans are made with hoptrace's span machinery, encoded by ``hoptrace.instrumentation.otlp``, and
the bytes are parsed back with opentelemetry-proto's ``ExportTraceServiceRequest`` and with the
collector's own decoder; they must equal the SDK encoder's output for the same spans, field by
field.
"""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from hoptrace.instrumentation import otlp, spans


class Collect:
    """A span processor that keeps what ended."""

    def __init__(self) -> None:
        self.ended: list[spans.Span] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: Any) -> None:
        self.ended.append(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def shutdown(self) -> None:
        pass


EVERY_TYPE: dict[str, Any] = {
    "str": "héllo ✓",
    "empty": "",
    "bool.true": True,
    "bool.false": False,
    "int": 42,
    "int.zero": 0,
    "int.negative": -7,
    "int.min": -(1 << 63),
    "int.max": (1 << 63) - 1,
    "float": 2.5,
    "float.negative": -0.125,
    "bytes": b"\x00\xffraw",
    "list.str": ["a", "b"],
    "list.int": [1, -2, 3],
    "list.float": [1.5, 2.0],
    "list.bool": [True, False],
    "list.empty": [],
    "map": {"k": "v", "n": 1, "nested": {"deep": [1, "x"]}},
}


def make_spans() -> tuple[list[spans.Span], spans.TracerProvider]:
    processor = Collect()
    resource = spans.resource_from_env(
        {"service.name": "checkout", "faas.max_memory": 256 * 1024 * 1024, "cloud.region": "eu-west-1"},
        "0.1.0",
        env={"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=a%20b"},
    )
    provider = spans.TracerProvider(resource, processor)
    tracer = provider.get_tracer("hoptrace")
    other = provider.get_tracer("user.module", "1.2.3", attributes={"scope.attr": "x"})
    remote = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "opaque"), ("rojo", "00f067aa0ba902b7")]),
    )
    linked = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    root = tracer.start_span(
        "orders process",
        context=trace.set_span_in_context(trace.NonRecordingSpan(remote)),
        kind=SpanKind.CONSUMER,
        attributes=EVERY_TYPE,
        links=[Link(linked, {"hoptrace.link.type": "producer", "n": 3}), Link(remote)],
    )
    root.add_event("checkpoint", {"step": 1, "ok": True}, timestamp=1_700_000_000_000_000_123)
    try:
        raise ValueError("bad order")
    except ValueError as exc:
        root.record_exception(exc)
    root.set_status(Status(StatusCode.ERROR, "ValueError: bad order"))
    token = otel_context.attach(trace.set_span_in_context(root))
    try:
        for kind in (SpanKind.INTERNAL, SpanKind.SERVER, SpanKind.CLIENT, SpanKind.PRODUCER):
            with other.start_as_current_span(f"child {kind.name}", kind=kind) as child:
                child.set_attribute("kind", kind.name)
        ok = tracer.start_span("ok")
        ok.set_status(StatusCode.OK)
        ok.end()
    finally:
        otel_context.detach(token)
    root.end()
    lone = tracer.start_span("lone", context=otel_context.Context(), start_time=1, attributes={"x": 1})
    lone.end(end_time=2)
    return processor.ended, provider


def sdk_encoding(ended: list[spans.Span]) -> ExportTraceServiceRequest:
    return encode_spans([spans.to_readable(s) for s in ended])


def parsed(data: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.ParseFromString(data)
    return request


def test_the_encoding_equals_the_sdk_encoders_field_by_field() -> None:
    ended, _ = make_spans()
    ours = parsed(otlp.encode_request(ended))
    theirs = sdk_encoding(ended)
    assert len(ours.resource_spans) == len(theirs.resource_spans) == 1
    ours_rs, theirs_rs = ours.resource_spans[0], theirs.resource_spans[0]
    assert ours_rs.resource == theirs_rs.resource
    assert [s.scope for s in ours_rs.scope_spans] == [s.scope for s in theirs_rs.scope_spans]
    for ours_scope, theirs_scope in zip(ours_rs.scope_spans, theirs_rs.scope_spans):
        assert len(ours_scope.spans) == len(theirs_scope.spans)
        for a, b in zip(ours_scope.spans, theirs_scope.spans):
            for field in b.DESCRIPTOR.fields:
                assert getattr(a, field.name) == getattr(b, field.name), f"{b.name}: {field.name} differs"
    assert ours == theirs


def test_every_attribute_type_decodes_to_its_value() -> None:
    ended, _ = make_spans()
    request = parsed(otlp.encode_request(ended))
    (root,) = [s for ss in request.resource_spans[0].scope_spans for s in ss.spans if s.name == "orders process"]
    values = {kv.key: kv.value for kv in root.attributes}
    assert values["str"].string_value == "héllo ✓"
    assert values["empty"].WhichOneof("value") == "string_value" and values["empty"].string_value == ""
    assert values["bool.true"].bool_value is True
    assert values["bool.false"].WhichOneof("value") == "bool_value" and values["bool.false"].bool_value is False
    assert values["int"].int_value == 42
    assert values["int.zero"].WhichOneof("value") == "int_value"
    assert values["int.negative"].int_value == -7
    assert values["int.min"].int_value == -(1 << 63)
    assert values["int.max"].int_value == (1 << 63) - 1
    assert values["float"].double_value == 2.5
    assert values["bytes"].bytes_value == b"\x00\xffraw"
    assert [v.string_value for v in values["list.str"].array_value.values] == ["a", "b"]
    assert [v.int_value for v in values["list.int"].array_value.values] == [1, -2, 3]
    assert [v.bool_value for v in values["list.bool"].array_value.values] == [True, False]
    assert values["list.empty"].WhichOneof("value") == "array_value"
    nested = {kv.key: kv.value for kv in values["map"].kvlist_value.values}
    assert nested["k"].string_value == "v" and nested["n"].int_value == 1
    assert root.trace_state == "vendor=opaque,rojo=00f067aa0ba902b7"
    assert root.parent_span_id == (0xB7AD6B7169203331).to_bytes(8, "big")
    assert root.flags == 0x300  # the parent is known to be remote
    assert root.kind == 5  # SPAN_KIND_CONSUMER
    assert root.status.code == 2 and root.status.message == "ValueError: bad order"
    assert [e.name for e in root.events] == ["checkpoint", "exception"]
    assert root.events[0].time_unix_nano == 1_700_000_000_000_000_123
    assert {kv.key for kv in root.events[1].attributes} >= {
        "exception.type",
        "exception.message",
        "exception.stacktrace",
    }
    assert [link.span_id for link in root.links] == [
        (0x5678).to_bytes(8, "big"),
        (0xB7AD6B7169203331).to_bytes(8, "big"),
    ]
    assert root.links[0].attributes[0].key == "hoptrace.link.type"


def test_integers_beyond_int64_become_text_instead_of_failing_the_batch() -> None:
    ended, _ = make_spans()
    ended[-1].attributes["huge"] = 1 << 70
    request = parsed(otlp.encode_request(ended[-1:]))
    values = {kv.key: kv.value for kv in request.resource_spans[0].scope_spans[0].spans[0].attributes}
    assert values["huge"].string_value == str(1 << 70)


def test_the_collector_decodes_and_accepts_every_span() -> None:
    from hoptrace.collector import otlp as collector_otlp

    ended, _ = make_spans()
    request, rejected = collector_otlp.parse_request(otlp.encode_request(ended), "application/x-protobuf")
    assert rejected == []
    assert request == sdk_encoding(ended)
    names = sorted(s.name for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans)
    assert names == sorted(s.name for s in ended)


def test_sdk_spans_encode_the_same_as_ours() -> None:
    ended, _ = make_spans()
    readable = [spans.to_readable(s) for s in ended]
    assert parsed(otlp.encode_request(readable)) == parsed(otlp.encode_request(ended))


class _Receiver:
    """An OTLP/HTTP receiver on loopback that keeps bodies and headers, and can close connections."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.status = status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.bodies.append(body)
                receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_exporter_posts_protobuf_with_headers_and_gzip() -> None:
    receiver = _Receiver()
    try:
        ended, _ = make_spans()
        exporter = otlp.OtlpHttpExporter(receiver.url, {"x-token": "t-1"}, 5.0, "gzip")
        assert exporter.export(ended)
        assert exporter.export(ended[:1])  # the same kept-alive connection
        exporter.shutdown()
        assert receiver.headers[0]["content-type"] == "application/x-protobuf"
        assert receiver.headers[0]["content-encoding"] == "gzip"
        assert receiver.headers[0]["x-token"] == "t-1"
        assert parsed(gzip.decompress(receiver.bodies[0])) == sdk_encoding(ended)
    finally:
        receiver.close()


def test_the_exporter_reports_a_refusal_and_an_unreachable_collector_as_failures() -> None:
    receiver = _Receiver(status=503)
    try:
        ended, _ = make_spans()
        assert otlp.OtlpHttpExporter(receiver.url, timeout_s=2.0).export(ended) is False
    finally:
        receiver.close()
    with pytest.raises(OSError):
        otlp.OtlpHttpExporter(receiver.url, timeout_s=0.5).export(ended)


def test_a_connection_the_collector_closed_is_reopened_once() -> None:
    receiver = _Receiver()
    try:
        ended, _ = make_spans()
        exporter = otlp.OtlpHttpExporter(receiver.url, timeout_s=2.0)
        assert exporter.export(ended)
        assert exporter._connection is not None and exporter._connection.sock is not None
        exporter._connection.sock.close()  # what a frozen sandbox finds after the idle timeout
        exporter._connection.sock = None
        assert exporter.export(ended)
        assert len(receiver.bodies) == 2
    finally:
        receiver.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ("http://localhost:4318/v1/traces", {}, None)),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/",
                "OTEL_EXPORTER_OTLP_HEADERS": "a=1,Authorization=Bearer%20x",
            },
            ("http://c:4318/v1/traces", {"a": "1", "authorization": "Bearer x"}, None),
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://c/custom", "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"},
            ("https://c/custom", {}, "gzip"),
        ),
    ],
)
def test_exporter_settings_follow_the_otlp_variables(env: dict[str, str], expected: tuple[Any, ...]) -> None:
    assert otlp.exporter_settings(None, None, env) == expected


def test_init_options_win_over_the_variables() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318", "OTEL_EXPORTER_OTLP_HEADERS": "a=1"}
    assert otlp.exporter_settings("http://given:4318", {"b": "2"}, env) == (
        "http://given:4318/v1/traces",
        {"b": "2"},
        None,
    )


def test_tls_client_settings_are_left_to_opentelemetrys_exporter() -> None:
    assert otlp.needs_otel_exporter({"OTEL_EXPORTER_OTLP_CERTIFICATE": "/ca.pem"}) == "OTEL_EXPORTER_OTLP_CERTIFICATE"
    assert otlp.needs_otel_exporter({"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}) is None
