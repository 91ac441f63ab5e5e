"""Map nodes and edges of one span, named from semantic conventions (DESIGN §3, §5).

Every span is placed on the map on its own, without waiting for the other side of a hop:

- a CLIENT or PRODUCER span is an edge from its service to what it calls (queue, topic, table,
  stream, event bus, another function, an AWS service, an external HTTP host, a database);
- an invocation (SERVER or CONSUMER span of a function) is an edge from what triggered it (API
  route, queue, topic, table stream, schedule, or a virtual client) to the function.

Names come from the standard attributes, so spans of OpenTelemetry's own botocore and Lambda
instrumentation map the same as ours; a node is never a bare "unknown".
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit

from .spans import CLIENT, CONSUMER, PRODUCER, SERVER, GraphSpan

SYNC, PUBLISH, DELIVER = "sync", "publish", "deliver"
_MESSAGING = frozenset({"queue", "topic", "stream", "bus"})

# messaging.system spellings: current semconv (aws_sqs) and older instrumentations (aws.sqs).
_SYSTEMS = {
    "aws_sqs": "queue", "aws.sqs": "queue", "sqs": "queue",
    "aws_sns": "topic", "aws.sns": "topic", "sns": "topic",
    "aws_kinesis": "stream", "aws.kinesis": "stream", "kinesis": "stream",
    "aws_eventbridge": "bus", "aws.eventbridge": "bus", "eventbridge": "bus",
}  # fmt: skip
_RPC_SERVICES = {"SQS": "queue", "SNS": "topic", "Kinesis": "stream", "EventBridge": "bus"}

THROTTLE_CODES = frozenset(
    {
        "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
        "TooManyRequestsException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
        "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled", "SlowDown",
    }
)  # fmt: skip


class Node(NamedTuple):
    """A map node: ``id`` is ``kind:name`` and stable across spans and windows."""

    kind: str  # function, service, queue, topic, table, stream, bus, api, http, aws, database, schedule, client
    name: str

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}"

    @classmethod
    def parse(cls, node_id: str) -> Node:
        kind, _, name = node_id.partition(":")
        return cls(kind, name)


class Edge(NamedTuple):
    """A map edge between two nodes, of kind sync, publish or deliver."""

    source: Node
    target: Node
    kind: str


def service_node(span: GraphSpan) -> Node:
    """The function or service that wrote the span."""
    fn = span.resource.get("faas.name")
    if fn:
        return Node("function", str(fn))
    platform = span.resource.get("cloud.platform")
    name = span.service or "unknown_service"
    return Node("function" if platform == "aws_lambda" else "service", name)


def _last_segment(text: str) -> str:
    """Name from an ARN (``…:orders``, ``…:table/orders``) or a URL (``…/123/orders``)."""
    tail = text.rstrip("/").rsplit("/", 1)[-1]
    return tail.rsplit(":", 1)[-1] if text.startswith("arn:") and "/" not in text else tail


def messaging_node(span: GraphSpan) -> Node | None:
    """The queue, topic, stream or event bus a messaging span sends to or reads from."""
    system = (span.text("messaging.system") or "").lower()
    kind = _SYSTEMS.get(system) or _RPC_SERVICES.get(span.text("rpc.service") or "")
    if kind is None:
        return None
    name = span.text("messaging.destination.name", "messaging.destination")
    if name is not None and name.startswith(("arn:", "https://", "http://")):
        name = _last_segment(name)  # OpenTelemetry's botocore SNS extension writes the topic ARN here
    if name is None:
        for key in ("aws.sqs.queue.url", "aws.queue_url", "messaging.url", "aws.sns.topic.arn"):
            found = span.text(key)
            if found:
                name = _last_segment(found)
                break
    if name is None and kind == "bus":
        name = "default"
    return Node(kind, name) if name else None


def table_nodes(span: GraphSpan) -> list[Node]:
    if (span.text("db.system", "db.system.name") or "").lower() != "dynamodb" and span.text("rpc.service") != (
        "DynamoDB"
    ):
        return []
    tables = span.texts("aws.dynamodb.table_names")
    return [Node("table", t) for t in tables] or [Node("aws", "DynamoDB")]


def http_host(span: GraphSpan) -> str | None:
    host = span.text("server.address", "net.peer.name", "http.host")
    if host is None:
        url = span.text("url.full", "http.url")
        if url:
            host = urlsplit(url).hostname
    return host


def is_ours(span: GraphSpan) -> bool:
    """Written by hoptrace's instrumentation (whose batches have one span per record)."""
    return span.resource.get("telemetry.distro.name") == "hoptrace"


