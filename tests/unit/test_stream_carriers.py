"""DynamoDB, Kinesis, EventBridge and Lambda-Invoke carriers, without any server.

Calls are driven through the carriers the way the botocore hooks drive them (``span_kind``,
``on_request`` with the parameters, ``on_response`` with the parsed response); consumer records
follow the examples in AWS's Lambda event documentation.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, StatusCode

from hoptrace.instrumentation.carriers import POINTERS, AwsCall, w3c, xray
from hoptrace.instrumentation.carriers import dynamodb as ddb
from hoptrace.instrumentation.carriers import eventbridge as evb
from hoptrace.instrumentation.carriers import kinesis as kin
from hoptrace.instrumentation.carriers import lambda_invoke as lam
from tests.lambda_context import ClientContext, LambdaContext

TABLE_STREAM_ARN = "arn:aws:dynamodb:us-west-2:123456789012:table/ExampleTableWithStream/stream/2015-06-27T00:48:05.899"
KINESIS_STREAM_ARN = "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"
SEQ = "49590338271490256608559692538361571095921575989136588898"

_tracer = TracerProvider().get_tracer("carrier-tests")


@pytest.fixture(autouse=True)
def empty_key_cache() -> Iterator[None]:
    ddb.forget_key_names()
    yield
    ddb.forget_key_names()


def drive(service: str, carrier: Any, operation: str, params: dict[str, Any], parsed: dict[str, Any] | None = None):
    """Run one call through a carrier as the botocore hooks do; the span is left open to inspect."""
    kind = carrier.span_kind(operation, params)
    call = AwsCall(service, operation, params, _tracer.start_span(f"{service}.{operation}", kind=kind), "us-east-1")
    carrier.on_request(call)
    if parsed is not None:
        carrier.on_response(call, parsed)
    return call


def attrs(call: AwsCall) -> dict[str, Any]:
    return dict(call.span.attributes or {})  # type: ignore[attr-defined]


def pointers(call: AwsCall) -> list[str]:
    return list(attrs(call).get(POINTERS, []))


# --- canonical encoding of attribute values ----------------------------------------------------


@pytest.mark.parametrize(
    ("spellings", "canonical"),
    [
        (["1.50", "1.5", "1.500E0", "15e-1", "0.15E1", "+1.5"], "15E-1"),
        (["100", "1E2", "1e+2", "100.000", "0100"], "1E2"),
        (["0", "0.00", "-0", "0E10"], "0"),
        (["-0.0010", "-1e-3"], "-1E-3"),
        (["12345678901234567890123456789012345678"], "12345678901234567890123456789012345678E0"),
    ],
)
def test_numbers_are_normalised_as_dynamodb_stores_them(spellings: list[str], canonical: str) -> None:
    assert {ddb.canonical_number(s) for s in spellings} == {canonical}
    assert len({ddb.item_hash({"n": {"N": s}}) for s in spellings}) == 1


def test_different_numbers_hash_differently() -> None:
    assert ddb.item_hash({"n": {"N": "1.5"}}) != ddb.item_hash({"n": {"N": "1.05"}})
    assert ddb.item_hash({"n": {"N": "10"}}) != ddb.item_hash({"n": {"N": "1"}})


def test_a_number_and_a_string_with_the_same_text_hash_differently() -> None:
    assert ddb.item_hash({"v": {"N": "1"}}) != ddb.item_hash({"v": {"S": "1"}})


def test_set_members_are_order_independent_and_normalised() -> None:
    assert ddb.item_hash({"s": {"SS": ["b", "a", "c"]}}) == ddb.item_hash({"s": {"SS": ["c", "a", "b"]}})
    assert ddb.item_hash({"s": {"NS": ["3", "1.0", "20"]}}) == ddb.item_hash({"s": {"NS": ["2E1", "1", "3.00"]}})
    assert ddb.item_hash({"s": {"BS": [b"\x02", b"\x01"]}}) == ddb.item_hash({"s": {"BS": ["AQ==", "Ag=="]}})


def test_list_order_matters() -> None:
    assert ddb.item_hash({"l": {"L": [{"N": "1"}, {"N": "2"}]}}) != ddb.item_hash(
        {"l": {"L": [{"N": "2"}, {"N": "1"}]}}
    )


def test_map_keys_are_order_independent_at_every_depth() -> None:
    one = {"a": {"S": "x"}, "m": {"M": {"p": {"N": "1"}, "q": {"M": {"y": {"BOOL": True}, "z": {"NULL": True}}}}}}
    other: dict[str, Any] = {
        "m": {"M": {"q": {"M": {"z": {"NULL": True}, "y": {"BOOL": True}}}, "p": {"N": "1.0"}}},
        "a": {"S": "x"},
    }
    assert ddb.item_hash(one) == ddb.item_hash(other)
    deeper_change = copy.deepcopy(other)
    deeper_change["m"]["M"]["q"]["M"]["y"] = {"BOOL": False}
    assert ddb.item_hash(one) != ddb.item_hash(deeper_change)


def test_binary_given_as_bytes_or_as_base64_text_hashes_the_same() -> None:
    raw = b"\x00\xffhello"
    text = base64.b64encode(raw).decode()
    assert ddb.item_hash({"b": {"B": raw}}) == ddb.item_hash({"b": {"B": text}})
    assert ddb.item_hash({"b": {"B": bytearray(raw)}}) == ddb.item_hash({"b": {"B": text}})


def test_text_binary_in_botocore_parameters_means_its_utf8_bytes() -> None:
    # botocore sends text given for a B parameter as its UTF-8 bytes, and a Lambda event then
    # carries those bytes in base64: the producer must hash the text as UTF-8.
    as_param = {"b": {"B": "aGVsbG8="}}
    as_event = {"b": {"B": base64.b64encode(b"aGVsbG8=").decode()}}
    assert ddb.item_hash(as_param, "utf-8") == ddb.item_hash(as_event)
    assert ddb.item_hash(as_param, "utf-8") != ddb.item_hash(as_param)


def test_boto3_binary_objects_hash_as_their_bytes() -> None:
    from boto3.dynamodb.types import Binary

    assert ddb.item_hash({"b": {"B": Binary(b"xyz")}}) == ddb.item_hash({"b": {"B": b"xyz"}})


def test_hash_is_sha256_of_the_documented_json_truncated_to_32_hex_chars() -> None:
    item = {
        "pk": {"S": "order#1"},
        "total": {"N": "12.50"},
        "blob": {"B": b"\x01\x02"},
        "tags": {"SS": ["z", "a"]},
        "lines": {"L": [{"M": {"sku": {"S": "A"}, "qty": {"N": "2"}}}]},
        "gift": {"BOOL": False},
        "note": {"NULL": True},
    }
    documented = (
        '{"blob":{"B":"AQI="},"gift":{"BOOL":false},'
        '"lines":{"L":[{"M":{"qty":{"N":"2E0"},"sku":{"S":"A"}}}]},'
        '"note":{"NULL":true},"pk":{"S":"order#1"},"tags":{"SS":["a","z"]},"total":{"N":"125E-1"}}'
    )
    expected = hashlib.sha256(documented.encode()).hexdigest()[:32]
    assert ddb.item_hash(item) == expected


def test_non_ascii_text_is_hashed_through_its_json_escape() -> None:
    documented = '{"name":{"S":"caf\\u00e9"}}'
    assert ddb.item_hash({"name": {"S": "café"}}) == hashlib.sha256(documented.encode()).hexdigest()[:32]


def test_malformed_attribute_values_hash_without_raising() -> None:
    odd: dict[str, Any] = {
        "a": "plain",
        "b": {"S": "x", "N": "1"},
        "c": {"N": "not-a-number"},
        "d": {"NS": "1"},
        "e": {"L": "nope"},
        "f": {"M": None},
        "g": {"X": 1},
        "h": {"B": "!!not base64!!"},
        "i": None,
    }
    assert len(ddb.item_hash(odd)) == 32


def test_key_hash_covers_only_the_key_attributes_and_needs_all_of_them() -> None:
    item = {"pk": {"S": "a"}, "sk": {"N": "1"}, "other": {"S": "x"}}
    assert ddb.key_hash(item, ["pk", "sk"]) == ddb.item_hash({"sk": {"N": "1"}, "pk": {"S": "a"}})
    assert ddb.key_hash(item, ["pk", "missing"]) is None
    assert ddb.key_hash(item, []) is None


def test_table_name_is_read_from_names_table_arns_and_stream_arns() -> None:
    assert ddb.table_name("orders") == "orders"
    assert ddb.table_name("arn:aws:dynamodb:us-east-1:123456789012:table/orders") == "orders"
    assert ddb.table_name(TABLE_STREAM_ARN) == "ExampleTableWithStream"


# --- DynamoDB producer side ---------------------------------------------------------------------


def test_every_dynamodb_call_is_a_client_span_describing_the_database_call() -> None:
    call = drive("dynamodb", ddb.CARRIER, "Query", {"TableName": "orders", "IndexName": "by-customer"}, {})
    assert call.span.kind is SpanKind.CLIENT  # type: ignore[attr-defined]
    a = attrs(call)
    assert a["db.system"] == "dynamodb"
    assert a["db.operation.name"] == "Query"
    assert a["aws.dynamodb.table_names"] == ("orders",)
    assert a["aws.dynamodb.index_name"] == "by-customer"
    assert POINTERS not in a


def test_batch_and_transaction_calls_list_every_table_once() -> None:
    batch = drive("dynamodb", ddb.CARRIER, "BatchWriteItem", {"RequestItems": {"b": [], "a": []}})
    assert attrs(batch)["aws.dynamodb.table_names"] == ("a", "b")
    transact = drive(
        "dynamodb",
        ddb.CARRIER,
        "TransactWriteItems",
        {"TransactItems": [{"Put": {"TableName": "t1", "Item": {}}}, {"Delete": {"TableName": "t1", "Key": {}}}]},
    )
    assert attrs(transact)["aws.dynamodb.table_names"] == ("t1",)


def test_put_item_without_known_key_names_points_at_the_whole_item_only() -> None:
    item = {"pk": {"S": "a"}, "v": {"N": "1"}}
    call = drive("dynamodb", ddb.CARRIER, "PutItem", {"TableName": "orders", "Item": item}, {})
    assert pointers(call) == [f"ddb:item:orders:{ddb.item_hash(item)}"]


@pytest.mark.parametrize(
    ("operation", "params", "parsed"),
    [
        ("GetItem", {"TableName": "orders", "Key": {"pk": {"S": "z"}, "sk": {"N": "0"}}}, {}),
        ("DeleteItem", {"TableName": "orders", "Key": {"pk": {"S": "z"}, "sk": {"N": "0"}}}, {}),
        (
            "BatchGetItem",
            {"RequestItems": {"orders": {"Keys": [{"pk": {"S": "z"}, "sk": {"N": "0"}}]}}},
            {},
        ),
        (
            "DescribeTable",
            {"TableName": "orders"},
            {
                "Table": {
                    "TableName": "orders",
                    "KeySchema": [
                        {"AttributeName": "pk", "KeyType": "HASH"},
                        {"AttributeName": "sk", "KeyType": "RANGE"},
                    ],
                }
            },
        ),
        (
            "CreateTable",
            {
                "TableName": "orders",
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            },
            {},
        ),
    ],
)
def test_put_item_points_at_the_key_once_key_names_were_learnt_from_any_call(
    operation: str, params: dict[str, Any], parsed: dict[str, Any]
) -> None:
    drive("dynamodb", ddb.CARRIER, operation, params, parsed)
    item = {"pk": {"S": "a"}, "sk": {"N": "1.0"}, "v": {"S": "x"}}
    call = drive("dynamodb", ddb.CARRIER, "PutItem", {"TableName": "orders", "Item": item}, {})
    assert pointers(call) == [
        f"ddb:key:orders:{ddb.item_hash({'pk': {'S': 'a'}, 'sk': {'N': '1'}})}",
        f"ddb:item:orders:{ddb.item_hash(item)}",
    ]


def test_key_names_are_learnt_per_table() -> None:
    drive("dynamodb", ddb.CARRIER, "GetItem", {"TableName": "users", "Key": {"id": {"S": "u"}}}, {})
    call = drive("dynamodb", ddb.CARRIER, "PutItem", {"TableName": "orders", "Item": {"id": {"S": "u"}}}, {})
    assert [p.split(":")[1] for p in pointers(call)] == ["item"]
    assert ddb.known_key_names("users") == ("id",)


def test_key_name_cache_stays_small() -> None:
    for i in range(ddb._KEY_CACHE_MAX + 50):
        ddb.learn_key_names(f"t{i}", ["id"])
    assert len(ddb._key_names) == ddb._KEY_CACHE_MAX
    assert ddb.known_key_names("t0") is None
    assert ddb.known_key_names(f"t{ddb._KEY_CACHE_MAX + 49}") == ("id",)


def test_update_and_delete_point_at_the_key_they_name() -> None:
    key = {"pk": {"S": "a"}, "sk": {"N": "2.000"}}
    for operation in ("UpdateItem", "DeleteItem"):
        call = drive("dynamodb", ddb.CARRIER, operation, {"TableName": "orders", "Key": key}, {})
        assert pointers(call) == [f"ddb:key:orders:{ddb.item_hash({'pk': {'S': 'a'}, 'sk': {'N': '2'}})}"]


def test_failed_or_read_only_calls_record_no_pointers() -> None:
    call = drive("dynamodb", ddb.CARRIER, "GetItem", {"TableName": "orders", "Key": {"pk": {"S": "a"}}}, {})
    assert POINTERS not in attrs(call)


def test_batch_write_points_at_each_put_and_delete_request_except_unprocessed_ones() -> None:
    ddb.learn_key_names("orders", ["pk"])
    put_a = {"pk": {"S": "a"}, "v": {"N": "1"}}
    put_b = {"pk": {"S": "b"}, "v": {"N": "2"}}
    params = {
        "RequestItems": {
            "orders": [
                {"PutRequest": {"Item": put_a}},
                {"PutRequest": {"Item": put_b}},
                {"DeleteRequest": {"Key": {"pk": {"S": "c"}}}},
            ]
        }
    }
    parsed = {"UnprocessedItems": {"orders": [{"PutRequest": {"Item": put_b}}]}}
    call = drive("dynamodb", ddb.CARRIER, "BatchWriteItem", params, parsed)
    assert pointers(call) == [
        f"ddb:key:orders:{ddb.item_hash({'pk': {'S': 'a'}})}",
        f"ddb:item:orders:{ddb.item_hash(put_a)}",
        f"ddb:key:orders:{ddb.item_hash({'pk': {'S': 'c'}})}",
    ]
    assert attrs(call)["hoptrace.dynamodb.unprocessed_count"] == 1


def test_unprocessed_items_given_back_as_python_values_by_boto3_resources_are_recognised() -> None:
    ddb.learn_key_names("orders", ["pk"])
    put = {"pk": {"S": "a"}, "n": {"N": "1.5"}, "b": {"B": b"xy"}, "s": {"SS": ["q", "p"]}}
    parsed = {
        "UnprocessedItems": {
            "orders": [{"PutRequest": {"Item": {"pk": "a", "n": Decimal("1.5"), "b": b"xy", "s": {"p", "q"}}}}]
        }
    }
    call = drive(
        "dynamodb", ddb.CARRIER, "BatchWriteItem", {"RequestItems": {"orders": [{"PutRequest": {"Item": put}}]}}, parsed
    )
    assert POINTERS not in attrs(call)


def test_batch_write_learns_key_names_from_its_own_delete_requests() -> None:
    params = {
        "RequestItems": {
            "orders": [
                {"PutRequest": {"Item": {"pk": {"S": "a"}, "v": {"S": "1"}}}},
                {"DeleteRequest": {"Key": {"pk": {"S": "c"}}}},
            ]
        }
    }
    call = drive("dynamodb", ddb.CARRIER, "BatchWriteItem", params, {})
    assert f"ddb:key:orders:{ddb.item_hash({'pk': {'S': 'a'}})}" in pointers(call)


def test_transaction_points_at_puts_updates_and_deletes_but_not_condition_checks() -> None:
    params = {
        "TransactItems": [
            {"Put": {"TableName": "orders", "Item": {"pk": {"S": "p"}, "v": {"N": "1"}}}},
            {"Update": {"TableName": "orders", "Key": {"pk": {"S": "u"}}, "UpdateExpression": "SET v = :v"}},
            {"Delete": {"TableName": "stock", "Key": {"sku": {"S": "d"}}}},
            {"ConditionCheck": {"TableName": "orders", "Key": {"pk": {"S": "c"}}, "ConditionExpression": "x"}},
        ]
    }
    call = drive("dynamodb", ddb.CARRIER, "TransactWriteItems", params, {})
    assert pointers(call) == [
        f"ddb:key:orders:{ddb.item_hash({'pk': {'S': 'p'}})}",
        f"ddb:item:orders:{ddb.item_hash({'pk': {'S': 'p'}, 'v': {'N': '1'}})}",
        f"ddb:key:orders:{ddb.item_hash({'pk': {'S': 'u'}})}",
        f"ddb:key:stock:{ddb.item_hash({'sku': {'S': 'd'}})}",
    ]
    assert f"ddb:key:orders:{ddb.item_hash({'pk': {'S': 'c'}})}" not in pointers(call)


def test_producer_hashes_text_given_for_binary_as_botocore_sends_it() -> None:
    call = drive("dynamodb", ddb.CARRIER, "PutItem", {"TableName": "t", "Item": {"b": {"B": "text"}}}, {})
    assert pointers(call) == [f"ddb:item:t:{ddb.item_hash({'b': {'B': b'text'}})}"]


def test_the_users_parameters_are_not_changed() -> None:
    params = {"TableName": "orders", "Item": {"pk": {"S": "a"}, "n": {"N": "1.50"}, "s": {"SS": ["b", "a"]}}}
    before = copy.deepcopy(params)
    drive("dynamodb", ddb.CARRIER, "PutItem", params, {})
    assert params == before


# --- DynamoDB consumer side ---------------------------------------------------------------------


def stream_record(event_name: str = "INSERT", **change: Any) -> dict[str, Any]:
    """A record as in AWS's "Using Lambda with DynamoDB" example event."""
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": 1479499740,
        "Keys": {"Id": {"N": "101"}},
        "NewImage": {"Message": {"S": "New item!"}, "Id": {"N": "101"}},
        "SequenceNumber": "111",
        "SizeBytes": 26,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    dynamodb.update(change)
    return {
        "eventID": "1",
        "eventVersion": "1.0",
        "dynamodb": dynamodb,
        "awsRegion": "us-west-2",
        "eventName": event_name,
        "eventSourceARN": TABLE_STREAM_ARN,
        "eventSource": "aws:dynamodb",
    }


