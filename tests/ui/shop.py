"""Realistic spans for the browser tests: orders through API → function → SQS → function → DynamoDB.

Each service's spans go in their own OTLP request with a Lambda-like resource, as a function's
exporter would send them. Order ``o-1002`` fails in the worker, and one of its spans carries
attribute values that are HTML and script, which the UI must show as text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.otlp_build import kvs, new_id, request, span

PROTO = {"Content-Type": "application/x-protobuf"}
HOSTILE = '<script>window.__hoptraceXss = 1</script><img src="x" onerror="window.__hoptraceXss = 2">'
HOSTILE_NAME = "render <b>invoice</b> <i>now</i>"


def _resource(function: str) -> dict[str, object]:
    return {
        "faas.name": function,
        "cloud.provider": "aws",
        "cloud.platform": "aws_lambda",
        "cloud.region": "eu-west-1",
        "cloud.account.id": "123456789012",
        "cloud.resource_id": f"arn:aws:lambda:eu-west-1:123456789012:function:{function}",
        "faas.version": "$LATEST",
        "faas.max_memory": 268435456,
    }


@dataclass
class Order:
    """One order's trace and the ids a test looks for."""

    order_id: str
    trace_id: bytes
    failed: bool
    span_names: list[str] = field(default_factory=list)  # in timeline order
    worker_span_id: bytes = b""


def order_spans(order_id: str, start_ns: int, failed: bool) -> tuple[Order, dict[str, list[Span]]]:
    """The spans of one order, by service, with real-looking timing (a 120 ms wait in the queue)."""
    trace = new_id(16)
    ms = 1_000_000
    api_id, send_id, worker_id, put_id, render_id = (new_id(8) for _ in range(5))
    message_id = f"5fea7756-0ea4-451a-a703-{order_id[-4:]:0>12}"
    api = span(
        "POST /orders",
        trace_id=trace,
        span_id=api_id,
        kind=Span.SPAN_KIND_SERVER,
        start_ns=start_ns,
        duration_ms=48,
        attributes={
            "faas.trigger": "http",
            "faas.invocation_id": f"req-api-{order_id}",
            "faas.coldstart": order_id.endswith("1"),
            "http.request.method": "POST",
            "http.route": "/orders",
            "http.response.status_code": 201,
            "hoptrace.label.order_id": order_id,
        },
    )
    send = span(
        "orders-queue send",
        trace_id=trace,
        span_id=send_id,
        parent=api_id,
        kind=Span.SPAN_KIND_PRODUCER,
        start_ns=start_ns + 20 * ms,
        duration_ms=18,
        attributes={
            "messaging.system": "aws_sqs",
            "messaging.operation.type": "send",
            "messaging.destination.name": "orders-queue",
            "messaging.message.id": message_id,
            "rpc.system": "aws-api",
            "rpc.service": "SQS",
            "rpc.method": "SendMessage",
        },
    )
    worker_start = start_ns + 38 * ms + 120 * ms  # after the send, plus time spent in the queue
    worker = span(
        "orders-queue process",
        trace_id=trace,
        span_id=worker_id,
        parent=send_id,
        kind=Span.SPAN_KIND_CONSUMER,
        start_ns=worker_start,
        duration_ms=95,
        error=failed,
        attributes={
            "faas.trigger": "pubsub",
            "faas.invocation_id": f"req-worker-{order_id}",
            "messaging.system": "aws_sqs",
            "messaging.operation.type": "process",
            "messaging.destination.name": "orders-queue",
            "messaging.message.id": message_id,
            "hoptrace.label.order_id": order_id,
            **({"hoptrace.label.note": HOSTILE, "customer.comment": "<b>bold</b> & <u>more</u>"} if failed else {}),
        },
    )
    if failed:
        event = worker.events.add(name="exception", time_unix_nano=worker_start + 90 * ms)
        event.attributes.extend(
            kvs(
                {
                    "exception.type": "PaymentDeclined",
                    "exception.message": f"card declined for order {order_id}",
                    "exception.stacktrace": 'Traceback (most recent call last):\n  File "handler.py", line 42, in '
                    "process\n    charge(order)\nPaymentDeclined: card declined",
                }
            )
        )
        worker.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="PaymentDeclined: card declined"))
    put = span(
        "orders PutItem",
        trace_id=trace,
        span_id=put_id,
        parent=worker_id,
        kind=Span.SPAN_KIND_CLIENT,
        start_ns=worker_start + 10 * ms,
        duration_ms=22,
        attributes={
            "db.system": "dynamodb",
            "db.operation.name": "PutItem",
            "aws.dynamodb.table_names": ["orders"],
            "rpc.service": "DynamoDB",
        },
    )
    render = span(
        HOSTILE_NAME,
        trace_id=trace,
        span_id=render_id,
        parent=worker_id,
        kind=Span.SPAN_KIND_INTERNAL,
        start_ns=worker_start + 40 * ms,
        duration_ms=30,
    )
    order = Order(
        order_id=order_id,
        trace_id=trace,
        failed=failed,
        span_names=["POST /orders", "orders-queue send", "orders-queue process", "orders PutItem", HOSTILE_NAME],
        worker_span_id=worker_id,
    )
    return order, {"checkout-api": [api, send], "order-worker": [worker, put, render]}


def post_orders(base_url: str, ingest_token: str | None, count: int = 6) -> list[Order]:
    """Posts ``count`` orders over OTLP/HTTP (every third fails), the newest a minute ago."""
    now = time.time_ns()
    headers = dict(PROTO)
    if ingest_token:
        headers["Authorization"] = f"Bearer {ingest_token}"
    orders: list[Order] = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for i in range(count):
            order_id = f"o-{1001 + i}"
            start = now - (count - i) * 30 * 10**9 - 60 * 10**9
            order, by_service = order_spans(order_id, start, failed=(i % 3 == 1))
            for service, spans in by_service.items():
                body = request(spans, service, _resource(service)).SerializeToString()
                response = client.post("/v1/traces", content=body, headers=headers)
                assert response.status_code == 200, f"ingest refused the shop's spans: {response.text}"
            if order.failed:
                logs = order_logs(order, by_service["order-worker"][0]).SerializeToString()
                response = client.post("/v1/logs", content=logs, headers=headers)
                assert response.status_code == 200, f"ingest refused the shop's logs: {response.text}"
            orders.append(order)
    return orders


# What a failed order's worker logged (severity number, text, body, ms after the span's start).
FAILED_ORDER_LOGS = [
    (13, "WARNING", "card declined, retrying in 2 s", 30),
    (17, "ERROR", "payment gateway refused the order for good", 85),
    (13, "WARNING", HOSTILE, 88),
]


def order_logs(order: Order, worker: Span) -> ExportLogsServiceRequest:
    """The worker's log records for a failed order, tied to its invocation span."""
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend(kvs({"service.name": "order-worker", **_resource("order-worker")}))
    records = rl.scope_logs.add().log_records
    for number, text, body, after_ms in FAILED_ORDER_LOGS:
        record = records.add()
        record.time_unix_nano = worker.start_time_unix_nano + after_ms * 1_000_000
        record.severity_number = number  # type: ignore[assignment]
        record.severity_text = text
        record.body.string_value = body
        record.trace_id = order.trace_id
        record.span_id = worker.span_id
        record.attributes.extend(kvs({"order_id": order.order_id}))
    return req