def is_invocation(span: GraphSpan) -> bool:
    """One invocation of a function, or one request or message handled by a service."""
    if span.kind not in (SERVER, CONSUMER):
        return False
    if span.attributes.get("faas.trigger") is not None or span.kind == SERVER:
        return True
    if is_ours(span):
        # Ours without a trigger: a record's span under its invocation (linked to it, or its
        # child), unless it is a poller's outside Lambda with nothing above it.
        return (
            "faas.name" not in span.resource
            and span.parent_span_id is None
            and not any(link.type == "invocation" for link in span.links)
        )
    # OpenTelemetry's Lambda instrumentation puts "process <queue>" under its SERVER span.
    return "faas.name" not in span.resource or span.parent_span_id is None


def message_count(span: GraphSpan) -> int:
    count = span.number("messaging.batch.message_count") or 1
    return min(max(int(count), 1), 1_000_000)


_SEND_METHODS = frozenset(
    {"SendMessage", "SendMessageBatch", "Publish", "PublishBatch", "PutEvents", "PutRecord", "PutRecords"}
)


def is_send(span: GraphSpan) -> bool:
    """A span that hands a message over (PRODUCER, a send operation, or an AWS send API call)."""
    if span.kind == PRODUCER:
        return True
    if span.kind != CLIENT:
        return False
    operation = span.text("messaging.operation.type", "messaging.operation")
    return operation in ("send", "publish", "create") or span.text("rpc.method") in _SEND_METHODS


def callee(span: GraphSpan) -> Node | None:
    """What a CLIENT or PRODUCER span calls, named from semconv; None for other spans."""
    return _callee(span, messaging_node(span))


def _callee(span: GraphSpan, msg: Node | None) -> Node | None:
    if span.kind not in (CLIENT, PRODUCER):
        return None
    if msg is not None:
        return msg
    tables = table_nodes(span)
    if tables:
        return tables[0]
    invoked = span.text("faas.invoked_name")
    if invoked:
        return Node("function", _last_segment(invoked))
    peer = span.text("peer.service")
    if peer:
        return Node("service", peer)
    db = span.text("db.system", "db.system.name")
    if db:
        where = span.text("db.namespace", "db.name", "server.address") or db
        return Node("database", f"{db}/{where}" if where != db else db)
    if span.text("rpc.system") == "aws-api":
        service = span.text("rpc.service") or "AWS"
        bucket = span.text("aws.s3.bucket")
        return Node("bucket", bucket) if bucket else Node("aws", service)
    rpc = span.text("rpc.service")
    if rpc:
        return Node("service", rpc)
    host = http_host(span)
    if host:
        return Node("http", host)
    return Node("service", f"{span.service} → {span.name}")  # a named call to something unidentified


def trigger(span: GraphSpan) -> Node | None:
    """What started an invocation: API route, queue/topic/stream, schedule, or a virtual client.

    None for an invocation whose traced caller already drew the edge to it.
    """
    return _trigger(span, messaging_node(span))


def _trigger(span: GraphSpan, msg: Node | None) -> Node | None:
    if msg is not None and span.kind == CONSUMER:
        return msg
    if span.kind == CONSUMER or span.text("faas.trigger") == "datasource":
        tables = span.texts("aws.dynamodb.table_names")
        if tables:
            return Node("stream", f"{tables[0]} stream")
    route = span.text("http.route")
    method = span.text("http.request.method", "http.method")
    if route:
        return Node("api", f"{method} {route}" if method else route)
    trig = span.text("faas.trigger")
    if trig == "timer":
        return Node("schedule", span.text("hoptrace.schedule.rule") or "schedule")
    if span.parent_span_id is not None:
        # The caller is traced: its own CLIENT span draws the edge (to a host, or to this function).
        host = span.text("server.address")
        return Node("http", host) if host else None
    if trig == "http" or (span.kind == SERVER and method):
        return Node("client", "http clients")
    return Node("client", f"{trig or 'direct'} invokers")


def _entry_edges(me: Node, source: Node) -> list[Edge]:
    if source.kind == "stream" and source.name.endswith(" stream"):
        table = Node("table", source.name[: -len(" stream")])
        return [Edge(table, source, PUBLISH), Edge(source, me, DELIVER)]
    kind = DELIVER if source.kind in _MESSAGING else SYNC
    return [Edge(source, me, kind)]


def _entry_weight(span: GraphSpan, source: Node, invocation: bool, ours: bool) -> int:
    """How many calls or messages a SERVER/CONSUMER span accounts for on its incoming edge (0: none).

    A batch counts once per message, on whichever span stands for the whole batch: our
    invocation span, or the "process" span of OpenTelemetry's Lambda instrumentation (whose
    SERVER invocation span carries no queue, so it draws no edge of its own).
    """
    messaging = source.kind in _MESSAGING
    if not invocation:
        return message_count(span) if messaging and span.kind == CONSUMER and not ours else 0
    trig = span.text("faas.trigger")
    if not messaging and not ours and span.kind == SERVER and trig in ("pubsub", "datasource"):
        return 0
    return message_count(span) if messaging else 1


