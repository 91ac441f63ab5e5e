"""Hops the instrumentation's real scenarios make, joined by a running collector (issue 4).

Producers and consumers are traced by hoptrace against moto; Lambda events are rebuilt from
what the emulator returns, in AWS's documented shapes. Where a scenario says context is lost,
the carriers are stripped from the messages first, so only correlation pointers can join the
hop. Spans go over OTLP/HTTP to a collector (``hoptrace serve``) and come back from its API.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import hoptrace
from tests.collector_server import CollectorProcess
from tests.conftest import Tracing
from tests.integration.test_graph_api import send, settle
from tests.lambda_context import LambdaContext
from tests.lambda_events_messaging import sqs_event
from tests.lambda_events_streams import dynamodb_stream_record, records_event

pytestmark = pytest.mark.integration

RECEIVE_ALL = {"MessageSystemAttributeNames": ["All"], "MessageAttributeNames": ["All"]}


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    db = tmp_path_factory.mktemp("pipelines") / "graph.db"
    with CollectorProcess(f"sqlite:///{db}") as c:
        yield c


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def hexid(span: Any) -> str:
    return f"{span.context.trace_id:032x}"


def transactions_of(c: CollectorProcess, trace_id: str) -> list[dict[str, Any]]:
    with c.client() as client:
        settle(client)
        response = client.get("/api/v1/transactions", params={"q": trace_id})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["transactions"]
    return found


def transaction(c: CollectorProcess, txn_id: str) -> dict[str, Any]:
    with httpx.Client(base_url=c.url, timeout=30) as client:
        response = client.get(f"/api/v1/transactions/{txn_id}")
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


def queue(sqs: Any, **attributes: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=unique("q"), Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def receive(sqs: Any, url: str, n: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for _ in range(20):
        messages += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, **RECEIVE_ALL).get(
            "Messages", []
        )
        if len(messages) >= n:
            break
    assert len(messages) == n
    return messages


def without_context(message: dict[str, Any]) -> dict[str, Any]:
    """The message as an uninstrumented hop would deliver it: no W3C attributes, no AWSTraceHeader,
    and an SNS envelope without its message attributes."""
    stripped = dict(message)
    stripped["MessageAttributes"] = {}
    stripped["Attributes"] = {k: v for k, v in message.get("Attributes", {}).items() if k != "AWSTraceHeader"}
    try:
        body = json.loads(message["Body"])
    except ValueError:
        return stripped
    if isinstance(body, dict) and body.get("Type") == "Notification":
        body.pop("MessageAttributes", None)
        stripped["Body"] = json.dumps(body)
    return stripped


def handler(fail_first: bool = False) -> Any:
    calls = []

    @hoptrace.lambda_handler
    def consume(event: Any, context: Any) -> None:
        calls.append(1)
        for _ in hoptrace.records(event):
            if fail_first and len(calls) == 1:
                raise RuntimeError("the first attempt fails")

    return consume


def test_sns_to_a_raw_and_an_enveloped_queue_without_context_is_one_transaction(
    tracing: Tracing, boto_session: Any, collector: CollectorProcess
) -> None:
    sqs, sns = boto_session.client("sqs"), boto_session.client("sns")
    topic = sns.create_topic(Name=unique("orders"))["TopicArn"]
    (raw_url, raw_arn), (env_url, env_arn) = queue(sqs), queue(sqs)
    for arn, raw in ((raw_arn, "true"), (env_arn, "false")):
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": raw})

    @hoptrace.lambda_handler
    def publisher(event: Any, context: Any) -> None:
        sns.publish(TopicArn=topic, Message=json.dumps({"order": unique("o")}))

    publisher({}, LambdaContext(function_name="publisher"))
    raw_message = without_context(receive(sqs, raw_url, 1)[0])
    env_message = without_context(receive(sqs, env_url, 1)[0])
    handler()(sqs_event([raw_message], raw_arn), LambdaContext(function_name="audit"))
    handler()(sqs_event([env_message], env_arn), LambdaContext(function_name="mailer"))
    spans = tracing.spans()
    send(collector.url, spans)

    (publish,) = [s for s in spans if s.name == "SNS.Publish"]
    consumers = [s for s in spans if s.attributes.get("faas.trigger") == "pubsub"]
    assert len({hexid(s) for s in consumers} | {hexid(publish)}) == 3  # context was lost: three traces
    (txn,) = transactions_of(collector, hexid(publish))
    assert set(txn["trace_ids"]) == {hexid(publish), *(hexid(s) for s in consumers)}
    assert txn["root_trace_id"] == hexid(publish)
    detail = transaction(collector, txn["id"])
    joined = {h["to_trace"]: h["via"] for h in detail["hops"] if h["from_span"] == f"{publish.context.span_id:016x}"}
    assert sorted(joined.values()) == ["md5", "message_id"]  # raw delivery by md5, the envelope by SNS id
    assert len(detail["hops"]) == 2  # one per delivery: an invocation and its record's span are one
    for consumer in consumers:
        assert transactions_of(collector, hexid(consumer)) == [txn]  # never an entry of its own


def test_a_retried_message_is_two_attempts_in_one_transaction(
    tracing: Tracing, boto_session: Any, collector: CollectorProcess
) -> None:
    sqs = boto_session.client("sqs")
    url, arn = queue(sqs, VisibilityTimeout="0")

    @hoptrace.lambda_handler
    def producer(event: Any, context: Any) -> None:
        sqs.send_message(QueueUrl=url, MessageBody="charge card")

    producer({}, LambdaContext(function_name="api"))
    consume = handler(fail_first=True)
    first = receive(sqs, url, 1)[0]
    with pytest.raises(RuntimeError):
        consume(sqs_event([first], arn), LambdaContext(function_name="charger"))
    second = receive(sqs, url, 1)[0]
    assert second["Attributes"]["ApproximateReceiveCount"] == "2"
    consume(sqs_event([second], arn), LambdaContext(function_name="charger"))
    spans = tracing.spans()
    send(collector.url, spans)

    (send_span,) = [s for s in spans if s.name == "SQS.SendMessage"]
    (txn,) = transactions_of(collector, hexid(send_span))
    assert (txn["retries"], txn["errors"] >= 1, txn["status"]) == (1, True, "error")
    detail = transaction(collector, txn["id"])
    attempts = sorted(h["attempt"] for h in detail["hops"] if h["from_span"] == f"{send_span.context.span_id:016x}")
    assert attempts == [1, 2]


def test_a_dynamodb_write_reaches_its_stream_handler_by_pointer(
    tracing: Tracing, boto_session: Any, collector: CollectorProcess
) -> None:
    dynamodb = boto_session.client("dynamodb")
    table = unique("orders")
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )

    @hoptrace.lambda_handler
    def writer(event: Any, context: Any) -> None:
        dynamodb.put_item(TableName=table, Item={"pk": {"S": "o-1"}, "total": {"N": "12.50"}})

    writer({}, LambdaContext(function_name="writer"))
    streams = boto_session.client("dynamodbstreams")
    stream_arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]
    iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard["ShardId"],
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]  # fmt: skip
    records = streams.get_records(ShardIterator=iterator)["Records"]
    handler()(records_event(*(dynamodb_stream_record(r, stream_arn) for r in records)),
              LambdaContext(function_name="projector"))  # fmt: skip
    spans = tracing.spans()
    send(collector.url, spans)

    (put,) = [s for s in spans if s.name == "DynamoDB.PutItem"]
    (stream_invocation,) = [s for s in spans if s.attributes.get("faas.trigger") == "datasource"]
    assert hexid(put) != hexid(stream_invocation)  # a stream carries no context
    (txn,) = transactions_of(collector, hexid(put))
    assert txn["trace_ids"] == [hexid(put), hexid(stream_invocation)]
    assert f"table:{table}" in txn["resources"] and f"stream:{table} stream" in txn["resources"]
    (hop,) = transaction(collector, txn["id"])["hops"]
    assert (hop["via"], hop["from_span"]) == ("dynamodb_item", f"{put.context.span_id:016x}")
    assert hop["dwell_ms"] >= 0


def test_spans_of_opentelemetry_botocore_instrumentation_map_to_their_resources(
    boto_session: Any, collector: CollectorProcess
) -> None:
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "otel-shop"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    instrumentor = BotocoreInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        sqs, sns, dynamodb = (boto_session.client(s) for s in ("sqs", "sns", "dynamodb"))
        queue_name, topic_name, table = unique("otel-q"), unique("otel-topic"), unique("otel-table")
        url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
        topic = sns.create_topic(Name=topic_name)["TopicArn"]
        dynamodb.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                              BillingMode="PAY_PER_REQUEST")  # fmt: skip
        memory.clear()
        sqs.send_message(QueueUrl=url, MessageBody="hello")
        sns.publish(TopicArn=topic, Message="hello")
        dynamodb.put_item(TableName=table, Item={"pk": {"S": "1"}})
    finally:
        instrumentor.uninstrument()
    spans = list(memory.get_finished_spans())
    assert not any(k.startswith("hoptrace.") for s in spans for k in (s.attributes or {}))
    send(collector.url, spans)

    with collector.client() as client:
        settle(client)
        doc = client.get("/api/v1/map").json()
    edges = {e["id"] for e in doc["edges"]}
    assert {
        f"service:otel-shop|queue:{queue_name}|publish",
        f"service:otel-shop|topic:{topic_name}|publish",
        f"service:otel-shop|table:{table}|sync",
    } <= edges


def test_a_producer_arriving_after_the_collector_was_killed_joins_its_earlier_consumer(
    tracing: Tracing, boto_session: Any, tmp_path: Any
) -> None:
    sqs = boto_session.client("sqs")
    url, arn = queue(sqs)

    @hoptrace.lambda_handler
    def producer(event: Any, context: Any) -> None:
        sqs.send_message(QueueUrl=url, MessageBody="late producer")

    producer({}, LambdaContext(function_name="api"))
    message = without_context(receive(sqs, url, 1)[0])
    handler()(sqs_event([message], arn), LambdaContext(function_name="worker"))
    spans = tracing.spans()
    (send_span,) = [s for s in spans if s.name == "SQS.SendMessage"]
    consumer_spans = [s for s in spans if hexid(s) != hexid(send_span)]
    assert consumer_spans

    store = f"sqlite:///{tmp_path / 'restart.db'}"
    first = CollectorProcess(store).start()
    try:
        send(first.url, consumer_spans)  # acknowledged, then the collector dies at once
    finally:
        first.kill()
    second = CollectorProcess(store).start()
    try:
        send(second.url, [s for s in spans if hexid(s) == hexid(send_span)])
        (txn,) = transactions_of(second, hexid(send_span))
        (worker,) = [s for s in spans if s.attributes.get("faas.trigger") == "pubsub"]
        assert txn["trace_ids"] == [hexid(send_span), hexid(worker)]
        assert [h["via"] for h in transaction(second, txn["id"])["hops"]] == ["message_id"]
    finally:
        second.stop()
