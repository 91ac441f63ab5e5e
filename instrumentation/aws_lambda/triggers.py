"""What invoked the function: parse a Lambda event into span attributes, parent and records.

Shapes follow AWS's documented Lambda event formats: API Gateway REST (payload 1.0) and HTTP
APIs (2.0), ALB, function URLs, SQS, SNS, DynamoDB streams, Kinesis, EventBridge (and
schedules), S3 and direct invokes. Anything unknown is a direct invoke with trigger "other";
nothing here raises on odd input.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

from opentelemetry.trace import SpanContext, SpanKind

from ..carriers import RecordContext, w3c, xray

# eventSource of a record -> carrier module with its extract().
RECORD_SOURCES = {
    "aws:sqs": "sqs",
    "aws:sns": "sns",
    "aws:dynamodb": "dynamodb",
    "aws:kinesis": "kinesis",
}


@dataclass
class Trigger:
    """The parsed trigger of one invocation."""

    faas_trigger: str = "other"  # semconv faas.trigger: http, pubsub, datasource, timer, other
    source: str = "direct"  # hoptrace.trigger.source, e.g. "aws:sqs", "aws:apigateway"
    kind: SpanKind = SpanKind.SERVER
    span_name: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    parent: SpanContext | None = None
    records: list[tuple[Any, RecordContext]] = field(default_factory=list)
    is_http: bool = False
    problem: str | None = None  # what could not be parsed, recorded on the span

    @property
    def is_batch(self) -> bool:
        return len(self.records) > 1


def _extractor(source: str) -> Callable[[Mapping[str, Any]], RecordContext] | None:
    module = RECORD_SOURCES.get(source)
    if module is None:
        return None
    fn: Callable[[Mapping[str, Any]], RecordContext] = importlib.import_module(
        f"{__package__.rsplit('.', 1)[0]}.carriers.{module}"
    ).extract
    return fn


def extract_record(record: Any) -> RecordContext:
    """The context of one record, whatever its source; never raises."""
    if not isinstance(record, Mapping):
        return RecordContext(failed_to_extract=f"record is a {type(record).__name__}, not an object")
    source = record.get("eventSource") or record.get("EventSource")
    fn = _extractor(str(source))
    if fn is None:
        return RecordContext(attributes={"hoptrace.trigger.source": str(source)})
    try:
        return fn(record)
    except Exception as exc:  # carriers promise not to raise; belt and braces
        return RecordContext(failed_to_extract=f"{type(exc).__name__}: {exc}")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _lower_headers(headers: Any) -> dict[str, str]:
    if not isinstance(headers, Mapping):
        return {}
    return {str(k).lower(): str(v) for k, v in headers.items() if v is not None}


def _http_parent(headers: Mapping[str, str]) -> SpanContext | None:
    parent = w3c.extract(headers)
    if parent is None:
        parent = xray.parse_header(headers.get("x-amzn-trace-id"))
    return parent


def _http(event: Mapping[str, Any], rc: Mapping[str, Any]) -> Trigger:
    headers = _lower_headers(event.get("headers"))
    attrs: dict[str, Any] = {}
    if event.get("version") == "2.0" and isinstance(rc.get("http"), Mapping):
        http = rc["http"]
        method = str(http.get("method", "")).upper()
        path = http.get("path") or event.get("rawPath")
        route_key = str(rc.get("routeKey") or "")
        domain = str(rc.get("domainName") or headers.get("host") or "")
        if route_key == "$default" and ".lambda-url." in domain:
            source, route = "aws:lambda-url", None
        else:
            source = "aws:apigatewayv2"
            route = route_key.split(" ", 1)[1] if " " in route_key else (route_key or None)
        if http.get("sourceIp"):
            attrs["client.address"] = http["sourceIp"]
        if http.get("userAgent"):
            attrs["user_agent.original"] = http["userAgent"]
        if event.get("rawQueryString"):
            attrs["url.query"] = event["rawQueryString"]
    elif isinstance(rc.get("elb"), Mapping):
        source, route = "aws:elb", None
        method = str(event.get("httpMethod", "")).upper()
        path = event.get("path")
        domain = headers.get("host", "")
        attrs["aws.elb.target_group_arn"] = rc["elb"].get("targetGroupArn", "")
    else:
        source = "aws:apigateway"
        method = str(event.get("httpMethod", "")).upper()
        path = event.get("path")
        route = event.get("resource") or rc.get("resourcePath")
        domain = str(rc.get("domainName") or headers.get("host") or "")
        identity = _mapping(rc.get("identity"))
        if identity.get("sourceIp"):
            attrs["client.address"] = identity["sourceIp"]
        if identity.get("userAgent"):
            attrs["user_agent.original"] = identity["userAgent"]
    attrs["http.request.method"] = method or "_OTHER"
    if path:
        attrs["url.path"] = str(path)
    if route:
        attrs["http.route"] = str(route)
    if domain:
        attrs["server.address"] = domain
    for key, attr in (("apiId", "hoptrace.api.id"), ("stage", "hoptrace.api.stage")):
        if rc.get(key):
            attrs[attr] = str(rc[key])
    attrs["url.scheme"] = headers.get("x-forwarded-proto", "https")
    name = f"{method} {route}" if route else (method or "HTTP")
    return Trigger(
        faas_trigger="http",
        source=source,
        kind=SpanKind.SERVER,
        span_name=name,
        attributes=attrs,
        parent=_http_parent(headers),
        is_http=True,
    )


def _records(records: list[Any]) -> Trigger:
    first = records[0] if isinstance(records[0], Mapping) else {}
    source = str(first.get("eventSource") or first.get("EventSource") or "unknown")
    faas_trigger = {
        "aws:sqs": "pubsub",
        "aws:sns": "pubsub",
        "aws:kinesis": "pubsub",
        "aws:dynamodb": "datasource",
        "aws:s3": "datasource",
    }.get(source, "other")
    pairs = [(r, extract_record(r)) for r in records]
    attrs: dict[str, Any] = {"messaging.batch.message_count": len(records)}
    first_attrs = pairs[0][1].attributes
    if len(pairs) == 1:
        # One record: the invocation is its consumer span, so it carries the record's
        # message id and correlation pointers (the only join for streams, which carry no context).
        attrs.update(first_attrs)
    else:
        for key in ("messaging.system", "messaging.destination.name", "aws.dynamodb.table_names"):
            if key in first_attrs:
                attrs[key] = first_attrs[key]
    if source == "aws:s3":
        bucket = _mapping(_mapping(first.get("s3")).get("bucket")).get("name")
        if bucket:
            attrs["aws.s3.bucket"] = bucket
        if first.get("eventName"):
            attrs["hoptrace.s3.event_name"] = str(first["eventName"])
    if source in RECORD_SOURCES:
        attrs["messaging.operation.type"] = "process"
    age = oldest_record_age_ms(records, time.time() * 1000)
    if age is not None:
        attrs["hoptrace.faas.record_age_ms"] = age
    receive_counts = [r[1].attributes.get("hoptrace.messaging.receive_count", 1) for r in pairs]
    if receive_counts and max(receive_counts) > 1:
        attrs["hoptrace.faas.receive_count"] = max(receive_counts)
    parent = pairs[0][1].parent if len(pairs) == 1 else None
    problems = [rc.failed_to_extract for _, rc in pairs if rc.failed_to_extract]
    return Trigger(
        faas_trigger=faas_trigger,
        source=source,
        kind=SpanKind.CONSUMER,
        attributes=attrs,
        parent=parent,
        records=pairs,
        problem=f"{len(problems)} record(s): {problems[0]}" if problems else None,
    )


def _arrival_ms(record: Any) -> float | None:
    """When a queue or stream record arrived, in unix ms, from its documented event field: SQS
    ``attributes.SentTimestamp`` (ms, a string), Kinesis ``kinesis.approximateArrivalTimestamp``
    and DynamoDB ``dynamodb.ApproximateCreationDateTime`` (seconds)."""
    if not isinstance(record, Mapping):
        return None
    source = record.get("eventSource")
    try:
        if source == "aws:sqs":
            return float(_mapping(record.get("attributes"))["SentTimestamp"])
        if source == "aws:kinesis":
            return float(_mapping(record.get("kinesis"))["approximateArrivalTimestamp"]) * 1000
        if source == "aws:dynamodb":
            return float(_mapping(record.get("dynamodb"))["ApproximateCreationDateTime"]) * 1000
    except (KeyError, TypeError, ValueError):
        return None
    return None


def oldest_record_age_ms(records: list[Any], now_ms: float) -> int | None:
    """The age of the batch's oldest record at invocation (CloudWatch's iterator age for streams,
    the oldest message's age for queues), in ms; None when no record says when it arrived."""
    arrivals = [a for a in map(_arrival_ms, records) if a is not None]
    if not arrivals:
        return None
    return max(0, int(now_ms - min(arrivals)))


