"""EventBridge: PutEvents as a PRODUCER span that puts an X-Ray ``TraceHeader`` on each entry.

``TraceHeader`` is EventBridge's own field for trace context: it leaves the user's ``Detail``
alone and is passed on to targets that understand X-Ray. The event delivered to a Lambda has no
such field, so the hop is also joined by the pointer ``evb:<event id>``, which the producer
reads from the response and the consumer from the event's ``id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.trace import SpanKind

from . import POINTERS, AwsCall, RecordContext, add_pointers, extract_safely, xray

SYSTEM = "aws_eventbridge"
DEFAULT_BUS = "default"
# An entry may be at most 256 KiB (EventBridge counts the UTF-8 bytes of its fields).
MAX_ENTRY_BYTES = 256 * 1024


def bus_name(name_or_arn: Any) -> str:
    """An event bus's name from its name or ARN; EventBridge's default bus when not given."""
    text = str(name_or_arn or "")
    if not text:
        return DEFAULT_BUS
    _, sep, rest = text.partition(":event-bus/")
    return rest if sep else text


def _entry_too_big(entry: Mapping[str, Any], extra: int) -> bool:
    """Whether adding ``extra`` bytes could push the entry over the limit; exact only when close."""
    fields = [entry.get(k) for k in ("Source", "DetailType", "Detail", "EventBusName", "TraceHeader")]
    fields.extend(entry.get("Resources") or ())
    texts = [f for f in fields if isinstance(f, str)]
    # UTF-8 takes at most 4 bytes a character: skip the encoding unless it could matter.
    if 4 * sum(map(len, texts)) + extra + 64 <= MAX_ENTRY_BYTES:
        return False
    return sum(len(t.encode("utf-8", "surrogatepass")) for t in texts) + extra + 64 > MAX_ENTRY_BYTES


class EventBridgeCarrier:
    """Producer side of EventBridge."""

    def span_kind(self, operation: str, params: Mapping[str, Any]) -> SpanKind:
        return SpanKind.PRODUCER if operation == "PutEvents" else SpanKind.CLIENT

    def on_request(self, call: AwsCall) -> None:
        if call.operation != "PutEvents":
            return
        span = call.span
        entries = call.params.get("Entries")
        if not isinstance(entries, list):
            return
        span.set_attribute("messaging.system", SYSTEM)
        span.set_attribute("messaging.operation.type", "send")
        buses = [bus_name(e.get("EventBusName")) for e in entries if isinstance(e, Mapping)]
        if buses:
            span.set_attribute("messaging.destination.name", buses[0])
            if len(set(buses)) > 1:
                span.set_attribute("hoptrace.eventbridge.bus_names", sorted(set(buses)))
        if len(entries) > 1:
            span.set_attribute("messaging.batch.message_count", len(entries))
        ctx = span.get_span_context()
        if not ctx.is_valid:
            return
        header = xray.format_header(ctx)
        injected: list[Any] = []
        skipped = 0
        for entry in entries:
            if not isinstance(entry, Mapping) or entry.get("TraceHeader"):
                injected.append(entry)  # the user's own header wins
            elif _entry_too_big(entry, len(header)):
                skipped += 1
                injected.append(entry)
            else:
                injected.append({**entry, "TraceHeader": header})
        # A new list of new dicts: the user's entries stay as they were.
        call.params["Entries"] = injected
        if skipped:
            span.set_attribute("hoptrace.propagation.skipped", f"{skipped} entries too close to 256 KiB")

    def on_response(self, call: AwsCall, parsed: Mapping[str, Any]) -> None:
        if call.operation != "PutEvents":
            return
        results = parsed.get("Entries") or []
        ids = [str(r["EventId"]) for r in results if isinstance(r, Mapping) and r.get("EventId")]
        if len(ids) == 1 and len(results) == 1:
            call.span.set_attribute("messaging.message.id", ids[0])
        failed = parsed.get("FailedEntryCount")
        if failed:
            call.span.set_attribute("hoptrace.eventbridge.failed_entry_count", int(failed))
        add_pointers(call.span, [f"evb:{i}" for i in ids])


CARRIER = EventBridgeCarrier()


def extract(event: Mapping[str, Any]) -> RecordContext:
    """Pointer and attributes of an EventBridge event delivered to a Lambda; never raises.

    The delivered event carries no ``TraceHeader``, so ``parent`` is None here; the invocation's
    X-Ray environment (``_X_AMZN_TRACE_ID``) is the place where EventBridge passes context on.
    """
    return extract_safely("eventbridge process", "EventBridge event", _extract_into, event)


def _extract_into(rc: RecordContext, event: Any) -> None:
    if not isinstance(event, Mapping):
        rc.failed_to_extract = f"EventBridge event is a {type(event).__name__}, not an object"
        return
    problems: list[str] = []
    attrs = rc.attributes
    attrs["messaging.system"] = SYSTEM
    attrs["messaging.operation.type"] = "process"
    source = event.get("source")
    if source:
        attrs["hoptrace.eventbridge.source"] = str(source)
        rc.name = f"{source} process"
    else:
        problems.append("no 'source'")
    if event.get("detail-type"):
        attrs["hoptrace.eventbridge.detail_type"] = str(event["detail-type"])
    event_id = event.get("id")
    if event_id:
        rc.record_id = str(event_id)
        attrs["messaging.message.id"] = str(event_id)
        attrs[POINTERS] = [f"evb:{event_id}"]
    else:
        problems.append("no event 'id'")
    if problems:
        rc.failed_to_extract = "; ".join(problems)
