"""The stores' graph pass and the in-memory ``Correlator`` derive the same graph from the same spans.

Two implementations of one set of rules (``hoptrace.graph``): the stores match keys, merge facts
and keep membership in SQL, the correlator in memory, each optimised on its own. Fed the
benchmark's shop workload (context kept and lost, DynamoDB stream pointers, failed payments,
batches overtaking each other), both must give the same transactions, hops and map.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from bench.graph.workload import batches, to_request
from hoptrace.collector.otlp import Limits, normalise
from hoptrace.collector.store import SpanStore, TransactionQuery, open_store
from hoptrace.graph.correlator import Correlator
from hoptrace.graph.rollup import MINUTE_NS
from hoptrace.graph.servicemap import ServiceMap
from tests.pg import create_database, drop_database

SPANS = 3000  # 500 orders, in export batches of 100
START_NS = (time.time_ns() // MINUTE_NS - 90) * MINUTE_NS  # inside normalise's window


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[SpanStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'agreement.db'}"
    else:
        server = request.getfixturevalue("postgres_url")
        url = create_database(server)
    s = open_store(url)
    s.migrate()
    try:
        yield s
    finally:
        s.close()
        if request.param == "postgresql":
            drop_database(server, url)


def test_the_store_and_the_correlator_agree_on_transactions_hops_and_map(store: SpanStore) -> None:
    project = store.project("default")
    assert project is not None
    correlator = Correlator()
    for spans in batches(SPANS, START_NS, batch_size=100, seed=5):
        correlator.add(spans)
        store.write([(project.id, normalise(to_request(spans), Limits()))])
    store.graph_sync()

    expected = correlator.transactions()
    assert len(expected) == SPANS // 6  # one per order: the workload's hops all found
    stored = store.search_transactions(project.id, TransactionQuery(limit=10_000, ascending=True))
    assert sorted(stored, key=lambda t: t.id) == sorted(expected, key=lambda t: t.id)

    hops = sorted(correlator.hops)
    assert len(hops) == 2 * len(expected)  # queue -> worker, table -> stream handler
    from_store = []
    for t in expected:
        found = store.transaction(project.id, bytes.fromhex(t.id))
        assert found is not None
        from_store += found[1]
    assert sorted(from_store) == hops

    start, end = START_NS - MINUTE_NS, START_NS + 60 * MINUTE_NS
    in_memory = ServiceMap(*correlator.rollups.window(start // MINUTE_NS, end // MINUTE_NS)).to_json()
    assert in_memory["edges"]  # a map to compare, not two empty ones
    assert ServiceMap(*store.graph_window(project.id, start, end)).to_json() == in_memory
