"""Hops through DynamoDB streams, Kinesis, EventBridge and Lambda Invoke, against real servers.

Producers are boto3 clients and resources talking HTTP to a moto server (Lambda Invoke to a
small local stand-in, since moto cannot run functions without Docker). Consumers see exactly
what a Lambda would: records read back through the emulator's own APIs and rebuilt in the
documented Lambda event shape. The pointers both sides write must be the same strings.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from hoptrace.instrumentation.carriers import POINTERS, RecordContext, xray
from hoptrace.instrumentation.carriers import dynamodb as ddb
from hoptrace.instrumentation.carriers import eventbridge as evb
from hoptrace.instrumentation.carriers import kinesis as kin
from hoptrace.instrumentation.carriers import lambda_invoke as lam
from tests.conftest import REGION, Tracing
from tests.lambda_context import ClientContext, LambdaContext
from tests.lambda_events_streams import dynamodb_stream_record, eventbridge_event, kinesis_record, records_event

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def empty_key_cache() -> Iterator[None]:
    ddb.forget_key_names()
    yield
    ddb.forget_key_names()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def span_pointers(span: Any) -> list[str]:
    return list((span.attributes or {}).get(POINTERS, ()))


def record_pointers(rc: RecordContext) -> list[str]:
    return list(rc.attributes.get(POINTERS, ()))


def spans_named(tracing: Tracing, name: str) -> list[Any]:
    return [s for s in tracing.spans() if s.name == name]


# --- DynamoDB streams ---------------------------------------------------------------------------


def create_table(client: Any, name: str) -> None:
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )


def lambda_stream_event(boto_session: Any, table: str) -> dict[str, Any]:
    """Every record of the table's stream, as the Lambda event a stream trigger would deliver."""
    dynamodb = boto_session.client("dynamodb")
    streams = boto_session.client("dynamodbstreams")
    stream_arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    records = []
    for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records.extend(streams.get_records(ShardIterator=iterator)["Records"])
    return records_event(*(dynamodb_stream_record(r, stream_arn) for r in records))


def stream_pointers(boto_session: Any, table: str) -> list[tuple[str, list[str]]]:
    """(eventName, pointers) of each stream record, in stream order."""
    event = lambda_stream_event(boto_session, table)
    out = []
    for record in event["Records"]:
        rc = ddb.extract(record)
        assert rc.failed_to_extract is None, rc.failed_to_extract
        assert rc.record_id == record["dynamodb"]["SequenceNumber"]
        assert rc.attributes["aws.dynamodb.table_names"] == [table]
        out.append((record["eventName"], record_pointers(rc)))
    return out


def write_pointers(tracing: Tracing, operation: str) -> list[list[str]]:
    """Pointers of each traced DynamoDB write of one operation, in call order."""
    spans = sorted(spans_named(tracing, f"DynamoDB.{operation}"), key=lambda s: s.start_time)
    for span in spans:
        assert span.kind is SpanKind.CLIENT
        assert span.attributes["db.system"] == "dynamodb"
        assert span.attributes["db.operation.name"] == operation
    return [span_pointers(s) for s in spans]