class View(NamedTuple):
    """Everything the graph reads off one span, computed once (keys, rollups and facts share it)."""

    node: Node  # the function or service that wrote it
    messaging: Node | None  # the queue, topic, stream or bus it sends to or reads from
    send: bool
    invocation: bool
    edges: tuple[tuple[Edge, int], ...]  # map edges it accounts for, with how many calls/messages each
    deliver: Edge | None  # for a consumer: the edge its waiting time belongs to
    health: str
    # "source|target" of the edge a consumer key counts its hop's dwell on; "" for none. Our batch
    # invocation links to every producer and each record's span is joined too: the waiting time
    # is counted once per message, on the records, so the batch invocation carries none.
    dwell_edge: str = ""
    source: Node | None = None  # for an invocation: what triggered it (``trigger``)
    # Precomputed from the fields above, once per shape, for the per-span work of ``derive``:
    node_id: str = ""  # ``node.id``
    edge_keys: tuple[tuple[str, str, str, int], ...] = ()  # ``edges`` as (source id, target id, kind, weight)
    resources: tuple[str, ...] = ()  # ids of the resource nodes on ``edges`` (what a trace's facts list)
    entry: tuple[str, str, str] = ("", "", "")  # (trigger, name, service) should the span start its trace
    parent_key: bool = False  # a CLIENT/PRODUCER span (no database call) whose children may be hops
    # ``HopEnd.edge`` of the span's keys: its ``dwell_edge``, or for a send to a topic the topic's id.
    hop_edge: str = ""
    sends_message: bool = False  # ``send`` and a messaging node: a send the trace's facts count


# Every attribute (span over resource) the naming functions read: spans that agree on these, and
# on the few fields ``_shape`` adds, have the same view. A new read in this module must be added
# here; test_graph_naming checks the cached view against a fresh one on every scenario span.
SHAPE_KEYS = (
    "messaging.system", "rpc.service", "rpc.method", "rpc.system", "messaging.destination.name",
    "messaging.destination", "aws.sqs.queue.url", "aws.queue_url", "messaging.url", "aws.sns.topic.arn",
    "db.system", "db.system.name", "db.namespace", "db.name", "aws.dynamodb.table_names", "server.address",
    "net.peer.name", "http.host", "faas.invoked_name", "peer.service", "aws.s3.bucket", "faas.trigger",
    "http.route", "http.request.method", "http.method", "hoptrace.schedule.rule", "messaging.batch.message_count",
    "messaging.operation.type", "messaging.operation", "http.response.status_code", "error.type",
)  # fmt: skip
# Every span attribute anything in hoptrace.graph reads (naming, hop keys, facts, rollups): a store
# may leave the others (labels, request ids, …) undecoded when it builds spans for the graph
# alone. test_graph_naming checks every attribute name written in the graph's source is here.
READ_KEYS = frozenset(SHAPE_KEYS) | {
    "url.full", "http.url", "hoptrace.pointers", "messaging.message.id", "messaging.message_id",
    "db.operation.name", "db.operation", "hoptrace.dynamodb.event_name", "hoptrace.messaging.receive_count",
    "hoptrace.faas.receive_count", "hoptrace.faas.retry", "hoptrace.faas.timeout", "hoptrace.throttled",
    "faas.coldstart", "faas.name", "cloud.platform", "telemetry.distro.name",
}  # fmt: skip
_CACHE_MAX = 8192
_views: dict[tuple[object, ...], View] = {}


def _shape(span: GraphSpan) -> tuple[object, ...]:
    """What a span's view depends on (see ``SHAPE_KEYS``); a full URL only by its scheme and host
    part, which is all ``http_host`` reads of it (the text before the path's slash)."""
    url = span.text("url.full", "http.url")
    resource = span.resource
    return (
        span.service, span.name, span.kind, span.status, span.parent_span_id is None, span.exception_types,
        any(link.type == "invocation" for link in span.links) if span.links else False,
        resource.get("faas.name"), resource.get("cloud.platform"), resource.get("telemetry.distro.name"),
        span.attributes.get("faas.trigger"), span.attributes.get("hoptrace.throttled"),
        tuple(url.split("/", 3)[:3]) if url else None, span.values(SHAPE_KEYS),
    )  # fmt: skip


