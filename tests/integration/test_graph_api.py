"""The graph's endpoints end to end: real instrumentation against moto, spans sent over OTLP to a
running collector (``hoptrace serve``), transactions and the map read back from its API."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples import order_pipeline
from tests.collector_server import CollectorProcess
from tests.conftest import free_port, wait_for_port


@pytest.fixture(scope="module")
def own_moto() -> Iterator[str]:
    """A moto server of this module's own: the demo shop creates fixed names (table "orders")
    that another test's shop may already have made on the session's server."""
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    assert exe is not None, "moto_server not found: install the dev extra"
    port = free_port()
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for_port(port, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def shop(own_moto: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, list[Any]]]:
    """Three orders through the demo shop (API → queue → worker → table → stream → totals), traced
    by hoptrace and exported to a collector; its API client and the spans as recorded."""
    db = tmp_path_factory.mktemp("graph") / "graph.db"
    with CollectorProcess(f"sqlite:///{db}") as collector:
        spans = order_pipeline.run_traced(own_moto, orders=3)
        send(collector.url, spans)
        with collector.client() as client:
            settle(client)
            yield client, spans


def send(url: str, spans: list[Any]) -> None:
    """Export recorded spans as an SDK would: OTLP/HTTP protobuf to the collector."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    exporter = OTLPSpanExporter(endpoint=url.rstrip("/") + "/v1/traces")
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()


