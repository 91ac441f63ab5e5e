"""The SQS and SNS carriers on their own: injection rules, pointers, and reading odd records.

Producer tests call the carrier the way the botocore hook does (``on_request`` with the call's
parameters, ``on_response`` with a parsed response); consumer records are built with
``tests.lambda_events_messaging`` from messages shaped like boto3's ReceiveMessage output.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
    TraceState,
)

from hoptrace.instrumentation import guard
from hoptrace.instrumentation.carriers import POINTERS, AwsCall, sns, sqs, w3c, xray
from tests.conftest import Tracing
from tests.lambda_events_messaging import sns_record, sqs_record

QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:orders"
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:shipments"
SUBSCRIPTION_ARN = TOPIC_ARN + ":21be56ed-a058-49f5-8c98-aedd2564c486"
TRACEPARENT_BYTES = len("traceparent") + len("String") + 55


def remote(trace_id: int, span_id: int, state: TraceState | None = None) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(1), trace_state=state)


def start(tracing: Tracing, name: str, state: TraceState | None = None) -> Span:
    """A span in a fresh trace; with ``state``, one whose tracestate is non-empty."""
    ctx = otel_context.Context()
    if state is not None:
        ctx = trace.set_span_in_context(NonRecordingSpan(remote(0xABC, 0xDEF, state)))
    return tracing.state.tracer.start_span(name, context=ctx)


def call(
    tracing: Tracing, service: str, operation: str, params: dict[str, Any], state: TraceState | None = None
) -> AwsCall:
    return AwsCall(service, operation, params, start(tracing, f"{service}.{operation}", state))


def send(tracing: Tracing, state: TraceState | None = None, **params: Any) -> AwsCall:
    c = call(tracing, "sqs", "SendMessage", {"QueueUrl": QUEUE_URL, **params}, state)
    sqs.CARRIER.on_request(c)
    return c


def attrs(c: AwsCall) -> dict[str, Any]:
    return dict(c.span.attributes or {})  # type: ignore[attr-defined]


def string_attrs(n: int) -> dict[str, Any]:
    return {f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(n)}


# --- span kinds --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("carrier", "operation", "kind"),
    [
        (sqs.CARRIER, "SendMessage", SpanKind.PRODUCER),
        (sqs.CARRIER, "SendMessageBatch", SpanKind.PRODUCER),
        (sqs.CARRIER, "ReceiveMessage", SpanKind.CONSUMER),
        (sqs.CARRIER, "DeleteMessage", SpanKind.CLIENT),
        (sqs.CARRIER, "CreateQueue", SpanKind.CLIENT),
        (sns.CARRIER, "Publish", SpanKind.PRODUCER),
        (sns.CARRIER, "PublishBatch", SpanKind.PRODUCER),
        (sns.CARRIER, "Subscribe", SpanKind.CLIENT),
    ],
)
def test_sends_are_producer_spans_receive_is_consumer_and_the_rest_are_client(
    carrier: Any, operation: str, kind: SpanKind
) -> None:
    assert carrier.span_kind(operation, {}) is kind


# --- SQS producer ------------------------------------------------------------------------


def test_send_message_carries_aws_trace_header_and_w3c_naming_the_call_span(tracing: Tracing) -> None:
    c = send(tracing, MessageBody="hi")
    ctx = c.span.get_span_context()
    header = c.params["MessageSystemAttributes"]["AWSTraceHeader"]
    assert header["DataType"] == "String"
    assert header["StringValue"] == xray.format_header(ctx)
    assert c.params["MessageAttributes"] == {
        "traceparent": {
            "DataType": "String",
            "StringValue": f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}",
        }
    }
    assert attrs(c) == {
        "messaging.system": "aws_sqs",
        "messaging.destination.name": "orders",
        "messaging.operation.type": "send",
    }


def test_receive_message_is_described_as_a_receive_and_counts_what_came_back(tracing: Tracing) -> None:
    c = call(tracing, "sqs", "ReceiveMessage", {"QueueUrl": QUEUE_URL + "/"})
    sqs.CARRIER.on_request(c)
    sqs.CARRIER.on_response(c, {"Messages": [{"MessageId": "1"}, {"MessageId": "2"}]})
    assert c.params == {"QueueUrl": QUEUE_URL + "/"}  # the user's result is never widened
    assert attrs(c)["messaging.operation.type"] == "receive"
    assert attrs(c)["messaging.destination.name"] == "orders"
    assert attrs(c)["messaging.batch.message_count"] == 2


@pytest.mark.parametrize(("existing", "added"), [(8, True), (9, True), (10, False)])
def test_traceparent_is_added_only_while_the_ten_attribute_quota_allows(
    tracing: Tracing, existing: int, added: bool
) -> None:
    c = send(tracing, MessageBody="x", MessageAttributes=string_attrs(existing))
    assert ("traceparent" in c.params["MessageAttributes"]) is added
    assert len(c.params["MessageAttributes"]) == (existing + 1 if added else existing)
    assert attrs(c).get("hoptrace.propagation.skipped") == (None if added else "attribute_quota")
    assert "AWSTraceHeader" in c.params["MessageSystemAttributes"]  # outside the quota, always there


@pytest.mark.parametrize(("existing", "added"), [(8, True), (9, False)])
def test_a_non_empty_tracestate_counts_against_the_quota_too(tracing: Tracing, existing: int, added: bool) -> None:
    c = send(tracing, TraceState([("vendor", "v1")]), MessageBody="x", MessageAttributes=string_attrs(existing))
    assert ("traceparent" in c.params["MessageAttributes"]) is added
    assert ("tracestate" in c.params["MessageAttributes"]) is added
    if added:
        assert c.params["MessageAttributes"]["tracestate"] == {"DataType": "String", "StringValue": "vendor=v1"}


def _sized_message(total: int) -> dict[str, Any]:
    """Body and attributes whose size as SQS counts it, plus traceparent's, is ``total`` bytes."""
    user = {
        "größe": {"DataType": "Number", "StringValue": "12"},  # non-ASCII name: 7 bytes
        "note": {"DataType": "String.custom", "StringValue": "naïve"},  # custom type label; 6-byte value
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\x02"},
    }
    user_bytes = (7 + 6 + 2) + (4 + 13 + 6) + (4 + 6 + 3)
    body_bytes = total - user_bytes - TRACEPARENT_BYTES
    body = "€" * (body_bytes // 3) + "x" * (body_bytes % 3)  # 3-byte characters: bytes != len()
    assert len(body.encode()) == body_bytes
    return {"MessageBody": body, "MessageAttributes": user}


@pytest.mark.parametrize(("total", "added"), [(262_144, True), (262_145, False)])
def test_traceparent_is_added_only_while_body_and_attributes_stay_within_256_kib(
    tracing: Tracing, total: int, added: bool
) -> None:
    c = send(tracing, **_sized_message(total))
    assert ("traceparent" in c.params["MessageAttributes"]) is added
    assert attrs(c).get("hoptrace.propagation.skipped") == (None if added else "size_limit")
    assert "AWSTraceHeader" in c.params["MessageSystemAttributes"]  # does not count towards the size


def test_skips_are_counted_per_reason(tracing: Tracing) -> None:
    before = guard.stats()
    send(tracing, MessageBody="x", MessageAttributes=string_attrs(10))
    send(tracing, MessageBody="x" * 262_144)
    send(tracing, MessageBody="x" * 262_144)
    after = guard.stats()
    assert (
        after.get("propagation.skipped.attribute_quota", 0) - before.get("propagation.skipped.attribute_quota", 0) == 1
    )
    assert after.get("propagation.skipped.size_limit", 0) - before.get("propagation.skipped.size_limit", 0) == 2


def test_a_users_own_traceparent_and_aws_trace_header_are_left_as_they_are(tracing: Tracing) -> None:
    mine_attrs = {"traceparent": {"DataType": "String", "StringValue": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}}
    mine_system = {
        "AWSTraceHeader": {
            "DataType": "String",
            "StringValue": "Root=1-00000001-000000000000000000000001;Parent=0000000000000002;Sampled=1",
        }
    }
    c = send(tracing, MessageBody="x", MessageAttributes=mine_attrs, MessageSystemAttributes=mine_system)
    assert c.params["MessageAttributes"] is mine_attrs
    assert c.params["MessageSystemAttributes"] is mine_system
    assert "hoptrace.propagation.skipped" not in attrs(c)


def test_send_message_copies_the_users_dicts_instead_of_adding_to_them(tracing: Tracing) -> None:
    user_attrs = {"tenant": {"DataType": "String", "StringValue": "acme"}}
    user_system: dict[str, Any] = {}
    snapshot = copy.deepcopy((user_attrs, user_system))
    for _ in range(20):
        c = send(tracing, MessageBody="x", MessageAttributes=user_attrs, MessageSystemAttributes=user_system)
        assert c.params["MessageAttributes"] is not user_attrs
        assert c.params["MessageAttributes"]["tenant"] is user_attrs["tenant"]
    assert (user_attrs, user_system) == snapshot


def test_send_message_batch_injects_into_each_entry_and_leaves_the_users_list_alone(tracing: Tracing) -> None:
    shared = {"tenant": {"DataType": "String", "StringValue": "acme"}}
    entries = [{"Id": str(i), "MessageBody": f"m{i}", "MessageAttributes": shared} for i in range(10)]
    snapshot = copy.deepcopy(entries)
    c = call(tracing, "sqs", "SendMessageBatch", {"QueueUrl": QUEUE_URL, "Entries": entries})
    sqs.CARRIER.on_request(c)

    assert entries == snapshot
    assert c.params["Entries"] is not entries
    assert all(sent is not mine for sent, mine in zip(c.params["Entries"], entries))
    traceparent = w3c.headers_for(c.span)["traceparent"]
    for sent in c.params["Entries"]:
        assert sent["MessageAttributes"]["traceparent"]["StringValue"] == traceparent
        assert sent["MessageSystemAttributes"]["AWSTraceHeader"]["StringValue"] == xray.format_header(
            c.span.get_span_context()
        )
    assert attrs(c)["messaging.batch.message_count"] == 10


def test_a_batch_records_every_reason_it_left_context_out(tracing: Tracing) -> None:
    entries = [
        {"Id": "full", "MessageBody": "x", "MessageAttributes": string_attrs(10)},
        {"Id": "big", "MessageBody": "x" * 262_144},
        {"Id": "big2", "MessageBody": "y" * 262_144},
        {"Id": "fine", "MessageBody": "x"},
    ]
    c = call(tracing, "sqs", "SendMessageBatch", {"QueueUrl": QUEUE_URL, "Entries": entries})
    sqs.CARRIER.on_request(c)
    assert attrs(c)["hoptrace.propagation.skipped"] == "attribute_quota,size_limit"
    assert attrs(c)["hoptrace.propagation.skipped_count"] == 3
    assert ["traceparent" in e.get("MessageAttributes", {}) for e in c.params["Entries"]] == [False, False, False, True]


@pytest.mark.parametrize(
    "params",
    [
        {"MessageBody": "x", "MessageAttributes": "not a dict"},
        {"MessageBody": "x", "MessageSystemAttributes": ["not", "a", "dict"]},
        {"MessageBody": 12345, "MessageAttributes": {"n": "not a dict either"}},
        {"Entries": "not a list"},
        {"Entries": [None, "entry", 5, {"Id": "ok", "MessageBody": "x"}]},
        {},
    ],
)
def test_malformed_parameters_are_left_for_the_sdk_to_reject(tracing: Tracing, params: dict[str, Any]) -> None:
    operation = "SendMessageBatch" if "Entries" in params else "SendMessage"
    original = copy.deepcopy(params)
    c = call(tracing, "sqs", operation, dict(params))
    sqs.CARRIER.on_request(c)  # must not raise
    for key in ("MessageAttributes", "MessageSystemAttributes"):
        if key in original and not isinstance(original[key], dict):
            assert c.params[key] == original[key]
    if isinstance(original.get("Entries"), list):
        assert c.params["Entries"][:3] == original["Entries"][:3]
        assert "traceparent" in c.params["Entries"][3]["MessageAttributes"]


def test_a_span_without_valid_context_injects_nothing() -> None:
    c = AwsCall(
        "sqs", "SendMessage", {"QueueUrl": QUEUE_URL, "MessageBody": "x"}, NonRecordingSpan(INVALID_SPAN_CONTEXT)
    )
    sqs.CARRIER.on_request(c)
    assert c.params == {"QueueUrl": QUEUE_URL, "MessageBody": "x"}


def test_the_queue_of_a_received_message_is_remembered_for_a_while_and_not_forever(tracing: Tracing) -> None:
    c = call(tracing, "sqs", "ReceiveMessage", {"QueueUrl": QUEUE_URL})
    sqs.CARRIER.on_request(c)
    sqs.CARRIER.on_response(c, {"Messages": [{"MessageId": f"bounded-{i}"} for i in range(sqs._RECEIVED_MAX + 10)]})
    assert sqs.received_from("bounded-0") is None
    assert sqs.received_from(f"bounded-{sqs._RECEIVED_MAX + 9}") == "orders"
    assert (
        sqs.extract_message(
            {"MessageId": "bounded-1020", "Body": "", "MD5OfBody": "d41d8cd98f00b204e9800998ecf8427e"}
        ).name
        == "orders process"
    )
    assert len(sqs._received) == sqs._RECEIVED_MAX


# --- SQS pointers from responses ---------------------------------------------------------


def test_send_message_response_gives_the_message_id_and_both_pointers(tracing: Tracing) -> None:
    c = send(tracing, MessageBody="x")
    sqs.CARRIER.on_response(c, {"MessageId": "m-1", "MD5OfMessageBody": "9dd4e461268c8034f5c8564e155c67a6"})
    assert attrs(c)["messaging.message.id"] == "m-1"
    assert list(attrs(c)[POINTERS]) == ["sqs:msg:m-1", "md5:9dd4e461268c8034f5c8564e155c67a6"]


def test_batch_response_points_at_successful_entries_and_counts_the_failed_ones(tracing: Tracing) -> None:
    c = call(tracing, "sqs", "SendMessageBatch", {"QueueUrl": QUEUE_URL, "Entries": []})
    sqs.CARRIER.on_request(c)
    sqs.CARRIER.on_response(
        c,
        {
            "Successful": [
                {"Id": "a", "MessageId": "m-a", "MD5OfMessageBody": "0cc175b9c0f1b6a831c399e269772661"},
                {"Id": "c", "MessageId": "m-c", "MD5OfMessageBody": "4a8a08f09d37b73795649038408b5f33"},
            ],
            "Failed": [{"Id": "b", "SenderFault": True, "Code": "InvalidParameterValue", "Message": "too big"}],
        },
    )
    assert list(attrs(c)[POINTERS]) == [
        "sqs:msg:m-a",
        "md5:0cc175b9c0f1b6a831c399e269772661",
        "sqs:msg:m-c",
        "md5:4a8a08f09d37b73795649038408b5f33",
    ]
    assert attrs(c)["hoptrace.messaging.batch.failed_count"] == 1


# --- SNS producer ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "name"),
    [
        ({"TopicArn": TOPIC_ARN}, "shipments"),
        ({"TargetArn": "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/app/5f4b"}, "endpoint/GCM/app/5f4b"),
    ],
)
def test_publish_adds_string_attributes_and_names_the_destination(
    tracing: Tracing, target: dict[str, str], name: str
) -> None:
    user = {"kind": {"DataType": "String", "StringValue": "parcel"}}
    c = call(tracing, "sns", "Publish", {**target, "Message": "shipped", "MessageAttributes": user})
    sns.CARRIER.on_request(c)
    assert user == {"kind": {"DataType": "String", "StringValue": "parcel"}}
    assert c.params["MessageAttributes"]["traceparent"] == {
        "DataType": "String",
        "StringValue": w3c.headers_for(c.span)["traceparent"],
    }
    assert "MessageSystemAttributes" not in c.params
    assert attrs(c)["messaging.system"] == "aws_sns"
    assert attrs(c)["messaging.destination.name"] == name
    assert attrs(c)["messaging.operation.type"] == "send"