def test_insert_record_points_at_its_key_and_new_image() -> None:
    rc = ddb.extract(stream_record())
    table = "ExampleTableWithStream"
    assert rc.attributes[POINTERS] == [
        f"ddb:key:{table}:{ddb.item_hash({'Id': {'N': '101'}})}",
        f"ddb:item:{table}:{ddb.item_hash({'Message': {'S': 'New item!'}, 'Id': {'N': '101'}})}",
    ]
    assert rc.attributes["aws.dynamodb.table_names"] == [table]
    assert rc.attributes["messaging.operation.type"] == "process"
    assert rc.attributes["hoptrace.dynamodb.event_name"] == "INSERT"
    assert rc.record_id == "111"
    assert rc.name == f"{table} process"
    assert rc.parent is None
    assert rc.failed_to_extract is None


def test_insert_record_matches_the_put_item_that_wrote_it() -> None:
    table = "ExampleTableWithStream"
    put = drive(
        "dynamodb",
        ddb.CARRIER,
        "PutItem",
        {"TableName": table, "Item": {"Id": {"N": "101.0"}, "Message": {"S": "New item!"}}},
        {},
    )
    rc = ddb.extract(stream_record())  # teaches the key name "Id"
    again = drive("dynamodb", ddb.CARRIER, "PutItem", {"TableName": table, "Item": put.params["Item"]}, {})
    assert set(pointers(put)) < set(rc.attributes[POINTERS])
    assert set(pointers(again)) == set(rc.attributes[POINTERS])


