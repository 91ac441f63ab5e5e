"""Benchmark data: a realistic serverless span mix, and ``hoptrace bench populate`` to store it.

Every trace is an order going through a small shop: an API Gateway-triggered function (SERVER
invocation) reads and writes DynamoDB and sends an SQS message; a queue-triggered function
(CONSUMER invocation, continuing the producer's trace as a single-record invocation does)
processes it, writes to S3 and DynamoDB, sometimes publishes to SNS and calls an external HTTP
API. That is 5 to 9 spans per trace, each with about 15 attributes in OpenTelemetry's semantic
conventions, searchable ``hoptrace.label.*`` labels, request and message ids and the
correlation pointers hoptrace's instrumentation writes.

Trace ``i`` of a seed is fully determined by ``(seed, i)``: its id (``trace_id``) and labels
(``order_id``, ``customer_id``) can be recomputed, which is how the query benchmark picks ids
that exist without reading them back. The same generator feeds the ingest benchmark (as OTLP
request bodies) and ``populate`` (through the store's own write path).
"""

from __future__ import annotations

import functools
import hashlib
import math
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .otlp import Limits, normalise

if TYPE_CHECKING:
    from .store import SpanStore

SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5
MS = 1_000_000
DAY_NS = 86_400 * 10**9
# Four small apps, each an API function and a queue worker: eight services, eight resources.
APPS = ("orders", "payments", "inventory", "shipping")
REGION = "eu-west-1"
ACCOUNT = "123456789012"
CUSTOMERS = 10_000
TIERS = ("free", "pro", "enterprise")
# 5 spans always, + 1 on every 2nd trace, every 3rd, 3 of 4 and every 5th: 6.78 on average.
MEAN_SPANS_PER_TRACE = 5 + 1 / 2 + 1 / 3 + 3 / 4 + 1 / 5


def trace_id(seed: int, i: int) -> bytes:
    """The id of trace ``i`` of a seed (16 bytes, never all zero)."""
    return hashlib.blake2b(b"%d:%d" % (seed, i), digest_size=16).digest()


def order_id(seed: int, i: int) -> str:
    """The ``order_id`` label of trace ``i``: one trace's spans share it (selective search)."""
    return f"ord-{seed:x}-{i:09d}"


def customer_id(i: int) -> str:
    """The ``customer_id`` label of trace ``i``: each customer has about traces / 10,000 traces."""
    return f"cust-{(i * 7919) % CUSTOMERS:05d}"


# -- protobuf wire format, written directly: building protobuf objects attribute by attribute
# ran at ~8,000 spans/s, too slow to fill a store with millions. Field numbers are those of
# opentelemetry/proto/{collector/trace,trace,common,resource}/v1/*.proto.