def test_low_level_put_update_delete_point_at_the_stream_records_they_cause(
    tracing: Tracing, boto_session: Any
) -> None:
    client = boto_session.client("dynamodb")
    table = unique("orders")
    create_table(client, table)  # teaches the key names: pk, sk
    client.put_item(
        TableName=table,
        Item={
            "pk": {"S": "order#1"},
            "sk": {"N": "1.50"},
            "raw": {"B": b"\x00\xff\x10"},
            "text_as_binary": {"B": "aGVsbG8="},  # botocore sends these 8 characters' bytes
            "amounts": {"NS": ["3", "1.0", "20"]},
            "tags": {"SS": ["gift", "express"]},
            "blobs": {"BS": [b"\x02", b"\x01"]},
            "lines": {"L": [{"M": {"sku": {"S": "A-1"}, "qty": {"N": "2"}}}, {"NULL": True}]},
            "paid": {"BOOL": False},
        },
    )
    client.update_item(
        TableName=table,
        Key={"pk": {"S": "order#1"}, "sk": {"N": "1.5"}},  # the same number, spelt differently
        UpdateExpression="SET paid = :p",
        ExpressionAttributeValues={":p": {"BOOL": True}},
    )
    client.delete_item(TableName=table, Key={"pk": {"S": "order#1"}, "sk": {"N": "15E-1"}})

    (put,) = write_pointers(tracing, "PutItem")
    (update,) = write_pointers(tracing, "UpdateItem")
    (delete,) = write_pointers(tracing, "DeleteItem")
    (insert_name, insert), (modify_name, modify), (remove_name, remove) = stream_pointers(boto_session, table)
    assert (insert_name, modify_name, remove_name) == ("INSERT", "MODIFY", "REMOVE")
    assert [p.split(":")[1] for p in put] == ["key", "item"]
    assert put == insert
    assert update == [modify[0]] and modify[0] == insert[0]
    assert modify[1] != insert[1]  # the new image changed
    assert delete == remove == [insert[0]]


def test_resource_table_writes_with_python_values_point_at_their_stream_records(
    tracing: Tracing, boto_session: Any
) -> None:
    table_name = unique("carts")
    create_table(boto_session.client("dynamodb"), table_name)
    table = boto_session.resource("dynamodb").Table(table_name)
    table.put_item(
        Item={
            "pk": "cart#7",
            "sk": Decimal("2.000"),
            "amount": Decimal("19.90"),
            "photo": b"\x89PNG\r\n",
            "sizes": {Decimal("10"), Decimal("9.5")},
            "labels": {"sale", "new"},
            "chunks": {b"b", b"a"},
            "meta": {"nested": {"deep": [Decimal("1.10"), "x", None, True]}},
        }
    )
    table.update_item(
        Key={"pk": "cart#7", "sk": 2},
        UpdateExpression="SET amount = :t",
        ExpressionAttributeValues={":t": Decimal("25")},
    )
    table.delete_item(Key={"pk": "cart#7", "sk": Decimal("2")})

    (put,) = write_pointers(tracing, "PutItem")
    (update,) = write_pointers(tracing, "UpdateItem")
    (delete,) = write_pointers(tracing, "DeleteItem")
    (_, insert), (_, modify), (_, remove) = stream_pointers(boto_session, table_name)
    assert put == insert
    assert update == delete == remove == [insert[0]] == [modify[0]]


def test_batch_write_points_at_each_put_and_delete_it_caused(tracing: Tracing, boto_session: Any) -> None:
    client = boto_session.client("dynamodb")
    table_name = unique("stock")
    create_table(client, table_name)
    client.put_item(TableName=table_name, Item={"pk": {"S": "old"}, "sk": {"N": "0"}})
    tracing.clear()
    table = boto_session.resource("dynamodb").Table(table_name)
    with table.batch_writer() as batch:
        batch.put_item(Item={"pk": "a", "sk": 1, "qty": Decimal("3")})
        batch.put_item(Item={"pk": "b", "sk": 2, "bin": b"\x01"})
        batch.delete_item(Key={"pk": "old", "sk": 0})

    (batch_pointers,) = write_pointers(tracing, "BatchWriteItem")
    consumer = [p for _, ps in stream_pointers(boto_session, table_name)[1:] for p in ps]  # after the setup put
    assert sorted(batch_pointers) == sorted(consumer)
    assert len(batch_pointers) == 5  # key + item per put, key for the delete


