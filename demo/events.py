"""Lambda's event shapes, built from what the emulator's APIs return (AWS's documented formats).

- API Gateway HTTP API, payload format 2.0;
- SQS, from ``ReceiveMessage`` messages;
- DynamoDB streams, from ``GetRecords`` records (binary values base64-encoded as in Lambda);
- EventBridge Scheduler's "Scheduled Event".
"""

from __future__ import annotations

import base64
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Optional

from .app import ACCOUNT, REGION

API_ID = "shopapi"
API_DOMAIN = f"{API_ID}.execute-api.{REGION}.amazonaws.com"


def http_api_event(
    method: str,
    route: str,
    path: str,
    path_parameters: dict[str, str],
    headers: dict[str, str],
    body: Optional[str],
    query: str = "",
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event for a request matched to ``METHOD route``."""
    now = time.time()
    lowered = {k.lower(): v for k, v in headers.items()}
    lowered["host"] = API_DOMAIN
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {route}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": lowered,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": API_ID,
            "domainName": API_DOMAIN,
            "domainPrefix": API_ID,
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": base64.b32encode(uuid.uuid4().bytes)[:14].decode(),
            "routeKey": f"{method} {route}",
            "stage": "$default",
            "time": datetime.fromtimestamp(now, timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body is not None:
        event["body"] = body
    return event


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The SQS event Lambda delivers for messages as ``ReceiveMessage`` returned them."""
    records = []
    for m in messages:
        attrs = {}
        for name, a in (m.get("MessageAttributes") or {}).items():
            attr: dict[str, Any] = {"stringListValues": [], "binaryListValues": [], "dataType": a["DataType"]}
            if "StringValue" in a:
                attr["stringValue"] = a["StringValue"]
            if "BinaryValue" in a:
                attr["binaryValue"] = base64.b64encode(a["BinaryValue"]).decode()
            attrs[name] = attr
        records.append(
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": attrs,
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
        )
    return {"Records": records}


def _lambda_image(image: dict[str, Any]) -> dict[str, Any]:
    """GetRecords returns binary values as bytes; Lambda events carry them base64-encoded."""
    out: dict[str, Any] = {}
    for name, value in image.items():
        ((kind, v),) = value.items()
        if kind == "B":
            v = base64.b64encode(v).decode()
        elif kind == "BS":
            v = [base64.b64encode(b).decode() for b in v]
        elif kind == "M":
            v = _lambda_image(v)
        elif kind == "L":
            v = [next(iter(_lambda_image({"_": item}).values())) for item in v]
        out[name] = {kind: v}
    return out


def stream_event(records: list[dict[str, Any]], stream_arn: str) -> dict[str, Any]:
    """The DynamoDB stream event Lambda delivers for records as ``GetRecords`` returned them."""
    out = []
    for r in records:
        d = dict(r["dynamodb"])
        for key in ("Keys", "NewImage", "OldImage"):
            if key in d:
                d[key] = _lambda_image(d[key])
        created = d.get("ApproximateCreationDateTime")
        if created is not None and hasattr(created, "timestamp"):
            d["ApproximateCreationDateTime"] = int(created.timestamp())
        out.append(
            {
                "eventID": r["eventID"],
                "eventName": r["eventName"],
                "eventVersion": r.get("eventVersion", "1.1"),
                "eventSource": "aws:dynamodb",
                "awsRegion": REGION,
                "dynamodb": d,
                "eventSourceARN": stream_arn,
            }
        )
    return {"Records": out}


def scheduled_event(rule: str) -> dict[str, Any]:
    """EventBridge's "Scheduled Event" for a schedule rule."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{rule}"],
        "detail": {},
    }
