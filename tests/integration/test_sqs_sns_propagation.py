"""SQS and SNS hops end to end against a real moto server over HTTP.

A producer sends with boto3 inside a traced span; the test receives with boto3, builds the
Lambda record AWS would deliver from what the emulator returned, and reads it back with the
carrier's ``extract``. What moto does and does not do, checked by running it:

- it echoes the ``AWSTraceHeader`` system attribute in ``Attributes``;
- it enforces neither the 10-attribute quota nor the size rule (body only, against the queue's
  ``MaximumMessageSize``), so the limits are checked against our own arithmetic here;
- SNS raw delivery of a *Binary* attribute crashes inside moto (the message is lost), so binary
  attributes are exercised on direct SQS sends only;
- SendMessageBatch drops the entries' ``MessageSystemAttributes`` (SendMessage keeps them), so
  for batches the ``AWSTraceHeader`` is checked in the HTTP request that went to the emulator.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, TraceState

from hoptrace.instrumentation import guard
from hoptrace.instrumentation.carriers import POINTERS, RecordContext, sns, sqs, w3c, xray
from tests.conftest import Tracing
from tests.lambda_events_messaging import sns_record, sqs_event, sqs_record

pytestmark = pytest.mark.integration

RECEIVE_ALL = {
    "AttributeNames": ["All"],
    "MessageSystemAttributeNames": ["All"],
    "MessageAttributeNames": ["All"],
}


# --- helpers -----------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_queue(client: Any, **attributes: str) -> tuple[str, str, str]:
    """(url, arn, name) of a new queue."""
    name = unique("q")
    url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn, name


def receive(client: Any, url: str, n: int) -> list[dict[str, Any]]:
    """Exactly ``n`` messages from the queue, as boto3 returns them."""
    messages: list[dict[str, Any]] = []
    for _ in range(20):
        got = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, **RECEIVE_ALL)
        messages.extend(got.get("Messages", []))
        if len(messages) >= n:
            break
    assert len(messages) == n, f"expected {n} messages, received {len(messages)}"
    return messages


def capture_requests(client: Any, operation: str) -> list[dict[str, Any]]:
    """The JSON bodies of the HTTP requests the client sends for ``operation`` (as they go out)."""
    bodies: list[dict[str, Any]] = []

    def before_send(request: Any, **_: Any) -> None:
        bodies.append(json.loads(request.body))

    client.meta.events.register(f"before-send.sqs.{operation}", before_send)
    return bodies


def spans_named(tracing: Tracing, name: str) -> list[ReadableSpan]:
    return [s for s in tracing.spans() if s.name == name]


def pointers(span: ReadableSpan) -> list[str]:
    value = (span.attributes or {}).get(POINTERS, ())
    assert isinstance(value, (list, tuple))
    return [str(p) for p in value]


def producer_of(spans: list[ReadableSpan], pointer: str) -> ReadableSpan:
    matches = [s for s in spans if pointer in pointers(s)]
    assert len(matches) == 1, f"{len(matches)} producer spans carry {pointer}"
    return matches[0]


def assert_parent_is(rc: RecordContext, span: ReadableSpan | trace.Span) -> None:
    """The record's parent is exactly this span (same trace id and span id, in hex as OTLP shows them)."""
    expected = span.get_span_context()
    assert rc.parent is not None, rc.failed_to_extract
    assert expected is not None
    assert f"{rc.parent.trace_id:032x}" == f"{expected.trace_id:032x}"
    assert f"{rc.parent.span_id:016x}" == f"{expected.span_id:016x}"
    assert rc.parent.is_remote


def record_pointers(rc: RecordContext) -> list[str]:
    return list(rc.attributes.get(POINTERS, ()))


@pytest.fixture
def clients(tracing: Tracing, boto_session: Any) -> Iterator[tuple[Any, Any]]:
    """Traced SQS and SNS clients (made after tracing was initialised)."""
    yield boto_session.client("sqs"), boto_session.client("sns")