def test_remove_record_points_at_its_key_only() -> None:
    rc = ddb.extract(stream_record("REMOVE", OldImage={"Id": {"N": "101"}}, NewImage=None))
    assert [p.split(":")[1] for p in rc.attributes[POINTERS]] == ["key"]
    assert rc.failed_to_extract is None


def test_keys_only_stream_without_images_is_not_a_failure() -> None:
    record = stream_record("MODIFY", StreamViewType="KEYS_ONLY")
    del record["dynamodb"]["NewImage"]
    rc = ddb.extract(record)
    assert [p.split(":")[1] for p in rc.attributes[POINTERS]] == ["key"]
    assert rc.failed_to_extract is None


def test_new_image_missing_from_a_stream_that_should_have_it_is_reported() -> None:
    record = stream_record("MODIFY")
    del record["dynamodb"]["NewImage"]
    rc = ddb.extract(record)
    assert rc.failed_to_extract is not None and "NewImage" in rc.failed_to_extract
    assert len(rc.attributes[POINTERS]) == 1


@pytest.mark.parametrize(
    "record",
    [
        None,
        "INSERT",
        [],
        {},
        {"eventSourceARN": 7, "dynamodb": "x"},
        {"eventSourceARN": "arn:aws:sqs:us-east-1:1:q", "dynamodb": {"Keys": [1, 2]}},
        {"eventSourceARN": TABLE_STREAM_ARN, "eventName": "INSERT", "dynamodb": {"Keys": {"Id": "101"}, "NewImage": 5}},
        {"eventSourceARN": TABLE_STREAM_ARN, "eventName": ["x"], "dynamodb": {"Keys": {"Id": {"N": {"deep": 1}}}}},
    ],
)
def test_malformed_stream_records_never_raise_and_say_what_was_wrong(record: Any) -> None:
    rc = ddb.extract(record)
    assert rc.failed_to_extract
    assert rc.parent is None


