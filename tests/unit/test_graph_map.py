"""The networkx map model: DESIGN §7 JSON, layers, upstream/downstream and window comparison."""

from __future__ import annotations

import pytest

from hoptrace.graph.rollup import Rollup, Rollups, minute_of
from hoptrace.graph.servicemap import ServiceMap, compare
from hoptrace.graph.sketch import ALPHA, LatencySketch
from hoptrace.graph.transactions import plan_hop
from tests.unit.graph_scenarios import CLIENT, CONSUMER, PRODUCER, SERVER, T0, lam, new_trace, span


def pipeline_rollups(start_ms: float = 0, with_stream: bool = True, failures: int = 0) -> Rollups:
    """API → orders-api → queue → worker → table (→ stream → projector)."""
    r = Rollups()
    t = new_trace()
    api = span(
        t,
        "orders-api",
        "POST /orders",
        SERVER,
        start_ms,
        80,
        resource=lam("orders-api"),
        faas__trigger="http",
        http__request__method="POST",
        http__route="/orders",
        http__response__status_code=500 if failures else 201,
        status=2 if failures else 0,
    )
    send = span(
        t,
        "orders-api",
        "orders send",
        PRODUCER,
        start_ms + 5,
        10,
        parent=api,
        resource=lam("orders-api"),
        messaging__system="aws_sqs",
        messaging__destination__name="orders",
    )
    work = span(
        new_trace(),
        "worker",
        "orders process",
        CONSUMER,
        start_ms + 100,
        30,
        resource=lam("worker"),
        faas__trigger="pubsub",
        messaging__system="aws_sqs",
        messaging__destination__name="orders",
    )
    put = span(
        work.trace_id,
        "worker",
        "DynamoDB.PutItem",
        CLIENT,
        start_ms + 105,
        9,
        parent=work,
        resource=lam("worker"),
        db__system="dynamodb",
        aws__dynamodb__table_names=["orders"],
        http__response__status_code=400 if failures > 1 else 200,
    )
    for s in (api, send, work, put):
        r.add_span(s)
    if with_stream:
        r.add_span(
            span(
                new_trace(),
                "projector",
                "orders process",
                CONSUMER,
                start_ms + 200,
                5,
                resource=lam("projector"),
                faas__trigger="datasource",
                db__system="dynamodb",
                aws__dynamodb__table_names=["orders"],
            )
        )
    return r


def test_the_map_json_has_the_nodes_edges_and_fields_of_design_7_with_layers_from_entry_to_resources() -> None:
    doc = ServiceMap(*pipeline_rollups().window(0, 2**62)).to_json()
    nodes = {n["id"]: n for n in doc["nodes"]}
    assert {n: (v["kind"], v["layer"]) for n, v in nodes.items()} == {
        "api:POST /orders": ("api", 0),
        "function:orders-api": ("function", 1),
        "queue:orders": ("queue", 2),
        "function:worker": ("function", 3),
        "table:orders": ("table", 4),
        "stream:orders stream": ("stream", 5),
        "function:projector": ("function", 6),
    }
    assert nodes["function:orders-api"]["count"] == 1
    assert nodes["function:orders-api"]["p50_ms"] == pytest.approx(80, rel=ALPHA)
    assert nodes["queue:orders"]["count"] == 1  # a resource: the calls that reach it
    assert nodes["api:POST /orders"]["count"] == 1  # an entry: the requests it passed on
    assert nodes["api:POST /orders"]["errors"] == 0
    failing = {n["id"]: n for n in ServiceMap(*pipeline_rollups(failures=1).window(0, 2**62)).to_json()["nodes"]}
    assert failing["api:POST /orders"]["errors"] == 1  # the route answered what its function answered
    edge = next(e for e in doc["edges"] if e["id"] == "function:orders-api|queue:orders|publish")
    assert {
        "source",
        "target",
        "kind",
        "count",
        "errors",
        "throttles",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "dwell_p50_ms",
        "dwell_p95_ms",
        "health",
    } <= set(edge)
    sync = next(e for e in doc["edges"] if e["kind"] == "sync" and e["target"] == "table:orders")
    assert "dwell_p50_ms" not in sync


def test_upstream_and_downstream_follow_the_edges() -> None:
    m = ServiceMap(*pipeline_rollups().window(0, 2**62))
    assert m.downstream("function:worker") == {"table:orders", "stream:orders stream", "function:projector"}
    assert m.upstream("queue:orders") == {"api:POST /orders", "function:orders-api"}
    assert m.upstream("not-a-node") == set()