def test_publish_to_a_phone_number_records_no_number_and_injects_nothing(tracing: Tracing) -> None:
    c = call(tracing, "sns", "Publish", {"PhoneNumber": "+15555550100", "Message": "code 123456"})
    sns.CARRIER.on_request(c)
    sns.CARRIER.on_response(c, {"MessageId": "sms-1"})
    assert c.params == {"PhoneNumber": "+15555550100", "Message": "code 123456"}
    assert not any("5555550100" in str(v) for v in attrs(c).values())
    assert "messaging.destination.name" not in attrs(c)
    assert list(attrs(c)[POINTERS]) == ["sns:msg:sms-1"]  # no md5 of a short, guessable text


@pytest.mark.parametrize(("existing", "added"), [(9, True), (10, False)])
def test_publish_follows_the_same_quota(tracing: Tracing, existing: int, added: bool) -> None:
    c = call(
        tracing, "sns", "Publish", {"TopicArn": TOPIC_ARN, "Message": "m", "MessageAttributes": string_attrs(existing)}
    )
    sns.CARRIER.on_request(c)
    assert ("traceparent" in c.params["MessageAttributes"]) is added
    assert attrs(c).get("hoptrace.propagation.skipped") == (None if added else "attribute_quota")


@pytest.mark.parametrize(("over_by", "added"), [(0, True), (1, False)])
def test_publish_follows_the_same_size_limit(tracing: Tracing, over_by: int, added: bool) -> None:
    message = "ü" * ((262_144 - TRACEPARENT_BYTES) // 2) + "x" * over_by
    assert len(message.encode()) == 262_144 - TRACEPARENT_BYTES + over_by
    c = call(tracing, "sns", "Publish", {"TopicArn": TOPIC_ARN, "Message": message})
    sns.CARRIER.on_request(c)
    assert ("traceparent" in (c.params.get("MessageAttributes") or {})) is added


def test_publish_response_gives_the_message_id_and_the_md5_of_the_message(tracing: Tracing) -> None:
    c = call(tracing, "sns", "Publish", {"TopicArn": TOPIC_ARN, "Message": "ü order"})
    sns.CARRIER.on_request(c)
    sns.CARRIER.on_response(c, {"MessageId": "s-1"})
    assert attrs(c)["messaging.message.id"] == "s-1"
    assert list(attrs(c)[POINTERS]) == ["sns:msg:s-1", "md5:" + sns.md5_hex("ü order")]
    assert sns.md5_hex("ü order") == "0e2662176ed036a8a85d547d2fa0a4e7"  # printf 'ü order' | md5sum


def test_publish_batch_copies_entries_and_matches_pointers_to_entries_by_id(tracing: Tracing) -> None:
    shared: dict[str, Any] = {}
    entries = [{"Id": i, "Message": f"note {i}", "MessageAttributes": shared} for i in ("a", "b", "c")]
    snapshot = copy.deepcopy(entries)
    c = call(tracing, "sns", "PublishBatch", {"TopicArn": TOPIC_ARN, "PublishBatchRequestEntries": entries})
    sns.CARRIER.on_request(c)
    sns.CARRIER.on_response(
        c,
        {
            "Successful": [{"Id": "c", "MessageId": "s-c"}, {"Id": "a", "MessageId": "s-a"}],
            "Failed": [{"Id": "b", "Code": "InternalError", "SenderFault": False}],
        },
    )
    assert entries == snapshot
    assert all("traceparent" in e["MessageAttributes"] for e in c.params["PublishBatchRequestEntries"])
    assert list(attrs(c)[POINTERS]) == [
        "sns:msg:s-c",
        "md5:" + sns.md5_hex("note c"),
        "sns:msg:s-a",
        "md5:" + sns.md5_hex("note a"),
    ]
    assert attrs(c)["hoptrace.messaging.batch.failed_count"] == 1
    assert attrs(c)["messaging.batch.message_count"] == 3


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (json.dumps({"default": "everyone", "sqs": "queues", "lambda": "functions"}), "queues"),
        (json.dumps({"default": "everyone", "email": "mail"}), "everyone"),
        (json.dumps({"email": "mail"}), None),
        ("{not json", None),
        (json.dumps(["default"]), None),
    ],
)
def test_a_json_structured_message_points_at_what_sqs_subscribers_receive(message: str, expected: str | None) -> None:
    digest = sns.delivered_md5({"Message": message, "MessageStructure": "json"})
    assert digest == (sns.md5_hex(expected) if expected is not None else None)