def test_a_record_missing_its_arn_still_gives_its_sequence_number() -> None:
    record = stream_record()
    del record["eventSourceARN"]
    rc = ddb.extract(record)
    assert rc.record_id == "111"
    assert rc.failed_to_extract is not None and "eventSourceARN" in rc.failed_to_extract
    assert POINTERS not in rc.attributes


# --- Kinesis ------------------------------------------------------------------------------------


def kinesis_lambda_record(**overrides: Any) -> dict[str, Any]:
    """A record as in AWS's "Using Lambda with Kinesis" example event."""
    record: dict[str, Any] = {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "1",
            "sequenceNumber": SEQ,
            "data": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
            "approximateArrivalTimestamp": 1545084650.987,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"shardId-000000000006:{SEQ}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
        "awsRegion": "us-east-2",
        "eventSourceARN": KINESIS_STREAM_ARN,
    }
    record.update(overrides)
    return record


def test_put_record_is_a_producer_span_to_the_stream_and_points_at_shard_and_sequence() -> None:
    params = {"StreamName": "lambda-stream", "Data": b"hello", "PartitionKey": "1"}
    call = drive(
        "kinesis", kin.CARRIER, "PutRecord", params, {"ShardId": "shardId-000000000006", "SequenceNumber": SEQ}
    )
    assert call.span.kind is SpanKind.PRODUCER  # type: ignore[attr-defined]
    a = attrs(call)
    assert a["messaging.system"] == "aws_kinesis"
    assert a["messaging.destination.name"] == "lambda-stream"
    assert a["messaging.operation.type"] == "send"
    assert pointers(call) == [f"kin:lambda-stream:shardId-000000000006:{SEQ}"]
    assert params["Data"] == b"hello"


