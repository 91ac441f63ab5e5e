"""A synthetic but realistic span stream for the graph benchmarks: the demo shop at scale.

Each order is six spans over up to three traces: an API invocation that sends to a queue, a
worker invocation (context kept in 70 % of orders, lost in the rest: joined by message id)
that writes a DynamoDB item and calls an external payments API, and a stream handler joined
by the item's pointer. Spans arrive in export batches per function, consumers a little after
their producers, some before (a shuffle within a window of batches).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue

from hoptrace.graph.spans import CLIENT, CONSUMER, PRODUCER, SERVER, GraphSpan

MS = 10**6
SPANS_PER_ORDER = 6


def _resource(fn: str) -> dict[str, str | bool | int | float | tuple[str | bool | int | float, ...]]:
    return {"service.name": fn, "faas.name": fn, "cloud.platform": "aws_lambda", "telemetry.distro.name": "hoptrace"}


_API, _WORKER, _STREAM = _resource("checkout-api"), _resource("checkout-worker"), _resource("totals")


def orders(n_orders: int, start_ns: int, seed: int = 1, per_second: int = 2000) -> Iterator[list[GraphSpan]]:
    """The spans of each order, one list per order (in the order they happen)."""
    rng = random.Random(seed)
    ids = iter(range(1, 2**62))
    for i in range(n_orders):
        t0 = start_ns + i * (10**9 // per_second)
        api_trace = next(ids).to_bytes(16, "big")
        lost = rng.random() < 0.3
        worker_trace = next(ids).to_bytes(16, "big") if lost else api_trace
        stream_trace = next(ids).to_bytes(16, "big")
        api_id, send_id, worker_id, put_id, pay_id, stream_id = (next(ids).to_bytes(8, "big") for _ in range(6))
        failed = rng.random() < 0.02
        msg = f"sqs:msg:{i:012d}"
        item = f"ddb:item:orders:{i:032x}"
        key = f"ddb:key:orders:{i:031x}k"
        dwell = int(rng.expovariate(1 / 40) * MS)
        api = GraphSpan(api_trace, api_id, None, "checkout-api", "POST /checkout", SERVER, t0, t0 + 30 * MS, 0,
                        {"faas.trigger": "http", "http.request.method": "POST", "http.route": "/checkout",
                         "hoptrace.label.order_id": f"o-{i}", "faas.coldstart": i % 500 == 0}, _API)  # fmt: skip
        send = GraphSpan(api_trace, send_id, api_id, "checkout-api", "SQS.SendMessage", PRODUCER, t0 + 5 * MS,
                         t0 + 15 * MS, 0, {"rpc.system": "aws-api", "rpc.service": "SQS", "messaging.system": "aws_sqs",
                         "messaging.destination.name": "checkout-queue", "messaging.operation.type": "send",
                         "hoptrace.pointers": (msg, f"md5:{i:032x}")}, _API)  # fmt: skip
        w0 = t0 + 15 * MS + dwell
        worker = GraphSpan(worker_trace, worker_id, None if lost else send_id, "checkout-worker", "checkout-worker",
                           CONSUMER, w0, w0 + 60 * MS, 2 if failed else 0,
                           {"faas.trigger": "pubsub", "hoptrace.trigger.source": "aws:sqs",
                            "messaging.system": "aws_sqs", "messaging.destination.name": "checkout-queue",
                            "messaging.batch.message_count": 1,
                            "hoptrace.pointers": (msg, f"md5:{i:032x}")}, _WORKER)  # fmt: skip
        put = GraphSpan(worker_trace, put_id, worker_id, "checkout-worker", "DynamoDB.PutItem", CLIENT, w0 + 5 * MS,
                        w0 + 20 * MS, 0, {"rpc.system": "aws-api", "rpc.service": "DynamoDB", "db.system": "dynamodb",
                        "db.operation.name": "PutItem", "aws.dynamodb.table_names": ("orders",),
                        "hoptrace.pointers": (key, item)}, _WORKER)  # fmt: skip
        pay = GraphSpan(worker_trace, pay_id, worker_id, "checkout-worker", "POST", CLIENT, w0 + 20 * MS,
                        w0 + 55 * MS, 2 if failed else 0, {"http.request.method": "POST",
                        "url.full": "https://api.payments.example/v1/charges",
                        "http.response.status_code": 503 if failed else 200}, _WORKER)  # fmt: skip
        s0 = w0 + 20 * MS + int(rng.expovariate(1 / 200) * MS)
        stream = GraphSpan(stream_trace, stream_id, None, "totals", "totals", CONSUMER, s0, s0 + 8 * MS, 0,
                           {"faas.trigger": "datasource", "hoptrace.trigger.source": "aws:dynamodb",
                            "db.system": "dynamodb", "aws.dynamodb.table_names": ("orders",),
                            "hoptrace.dynamodb.event_name": "INSERT", "messaging.batch.message_count": 1,
                            "hoptrace.pointers": (key, item)}, _STREAM)  # fmt: skip
        yield [api, send, worker, put, pay, stream]


def batches(n_spans: int, start_ns: int, batch_size: int = 500, seed: int = 1) -> Iterator[list[GraphSpan]]:
    """Export batches as a collector receives them: per function, neighbours sometimes swapped
    (a consumer's batch may overtake its producer's). Generated as consumed: memory stays flat."""
    rng = random.Random(seed + 1)
    per_function: dict[str, list[GraphSpan]] = {}
    held: list[GraphSpan] | None = None
    for spans in orders(n_spans // SPANS_PER_ORDER, start_ns, seed):
        for s in spans:
            pending = per_function.setdefault(s.service, [])
            pending.append(s)
            if len(pending) < batch_size:
                continue
            per_function[s.service] = []
            if held is None and rng.random() < 0.1:
                held = pending  # sent after the next batch
                continue
            yield pending
            if held is not None:
                yield held
                held = None
    if held is not None:
        yield held
    yield from (b for b in per_function.values() if b)


def to_request(spans: list[GraphSpan]) -> ExportTraceServiceRequest:
    """The OTLP request an SDK would send for these spans (one resource per function)."""
    request = ExportTraceServiceRequest()
    by_service: dict[str, list[GraphSpan]] = {}
    for s in spans:
        by_service.setdefault(s.service, []).append(s)
    for members in by_service.values():
        rs = request.resource_spans.add()
        rs.resource.attributes.extend(_kvs(members[0].resource))
        out = rs.scope_spans.add().spans
        for s in members:
            span = out.add(trace_id=s.trace_id, span_id=s.span_id, parent_span_id=s.parent_span_id or b"", name=s.name,
                           kind=s.kind, start_time_unix_nano=s.start_ns, end_time_unix_nano=s.end_ns)  # fmt: skip
            span.status.code = s.status  # type: ignore[assignment]
            span.attributes.extend(_kvs(s.attributes))
    return request


def _kvs(attrs: Mapping[str, Any]) -> list[KeyValue]:
    out = []
    for key, value in attrs.items():
        out.append(KeyValue(key=key, value=_any(value)))
    return out


def _any(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, tuple):
        return AnyValue(array_value=ArrayValue(values=[_any(v) for v in value]))
    return AnyValue(string_value=str(value))