_fixed64 = struct.Struct("<Q").pack


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited field."""
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _any_value(value: str | int | bool | list[str]) -> bytes:
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, list):
        return _field(5, b"".join(_field(1, _field(1, v.encode())) for v in value))
    return _field(1, value.encode())


@functools.lru_cache(maxsize=8192)
def _kv(key: str, value: str | int | bool | tuple[str, ...], number: int = 9) -> bytes:
    """An attribute: a ``KeyValue`` as field 9 of a Span (or ``number``: 1 of a Resource)."""
    encoded = _any_value(list(value) if isinstance(value, tuple) else value)
    return _field(number, _field(1, key.encode()) + _field(2, encoded))


def _span(
    tid: bytes, sid: bytes, parent: bytes, name: str, kind: int, start: int, end: int, attrs: list[bytes], error: bool
) -> bytes:
    body = b"".join(
        (
            b"\x0a\x10", tid, b"\x12\x08", sid,
            b"\x22\x08" + parent if parent else b"",
            _field(5, name.encode()), b"\x30", _varint(kind),
            b"\x39", _fixed64(start), b"\x41", _fixed64(end),
            *attrs,
            _field(15, _field(2, b"ConditionalCheckFailed") + b"\x18\x02") if error else b"",
        )
    )  # fmt: skip
    return _field(2, body)  # a ScopeSpans' spans field


def spans_in_trace(i: int) -> int:
    """How many spans ``SpanMix.trace(i)`` has (the conditions there, counted)."""
    return 5 + (i % 2 == 0) + (i % 3 == 0) + (i % 4 != 0) + (i % 5 == 0)


def traces_holding(spans: int) -> int | None:
    """How many leading traces (0, 1, …) hold exactly ``spans`` spans; None if no prefix does.

    ``populate`` commits whole traces, so a store it was interrupted on holds such a prefix.
    """
    period = sum(spans_in_trace(i) for i in range(60))
    whole, rest = divmod(spans, period)
    traces = whole * 60
    while rest > 0:
        rest -= spans_in_trace(traces)
        traces += 1
    return traces if rest == 0 else None


@functools.lru_cache(maxsize=64)
def _resource(function: str) -> bytes:
    """A function's ``Resource`` (field 1 of ResourceSpans), as hoptrace's instrumentation describes it."""
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}"
    attrs: dict[str, str | int] = {
        "service.name": function,
        "faas.name": function,
        "faas.version": "$LATEST",
        "faas.instance": f"2026/11/24/[$LATEST]{hashlib.md5(function.encode()).hexdigest()}",
        "faas.max_memory": 512 * 1024 * 1024,
        "cloud.provider": "aws",
        "cloud.platform": "aws_lambda",
        "cloud.region": REGION,
        "cloud.account.id": ACCOUNT,
        "cloud.resource_id": arn,
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": "1.27.0",
        "telemetry.distro.name": "hoptrace",
    }
    return _field(1, b"".join(_kv(k, v, 1) for k, v in attrs.items()))


_SCOPE = _field(1, _field(1, b"hoptrace") + _field(2, b"0.1"))  # ScopeSpans.scope


@dataclass(frozen=True)
class SpanMix:
    """Traces ``0 … traces-1`` of one seed, their starts spread evenly over ``[start_ns, end_ns)``."""

    seed: int
    traces: int
    start_ns: int
    end_ns: int
    failed_every: int = 53  # every Nth trace fails (HTTP 500); 0: none does

    @classmethod
    def for_spans(cls, spans: int, seed: int, days: float, end_ns: int | None = None) -> SpanMix:
        """About ``spans`` spans in traces ending by ``end_ns`` (default: a minute ago), over ``days``."""
        end = end_ns if end_ns is not None else time.time_ns() - 60 * 10**9
        traces = max(1, math.ceil(spans / MEAN_SPANS_PER_TRACE))
        return cls(seed, traces, end - int(days * DAY_NS), end)

    @property
    def spans(self) -> int:
        """How many spans the traces hold, exactly."""
        period = sum(spans_in_trace(i) for i in range(60))
        whole, rest = divmod(self.traces, 60)
        return whole * period + sum(spans_in_trace(i) for i in range(rest))

    def failed(self, i: int) -> bool:
        """Whether trace ``i`` is a failed order (its API invocation answers 500)."""
        return self.failed_every > 0 and i % self.failed_every == 0

    def trace_start(self, i: int) -> int:
        return self.start_ns + (self.end_ns - self.start_ns - 10**9) * i // max(1, self.traces)

    def trace(self, i: int) -> list[tuple[str, bytes]]:
        """The spans of trace ``i`` (encoded), each with the function (service) that sent it."""
        seed = self.seed
        app = APPS[i % len(APPS)]
        api, worker = f"{app}-api", f"{app}-worker"
        tid = trace_id(seed, i)
        ids = iter(hashlib.blake2b(b"%d" % k, digest_size=8, key=tid).digest() for k in range(16))
        order, customer = order_id(seed, i), customer_id(i)
        tier = TIERS[i % len(TIERS)]
        failed = self.failed(i)
        t0 = self.trace_start(i)
        labels = [_kv("hoptrace.label.order_id", order), _kv("hoptrace.label.customer_id", customer)]
        out: list[tuple[str, bytes]] = []

        def add(service: str, name: str, kind: int, start: int, ms: float, parent: bytes, attrs: list[bytes],
                error: bool = False) -> bytes:  # fmt: skip
            span_id = next(ids)
            out.append((service, _span(tid, span_id, parent, name, kind, start, start + int(ms * MS), attrs, error)))
            return span_id

        request_id = f"{tid[:4].hex()}-{tid[4:6].hex()}-{tid[6:8].hex()}-{tid[8:10].hex()}-{tid[10:].hex()}"
        # 1. The API function's invocation.
        root = add(api, f"POST /{app}", SERVER, t0, 48.0 + i % 40, b"", [
            _kv("faas.trigger", "http"),
            _kv("faas.invocation_id", request_id),
            _kv("faas.coldstart", i % 97 == 0),
            _kv("http.request.method", "POST"),
            _kv("http.route", f"/{app}"),
            _kv("url.path", f"/{app}"),
            _kv("url.scheme", "https"),
            _kv("server.address", f"api.{app}.example.com"),
            _kv("http.response.status_code", 500 if failed else 201),
            _kv("user_agent.original", "shop-web/4.2"),
            _kv("client.address", f"203.0.113.{i % 250}"),
            _kv("hoptrace.label.tier", tier),
            _kv("cloud.account.id", ACCOUNT),
            *labels,
        ], error=failed)  # fmt: skip
        # 2. DynamoDB GetItem (and 3. PutItem on every other order).
        add(api, "DynamoDB.GetItem", CLIENT, t0 + 2 * MS, 6.5, root, self._aws(
            "DynamoDB", "GetItem", f"{request_id[:8]}g", [
                _kv("db.system", "dynamodb"),
                _kv("db.operation.name", "GetItem"),
                _kv("aws.dynamodb.table_names", ("customers",)),
                _kv("aws.dynamodb.consistent_read", False),
            ]) + labels)  # fmt: skip
        if i % 2 == 0:
            key_hash = hashlib.md5(order.encode()).hexdigest()
            add(api, "DynamoDB.PutItem", CLIENT, t0 + 10 * MS, 9.0, root, self._aws(
                "DynamoDB", "PutItem", f"{request_id[:8]}p", [
                    _kv("db.system", "dynamodb"),
                    _kv("db.operation.name", "PutItem"),
                    _kv("aws.dynamodb.table_names", (app,)),
                    _kv("hoptrace.pointers", (f"ddb:key:{app}:{key_hash}",)),
                ]) + labels, error=failed)  # fmt: skip
        # 4. SQS SendMessage: the hop to the worker.
        message_id = f"{tid[12:].hex()}-{i:08x}-{seed & 0xFFFF:04x}"
        md5 = hashlib.md5(message_id.encode()).hexdigest()
        send_at = t0 + 22 * MS
        producer = add(api, f"{app}-queue send", PRODUCER, send_at, 12.0, root, self._aws(
            "SQS", "SendMessage", f"{request_id[:8]}s", [
                _kv("messaging.system", "aws_sqs"),
                _kv("messaging.operation.type", "send"),
                _kv("messaging.destination.name", f"{app}-queue"),
                _kv("messaging.message.id", message_id),
                _kv("hoptrace.pointers", (f"sqs:msg:{message_id}", f"md5:{md5}",)),
            ]) + labels)  # fmt: skip
        # 5. The worker's invocation, a single-record SQS batch continuing the producer's trace.
        w0 = send_at + (40 + i % 900) * MS
        invocation = add(worker, f"{app}-queue process", CONSUMER, w0, 80.0 + i % 120, producer, [
            _kv("faas.trigger", "pubsub"),
            _kv("faas.invocation_id", f"{request_id[:24]}{i % 10**12:012d}"),
            _kv("faas.coldstart", i % 89 == 0),
            _kv("messaging.system", "aws_sqs"),
            _kv("messaging.operation.type", "process"),
            _kv("messaging.destination.name", f"{app}-queue"),
            _kv("messaging.message.id", message_id),
            _kv("messaging.batch.message_count", 1),
            _kv("hoptrace.faas.receive_count", 1),
            _kv("hoptrace.pointers", (f"sqs:msg:{message_id}", f"md5:{md5}",)),
            _kv("cloud.account.id", ACCOUNT),
            _kv("hoptrace.label.tier", tier),
            *labels,
        ])  # fmt: skip
        # 6. S3 PutObject, always; 7. SNS Publish on every third; 8. an external HTTP call on three
        # of four; 9. a second DynamoDB read on every fifth.
        add(worker, "S3.PutObject", CLIENT, w0 + 5 * MS, 21.0, invocation, self._aws(
            "S3", "PutObject", f"{request_id[:8]}o", [
                _kv("aws.s3.bucket", f"{app}-documents"),
                _kv("aws.s3.key", f"{customer}/{order}.json"),
                _kv("http.request.method", "PUT"),
            ]) + labels)  # fmt: skip
        if i % 3 == 0:
            sns_id = f"{md5[:8]}-{md5[8:12]}-{md5[12:16]}-{md5[16:20]}-{md5[20:]}"
            add(worker, f"{app}-events publish", PRODUCER, w0 + 30 * MS, 15.0, invocation, self._aws(
                "SNS", "Publish", f"{request_id[:8]}n", [
                    _kv("messaging.system", "aws_sns"),
                    _kv("messaging.operation.type", "publish"),
                    _kv("messaging.destination.name", f"{app}-events"),
                    _kv("messaging.message.id", sns_id),
                    _kv("hoptrace.pointers", (f"sns:msg:{sns_id}",)),
                ]) + labels)  # fmt: skip
        if i % 4 != 0:
            add(worker, "POST", CLIENT, w0 + 50 * MS, 25.0 + i % 30, invocation, [
                _kv("http.request.method", "POST"),
                _kv("url.full", f"https://partner.example.net/v2/{app}/notify"),
                _kv("server.address", "partner.example.net"),
                _kv("server.port", 443),
                _kv("http.response.status_code", 200),
                _kv("network.protocol.version", "1.1"),
                _kv("url.scheme", "https"),
                _kv("http.request.body.size", 200 + i % 800),
                _kv("http.response.body.size", 64),
                _kv("user_agent.original", "python-urllib3/2.2.3"),
                _kv("hoptrace.label.tier", tier),
                *labels,
            ])  # fmt: skip
        if i % 5 == 0:
            add(worker, "DynamoDB.Query", CLIENT, w0 + 2 * MS, 7.5, invocation, self._aws(
                "DynamoDB", "Query", f"{request_id[:8]}q", [
                    _kv("db.system", "dynamodb"),
                    _kv("db.operation.name", "Query"),
                    _kv("aws.dynamodb.table_names", ("stock",)),
                    _kv("aws.dynamodb.limit", 25),
                ]) + labels)  # fmt: skip
        return out

    @staticmethod
    def _aws(service: str, method: str, request_id: str, extra: list[bytes]) -> list[bytes]:
        """The attributes every AWS SDK call span has (botocore instrumentation's), plus ``extra``."""
        host = f"{service.lower()}.{REGION}.amazonaws.com"
        return [
            _kv("rpc.system", "aws-api"),
            _kv("rpc.service", service),
            _kv("rpc.method", method),
            _kv("aws.request_id", request_id),
            _kv("cloud.region", REGION),
            _kv("server.address", host),
            _kv("http.response.status_code", 200),
            _kv("url.full", f"https://{host}/"),
            *extra,
        ]

    def requests(self, first: int, stop: int, spans_per_request: int) -> Iterator[tuple[bytes, int]]:
        """OTLP request bodies (protobuf) carrying traces ``first … stop-1``, ~``spans_per_request`` spans each.

        Yields ``(body, spans in it)``. A request holds one ``ResourceSpans`` per function, as a
        forwarding collector or a batching SDK process would send them.
        """
        groups: dict[str, list[bytes]] = {}
        count = 0
        for i in range(first, stop):
            for service, span in self.trace(i):
                groups.setdefault(service, []).append(span)
                count += 1
            if count >= spans_per_request or i == stop - 1:
                yield (
                    b"".join(
                        _field(1, _resource(service) + _field(2, _SCOPE + b"".join(spans)))
                        for service, spans in groups.items()
                    ),
                    count,
                )
                groups, count = {}, 0


@dataclass
class Progress:
    """Spans written so far, reported on stderr at most every ``every_s`` seconds with rate and ETA."""

    total: int
    every_s: float = 2.0
    label: str = "populate"

    def __post_init__(self) -> None:
        self.done = 0
        self.started = time.monotonic()
        self._last = self.started

    def add(self, spans: int) -> None:
        self.done += spans
        now = time.monotonic()
        if now - self._last >= self.every_s or self.done >= self.total:
            self._last = now
            self.report()

    def report(self) -> None:
        """One progress line now."""
        now = time.monotonic()
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        left = max(0, self.total - self.done)
        eta = f"{left / rate:,.0f}s" if rate > 0 else "?"
        print(
            f"{self.label}: {self.done:,}/{self.total:,} spans ({100 * self.done / max(1, self.total):.1f}%)"
            f", {rate:,.0f} spans/s, {elapsed:,.0f}s elapsed, ETA {eta}",
            file=sys.stderr,
            flush=True,
        )


def populate(
    store: SpanStore,
    project_id: int,
    mix: SpanMix,
    batch_spans: int = 10_000,
    on_batch: Callable[[int], None] | None = None,
    first: int = 0,
) -> int:
    """Write every trace of ``mix`` through ``store.write`` in batches; returns the spans written.

    This is the collector's own write path (normalise, then the store's one transaction per
    batch; the store's background pass derives the graph facts meanwhile), only without HTTP and
    the writer thread in front of it. Call ``store.graph_sync()`` afterwards to wait for the graph.
    ``first``: resume after the traces an interrupted run committed (``traces_holding``).
    """
    limits = Limits(max_spans=max(batch_spans * 2, Limits.max_spans))
    now = max(time.time_ns(), mix.end_ns + 10**9)
    written = 0
    for body, count in mix.requests(first, mix.traces, batch_spans):
        batch = normalise(ExportTraceServiceRequest.FromString(body), limits, now_ns=now)
        store.write([(project_id, batch)])
        written += len(batch.spans)
        if on_batch is not None:
            on_batch(count)
    return written