def view(span: GraphSpan) -> View:
    """The span seen from the map (see the module docstring); cached per span shape (``_shape``):
    a million spans have a few hundred shapes, and naming them is most of a span's cost."""
    shape = _shape(span)
    found = _views.get(shape)
    if found is None:
        if len(_views) >= _CACHE_MAX:
            _views.clear()  # bounded: an unusual workload of ever-new shapes only loses the cache
        found = _views[shape] = view_uncached(span)
    return found


def view_uncached(span: GraphSpan) -> View:
    """``view`` computed afresh from the span."""
    me = service_node(span)
    msg = messaging_node(span)
    send = is_send(span)
    invocation = is_invocation(span)
    found: list[tuple[Edge, int]] = []
    deliver = None
    source = _trigger(span, msg) if span.kind in (SERVER, CONSUMER) else None
    target = _callee(span, msg)
    if target is not None:
        found.append((Edge(me, target, PUBLISH if send and target.kind in _MESSAGING else SYNC), 1))
        if target.kind == "table":
            found += [(Edge(me, Node("table", t), SYNC), 1) for t in span.texts("aws.dynamodb.table_names")[1:]]
    elif source is not None:
        entry = _entry_edges(me, source)
        deliver = entry[-1] if entry[-1].kind == DELIVER else None
        weight = _entry_weight(span, source, invocation, is_ours(span))
        if weight:
            found = [(edge, weight) for edge in entry]
    dwell_edge = ""
    if deliver is not None and not (invocation and is_ours(span) and message_count(span) > 1):
        dwell_edge = f"{deliver.source.id}|{deliver.target.id}"
    edge_keys = tuple((edge.source.id, edge.target.id, edge.kind, weight) for edge, weight in found)
    resources: list[str] = []
    for edge, _ in found:
        for node in (edge.source, edge.target):
            if node != me and node.kind not in ("client", "function", "service") and node.id not in resources:
                resources.append(node.id)
    started = _trace_entry(span, me, invocation, source)
    parent_key = span.kind in (CLIENT, PRODUCER) and not span.text("db.system", "db.system.name")
    hop_edge = dwell_edge
    if not hop_edge and send and msg is not None and msg.kind == "topic":
        hop_edge = msg.id
    return View(
        me, msg, send, invocation, tuple(found), deliver, health(span), dwell_edge, source, me.id, edge_keys,
        tuple(resources), started, parent_key, hop_edge, send and msg is not None,
    )  # fmt: skip


def _trace_entry(span: GraphSpan, me: Node, invocation: bool, source: Node | None) -> tuple[str, str, str]:
    """How a trace began, should this span be its root: trigger, the route, queue or function
    that took it, and its service."""
    trigger = span.text("faas.trigger") or _implied_trigger(span, source)
    if invocation:
        named = source is not None and source.kind in ("api", "queue", "topic", "stream", "bus", "schedule")
        name = source.name if source is not None and named else me.name
    else:
        name = span.name
    return trigger, name, me.name


def _implied_trigger(span: GraphSpan, source: Node | None) -> str:
    """The trigger of a span that names none (semconv values): a SERVER span is "http" only when it
    says something of HTTP; OpenTelemetry's Lambda instrumentation makes every invocation SERVER,
    scheduled and direct ones too."""
    if source is not None and source.kind == "schedule":
        return "timer"
    if span.kind == SERVER and span.text("http.request.method", "http.method", "http.route", "url.full"):
        return "http"
    return "pubsub" if span.kind == CONSUMER else "other"


def weighted_edges(span: GraphSpan) -> list[tuple[Edge, int]]:
    """The map edges one span accounts for, each with how many calls or messages it counts for."""
    return list(view(span).edges)


def edges(span: GraphSpan) -> list[Edge]:
    """The map edges one span accounts for (see the module docstring)."""
    return [edge for edge, _ in view(span).edges]


def deliver_edge(span: GraphSpan) -> Edge | None:
    """The queue/topic/stream → function edge a consumer span's waiting time belongs to."""
    return view(span).deliver


def health(span: GraphSpan) -> str:
    """X-Ray's colours: ``ok``, ``4xx`` (error), ``5xx`` (fault) or ``throttled``."""
    status = span.number("http.response.status_code")
    error_type = span.text("error.type") or ""
    if (
        status == 429
        or span.attributes.get("hoptrace.throttled") is True
        or error_type in THROTTLE_CODES
        or any(t.rsplit(".", 1)[-1] in THROTTLE_CODES for t in span.exception_types)
    ):
        return "throttled"
    if status is not None and 400 <= status < 500:
        return "4xx"
    if (status is not None and status >= 500) or span.is_error:
        return "5xx"
    return "ok"