def _eventbridge(event: Mapping[str, Any]) -> Trigger:
    scheduled = event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event"
    attrs: dict[str, Any] = {}
    if scheduled:
        if event.get("resources"):
            attrs["hoptrace.schedule.rule"] = str(event["resources"][0]).rsplit("/", 1)[-1]
        if event.get("time"):
            attrs["faas.time"] = str(event["time"])
        return Trigger(faas_trigger="timer", source="aws:scheduler", kind=SpanKind.SERVER, attributes=attrs)
    rc = _eventbridge_record(event)
    return Trigger(
        faas_trigger="pubsub",
        source="aws:events",
        kind=SpanKind.CONSUMER,
        attributes={**rc.attributes, "messaging.system": "aws_eventbridge"},
        parent=rc.parent,
        records=[(event, rc)],
        problem=rc.failed_to_extract,
    )


def _eventbridge_record(event: Mapping[str, Any]) -> RecordContext:
    try:
        module = importlib.import_module(f"{__package__.rsplit('.', 1)[0]}.carriers.eventbridge")
        rc: RecordContext = module.extract(event)
        return rc
    except Exception as exc:
        return RecordContext(failed_to_extract=f"{type(exc).__name__}: {exc}")


def parse(event: Any, context: Any = None) -> Trigger:
    """Classify the event and collect the parent context and per-record contexts; never raises."""
    try:
        return _parse(event, context)
    except Exception as exc:
        return Trigger(problem=f"could not parse the event: {type(exc).__name__}: {exc}")


def _parse(event: Any, context: Any) -> Trigger:
    if isinstance(event, Mapping):
        rc = event.get("requestContext")
        if isinstance(rc, Mapping) and ("httpMethod" in event or "http" in rc or "elb" in rc):
            return _http(event, rc)
        records = event.get("Records")
        if isinstance(records, list) and records:
            return _records(records)
        if "detail-type" in event and "source" in event:
            return _eventbridge(event)
    trigger = Trigger(faas_trigger="other", source="direct", kind=SpanKind.SERVER)
    if getattr(context, "client_context", None) is not None:
        try:
            module = importlib.import_module(f"{__package__.rsplit('.', 1)[0]}.carriers.lambda_invoke")
            trigger.parent = module.extract_client_context(context)
        except Exception as exc:
            trigger.problem = f"could not read the client context: {type(exc).__name__}"
    return trigger