def test_transaction_points_at_its_writes_but_not_its_condition_checks(tracing: Tracing, boto_session: Any) -> None:
    client = boto_session.client("dynamodb")
    table = unique("ledger")
    create_table(client, table)
    client.put_item(TableName=table, Item={"pk": {"S": "upd"}, "sk": {"N": "1"}})
    client.put_item(TableName=table, Item={"pk": {"S": "del"}, "sk": {"N": "1"}})
    client.put_item(TableName=table, Item={"pk": {"S": "chk"}, "sk": {"N": "1"}})
    tracing.clear()
    client.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": table, "Item": {"pk": {"S": "new"}, "sk": {"N": "1"}, "v": {"S": "x"}}}},
            {
                "Update": {
                    "TableName": table,
                    "Key": {"pk": {"S": "upd"}, "sk": {"N": "1"}},
                    "UpdateExpression": "SET v = :v",
                    "ExpressionAttributeValues": {":v": {"S": "y"}},
                }
            },
            {"Delete": {"TableName": table, "Key": {"pk": {"S": "del"}, "sk": {"N": "1"}}}},
            {
                "ConditionCheck": {
                    "TableName": table,
                    "Key": {"pk": {"S": "chk"}, "sk": {"N": "1"}},
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
        ]
    )

    (transaction,) = write_pointers(tracing, "TransactWriteItems")
    records = stream_pointers(boto_session, table)
    setup_puts, caused = records[:3], records[3:]
    assert sorted(p for _, ps in caused for p in ps if ":key:" in p) == sorted(p for p in transaction if ":key:" in p)
    (inserted,) = [ps for name, ps in caused if name == "INSERT"]
    assert [p for p in transaction if ":item:" in p] == [p for p in inserted if ":item:" in p]
    check_key = [ps[0] for _, ps in setup_puts][2]
    assert check_key not in transaction


def test_put_item_learns_key_names_from_an_earlier_get_item(tracing: Tracing, boto_session: Any) -> None:
    client = boto_session.client("dynamodb")
    table = unique("users")
    create_table(client, table)
    ddb.forget_key_names()  # as if another process had created the table
    client.put_item(TableName=table, Item={"pk": {"S": "u1"}, "sk": {"N": "1"}, "name": {"S": "Ada"}})
    client.get_item(TableName=table, Key={"pk": {"S": "u1"}, "sk": {"N": "1"}})
    client.put_item(TableName=table, Item={"pk": {"S": "u2"}, "sk": {"N": "1"}, "name": {"S": "Bob"}})

    first, second = write_pointers(tracing, "PutItem")
    (_, insert_1), (_, insert_2) = stream_pointers(boto_session, table)
    assert first == insert_1[1:]  # the whole item only: key names were not known yet
    assert second == insert_2


def test_put_item_learns_key_names_from_a_describe_table_the_users_code_made(
    tracing: Tracing, boto_session: Any
) -> None:
    table_name = unique("sessions")
    create_table(boto_session.client("dynamodb"), table_name)
    ddb.forget_key_names()
    table = boto_session.resource("dynamodb").Table(table_name)
    assert [k["AttributeName"] for k in table.key_schema] == ["pk", "sk"]  # loads through DescribeTable
    table.put_item(Item={"pk": "s1", "sk": 1})

    (put,) = write_pointers(tracing, "PutItem")
    ((_, insert),) = stream_pointers(boto_session, table_name)
    assert put == insert


def test_consumer_learns_key_names_from_stream_records_for_its_own_writes(tracing: Tracing, boto_session: Any) -> None:
    client = boto_session.client("dynamodb")
    table = unique("events")
    create_table(client, table)
    client.put_item(TableName=table, Item={"pk": {"S": "e1"}, "sk": {"N": "1"}})
    ddb.forget_key_names()
    stream_pointers(boto_session, table)  # a consumer reading the stream
    assert ddb.known_key_names(table) == ("pk", "sk")


# --- Kinesis ------------------------------------------------------------------------------------