def subscribe(sns_client: Any, topic_arn: str, queue_arn: str, raw: bool) -> str:
    return str(
        sns_client.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true" if raw else "false"},
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
    )


# --- SQS ---------------------------------------------------------------------------------


def test_a_single_send_continues_the_producer_trace_and_both_sides_write_the_same_pointers(
    tracing: Tracing, clients: tuple[Any, Any]
) -> None:
    sqs_client, _ = clients
    url, arn, name = create_queue(sqs_client)
    with tracing.state.tracer.start_as_current_span("checkout") as checkout:
        sqs_client.send_message(QueueUrl=url, MessageBody='{"order": 42}')
    (message,) = receive(sqs_client, url, 1)
    rc = sqs.extract(sqs_record(message, arn))

    (producer,) = spans_named(tracing, "SQS.SendMessage")
    assert producer.kind is SpanKind.PRODUCER
    assert producer.parent is not None and producer.parent.span_id == checkout.get_span_context().span_id
    assert_parent_is(rc, producer)
    assert (
        pointers(producer) == record_pointers(rc) == [f"sqs:msg:{message['MessageId']}", f"md5:{message['MD5OfBody']}"]
    )
    assert producer.attributes is not None
    assert producer.attributes["messaging.system"] == "aws_sqs"
    assert producer.attributes["messaging.operation.type"] == "send"
    assert producer.attributes["messaging.destination.name"] == name
    assert producer.attributes["messaging.message.id"] == message["MessageId"]
    assert "hoptrace.propagation.skipped" not in producer.attributes
    assert rc.failed_to_extract is None
    assert rc.record_id == message["MessageId"]
    assert rc.name == f"{name} process"
    assert rc.attributes["messaging.destination.name"] == name
    assert rc.attributes["messaging.operation.type"] == "process"
    assert rc.attributes["hoptrace.messaging.receive_count"] == 1
    assert rc.attributes["hoptrace.propagation.carrier"] == "w3c"


def test_the_aws_trace_header_names_the_same_producer_span_as_traceparent(
    tracing: Tracing, clients: tuple[Any, Any]
) -> None:
    sqs_client, _ = clients
    url, _, _ = create_queue(sqs_client)
    with tracing.state.tracer.start_as_current_span("checkout"):
        sqs_client.send_message(QueueUrl=url, MessageBody="hello")
    (message,) = receive(sqs_client, url, 1)
    from_xray = xray.parse_header(message["Attributes"]["AWSTraceHeader"])
    from_w3c = w3c.extract({"traceparent": message["MessageAttributes"]["traceparent"]["StringValue"]})
    assert from_xray is not None and from_w3c is not None
    assert (from_xray.trace_id, from_xray.span_id) == (from_w3c.trace_id, from_w3c.span_id)
    (producer,) = spans_named(tracing, "SQS.SendMessage")
    assert producer.context is not None and from_w3c.span_id == producer.context.span_id


def test_send_message_batch_of_ten_gives_every_record_the_batch_span_and_its_own_pointers(
    tracing: Tracing, clients: tuple[Any, Any]
) -> None:
    sqs_client, _ = clients
    url, arn, _ = create_queue(sqs_client)
    entries = [{"Id": f"e{i}", "MessageBody": f"item {i}"} for i in range(10)]
    sent = capture_requests(sqs_client, "SendMessageBatch")
    with tracing.state.tracer.start_as_current_span("fan-out"):
        sqs_client.send_message_batch(QueueUrl=url, Entries=entries)
    event = sqs_event(receive(sqs_client, url, 10), arn)

    (producer,) = spans_named(tracing, "SQS.SendMessageBatch")
    assert producer.attributes is not None
    assert producer.attributes["messaging.batch.message_count"] == 10
    assert producer.attributes["hoptrace.messaging.batch.failed_count"] == 0
    consumer_pointers = []
    for record in event["Records"]:
        rc = sqs.extract(record)
        assert_parent_is(rc, producer)
        consumer_pointers.extend(record_pointers(rc))
    assert sorted(pointers(producer)) == sorted(consumer_pointers)
    assert len(pointers(producer)) == 20
    (request,) = sent
    headers = {e["MessageSystemAttributes"]["AWSTraceHeader"]["StringValue"] for e in request["Entries"]}
    assert producer.context is not None
    assert {xray.parse_header(h).span_id for h in headers} == {producer.context.span_id}  # type: ignore[union-attr]


