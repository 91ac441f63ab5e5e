"""PostgreSQL as the shared store of several collector replicas: real processes, real server.

Replicas are ``hoptrace serve --store postgresql://…`` subprocesses on one database; spans go
in through OTLP/HTTP (the OpenTelemetry SDK's exporter and raw protobuf posts) and come out of
the query API of either replica. Start-up problems end in one clear line and status 2.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from hoptrace.collector.otlp import Limits, normalise
from hoptrace.collector.store import SpanQuery, StoreError, open_store
from hoptrace.collector.store.postgres import PostgresStore
from hoptrace.collector.store.schema import LATEST
from tests.collector_server import CollectorProcess
from tests.conftest import free_port
from tests.otlp_build import request, span
from tests.pg import PASSWORD, PASSWORD_ROLE, create_database, drop_database

PROTO = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    url = create_database(postgres_url)
    try:
        yield url
    finally:
        drop_database(postgres_url, url)


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


def hoptrace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hoptrace.collector.cli", *args], capture_output=True, text=True, timeout=120
    )


def export_with_the_sdk(endpoint: str) -> str:
    """A checkout calling a payment service, exported by the OpenTelemetry SDK; returns the trace id."""
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=30)))
    tracer = provider.get_tracer("replica-test")
    try:
        with tracer.start_as_current_span("POST /checkout", kind=SpanKind.SERVER) as root:
            root.set_attribute("hoptrace.label.order_id", "o-42")
            with tracer.start_as_current_span("charge", kind=SpanKind.CLIENT):
                pass
        return format(root.get_span_context().trace_id, "032x")
    finally:
        provider.shutdown()


def test_two_replicas_share_one_database(database: str) -> None:
    a, b = CollectorProcess(database), CollectorProcess(database)
    with ThreadPoolExecutor(2) as pool:  # both start at once: both migrate the fresh database
        list(pool.map(lambda c: c.start(), [a, b]))
    try:
        trace_id = export_with_the_sdk(a.url)
        with a.client() as http_a, b.client() as http_b:
            found = http_a.get("/api/v1/spans", params={"label.order_id": "o-42"}).json()["spans"]
            (root,) = found
            payment = span(
                "charge card",
                trace_id=bytes.fromhex(trace_id),
                parent=bytes.fromhex(root["span_id"]),
                attributes={"hoptrace.label.order_id": "o-42"},
            )
            posted = http_b.post(
                "/v1/traces", content=request([payment], "payments").SerializeToString(), headers=PROTO
            )
            assert posted.status_code == 200, posted.text

            for http in (http_a, http_b):
                spans = http.get(f"/api/v1/traces/{trace_id}").json()["spans"]
                assert sorted(s["name"] for s in spans) == ["POST /checkout", "charge", "charge card"]
                labelled = http.get("/api/v1/spans", params={"label.order_id": "o-42"}).json()["spans"]
                assert sorted(s["name"] for s in labelled) == ["POST /checkout", "charge card"]
                services = {s["name"] for s in http.get("/api/v1/services").json()["services"]}
                assert services == {"checkout", "payments"}
    finally:
        a.stop()
        b.stop()
    assert "Traceback" not in a.output() + b.output()
    assert rows(database, "SELECT name FROM projects") == [("default",)]
    assert rows(database, "SELECT version FROM schema_version") == [(v,) for v in range(1, LATEST + 1)]


def test_acknowledged_spans_survive_a_killed_replica(database: str) -> None:
    first = CollectorProcess(database).start()
    try:
        body = request([span("acknowledged", attributes={"hoptrace.label.k": "v"})]).SerializeToString()
        with first.client() as http:
            assert http.post("/v1/traces", content=body, headers=PROTO).status_code == 200
    finally:
        first.kill()
    with CollectorProcess(database) as second, second.client() as http:
        assert [s["name"] for s in http.get("/api/v1/spans", params={"label.k": "v"}).json()["spans"]] == [
            "acknowledged"
        ]


def test_stores_migrating_at_once_migrate_once(database: str) -> None:
    barrier = threading.Barrier(6)

    def migrate() -> int:
        store = open_store(database)
        try:
            barrier.wait()
            return store.migrate()
        finally:
            store.close()

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(lambda _: migrate(), range(6))) == [LATEST] * 6
    assert rows(database, "SELECT name FROM projects") == [("default",)]
    assert rows(database, "SELECT version FROM schema_version") == [(v,) for v in range(1, LATEST + 1)]


def test_a_store_reconnects_after_its_connections_were_cut(database: str) -> None:
    store = open_store(database)
    try:
        store.migrate()
        first = span("before")
        store.write([(1, normalise(request([first]), Limits()))])
        assert len(store.trace(1, first.trace_id)) == 1
        # What a server restart or a failover does to every open connection.
        cut = rows(
            database,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'hoptrace-collector' AND pid <> pg_backend_pid()",
        )
        assert len(cut) >= 2  # the writer's connection and a reader's
        second = span("after")
        store.write([(1, normalise(request([second]), Limits()))])
        assert [s.name for s in store.search_spans(1, SpanQuery())] in (["after", "before"], ["before", "after"])
        assert store.project("default") is not None
    finally:
        store.close()


def test_queries_share_a_bounded_set_of_connections(database: str) -> None:
    store = PostgresStore(database, pool_size=3)
    try:
        store.migrate()
        with ThreadPoolExecutor(24) as pool:
            assert all(pool.map(lambda _: store.search_spans(1, SpanQuery()) == [], range(200)))
        (count,) = rows(database, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'hoptrace-collector'")
        assert count[0] <= 1 + 3  # the writer's and at most the pool's
    finally:
        store.close()


# -- start-up errors -------------------------------------------------------------------------


def test_an_unreachable_database_is_a_clear_startup_error() -> None:
    closed = free_port()
    result = hoptrace("serve", "--store", f"postgresql://127.0.0.1:{closed}/x", "--port", str(free_port()))
    assert result.returncode == 2
    assert f"cannot reach PostgreSQL at 127.0.0.1:{closed}" in result.stderr
    assert "Check that the server is running" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_database_is_a_clear_startup_error(postgres_url: str) -> None:
    url = postgres_url.rsplit("/", 1)[0] + "/hoptrace_missing"
    result = hoptrace("serve", "--store", url, "--port", str(free_port()))
    assert result.returncode == 2
    assert "has no database 'hoptrace_missing'" in result.stderr
    assert "CREATE DATABASE hoptrace_missing" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_wrong_password_is_a_clear_error_that_does_not_repeat_it(postgres_url: str) -> None:
    address = postgres_url.split("@", 1)[1].split("/", 1)[0]
    result = hoptrace("project", "create", "shop", "--store", f"postgresql://{PASSWORD_ROLE}:s3cr3t-guess@{address}/x")
    assert result.returncode == 2
    assert f"PostgreSQL at {address} refused user '{PASSWORD_ROLE}'" in result.stderr
    assert "password authentication failed" in result.stderr
    assert "s3cr3t-guess" not in result.stderr
    assert "Traceback" not in result.stderr


def test_the_right_password_opens_the_store(postgres_url: str, database: str) -> None:
    address = postgres_url.split("@", 1)[1].split("/", 1)[0]
    dbname = database.rsplit("/", 1)[1]
    rows(database, f"GRANT ALL ON SCHEMA public TO {PASSWORD_ROLE}")
    store = open_store(f"postgresql://{PASSWORD_ROLE}:{PASSWORD}@{address}/{dbname}")
    try:
        assert store.migrate() == LATEST
    finally:
        store.close()


@pytest.mark.parametrize(
    "url, says",
    [
        ("postgresql://db.example:port/x", "port 'port' is not a number"),
        ("postgresql://db.example/x?colour=blue", 'invalid URI query parameter: "colour"'),
    ],
)
def test_a_malformed_url_is_refused_before_connecting(url: str, says: str) -> None:
    with pytest.raises(StoreError, match="bad PostgreSQL URL") as caught:
        open_store(url)
    assert says in str(caught.value)
    assert "postgresql://user[:password]@host[:port]/dbname" in str(caught.value)