# --- SQS consumer ------------------------------------------------------------------------

TP_ATTRIBUTE = remote(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331)
TP_ENVELOPE = remote(0x11111111111111111111111111111111, 0x2222222222222222)
TP_XRAY = remote(0x5759E988BD862E3FE1BE46A994272793, 0x53995C3F42CD8AD8)


def traceparent_of(ctx: SpanContext) -> str:
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"


def received(
    body: str = "Test message.", message_attributes: dict[str, Any] | None = None, **system: str
) -> dict[str, Any]:
    """A message shaped exactly as boto3's ReceiveMessage returns it."""
    message: dict[str, Any] = {
        "MessageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "ReceiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
        "MD5OfBody": sns.md5_hex(body),
        "Body": body,
        "Attributes": {
            "ApproximateReceiveCount": "3",
            "SentTimestamp": "1545082649183",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1545082649185",
            **system,
        },
    }
    if message_attributes:
        message["MessageAttributes"] = message_attributes
    return message


def envelope(parent: SpanContext | None = TP_ENVELOPE, message: str = "inner", **extra: Any) -> dict[str, Any]:
    """An SNS notification as SNS puts it in an SQS body (non-raw delivery)."""
    doc: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
        "TopicArn": TOPIC_ARN,
        "Message": message,
        "Timestamp": "2026-11-24T12:00:00.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=" + SUBSCRIPTION_ARN,
    }
    if parent is not None:
        doc["MessageAttributes"] = {"traceparent": {"Type": "String", "Value": traceparent_of(parent)}}
    doc.update(extra)
    return doc