def test_put_records_points_at_each_stored_record_and_skips_failed_ones() -> None:
    params = {"StreamARN": KINESIS_STREAM_ARN, "Records": [{"Data": b"a", "PartitionKey": "a"}] * 3}
    parsed = {
        "FailedRecordCount": 1,
        "Records": [
            {"ShardId": "shardId-000000000000", "SequenceNumber": "1"},
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"},
            {"ShardId": "shardId-000000000001", "SequenceNumber": "2"},
        ],
    }
    call = drive("kinesis", kin.CARRIER, "PutRecords", params, parsed)
    assert attrs(call)["messaging.destination.name"] == "lambda-stream"
    assert attrs(call)["messaging.batch.message_count"] == 3
    assert attrs(call)["hoptrace.kinesis.failed_record_count"] == 1
    assert pointers(call) == ["kin:lambda-stream:shardId-000000000000:1", "kin:lambda-stream:shardId-000000000001:2"]


def test_other_kinesis_calls_are_client_spans() -> None:
    assert kin.CARRIER.span_kind("GetRecords", {}) is SpanKind.CLIENT
    assert kin.CARRIER.span_kind("DescribeStream", {}) is SpanKind.CLIENT


def test_kinesis_record_gives_the_producers_pointer_and_its_sequence_number_as_record_id() -> None:
    rc = kin.extract(kinesis_lambda_record())
    assert rc.attributes[POINTERS] == [f"kin:lambda-stream:shardId-000000000006:{SEQ}"]
    assert rc.record_id == SEQ
    assert rc.attributes["messaging.system"] == "aws_kinesis"
    assert rc.attributes["messaging.destination.name"] == "lambda-stream"
    assert rc.attributes["messaging.operation.type"] == "process"
    assert rc.name == "lambda-stream process"
    assert rc.parent is None and rc.failed_to_extract is None


