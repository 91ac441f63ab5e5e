"""Example: an order travels API → function → SQS → function → DynamoDB → stream → function.

The smallest whole pipeline, in one process under one service name (``shop``): the graph tests
use it as a fixed fixture. The full demo — one process per function, SNS fan-out, a dead-letter
queue, a flaky payment gateway — is ``hoptrace demo`` (``hoptrace.demo``).

Everything runs locally: a moto server emulates AWS over HTTP on 127.0.0.1, and this script
plays Lambda's part (it builds the events Lambda would deliver, in AWS's documented shapes,
from what the emulator returns). Functions are traced by hoptrace exactly as in Lambda.

It prints each order's trace as a tree, showing the context carried through the queue, and
the correlation pointers that join the DynamoDB stream hop. With ``--endpoint`` the spans also
go to any OTLP/HTTP collector.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import hoptrace
from hoptrace.demo.events import http_api_event, sqs_event, stream_event
from hoptrace.instrumentation import setup

REGION = "us-east-1"
ACCOUNT = "123456789012"


class Context:
    """The Lambda context object (what the runtime passes as the handler's second argument)."""

    def __init__(self, function_name: str, timeout_s: float = 30.0) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 256
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.client_context = None
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if exe is None:
        raise SystemExit("moto_server is missing: run ./scripts/demo.sh, which installs it")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    quiet = subprocess.DEVNULL
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=quiet, stderr=quiet)
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"http://127.0.0.1:{port}"
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("moto_server did not start")


