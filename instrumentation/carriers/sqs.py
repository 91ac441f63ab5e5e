"""SQS carrier: context per message in ``AWSTraceHeader`` and W3C attributes; pointers from ids and md5s.

Producer: every message (each batch entry separately) gets the ``AWSTraceHeader`` system
attribute, which does not count against the 10-attribute quota or the size limit, so context
survives even a full message; W3C ``traceparent``/``tracestate`` are added as String message
attributes only where they fit (rules in ``sns.with_w3c``). The user's dicts and lists are
copied, never changed.

Consumer: ``extract`` reads one record of a Lambda SQS event, ``extract_message`` one message
as boto3's ReceiveMessage returns it (long-running pollers); both read every carrier, in this
order: W3C message attributes, the W3C attributes inside an SNS envelope (non-raw SNS->SQS
delivery), ``AWSTraceHeader``.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, NamedTuple

from opentelemetry.trace import Span, SpanKind

from ..spans import CONTEXT_IS_TUPLE, EMPTY_TRACE_STATE, set_many
from ..spans import Span as OwnSpan
from . import POINTERS, AwsCall, RecordContext, add_pointers, inject_entries, xray
from .sns import (
    CARRIER_USED,
    FAILED_COUNT,
    MAX_MESSAGE_BYTES,
    SIZE,
    AttributeShape,
    OutgoingW3c,
    envelope_in_body,
    preview,
    read_envelope,
    read_w3c,
    record_skipped,
    text_bytes,
    with_w3c,
)

SYSTEM = "aws_sqs"
RECEIVE_COUNT = "hoptrace.messaging.receive_count"
SNS_TOPIC = "hoptrace.sns.topic"

_SENDS = frozenset({"SendMessage", "SendMessageBatch"})


class _MessageKeys(NamedTuple):
    """Where one SQS message keeps each field: Lambda events use camelCase, boto3 PascalCase."""

    message_id: str
    body: str
    md5: str
    system: str
    message_attributes: str
    attribute: AttributeShape


_LAMBDA = _MessageKeys(
    "messageId", "body", "md5OfBody", "attributes", "messageAttributes",
    AttributeShape("dataType", "stringValue", "binaryValue"),
)  # fmt: skip
_BOTO3 = _MessageKeys(
    "MessageId", "Body", "MD5OfBody", "Attributes", "MessageAttributes",
    AttributeShape("DataType", "StringValue", "BinaryValue"),
)  # fmt: skip


def queue_name(url: Any) -> str | None:
    """``https://sqs.us-east-1.amazonaws.com/123456789012/orders`` -> ``orders``."""
    if not isinstance(url, str) or not url:
        return None
    name = _queue_names.get(url)
    if name is None:
        if len(_queue_names) >= 256:
            _queue_names.clear()
        name = _queue_names[url] = url.rstrip("/").rsplit("/", 1)[-1]
    return name or None


_NO_ATTRIBUTES: Mapping[str, Any] = {}
_sends: dict[str, dict[str, Any]] = {}  # queue URL -> a send's messaging attributes (read-only)


def _send_attributes(url: Any) -> dict[str, Any]:
    """The messaging attributes of a send to ``url``, worked out once per queue URL."""
    sent = {"messaging.system": SYSTEM, "messaging.operation.type": "send"}
    queue = queue_name(url)
    if queue:
        sent["messaging.destination.name"] = queue
    if isinstance(url, str):
        if len(_sends) >= 256:
            _sends.clear()
        _sends[url] = sent
    return sent


_queue_names: dict[str, str] = {}  # a function sends to a few queues, many times
# (region, queue URL) -> a SendMessage span's first attributes (read-only; see start_attributes)
_starts: dict[tuple[str, str], dict[str, Any]] = {}


# --- producer side -----------------------------------------------------------------------


