"""SNS carrier: W3C context in message attributes; the SNS MessageId and the md5 of the message as pointers.

This module also holds what SNS and SQS share, and ``sqs.py`` imports it from here (never the
other way round):

- the message-attribute budget: both allow 10 attributes and 256 KiB for body plus attributes,
  and use the same ``{"DataType", "StringValue", "BinaryValue"}`` shape when sending;
- reading W3C context from message attributes in any of the shapes consumers receive;
- reading an SNS notification, which is both a Lambda SNS record's ``Sns`` object and the SQS
  body under non-raw SNS->SQS delivery.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from opentelemetry.trace import Span, SpanContext, SpanKind

from ..guard import count
from . import POINTERS, AwsCall, RecordContext, add_pointers, inject_entries, w3c

SYSTEM = "aws_sns"

# Limits SQS and SNS apply to one message. SQS queues may now allow up to 1 MiB, but SNS and
# the SQS default stay at 256 KiB, so context only goes where it fits everywhere.
MAX_ATTRIBUTES = 10
MAX_MESSAGE_BYTES = 262_144

# Why W3C context was left out of a message, in the span attribute SKIPPED.
SKIPPED = "hoptrace.propagation.skipped"
SKIPPED_COUNT = "hoptrace.propagation.skipped_count"
QUOTA = "attribute_quota"
SIZE = "size_limit"

# Which carrier a consumer took the parent from: "w3c", "sns_envelope" or "xray".
CARRIER_USED = "hoptrace.propagation.carrier"
FAILED_COUNT = "hoptrace.messaging.batch.failed_count"

_SENDS = frozenset({"Publish", "PublishBatch"})
_STRING_TYPE_BYTES = len("String")


# --- producer side, shared with SQS ------------------------------------------------------


class OutgoingW3c:
    """One span's W3C fields, formatted once per API call, and the bytes they add to a message."""

    __slots__ = ("size", "values")

    def __init__(self, span: Span | None, values: dict[str, str] | None = None) -> None:
        # ``values`` when the caller already formatted them; empty for an invalid span context.
        self.values = w3c.headers_for(span) if values is None and span is not None else (values or {})
        # Every part of an attribute counts: name, data type and value (all ASCII here).
        size = 0
        for k, v in self.values.items():
            size += len(k) + _STRING_TYPE_BYTES + len(v)
        self.size = size


def with_w3c(attributes: Any, body: Any, fields: OutgoingW3c) -> tuple[dict[str, Any] | None, str | None]:
    """A copy of ``attributes`` with the W3C fields added, or ``(None, reason)`` when they do not fit.

    ``(None, None)`` means nothing is to be added: no context, the user set ``traceparent``
    (or ``tracestate``) themselves, or the attributes are not a dict (the SDK rejects the call).
    The user's dict is never changed.
    """
    if not fields.values:
        return None, None
    if attributes is None:
        attributes = {}
    elif not isinstance(attributes, Mapping) or "traceparent" in attributes or "tracestate" in attributes:
        return None, None
    if len(attributes) + len(fields.values) > MAX_ATTRIBUTES:
        return None, QUOTA
    size = text_bytes(body) + fields.size
    if size <= MAX_MESSAGE_BYTES:
        for name, value in attributes.items():
            size += text_bytes(name) + _attribute_value_bytes(value)
    if size > MAX_MESSAGE_BYTES:
        return None, SIZE
    added = dict(attributes)
    for name, value in fields.values.items():
        added[name] = {"DataType": "String", "StringValue": value}
    return added, None


def record_skipped(span: Span, reasons: list[str]) -> None:
    """Say on the span why context stayed out of some messages, and count each one."""
    if not reasons:
        return
    for reason in reasons:
        count(f"propagation.skipped.{reason}")
    span.set_attribute(SKIPPED, ",".join(sorted(set(reasons))))
    span.set_attribute(SKIPPED_COUNT, len(reasons))


def text_bytes(value: Any) -> int:
    """Bytes a string or binary value takes on the wire (UTF-8); 0 for anything else."""
    if isinstance(value, str):
        # isascii() is O(1) in CPython, so the common case never copies the body.
        return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    return 0


def _attribute_value_bytes(value: Any) -> int:
    if not isinstance(value, Mapping):
        return 0
    size = text_bytes(value.get("DataType")) + text_bytes(value.get("StringValue"))
    size += text_bytes(value.get("BinaryValue"))
    for key in ("StringListValues", "BinaryListValues"):  # reserved by AWS, counted if ever sent
        items = value.get(key)
        if isinstance(items, list):
            size += sum(text_bytes(item) for item in items)
    return size