def all_three_carriers() -> dict[str, Any]:
    return received(
        json.dumps(envelope()),
        {"traceparent": {"StringValue": traceparent_of(TP_ATTRIBUTE), "DataType": "String"}},
        AWSTraceHeader=xray.format_header(TP_XRAY),
    )


def ids(ctx: SpanContext | None) -> tuple[int, int] | None:
    return None if ctx is None else (ctx.trace_id, ctx.span_id)


def test_the_parent_comes_from_w3c_attributes_then_the_sns_envelope_then_aws_trace_header() -> None:
    message = all_three_carriers()
    rc = sqs.extract(sqs_record(message, QUEUE_ARN))
    assert ids(rc.parent) == ids(TP_ATTRIBUTE)
    assert rc.attributes["hoptrace.propagation.carrier"] == "w3c"

    del message["MessageAttributes"]
    rc = sqs.extract(sqs_record(message, QUEUE_ARN))
    assert ids(rc.parent) == ids(TP_ENVELOPE)
    assert rc.attributes["hoptrace.propagation.carrier"] == "sns_envelope"

    message["Body"] = json.dumps(envelope(parent=None))
    rc = sqs.extract(sqs_record(message, QUEUE_ARN))
    assert ids(rc.parent) == ids(TP_XRAY)
    assert rc.attributes["hoptrace.propagation.carrier"] == "xray"

    del message["Attributes"]["AWSTraceHeader"]
    rc = sqs.extract(sqs_record(message, QUEUE_ARN))
    assert rc.parent is None
    assert "hoptrace.propagation.carrier" not in rc.attributes
    assert rc.failed_to_extract is None  # no context is not an error: the producer may be uninstrumented