def test_kinesis_records_carry_the_producers_pointer_and_data_is_unchanged(tracing: Tracing, boto_session: Any) -> None:
    client = boto_session.client("kinesis")
    stream = unique("clicks")
    client.create_stream(StreamName=stream, ShardCount=1)
    client.put_record(StreamName=stream, Data=b"\x00first", PartitionKey="user-1")
    description = client.describe_stream(StreamName=stream)["StreamDescription"]
    client.put_records(
        StreamARN=description["StreamARN"],
        Records=[{"Data": b"second", "PartitionKey": "user-2"}, {"Data": "third", "PartitionKey": "user-3"}],
    )

    (put_record,) = spans_named(tracing, "Kinesis.PutRecord")
    (put_records,) = spans_named(tracing, "Kinesis.PutRecords")
    for span in (put_record, put_records):
        assert span.kind is SpanKind.PRODUCER
        assert span.attributes["messaging.system"] == "aws_kinesis"
        assert span.attributes["messaging.destination.name"] == stream
    shard_id = description["Shards"][0]["ShardId"]
    iterator = client.get_shard_iterator(StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")
    got = client.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    assert [r["Data"] for r in got] == [b"\x00first", b"second", b"third"]
    event = records_event(*(kinesis_record(r, shard_id, description["StreamARN"]) for r in got))
    contexts = [kin.extract(r) for r in event["Records"]]
    assert all(rc.failed_to_extract is None for rc in contexts)
    assert [rc.record_id for rc in contexts] == [r["SequenceNumber"] for r in got]
    assert span_pointers(put_record) == record_pointers(contexts[0])
    assert span_pointers(put_records) == record_pointers(contexts[1]) + record_pointers(contexts[2])


# --- EventBridge --------------------------------------------------------------------------------


@pytest.fixture
def bus_to_queue(boto_session: Any) -> tuple[Any, str]:
    """An SQS queue receiving every event with source "shop" on the default bus."""
    sqs = boto_session.client("sqs")
    queue_url = sqs.create_queue(QueueName=unique("events"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = boto_session.client("events")
    rule = unique("shop")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["shop"]}))
    events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": queue_arn}])
    return sqs, queue_url


def test_put_events_sends_a_trace_header_per_entry_and_points_at_event_ids(
    tracing: Tracing, boto_session: Any, bus_to_queue: tuple[Any, str]
) -> None:
    sqs, queue_url = bus_to_queue
    events = boto_session.client("events")
    sent_bodies: list[dict[str, Any]] = []
    events.meta.events.register(
        "before-send.events.PutEvents", lambda request, **_: sent_bodies.append(json.loads(request.body))
    )
    own_header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    entries = [
        {"Source": "shop", "DetailType": "OrderPlaced", "Detail": json.dumps({"order": 1})},
        {"Source": "shop", "DetailType": "OrderPaid", "Detail": json.dumps({"order": 1}), "TraceHeader": own_header},
    ]
    entries_before = json.loads(json.dumps(entries))
    response = events.put_events(Entries=entries)

    assert response["FailedEntryCount"] == 0
    assert entries == entries_before
    (span,) = spans_named(tracing, "EventBridge.PutEvents")
    assert span.kind is SpanKind.PRODUCER
    assert span.attributes["messaging.destination.name"] == "default"
    (wire,) = sent_bodies
    assert [e.get("TraceHeader") for e in wire["Entries"]] == [xray.format_header(span.context), own_header]
    event_ids = [e["EventId"] for e in response["Entries"]]
    assert span_pointers(span) == [f"evb:{i}" for i in event_ids]

    delivered = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    lambda_events = [eventbridge_event(json.loads(m["Body"])) for m in delivered]
    contexts = sorted((evb.extract(e) for e in lambda_events), key=lambda rc: event_ids.index(rc.record_id or ""))
    assert [record_pointers(rc) for rc in contexts] == [[p] for p in span_pointers(span)]
    assert [rc.attributes["hoptrace.eventbridge.detail_type"] for rc in contexts] == ["OrderPlaced", "OrderPaid"]
    assert all(rc.failed_to_extract is None for rc in contexts)


# --- Lambda Invoke ------------------------------------------------------------------------------