@pytest.mark.parametrize(
    "record",
    [
        None,
        {},
        kinesis_lambda_record(kinesis="oops"),
        kinesis_lambda_record(eventID="no-colon"),
        kinesis_lambda_record(eventSourceARN="arn:aws:sqs:us-east-1:1:q"),
        kinesis_lambda_record(eventID=None, eventSourceARN=None, kinesis={"sequenceNumber": ["x"]}),
    ],
)
def test_malformed_kinesis_records_never_raise_and_say_what_was_wrong(record: Any) -> None:
    rc = kin.extract(record)
    assert rc.failed_to_extract
    assert POINTERS not in rc.attributes


# --- EventBridge --------------------------------------------------------------------------------


def test_put_events_injects_a_trace_header_into_copies_of_the_users_entries() -> None:
    entries = [
        {"Source": "shop", "DetailType": "OrderPlaced", "Detail": "{}"},
        {"Source": "shop", "DetailType": "OrderPaid", "Detail": "{}", "EventBusName": "orders"},
    ]
    before = copy.deepcopy(entries)
    params: dict[str, Any] = {"Entries": entries}
    call = drive("eventbridge", evb.CARRIER, "PutEvents", params)
    header = xray.format_header(call.span.get_span_context())
    assert [e["TraceHeader"] for e in params["Entries"]] == [header, header]
    assert params["Entries"] is not entries
    assert entries == before
    assert xray.parse_header(header).span_id == call.span.get_span_context().span_id  # type: ignore[union-attr]


def test_put_events_is_a_producer_span_to_the_first_entrys_bus() -> None:
    entries = [
        {
            "Source": "s",
            "DetailType": "d",
            "Detail": "{}",
            "EventBusName": "arn:aws:events:us-east-1:1:event-bus/orders",
        }
    ]
    call = drive("eventbridge", evb.CARRIER, "PutEvents", {"Entries": entries})
    assert call.span.kind is SpanKind.PRODUCER  # type: ignore[attr-defined]
    a = attrs(call)
    assert a["messaging.system"] == "aws_eventbridge"
    assert a["messaging.operation.type"] == "send"
    assert a["messaging.destination.name"] == "orders"
    plain = drive(
        "eventbridge", evb.CARRIER, "PutEvents", {"Entries": [{"Source": "s"}, {"Source": "s", "EventBusName": "x"}]}
    )
    assert attrs(plain)["messaging.destination.name"] == "default"
    assert attrs(plain)["hoptrace.eventbridge.bus_names"] == ("default", "x")
    assert evb.CARRIER.span_kind("PutRule", {}) is SpanKind.CLIENT