class _Outgoing:
    """The context of one send call, formatted once and put into each of its messages."""

    __slots__ = ("trace_header", "w3c")

    def __init__(self, span: Span) -> None:
        ctx = span.get_span_context()
        if not ctx.is_valid:
            self.trace_header = None
            self.w3c = OutgoingW3c(None, {})
            return
        # Both headers from one formatting of the ids: this runs for every message sent.
        trace_id, span_id, flags = f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", ctx.trace_flags
        sampled = "1" if flags & 1 else "0"
        self.trace_header = f"Root=1-{trace_id[:8]}-{trace_id[8:]};Parent={span_id};Sampled={sampled}"
        values = {"traceparent": f"00-{trace_id}-{span_id}-{flags:02x}"}
        if ctx.trace_state:
            values["tracestate"] = ctx.trace_state.to_header()
        self.w3c = OutgoingW3c(None, values)

    def inject(self, message: dict[str, Any]) -> str | None:
        """Put context into one message (a dict of ours); the reason W3C was left out, if it was."""
        system = message.get("MessageSystemAttributes")
        if self.trace_header is not None and (
            system is None or (isinstance(system, Mapping) and "AWSTraceHeader" not in system)
        ):
            added = dict(system) if system else {}
            added["AWSTraceHeader"] = {"DataType": "String", "StringValue": self.trace_header}
            message["MessageSystemAttributes"] = added
        attributes, reason = with_w3c(message.get("MessageAttributes"), message.get("MessageBody"), self.w3c)
        if attributes is not None:
            message["MessageAttributes"] = attributes
        return reason


def json_members(span: Span, body: Any) -> tuple[bytes | None, str | None]:
    """The context ``_Outgoing.inject`` would add, as JSON members for a serialised SendMessage body.

    Only for a message with neither kind of attributes of its own (the common case): the
    members are then new, so they can be written without parsing the body, and the rules of
    ``inject`` reduce to the size check of ``with_w3c``. Written out rather than built from
    ``_Outgoing``: it runs on every message sent. Everything but the span id is the same for
    every send of one trace, so it is formatted once per trace (``_members_template``) and each
    send fills in its span id with one ``bytes %``.
    """
    template = _last_template
    if type(span) is OwnSpan and CONTEXT_IS_TUPLE:
        # Our own span: valid and sampled, its trace id and state its parent's. So the template
        # made for a sibling (same parent context object, the usual case) is this span's too.
        ctx, parent = span.context, span.parent
        span_id = ctx[1]
        if parent is None or template.parent is not parent:
            template = _members_template(ctx[0], ctx[3], ctx[4], parent)
    else:
        ctx = span.get_span_context()
        trace_id, span_id, flags, state = ctx.trace_id, ctx.span_id, ctx.trace_flags, ctx.trace_state
        if not ctx.is_valid:
            return None, None
        if template.trace_id != trace_id or template.flags != flags or template.state is not state:
            template = _members_template(trace_id, flags, state, None)
    # Most bodies are far below the limit: their length bounds their UTF-8 size without measuring it.
    if (type(body) is str and len(body) <= template.safe_chars) or text_bytes(body) <= template.w3c_room:
        return template.full % (span_id, span_id), None
    return template.system_only % span_id, SIZE  # with no attributes of the user's, only size can stop W3C


class _Template(NamedTuple):
    """The JSON members of every send in one trace, with ``%016x`` where the span id goes."""

    trace_id: int
    flags: int
    state: Any  # the TraceState, compared by identity
    parent: Any  # the parent SpanContext of the span it was made for, if one of ours (compared by identity)
    full: bytes  # AWSTraceHeader and W3C attributes; two span ids
    system_only: bytes  # AWSTraceHeader alone, for a message too big for W3C; one span id
    # Both end with the "}" that closes the body (``AwsCall.body_suffix``).
    w3c_room: int  # the largest body (UTF-8 bytes) that still leaves room for the W3C attributes
    safe_chars: int  # bodies of at most this many characters fit whatever they hold (4 bytes each at most)


