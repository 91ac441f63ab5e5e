"""Spans with semantic conventions only (OpenTelemetry's botocore and Lambda instrumentation:
no ``hoptrace.*`` attribute) map and join the same as ours."""

from __future__ import annotations

from hoptrace.graph.correlator import Correlator
from hoptrace.graph.hops import keys
from hoptrace.graph.naming import Node, callee, edges
from tests.unit.graph_scenarios import CLIENT, CONSUMER, PRODUCER, SERVER, link, new_trace, otel_lam, span

# What opentelemetry-instrumentation-botocore writes (its SQS, SNS, DynamoDB and Lambda extensions).
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:order-events"


def otel_sqs_send(trace: bytes, message_id: str):
    return span(
        trace,
        "shop",
        "SQS.SendMessage",
        CLIENT,
        0,
        12,
        rpc__system="aws-api",
        rpc__service="SQS",
        rpc__method="SendMessage",
        aws__queue_url=QUEUE_URL,
        messaging__system="aws.sqs",
        messaging__url=QUEUE_URL,
        messaging__destination="orders",
        messaging__message__id=message_id,
    )


def test_botocore_sqs_send_is_a_publish_to_the_queue_named_from_its_url() -> None:
    s = otel_sqs_send(new_trace(), "m-1")
    assert callee(s) == Node("queue", "orders")
    assert [(e.source.id, e.target.id, e.kind) for e in edges(s)] == [("service:shop", "queue:orders", "publish")]
    assert [(k.key, k.side, k.via) for k in keys(s) if k.via == "message_id"] == [("sqs:msg:m-1", "p", "message_id")]


def test_botocore_receive_message_is_never_taken_for_the_producer_of_what_it_received() -> None:
    receive = span(
        new_trace(),
        "poller",
        "SQS.ReceiveMessage",
        CLIENT,
        0,
        20,
        rpc__system="aws-api",
        rpc__service="SQS",
        rpc__method="ReceiveMessage",
        aws__queue_url=QUEUE_URL,
        messaging__system="aws.sqs",
        messaging__destination="orders",
        messaging__message__id="m-1",
    )
    assert [k for k in keys(receive) if k.via == "message_id"] == []
    assert [e.kind for e in edges(receive)] == ["sync"]


def test_botocore_sns_publish_dynamodb_and_lambda_invoke_name_their_resources() -> None:
    t = new_trace()
    publish = span(
        t,
        "shop",
        "order-events send",
        PRODUCER,
        0,
        5,
        rpc__system="aws-api",
        rpc__service="SNS",
        rpc__method="Publish",
        messaging__system="aws.sns",
        aws__sns__topic__arn=TOPIC_ARN,
        messaging__destination__name=TOPIC_ARN,  # the extension writes the ARN here
        messaging__destination=TOPIC_ARN,
    )
    put = span(
        t,
        "shop",
        "DynamoDB.PutItem",
        CLIENT,
        6,
        5,
        rpc__system="aws-api",
        rpc__service="DynamoDB",
        rpc__method="PutItem",
        db__system="dynamodb",
        db__operation="PutItem",
        aws__dynamodb__table_names=["orders", "audit"],
        net__peer__name="dynamodb.us-east-1.amazonaws.com",
    )
    invoke = span(
        t,
        "shop",
        "Lambda.Invoke",
        CLIENT,
        12,
        30,
        rpc__system="aws-api",
        rpc__service="Lambda",
        rpc__method="Invoke",
        faas__invoked_name="arn:aws:lambda:us-east-1:123456789012:function:pricing",
        faas__invoked_provider="aws",
    )
    s3 = span(
        t, "shop", "S3.PutObject", CLIENT, 50, 9, rpc__system="aws-api", rpc__service="S3", rpc__method="PutObject"
    )
    found = {(e.source.id, e.target.id, e.kind) for s in (publish, put, invoke, s3) for e in edges(s)}
    assert found == {
        ("service:shop", "topic:order-events", "publish"),
        ("service:shop", "table:orders", "sync"),
        ("service:shop", "table:audit", "sync"),
        ("service:shop", "function:pricing", "sync"),
        ("service:shop", "aws:S3", "sync"),
    }


def test_an_otel_lambda_consumer_joins_a_botocore_send_by_the_semconv_message_id() -> None:
    producer, consumer = new_trace(), new_trace()
    send = otel_sqs_send(producer, "m-7")
    receive = span(
        consumer,
        "worker",
        "orders process",
        CONSUMER,
        90,
        10,
        resource={"faas.name": "worker", "cloud.platform": "aws_lambda"},
        faas__trigger="pubsub",
        messaging__system="aws_sqs",
        messaging__destination__name="orders",
        messaging__message__id="m-7",
    )
    c = Correlator()
    (hop,) = c.add([send, receive])
    assert (hop.via, hop.dwell_ms) == ("message_id", 78.0)
    (txn,) = c.transactions()
    assert not txn.incomplete
    assert txn.resources == ("queue:orders",)


def test_an_otel_lambda_sqs_batch_counts_each_message_on_the_queue_edge_and_one_invocation() -> None:
    sends = [otel_sqs_send(new_trace(), f"b-{i}") for i in range(3)]
    t = new_trace()
    invocation = span(t, "worker", "worker", SERVER, 100, 50, resource=otel_lam("worker"), faas__trigger="pubsub")
    process = span(t, "worker", "process orders", CONSUMER, 101, 48, parent=invocation, resource=otel_lam("worker"),
                   links=tuple(link(s) for s in sends), messaging__system="aws_sqs",
                   messaging__destination__name="orders", messaging__operation__type="process",
                   messaging__batch__message_count=3)  # fmt: skip
    c = Correlator()
    hops = c.add([*sends, invocation, process])

    assert sorted(h.via for h in hops) == ["link"] * 3
    nodes, edges = c.rollups.window(0, 2**62)
    assert {k[:3] for k in edges} >= {("queue:orders", "function:worker", "deliver")}
    assert not any(source.startswith("client:") for source, _, _ in edges)
    deliver = edges[("queue:orders", "function:worker", "deliver")]
    assert (deliver.count, deliver.dwell.count) == (3, 3)
    assert nodes["function:worker"].count == 1
    assert len(c.transactions()) == 3