def md5_hex(text: str) -> str:
    """The md5 both sides of a hop write as the ``md5:`` pointer (of the UTF-8 text)."""
    return hashlib.md5(text.encode("utf-8", "surrogatepass"), usedforsecurity=False).hexdigest()


def topic_name(arn: str) -> str:
    """``arn:aws:sns:region:account:orders`` -> ``orders``."""
    return arn.rsplit(":", 1)[-1]


# --- consumer side, shared with SQS ------------------------------------------------------


class AttributeShape(NamedTuple):
    """Key names of one message attribute as a given consumer receives it."""

    data_type: str
    string_value: str
    binary_value: str  # base64 text in Lambda events and SNS notifications, bytes from boto3


SNS_ATTRIBUTES = AttributeShape("Type", "Value", "Value")


def read_w3c(attributes: Any, shape: AttributeShape) -> tuple[SpanContext | None, str | None]:
    """The W3C parent in message attributes (String or Binary) and what was wrong, if anything."""
    if attributes is None:
        return None, None
    if not isinstance(attributes, Mapping):
        return None, f"message attributes are a {type(attributes).__name__}, not an object"
    if "traceparent" not in attributes:
        return None, None
    traceparent, problem = _attribute_text(attributes["traceparent"], shape)
    if traceparent is None:
        return None, f"traceparent attribute {problem}"
    carrier = {"traceparent": traceparent}
    if "tracestate" in attributes:
        tracestate, _ = _attribute_text(attributes["tracestate"], shape)
        if tracestate:
            carrier["tracestate"] = tracestate
    parent = w3c.extract(carrier)
    if parent is None:
        return None, f"traceparent attribute is malformed: {preview(traceparent)}"
    return parent, None


def _attribute_text(value: Any, shape: AttributeShape) -> tuple[str | None, str]:
    """The text of one attribute, or None and why not."""
    if not isinstance(value, Mapping):
        return None, f"is a {type(value).__name__}, not an object"
    data_type = value.get(shape.data_type)
    if isinstance(data_type, str) and data_type.startswith("Binary"):
        raw = value.get(shape.binary_value)
        if isinstance(raw, (bytes, bytearray)):
            data = bytes(raw)
        elif isinstance(raw, str):
            try:
                data = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                return None, "is not valid base64"
        else:
            return None, "has no binary value"
        try:
            return data.decode("ascii"), ""
        except UnicodeDecodeError:
            return None, "is not ASCII"
    text = value.get(shape.string_value)
    if isinstance(text, str):
        return text, ""
    return None, "has no string value"