def _members_template(trace_id: int, flags: int, state: Any, parent: Any) -> _Template:
    global _last_template
    trace_hex = f"{trace_id:032x}"
    sampled = "1" if flags & 1 else "0"
    # Literal text becomes part of a %-format: a "%" in it (tracestate may hold one) is doubled.
    system = _SYSTEM_MEMBER % (trace_hex[:8], trace_hex[8:], "%016x", sampled)
    tracestate = state.to_header() if state is not EMPTY_TRACE_STATE and state is not None and len(state) else ""
    full = system + _TRACEPARENT_MEMBER % (trace_hex, "%016x", int(flags))
    if tracestate:
        # tracestate may hold a quote or a backslash: let json escape it.
        full += _TRACESTATE_MEMBER % json.dumps(tracestate).replace("%", "%%")
    w3c_room = MAX_MESSAGE_BYTES - _TRACEPARENT_BYTES - (_TRACESTATE_BYTES + len(tracestate) if tracestate else 0)
    full, system = full + "}}", system + "}"
    template = _Template(
        trace_id, int(flags), state, parent, full.encode("ascii"), system.encode("ascii"), w3c_room, w3c_room // 4
    )
    _last_template = template  # one assignment: another thread sees the old template or this one
    return template


_last_template = _Template(0, -1, None, None, b"", b"", 0, 0)  # matches no real trace


# JSON members for ``json_members``: the shapes botocore would serialise, without the optional
# spaces (every byte is hashed for the signature and parsed by SQS).
_SYSTEM_MEMBER = (
    ',"MessageSystemAttributes":{"AWSTraceHeader":{"DataType":"String",'
    '"StringValue":"Root=1-%s-%s;Parent=%s;Sampled=%s"}}'
)
_TRACEPARENT_MEMBER = ',"MessageAttributes":{"traceparent":{"DataType":"String","StringValue":"00-%s-%s-%02x"}'
_TRACESTATE_MEMBER = ',"tracestate":{"DataType":"String","StringValue":%s}'
# What each W3C attribute counts against the 256 KiB limit: name, data type and value.
_TRACEPARENT_BYTES = len("traceparent") + len("String") + 55
_TRACESTATE_BYTES = len("tracestate") + len("String")