class Shop:
    """The demo application: three functions and the resources they use."""

    def __init__(self, endpoint: str) -> None:
        # The emulator accepts any credentials; never use the machine's real ones.
        kw: dict[str, Any] = {
            "endpoint_url": endpoint,
            "region_name": REGION,
            "aws_access_key_id": "demo",
            "aws_secret_access_key": "demo",
        }
        self.sqs: Any = boto3.client("sqs", **kw)
        self.ddb: Any = boto3.client("dynamodb", **kw)
        self.streams: Any = boto3.client("dynamodbstreams", **kw)
        self.queue_url = self.sqs.create_queue(QueueName="checkout-queue")["QueueUrl"]
        self.queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        spec: dict[str, Any] = {
            "TableName": "orders",
            "KeySchema": [{"AttributeName": "order_id", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "order_id", "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST",
            "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        }
        try:
            table = self.ddb.create_table(**spec)
        except self.ddb.exceptions.ResourceInUseException:
            # A second run on the same emulator starts from an empty table and a new stream.
            self.ddb.delete_table(TableName="orders")
            table = self.ddb.create_table(**spec)
        self.stream_arn = table["TableDescription"]["LatestStreamArn"]
        self.orders = boto3.resource("dynamodb", **kw).Table("orders")
        self.totals: dict[str, Decimal] = defaultdict(Decimal)

        self.checkout_api = hoptrace.lambda_handler(self._checkout_api)
        self.checkout_worker = hoptrace.lambda_handler(self._checkout_worker)
        self.totals_fn = hoptrace.lambda_handler(self._totals)

    def _checkout_api(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        order = json.loads(event["body"])
        hoptrace.label("order_id", order["order_id"])
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(order))
        return {"statusCode": 202, "body": json.dumps({"accepted": order["order_id"]})}

    def _checkout_worker(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        for record in hoptrace.records(event):
            order = json.loads(record["body"])
            hoptrace.label("order_id", order["order_id"])
            self.orders.put_item(
                Item={"order_id": order["order_id"], "customer": order["customer"], "amount": Decimal(order["amount"])}
            )
        return {"batchItemFailures": []}

    def _totals(self, event: dict[str, Any], context: Any) -> None:
        for record in hoptrace.records(event):
            image = record["dynamodb"].get("NewImage") or {}
            if "customer" in image:
                self.totals[image["customer"]["S"]] += Decimal(image["amount"]["N"])

    def read_stream(self) -> list[dict[str, Any]]:
        shard = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"][0]
        it = self.streams.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records: list[dict[str, Any]] = self.streams.get_records(ShardIterator=it)["Records"]
        return records


@contextmanager
def as_lambda_service() -> Iterator[None]:
    """Calls made by the runner play AWS's own part (polling queues and streams): not traced."""
    token = otel_context.attach(otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        yield
    finally:
        otel_context.detach(token)


def run(endpoint: str, orders: int) -> None:
    """Send ``orders`` orders through the shop, playing Lambda's part between the functions."""
    with as_lambda_service():
        shop = Shop(endpoint)
    for i in range(orders):
        order = {"order_id": f"o-{i + 1}", "customer": f"c-{i % 2 + 1}", "amount": str(10 + i)}
        print(f"  POST /checkout {order['order_id']}")
        request = http_api_event(
            "POST", "/checkout", "/checkout", {}, {"content-type": "application/json"}, json.dumps(order)
        )
        shop.checkout_api(request, Context("checkout-api"))
    with as_lambda_service():
        messages = shop.sqs.receive_message(
            QueueUrl=shop.queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
    print(f"  checkout-worker: a batch of {len(messages)} message(s)")
    shop.checkout_worker(sqs_event(messages, shop.queue_arn), Context("checkout-worker"))
    with as_lambda_service():
        stream = shop.read_stream()
    print(f"  totals: {len(stream)} stream record(s)")
    shop.totals_fn(stream_event(stream, shop.stream_arn), Context("totals"))
    print("  totals per customer:", {k: str(v) for k, v in sorted(shop.totals.items())})


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else []


def print_traces(spans: list[ReadableSpan]) -> None:
    """Each trace as an indented tree, with the function that recorded each span."""
    by_trace: dict[int, list[ReadableSpan]] = defaultdict(list)
    for s in spans:
        by_trace[s.context.trace_id].append(s)
    pointers: dict[str, list[str]] = defaultdict(list)
    for s in spans:
        for p in _strings((s.attributes or {}).get("hoptrace.pointers")):
            pointers[p].append(s.name)
    for trace_id, members in sorted(by_trace.items(), key=lambda kv: min(x.start_time or 0 for x in kv[1])):
        ids = {s.context.span_id for s in members}
        children: dict[int | None, list[ReadableSpan]] = defaultdict(list)
        for s in members:
            parent = s.parent.span_id if s.parent and s.parent.span_id in ids else None
            children[parent].append(s)
        print(f"\ntrace {trace_id:032x}")

        def show(span: ReadableSpan, depth: int, children: dict[int | None, list[ReadableSpan]] = children) -> None:
            a = span.attributes or {}
            ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
            label = a.get("hoptrace.label.order_id")
            extra = f"  order={label}" if label else ""
            links = f"  links={len(span.links)}" if span.links else ""
            print(f"  {'  ' * depth}{span.name} [{span.kind.name.lower()}] {ms:.1f} ms{extra}{links}")
            for child in sorted(children.get(span.context.span_id, []), key=lambda c: c.start_time or 0):
                show(child, depth + 1, children)

        for root in sorted(children[None], key=lambda c: c.start_time or 0):
            show(root, 0)
    joined = {p: names for p, names in pointers.items() if len(names) > 1}
    if joined:
        print("\nhops joined by correlation pointers (no context needed):")
        for p, names in sorted(joined.items()):
            print(f"  {p}: {' -> '.join(names)}")


def start_collector(port: int, store: str) -> subprocess.Popen[bytes]:
    """``hoptrace serve`` on loopback, storing in SQLite, for the demo's spans."""
    cmd = [sys.executable, "-m", "hoptrace.collector.cli", "serve", "--store", store, "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--log-level", "warning"])
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"the collector did not start (exit status {proc.returncode}); see the message above")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("the collector did not start within 15 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=3, help="how many orders to send (default 3)")
    parser.add_argument("--port", type=int, default=4318, help="port of the demo's collector (default 4318)")
    parser.add_argument("--store", default="sqlite:///hoptrace-demo.db", help="the demo collector's store")
    parser.add_argument("--endpoint", help="send spans to this OTLP/HTTP collector instead of starting one")
    parser.add_argument("--once", action="store_true", help="stop when the orders are sent (default: keep serving)")
    args = parser.parse_args(argv)

    collector = None
    endpoint = args.endpoint
    if endpoint is None:
        print(f"starting the hoptrace collector on 127.0.0.1:{args.port} ({args.store}) ...")
        collector = start_collector(args.port, args.store)
        endpoint = f"http://127.0.0.1:{args.port}"
    print("starting the AWS emulator (moto) on 127.0.0.1 ...")
    proc, aws = start_moto()
    try:
        print(f"emulator at {aws}; sending {args.orders} order(s):")
        spans = run_traced(aws, args.orders, endpoint)
        print_traces(spans)
        print(f"\nspans are in the collector at {endpoint}:")
        print(f"  {endpoint}/                                       the web UI: service map, transactions")
        print(f"  {endpoint}/docs                                   the query API")
        print(f"  {endpoint}/api/v1/transactions?label.order_id=o-1 an order across every hop")
        print(f"  {endpoint}/api/v1/services                        services seen in the last hour")
        print(f"  {endpoint}/api/v1/spans?label.order_id=o-1        search by business label")
        if collector is not None and not args.once:
            print("the collector keeps running; press Ctrl-C to stop")
            collector.wait()
    except KeyboardInterrupt:
        pass
    finally:
        proc.terminate()
        proc.wait(10)
        if collector is not None and collector.poll() is None:
            collector.terminate()
            collector.wait(30)
    return 0


class _Both(SpanExporter):
    """Keeps every span for the printout and sends it to the collector too."""

    def __init__(self, memory: InMemorySpanExporter, remote: SpanExporter | None) -> None:
        self.memory, self.remote = memory, remote

    def export(self, spans: Any) -> SpanExportResult:
        self.memory.export(spans)
        return self.remote.export(spans) if self.remote is not None else SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        if self.remote is not None:
            self.remote.shutdown()


def run_traced(aws: str, orders: int, endpoint: str | None = None) -> list[ReadableSpan]:
    """Run the shop with tracing on; every span recorded (also sent to ``endpoint`` if given; the
    invocations' start announcements go there too, but are not spans of their own)."""
    from hoptrace.instrumentation.aws_lambda.announce import ANNOUNCEMENT

    memory = InMemorySpanExporter()
    remote: SpanExporter | None = None
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        remote = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
    setup.shutdown()
    state = setup.init(exporter=_Both(memory, remote), lambda_mode=True, service_name="shop")
    try:
        run(aws, orders)
        state.flush(5.0)
        return [s for s in memory.get_finished_spans() if ANNOUNCEMENT not in (s.attributes or {})]
    finally:
        setup.shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