def test_a_record_describes_its_queue_message_and_retries_and_points_at_both_messages() -> None:
    message = all_three_carriers()
    rc = sqs.extract(sqs_record(message, QUEUE_ARN))
    note = envelope()
    assert rc.name == "orders process"
    assert rc.record_id == message["MessageId"]
    assert rc.attributes["messaging.system"] == "aws_sqs"
    assert rc.attributes["messaging.destination.name"] == "orders"
    assert rc.attributes["messaging.operation.type"] == "process"
    assert rc.attributes["messaging.message.id"] == message["MessageId"]
    assert rc.attributes["hoptrace.messaging.receive_count"] == 3
    assert rc.attributes["hoptrace.sns.topic"] == "shipments"
    assert rc.attributes[POINTERS] == [
        f"sqs:msg:{message['MessageId']}",
        f"md5:{message['MD5OfBody']}",
        f"sns:msg:{note['MessageId']}",
        f"md5:{sns.md5_hex(note['Message'])}",
    ]
    assert rc.links() and rc.links()[0].context.span_id == TP_ATTRIBUTE.span_id


def test_the_lambda_record_and_the_polled_message_give_the_same_context() -> None:
    message = all_three_carriers()
    assert sqs.extract_message(message, "orders") == sqs.extract(sqs_record(message, QUEUE_ARN))
    assert sqs.extract_message(message).name == "process"
    assert "messaging.destination.name" not in sqs.extract_message(message).attributes