def test_a_batch_of_ten_records_from_ten_traces_parents_each_record_to_its_own_producer(
    tracing: Tracing, clients: tuple[Any, Any]
) -> None:
    sqs_client, _ = clients
    url, arn, _ = create_queue(sqs_client)
    roots = []
    for i in range(10):
        # A fresh root context per request: ten independent transactions.
        with tracing.state.tracer.start_as_current_span(f"request {i}", context=otel_context.Context()) as root:
            sqs_client.send_message(QueueUrl=url, MessageBody=f"order {i}")
            roots.append(root.get_span_context().trace_id)
    event = sqs_event(receive(sqs_client, url, 10), arn)

    producers = spans_named(tracing, "SQS.SendMessage")
    assert len({p.context.trace_id for p in producers if p.context is not None}) == 10
    seen_traces = set()
    for record in event["Records"]:
        rc = sqs.extract(record)
        producer = producer_of(producers, f"sqs:msg:{record['messageId']}")
        assert_parent_is(rc, producer)
        assert f"md5:{record['md5OfBody']}" in pointers(producer)
        assert rc.parent is not None
        seen_traces.add(rc.parent.trace_id)
    assert seen_traces == set(roots)


def test_batch_entries_that_already_carry_their_own_traceparent_keep_their_own_trace(
    tracing: Tracing, clients: tuple[Any, Any]
) -> None:
    """A relay batching work from ten transactions: each entry names its own origin span."""
    sqs_client, _ = clients
    url, arn, _ = create_queue(sqs_client)
    origins = {}
    entries = []
    for i in range(10):
        origin = tracing.state.tracer.start_span(f"origin {i}", context=otel_context.Context())
        origin.end()
        origins[f"body {i}"] = origin
        attrs = {k: {"DataType": "String", "StringValue": v} for k, v in w3c.headers_for(origin).items()}
        entries.append({"Id": f"e{i}", "MessageBody": f"body {i}", "MessageAttributes": attrs})
    sent = capture_requests(sqs_client, "SendMessageBatch")
    sqs_client.send_message_batch(QueueUrl=url, Entries=entries)
    event = sqs_event(receive(sqs_client, url, 10), arn)

    for record in event["Records"]:
        rc = sqs.extract(record)
        assert_parent_is(rc, origins[record["body"]])
    # AWSTraceHeader still names the batch call, which sent the messages.
    (batch_span,) = spans_named(tracing, "SQS.SendMessageBatch")
    (request,) = sent
    for entry in request["Entries"]:
        header = xray.parse_header(entry["MessageSystemAttributes"]["AWSTraceHeader"]["StringValue"])
        assert batch_span.context is not None and header is not None
        assert header.span_id == batch_span.context.span_id
        assert set(entry["MessageAttributes"]) == {"traceparent"}  # the entry's own, not a second one


def test_with_ten_attributes_used_context_rides_in_aws_trace_header_and_the_skip_is_recorded(
    tracing: Tracing, clients: tuple[Any, Any]
) -> None:
    sqs_client, _ = clients
    url, arn, _ = create_queue(sqs_client)
    user_attrs = {f"attr{i}": {"DataType": "String", "StringValue": f"v{i}"} for i in range(10)}
    before = guard.stats().get("propagation.skipped.attribute_quota", 0)
    with tracing.state.tracer.start_as_current_span("checkout"):
        sqs_client.send_message(QueueUrl=url, MessageBody="full", MessageAttributes=user_attrs)
    (message,) = receive(sqs_client, url, 1)
    rc = sqs.extract(sqs_record(message, arn))

    (producer,) = spans_named(tracing, "SQS.SendMessage")
    assert set(message["MessageAttributes"]) == set(user_attrs)  # nothing of ours added
    assert "AWSTraceHeader" in message["Attributes"]
    assert producer.attributes is not None
    assert producer.attributes["hoptrace.propagation.skipped"] == "attribute_quota"
    assert guard.stats().get("propagation.skipped.attribute_quota", 0) == before + 1
    assert_parent_is(rc, producer)
    assert rc.attributes["hoptrace.propagation.carrier"] == "xray"
    assert rc.failed_to_extract is None
    assert pointers(producer) == record_pointers(rc)


