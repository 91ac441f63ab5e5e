"""Consumers invoked with batches built from what a real moto server returned.

The invocation links to every record's producer; each record's process span is parented to its
own producer, so every transaction in a batch keeps its own record; outcomes come from the
loop body and the partial batch response.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import hoptrace
from tests.conftest import Tracing
from tests.lambda_context import LambdaContext
from tests.lambda_events_messaging import sqs_event
from tests.lambda_events_streams import dynamodb_stream_record, records_event


class Queue:
    def __init__(self, boto_session: Any, name: str, visibility: int = 30) -> None:
        self.sqs = boto_session.client("sqs")
        self.url = self.sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": str(visibility)})["QueueUrl"]
        self.arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]

    def receive(self, n: int) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        for _ in range(20):
            resp = self.sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=min(10, n - len(got)),
                AttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            got.extend(resp.get("Messages", []))
            if len(got) >= n:
                return got
        raise AssertionError(f"received {len(got)} of {n} messages")


def produce(tracing: Tracing, queue: Queue, bodies: list[str]) -> dict[str, Any]:
    """Send each body from its own trace; return body -> the SendMessage span."""
    for body in bodies:
        with tracing.state.tracer.start_as_current_span(f"api {body}"):
            queue.sqs.send_message(QueueUrl=queue.url, MessageBody=body)
    sends = [s for s in tracing.spans() if s.name == "SQS.SendMessage"]
    assert len(sends) == len(bodies)
    by_id = {s.attributes["messaging.message.id"]: s for s in sends}
    tracing.clear()
    return by_id


def spans_by_kind(tracing: Tracing) -> tuple[Any, list[Any]]:
    spans = tracing.spans()
    (invocation,) = [s for s in spans if "faas.trigger" in s.attributes]
    process = [s for s in spans if s.name.endswith(" process")]
    return invocation, process


def test_batch_of_ten_records_from_ten_traces_keeps_each_record_in_its_own_trace(
    tracing: Tracing, boto_session: Any
) -> None:
    queue = Queue(boto_session, "batch-ten")
    producers = produce(tracing, queue, [f"order-{i}" for i in range(10)])
    event = sqs_event(queue.receive(10), queue.arn)

    @hoptrace.lambda_handler
    def consume(event: Any, context: Any) -> dict[str, Any]:
        for _record in hoptrace.records(event):
            pass
        return {"batchItemFailures": []}

    consume(event, LambdaContext(function_name="worker"))
    invocation, process = spans_by_kind(tracing)
    assert invocation.kind is SpanKind.CONSUMER
    assert invocation.parent is None  # a batch glues no traces together
    linked = {(link.context.trace_id, link.context.span_id) for link in invocation.links}
    assert linked == {(p.context.trace_id, p.context.span_id) for p in producers.values()}
    assert invocation.attributes["messaging.batch.message_count"] == 10
    assert len(process) == 10
    for span in process:
        producer = producers[span.attributes["messaging.message.id"]]
        assert span.context.trace_id == producer.context.trace_id
        assert span.parent is not None and span.parent.span_id == producer.context.span_id
        assert [link.context.span_id for link in span.links] == [invocation.context.span_id]
        assert span.kind is SpanKind.CONSUMER
        assert span.name == "batch-ten process"
        assert span.status.status_code is StatusCode.UNSET


def test_partial_batch_response_marks_exactly_the_failed_records(tracing: Tracing, boto_session: Any) -> None:
    queue = Queue(boto_session, "batch-partial")
    produce(tracing, queue, ["a", "b", "c", "d"])
    event = sqs_event(queue.receive(4), queue.arn)
    failing = {r["messageId"] for r in event["Records"] if r["body"] in ("b", "d")}

    @hoptrace.lambda_handler
    def consume(event: Any, context: Any) -> dict[str, Any]:
        failures = []
        for record in hoptrace.records(event):
            if record["body"] in ("b", "d"):
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    consume(event, LambdaContext())
    _, process = spans_by_kind(tracing)
    errors = {s.attributes["messaging.message.id"] for s in process if s.status.status_code is StatusCode.ERROR}
    assert errors == failing
    failed_flags = [s.attributes.get("hoptrace.record.failed") for s in process]
    assert sorted(map(bool, failed_flags)) == [False, False, True, True]


def test_exception_in_the_loop_marks_that_record_and_leaves_later_ones_failed(
    tracing: Tracing, boto_session: Any
) -> None:
    queue = Queue(boto_session, "batch-raise")
    produce(tracing, queue, ["ok-1", "bad", "later"])
    event = sqs_event(queue.receive(3), queue.arn)
    boom = RuntimeError("cannot process")
    order = [r["body"] for r in event["Records"]]

    @hoptrace.lambda_handler
    def consume(event: Any, context: Any) -> None:
        for record in hoptrace.records(event):
            if record["body"] == "bad":
                raise boom

    with pytest.raises(RuntimeError) as info:
        consume(event, LambdaContext())
    assert info.value is boom
    # Nothing of the invocation stays current after it ends, not even the record it died in.
    assert not trace.get_current_span().get_span_context().is_valid
    _, process = spans_by_kind(tracing)
    status = {_body_of(s): s for s in process}
    bad = status["bad"]
    assert bad.status.status_code is StatusCode.ERROR
    assert [e.attributes["exception.message"] for e in bad.events] == ["cannot process"]
    for body in order[: order.index("bad")]:
        assert status[body].status.status_code is StatusCode.UNSET
    for body in order[order.index("bad") + 1 :]:
        assert status[body].status.status_code is StatusCode.ERROR
        assert status[body].attributes["hoptrace.record.iterated"] is False


_bodies: dict[str, str] = {}


def _body_of(span: Any) -> str:
    return _bodies[span.attributes["messaging.message.id"]]


@pytest.fixture(autouse=True)
def _remember_bodies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Map message ids to bodies as events are built, so assertions can name records by body."""
    import tests.lambda_events_messaging as builders

    original = builders.sqs_record

    def recording(message: Any, queue_arn: str) -> dict[str, Any]:
        _bodies[message["MessageId"]] = message["Body"]
        return original(message, queue_arn)

    monkeypatch.setattr(builders, "sqs_record", recording)


