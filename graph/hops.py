"""Hop correlation, Tempo-style: every span states explicit keys; a producer key and a consumer
key with the same string match, and the match emits a ``Hop``.

Keys (DESIGN §3, §5), producer side ⇄ consumer side:

==================  ===========================================  ========================================
via                 producer key from                            consumer key from
==================  ===========================================  ========================================
``parent``          CLIENT/PRODUCER span: ``span:TRACE+SPAN``    SERVER/CONSUMER span: ``span:TRACE+PARENT``
``link``            (same producer key)                          each link (not to its own invocation)
``message_id``      ``sqs:msg:``/``sns:msg:`` pointers or        the same from records, envelopes
                    ``messaging.message.id`` (semconv)
``event_id``        ``evb:ID``                                   ``evb:ID``
``sequence_number`` ``kin:STREAM:SHARD:SEQ``                     ``kin:STREAM:SHARD:SEQ``
``md5``             SNS publish ``md5:HEX``                      SQS record ``md5:HEX`` (raw delivery)
``dynamodb_item``   PutItem ``ddb:item:TABLE:HASH``              stream ``NewImage`` hash
``dynamodb_key``    write ``ddb:key:TABLE:HASH``                 stream ``Keys`` hash
==================  ===========================================  ========================================

Ids are unique, so they match exactly. md5 and DynamoDB keys are not (the same body or key is
written again and again): they are *windowed* — the producer must have ended before the consumer
started (give or take clock skew) and within ``WINDOW_NS``, the write must agree with the stream
event (Put/Update: INSERT/MODIFY; Delete: REMOVE) and, among several candidates, the latest one
wins. A consumer that carries an SNS message id does not use md5 at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from . import naming
from .spans import CLIENT, CONSUMER, PRODUCER, SERVER, GraphSpan

PRODUCER_SIDE, CONSUMER_SIDE = "p", "c"
WINDOW_NS = 24 * 3600 * 10**9  # DynamoDB streams keep records 24 h; md5 joins are no looser
SKEW_NS = 5 * 10**9  # how far a consumer may seem to start before its producer ended

# via -> windowed (non-unique) keys.
WINDOWED = frozenset({"md5", "dynamodb_key", "dynamodb_item"})
ASYNC_VIA = frozenset({"link", "message_id", "event_id", "sequence_number", "md5", "dynamodb_key", "dynamodb_item"})
# Preference when one consumer span matches one producer span along several keys.
STRENGTH = {
    "parent": 9, "link": 8, "message_id": 7, "event_id": 7, "sequence_number": 7,
    "dynamodb_item": 5, "md5": 4, "dynamodb_key": 3,
}  # fmt: skip
# Pointer prefixes (8 or 4 characters, looked up by slicing) -> via.
_POINTER_VIA = {"sqs:msg:": "message_id", "sns:msg:": "message_id", "evb:": "event_id", "kin:": "sequence_number"}
_SEMCONV_IDS = {"queue": "sqs:msg:", "topic": "sns:msg:", "bus": "evb:"}
_REMOVE_OPS = frozenset({"DeleteItem"})
_PUT_OPS = frozenset({"PutItem", "UpdateItem"})


class HopEnd(NamedTuple):
    """One side of a hop as a key row holds it: enough to pair without reading the span again."""

    trace_id: bytes
    span_id: bytes
    service: str
    kind: int
    start_ns: int
    end_ns: int
    detail: str = ""  # DynamoDB: the producer's operation or the consumer's event name
    # Consumer side: the deliver edge "source|target" its dwell is counted on. Producer side: the
    # topic it published to, if any (SNS delivering to a subscribed queue is no span: the hop draws it).
    edge: str = ""
    attempt: int = 1  # consumer side: ApproximateReceiveCount


class HopKey(NamedTuple):
    key: str
    side: str  # PRODUCER_SIDE or CONSUMER_SIDE
    via: str
    end: HopEnd

    @property
    def windowed(self) -> bool:
        return self.via in WINDOWED


class Hop(NamedTuple):
    """A producer span joined to a consumer span."""

    from_trace: bytes
    from_span: bytes
    to_trace: bytes
    to_span: bytes
    via: str
    dwell_ms: float | None  # consumer start - producer end, for async hops; never negative
    skew: bool  # the clocks disagree: the consumer seemed to start before its producer (dwell clamped)
    start_ns: int  # the consumer's start: the minute the dwell is counted in
    edge: str = ""  # the deliver edge of the consumer ("source|target"), if any
    attempt: int = 1
    # "topic|queue" when a topic's message reached a consumer of a subscribed queue: the map's
    # topic → queue edge, which no span stands for. Not stored with the hop (see ``relay``).
    relay: str = ""

    @property
    def is_async(self) -> bool:
        return self.via in ASYNC_VIA


def _span_key(trace_id: bytes, span_id: bytes) -> str:
    return "span:" + (trace_id + span_id).hex()


def hop_end(span: GraphSpan, v: naming.View | None = None, detail: str = "") -> HopEnd:
    v = v or naming.view(span)
    attempt = 1 if span.values(_RECEIVE_COUNTS) == (None, None) else _attempt(span)
    s = span
    return HopEnd(s.trace_id, s.span_id, s.service, s.kind, s.start_ns, s.end_ns, detail, v.hop_edge, attempt)


_RECEIVE_COUNTS = ("hoptrace.messaging.receive_count", "hoptrace.faas.receive_count")


def _attempt(span: GraphSpan) -> int:
    """ApproximateReceiveCount, read leniently (our attributes, span or resource)."""
    count = span.number("hoptrace.messaging.receive_count") or span.number("hoptrace.faas.receive_count") or 1
    return min(max(int(count), 1), 1_000_000)


def keys(span: GraphSpan, v: naming.View | None = None) -> list[HopKey]:
    """Every key of one span, both sides (a span may be a consumer and a producer at once).

    Most spans have none (a root invocation, a database read): those cost a few reads, and the
    span's ``HopEnd`` is built only when some key needs it.
    """
    v = v or naming.view(span)
    kind = span.kind
    receiving = kind in (SERVER, CONSUMER)
    side = PRODUCER_SIDE if kind in (CLIENT, PRODUCER) else CONSUMER_SIDE if receiving else None
    pointers: tuple[str, ...] = ()
    node = v.messaging
    if side is not None:
        pointers = span.texts("hoptrace.pointers")
        # Semconv message ids (other SDKs): only on a send or on a consumer, never on a receive call.
        if node is not None and node.kind in _SEMCONV_IDS and (v.send or receiving):
            message_id = span.text("messaging.message.id", "messaging.message_id")
            if message_id:
                pointers = (*pointers, _SEMCONV_IDS[node.kind] + message_id)
    parent = span.parent_span_id if receiving else None
    links = span.links
    if not (v.parent_key or parent or links or pointers):
        return []
    end = hop_end(span, v)
    found: list[HopKey] = []
    add = found.append

    # Parent/child and links. Database calls never have a server span as their child.
    if v.parent_key:  # sending_kind and not a database call (``naming.View``)
        add(HopKey(_span_key(span.trace_id, span.span_id), PRODUCER_SIDE, "parent", end))
    if parent:
        add(HopKey(_span_key(span.trace_id, parent), CONSUMER_SIDE, "parent", end))
    for link in links:
        if link.type != "invocation":
            add(HopKey(_span_key(link.trace_id, link.span_id), CONSUMER_SIDE, "link", end))
    if side is None or not pointers:
        return found
    has_sns_id = any(p.startswith("sns:msg:") for p in pointers)
    ddb_end: HopEnd | None = None
    seen: set[str] = set()
    for p in pointers:
        if p in seen:
            continue
        seen.add(p)
        via = _POINTER_VIA.get(p[:8]) or _POINTER_VIA.get(p[:4])
        if via is not None:
            add(HopKey(p, side, via, end))
        elif p.startswith("md5:"):
            # Only SNS publish -> SQS raw delivery needs md5 (SQS sends match by message id).
            wanted = "topic" if side == PRODUCER_SIDE else "queue" if not has_sns_id else None
            if node is not None and node.kind == wanted:
                add(HopKey(p, side, "md5", end))
        elif p.startswith(("ddb:item:", "ddb:key:")):
            if ddb_end is None:
                # The producer's write operation or the consumer's stream event, checked when pairing.
                if side == PRODUCER_SIDE:
                    detail = span.text("db.operation.name", "db.operation") or ""
                else:
                    detail = span.text("hoptrace.dynamodb.event_name") or ""
                ddb_end = end._replace(detail=detail)
            add(HopKey(p, side, "dynamodb_item" if p.startswith("ddb:item:") else "dynamodb_key", ddb_end))
    return found


def _consistent(producer: HopEnd, consumer: HopEnd, via: str) -> bool:
    """Windowed keys: time order within skew and window, and write operation vs stream event."""
    if via not in WINDOWED:
        return True
    gap = consumer.start_ns - producer.end_ns
    if gap < -SKEW_NS or gap > WINDOW_NS:
        return False
    if via == "dynamodb_key":
        if consumer.detail == "REMOVE" and producer.detail in _PUT_OPS:
            return False
        if consumer.detail in ("INSERT", "MODIFY") and producer.detail in _REMOVE_OPS:
            return False
    return True


def pair(producer: HopEnd, consumer: HopEnd, via: str) -> Hop | None:
    """The hop joining two key rows of the same key, or None when they cannot be one hop."""
    if producer.span_id == consumer.span_id and producer.trace_id == consumer.trace_id:
        return None
    if not _consistent(producer, consumer, via):
        return None
    is_async = via in ASYNC_VIA or producer.kind == PRODUCER or consumer.kind == CONSUMER
    if is_async:
        gap = consumer.start_ns - producer.end_ns
        skew = gap < 0
        dwell: float | None = max(0, gap) / 1e6
    else:
        skew = consumer.start_ns < producer.start_ns
        dwell = None
    return Hop(
        producer.trace_id, producer.span_id, consumer.trace_id, consumer.span_id, via, dwell, skew,
        consumer.start_ns, consumer.edge, consumer.attempt, relay(producer.edge, consumer.edge),
    )  # fmt: skip


def relay(producer_edge: str, consumer_edge: str) -> str:
    """The topic → queue edge ("topic|queue") of a message published to a topic and read from a
    queue (SNS → SQS); empty otherwise.

    ``producer_edge`` is a producer's ``HopEnd.edge`` (its topic's node id), ``consumer_edge`` a
    consumer's deliver edge ("queue:…|function:…").
    """
    if producer_edge.startswith("topic:") and consumer_edge.startswith("queue:"):
        return producer_edge + "|" + consumer_edge.partition("|")[0]
    return ""


def choose(consumer: HopEnd, via: str, candidates: Iterable[HopEnd]) -> HopEnd | None:
    """For a windowed consumer key: the latest consistent producer (ended last before it started)."""
    best: HopEnd | None = None
    for candidate in candidates:
        if _consistent(candidate, consumer, via) and (best is None or candidate.end_ns > best.end_ns):
            best = candidate
    return best


def delivery(hop: Hop) -> tuple[bytes, bytes, bytes, int, str]:
    """What one hop stands for: one producer span reaching one consumer trace through one queue
    (or topic, stream) edge, at one attempt.

    A single-record invocation and its record's span both match the producer; they are one
    delivery, shown once (by the span that arrived first). A retry is another attempt: kept. A
    topic's message read from two subscribed queues, by consumers that continue the publisher's
    trace, is two deliveries: their deliver edges differ.
    """
    return hop.from_trace, hop.from_span, hop.to_trace, hop.attempt, hop.edge


def strongest(hops: Iterable[Hop]) -> list[Hop]:
    """One hop per delivery: the strongest key wins (a parent beats an md5), then the earlier consumer."""
    best: dict[tuple[bytes, bytes, bytes, int, str], Hop] = {}
    for hop in hops:
        kept = best.get(delivery(hop))
        if kept is None or (STRENGTH[hop.via], -hop.start_ns) > (STRENGTH[kept.via], -kept.start_ns):
            best[delivery(hop)] = hop
    return list(best.values())