@pytest.mark.parametrize("shape", ["lambda", "boto3"])
def test_a_binary_traceparent_is_read_from_base64_or_bytes(shape: str) -> None:
    tp = traceparent_of(TP_ATTRIBUTE).encode()
    message = received(message_attributes={"traceparent": {"BinaryValue": tp, "DataType": "Binary"}})
    if shape == "lambda":
        record = sqs_record(message, QUEUE_ARN)
        assert record["messageAttributes"]["traceparent"]["binaryValue"] == base64.b64encode(tp).decode()
        rc = sqs.extract(record)
    else:
        rc = sqs.extract_message(message)
    assert ids(rc.parent) == ids(TP_ATTRIBUTE)
    assert rc.failed_to_extract is None


def test_tracestate_is_read_beside_traceparent() -> None:
    message = received(
        message_attributes={
            "traceparent": {"StringValue": traceparent_of(TP_ATTRIBUTE), "DataType": "String"},
            "tracestate": {"StringValue": "vendor=v1,other=v2", "DataType": "String"},
        }
    )
    rc = sqs.extract(sqs_record(message, QUEUE_ARN))
    assert rc.parent is not None
    assert dict(rc.parent.trace_state) == {"vendor": "v1", "other": "v2"}


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(record: dict[str, Any]) -> None:
        target = record
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda record: record.pop(key)


@pytest.mark.parametrize(
    ("change", "problem", "parent_survives"),
    [
        (_drop("messageId"), "no messageId", True),
        (_drop("md5OfBody"), "no md5OfBody", True),
        (_drop("eventSourceARN"), "no eventSourceARN", True),
        (_drop("body"), "no body", True),
        (_set(("body",), {"a": "dict"}), "body is not a string", True),
        (_set(("attributes",), ["a", "list"]), "attributes is a list, not an object", True),
        (_set(("messageAttributes",), "text"), "message attributes are a str, not an object", False),
        (_set(("messageAttributes", "traceparent"), "text"), "traceparent attribute is a str, not an object", False),
        (
            _set(("messageAttributes", "traceparent", "stringValue"), 42),
            "traceparent attribute has no string value",
            False,
        ),
        (
            _set(("messageAttributes", "traceparent", "stringValue"), "garbage"),
            "traceparent attribute is malformed: 'garbage'",
            False,
        ),
        (
            _set(("messageAttributes", "traceparent", "stringValue"), "00-" + "0" * 32 + "-" + "1" * 16 + "-01"),
            "malformed",
            False,
        ),
        (
            _set(("messageAttributes", "traceparent"), {"dataType": "Binary", "binaryValue": "%%%"}),
            "is not valid base64",
            False,
        ),
        (
            _set(("messageAttributes", "traceparent"), {"dataType": "Binary", "binaryValue": "/w=="}),
            "is not ASCII",
            False,
        ),
        (_set(("messageAttributes", "traceparent"), {"dataType": "Binary"}), "has no binary value", False),
        (
            _set(("attributes", "ApproximateReceiveCount"), "many"),
            "ApproximateReceiveCount is not a number: 'many'",
            True,
        ),
    ],
)
def test_a_malformed_record_keeps_what_could_be_read_and_says_what_was_wrong(
    change: Callable[[dict[str, Any]], None], problem: str, parent_survives: bool
) -> None:
    message = received(
        message_attributes={"traceparent": {"StringValue": traceparent_of(TP_ATTRIBUTE), "DataType": "String"}},
        AWSTraceHeader=xray.format_header(TP_XRAY),
    )
    record = sqs_record(message, QUEUE_ARN)
    change(record)
    rc = sqs.extract(record)
    assert rc.failed_to_extract is not None and problem in rc.failed_to_extract
    # When W3C is what broke, AWSTraceHeader still gives the context.
    assert ids(rc.parent) == (ids(TP_ATTRIBUTE) if parent_survives else ids(TP_XRAY))
    if "messageId" not in problem:
        assert rc.record_id == message["MessageId"]
        assert f"sqs:msg:{message['MessageId']}" in rc.attributes[POINTERS]


def test_a_malformed_aws_trace_header_is_reported() -> None:
    rc = sqs.extract(sqs_record(received(AWSTraceHeader="Root=nonsense"), QUEUE_ARN))
    assert rc.parent is None
    assert rc.failed_to_extract == "AWSTraceHeader is malformed: 'Root=nonsense'"


@pytest.mark.parametrize("record", [None, "text", 7, ["a", "list"]])
def test_a_record_that_is_not_an_object_gives_a_context_that_says_so(record: Any) -> None:
    for rc in (sqs.extract(record), sqs.extract_message(record), sns.extract(record)):
        assert rc.parent is None
        assert rc.failed_to_extract is not None and "not an object" in rc.failed_to_extract


