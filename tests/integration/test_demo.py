"""The demo app end to end on moto: each order is one trace API → queue → table; the stream hop joins by pointer."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from examples import order_pipeline
from tests.collector_server import CollectorProcess


def test_each_order_travels_in_one_trace_and_the_stream_hop_joins_by_pointer(moto_endpoint: str) -> None:
    spans: list[Any] = list(order_pipeline.run_traced(moto_endpoint, orders=3))
    traces: dict[int, list[Any]] = defaultdict(list)
    for s in spans:
        traces[s.context.trace_id].append(s)
    order_traces = {}
    for members in traces.values():
        labels = {s.attributes.get("hoptrace.label.order_id") for s in members} - {None}
        if labels:
            (order_id,) = labels
            order_traces[order_id] = sorted(s.name for s in members)
    expected = sorted(["POST /checkout", "SQS.SendMessage", "checkout-queue process", "DynamoDB.PutItem"])
    assert order_traces == {f"o-{i}": expected for i in (1, 2, 3)}
    # The runner's own polling is not traced: only the functions' work is.
    assert not [s.name for s in spans if s.name in ("SQS.ReceiveMessage", "DynamoDB Streams.GetRecords")]
    puts = [s for s in spans if s.name == "DynamoDB.PutItem"]
    stream_records = [s for s in spans if s.name == "orders process"]
    assert len(stream_records) == 3
    for put in puts:
        item_pointer = next(p for p in put.attributes["hoptrace.pointers"] if p.startswith("ddb:item:orders:"))
        matches = [r for r in stream_records if item_pointer in r.attributes["hoptrace.pointers"]]
        assert len(matches) == 1


def test_the_demo_sends_its_orders_to_a_collector_that_joins_them_into_transactions(
    moto_endpoint: str, tmp_path: Path
) -> None:
    with CollectorProcess(f"sqlite:///{tmp_path / 'demo.db'}").start() as collector:
        spans = order_pipeline.run_traced(moto_endpoint, orders=2, endpoint=collector.url)
        sent = {s.context.span_id for s in spans}
        with collector.client() as api:
            deadline = time.monotonic() + 30
            while True:
                found = api.get("/api/v1/transactions", params={"label.order_id": "o-2"}).json()["transactions"]
                status = api.get("/api/v1/graph/status").json()
                if (found and status["backlog_spans"] == 0) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert len(found) == 1, found
            transaction = api.get(f"/api/v1/transactions/{found[0]['id']}").json()
    stored = {int(s["span_id"], 16) for s in transaction["spans"]}
    assert stored <= sent
    names = sorted(s["name"] for s in transaction["spans"])
    # API call → queue → consumer → table → stream → consumer, as one transaction.
    assert names.count("POST /checkout") == 1
    assert "checkout-queue process" in names and "orders process" in names
    vias = {h["via"] for h in transaction["hops"]}
    assert vias & {"parent", "link", "message_id"}, transaction["hops"]
    assert any(h["via"].startswith("dynamodb") for h in transaction["hops"]), transaction["hops"]
