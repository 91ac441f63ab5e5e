"""Logs in context, collector side: OTLP logs from OpenTelemetry's own SDK exporter and from the
hoptrace instrumentation reach ``hoptrace serve`` (SQLite and PostgreSQL), tied to their spans;
malformed bodies get a 400 that says why; records are per project and go with retention."""

from __future__ import annotations

import gzip
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google.rpc import status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from hoptrace.collector.store import open_store
from hoptrace.collector.store.logs_sql import LogRow, insert_logs, logs_of_traces
from hoptrace.instrumentation import setup
from tests.collector_server import CollectorProcess
from tests.lambda_context import LambdaContext
from tests.otlp_build import kvs, new_id
from tests.pg import create_database, drop_database

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/logs.db"
        return
    server = request.getfixturevalue("postgres_url")
    url = create_database(server)
    try:
        yield url
    finally:
        drop_database(server, url)


@pytest.fixture
def collector(tmp_path: Any) -> Iterator[CollectorProcess]:
    with CollectorProcess(f"sqlite:///{tmp_path}/logs.db") as c:
        yield c


def trace_logs(http: httpx.Client, trace_id: str, want: int, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """The trace's records through the API, once at least ``want`` are there."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = http.get(f"/api/v1/traces/{trace_id}/logs")
        assert response.status_code == 200, response.text
        logs: list[dict[str, Any]] = response.json()["logs"]
        if len(logs) >= want or time.monotonic() > deadline:
            return logs
        time.sleep(0.1)


def log_request(*records: dict[str, Any], service: str = "orders") -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend(kvs({"service.name": service}))
    sl = rl.scope_logs.add()
    for fields in records:
        record = sl.log_records.add()
        record.time_unix_nano = fields.get("time", time.time_ns())
        record.severity_number = fields.get("severity", 13)  # type: ignore[assignment]
        record.severity_text = fields.get("severity_text", "WARN")
        record.body.string_value = fields.get("body", "")
        record.trace_id = fields.get("trace_id", b"")
        record.span_id = fields.get("span_id", b"")
        record.attributes.extend(kvs(fields.get("attributes", {})))
    return req


def test_the_sdks_otlp_log_exporter_ties_records_to_their_spans(store_url: str) -> None:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    with CollectorProcess(store_url) as c:
        resource = Resource.create({"service.name": "billing"})
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{c.url}/v1/traces")))
        log_provider = LoggerProvider(resource=resource)
        log_provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{c.url}/v1/logs")))
        handler = LoggingHandler(level=logging.INFO, logger_provider=log_provider)
        sdk_logger = logging.getLogger("billing.sdk")
        sdk_logger.addHandler(handler)
        sdk_logger.setLevel(logging.INFO)
        tracer = tracer_provider.get_tracer("billing")
        try:
            with tracer.start_as_current_span("charge-card") as span:
                sdk_logger.warning("card declined, retrying")
                sdk_logger.error("gateway timed out", extra={"attempt": 2})
            sdk_logger.info("after the span")  # the SDK sends it with no span id
        finally:
            sdk_logger.removeHandler(handler)
            log_provider.shutdown()
            tracer_provider.shutdown()
        ctx = span.get_span_context()
        with c.client() as http:
            logs = trace_logs(http, f"{ctx.trace_id:032x}", want=2)
        assert [(r["body"], r["severity_text"], r["span_id"]) for r in logs] == [
            ("card declined, retrying", "WARN", f"{ctx.span_id:016x}"),
            ("gateway timed out", "ERROR", f"{ctx.span_id:016x}"),
        ]
        assert logs[0]["service"] == "billing"
        assert logs[1]["attributes"]["attempt"] == 2
        assert logs[0]["time"].endswith("Z")


def test_an_instrumented_function_logs_arrive_tied_to_its_invocation_span(
    collector: CollectorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hoptrace

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "checkout-worker")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    setup.shutdown()
    try:
        hoptrace.init(endpoint=collector.url)

        @hoptrace.lambda_handler
        def handler(event: Any, context: Any) -> str:
            logging.getLogger("shop.checkout").error("payment failed: api_key=sk-live-123 declined")
            return "retry later"

        assert handler({"orderId": "o-1"}, LambdaContext(function_name="checkout-worker")) == "retry later"
    finally:
        setup.shutdown()
    with collector.client() as http:
        spans = http.get("/api/v1/spans", params={"service": "checkout-worker"}).json()["spans"]
        (invocation,) = spans
        (record,) = trace_logs(http, invocation["trace_id"], want=1)
    assert record["span_id"] == invocation["span_id"]
    assert record["body"] == "payment failed: api_key=[REDACTED] declined"
    assert record["severity_text"] == "ERROR" and record["service"] == "checkout-worker"
    assert record["attributes"]["log.logger"] == "shop.checkout"


def test_transactions_and_issue_occurrences_carry_their_logs(collector: CollectorProcess) -> None:
    from tests.otlp_build import request, span

    trace_id, span_id = new_id(16), new_id(8)
    now = time.time_ns()
    failed = span("checkout", trace_id=trace_id, span_id=span_id, start_ns=now - 5_000_000, duration_ms=5, error=True)
    event = failed.events.add(name="exception", time_unix_nano=now - 100)
    event.attributes.extend(kvs({"exception.type": "PaymentError", "exception.message": "declined"}))
    spans = request([failed], service="checkout")
    with collector.client() as http:
        assert http.post("/v1/traces", content=spans.SerializeToString(), headers={"Content-Type": PROTOBUF}).is_success
        logs = log_request(
            {"body": "declined by the bank", "severity": 17, "severity_text": "ERROR", "trace_id": trace_id,
             "span_id": span_id, "time": now - 1_000_000},
            {"body": "trace only, no span", "trace_id": trace_id, "time": now - 500_000},
            {"body": "no trace at all"},
        )  # fmt: skip
        answer = http.post("/v1/logs", content=logs.SerializeToString(), headers={"Content-Type": PROTOBUF})
        assert answer.status_code == 200, answer.text
        parsed = ExportLogsServiceResponse()
        parsed.ParseFromString(answer.content)
        assert parsed.partial_success.rejected_log_records == 0
        deadline = time.monotonic() + 20
        while True:
            txn = http.get(f"/api/v1/transactions/{trace_id.hex()}")
            if txn.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert txn.status_code == 200, txn.text
        assert [(r["body"], r["span_id"]) for r in txn.json()["logs"]] == [
            ("declined by the bank", span_id.hex()),
            ("trace only, no span", None),
        ]
        deadline = time.monotonic() + 20
        while not (issues := http.get("/api/v1/issues").json()["issues"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        detail = http.get(f"/api/v1/issues/{issues[0]['id']}").json()
        occurrence = detail["occurrences"][0]
        assert [r["body"] for r in occurrence["logs"]] == ["declined by the bank", "trace only, no span"]
        openapi = http.get("/openapi.json").json()
        assert "/v1/logs" in openapi["paths"] and "/api/v1/traces/{trace_id}/logs" in openapi["paths"]


def test_bad_records_are_rejected_one_by_one_and_the_rest_kept(collector: CollectorProcess) -> None:
    trace_id = new_id(16)
    body = {
        "resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
            "scopeLogs": [{"logRecords": [
                {"timeUnixNano": str(time.time_ns()), "severityNumber": 9, "body": {"stringValue": "kept"},
                 "traceId": trace_id.hex(), "spanId": new_id(8).hex()},
                {"body": {"stringValue": "bad id"}, "traceId": "not-hex", "spanId": "zz"},
                {"body": {"stringValue": "short id"}, "traceId": "abcd"},
                {"timeUnixNano": "1000", "body": {"stringValue": "from 1970"}, "traceId": trace_id.hex()},
                {"body": {"kvlistValue": {"values": [{"key": "order", "value": {"intValue": "7"}}]}},
                 "traceId": trace_id.hex()},
            ]}],
        }]
    }  # fmt: skip
    with collector.client() as http:
        answer = http.post("/v1/logs", content=json.dumps(body), headers={"Content-Type": JSON})
        assert answer.status_code == 200, answer.text
        partial = answer.json()["partialSuccess"]
        assert partial["rejectedLogRecords"] == "3"
        assert "traceId is not hex" in partial["errorMessage"]
        assert "trace_id must be 16 bytes" in partial["errorMessage"]
        assert "before 2000" in partial["errorMessage"]
        logs = trace_logs(http, trace_id.hex(), want=2)
    assert sorted(r["body"] for r in logs) == ["kept", '{"order": 7}']
    assert {r["severity_text"] for r in logs} == {"INFO", ""}


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason"),
    [
        (b"\xff\xff\xff\x0f garbage", {"Content-Type": PROTOBUF}, 400,
         "not a valid OTLP protobuf ExportLogsServiceRequest"),
        (b"{not json", {"Content-Type": JSON}, 400, "not valid JSON"),
        (b'{"resourceLogs": {"a": 1}}', {"Content-Type": JSON}, 400, "resourceLogs must be a list"),
        (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": "soon"}]}]}]}',
         {"Content-Type": JSON}, 400, "not a valid OTLP ExportLogsServiceRequest"),
        (b"[1, 2]", {"Content-Type": JSON}, 400, "must be an object with a resourceLogs list"),
        (gzip.compress(b"\0" * (64 * 1024 * 1024)), {"Content-Type": PROTOBUF, "Content-Encoding": "gzip"}, 413,
         "once decompressed"),
        (b"not gzip at all", {"Content-Type": PROTOBUF, "Content-Encoding": "gzip"}, 400, "not valid gzip"),
        (b"{}", {"Content-Type": "text/plain"}, 415, "Content-Type 'text/plain' is not supported"),
    ],
    ids=["protobuf", "json-syntax", "json-shape", "json-field", "json-array", "gzip-bomb", "bad-gzip", "media"],
)  # fmt: skip
def test_malformed_log_bodies_get_a_status_saying_what_was_wrong(
    collector: CollectorProcess, body: bytes, headers: dict[str, str], status: int, reason: str
) -> None:
    with collector.client() as http:
        answer = http.post("/v1/logs", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    if headers["Content-Type"] == JSON:
        message = answer.json()["message"]
    else:
        parsed = status_pb2.Status()
        parsed.ParseFromString(answer.content)
        message = parsed.message
    assert reason in message


def test_logs_need_an_ingest_token_and_stay_in_their_project(tmp_path: Any) -> None:
    store_url = f"sqlite:///{tmp_path}/tokens.db"
    store = open_store(store_url)
    store.migrate()
    from hoptrace.collector import auth

    shop = store.create_project("shop")
    other = store.create_project("other")
    tokens = {}
    for project, name in ((shop, "shop"), (other, "other")):
        for kind in ("ingest", "read"):
            tokens[name, kind] = token = f"{name}-{kind}-token-0123456789"
            store.add_token(project.id, kind, auth.hash_token(token))
    store.close()
    trace_id = new_id(16)
    body = log_request({"body": "shop only", "trace_id": trace_id}).SerializeToString()
    with CollectorProcess(store_url) as c, c.client() as http:
        assert http.post("/v1/logs", content=body, headers={"Content-Type": PROTOBUF}).status_code == 401
        read = {"Content-Type": PROTOBUF, "Authorization": f"Bearer {tokens['shop', 'read']}"}
        assert http.post("/v1/logs", content=body, headers=read).status_code == 403
        ingest = {"Content-Type": PROTOBUF, "Authorization": f"Bearer {tokens['shop', 'ingest']}"}
        assert http.post("/v1/logs", content=body, headers=ingest).status_code == 200
        path = f"/api/v1/traces/{trace_id.hex()}/logs"
        shop_logs = http.get(path, headers={"Authorization": f"Bearer {tokens['shop', 'read']}"}).json()["logs"]
        other_logs = http.get(path, headers={"Authorization": f"Bearer {tokens['other', 'read']}"}).json()["logs"]
    assert [r["body"] for r in shop_logs] == ["shop only"] and other_logs == []


def test_retention_deletes_old_records(store_url: str) -> None:
    store = open_store(store_url)
    try:
        store.migrate()
        trace_id = new_id(16)
        now = time.time_ns()
        rows = [
            LogRow(trace_id, None, now - 3600 * 10**9, 13, "WARN", "svc", "an hour ago", b""),
            LogRow(trace_id, None, now, 13, "WARN", "svc", "now", b""),
        ]
        store.run_write(lambda sql: insert_logs(sql, 1, rows))
        store.delete_before(now - 60 * 10**9)
        kept = store.run_read(lambda sql: logs_of_traces(sql, 1, [trace_id]))
        assert [r.body for r in kept] == ["now"]
    finally:
        store.close()
