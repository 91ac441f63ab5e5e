"""The age of a batch's oldest record at invocation (``hoptrace.faas.record_age_ms``), read from
the documented arrival fields of SQS, Kinesis and DynamoDB stream records."""

from __future__ import annotations

import time
from typing import Any

import hoptrace
from hoptrace.instrumentation.aws_lambda.triggers import oldest_record_age_ms
from tests.conftest import Tracing
from tests.lambda_context import LambdaContext

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:orders"
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/clicks"
TABLE_STREAM = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-11-24T00:00:00.000"


def sqs(message_id: str, sent_ms: int) -> dict[str, Any]:
    return {
        "messageId": message_id, "receiptHandle": "AQEB", "body": "{}", "md5OfBody": "99914b932bd37a50b983c5e7c90ae93b",
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(sent_ms), "SenderId": "AIDA",
                       "ApproximateFirstReceiveTimestamp": str(sent_ms + 5)},
        "messageAttributes": {}, "eventSource": "aws:sqs", "eventSourceARN": QUEUE_ARN, "awsRegion": "us-east-1",
    }  # fmt: skip


def kinesis(sequence: str, arrival_s: float) -> dict[str, Any]:
    return {
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "1", "sequenceNumber": sequence,
                    "data": "e30=", "approximateArrivalTimestamp": arrival_s},
        "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"shardId-000000000000:{sequence}",
        "eventName": "aws:kinesis:record", "awsRegion": "us-east-1", "eventSourceARN": STREAM_ARN,
    }  # fmt: skip


def dynamodb(created_s: int) -> dict[str, Any]:
    return {
        "eventID": "1", "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {"ApproximateCreationDateTime": created_s, "Keys": {"id": {"S": "o-1"}},
                     "NewImage": {"id": {"S": "o-1"}}, "SequenceNumber": "111", "SizeBytes": 26,
                     "StreamViewType": "NEW_IMAGE"},
        "eventSourceARN": TABLE_STREAM,
    }  # fmt: skip


def invoke(tracing: Tracing, event: dict[str, Any]) -> Any:
    @hoptrace.lambda_handler
    def fn(event: Any, context: Any) -> str:
        return "done"

    assert fn(event, LambdaContext()) == "done"
    (span,) = [s for s in tracing.spans() if "faas.trigger" in (s.attributes or {})]
    return span


def test_an_sqs_batch_records_the_age_of_its_oldest_message(tracing: Tracing) -> None:
    now_ms = int(time.time() * 1000)
    span = invoke(tracing, {"Records": [sqs("a", now_ms - 2_000), sqs("b", now_ms - 45_000), sqs("c", now_ms)]})
    age = span.attributes["hoptrace.faas.record_age_ms"]
    assert 45_000 <= age < 45_000 + 60_000  # the oldest one, read when the invocation started


def test_kinesis_and_dynamodb_stream_records_give_their_iterator_age() -> None:
    now_ms = 1_764_000_000_000.0
    assert oldest_record_age_ms([kinesis("1", 1_763_999_990.5), kinesis("2", 1_763_999_999.0)], now_ms) == 9_500
    assert oldest_record_age_ms([dynamodb(1_763_999_880)], now_ms) == 120_000


def test_records_without_an_arrival_time_or_malformed_ones_record_no_age(tracing: Tracing) -> None:
    assert oldest_record_age_ms([{"eventSource": "aws:sqs", "attributes": {"SentTimestamp": "soon"}}], 1.0) is None
    assert oldest_record_age_ms([{"eventSource": "aws:sns", "Sns": {}}, "junk"], 1.0) is None
    assert oldest_record_age_ms([sqs("a", 2_000)], 1_000.0) == 0  # a clock behind the sender's: never negative
    span = invoke(tracing, {"Records": [{"eventSource": "aws:sqs", "messageId": "x", "body": "", "attributes": {}}]})
    assert "hoptrace.faas.record_age_ms" not in span.attributes
