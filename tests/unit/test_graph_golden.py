"""Golden vectors in the shape of Tempo's service-graph tests, on hoptrace's map and hops.

requester → server → database; requester → queue → recorder with messaging latency; virtual
nodes for an uninstrumented client, an external payments API and an external producer; edges
whose other side never arrives.
"""

from __future__ import annotations

from typing import Any

import pytest

from hoptrace.graph.correlator import Correlator
from hoptrace.graph.servicemap import ServiceMap
from hoptrace.graph.sketch import ALPHA
from tests.unit.graph_scenarios import CLIENT, CONSUMER, PRODUCER, SERVER, lam, new_trace, span


def map_json(c: Correlator) -> dict[str, Any]:
    nodes, edges = c.rollups.window(0, 2**62)
    return ServiceMap(nodes, edges).to_json()


def edge_ids(doc: dict[str, Any]) -> set[str]:
    return {e["id"] for e in doc["edges"]}


def test_requester_server_database() -> None:
    t = new_trace()
    call = span(
        t,
        "requester",
        "GET",
        CLIENT,
        0,
        100,
        http__request__method="GET",
        server__address="server",
        url__full="http://server/orders/1",
    )
    handle = span(
        t,
        "server",
        "GET /orders/{id}",
        SERVER,
        5,
        90,
        parent=call,
        server__address="server",
        http__request__method="GET",
    )
    query = span(t, "server", "SELECT", CLIENT, 10, 30, parent=handle, db__system="postgresql", db__namespace="orders")
    c = Correlator()
    hops = c.add([call, handle, query])

    assert edge_ids(map_json(c)) == {
        "service:requester|http:server|sync",
        "http:server|service:server|sync",
        "service:server|database:postgresql/orders|sync",
    }
    assert [(h.from_span, h.to_span, h.via, h.dwell_ms) for h in hops] == [
        (call.span_id, handle.span_id, "parent", None)
    ]
    (txn,) = c.transactions()
    assert txn.services == ("requester", "server")
    assert txn.hops == 1
    assert txn.duration_ms == 100


def test_requester_queue_recorder_with_messaging_latency() -> None:
    sender, receiver = new_trace(), new_trace()
    send = span(
        sender,
        "requester",
        "orders send",
        PRODUCER,
        0,
        10,
        messaging__system="aws_sqs",
        messaging__destination__name="orders",
        messaging__message__id="m-1",
    )
    receive = span(
        receiver,
        "recorder",
        "orders process",
        CONSUMER,
        510,
        40,
        resource=lam("recorder"),
        faas__trigger="pubsub",
        messaging__system="aws_sqs",
        messaging__destination__name="orders",
        messaging__message__id="m-1",
    )
    c = Correlator()
    c.add([send])
    (hop,) = c.add([receive])

    assert (hop.via, hop.dwell_ms, hop.skew) == ("message_id", 500.0, False)
    doc = map_json(c)
    edges = {e["id"]: e for e in doc["edges"]}
    assert set(edges) == {"service:requester|queue:orders|publish", "queue:orders|function:recorder|deliver"}
    deliver = edges["queue:orders|function:recorder|deliver"]
    assert deliver["dwell_p50_ms"] == pytest.approx(500, rel=ALPHA)
    assert deliver["p50_ms"] == pytest.approx(40, rel=ALPHA)
    (txn,) = c.transactions()
    assert txn.trace_ids == (sender.hex(), receiver.hex())
    assert txn.duration_ms == 550  # end to end, the 500 ms in the queue included
    assert not txn.incomplete


def test_virtual_nodes_for_an_uninstrumented_client_an_external_api_and_an_external_producer() -> None:
    t, u = new_trace(), new_trace()
    entry = span(
        t,
        "checkout",
        "POST",
        SERVER,
        0,
        300,
        resource=lam("checkout"),
        faas__trigger="http",
        http__request__method="POST",
    )
    charge = span(
        t,
        "checkout",
        "POST",
        CLIENT,
        20,
        200,
        parent=entry,
        resource=lam("checkout"),
        http__request__method="POST",
        url__full="https://api.payments.example/v1/charges",
    )
    foreign_parent = b"\x42" * 8  # the producer's span: never instrumented, never stored
    consume = span(
        u,
        "recorder",
        "events process",
        CONSUMER,
        0,
        5,
        parent=foreign_parent,
        resource=lam("recorder"),
        faas__trigger="pubsub",
        messaging__system="aws_sqs",
        messaging__destination__name="events",
    )
    c = Correlator()
    assert c.add([entry, charge, consume]) == []

    doc = map_json(c)
    kinds = {n["id"]: n["kind"] for n in doc["nodes"]}
    assert kinds == {
        "client:http clients": "client",
        "function:checkout": "function",
        "http:api.payments.example": "http",
        "queue:events": "queue",
        "function:recorder": "function",
    }
    assert not any("unknown" in n["name"] for n in doc["nodes"])
    assert edge_ids(doc) == {
        "client:http clients|function:checkout|sync",
        "function:checkout|http:api.payments.example|sync",
        "queue:events|function:recorder|deliver",
    }


def test_edges_whose_other_side_never_arrives_stay_on_the_map_and_mark_the_transaction() -> None:
    sender, orphan = new_trace(), new_trace()
    send = span(
        sender,
        "requester",
        "jobs send",
        PRODUCER,
        0,
        10,
        messaging__system="aws_sqs",
        messaging__destination__name="jobs",
        messaging__message__id="never-consumed",
    )
    late = span(
        orphan,
        "worker",
        "jobs process",
        CONSUMER,
        0,
        10,
        resource=lam("worker"),
        faas__trigger="pubsub",
        messaging__system="aws_sqs",
        messaging__destination__name="jobs",
        messaging__message__id="its-producer-never-came",
    )
    c = Correlator()
    assert c.add([send, late]) == []

    assert edge_ids(map_json(c)) == {"service:requester|queue:jobs|publish", "queue:jobs|function:worker|deliver"}
    by_root = {t.root_trace_id: t for t in c.transactions()}
    assert by_root[sender.hex()].incomplete  # sent, and no consumer seen
    assert by_root[sender.hex()].status == "incomplete"
    assert not by_root[orphan.hex()].incomplete
    assert by_root[orphan.hex()].entry == {"trigger": "pubsub", "name": "jobs", "service": "worker"}
