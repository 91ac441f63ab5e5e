"""Carriers: how trace context and correlation pointers ride on each kind of hop.

One module per carrier, each with the same shape (DESIGN §3–4):

- producer side, for an AWS service, an object with ``on_request(call)`` (inject context into
  the outgoing parameters, describe the call on its span) and ``on_response(call, parsed)``
  (record the pointers the response gives, e.g. message ids); optionally
  ``response_attributes(call, parsed, into)``, which adds the usual answer's attributes to the
  hook's own dict ``into``, set in one update, and returns True (``on_response`` is then not
  called; False means "call it"); ``fixed_span_kind = True`` when ``span_kind`` depends on
  the operation alone, so the hooks ask it once per operation instead of once per call; and
  ``deferrable_answers``, the operations whose answer the response methods read from the answer
  and ``call.span``/``call.operation`` alone (not ``call.params``): the hooks may then run them
  when the span is exported rather than during the call; and
  ``start_attributes(operation, params, common, region)``, a fresh dict of the span's first
  attributes (``common`` included) for the operations it knows, None for the others: the hooks
  then start the span with it, and ``call.started_with`` tells ``on_request`` they did;
- consumer side, ``extract(record) -> RecordContext``: the producer's context found in one
  record of a Lambda event, and the same pointers seen from the receiving end.

Pointers are strings in the span attribute ``hoptrace.pointers`` (a list). Both sides of a hop
write the same string, so the collector can join hops whose context was lost:

==================  =====================================  =================================
pointer             producer writes                        consumer writes
==================  =====================================  =================================
``sqs:msg:ID``      SendMessage(Batch) response MessageId  SQS record ``messageId``
``md5:HEX``         md5 of the SQS body / SNS message      SQS record ``md5OfBody``
``sns:msg:ID``      Publish(Batch) response MessageId      ``Sns.MessageId`` or envelope
``ddb:key:T:HASH``  table T + hash of the key attributes   stream ``Keys``
``ddb:item:T:HASH`` PutItem: hash of the whole item        stream ``NewImage``
``evb:ID``          PutEvents response EventId             EventBridge event ``id``
``kin:S:SHARD:SEQ`` PutRecord(s) shard and sequence no.    Kinesis record shard and sequence
==================  =====================================  =================================

The destination (queue, topic, table, stream) is recorded beside the pointers as
``messaging.destination.name`` or ``aws.dynamodb.table_names``, so matches can respect it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry.trace import Link, Span, SpanContext, SpanKind

POINTERS = "hoptrace.pointers"


class AwsCall:
    """One botocore API call in flight, as the carriers see it.

    A plain slotted class, not a dataclass: one is made per AWS call, on the hot path.
    """

    __slots__ = ("body_suffix", "may_splice", "op", "operation", "params", "region", "service", "span", "started_with")

    def __init__(
        self,
        service: str,
        operation: str,
        params: dict[str, Any],
        span: Span,
        region: str | None = None,
        op: Any = None,
    ) -> None:
        self.service = service  # botocore service id, hyphenized and lower case: "sqs", "dynamodb"
        self.operation = operation  # "SendMessage"
        self.params = params  # the API parameters; carriers copy nested values before changing them
        self.span = span
        self.region = region
        # Set by the botocore hooks when the request is serialised as a JSON object: a carrier may
        # then add top-level members to the serialised body (``body_suffix``) instead of to
        # ``params``, which spares botocore validating and serialising them (most of the cost).
        # The suffix replaces the body's closing "}", so it ends with one: b', "A": 1}'.
        self.may_splice = False
        self.body_suffix: bytes | None = None
        self.op = op  # what the botocore hooks know of the operation (their ``_Operation``), if they made the call
        # Set by the hooks when the span started with the carrier's ``start_attributes``.
        self.started_with = False


class AwsCarrier(Protocol):
    """Producer side of one AWS service."""

    def span_kind(self, operation: str, params: Mapping[str, Any]) -> SpanKind:
        """PRODUCER for calls that send a message, CLIENT otherwise."""
        ...

    def on_request(self, call: AwsCall) -> None:
        """Describe the call and inject context into ``call.params`` (may replace nested values)."""
        ...

    def on_response(self, call: AwsCall, parsed: Mapping[str, Any]) -> None:
        """Record pointers from the parsed response."""
        ...


@dataclass
class RecordContext:
    """What one record of a Lambda event says about where it came from."""

    parent: SpanContext | None = None  # the producer's span, if context survived the hop
    attributes: dict[str, Any] = field(default_factory=dict)  # messaging.*, pointers, …
    name: str = "process"  # span name for the record's process span, e.g. "orders process"
    record_id: str | None = None  # the id a partial-batch response uses (itemIdentifier)
    failed_to_extract: str | None = None  # why context could not be read, if it could not

    def links(self) -> list[Link]:
        return [Link(self.parent)] if self.parent is not None and self.parent.is_valid else []


def add_pointers(span: Span, pointers: list[str]) -> None:
    """Append pointers to the span's ``hoptrace.pointers`` list (kept unique, order kept)."""
    if not pointers:
        return
    existing = getattr(span, "attributes", None) or {}
    if POINTERS not in existing and (len(pointers) == 1 or len(set(pointers)) == len(pointers)):
        span.set_attribute(POINTERS, tuple(pointers))
        return
    current = list(existing.get(POINTERS, ()))
    for p in pointers:
        if p not in current:
            current.append(p)
    span.set_attribute(POINTERS, current)


def extract_safely(name: str, what: str, fill: Callable[[RecordContext, Any], None], record: Any) -> RecordContext:
    """Run a carrier's ``fill(rc, record)``; whatever it trips over becomes ``failed_to_extract``."""
    rc = RecordContext(name=name)
    try:
        fill(rc, record)
    except Exception as exc:  # malformed beyond what the checks foresaw
        rc.failed_to_extract = f"unreadable {what}: {type(exc).__name__}"
    return rc


def inject_entries(entries: list[Any], inject: Callable[[dict[str, Any]], str | None], reasons: list[str]) -> list[Any]:
    """Copies of a batch's entries with context injected; the user's list and dicts stay as they were.

    ``inject`` changes one entry copy and returns why it could not, if it could not.
    """
    copies: list[Any] = []
    for entry in entries:
        if isinstance(entry, Mapping):
            entry = dict(entry)
            reason = inject(entry)
            if reason:
                reasons.append(reason)
        copies.append(entry)
    return copies
