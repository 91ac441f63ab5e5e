"""The demo app end to end on moto: each order is one trace API → queue → table; the stream hop joins by pointer."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from examples import order_pipeline


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