def settle(client: Any, timeout_s: float = 120.0) -> None:
    """Wait until the collector's graph pass has derived everything sent so far."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        response = client.get("/api/v1/graph/status")
        assert response.status_code == 200, response.text
        if response.json()["backlog_spans"] == 0 or time.monotonic() > deadline:
            assert response.json()["backlog_spans"] == 0, "the graph pass did not catch up"
            return
        time.sleep(0.05)


def get(client: httpx.Client, path: str, **params: Any) -> Any:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_each_order_is_one_transaction_that_includes_the_shared_stream_batch(shop) -> None:
    client, spans = shop
    found = get(client, "/api/v1/transactions")["transactions"]
    assert len(found) == 3  # the stream batch read all three orders: it joins each, merges none
    order_traces = {
        s.attributes["hoptrace.label.order_id"]: f"{s.context.trace_id:032x}"
        for s in spans
        if s.name == "POST /checkout"
    }

    def trace_of(trigger: str) -> str:
        return next(f"{s.context.trace_id:032x}" for s in spans if s.attributes.get("faas.trigger") == trigger)

    worker_trace, stream_trace = trace_of("pubsub"), trace_of("datasource")  # the two batch invocations
    assert {t["root_trace_id"] for t in found} == set(order_traces.values())
    for t in found:
        assert t["trace_ids"][0] == t["root_trace_id"]
        assert set(t["trace_ids"]) == {t["root_trace_id"], worker_trace, stream_trace}
        assert t["entry"] == {"trigger": "http", "name": "POST /checkout", "service": "shop"}
        assert t["status"] == "ok" and not t["incomplete"]
        # send → its record (parent), send → the batch invocation (link), put → stream record (item pointer)
        assert t["hops"] == 3
        assert set(t["resources"]) >= {"queue:checkout-queue", "table:orders", "stream:orders stream"}
    (one,) = get(client, "/api/v1/transactions", **{"label.order_id": "o-2"})["transactions"]
    assert one["root_trace_id"] == order_traces["o-2"]
    assert get(client, "/api/v1/transactions", q=stream_trace)["transactions"] == found  # any member trace


def test_a_transaction_carries_the_spans_of_all_its_traces_its_hops_and_its_own_map(shop) -> None:
    client, _ = shop
    (summary,) = get(client, "/api/v1/transactions", **{"label.order_id": "o-1"})["transactions"]
    txn = get(client, f"/api/v1/transactions/{summary['id']}")
    names = [s["name"] for s in txn["spans"]]
    assert {"POST /checkout", "SQS.SendMessage", "checkout-queue process", "DynamoDB.PutItem", "orders process"} <= set(
        names
    )
    assert {s["trace_id"] for s in txn["spans"]} == set(summary["trace_ids"])
    vias = sorted(h["via"] for h in txn["hops"])
    assert vias == ["dynamodb_item", "link", "parent"]
    by_id = {s["span_id"]: s for s in txn["spans"]}
    stream_hop = next(h for h in txn["hops"] if h["via"] == "dynamodb_item")
    assert by_id[stream_hop["from_span"]]["name"] == "DynamoDB.PutItem"
    assert by_id[stream_hop["to_span"]]["name"] == "orders process"
    assert stream_hop["dwell_ms"] >= 0
    edges = {e["id"] for e in txn["map"]["edges"]}
    assert {"service:shop|queue:checkout-queue|publish", "queue:checkout-queue|service:shop|deliver",
            "table:orders|stream:orders stream|publish"} <= edges  # fmt: skip


def test_the_map_shows_the_pipeline_with_counts_and_queue_dwell(shop) -> None:
    client, _ = shop
    doc = get(client, "/api/v1/map")
    edges = {e["id"]: e for e in doc["edges"]}
    publish = edges["service:shop|queue:checkout-queue|publish"]
    deliver = edges["queue:checkout-queue|service:shop|deliver"]
    stream = edges["stream:orders stream|service:shop|deliver"]
    assert (publish["count"], deliver["count"], stream["count"]) == (3, 3, 3)  # per message, batches included
    assert deliver["dwell_p50_ms"] is not None and stream["dwell_p50_ms"] is not None
    assert edges["api:POST /checkout|service:shop|sync"]["count"] == 3
    assert edges["service:shop|table:orders|sync"]["count"] == 3
    kinds = {n["id"]: n["kind"] for n in doc["nodes"]}
    assert kinds["queue:checkout-queue"] == "queue" and kinds["stream:orders stream"] == "stream"
    assert kinds["api:POST /checkout"] == "api"


def test_the_map_around_one_node_follows_its_upstream(shop) -> None:
    client, _ = shop
    doc = get(client, "/api/v1/map", focus="queue:checkout-queue", direction="upstream")
    assert {n["id"] for n in doc["nodes"]} == {"queue:checkout-queue", "service:shop", "api:POST /checkout",
                                                "stream:orders stream", "table:orders"}  # fmt: skip
    assert client.get("/api/v1/map", params={"focus": "x", "direction": "sideways"}).status_code == 422


def test_comparing_with_an_empty_earlier_window_marks_everything_new(shop) -> None:
    client, _ = shop
    doc = get(client, "/api/v1/map", compare_from="2020-01-01T00:00:00Z", compare_to="2020-01-01T01:00:00Z")
    assert doc["edges"] and {e["status"] for e in doc["edges"]} == {"new"}
    assert {n["status"] for n in doc["nodes"]} == {"new"}
    publish = next(e for e in doc["edges"] if e["id"] == "service:shop|queue:checkout-queue|publish")
    assert publish["delta"]["count"] == 3


def test_bad_parameters_are_refused_with_what_to_fix(shop) -> None:
    client, _ = shop
    assert client.get("/api/v1/transactions/" + "0" * 32).status_code == 404
    assert client.get("/api/v1/transactions/nothex").status_code in (400, 422)
    bad_cursor = client.get("/api/v1/transactions", params={"cursor": "x"})
    assert bad_cursor.status_code == 400 and "cursor" in bad_cursor.text
    backwards = client.get("/api/v1/map", params={"from": "2030-01-01T00:00:00Z", "to": "2020-01-01T00:00:00Z"})
    assert backwards.status_code == 400 and "before" in backwards.text
    assert client.get("/api/v1/transactions", params={"status": "weird"}).status_code == 422


def test_a_read_token_sees_only_its_own_projects_transactions_and_map(tmp_path) -> None:
    import time

    from fastapi.testclient import TestClient

    from hoptrace.collector.app import create_app
    from hoptrace.collector.auth import create_project
    from hoptrace.collector.config import CollectorConfig
    from hoptrace.collector.store import open_store
    from tests.otlp_build import request, span

    db = f"sqlite:///{tmp_path / 'projects.db'}"
    store = open_store(db)
    store.migrate()
    _, ingest_a, read_a = create_project(store, "team-a")
    _, _, read_b = create_project(store, "team-b")
    store.close()
    start = time.time_ns() - 60 * 10**9
    send_span = span(
        "SQS.SendMessage",
        kind=4,
        start_ns=start,
        attributes={
            "messaging.system": "aws_sqs",
            "messaging.destination.name": "secret-orders",
            "messaging.message.id": "m-1",
        },
    )
    with TestClient(create_app(CollectorConfig(store_url=db))) as api:
        posted = api.post(
            "/v1/traces",
            content=request([send_span], "api").SerializeToString(),
            headers={"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {ingest_a}"},
        )
        assert posted.status_code == 200

        def get(path: str, token: str | None) -> Any:
            return api.get(path, headers={"Authorization": f"Bearer {token}"} if token else {})

        api.app.state.collector.store.graph_sync()  # type: ignore[attr-defined]

        txn_id = send_span.trace_id.hex()
        assert [t["id"] for t in get("/api/v1/transactions", read_a).json()["transactions"]] == [txn_id]
        assert get("/api/v1/transactions", read_b).json()["transactions"] == []
        assert get(f"/api/v1/transactions/{txn_id}", read_a).status_code == 200
        assert get(f"/api/v1/transactions/{txn_id}", read_b).status_code == 404
        assert {e["id"] for e in get("/api/v1/map", read_a).json()["edges"]} == {
            "service:api|queue:secret-orders|publish"
        }
        assert get("/api/v1/map", read_b).json()["edges"] == []
        assert get("/api/v1/map", None).status_code == 401
        assert get("/api/v1/transactions", ingest_a).status_code == 403
