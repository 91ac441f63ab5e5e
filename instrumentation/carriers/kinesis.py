"""Kinesis Data Streams: PutRecord(s) as PRODUCER spans, joined to consumers by sequence numbers.

A Kinesis record has nowhere to put trace context except the user's own ``Data``, which is
never touched; so the hop is joined by the pointer ``kin:<stream>:<shard id>:<sequence number>``,
which the producer reads from the response and the consumer from the Lambda record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.trace import SpanKind

from . import POINTERS, AwsCall, RecordContext, add_pointers, extract_safely

SYSTEM = "aws_kinesis"
_PUT_OPERATIONS = frozenset({"PutRecord", "PutRecords"})


def stream_name(name: Any = None, arn: Any = None) -> str:
    """The stream's name, from its name or its ARN (``arn:aws:kinesis:R:A:stream/NAME``)."""
    if name:
        return str(name)
    text = str(arn or "")
    _, sep, rest = text.partition(":stream/")
    return rest.split("/", 1)[0] if sep else ""


def pointer(stream: str, shard_id: Any, sequence_number: Any) -> str:
    """The pointer both sides of a Kinesis hop record."""
    return f"kin:{stream}:{shard_id}:{sequence_number}"


class KinesisCarrier:
    """Producer side of Kinesis: describes the call, records shard and sequence numbers."""

    def span_kind(self, operation: str, params: Mapping[str, Any]) -> SpanKind:
        return SpanKind.PRODUCER if operation in _PUT_OPERATIONS else SpanKind.CLIENT

    def on_request(self, call: AwsCall) -> None:
        span, params = call.span, call.params
        stream = stream_name(params.get("StreamName"), params.get("StreamARN"))
        span.set_attribute("messaging.system", SYSTEM)
        if stream:
            span.set_attribute("messaging.destination.name", stream)
        if call.operation in _PUT_OPERATIONS:
            span.set_attribute("messaging.operation.type", "send")
        elif call.operation == "GetRecords":
            span.set_attribute("messaging.operation.type", "receive")
        records = params.get("Records")
        if call.operation == "PutRecords" and isinstance(records, list):
            span.set_attribute("messaging.batch.message_count", len(records))

    def on_response(self, call: AwsCall, parsed: Mapping[str, Any]) -> None:
        if call.operation not in _PUT_OPERATIONS:
            return
        stream = stream_name(call.params.get("StreamName"), call.params.get("StreamARN"))
        if call.operation == "PutRecord":
            results: list[Any] = [parsed]
            if parsed.get("SequenceNumber"):
                call.span.set_attribute("messaging.message.id", str(parsed["SequenceNumber"]))
        else:
            results = parsed.get("Records") or []
            failed = parsed.get("FailedRecordCount")
            if failed:
                call.span.set_attribute("hoptrace.kinesis.failed_record_count", int(failed))
        add_pointers(
            call.span,
            [
                pointer(stream, r["ShardId"], r["SequenceNumber"])
                for r in results
                if isinstance(r, Mapping) and r.get("ShardId") and r.get("SequenceNumber")
            ],
        )


CARRIER = KinesisCarrier()


def extract(record: Mapping[str, Any]) -> RecordContext:
    """Pointer and attributes of one Kinesis record of a Lambda event; never raises.

    Kinesis records carry no trace context of ours (the data is the user's), so ``parent`` is None.
    """
    return extract_safely("kinesis process", "Kinesis record", _extract_into, record)


def _extract_into(rc: RecordContext, record: Any) -> None:
    if not isinstance(record, Mapping):
        rc.failed_to_extract = f"Kinesis record is a {type(record).__name__}, not an object"
        return
    problems: list[str] = []
    attrs = rc.attributes
    attrs["messaging.system"] = SYSTEM
    attrs["messaging.operation.type"] = "process"
    stream = stream_name(arn=record.get("eventSourceARN"))
    if stream:
        attrs["messaging.destination.name"] = stream
        rc.name = f"{stream} process"
    else:
        problems.append("no stream: eventSourceARN missing or not a stream ARN")
    data = record.get("kinesis")
    if not isinstance(data, Mapping):
        problems.append("no 'kinesis' object in the record")
        data = {}
    sequence = data.get("sequenceNumber")
    if sequence:
        rc.record_id = str(sequence)
        attrs["messaging.message.id"] = str(sequence)
    else:
        problems.append("no kinesis.sequenceNumber")
    # eventID is "<shard id>:<sequence number>".
    shard, sep, _ = str(record.get("eventID") or "").partition(":")
    if sep and shard:
        attrs["messaging.destination.partition.id"] = shard
    else:
        problems.append("no shard id: eventID is not '<shard id>:<sequence number>'")
    if stream and sequence and sep and shard:
        attrs[POINTERS] = [pointer(stream, shard, sequence)]
    if problems:
        rc.failed_to_extract = "; ".join(problems)