@pytest.mark.parametrize(
    ("note", "problem", "parent"),
    [
        (envelope(Message=None), "SNS envelope: Message is not a string", TP_ENVELOPE),
        (envelope(MessageId=5), "SNS envelope: no MessageId", TP_ENVELOPE),
        (envelope(MessageAttributes=[1, 2]), "SNS envelope: message attributes are a list, not an object", TP_XRAY),
        (
            envelope(MessageAttributes={"traceparent": {"Type": "String", "Value": "00-x"}}),
            "SNS envelope: traceparent attribute is malformed",
            TP_XRAY,
        ),
    ],
)
def test_a_malformed_envelope_is_reported_and_the_context_that_survived_is_used(
    note: dict[str, Any], problem: str, parent: SpanContext
) -> None:
    rc = sqs.extract(sqs_record(received(json.dumps(note), AWSTraceHeader=xray.format_header(TP_XRAY)), QUEUE_ARN))
    assert rc.failed_to_extract is not None and rc.failed_to_extract.startswith(problem)
    assert ids(rc.parent) == ids(parent)


def test_a_body_nested_too_deep_for_json_is_not_mistaken_for_an_envelope() -> None:
    body = '{"TopicArn": ' + "[" * 100_000 + "]" * 100_000 + "}"
    rc = sqs.extract(sqs_record(received(body, AWSTraceHeader=xray.format_header(TP_XRAY)), QUEUE_ARN))
    assert rc.failed_to_extract is None
    assert ids(rc.parent) == ids(TP_XRAY)


# --- SNS consumer ------------------------------------------------------------------------


def test_an_sns_record_gives_the_publisher_context_pointers_and_topic() -> None:
    note = envelope(message="Hello from SNS!")
    rc = sns.extract(sns_record(note, SUBSCRIPTION_ARN))
    assert ids(rc.parent) == ids(TP_ENVELOPE)
    assert rc.record_id == note["MessageId"]
    assert rc.name == "shipments process"
    assert rc.attributes == {
        "messaging.system": "aws_sns",
        "messaging.operation.type": "process",
        "messaging.destination.name": "shipments",
        "messaging.message.id": note["MessageId"],
        POINTERS: [f"sns:msg:{note['MessageId']}", f"md5:{sns.md5_hex('Hello from SNS!')}"],
        "hoptrace.propagation.carrier": "w3c",
    }
    assert rc.failed_to_extract is None


def test_an_sns_record_reads_a_binary_traceparent() -> None:
    value = base64.b64encode(traceparent_of(TP_ATTRIBUTE).encode()).decode()
    record = sns_record(
        envelope(parent=None, MessageAttributes={"traceparent": {"Type": "Binary", "Value": value}}), SUBSCRIPTION_ARN
    )
    assert ids(sns.extract(record).parent) == ids(TP_ATTRIBUTE)


def test_an_sns_record_without_an_sns_object_says_so() -> None:
    rc = sns.extract({"EventSource": "aws:sns", "Sns": "text"})
    assert rc.failed_to_extract == "SNS record has no Sns object"
    assert rc.attributes["messaging.system"] == "aws_sns"


# --- SendMessage through botocore: context added to the serialised body -----------------


class _SentBodies:
    """An SQS client that answers SendMessage locally and keeps each request body as sent."""

    def __init__(self) -> None:
        import boto3

        self.bodies: list[dict[str, Any]] = []
        self.client: Any = boto3.session.Session(region_name="us-east-1").client("sqs")
        self.client.meta.events.register("before-send.sqs.SendMessage", self._answer)

    def _answer(self, request: Any, **_: Any) -> Any:
        from botocore.awsrequest import AWSResponse
        from botocore.compat import HTTPHeaders

        self.bodies.append(json.loads(request.body))
        answer = json.dumps({"MessageId": "m-1", "MD5OfMessageBody": "0" * 32}).encode()

        class Raw:
            def stream(self, amt: int | None = None) -> Any:
                yield answer

        headers = HTTPHeaders()
        headers["x-amzn-RequestId"] = "r-1"
        return AWSResponse(request.url, 200, headers, Raw())


def expected_by_parameters(tracing: Tracing, sent: dict[str, Any]) -> dict[str, Any]:
    """What injecting into the parameters gives for the span the sent message names."""
    header = sent["MessageSystemAttributes"]["AWSTraceHeader"]["StringValue"]
    parent = xray.parse_header(header)
    assert parent is not None
    tracestate = sent.get("MessageAttributes", {}).get("tracestate", {}).get("StringValue")
    state = TraceState.from_header([tracestate]) if tracestate else None
    span = NonRecordingSpan(
        SpanContext(parent.trace_id, parent.span_id, False, TraceFlags(1), state)  # the producer span
    )
    c = AwsCall("sqs", "SendMessage", {k: v for k, v in sent.items() if "Attributes" not in k}, span)
    sqs.CARRIER.on_request(c)
    return c.params