def _body_of_bytes(n: int) -> str:
    """A body of exactly ``n`` UTF-8 bytes that mixes 2-byte characters in (bytes != characters)."""
    body = "é" * (n // 4) + "x" * (n - 2 * (n // 4))
    assert len(body.encode()) == n
    return body


@pytest.mark.parametrize("over_by", [0, 1])
def test_a_message_near_256_kib_gets_w3c_only_if_body_and_attributes_still_fit(
    tracing: Tracing, clients: tuple[Any, Any], over_by: int
) -> None:
    sqs_client, _ = clients
    url, arn, _ = create_queue(sqs_client, MaximumMessageSize="262144")
    user_attrs = {
        "tenant": {"DataType": "String", "StringValue": "acme"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff" * 8},
    }
    user_bytes = len("tenant") + len("String") + len("acme") + len("blob") + len("Binary") + 16
    traceparent_bytes = len("traceparent") + len("String") + 55  # tracestate is empty here
    body = _body_of_bytes(262_144 - user_bytes - traceparent_bytes + over_by)
    with tracing.state.tracer.start_as_current_span("upload"):
        sqs_client.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=user_attrs)
    (message,) = receive(sqs_client, url, 1)
    rc = sqs.extract(sqs_record(message, arn))

    (producer,) = spans_named(tracing, "SQS.SendMessage")
    assert producer.attributes is not None
    if over_by:
        assert "traceparent" not in message["MessageAttributes"]
        assert producer.attributes["hoptrace.propagation.skipped"] == "size_limit"
        assert rc.attributes["hoptrace.propagation.carrier"] == "xray"
    else:
        assert "traceparent" in message["MessageAttributes"]
        assert "hoptrace.propagation.skipped" not in producer.attributes
        assert rc.attributes["hoptrace.propagation.carrier"] == "w3c"
    assert_parent_is(rc, producer)
    assert pointers(producer) == record_pointers(rc)


def test_a_binary_traceparent_is_read_and_binary_attributes_survive_the_round_trip(
    tracing: Tracing, clients: tuple[Any, Any]
) -> None:
    sqs_client, _ = clients
    url, arn, _ = create_queue(sqs_client)
    origin = tracing.state.tracer.start_span("java-producer", context=otel_context.Context())
    origin.end()
    traceparent = w3c.headers_for(origin)["traceparent"].encode()
    attrs = {
        "traceparent": {"DataType": "Binary", "BinaryValue": traceparent},
        "thumbnail": {"DataType": "Binary", "BinaryValue": b"\x89PNG\r\n\x1a\n\x00"},
    }
    sqs_client.send_message(QueueUrl=url, MessageBody="picture", MessageAttributes=attrs)
    (message,) = receive(sqs_client, url, 1)
    record = sqs_record(message, arn)
    rc = sqs.extract(record)

    assert record["messageAttributes"]["traceparent"]["dataType"] == "Binary"
    assert isinstance(record["messageAttributes"]["traceparent"]["binaryValue"], str)  # base64, as Lambda gives it
    assert message["MessageAttributes"]["thumbnail"]["BinaryValue"] == b"\x89PNG\r\n\x1a\n\x00"
    assert_parent_is(rc, origin)
    assert rc.failed_to_extract is None
    # The same message as boto3 returned it (bytes, not base64) reads the same.
    polled = sqs.extract_message(message)
    assert_parent_is(polled, origin)


def test_extract_message_reads_a_polled_message_like_the_lambda_record(
    tracing: Tracing, clients: tuple[Any, Any]
) -> None:
    sqs_client, _ = clients
    url, arn, name = create_queue(sqs_client)
    with tracing.state.tracer.start_as_current_span("checkout"):
        sqs_client.send_message(QueueUrl=url, MessageBody="poll me")
    (message,) = receive(sqs_client, url, 1)
    polled = sqs.extract_message(message, name)
    from_lambda = sqs.extract(sqs_record(message, arn))
    assert polled == from_lambda
    (producer,) = spans_named(tracing, "SQS.SendMessage")
    assert_parent_is(polled, producer)


def test_a_polled_message_is_named_after_the_queue_its_traced_receive_read_it_from(
    tracing: Tracing, clients: tuple[Any, Any]
) -> None:
    sqs_client, _ = clients
    url, _, name = create_queue(sqs_client)
    sqs_client.send_message(QueueUrl=url, MessageBody="job")
    (message,) = receive(sqs_client, url, 1)
    rc = sqs.extract_message(message)  # no queue given: the message itself does not say
    assert rc.name == f"{name} process"
    assert rc.attributes["messaging.destination.name"] == name
    receives = [s for s in spans_named(tracing, "SQS.ReceiveMessage") if s.attributes]
    assert all(s.kind is SpanKind.CONSUMER for s in receives)
    assert [s.attributes["messaging.batch.message_count"] for s in receives if s.attributes] == [1]


def test_a_users_own_aws_trace_header_is_kept(tracing: Tracing, clients: tuple[Any, Any]) -> None:
    sqs_client, _ = clients
    url, _, _ = create_queue(sqs_client)
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    sqs_client.send_message(
        QueueUrl=url,
        MessageBody="x",
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String", "StringValue": header}},
    )
    (message,) = receive(sqs_client, url, 1)
    assert message["Attributes"]["AWSTraceHeader"] == header
    assert "traceparent" in message["MessageAttributes"]  # W3C still added beside it


def test_the_users_dicts_and_lists_do_not_change_over_twenty_sends(tracing: Tracing, clients: tuple[Any, Any]) -> None:
    sqs_client, sns_client = clients
    url, arn, _ = create_queue(sqs_client)
    attrs = {"tenant": {"DataType": "String", "StringValue": "acme"}}
    system: dict[str, Any] = {}
    entries = [{"Id": "a", "MessageBody": "a", "MessageAttributes": attrs}, {"Id": "b", "MessageBody": "b"}]
    snapshot = copy.deepcopy((attrs, system, entries))
    topic_arn = sns_client.create_topic(Name=unique("t"))["TopicArn"]
    subscribe(sns_client, topic_arn, arn, raw=True)
    sns_entries = [{"Id": "p", "Message": "m", "MessageAttributes": attrs}]
    sns_snapshot = copy.deepcopy(sns_entries)

    with tracing.state.tracer.start_as_current_span("loop"):
        for i in range(20):
            sqs_client.send_message(
                QueueUrl=url, MessageBody=f"n{i}", MessageAttributes=attrs, MessageSystemAttributes=system
            )
        sqs_client.send_message_batch(QueueUrl=url, Entries=entries)
        sns_client.publish(TopicArn=topic_arn, Message="pub", MessageAttributes=attrs)
        sns_client.publish_batch(TopicArn=topic_arn, PublishBatchRequestEntries=sns_entries)

    assert (attrs, system, entries) == snapshot
    assert sns_entries == sns_snapshot
    messages = receive(sqs_client, url, 24)
    # Each message carries the context of the call that sent it, not a leftover of another.
    parents = [sqs.extract(sqs_record(m, arn)).parent for m in messages]
    send_spans = {s.context.span_id for s in tracing.spans() if s.kind is SpanKind.PRODUCER and s.context is not None}
    assert all(p is not None and p.span_id in send_spans for p in parents)
    assert len({p.span_id for p in parents if p is not None}) == 23  # 20 sends, 1 batch, 2 publishes


def test_bodies_that_are_not_sns_notifications_are_just_bodies(tracing: Tracing, clients: tuple[Any, Any]) -> None:
    sqs_client, _ = clients
    url, arn, _ = create_queue(sqs_client)
    bodies = [
        "plain text, not JSON {",
        '{"TopicArn": "arn:aws:sns:us-east-1:1:t", "truncated": ',
        '{"TopicArn": "arn:aws:sns:us-east-1:1:t", "Type": "Something else"}',
        '["a", "json", "array"]',
        '{"TopicArn": ' + "[" * 5000 + "]" * 5000 + "}",
    ]
    with tracing.state.tracer.start_as_current_span("send"):
        for body in bodies:
            sqs_client.send_message(QueueUrl=url, MessageBody=body)
    messages = receive(sqs_client, url, len(bodies))
    for message in messages:
        rc = sqs.extract(sqs_record(message, arn))
        assert rc.failed_to_extract is None, rc.failed_to_extract
        assert rc.parent is not None
        assert rc.attributes["hoptrace.propagation.carrier"] == "w3c"
        assert not any(p.startswith("sns:msg:") for p in record_pointers(rc))
        assert "hoptrace.sns.topic" not in rc.attributes


def test_a_garbage_traceparent_falls_back_to_aws_trace_header_and_says_what_was_wrong(
    tracing: Tracing, clients: tuple[Any, Any]
) -> None:
    sqs_client, _ = clients
    url, arn, _ = create_queue(sqs_client)
    with tracing.state.tracer.start_as_current_span("send"):
        sqs_client.send_message(
            QueueUrl=url,
            MessageBody="x",
            MessageAttributes={"traceparent": {"DataType": "String", "StringValue": "00-not-a-trace-01"}},
        )
    (message,) = receive(sqs_client, url, 1)
    rc = sqs.extract(sqs_record(message, arn))
    (producer,) = spans_named(tracing, "SQS.SendMessage")
    assert_parent_is(rc, producer)
    assert rc.attributes["hoptrace.propagation.carrier"] == "xray"
    assert rc.failed_to_extract is not None
    assert "traceparent attribute is malformed" in rc.failed_to_extract
    assert "00-not-a-trace-01" in rc.failed_to_extract


# --- SNS ---------------------------------------------------------------------------------


@pytest.fixture
def topic(clients: tuple[Any, Any]) -> dict[str, Any]:
    """A topic with two SQS subscribers, one with raw delivery and one without."""
    sqs_client, sns_client = clients
    name = unique("topic")
    topic_arn = sns_client.create_topic(Name=name)["TopicArn"]
    raw_url, raw_arn, _ = create_queue(sqs_client)
    env_url, env_arn, _ = create_queue(sqs_client)
    return {
        "name": name,
        "arn": topic_arn,
        "raw": (raw_url, raw_arn, subscribe(sns_client, topic_arn, raw_arn, raw=True)),
        "envelope": (env_url, env_arn, subscribe(sns_client, topic_arn, env_arn, raw=False)),
    }


def test_raw_sns_to_sqs_delivery_carries_w3c_in_sqs_attributes_and_matches_on_md5(
    tracing: Tracing, clients: tuple[Any, Any], topic: dict[str, Any]
) -> None:
    sqs_client, sns_client = clients
    with tracing.state.tracer.start_as_current_span("publish"):
        sns_client.publish(TopicArn=topic["arn"], Message="ü order shipped")
    url, arn, _ = topic["raw"]
    (message,) = receive(sqs_client, url, 1)
    rc = sqs.extract(sqs_record(message, arn))

    (producer,) = spans_named(tracing, "SNS.Publish")
    assert producer.kind is SpanKind.PRODUCER
    assert producer.attributes is not None
    assert producer.attributes["messaging.system"] == "aws_sns"
    assert producer.attributes["messaging.destination.name"] == topic["name"]
    assert_parent_is(rc, producer)
    assert rc.attributes["hoptrace.propagation.carrier"] == "w3c"
    md5_pointer = f"md5:{message['MD5OfBody']}"
    assert md5_pointer in pointers(producer)
    assert md5_pointer in record_pointers(rc)


def test_non_raw_sns_to_sqs_delivery_reads_context_and_pointers_from_the_envelope(
    tracing: Tracing, clients: tuple[Any, Any], topic: dict[str, Any]
) -> None:
    sqs_client, sns_client = clients
    with tracing.state.tracer.start_as_current_span("publish"):
        sns_client.publish(TopicArn=topic["arn"], Message='{"id": 7}', Subject="order")
    url, arn, _ = topic["envelope"]
    (message,) = receive(sqs_client, url, 1)
    rc = sqs.extract(sqs_record(message, arn))

    (producer,) = spans_named(tracing, "SNS.Publish")
    assert "traceparent" not in message.get("MessageAttributes", {})  # context is inside the body
    assert_parent_is(rc, producer)
    assert rc.attributes["hoptrace.propagation.carrier"] == "sns_envelope"
    assert rc.attributes["hoptrace.sns.topic"] == topic["name"]
    assert rc.failed_to_extract is None
    envelope_id = json.loads(message["Body"])["MessageId"]
    assert pointers(producer) == [
        f"sns:msg:{envelope_id}",
        f"md5:{sns.md5_hex(json.loads(message['Body'])['Message'])}",
    ]
    assert set(pointers(producer)) <= set(record_pointers(rc))
    assert f"sqs:msg:{message['MessageId']}" in record_pointers(rc)


def test_an_sns_lambda_record_continues_the_publisher_trace_with_equal_pointers(
    tracing: Tracing, clients: tuple[Any, Any], topic: dict[str, Any]
) -> None:
    sqs_client, sns_client = clients
    with tracing.state.tracer.start_as_current_span("publish"):
        sns_client.publish(TopicArn=topic["arn"], Message="hello lambda")
    url, _, subscription_arn = topic["envelope"]
    (message,) = receive(sqs_client, url, 1)
    record = sns_record(message["Body"], subscription_arn)
    rc = sns.extract(record)

    (producer,) = spans_named(tracing, "SNS.Publish")
    assert record["Sns"]["Subject"] is None
    assert_parent_is(rc, producer)
    assert pointers(producer) == record_pointers(rc)
    assert rc.record_id == record["Sns"]["MessageId"]
    assert rc.name == f"{topic['name']} process"
    assert rc.attributes["messaging.system"] == "aws_sns"
    assert rc.attributes["messaging.destination.name"] == topic["name"]
    assert rc.attributes["messaging.operation.type"] == "process"
    assert rc.failed_to_extract is None


def test_publish_batch_gives_each_entry_context_and_matches_pointers_by_entry(
    tracing: Tracing, clients: tuple[Any, Any], topic: dict[str, Any]
) -> None:
    sqs_client, sns_client = clients
    entries = [{"Id": f"n{i}", "Message": f"note {i}"} for i in range(3)]
    with tracing.state.tracer.start_as_current_span("publish"):
        sns_client.publish_batch(TopicArn=topic["arn"], PublishBatchRequestEntries=entries)
    url, arn, _ = topic["envelope"]
    messages = receive(sqs_client, url, 3)

    (producer,) = spans_named(tracing, "SNS.PublishBatch")
    assert producer.attributes is not None
    assert producer.attributes["messaging.batch.message_count"] == 3
    assert producer.attributes["hoptrace.messaging.batch.failed_count"] == 0
    assert len(pointers(producer)) == 6
    for message in messages:
        rc = sqs.extract(sqs_record(message, arn))
        assert_parent_is(rc, producer)
        envelope = json.loads(message["Body"])
        assert f"sns:msg:{envelope['MessageId']}" in pointers(producer)
        assert f"md5:{sns.md5_hex(envelope['Message'])}" in pointers(producer)
        assert {f"sns:msg:{envelope['MessageId']}", f"md5:{sns.md5_hex(envelope['Message'])}"} <= set(
            record_pointers(rc)
        )


def test_a_json_structured_publish_points_at_the_text_sqs_subscribers_receive(
    tracing: Tracing, clients: tuple[Any, Any], topic: dict[str, Any]
) -> None:
    sqs_client, sns_client = clients
    structured = json.dumps({"default": "for everyone", "sqs": "for queues"})
    with tracing.state.tracer.start_as_current_span("publish"):
        sns_client.publish(TopicArn=topic["arn"], Message=structured, MessageStructure="json")
    url, arn, _ = topic["raw"]
    (message,) = receive(sqs_client, url, 1)
    assert message["Body"] == "for queues"
    (producer,) = spans_named(tracing, "SNS.Publish")
    assert f"md5:{message['MD5OfBody']}" in pointers(producer)
    assert f"md5:{message['MD5OfBody']}" in record_pointers(sqs.extract(sqs_record(message, arn)))


def test_sns_w3c_skipped_when_ten_attributes_are_used_is_recorded(
    tracing: Tracing, clients: tuple[Any, Any], topic: dict[str, Any]
) -> None:
    sqs_client, sns_client = clients
    user_attrs = {f"a{i}": {"DataType": "String", "StringValue": str(i)} for i in range(10)}
    with tracing.state.tracer.start_as_current_span("publish"):
        sns_client.publish(TopicArn=topic["arn"], Message="crowded", MessageAttributes=user_attrs)
    url, arn, _ = topic["envelope"]
    (message,) = receive(sqs_client, url, 1)
    rc = sqs.extract(sqs_record(message, arn))
    (producer,) = spans_named(tracing, "SNS.Publish")
    assert producer.attributes is not None
    assert producer.attributes["hoptrace.propagation.skipped"] == "attribute_quota"
    assert set(json.loads(message["Body"])["MessageAttributes"]) == set(user_attrs)
    assert rc.parent is None  # SNS has no second carrier: the pointers must join this hop
    assert rc.failed_to_extract is None
    assert set(pointers(producer)) <= set(record_pointers(rc))


def test_a_malformed_traceparent_in_an_envelope_is_reported_and_pointers_are_kept(
    tracing: Tracing, clients: tuple[Any, Any], topic: dict[str, Any]
) -> None:
    sqs_client, sns_client = clients
    sns_client.publish(
        TopicArn=topic["arn"],
        Message="m",
        MessageAttributes={"traceparent": {"DataType": "String", "StringValue": "garbage"}},
    )
    url, arn, subscription_arn = topic["envelope"]
    (message,) = receive(sqs_client, url, 1)
    rc = sqs.extract(sqs_record(message, arn))
    assert rc.parent is None
    assert rc.failed_to_extract == "SNS envelope: traceparent attribute is malformed: 'garbage'"
    assert any(p.startswith("sns:msg:") for p in record_pointers(rc))
    from_lambda = sns.extract(sns_record(message["Body"], subscription_arn))
    assert from_lambda.parent is None
    assert from_lambda.failed_to_extract == "traceparent attribute is malformed: 'garbage'"
    assert len(record_pointers(from_lambda)) == 2


def test_tracestate_travels_with_traceparent(tracing: Tracing, clients: tuple[Any, Any]) -> None:
    sqs_client, _ = clients
    url, arn, _ = create_queue(sqs_client)
    upstream = trace.SpanContext(
        0x1234, 0x5678, is_remote=True, trace_flags=trace.TraceFlags(1), trace_state=TraceState([("vendor", "v1")])
    )
    ctx = trace.set_span_in_context(trace.NonRecordingSpan(upstream))
    with tracing.state.tracer.start_as_current_span("child", context=ctx):
        sqs_client.send_message(QueueUrl=url, MessageBody="x")
    (message,) = receive(sqs_client, url, 1)
    rc = sqs.extract(sqs_record(message, arn))
    assert message["MessageAttributes"]["tracestate"]["StringValue"] == "vendor=v1"
    assert rc.parent is not None
    assert rc.parent.trace_state.get("vendor") == "v1"
    assert rc.parent.trace_id == 0x1234
