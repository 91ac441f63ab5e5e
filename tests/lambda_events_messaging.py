"""Lambda SQS and SNS event records built from what the emulator really returned.

Shapes are AWS's documented Lambda event formats ("Using Lambda with Amazon SQS" and "... with
Amazon SNS"): the SQS record is camelCase with ``messageAttributes`` values carrying
``stringValue``/``binaryValue`` (base64) and empty ``stringListValues``/``binaryListValues``;
the SNS record wraps the notification in ``Sns`` with ``SigningCertUrl``/``UnsubscribeUrl``
(where an SQS-delivered envelope spells them ``...URL``) and ``Subject`` null when not set.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from typing import Any


def sqs_record(message: Mapping[str, Any], queue_arn: str) -> dict[str, Any]:
    """One Lambda SQS record for a message as boto3's ReceiveMessage returned it.

    Receive with ``AttributeNames=["All"]``, ``MessageSystemAttributeNames=["All"]`` and
    ``MessageAttributeNames=["All"]``: Lambda passes all of them on.
    """
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _lambda_attribute(value) for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    record.update(
        {
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": queue_arn.split(":")[3],
        }
    )
    return record


def _lambda_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        out["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
    out["stringListValues"] = list(value.get("StringListValues", []))
    out["binaryListValues"] = [base64.b64encode(v).decode("ascii") for v in value.get("BinaryListValues", [])]
    out["dataType"] = value["DataType"]
    return out


def sqs_event(messages: Iterable[Mapping[str, Any]], queue_arn: str) -> dict[str, Any]:
    """A Lambda SQS event (a batch) for messages received from one queue."""
    return {"Records": [sqs_record(m, queue_arn) for m in messages]}


def sns_record(notification: Mapping[str, Any] | str, subscription_arn: str) -> dict[str, Any]:
    """One Lambda SNS record for an SNS notification.

    ``notification`` is the JSON envelope SNS delivered to an SQS queue subscribed without raw
    delivery (the emulator cannot invoke Lambda functions), parsed or as the SQS body: the same
    notification, which Lambda presents under ``Sns`` with its own spelling of two URL keys.
    """
    note: Mapping[str, Any] = json.loads(notification) if isinstance(notification, str) else notification
    return {
        "EventVersion": "1.0",
        "EventSubscriptionArn": subscription_arn,
        "EventSource": "aws:sns",
        "Sns": {
            "SignatureVersion": note["SignatureVersion"],
            "Timestamp": note["Timestamp"],
            "Signature": note["Signature"],
            "SigningCertUrl": note["SigningCertURL"],
            "MessageId": note["MessageId"],
            "Message": note["Message"],
            "MessageAttributes": dict(note.get("MessageAttributes", {})),
            "Type": note["Type"],
            "UnsubscribeUrl": note["UnsubscribeURL"],
            "TopicArn": note["TopicArn"],
            "Subject": note.get("Subject"),
        },
    }


def sns_event(notifications: Iterable[Mapping[str, Any]], subscription_arn: str) -> dict[str, Any]:
    """A Lambda SNS event (SNS delivers one record per invocation; a list keeps the shape)."""
    return {"Records": [sns_record(n, subscription_arn) for n in notifications]}