def preview(value: Any, limit: int = 64) -> str:
    """A short, safe rendering of a bad value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Envelope:
    """What an SNS notification says about its origin: ids, topic, parent context, pointers."""

    message_id: str | None = None
    topic: str | None = None
    parent: SpanContext | None = None
    pointers: list[str] = field(default_factory=list)
    problem: str | None = None


def read_envelope(notification: Mapping[str, Any]) -> Envelope:
    """Read an SNS notification (a Lambda record's ``Sns``, or an SQS body under non-raw delivery)."""
    envelope = Envelope()
    problems: list[str] = []
    message_id = notification.get("MessageId")
    if isinstance(message_id, str) and message_id:
        envelope.message_id = message_id
        envelope.pointers.append(f"sns:msg:{message_id}")
    else:
        problems.append("no MessageId")
    message = notification.get("Message")
    if isinstance(message, str):
        envelope.pointers.append(f"md5:{md5_hex(message)}")
    else:
        problems.append("Message is not a string")
    arn = notification.get("TopicArn")
    if isinstance(arn, str) and arn:
        envelope.topic = topic_name(arn)
    envelope.parent, problem = read_w3c(notification.get("MessageAttributes"), SNS_ATTRIBUTES)
    if problem:
        problems.append(problem)
    envelope.problem = "; ".join(problems) or None
    return envelope


def envelope_in_body(body: str) -> Mapping[str, Any] | None:
    """The SNS notification an SQS body holds under non-raw delivery, or None if it is anything else."""
    # Cheap checks first: most bodies are not SNS notifications and need no JSON parsing.
    if not body.startswith("{") or '"TopicArn"' not in body:
        return None
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if isinstance(doc, dict) and doc.get("Type") == "Notification" and "TopicArn" in doc:
        return doc
    return None


def extract(record: Mapping[str, Any]) -> RecordContext:
    """Context and pointers of one record of a Lambda SNS event; never raises."""
    if not isinstance(record, Mapping):
        return RecordContext(failed_to_extract=f"SNS record is a {type(record).__name__}, not an object")
    attributes: dict[str, Any] = {"messaging.system": SYSTEM, "messaging.operation.type": "process"}
    notification = record.get("Sns")
    if not isinstance(notification, Mapping):
        return RecordContext(attributes=attributes, failed_to_extract="SNS record has no Sns object")
    envelope = read_envelope(notification)
    if envelope.topic:
        attributes["messaging.destination.name"] = envelope.topic
    if envelope.message_id:
        attributes["messaging.message.id"] = envelope.message_id
    if envelope.pointers:
        attributes[POINTERS] = envelope.pointers
    if envelope.parent is not None:
        attributes[CARRIER_USED] = "w3c"
    return RecordContext(
        parent=envelope.parent,
        attributes=attributes,
        name=f"{envelope.topic} process" if envelope.topic else "process",
        record_id=envelope.message_id,
        failed_to_extract=envelope.problem,
    )


# --- the carrier -------------------------------------------------------------------------


class SnsCarrier:
    """Producer side of SNS: Publish and PublishBatch carry context; their message ids are pointers."""

    fixed_span_kind = True  # span_kind reads the operation only: the hooks ask once per operation

    def span_kind(self, operation: str, params: Mapping[str, Any]) -> SpanKind:
        return SpanKind.PRODUCER if operation in _SENDS else SpanKind.CLIENT

    def on_request(self, call: AwsCall) -> None:
        if call.operation not in _SENDS:
            return
        params, span = call.params, call.span
        described: dict[str, Any] = {"messaging.system": SYSTEM, "messaging.operation.type": "send"}
        arn = params.get("TopicArn") or params.get("TargetArn")
        if isinstance(arn, str) and arn:
            described["messaging.destination.name"] = topic_name(arn)
        reasons: list[str] = []
        if call.operation == "Publish":
            # SMS (PhoneNumber) has no consumer that could read context: leave it alone.
            if isinstance(arn, str) and arn:
                attributes, reason = with_w3c(params.get("MessageAttributes"), params.get("Message"), OutgoingW3c(span))
                if attributes is not None:
                    params["MessageAttributes"] = attributes
                if reason:
                    reasons.append(reason)
        else:
            entries = params.get("PublishBatchRequestEntries")
            if isinstance(entries, list):
                described["messaging.batch.message_count"] = len(entries)
                fields = OutgoingW3c(span)

                def inject(entry: dict[str, Any]) -> str | None:
                    attributes, reason = with_w3c(entry.get("MessageAttributes"), entry.get("Message"), fields)
                    if attributes is not None:
                        entry["MessageAttributes"] = attributes
                    return reason

                params["PublishBatchRequestEntries"] = inject_entries(entries, inject, reasons)
        span.set_attributes(described)
        record_skipped(span, reasons)

    def on_response(self, call: AwsCall, parsed: Mapping[str, Any]) -> None:
        span, params = call.span, call.params
        if call.operation == "Publish":
            message_id = parsed.get("MessageId")
            pointers: list[str] = []
            if isinstance(message_id, str) and message_id:
                span.set_attribute("messaging.message.id", message_id)
                pointers.append(f"sns:msg:{message_id}")
            # No md5 for SMS: nobody can match it, and a short text's md5 is easy to reverse.
            if params.get("TopicArn") or params.get("TargetArn"):
                digest = delivered_md5(params)
                if digest:
                    pointers.append(f"md5:{digest}")
            add_pointers(span, pointers)
        elif call.operation == "PublishBatch":
            entries = params.get("PublishBatchRequestEntries")
            by_id = {e.get("Id"): e for e in entries if isinstance(e, Mapping)} if isinstance(entries, list) else {}
            pointers = []
            for ok in _list(parsed.get("Successful")):
                if not isinstance(ok, Mapping):
                    continue
                message_id = ok.get("MessageId")
                if isinstance(message_id, str) and message_id:
                    pointers.append(f"sns:msg:{message_id}")
                entry = by_id.get(ok.get("Id"))
                digest = delivered_md5(entry) if entry is not None else None
                if digest:
                    pointers.append(f"md5:{digest}")
            span.set_attribute(FAILED_COUNT, len(_list(parsed.get("Failed"))))
            add_pointers(span, pointers)


def delivered_md5(message: Mapping[str, Any]) -> str | None:
    """md5 of the text an SQS subscriber receives: the message, or for MessageStructure "json" its
    "sqs" entry (else "default"); None if there is no such text."""
    text = message.get("Message")
    if not isinstance(text, str):
        return None
    if message.get("MessageStructure") == "json":
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            return None
        text = doc.get("sqs", doc.get("default")) if isinstance(doc, dict) else None
        if not isinstance(text, str):
            return None
    return md5_hex(text)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


CARRIER = SnsCarrier()