def test_focus_keeps_a_node_and_what_is_upstream_or_downstream_of_it() -> None:
    m = ServiceMap(*pipeline_rollups().window(0, 2**62))
    down = m.focus("function:worker", "downstream").to_json()
    assert {n["id"] for n in down["nodes"]} == {
        "function:worker",
        "table:orders",
        "stream:orders stream",
        "function:projector",
    }
    assert [n["layer"] for n in down["nodes"] if n["id"] == "function:worker"] == [0]  # layers of the focus
    up = m.focus("queue:orders", "upstream").to_json()
    assert {e["id"] for e in up["edges"]} == {
        "api:POST /orders|function:orders-api|sync",
        "function:orders-api|queue:orders|publish",
    }
    assert m.focus("nowhere").to_json() == {"nodes": [], "edges": []}


def test_health_shares_count_faults_client_errors_and_throttles_as_xray_colours_them() -> None:
    r = Rollups()
    t = new_trace()
    for status, error in ((200, 0), (200, 0), (404, 2), (503, 2), (429, 2)):
        r.add_span(
            span(
                t,
                "api",
                "GET",
                CLIENT,
                0,
                5,
                url__full="https://partner.example/x",
                http__response__status_code=status,
                status=error,
            )
        )
    r.add_span(
        span(
            t,
            "api",
            "DynamoDB.GetItem",
            CLIENT,
            0,
            5,
            db__system="dynamodb",
            aws__dynamodb__table_names=["t"],
            status=2,
            error__type="ProvisionedThroughputExceededException",
        )
    )
    _, edges = r.window(0, 2**62)
    http = edges[("service:api", "http:partner.example", "sync")]
    assert http.health() == {"ok": 0.4, "4xx": 0.2, "5xx": 0.2, "throttled": 0.2}
    assert (http.count, http.errors, http.throttles) == (5, 3, 1)
    assert edges[("service:api", "table:t", "sync")].throttles == 1


def test_a_window_merges_only_its_minutes() -> None:
    r = pipeline_rollups(0)
    r.merge(pipeline_rollups(60_000 * 5))
    first = minute_of(T0)
    one, _ = r.window(first, first + 1)
    both, _ = r.window(first, first + 6)
    assert one["function:orders-api"].count == 1
    assert both["function:orders-api"].count == 2


def test_compare_gives_deltas_and_marks_new_and_gone_nodes_and_edges() -> None:
    before = ServiceMap(*pipeline_rollups(with_stream=True).window(0, 2**62)).to_json()
    after_rollups = pipeline_rollups(with_stream=False, failures=1)
    after_rollups.merge(pipeline_rollups(with_stream=False))
    r = Rollups()
    r.add_span(
        span(
            new_trace(),
            "worker",
            "S3.PutObject",
            CLIENT,
            0,
            5,
            resource=lam("worker"),
            rpc__system="aws-api",
            rpc__service="S3",
            aws__s3__bucket="receipts",
        )
    )
    after_rollups.merge(r)
    after = ServiceMap(*after_rollups.window(0, 2**62)).to_json()
    diff = compare(after, before)

    nodes = {n["id"]: n for n in diff["nodes"]}
    assert nodes["bucket:receipts"]["status"] == "new"
    assert nodes["function:projector"]["status"] == "gone"
    assert nodes["function:projector"]["delta"]["count"] == -1
    assert nodes["function:orders-api"]["status"] == "same"
    assert nodes["function:orders-api"]["delta"]["count"] == 1
    assert nodes["function:orders-api"]["delta"]["errors"] == 1
    edges = {e["id"]: e for e in diff["edges"]}
    assert edges["stream:orders stream|function:projector|deliver"]["status"] == "gone"
    assert edges["function:worker|bucket:receipts|sync"]["status"] == "new"


def test_rollups_survive_their_storage_form() -> None:
    r = Rollup(3, 1, 1, 1, 0, 1, LatencySketch.of([1, 2, 3]), LatencySketch.of([500]))
    back = Rollup.from_row(r.counters(), r.latency.to_bytes(), r.dwell.to_bytes())
    assert back == r


def test_membership_plan_for_a_hop_adds_what_the_consumer_reaches_and_retires_its_root() -> None:
    a, b, c = b"a" * 16, b"b" * 16, b"c" * 16
    change = plan_hop(a, b, [a], [b, c], to_is_root=True)
    assert change.add == ((a, b), (a, c))
    assert change.drop == b
    assert plan_hop(a, b, [a], [b, a], to_is_root=True).drop is None  # a cycle keeps b's root
    assert plan_hop(a, a, [a], [a], to_is_root=True).add == ()
