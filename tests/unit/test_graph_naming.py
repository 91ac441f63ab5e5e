"""The span view cache: spans of one shape share a view; anything naming reads tells shapes apart."""

from __future__ import annotations

import re
from pathlib import Path

from hoptrace.graph import naming
from hoptrace.graph.naming import READ_KEYS, SHAPE_KEYS, Node, view, view_uncached
from tests.unit.graph_scenarios import CLIENT, CONSUMER, SERVER, lam, new_trace, span


def test_every_attribute_the_naming_functions_read_is_part_of_a_span_shape() -> None:
    source = Path(naming.__file__).read_text()
    read: set[str] = set()
    for call in re.finditer(r"span\.(?:text|texts|number|attr)\(([^)]*)\)", source):
        read.update(re.findall(r'"([^"]+)"', call.group(1)))
    assert {"messaging.system", "http.route", "http.response.status_code"} <= read  # the scan finds reads
    # url.full / http.url enter the shape by their host part; the rest by value.
    assert read - {"url.full", "http.url"} <= set(SHAPE_KEYS)
    assert "hoptrace.pointers" not in SHAPE_KEYS  # per-span ids would defeat the cache


def test_spans_of_one_shape_share_the_view_computed_for_the_first() -> None:
    a = span(new_trace(), "api", "POST", CLIENT, 0, 5, url__full="https://pay.example/v1/charges?id=1")
    b = span(new_trace(), "api", "POST", CLIENT, 9, 7, url__full="https://pay.example/v1/refunds")
    assert view(a) is view(b)
    assert view(b) == view_uncached(b)


def test_a_different_host_status_or_trigger_is_a_different_view() -> None:
    def client(url: str, status: int = 200) -> naming.View:
        return view(span(new_trace(), "api", "GET", CLIENT, 0, 5, url__full=url, http__response__status_code=status))

    assert client("https://a.example/x").edges[0][0].target == Node("http", "a.example")
    assert client("https://b.example/x").edges[0][0].target == Node("http", "b.example")
    assert client("https://a.example/x", 503).health == "5xx"
    assert client("https://a.example/x", 429).health == "throttled"
    queue = span(new_trace(), "worker", "worker", CONSUMER, 0, 5, resource=lam("worker"), faas__trigger="pubsub",
                 messaging__system="aws_sqs", messaging__destination__name="orders")  # fmt: skip
    route = span(new_trace(), "worker", "worker", SERVER, 0, 5, resource=lam("worker"), faas__trigger="http",
                 http__route="/orders", http__request__method="POST")  # fmt: skip
    assert view(queue).edges[0][0].source == Node("queue", "orders")
    assert view(route).edges[0][0].source == Node("api", "POST /orders")
    for s in (queue, route):
        assert view(s) == view_uncached(s)


def test_a_batch_invocation_of_ours_carries_no_dwell_edge_its_single_record_twin_does() -> None:
    def invocation(count: int) -> naming.View:
        return view(span(new_trace(), "worker", "worker", CONSUMER, 0, 5, resource=lam("worker"),
                         faas__trigger="pubsub", messaging__system="aws_sqs", messaging__destination__name="orders",
                         messaging__batch__message_count=count))  # fmt: skip

    assert invocation(1).dwell_edge == "queue:orders|function:worker"
    assert invocation(10).dwell_edge == ""


def test_every_attribute_name_in_the_graph_source_is_one_the_store_decodes_for_it() -> None:
    # The graph pass decodes only READ_KEYS of a span's attributes: a name read anywhere in
    # hoptrace.graph and missing there would silently read as absent in the stores.
    named: set[str] = set()
    for path in Path(naming.__file__).parent.glob("*.py"):
        named.update(re.findall(r'"([a-z_0-9]+(?:\.[a-z_0-9]+)+)"', path.read_text()))
    assert {"hoptrace.pointers", "faas.coldstart", "messaging.message.id"} <= named  # the scan finds them
    spellings = set(naming._SYSTEMS)  # messaging.system values, not attribute names
    assert named - spellings <= READ_KEYS


def test_a_server_invocation_naming_no_trigger_is_http_only_when_it_says_something_of_http() -> None:
    # OpenTelemetry's Lambda instrumentation makes every invocation a SERVER span; it sets
    # faas.trigger only for API Gateway events, so a scheduled or direct one names none.
    scheduled = span(new_trace(), "nightly", "nightly", SERVER, 0, 5, resource=lam("nightly"))
    called = span(new_trace(), "api", "api", SERVER, 0, 5, resource=lam("api"), http__method="GET")
    queued = span(new_trace(), "worker", "worker", CONSUMER, 0, 5, resource=lam("worker"))
    assert view(scheduled).entry[0] == "other"
    assert view(called).entry[0] == "http"
    assert view(queued).entry[0] == "pubsub"