class SqsCarrier:
    """Producer side of SQS: sends carry context per message; responses give pointers."""

    fixed_span_kind = True  # span_kind reads the operation only: the hooks ask once per operation
    # Answers read without the request's parameters, from a few of the answer's values: the hooks
    # may read them when the span is exported (see ``botocore_hooks._after_call``).
    deferrable_answers = frozenset({"SendMessage"})

    def span_kind(self, operation: str, params: Mapping[str, Any]) -> SpanKind:
        if operation in _SENDS:
            return SpanKind.PRODUCER
        if operation == "ReceiveMessage":
            return SpanKind.CONSUMER
        return SpanKind.CLIENT

    def start_attributes(
        self, operation: str, params: Mapping[str, Any], common: dict[str, Any], region: str
    ) -> dict[str, Any] | None:
        """A SendMessage span's first attributes at once, ``common`` ones included (a fresh dict).

        The whole set is made once per region and queue URL and copied per send: one copy of
        a dict of the final size costs a fraction of adding the messaging attributes to the
        common ones (which grows the dict). None for other operations.
        """
        if operation != "SendMessage":
            return None
        url = params.get("QueueUrl")
        key = (region, url) if type(url) is str else None
        start = _starts.get(key) if key is not None else None
        if start is None:
            sent = _sends.get(url) if type(url) is str else None
            start = {**common, **(sent if sent is not None else _send_attributes(url))}
            if key is not None:
                if len(_starts) >= 256:
                    _starts.clear()
                _starts[key] = start
        return start.copy()

    def on_request(self, call: AwsCall) -> None:
        operation = call.operation
        params, span = call.params, call.span
        if (
            operation == "SendMessage"
            and call.may_splice
            and "MessageSystemAttributes" not in params
            and "MessageAttributes" not in params
        ):
            # The usual send, written out: context goes into the serialised body (see json_members).
            call.body_suffix, reason = json_members(span, params.get("MessageBody"))
            if not call.started_with:  # the hooks did not start the span with start_attributes'
                url = params.get("QueueUrl")
                sent = _sends.get(url) if type(url) is str else None
                set_many(span, sent if sent is not None else _send_attributes(url))
            if reason:
                record_skipped(span, [reason])
            return
        if operation not in _SENDS and operation != "ReceiveMessage":
            return
        described: dict[str, Any] = {"messaging.system": SYSTEM}
        queue = queue_name(params.get("QueueUrl"))
        if queue:
            described["messaging.destination.name"] = queue
        if operation == "ReceiveMessage":
            described["messaging.operation.type"] = "receive"
            span.set_attributes(described)
            return
        described["messaging.operation.type"] = "send"
        reasons: list[str] = []
        if operation == "SendMessage":
            # call.params is botocore's own dict for this call; only nested values are the user's.
            reason = _Outgoing(span).inject(params)
            if reason:
                reasons.append(reason)
        else:
            entries = params.get("Entries")
            if isinstance(entries, list):
                described["messaging.batch.message_count"] = len(entries)
                params["Entries"] = inject_entries(entries, _Outgoing(span).inject, reasons)
        set_many(span, described)
        if reasons:
            record_skipped(span, reasons)

    def response_attributes(self, call: AwsCall, parsed: Mapping[str, Any], into: dict[str, Any]) -> bool:
        """Add a usual SendMessage answer's attributes to ``into`` (the hook's own); False: see on_response."""
        if call.operation != "SendMessage":
            return False
        message_id, md5 = parsed.get("MessageId"), parsed.get("MD5OfMessageBody")
        if (
            type(message_id) is str
            and message_id
            and type(md5) is str
            and md5
            and POINTERS not in (getattr(call.span, "attributes", None) or _NO_ATTRIBUTES)
        ):
            into["messaging.message.id"] = message_id
            into[POINTERS] = ("sqs:msg:" + message_id, "md5:" + md5)
            return True
        return False

    def on_response(self, call: AwsCall, parsed: Mapping[str, Any]) -> None:
        span = call.span
        if call.operation == "SendMessage":
            message_id = parsed.get("MessageId")
            md5 = parsed.get("MD5OfMessageBody")
            # The usual answer, in one update: this runs for every message sent.
            if (
                isinstance(message_id, str)
                and message_id
                and isinstance(md5, str)
                and md5
                and POINTERS not in (getattr(span, "attributes", None) or _NO_ATTRIBUTES)
            ):
                pointers = ("sqs:msg:" + message_id, "md5:" + md5)
                set_many(span, {"messaging.message.id": message_id, POINTERS: pointers})
                return
            if type(message_id) is str and message_id:
                span.set_attribute("messaging.message.id", message_id)
            add_pointers(span, _pointers(message_id, md5))
        elif call.operation == "SendMessageBatch":
            sent: list[str] = []
            for ok in _list(parsed.get("Successful")):
                if isinstance(ok, Mapping):
                    sent.extend(_pointers(ok.get("MessageId"), ok.get("MD5OfMessageBody")))
            span.set_attribute(FAILED_COUNT, len(_list(parsed.get("Failed"))))
            add_pointers(span, sent)
        elif call.operation == "ReceiveMessage":
            messages = _list(parsed.get("Messages"))
            span.set_attribute("messaging.batch.message_count", len(messages))
            queue = queue_name(call.params.get("QueueUrl"))
            if queue:
                _remember_queue(messages, queue)


# A ReceiveMessage response does not say which queue it came from, but the call did: remember
# it per message id (ids only, a bounded number) so a poller's process spans can name the queue.
_RECEIVED_MAX = 1024
_received: OrderedDict[str, str] = OrderedDict()
_received_lock = threading.Lock()


def _remember_queue(messages: list[Any], queue: str) -> None:
    with _received_lock:
        for message in messages:
            message_id = message.get("MessageId") if isinstance(message, Mapping) else None
            if isinstance(message_id, str):
                _received[message_id] = queue
                _received.move_to_end(message_id)
        while len(_received) > _RECEIVED_MAX:
            _received.popitem(last=False)


def received_from(message_id: str) -> str | None:
    """The queue a traced ReceiveMessage call recently returned this message from, if any."""
    with _received_lock:
        return _received.get(message_id)


def _pointers(message_id: Any, md5: Any) -> list[str]:
    pointers = []
    if type(message_id) is str and message_id:
        pointers.append("sqs:msg:" + message_id)
    if type(md5) is str and md5:
        pointers.append("md5:" + md5)
    return pointers


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# --- consumer side -----------------------------------------------------------------------