def test_the_users_own_trace_header_is_kept() -> None:
    own = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    params: dict[str, Any] = {"Entries": [{"Source": "s", "DetailType": "d", "Detail": "{}", "TraceHeader": own}]}
    drive("eventbridge", evb.CARRIER, "PutEvents", params)
    assert params["Entries"][0]["TraceHeader"] == own


def test_an_entry_too_close_to_the_size_limit_is_sent_without_a_header() -> None:
    big = {"Source": "s", "DetailType": "d", "Detail": json.dumps({"x": "é" * (evb.MAX_ENTRY_BYTES // 2 - 20)})}
    small = {"Source": "s", "DetailType": "d", "Detail": "{}"}
    params: dict[str, Any] = {"Entries": [big, small]}
    call = drive("eventbridge", evb.CARRIER, "PutEvents", params)
    assert "TraceHeader" not in params["Entries"][0]
    assert "TraceHeader" in params["Entries"][1]
    assert "1 entries" in attrs(call)["hoptrace.propagation.skipped"]


def test_put_events_points_at_each_accepted_event_id() -> None:
    parsed = {
        "FailedEntryCount": 1,
        "Entries": [
            {"EventId": "11710aed-b79e-4468-a20b-bb3c0c3b4860"},
            {"ErrorCode": "InternalFailure", "ErrorMessage": "x"},
        ],
    }
    call = drive("eventbridge", evb.CARRIER, "PutEvents", {"Entries": [{"Source": "s"}, {"Source": "s"}]}, parsed)
    assert pointers(call) == ["evb:11710aed-b79e-4468-a20b-bb3c0c3b4860"]
    assert attrs(call)["hoptrace.eventbridge.failed_entry_count"] == 1


def documented_eventbridge_event() -> dict[str, Any]:
    """As in AWS's "Amazon EventBridge events" documentation."""
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "111122223333",
        "time": "2017-12-22T18:43:48Z",
        "region": "us-west-1",
        "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
        "detail": {"instance-id": " i-1234567890abcdef0", "state": "terminated"},
    }


def test_eventbridge_event_gives_the_producers_pointer_source_and_detail_type() -> None:
    rc = evb.extract(documented_eventbridge_event())
    assert rc.attributes[POINTERS] == ["evb:6a7e8feb-b491-4cf7-a9f1-bf3703467718"]
    assert rc.attributes["hoptrace.eventbridge.source"] == "aws.ec2"
    assert rc.attributes["hoptrace.eventbridge.detail_type"] == "EC2 Instance State-change Notification"
    assert rc.attributes["messaging.system"] == "aws_eventbridge"
    assert rc.record_id == "6a7e8feb-b491-4cf7-a9f1-bf3703467718"
    assert rc.name == "aws.ec2 process"
    assert rc.failed_to_extract is None


@pytest.mark.parametrize("event", [None, [], {}, {"id": "", "source": None}, {"detail-type": "x", "source": "y"}])
def test_malformed_eventbridge_events_never_raise_and_say_what_was_wrong(event: Any) -> None:
    rc = evb.extract(event)
    assert rc.failed_to_extract


# --- Lambda Invoke ------------------------------------------------------------------------------


def client_context(document: Any) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def decoded(value: str) -> Any:
    return json.loads(base64.b64decode(value))


@pytest.mark.parametrize(
    ("params", "kind"),
    [
        ({"FunctionName": "f"}, SpanKind.CLIENT),
        ({"FunctionName": "f", "InvocationType": "RequestResponse"}, SpanKind.CLIENT),
        ({"FunctionName": "f", "InvocationType": "DryRun"}, SpanKind.CLIENT),
        ({"FunctionName": "f", "InvocationType": "Event"}, SpanKind.PRODUCER),
    ],
)
def test_invoke_is_a_producer_span_only_when_asynchronous(params: dict[str, Any], kind: SpanKind) -> None:
    assert lam.CARRIER.span_kind("Invoke", params) is kind


def test_invoke_async_is_a_producer_span() -> None:
    assert lam.CARRIER.span_kind("InvokeAsync", {"FunctionName": "f"}) is SpanKind.PRODUCER


@pytest.mark.parametrize(
    ("function_name", "expected"),
    [
        ("my-function", ("my-function", "us-east-1")),
        ("my-function:v1", ("my-function", "us-east-1")),
        ("123456789012:function:my-function", ("my-function", "us-east-1")),
        ("arn:aws:lambda:eu-west-1:123456789012:function:my-function", ("my-function", "eu-west-1")),
        ("arn:aws:lambda:eu-west-1:123456789012:function:my-function:prod", ("my-function", "eu-west-1")),
    ],
)
def test_invoked_function_is_named_whatever_form_the_caller_used(function_name: str, expected: tuple[str, str]) -> None:
    call = drive("lambda", lam.CARRIER, "Invoke", {"FunctionName": function_name})
    a = attrs(call)
    assert (a["faas.invoked_name"], a["faas.invoked_region"]) == expected
    assert a["faas.invoked_provider"] == "aws"


def test_invoke_without_a_client_context_gets_one_naming_the_span() -> None:
    params: dict[str, Any] = {"FunctionName": "f"}
    call = drive("lambda", lam.CARRIER, "Invoke", params)
    assert decoded(params["ClientContext"]) == {"custom": w3c.headers_for(call.span)}


def test_the_users_client_context_is_merged_not_replaced() -> None:
    user = {"client": {"app_title": "shop"}, "custom": {"tenant": "acme"}, "env": {"locale": "en"}}
    params: dict[str, Any] = {"FunctionName": "f", "ClientContext": client_context(user)}
    call = drive("lambda", lam.CARRIER, "Invoke", params)
    merged = decoded(params["ClientContext"])
    assert merged == {**user, "custom": {"tenant": "acme", **w3c.headers_for(call.span)}}


@pytest.mark.parametrize(
    ("existing", "reason"),
    [
        ("not base64!", "not base64-encoded JSON"),
        (base64.b64encode(b"not json").decode(), "not base64-encoded JSON"),
        (client_context(["a list"]), "not a JSON object"),
        (client_context({"custom": "text"}), "'custom' is not an object"),
        (client_context({"custom": {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}}), "already has"),
        (client_context({"custom": {"pad": "x" * 2600}}), "exceed 3583 bytes"),
    ],
)
def test_a_client_context_that_cannot_take_the_headers_is_left_as_it_was(existing: str, reason: str) -> None:
    params: dict[str, Any] = {"FunctionName": "f", "ClientContext": existing}
    call = drive("lambda", lam.CARRIER, "Invoke", params)
    assert params["ClientContext"] == existing
    assert reason in attrs(call)["hoptrace.propagation.skipped"]


def test_a_client_context_just_under_the_limit_after_merging_is_sent() -> None:
    headers = {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}
    pad = 0
    while True:  # the largest user document that still fits once the traceparent is merged
        candidate = client_context({"custom": {"pad": "x" * (pad + 1)}})
        merged, _ = lam.merged_client_context(candidate, headers)
        if merged is None:
            break
        pad += 1
    existing = client_context({"custom": {"pad": "x" * pad}})
    merged, why_not = lam.merged_client_context(existing, headers)
    assert why_not is None and merged is not None
    assert len(merged) <= lam.MAX_CLIENT_CONTEXT_BYTES
    assert len(merged) > lam.MAX_CLIENT_CONTEXT_BYTES - 8


def test_function_error_in_the_response_marks_the_span_as_failed() -> None:
    call = drive(
        "lambda", lam.CARRIER, "Invoke", {"FunctionName": "f"}, {"StatusCode": 200, "FunctionError": "Unhandled"}
    )
    assert call.span.status.status_code is StatusCode.ERROR  # type: ignore[attr-defined]
    assert attrs(call)["error.type"] == "Unhandled"
    ok = drive("lambda", lam.CARRIER, "Invoke", {"FunctionName": "f"}, {"StatusCode": 200})
    assert ok.span.status.status_code is StatusCode.UNSET  # type: ignore[attr-defined]


def test_called_function_reads_the_callers_context_from_client_context_custom() -> None:
    caller = _tracer.start_span("caller")
    context = LambdaContext(client_context=ClientContext(custom={"tenant": "acme", **w3c.headers_for(caller)}))
    parent = lam.extract_client_context(context)
    assert parent is not None
    assert (parent.trace_id, parent.span_id) == (caller.get_span_context().trace_id, caller.get_span_context().span_id)
    assert parent.is_remote


@pytest.mark.parametrize(
    "context",
    [
        None,
        object(),
        LambdaContext(),
        LambdaContext(client_context=ClientContext(custom=None)),
        LambdaContext(client_context=ClientContext(custom={"traceparent": 42})),  # type: ignore[dict-item]
        LambdaContext(client_context=ClientContext(custom={"traceparent": "garbage"})),
    ],
)
def test_a_context_without_a_usable_traceparent_gives_no_parent(context: Any) -> None:
    assert lam.extract_client_context(context) is None


@pytest.mark.parametrize("arn", [None, 7, "arn:aws:sqs:us-east-1:123456789012:queue", "table/orders", "orders"])
def test_a_record_whose_arn_names_no_table_gets_no_invented_table(arn: Any) -> None:
    record = stream_record()
    record["eventSourceARN"] = arn
    rc = ddb.extract(record)
    assert "aws.dynamodb.table_names" not in rc.attributes
    assert POINTERS not in rc.attributes
    assert rc.name == "dynamodb process"
    assert rc.failed_to_extract is not None and "eventSourceARN" in rc.failed_to_extract