def test_a_plain_send_carries_the_same_context_as_parameter_injection_would(tracing: Tracing) -> None:
    sent = _SentBodies()
    sent.client.send_message(QueueUrl=QUEUE_URL, MessageBody="hello")
    (body,) = sent.bodies
    assert set(body["MessageAttributes"]) == {"traceparent"}
    assert body == expected_by_parameters(tracing, body)
    span = tracing.span("SQS.SendMessage")
    assert w3c.extract({"traceparent": body["MessageAttributes"]["traceparent"]["StringValue"]}) is not None
    assert body["MessageAttributes"]["traceparent"]["StringValue"].split("-")[2] == f"{span.context.span_id:016x}"


def test_a_tracestate_with_quotes_is_escaped_in_the_serialised_body(tracing: Tracing) -> None:
    sent = _SentBodies()
    state = TraceState([("vendor", 'a"b\\c')])
    with tracing.state.tracer.start_as_current_span(
        "parent", context=trace.set_span_in_context(NonRecordingSpan(remote(0xABC, 0xDEF, state)))
    ):
        sent.client.send_message(QueueUrl=QUEUE_URL, MessageBody="hello")
    (body,) = sent.bodies
    assert body["MessageAttributes"]["tracestate"]["StringValue"] == 'vendor=a"b\\c'
    assert body == expected_by_parameters(tracing, body)


def test_a_message_too_big_for_w3c_still_carries_the_trace_header(tracing: Tracing) -> None:
    sent = _SentBodies()
    sent.client.send_message(QueueUrl=QUEUE_URL, MessageBody="x" * (sns.MAX_MESSAGE_BYTES - 10))
    (body,) = sent.bodies
    assert "MessageAttributes" not in body
    assert "AWSTraceHeader" in body["MessageSystemAttributes"]
    assert tracing.span("SQS.SendMessage").attributes[sns.SKIPPED] == sns.SIZE


def test_the_users_own_attributes_are_merged_and_left_unchanged(tracing: Tracing) -> None:
    sent = _SentBodies()
    mine = {"tenant": {"DataType": "String", "StringValue": "t-1"}}
    sent.client.send_message(QueueUrl=QUEUE_URL, MessageBody="hello", MessageAttributes=mine)
    (body,) = sent.bodies
    assert set(body["MessageAttributes"]) == {"tenant", "traceparent"}
    assert "AWSTraceHeader" in body["MessageSystemAttributes"]
    assert mine == {"tenant": {"DataType": "String", "StringValue": "t-1"}}


def test_a_body_that_is_not_a_json_object_is_sent_unchanged(tracing: Tracing) -> None:
    from hoptrace.instrumentation import botocore_hooks

    c = call(tracing, "sqs", "SendMessage", {"QueueUrl": QUEUE_URL, "MessageBody": "x"})
    c.body_suffix = b', "X": 1}'
    params = {"body": {"Action": "SendMessage"}}  # the query protocol's form fields
    botocore_hooks._before_call(params=params, context={botocore_hooks._CALL_KEY: c})
    assert params == {"body": {"Action": "SendMessage"}}
    assert attrs(c)[sns.SKIPPED] == "serialization"


def test_sends_in_different_traces_each_carry_their_own_trace(tracing: Tracing) -> None:
    # The members are formatted once per trace: a send in another trace must not reuse them.
    sent = _SentBodies()
    parents = [remote(0xABC, 0xDEF), remote(0x123, 0x456), remote(0xABC, 0xDEF, TraceState([("v", "1%x")]))]
    for parent in parents * 2:
        with tracing.state.tracer.start_as_current_span(
            "parent", context=trace.set_span_in_context(NonRecordingSpan(parent))
        ):
            sent.client.send_message(QueueUrl=QUEUE_URL, MessageBody="hello")
    spans = [s for s in tracing.spans() if s.name == "SQS.SendMessage"]
    assert len(sent.bodies) == len(spans) == 6
    for body, span, parent in zip(sent.bodies, spans, parents * 2):
        assert body == expected_by_parameters(tracing, body)
        traceparent = body["MessageAttributes"]["traceparent"]["StringValue"]
        assert traceparent == f"00-{parent.trace_id:032x}-{span.context.span_id:016x}-01"
        assert body["MessageAttributes"].get("tracestate", {}).get("StringValue") == (
            "v=1%x" if parent.trace_state else None
        )


def test_a_non_ascii_message_near_the_limit_is_measured_in_utf8_bytes(tracing: Tracing) -> None:
    # 3 UTF-8 bytes per character: short in characters, too big for W3C in bytes.
    sent = _SentBodies()
    sent.client.send_message(QueueUrl=QUEUE_URL, MessageBody="€" * (sns.MAX_MESSAGE_BYTES // 3 - 10))
    sent.client.send_message(QueueUrl=QUEUE_URL, MessageBody="€" * (sns.MAX_MESSAGE_BYTES // 3 - 40))
    too_big, fits = sent.bodies
    assert "MessageAttributes" not in too_big and "AWSTraceHeader" in too_big["MessageSystemAttributes"]
    assert set(fits["MessageAttributes"]) == {"traceparent"} and "AWSTraceHeader" in fits["MessageSystemAttributes"]