class FakeLambda:
    """A local stand-in for the Lambda Invoke API that records what each request carried."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
                asynchronous = self.headers.get("X-Amz-Invocation-Type") == "Event"
                failing = "/functions/failing/" in self.path
                payload = b"" if asynchronous else json.dumps({"ok": not failing}).encode()
                self.send_response(202 if asynchronous else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Amz-Executed-Version", "$LATEST")
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                if failing:
                    self.send_header("X-Amz-Function-Error", "Unhandled")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def client_context(self, index: int = -1) -> dict[str, Any] | None:
        value = self.requests[index]["headers"].get("X-Amz-Client-Context")
        return json.loads(base64.b64decode(value)) if value else None


@pytest.fixture
def fake_lambda() -> Iterator[FakeLambda]:
    fake = FakeLambda()
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def lambda_client(fake: FakeLambda) -> Any:
    import boto3

    session: Any = boto3.session.Session(region_name=REGION)
    return session.client("lambda", endpoint_url=fake.url)


def encode_client_context(document: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def test_invoke_merges_the_callers_traceparent_into_the_users_client_context(
    tracing: Tracing, fake_lambda: FakeLambda
) -> None:
    user = {"custom": {"tenant": "acme"}, "env": {"locale": "de-DE"}}
    response = lambda_client(fake_lambda).invoke(
        FunctionName="arn:aws:lambda:eu-central-1:123456789012:function:checkout:prod",
        Payload=b'{"cart": 7}',
        ClientContext=encode_client_context(user),
    )

    assert json.loads(response["Payload"].read()) == {"ok": True}
    (span,) = spans_named(tracing, "Lambda.Invoke")
    assert span.kind is SpanKind.CLIENT
    assert span.attributes["faas.invoked_name"] == "checkout"
    assert span.attributes["faas.invoked_region"] == "eu-central-1"
    assert span.attributes["faas.invoked_provider"] == "aws"
    received = fake_lambda.client_context()
    assert received is not None
    assert received["env"] == user["env"]
    assert received["custom"]["tenant"] == "acme"
    assert received["custom"]["traceparent"].startswith(f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-")
    assert fake_lambda.requests[0]["body"] == b'{"cart": 7}'

    # The called function, given this client context by the runtime, continues the caller's trace.
    context = LambdaContext(client_context=ClientContext(custom=received["custom"], env=received["env"]))
    parent = lam.extract_client_context(context)
    assert parent is not None
    assert (parent.trace_id, parent.span_id) == (span.context.trace_id, span.context.span_id)


def test_asynchronous_invoke_is_a_producer_span_and_carries_the_context(
    tracing: Tracing, fake_lambda: FakeLambda
) -> None:
    response = lambda_client(fake_lambda).invoke(FunctionName="mailer", InvocationType="Event", Payload=b"{}")

    assert response["StatusCode"] == 202
    (span,) = spans_named(tracing, "Lambda.Invoke")
    assert span.kind is SpanKind.PRODUCER
    received = fake_lambda.client_context()
    assert received is not None
    assert received["custom"]["traceparent"].split("-")[2] == f"{span.context.span_id:016x}"


def test_a_client_context_too_large_to_take_the_traceparent_is_sent_unchanged(
    tracing: Tracing, fake_lambda: FakeLambda
) -> None:
    user = encode_client_context({"custom": {"blob": "x" * 2600}})
    assert len(user) <= lam.MAX_CLIENT_CONTEXT_BYTES
    lambda_client(fake_lambda).invoke(FunctionName="reports", ClientContext=user)

    assert fake_lambda.requests[0]["headers"]["X-Amz-Client-Context"] == user
    (span,) = spans_named(tracing, "Lambda.Invoke")
    assert "exceed 3583 bytes" in span.attributes["hoptrace.propagation.skipped"]


def test_a_function_error_fails_the_invoke_span_but_not_the_users_call(
    tracing: Tracing, fake_lambda: FakeLambda
) -> None:
    response = lambda_client(fake_lambda).invoke(FunctionName="failing")

    assert response["FunctionError"] == "Unhandled"
    (span,) = spans_named(tracing, "Lambda.Invoke")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "Unhandled"
