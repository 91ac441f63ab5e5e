"""Lambda event records for streams and EventBridge, built from what the emulator returned.

Each builder turns an API response (DynamoDB Streams or Kinesis GetRecords, an EventBridge event
as delivered to a target) into the record Lambda would hand a function, in the shape AWS
documents for Lambda events: field names and order, base64 for binary data (GetRecords gives
bytes), epoch seconds for timestamps (GetRecords gives datetimes). Every record goes through
JSON, as a real event does.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

ACCOUNT = "123456789012"
LAMBDA_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/lambda-role"


def _as_event_json(value: dict[str, Any]) -> dict[str, Any]:
    """What a record looks like after Lambda serialised the event: plain JSON."""
    parsed: dict[str, Any] = json.loads(json.dumps(value))
    return parsed


def _epoch_seconds(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _b64(data: Any) -> str:
    raw = data if isinstance(data, (bytes, bytearray)) else str(data).encode("utf-8")
    return base64.b64encode(bytes(raw)).decode("ascii")


def attribute_value_as_event_json(value: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB attribute value as a Lambda event carries it: binary as base64 text."""
    ((tag, inner),) = value.items()
    if tag == "B":
        return {"B": _b64(inner)}
    if tag == "BS":
        return {"BS": [_b64(b) for b in inner]}
    if tag == "M":
        return {"M": attribute_map_as_event_json(inner)}
    if tag == "L":
        return {"L": [attribute_value_as_event_json(v) for v in inner]}
    return {tag: inner}


def attribute_map_as_event_json(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {name: attribute_value_as_event_json(v) for name, v in attributes.items()}


def dynamodb_stream_record(record: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """A DynamoDB Streams GetRecords record as one record of a Lambda event."""
    change = record["dynamodb"]
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": int(_epoch_seconds(change["ApproximateCreationDateTime"])),
        "Keys": attribute_map_as_event_json(change["Keys"]),
    }
    for image in ("NewImage", "OldImage"):
        if image in change:
            dynamodb[image] = attribute_map_as_event_json(change[image])
    dynamodb["SequenceNumber"] = change["SequenceNumber"]
    dynamodb["SizeBytes"] = change["SizeBytes"]
    dynamodb["StreamViewType"] = change["StreamViewType"]
    return _as_event_json(
        {
            "eventID": record["eventID"],
            "eventName": record["eventName"],
            "eventVersion": record["eventVersion"],
            "eventSource": "aws:dynamodb",
            "awsRegion": record["awsRegion"],
            "dynamodb": dynamodb,
            "eventSourceARN": stream_arn,
        }
    )


def kinesis_record(record: Mapping[str, Any], shard_id: str, stream_arn: str) -> dict[str, Any]:
    """A Kinesis GetRecords record as one record of a Lambda event."""
    region = stream_arn.split(":")[3]
    return _as_event_json(
        {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": record["PartitionKey"],
                "sequenceNumber": record["SequenceNumber"],
                "data": _b64(record["Data"]),
                "approximateArrivalTimestamp": round(_epoch_seconds(record["ApproximateArrivalTimestamp"]), 3),
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard_id}:{record['SequenceNumber']}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": LAMBDA_ROLE_ARN,
            "awsRegion": region,
            "eventSourceARN": stream_arn,
        }
    )


def eventbridge_event(delivered: Mapping[str, Any], account: str = ACCOUNT) -> dict[str, Any]:
    """An event as EventBridge delivered it to a target, in the documented shape a Lambda receives.

    The emulator's SQS delivery leaves out ``account``; the documented event always has it.
    """
    return _as_event_json(
        {
            "version": delivered.get("version", "0"),
            "id": delivered["id"],
            "detail-type": delivered["detail-type"],
            "source": delivered["source"],
            "account": delivered.get("account", account),
            "time": delivered["time"],
            "region": delivered["region"],
            "resources": delivered.get("resources", []),
            "detail": delivered["detail"],
        }
    )


def records_event(*records: Mapping[str, Any]) -> dict[str, Any]:
    """The Lambda event for a batch of records."""
    return {"Records": list(records)}