def extract(record: Mapping[str, Any]) -> RecordContext:
    """Context and pointers of one record of a Lambda SQS event; never raises."""
    if not isinstance(record, Mapping):
        return RecordContext(failed_to_extract=f"SQS record is a {type(record).__name__}, not an object")
    arn = record.get("eventSourceARN")
    queue = arn.rsplit(":", 1)[-1] if isinstance(arn, str) and arn else None
    return _extract(record, _LAMBDA, queue, [] if queue else ["no eventSourceARN"])


def extract_message(message: Mapping[str, Any], queue: str | None = None) -> RecordContext:
    """Context and pointers of one message from boto3's ReceiveMessage (pollers outside Lambda).

    Ask ReceiveMessage for ``MessageAttributeNames=["All"]`` (or at least ``traceparent`` and
    ``tracestate``) and ``MessageSystemAttributeNames=["AWSTraceHeader"]``, or there is no
    context to find. ``queue`` names the queue, which the message itself does not say; without
    it, the queue a traced ReceiveMessage call returned the message from is used.
    """
    if not isinstance(message, Mapping):
        return RecordContext(failed_to_extract=f"SQS message is a {type(message).__name__}, not an object")
    if queue is None and isinstance(message.get("MessageId"), str):
        queue = received_from(message["MessageId"])
    return _extract(message, _BOTO3, queue, [])


def _extract(message: Mapping[str, Any], keys: _MessageKeys, queue: str | None, problems: list[str]) -> RecordContext:
    attributes: dict[str, Any] = {"messaging.system": SYSTEM, "messaging.operation.type": "process"}
    if queue:
        attributes["messaging.destination.name"] = queue
    pointers: list[str] = []

    message_id = message.get(keys.message_id)
    if isinstance(message_id, str) and message_id:
        attributes["messaging.message.id"] = message_id
        pointers.append(f"sqs:msg:{message_id}")
    else:
        message_id = None
        problems.append(f"no {keys.message_id}")
    md5 = message.get(keys.md5)
    if isinstance(md5, str) and md5:
        pointers.append(f"md5:{md5}")
    else:
        problems.append(f"no {keys.md5}")

    system = message.get(keys.system)
    if not isinstance(system, Mapping):
        if system is not None:
            problems.append(f"{keys.system} is a {type(system).__name__}, not an object")
        system = {}
    receive_count = system.get("ApproximateReceiveCount")
    if receive_count is not None:
        try:
            attributes[RECEIVE_COUNT] = int(receive_count)
        except (TypeError, ValueError):
            problems.append(f"ApproximateReceiveCount is not a number: {preview(receive_count)}")

    # Carriers, most precise first: W3C attributes, then the SNS envelope, then X-Ray.
    parent, problem = read_w3c(message.get(keys.message_attributes), keys.attribute)
    carrier = "w3c"
    if problem:
        problems.append(problem)
    body = message.get(keys.body)
    if isinstance(body, str):
        notification = envelope_in_body(body)
        if notification is not None:
            envelope = read_envelope(notification)
            pointers.extend(envelope.pointers)
            if envelope.topic:
                attributes[SNS_TOPIC] = envelope.topic
            if parent is None and envelope.parent is not None:
                parent, carrier = envelope.parent, "sns_envelope"
            if envelope.problem:
                problems.append(f"SNS envelope: {envelope.problem}")
    else:
        problems.append(f"{keys.body} is not a string" if body is not None else f"no {keys.body}")
    if parent is None:
        header = system.get("AWSTraceHeader")
        if header is not None:
            parent, carrier = xray.parse_header(header), "xray"
            if parent is None:
                problems.append(f"AWSTraceHeader is malformed: {preview(header)}")

    if parent is not None:
        attributes[CARRIER_USED] = carrier
    if pointers:
        attributes[POINTERS] = pointers
    return RecordContext(
        parent=parent,
        attributes=attributes,
        name=f"{queue} process" if queue else "process",
        record_id=message_id,
        failed_to_extract="; ".join(problems) or None,
    )


CARRIER = SqsCarrier()