def test_records_not_iterated_still_get_a_span_each_in_their_producers_trace(
    tracing: Tracing, boto_session: Any
) -> None:
    queue = Queue(boto_session, "batch-no-helper")
    producers = produce(tracing, queue, ["x", "y"])
    event = sqs_event(queue.receive(2), queue.arn)

    @hoptrace.lambda_handler
    def consume(event: Any, context: Any) -> int:
        return len(event["Records"])

    assert consume(event, LambdaContext()) == 2
    _, process = spans_by_kind(tracing)
    assert {s.context.trace_id for s in process} == {p.context.trace_id for p in producers.values()}
    assert all(s.attributes["hoptrace.record.iterated"] is False for s in process)


def test_calls_and_labels_inside_the_loop_belong_to_the_record(tracing: Tracing, boto_session: Any) -> None:
    queue = Queue(boto_session, "batch-children")
    out = Queue(boto_session, "batch-children-out")
    produce(tracing, queue, ["p", "q"])
    event = sqs_event(queue.receive(2), queue.arn)

    @hoptrace.lambda_handler
    def consume(event: Any, context: Any) -> None:
        for record in hoptrace.records(event):
            hoptrace.label("order_id", record["body"])
            out.sqs.send_message(QueueUrl=out.url, MessageBody=record["body"] + "!")

    consume(event, LambdaContext())
    invocation, process = spans_by_kind(tracing)
    sends = [s for s in tracing.spans() if s.name == "SQS.SendMessage"]
    assert len(sends) == 2
    for span in process:
        (child,) = [s for s in sends if s.parent is not None and s.parent.span_id == span.context.span_id]
        assert child.context.trace_id == span.context.trace_id
        assert span.attributes["hoptrace.label.order_id"] == _body_of(span)
    assert not any(k.startswith("hoptrace.label.") for k in invocation.attributes)


def test_single_record_invocation_continues_the_producers_trace(tracing: Tracing, boto_session: Any) -> None:
    queue = Queue(boto_session, "single")
    producers = produce(tracing, queue, ["only"])
    event = sqs_event(queue.receive(1), queue.arn)

    @hoptrace.lambda_handler
    def consume(event: Any, context: Any) -> None:
        for _ in hoptrace.records(event):
            pass

    consume(event, LambdaContext())
    invocation, process = spans_by_kind(tracing)
    (producer,) = producers.values()
    assert invocation.context.trace_id == producer.context.trace_id
    assert invocation.parent is not None and invocation.parent.span_id == producer.context.span_id
    assert invocation.attributes["messaging.message.id"] == producer.attributes["messaging.message.id"]
    assert set(producer.attributes["hoptrace.pointers"]) <= set(invocation.attributes["hoptrace.pointers"])
    (record_span,) = process
    assert record_span.parent is not None and record_span.parent.span_id == invocation.context.span_id


def test_redelivered_message_marks_the_invocation_as_a_retry(tracing: Tracing, boto_session: Any) -> None:
    queue = Queue(boto_session, "redelivered", visibility=0)
    produce(tracing, queue, ["again"])
    queue.receive(1)  # first delivery, not deleted: it comes back
    event = sqs_event(queue.receive(1), queue.arn)
    assert int(event["Records"][0]["attributes"]["ApproximateReceiveCount"]) >= 2

    @hoptrace.lambda_handler
    def consume(event: Any, context: Any) -> None:
        return None

    consume(event, LambdaContext())
    invocation, _ = spans_by_kind(tracing)
    assert invocation.attributes["hoptrace.faas.retry"] is True
    assert invocation.attributes["hoptrace.faas.receive_count"] >= 2


def test_single_stream_record_invocation_carries_the_pointers_of_the_write(
    tracing: Tracing, boto_session: Any
) -> None:
    ddb = boto_session.client("dynamodb")
    streams = boto_session.client("dynamodbstreams")
    desc = ddb.create_table(
        TableName="carts",
        KeySchema=[{"AttributeName": "cart_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "cart_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]
    with tracing.state.tracer.start_as_current_span("api"):
        ddb.put_item(TableName="carts", Item={"cart_id": {"S": "c-1"}, "total": {"N": "12.50"}})
    (put,) = [s for s in tracing.spans() if s.name == "DynamoDB.PutItem"]
    tracing.clear()
    arn = desc["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    (record,) = streams.get_records(ShardIterator=it)["Records"]

    @hoptrace.lambda_handler
    def on_change(event: Any, context: Any) -> str:
        return json.dumps(event["Records"][0]["eventName"])

    assert on_change(records_event(dynamodb_stream_record(record, arn)), LambdaContext()) == '"INSERT"'
    invocation, _ = spans_by_kind(tracing)
    assert invocation.attributes["faas.trigger"] == "datasource"
    shared = set(put.attributes["hoptrace.pointers"]) & set(invocation.attributes["hoptrace.pointers"])
    assert any(p.startswith("ddb:item:carts:") for p in shared)
