"""Real OpenTelemetry SDKs exporting to ``hoptrace serve``, found again through the query API.

What a new user does (issue 3, "Done when"): create a project, point an SDK at the collector
with the ingest token in ``OTEL_EXPORTER_OTLP_HEADERS``, then read the spans back with the read
token. The Python SDK's exporters (http/protobuf, http/json) run in this process behind a
``BatchSpanProcessor``; the JavaScript SDK runs under Node.js (tests/js, installed from npm by
scripts/ensure-node.sh). Both emit the same small scene: a request, its database call (an
error) and a message consumer in a trace of its own linked to the request.

Every export goes through a recording proxy in front of the collector, so the tests also see
that the client really sent what they asked for (content type, gzip) rather than trusting a
setting.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter as JsonSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as ProtoSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from tests.collector_server import CollectorProcess
from tests.pg import create_database, drop_database

ROOT = Path(__file__).resolve().parents[2]
JS_DIR = ROOT / "tests" / "js"
MEDIA = {"protobuf": "application/x-protobuf", "json": "application/json"}
FORWARDED = ("content-type", "content-encoding", "authorization")


# -- a collector with a project, behind a recording proxy ----------------------------------------


class RecordingProxy:
    """Forwards ``POST /v1/traces`` to the collector and records each request's encoding.

    Reads both ``Content-Length`` and chunked bodies (Node's exporter streams gzip in chunks).
    """

    def __init__(self, target: str) -> None:
        self.seen: list[dict[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self._body()
                headers = {k.lower(): v for k, v in self.headers.items()}
                forward = {k: v for k, v in headers.items() if k in FORWARDED}
                proxy.seen.append({**forward, "path": self.path, "bytes": str(len(body))})
                answer = httpx.post(target + self.path, content=body, headers=forward, timeout=30)
                self.send_response(answer.status_code)
                for name in ("content-type", "retry-after"):
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def _body(self) -> bytes:
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("content-length", "0")))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-proxy", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Served:
    """A running collector with one project: where to send, and the project's tokens."""

    collector: CollectorProcess
    proxy: RecordingProxy
    ingest_token: str
    read_token: str

    def api(self) -> httpx.Client:
        """A query API client holding the project's read token."""
        return self.collector.client(headers={"Authorization": f"Bearer {self.read_token}"})


def create_project(store_url: str, name: str) -> tuple[str, str]:
    """``hoptrace project create``; returns the (ingest, read) tokens it printed."""
    result = subprocess.run(
        [sys.executable, "-m", "hoptrace.collector.cli", "project", "create", name, "--store", store_url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    tokens = dict(line.strip().split(":", 1) for line in result.stdout.splitlines() if "token:" in line)
    return tokens["ingest token"].strip(), tokens["read token"].strip()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One collector per backend for the module; each test uses its own service name."""
    server = ""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('clients') / 'clients.db'}"
    else:
        server = request.getfixturevalue("postgres_url")
        url = create_database(server)
    try:
        ingest, read = create_project(url, "shop")
        with CollectorProcess(url) as collector:
            proxy = RecordingProxy(collector.url)
            try:
                yield Served(collector, proxy, ingest, read)
            finally:
                proxy.close()
            assert "Traceback" not in collector.output(), collector.output()[-3000:]
    finally:
        if server:
            drop_database(server, url)


# -- the scene both SDKs emit, and what must arrive ----------------------------------------------


@dataclass
class Created:
    """A span as the client made it (lowercase hex ids)."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None


@dataclass
class RecordingExporter(SpanExporter):
    """Wraps the SDK's exporter to keep every export's result: BatchSpanProcessor only logs failures."""

    inner: SpanExporter
    results: list[SpanExportResult] = field(default_factory=list)
    spans: list[ReadableSpan] = field(default_factory=list)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        self.results.append(result)
        self.spans.extend(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def emit_with_python_sdk(exporter: SpanExporter, service: str) -> RecordingExporter:
    """The scene of tests/js/export-spans.mjs, through a BatchSpanProcessor; shut down after."""
    recording = RecordingExporter(exporter)
    provider = TracerProvider(resource=Resource.create({"service.name": service, "deployment.environment": "test"}))
    provider.add_span_processor(BatchSpanProcessor(recording))
    tracer = provider.get_tracer("hoptrace-python-test", "1.0.0")
    try:
        root = tracer.start_span(
            "GET /orders/{id}",
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": "GET",
                "http.route": "/orders/{id}",
                "http.response.status_code": 200,
                "hoptrace.label.order_id": f"js-{service}",
                "test.ratio": 0.25,
                "test.flag": True,
                "test.tags": ["a", "b", "c"],
            },
        )
        root.add_event("cache.miss", {"cache.key": "order:42", "cache.size": 3})
        child = tracer.start_span(
            "SELECT orders",
            context=trace.set_span_in_context(root),
            kind=SpanKind.CLIENT,
            attributes={"db.system": "postgresql", "db.operation.name": "SELECT"},
        )
        child.set_status(Status(StatusCode.ERROR, "deadlock detected"))
        child.end()
        consumer = tracer.start_span(
            "orders process",
            context=trace.set_span_in_context(trace.INVALID_SPAN),  # a trace of its own
            kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "aws_sqs", "messaging.message.id": f"msg-{service}"},
            links=[Link(root.get_span_context(), {"link.reason": "produced-by"})],
        )
        consumer.end()
        root.end()
        assert provider.force_flush(30_000), "the BatchSpanProcessor did not flush in 30 s"
    finally:
        provider.shutdown()
    return recording


def created_by_python(recording: RecordingExporter) -> list[Created]:
    return [
        Created(
            s.name,
            format(s.context.trace_id, "032x"),
            format(s.context.span_id, "016x"),
            format(s.parent.span_id, "016x") if s.parent else None,
        )
        for s in recording.spans
        if s.context is not None
    ]


def assert_scene_arrived(served: Served, service: str, created: list[Created]) -> None:
    """Everything the client made is found through the API with the read token, as it was made."""
    by_name = {c.name: c for c in created}
    assert sorted(by_name) == ["GET /orders/{id}", "SELECT orders", "orders process"], created
    root, child, consumer = by_name["GET /orders/{id}"], by_name["SELECT orders"], by_name["orders process"]
    with served.api() as api:
        labelled = api.get("/api/v1/spans", params={"label.order_id": f"js-{service}"})
        assert labelled.status_code == 200, labelled.text
        assert [(s["trace_id"], s["span_id"]) for s in labelled.json()["spans"]] == [(root.trace_id, root.span_id)]

        response = api.get(f"/api/v1/traces/{root.trace_id}")
        assert response.status_code == 200, response.text
        spans = {s["name"]: s for s in response.json()["spans"]}
        assert sorted(spans) == ["GET /orders/{id}", "SELECT orders"]
        got_root, got_child = spans["GET /orders/{id}"], spans["SELECT orders"]
        assert (got_root["span_id"], got_root["parent_span_id"]) == (root.span_id, None)
        assert (got_child["span_id"], got_child["parent_span_id"]) == (child.span_id, root.span_id)
        assert child.parent_span_id == root.span_id
        assert (got_root["kind"], got_child["kind"]) == ("SERVER", "CLIENT")
        assert got_root["service"] == service
        assert got_root["resource"]["service.name"] == service
        assert got_root["resource"]["deployment.environment"] == "test"
        assert got_root["attributes"] == {
            "http.request.method": "GET",
            "http.route": "/orders/{id}",
            "http.response.status_code": 200,
            "hoptrace.label.order_id": f"js-{service}",
            "test.ratio": 0.25,
            "test.flag": True,
            "test.tags": ["a", "b", "c"],
        }
        assert [(e["name"], e["attributes"]) for e in got_root["events"]] == [
            ("cache.miss", {"cache.key": "order:42", "cache.size": 3})
        ]
        assert got_child["status"] == {"code": "ERROR", "message": "deadlock detected"}
        assert got_child["attributes"] == {"db.system": "postgresql", "db.operation.name": "SELECT"}
        assert int(got_child["end_unix_nano"]) >= int(got_child["start_unix_nano"]) > 0

        response = api.get(f"/api/v1/traces/{consumer.trace_id}")
        assert response.status_code == 200, response.text
        (got_consumer,) = response.json()["spans"]
        assert consumer.trace_id != root.trace_id
        assert (got_consumer["span_id"], got_consumer["parent_span_id"]) == (consumer.span_id, None)
        assert got_consumer["kind"] == "CONSUMER"
        assert got_consumer["links"] == [
            {"trace_id": root.trace_id, "span_id": root.span_id, "attributes": {"link.reason": "produced-by"}}
        ]
        by_message = api.get("/api/v1/spans", params={"q": f"msg-{service}"}).json()["spans"]
        assert [s["span_id"] for s in by_message] == [consumer.span_id]
        services = {s["name"]: s for s in api.get("/api/v1/services").json()["services"]}
        assert (services[service]["spans"], services[service]["errors"]) == (3, 1)


def assert_sent(served: Served, before: int, media: str, gzip: bool) -> None:
    """What reached the proxy since ``before``: OTLP posts of that type, gzip when asked for."""
    sent = served.proxy.seen[before:]
    assert sent, "the client sent nothing"
    assert {(s["path"], s["content-type"].split(";")[0]) for s in sent} == {("/v1/traces", media)}, sent
    assert {s.get("content-encoding", "identity") for s in sent} == {"gzip" if gzip else "identity"}, sent


def otel_environment(monkeypatch: pytest.MonkeyPatch, served: Served, gzip: bool) -> None:
    """Configure the exporters as a user would: endpoint, token and compression by variable."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", served.proxy.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer%20{served.ingest_token}")
    if gzip:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")


# -- the Python SDK ------------------------------------------------------------------------------

PYTHON_CASES = [
    pytest.param("protobuf", False, id="http-protobuf"),
    pytest.param("protobuf", True, id="http-protobuf-gzip"),
    pytest.param("json", False, id="http-json"),
    pytest.param("json", True, id="http-json-gzip"),
]


@pytest.mark.parametrize("encoding, gzip", PYTHON_CASES)
def test_the_python_sdk_exporter_sends_spans_that_the_api_finds(
    served: Served, encoding: str, gzip: bool, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    otel_environment(monkeypatch, served, gzip)
    service = f"py-{request.node.callspec.id}".replace("[", "-").replace("]", "")
    before = len(served.proxy.seen)
    exporter = ProtoSpanExporter() if encoding == "protobuf" else JsonSpanExporter()
    recording = emit_with_python_sdk(exporter, service)
    assert recording.results and set(recording.results) == {SpanExportResult.SUCCESS}, recording.results
    assert_sent(served, before, MEDIA[encoding], gzip)
    assert_scene_arrived(served, service, created_by_python(recording))


def test_an_export_without_the_ingest_token_is_refused_and_nothing_is_stored(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    otel_environment(monkeypatch, served, gzip=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_HEADERS")
    recording = emit_with_python_sdk(ProtoSpanExporter(), "py-no-token")
    assert recording.results and set(recording.results) == {SpanExportResult.FAILURE}, recording.results
    with served.api() as api:
        found = api.get("/api/v1/spans", params={"label.order_id": "js-py-no-token"}).json()["spans"]
        assert found == []
        assert api.get("/api/v1/spans", headers={"Authorization": "Bearer nope"}).status_code == 401
        as_ingest = {"Authorization": f"Bearer {served.ingest_token}"}
        assert api.get("/api/v1/spans", headers=as_ingest).status_code == 403


# -- the JavaScript SDK under Node.js ------------------------------------------------------------


def node() -> str:
    """Node.js and the npm packages of tests/js; fails (never skips) with what to run when missing."""
    exe = shutil.which("node")
    if exe is None:
        pytest.fail("Node.js is missing: run scripts/ensure-node.sh (or install node 20+ and npm)", pytrace=False)
    if not (JS_DIR / "node_modules" / "@opentelemetry" / "exporter-trace-otlp-proto").is_dir():
        pytest.fail("tests/js/node_modules is missing: run scripts/ensure-node.sh (npm ci in tests/js)", pytrace=False)
    return exe


JS_CASES = [
    pytest.param("proto", False, id="http-protobuf"),
    pytest.param("proto", True, id="http-protobuf-gzip"),
    pytest.param("json", False, id="http-json"),
    pytest.param("json", True, id="http-json-gzip"),
]


@pytest.mark.parametrize("protocol, gzip", JS_CASES)
def test_the_javascript_sdk_exporter_sends_spans_that_the_api_finds(
    served: Served, protocol: str, gzip: bool, request: pytest.FixtureRequest
) -> None:
    service = f"js-{request.node.callspec.id}".replace("[", "-").replace("]", "")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_EXPORTER_OTLP_HEADERS"] = f"authorization=Bearer%20{served.ingest_token}"
    before = len(served.proxy.seen)
    args = [node(), "export-spans.mjs", served.proxy.url, protocol, service, *(["gzip"] if gzip else [])]
    result = subprocess.run(args, cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"node exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["exports"] >= 1 and report["failed"] == [], report
    assert_sent(served, before, MEDIA["protobuf" if protocol == "proto" else "json"], gzip)
    created = [Created(s["name"], s["trace_id"], s["span_id"], s["parent_span_id"]) for s in report["spans"]]
    assert_scene_arrived(served, service, created)
