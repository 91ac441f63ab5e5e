"""The SpanStore contract, as specifications every backend must meet: SQLite and PostgreSQL.

Each test runs once per backend on a fresh, empty store. Batches come from real OTLP
ExportTraceServiceRequest messages through ``normalise()``, as the collector builds them.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from typing import Any, cast

import psycopg
import pytest
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from hoptrace.collector.otlp import Limits, SpanBatch, normalise
from hoptrace.collector.store import (
    Project,
    SpanQuery,
    SpanStore,
    StoredSpan,
    StoreError,
    TokenGrant,
    TransactionQuery,
    open_store,
)
from hoptrace.collector.store.issues_schema import HEALTH_TABLES, ISSUES_TABLES
from hoptrace.collector.store.schema import LATEST
from tests.otlp_build import kvs, new_id, request, span
from tests.pg import create_database, drop_database

MS = 10**6
S = 10**9


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A fresh, empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'contract.db'}"
        return
    server = request.getfixturevalue("postgres_url")
    url = create_database(server)
    try:
        yield url
    finally:
        drop_database(server, url)


@pytest.fixture
def store(store_url: str) -> Iterator[SpanStore]:
    s = open_store(store_url)
    s.migrate()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def default(store: SpanStore) -> int:
    project = store.project("default")
    assert project is not None
    return project.id


def raw(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Look inside the database behind the protocol's back (for what the protocol cannot show)."""
    if url.startswith("sqlite:"):
        with closing(sqlite3.connect(url[len("sqlite:///") :])) as conn:
            return conn.execute(sql).fetchall()
    with psycopg.connect(url, autocommit=True) as pg:
        return pg.execute(sql).fetchall()


def batch(spans: list[Span], service: str = "svc", resource: dict[str, Any] | None = None) -> SpanBatch:
    b = normalise(request(spans, service, resource), Limits())
    assert b.rejected == 0, b.error_message
    return b


def ids(found: list[StoredSpan]) -> list[bytes]:
    return [s.span_id for s in found]


BASE = (time.time_ns() // S - 3600) * S  # a round second an hour ago: inside normalise's window


# -- schema ----------------------------------------------------------------------------------


def test_migrate_is_idempotent_records_its_version_and_creates_one_default_project(
    store: SpanStore, store_url: str
) -> None:
    assert store.migrate() == LATEST
    again = open_store(store_url)
    try:
        assert again.migrate() == LATEST
    finally:
        again.close()
    assert raw(store_url, "SELECT version FROM schema_version ORDER BY version") == [(v,) for v in range(1, LATEST + 1)]
    assert raw(store_url, "SELECT name FROM projects") == [("default",)]


def test_a_database_from_a_newer_hoptrace_is_refused(store: SpanStore, store_url: str) -> None:
    if store_url.startswith("sqlite:"):
        with closing(sqlite3.connect(store_url[len("sqlite:///") :])) as conn, conn:
            conn.execute(f"INSERT INTO schema_version (version) VALUES ({LATEST + 1})")
    else:
        with psycopg.connect(store_url, autocommit=True) as pg:
            pg.execute(f"INSERT INTO schema_version (version) VALUES ({LATEST + 1})")
    newer = open_store(store_url)
    try:
        with pytest.raises(StoreError, match=rf"schema version {LATEST + 1}, newer than this hoptrace.*upgrade"):
            newer.migrate()
    finally:
        newer.close()


# -- write and trace -------------------------------------------------------------------------


def test_a_written_trace_comes_back_oldest_first_with_each_span_resource(store: SpanStore, default: int) -> None:
    root = span("GET /orders", start_ns=BASE, duration_ms=40, attributes={"http.route": "/orders"})
    tid = root.trace_id
    child = span("SQS.SendMessage", trace_id=tid, parent=root.span_id, start_ns=BASE + 5 * MS, kind=4)
    worker = span("worker", trace_id=tid, parent=child.span_id, start_ns=BASE + 9 * MS, kind=5, error=True)
    # Children first and the consumer from another service in another request, as SDKs send them.
    store.write([(default, batch([child, root], service="api", resource={"cloud.region": "eu-west-1"}))])
    store.write([(default, batch([worker], service="worker"))])
    store.write([(default, batch([span("unrelated", start_ns=BASE)]))])

    found = store.trace(default, tid)

    assert [s.name for s in found] == ["GET /orders", "SQS.SendMessage", "worker"]
    first, second, third = found
    assert (first.trace_id, first.span_id, first.parent_span_id) == (tid, root.span_id, None)
    assert second.parent_span_id == root.span_id
    assert (first.start_ns, first.end_ns) == (BASE, BASE + 40 * MS)
    assert (second.kind, third.kind, third.status, first.status) == (4, 5, 2, 0)
    assert [s.service_name for s in found] == ["api", "api", "worker"]
    assert Span.FromString(third.data).name == "worker"
    resource = Resource.FromString(first.resource)
    attrs = {kv.key: kv.value.string_value for kv in resource.attributes}
    assert attrs == {"service.name": "api", "cloud.region": "eu-west-1"}
    assert {kv.key: kv.value.string_value for kv in Resource.FromString(third.resource).attributes} == {
        "service.name": "worker"
    }


def test_spans_starting_together_are_ordered_by_span_id(store: SpanStore, default: int) -> None:
    tid = new_id(16)
    spans = [span(f"s{i}", trace_id=tid, start_ns=BASE) for i in range(6)]
    store.write([(default, batch(spans))])
    assert ids(store.trace(default, tid)) == sorted(s.span_id for s in spans)


def test_an_unknown_trace_is_empty(store: SpanStore, default: int) -> None:
    assert store.trace(default, new_id(16)) == []


def test_a_resent_batch_shows_once_in_its_trace(store: SpanStore, default: int) -> None:
    root = span("root", start_ns=BASE)
    child = span("child", trace_id=root.trace_id, parent=root.span_id, start_ns=BASE + MS)
    sent = batch([root, child])
    store.write([(default, sent)])
    store.write([(default, sent)])  # the client lost our acknowledgement and sent it again
    store.write([(default, batch([root, child]))])
    assert [s.name for s in store.trace(default, root.trace_id)] == ["root", "child"]


def test_spans_are_visible_to_another_connection_once_write_returns(store: SpanStore, store_url: str) -> None:
    other = open_store(store_url)
    try:
        other.migrate()
        project = other.project("default")
        assert project is not None
        s = span("committed", start_ns=BASE)
        store.write([(project.id, batch([s]))])
        assert [x.name for x in other.trace(project.id, s.trace_id)] == ["committed"]
    finally:
        other.close()


def test_an_empty_write_is_harmless(store: SpanStore, default: int) -> None:
    store.write([])
    store.write([(default, SpanBatch())])
    assert store.count_spans() == 0


# -- search ----------------------------------------------------------------------------------


@pytest.fixture
def shop(store: SpanStore, default: int) -> dict[str, bytes]:
    """Five spans of two services; returns their span ids by letter (a oldest … e newest)."""
    a = span(
        "GET /cart",
        start_ns=BASE + 10 * S,
        duration_ms=5,
        attributes={"hoptrace.label.order_id": "o-1", "messaging.message.id": "m-1"},
    )
    b = span("GET /cart", start_ns=BASE + 20 * S, duration_ms=500, error=True)
    c = span("POST /checkout", start_ns=BASE + 30 * S, duration_ms=50, attributes={"faas.invocation_id": "req-9"})
    d = span("sum", start_ns=BASE + 40 * S, duration_ms=20, error=True, attributes={"hoptrace.label.order_id": "o-1"})
    e = span("sum", start_ns=BASE + 50 * S, duration_ms=1, attributes={"hoptrace.label.customer": "req-9"})
    store.write([(default, batch([a, b, c], service="cart")), (default, batch([d, e], service="totals"))])  # fmt: skip
    return {"a": a.span_id, "b": b.span_id, "c": c.span_id, "d": d.span_id, "e": e.span_id}


SEARCHES = {
    "everything, newest first": (SpanQuery(), "edcba"),
    "by service": (SpanQuery(service="cart"), "cba"),
    "by name": (SpanQuery(name="sum"), "ed"),
    "by error status": (SpanQuery(status=2), "db"),
    "by unset status": (SpanQuery(status=0), "eca"),
    "by duration range, bounds included": (SpanQuery(min_duration_ns=20 * MS, max_duration_ns=50 * MS), "dc"),
    "at least a duration": (SpanQuery(min_duration_ns=50 * MS), "cb"),
    "by time window, start included, end excluded": (SpanQuery(start_ns=BASE + 20 * S, end_ns=BASE + 40 * S), "cb"),
    "by label": (SpanQuery(terms=(("label.order_id", "o-1"),)), "da"),
    "by a value under any key": (SpanQuery(terms=((None, "req-9"),)), "ec"),
    "by a value under the wrong key": (SpanQuery(terms=(("invocation", "o-1"),)), ""),
    "by two terms at once": (SpanQuery(terms=(("label.order_id", "o-1"), ("message", "m-1"))), "a"),
    "by service, label and status together": (
        SpanQuery(service="totals", status=2, terms=(("label.order_id", "o-1"),)),
        "d",
    ),
    "by name and time window together": (SpanQuery(name="GET /cart", end_ns=BASE + 15 * S), "a"),
    "limited": (SpanQuery(limit=2), "ed"),
    "matching nothing": (SpanQuery(service="nobody"), ""),
}


@pytest.mark.parametrize("query, expected", SEARCHES.values(), ids=SEARCHES.keys())
def test_search_filters_and_orders_newest_first(
    store: SpanStore, default: int, shop: dict[str, bytes], query: SpanQuery, expected: str
) -> None:
    found = store.search_spans(default, query)
    assert ids(found) == [shop[letter] for letter in expected]


def test_search_results_carry_the_span_and_its_resource(store: SpanStore, default: int, shop: dict[str, bytes]) -> None:
    (found,) = store.search_spans(default, SpanQuery(terms=(("message", "m-1"),)))
    assert (found.name, found.service_name, found.end_ns - found.start_ns) == ("GET /cart", "cart", 5 * MS)
    assert Span.FromString(found.data).span_id == shop["a"]
    assert Resource.FromString(found.resource).attributes[0].value.string_value == "cart"


def test_a_span_holding_a_value_under_two_keys_is_found_once(store: SpanStore, default: int) -> None:
    s = span("paid", start_ns=BASE, attributes={"faas.invocation_id": "x-1", "hoptrace.label.request": "x-1"})
    store.write([(default, batch([s]))])
    assert ids(store.search_spans(default, SpanQuery(terms=((None, "x-1"),)))) == [s.span_id]


@pytest.mark.parametrize("service", [None, "pages"])
def test_cursor_pagination_walks_every_span_once_in_order(store: SpanStore, default: int, service: str | None) -> None:
    spans = [span(f"op{i}", start_ns=BASE + (i // 3) * MS) for i in range(25)]  # ties on start time
    store.write([(default, batch(spans, service="pages")), (default, batch([span("other")], service="else"))])
    expected = sorted(((s.start_time_unix_nano, s.span_id) for s in spans), reverse=True)
    seen: list[tuple[int, bytes]] = []
    before = None
    for _ in range(10):
        page = store.search_spans(default, SpanQuery(service=service, limit=7, before=before))
        seen += [(s.start_ns, s.span_id) for s in page if s.service_name == "pages"]
        if len(page) < 7:
            break
        before = (page[-1].start_ns, page[-1].span_id)
    assert seen == expected


def _tiered(store: SpanStore, default: int) -> list[Span]:
    """40 spans in 4 batches, ties on start time, every one labelled tier=gold or tier=silver
    (a value many spans hold), a few of them also order_id=o-7."""
    spans = []
    for i in range(40):
        labels = {"hoptrace.label.tier": "gold" if i % 3 else "silver"}
        if i % 7 == 0:
            labels["hoptrace.label.order_id"] = "o-7"
        spans.append(span(f"op{i}", start_ns=BASE + (i // 4) * MS, attributes=labels))
    for first in range(0, 40, 10):
        store.write([(default, batch(spans[first : first + 10], service=f"svc{first // 20}"))])
    return spans


def _newest_first(spans: list[Span]) -> list[tuple[int, bytes]]:
    return sorted(((s.start_time_unix_nano, s.span_id) for s in spans), reverse=True)


def _label(s: Span, key: str) -> str | None:
    return next((kv.value.string_value for kv in s.attributes if kv.key == "hoptrace.label." + key), None)


def test_label_search_pages_walk_every_matching_span_once_newest_first(store: SpanStore, default: int) -> None:
    spans = _tiered(store, default)
    gold = [s for s in spans if _label(s, "tier") == "gold"]
    seen: list[tuple[int, bytes]] = []
    before = None
    for _ in range(20):
        page = store.search_spans(default, SpanQuery(terms=(("label.tier", "gold"),), limit=6, before=before))
        seen += [(s.start_ns, s.span_id) for s in page]
        if len(page) < 6:
            break
        before = (page[-1].start_ns, page[-1].span_id)
    assert seen == _newest_first(gold)


def test_label_search_in_a_time_window_and_with_other_filters(store: SpanStore, default: int) -> None:
    spans = _tiered(store, default)
    lo, hi = BASE + 2 * MS, BASE + 7 * MS
    window = SpanQuery(terms=(("label.tier", "silver"),), start_ns=lo, end_ns=hi)
    expected = [s for s in spans if _label(s, "tier") == "silver" and lo <= s.start_time_unix_nano < hi]
    assert [(s.start_ns, s.span_id) for s in store.search_spans(default, window)] == _newest_first(expected)
    # Filters on the span itself still apply (the page is then not read off the term index alone).
    svc1 = SpanQuery(terms=(("label.tier", "gold"),), service="svc1", limit=5)
    expected = [s for s in spans[20:] if _label(s, "tier") == "gold"]
    assert [(s.start_ns, s.span_id) for s in store.search_spans(default, svc1)] == _newest_first(expected)[:5]
    both = SpanQuery(terms=(("label.tier", "silver"), ("label.order_id", "o-7")))
    expected = [s for s in spans if _label(s, "tier") == "silver" and _label(s, "order_id") == "o-7"]
    assert [(s.start_ns, s.span_id) for s in store.search_spans(default, both)] == _newest_first(expected)
    assert store.search_spans(default, SpanQuery(terms=(("label.tier", "bronze"),))) == []
    assert store.search_spans(default, SpanQuery(terms=(("label.order_id", "gold"),))) == []


def test_label_search_shows_each_span_row_of_a_resent_batch_once(store: SpanStore, default: int) -> None:
    s = span("twice", start_ns=BASE, attributes={"hoptrace.label.tier": "gold"})
    t = span("once", start_ns=BASE + MS, attributes={"hoptrace.label.tier": "gold"})
    store.write([(default, batch([s]))])
    store.write([(default, batch([s])), (default, batch([t]))])  # the first batch sent again
    found = store.search_spans(default, SpanQuery(terms=(("label.tier", "gold"),)))
    assert [x.name for x in found] == ["once", "twice", "twice"]  # two stored rows of it, as without a label


def test_sqlite_checkpoints_the_wal_into_the_database_file_beside_ingest(tmp_path: Any) -> None:
    """Commits leave the checkpoint to a background thread (not the writer's commit): what was
    written still reaches the database file itself, without waiting for the WAL to grow big."""
    path = tmp_path / "ckpt.db"
    s = open_store(f"sqlite:///{path}")
    try:
        s.migrate()
        project = s.project("default")
        assert project is not None
        spans = [span(f"op{i}", start_ns=BASE + i * MS, attributes={"hoptrace.label.k": "v"}) for i in range(50)]
        s.write([(project.id, batch(spans))])

        def in_file_alone() -> int:
            copy = tmp_path / "copy.db"  # the database file without its WAL
            copy.write_bytes(path.read_bytes())
            with closing(sqlite3.connect(copy)) as conn:
                try:
                    return int(conn.execute("SELECT count(*) FROM spans").fetchone()[0])
                except sqlite3.DatabaseError:
                    return -1  # caught mid-write of a page: look again

        deadline = time.monotonic() + 15
        while in_file_alone() != 50 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert in_file_alone() == 50
    finally:
        s.close()


# -- projects and tokens ---------------------------------------------------------------------


def test_projects_never_see_each_other_spans(store: SpanStore) -> None:
    a, b = store.create_project("team-a"), store.create_project("team-b")
    secret = span("a-secret", start_ns=BASE, attributes={"hoptrace.label.customer": "acme"})
    store.write([(a.id, batch([secret], service="billing"))])
    assert [s.name for s in store.trace(a.id, secret.trace_id)] == ["a-secret"]
    assert store.trace(b.id, secret.trace_id) == []
    assert store.search_spans(b.id, SpanQuery()) == []
    assert store.search_spans(b.id, SpanQuery(terms=(("label.customer", "acme"),))) == []
    assert store.services(b.id, 0, BASE + 3600 * S) == []
    assert (store.count_spans(a.id), store.count_spans(b.id)) == (1, 0)


def test_the_same_trace_and_resource_in_two_projects_stay_apart(store: SpanStore) -> None:
    a, b = store.create_project("team-a"), store.create_project("team-b")
    tid = new_id(16)
    store.write(
        [(a.id, batch([span("in-a", trace_id=tid, start_ns=BASE)])),
         (b.id, batch([span("in-b", trace_id=tid, start_ns=BASE)]))]
    )  # fmt: skip
    assert [s.name for s in store.trace(a.id, tid)] == ["in-a"]
    assert [s.name for s in store.trace(b.id, tid)] == ["in-b"]
    assert [s.name for s in store.search_spans(b.id, SpanQuery(service="svc"))] == ["in-b"]


def test_projects_have_unique_names(store: SpanStore) -> None:
    created = store.create_project("shop")
    assert store.project("shop") == created
    assert store.project("nope") is None
    with pytest.raises(StoreError, match="a project named 'shop' already exists"):
        store.create_project("shop")
    assert store.create_project("shop-2").id != created.id


def test_tokens_grant_their_own_project_and_kind(store: SpanStore) -> None:
    a, b = store.create_project("team-a"), store.create_project("team-b")
    assert store.has_tokens() is False
    store.add_token(a.id, "ingest", "hash-a-ingest")
    store.add_token(a.id, "read", "hash-a-read")
    store.add_token(b.id, "read", "hash-b-read")
    assert store.has_tokens() is True
    assert store.grant("hash-a-ingest") == TokenGrant(Project(a.id, "team-a"), "ingest")
    assert store.grant("hash-a-read") == TokenGrant(Project(a.id, "team-a"), "read")
    assert store.grant("hash-b-read") == TokenGrant(Project(b.id, "team-b"), "read")
    assert store.grant("hash-unknown") is None


# -- services and retention ------------------------------------------------------------------


def test_services_count_spans_and_errors_in_the_window(store: SpanStore, default: int) -> None:
    store.write(
        [(default, batch([span("a", start_ns=BASE + S), span("b", start_ns=BASE + 3 * S, error=True)], service="cart")),
         (default, batch([span("c", start_ns=BASE + 2 * S)], service="Zeta")),
         (default, batch([span("early", start_ns=BASE - S, error=True)], service="cart")),
         (default, batch([span("late", start_ns=BASE + 10 * S)], service="late"))]
    )  # fmt: skip
    summaries = store.services(default, BASE, BASE + 10 * S)
    assert [(s.service_name, s.spans, s.errors, s.last_seen_ns) for s in summaries] == [
        ("Zeta", 1, 0, BASE + 2 * S),  # byte order, as both backends sort
        ("cart", 2, 1, BASE + 3 * S),
    ]


def test_delete_before_removes_old_spans_with_their_terms_and_links(
    store: SpanStore, store_url: str, default: int
) -> None:
    other = store.create_project("other")
    linked = span("producer", start_ns=BASE - 100 * S)
    old = span("old", start_ns=BASE - 50 * S, attributes={"hoptrace.label.order_id": "o-old"})
    old.links.add(trace_id=linked.trace_id, span_id=linked.span_id)
    new = span("new", start_ns=BASE, attributes={"hoptrace.label.order_id": "o-new"})
    new.links.add(trace_id=linked.trace_id, span_id=linked.span_id)
    old_elsewhere = span("old-elsewhere", start_ns=BASE - 50 * S, attributes={"hoptrace.label.order_id": "o-old"})
    store.write([(default, batch([linked, old, new])), (other.id, batch([old_elsewhere]))])

    assert store.delete_before(BASE - S) == 3

    assert store.trace(default, old.trace_id) == []
    assert store.trace(other.id, old_elsewhere.trace_id) == []
    assert store.search_spans(default, SpanQuery(terms=(("label.order_id", "o-old"),))) == []
    assert [s.name for s in store.search_spans(default, SpanQuery())] == ["new"]
    assert ids(store.search_spans(default, SpanQuery(terms=(("label.order_id", "o-new"),)))) == [new.span_id]
    assert raw(store_url, "SELECT value FROM span_terms") == [("o-new",)]
    assert raw(store_url, "SELECT span_id FROM span_links") == [(new.span_id,)]
    assert store.delete_before(BASE - S) == 0


# -- safety ----------------------------------------------------------------------------------

SQL_LOOKING = ["' OR 1=1 --", '"; DROP TABLE spans; --', "x'); DELETE FROM projects; --", "%s %(x)s ? $1"]


@pytest.mark.parametrize("nasty", SQL_LOOKING)
def test_values_that_look_like_sql_are_stored_and_found_as_plain_text(
    store: SpanStore, store_url: str, default: int, nasty: str
) -> None:
    s = span(nasty, start_ns=BASE, attributes={"hoptrace.label.note": nasty})
    store.write([(default, batch([s], service=nasty)), (default, batch([span("plain", start_ns=BASE - S)]))])
    for query in (
        SpanQuery(service=nasty),
        SpanQuery(name=nasty),
        SpanQuery(terms=(("label.note", nasty),)),
        SpanQuery(terms=((None, nasty),)),
    ):
        found = store.search_spans(default, query)
        assert [(x.name, x.service_name) for x in found] == [(nasty, nasty)]
    assert store.search_spans(default, SpanQuery(service="x' OR '1'='1")) == []
    assert [x.service_name for x in store.services(default, 0, BASE + S)] == sorted(["svc", nasty])
    project = store.create_project(nasty)
    assert store.project(nasty) == project
    store.add_token(project.id, "read", nasty)
    assert store.grant(nasty) == TokenGrant(project, "read")
    assert store.count_spans() == 2
    assert {name for (name,) in raw(store_url, "SELECT name FROM projects")} == {"default", nasty}


def test_nul_characters_do_not_break_a_write(store: SpanStore, default: int) -> None:
    weird = "a\0b"
    s = span(weird, start_ns=BASE, attributes={"hoptrace.label.note": weird})
    store.write([(default, batch([s], service=weird))])
    assert ids(store.search_spans(default, SpanQuery(name=weird))) == [s.span_id]
    assert ids(store.search_spans(default, SpanQuery(service=weird))) == [s.span_id]
    assert ids(store.search_spans(default, SpanQuery(terms=(("label.note", weird),)))) == [s.span_id]
    assert Span.FromString(store.trace(default, s.trace_id)[0].data).name == weird  # the span itself is intact


def _break_a_span(b: SpanBatch) -> None:
    b.spans[-1] = b.spans[-1]._replace(name=cast(str, None))


def _break_a_term(b: SpanBatch) -> None:
    b.terms[-1] = b.terms[-1]._replace(value=cast(str, None))


@pytest.mark.parametrize("breaker", [_break_a_span, _break_a_term], ids=["bad span", "bad term"])
def test_a_write_of_several_projects_is_all_or_nothing(
    store: SpanStore, store_url: str, default: int, breaker: Any
) -> None:
    other = store.create_project("other")
    good = span("good", start_ns=BASE, attributes={"hoptrace.label.k": "v"})
    bad = batch(
        [span("fine", start_ns=BASE), span("broken", start_ns=BASE, attributes={"hoptrace.label.k": "v"})],
        service="elsewhere",
        resource={"cloud.region": "us-east-1"},
    )
    breaker(bad)
    with pytest.raises(Exception):  # noqa: B017 — each backend raises its own driver's error
        store.write([(default, batch([good])), (other.id, bad)])
    assert store.count_spans() == 0
    assert store.trace(default, good.trace_id) == []
    assert store.search_spans(default, SpanQuery(terms=(("label.k", "v"),))) == []
    assert raw(store_url, "SELECT count(*) FROM resources") == [(0,)]
    assert raw(store_url, "SELECT count(*) FROM span_terms") == [(0,)]
    # The store is still usable after the failed write.
    store.write([(default, batch([good]))])
    assert [s.name for s in store.trace(default, good.trace_id)] == ["good"]


def test_queries_from_many_threads_at_once_are_answered(store: SpanStore, default: int) -> None:
    spans = [span(f"t{i}", start_ns=BASE + i * MS) for i in range(40)]
    store.write([(default, batch(spans))])
    errors: list[BaseException] = []
    results: list[int] = []

    def query(i: int) -> None:
        try:
            results.append(len(store.trace(default, spans[i].trace_id)))
            results.append(len(store.search_spans(default, SpanQuery(limit=100))))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=query, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [1] * 40 + [40] * 40


# -- graph: hop keys, hops, transactions, rollups ------------------------------------------------

PRODUCER, CONSUMER, CLIENT = 4, 5, 3
LAMBDA = {"cloud.platform": "aws_lambda", "cloud.provider": "aws", "telemetry.distro.name": "hoptrace"}


def sqs_send(message_id: str, start_ns: int, **attrs: Any) -> Span:
    return span("SQS.SendMessage", kind=PRODUCER, start_ns=start_ns, duration_ms=10, attributes={
        "messaging.system": "aws_sqs", "messaging.destination.name": "orders", "messaging.operation.type": "send",
        "messaging.message.id": message_id, "hoptrace.pointers": [f"sqs:msg:{message_id}"], **attrs})  # fmt: skip


def sqs_consume(message_id: str, start_ns: int, **attrs: Any) -> Span:
    return span("orders process", kind=CONSUMER, start_ns=start_ns, duration_ms=20, attributes={
        "faas.trigger": "pubsub", "hoptrace.trigger.source": "aws:sqs", "messaging.system": "aws_sqs",
        "messaging.destination.name": "orders", "messaging.message.id": message_id,
        "hoptrace.pointers": [f"sqs:msg:{message_id}"], **attrs})  # fmt: skip


def fn_batch(spans: list[Span], fn: str) -> SpanBatch:
    return batch(spans, service=fn, resource={"faas.name": fn, **LAMBDA})


def synced(store: SpanStore) -> SpanStore:
    """The store once its graph pass has caught up with every write (it runs in the background)."""
    store.graph_sync()
    assert store.graph_backlog() == 0
    return store


def txns(store: SpanStore, project: int, **filters: Any) -> list[Any]:
    return synced(store).search_transactions(project, TransactionQuery(**filters))


def test_a_consumer_stored_before_its_producer_is_joined_after_a_collector_restart(
    store: SpanStore, store_url: str, default: int
) -> None:
    consume = sqs_consume("m-1", BASE + 2 * S)
    store.write([(default, fn_batch([consume], "worker"))])
    assert [t.root_trace_id for t in txns(store, default)] == [consume.trace_id.hex()]
    store.close()

    restarted = open_store(store_url)  # the pending key lives in the database, not in memory
    try:
        restarted.migrate()
        send = sqs_send("m-1", BASE)
        restarted.write([(default, fn_batch([send], "api"))])
        (txn,) = txns(restarted, default)
        assert txn.root_trace_id == send.trace_id.hex()
        assert txn.trace_ids == (send.trace_id.hex(), consume.trace_id.hex())
        found = synced(restarted).transaction(default, send.trace_id)
        assert found is not None
        _, hops = found
        assert [(h.from_span, h.to_span, h.via, h.dwell_ms) for h in hops] == [
            (send.span_id, consume.span_id, "message_id", 1990.0)
        ]
        assert synced(restarted).transaction(default, consume.trace_id) is None  # no longer an entry of its own
    finally:
        restarted.close()


def test_a_batch_consumer_belongs_to_each_transaction_it_read_from_and_merges_none(
    store: SpanStore, default: int
) -> None:
    sends = [sqs_send(f"m-{i}", BASE + i * MS) for i in range(10)]
    store.write([(default, fn_batch(sends, "api"))])
    invocation = span("worker", kind=CONSUMER, start_ns=BASE + S, duration_ms=300, attributes={
        "faas.trigger": "pubsub", "hoptrace.trigger.source": "aws:sqs", "messaging.system": "aws_sqs",
        "messaging.destination.name": "orders", "messaging.batch.message_count": 10})  # fmt: skip
    records = []
    for i, s in enumerate(sends):
        invocation.links.add(trace_id=s.trace_id, span_id=s.span_id, attributes=kvs({"hoptrace.link.type": "producer"}))
        record = span("orders process", trace_id=s.trace_id, parent=s.span_id, kind=CONSUMER,
                      start_ns=BASE + S + i * MS, duration_ms=5, attributes={
                          "messaging.system": "aws_sqs", "messaging.destination.name": "orders",
                          "hoptrace.pointers": [f"sqs:msg:m-{i}"]})  # fmt: skip
        record.links.add(trace_id=invocation.trace_id, span_id=invocation.span_id,
                         attributes=kvs({"hoptrace.link.type": "invocation"}))  # fmt: skip
        records.append(record)
    store.write([(default, fn_batch([invocation, *records], "worker"))])

    found = txns(store, default)
    assert sorted(t.root_trace_id for t in found) == sorted(s.trace_id.hex() for s in sends)
    for t in found:
        assert len(t.trace_ids) == 2 and t.trace_ids[1] == invocation.trace_id.hex()
    nodes, edges = synced(store).graph_window(default, BASE - 60 * S, BASE + 120 * S)
    assert edges[("queue:orders", "function:worker", "deliver")].count == 10
    assert edges[("queue:orders", "function:worker", "deliver")].dwell.count == 10
    assert edges[("function:api", "queue:orders", "publish")].count == 10
    assert nodes["function:worker"].count == 1


def test_the_map_window_is_a_merge_of_the_minutes_it_covers(store: SpanStore, default: int) -> None:
    minute = (BASE // (60 * S)) * 60 * S
    for m in range(3):
        for i in range(m + 1):
            store.write([(default, fn_batch([sqs_send(f"w-{m}-{i}", minute + m * 60 * S + i * S)], "api"))])
    one, _ = synced(store).graph_window(default, minute, minute + 60 * S)
    _, edges = synced(store).graph_window(default, minute, minute + 3 * 60 * S)
    assert one == {}  # a send is an edge, not an invocation
    assert edges[("function:api", "queue:orders", "publish")].count == 6
    _, first = synced(store).graph_window(default, minute, minute + 60 * S)
    assert first[("function:api", "queue:orders", "publish")].count == 1
    _, later = synced(store).graph_window(default, minute + 60 * S, minute + 3 * 60 * S)
    assert later[("function:api", "queue:orders", "publish")].count == 5


@pytest.fixture
def orders(store: SpanStore, default: int) -> dict[str, Any]:
    """Three transactions: ok (with a label), failed and slow (its only consumer failed, so its
    message was never consumed either: incomplete too), incomplete (never consumed)."""
    ok_send = sqs_send("o-1", BASE, **{"hoptrace.label.order_id": "A-1"})
    ok_consume = sqs_consume("o-1", BASE + 100 * MS)
    bad_send = sqs_send("o-2", BASE + 10 * S)
    bad_consume = sqs_consume("o-2", BASE + 10 * S + 3000 * MS)
    bad_consume.status.code = Status.STATUS_CODE_ERROR
    lost_send = sqs_send("o-3", BASE + 20 * S)
    store.write([(default, fn_batch([ok_send, bad_send, lost_send], "api"))])
    store.write([(default, fn_batch([ok_consume, bad_consume], "worker"))])
    return {"ok": ok_send.trace_id.hex(), "bad": bad_send.trace_id.hex(), "lost": lost_send.trace_id.hex(),
            "ok_consumer_trace": ok_consume.trace_id.hex()}  # fmt: skip


@pytest.mark.parametrize(
    "filters, expected",
    [
        ({}, ["lost", "bad", "ok"]),
        ({"status": "error"}, ["bad"]),
        ({"status": "incomplete"}, ["lost", "bad"]),
        ({"status": "ok"}, ["ok"]),
        ({"service": "worker"}, ["bad", "ok"]),
        ({"resource": "queue:orders"}, ["lost", "bad", "ok"]),
        ({"min_duration_ns": 1000 * MS}, ["bad"]),
        ({"max_duration_ns": 200 * MS}, ["lost", "ok"]),
        ({"labels": (("order_id", "A-1"),)}, ["ok"]),
        ({"text": "o-2"}, ["bad"]),
        ({"start_ns": BASE + 5 * S, "end_ns": BASE + 15 * S}, ["bad"]),
    ],
)
def test_transaction_search_filters_newest_first(
    store: SpanStore, default: int, orders: dict[str, Any], filters: dict[str, Any], expected: list[str]
) -> None:
    assert [t.id for t in txns(store, default, **filters)] == [orders[name] for name in expected]


def test_transaction_search_by_any_member_trace_id_and_cursor_pages(
    store: SpanStore, default: int, orders: dict[str, Any]
) -> None:
    assert [t.id for t in txns(store, default, text=orders["ok_consumer_trace"])] == [orders["ok"]]
    first = txns(store, default, limit=2)
    rest = txns(store, default, limit=2, before=(first[-1].start_ns, bytes.fromhex(first[-1].id)))
    assert [t.id for t in first + rest] == [orders["lost"], orders["bad"], orders["ok"]]
    (bad,) = txns(store, default, status="error")
    # duration_ms is end to end from the fixture's span timestamps (first start to last end), not a timing.
    assert (bad.errors, bad.hops, bad.services, bad.duration_ms) == (1, 1, ("api", "worker"), 3020.0)
    assert bad.entry == {"trigger": "other", "name": "SQS.SendMessage", "service": "api"}  # a script, no trigger


@pytest.mark.parametrize(
    "sort, ascending, expected",
    [("duration", True, ["lost", "ok", "bad"]), ("duration", False, ["bad", "ok", "lost"]),
     ("start", True, ["ok", "bad", "lost"]), ("start", False, ["lost", "bad", "ok"])],
)  # fmt: skip
def test_transaction_search_sorts_by_start_or_duration_and_pages_in_that_order(
    store: SpanStore, default: int, orders: dict[str, Any], sort: str, ascending: bool, expected: list[str]
) -> None:
    seen: list[str] = []
    before = None
    while True:
        page = txns(store, default, sort=sort, ascending=ascending, limit=1, before=before)
        if not page:
            break
        (t,) = page
        seen.append(t.id)
        before = (t.start_ns if sort == "start" else t.end_ns - t.start_ns, bytes.fromhex(t.id))
    assert seen == [orders[name] for name in expected]


def test_function_rollups_count_cold_starts_and_timeouts_per_minute(store: SpanStore, default: int) -> None:
    minute = BASE // (60 * S) * 60 * S
    cold = sqs_consume("f-1", minute + S, **{"faas.coldstart": True})
    warm = sqs_consume("f-2", minute + 2 * S, **{"faas.coldstart": False})
    late = sqs_consume("f-3", minute + 61 * S, **{"hoptrace.faas.timeout": True})
    store.write([(default, fn_batch([cold, warm, late], "worker"))])
    nodes, edges = synced(store).graph_window(default, minute, minute + 2 * 60 * S)
    worker = nodes["function:worker"]
    assert (worker.count, worker.cold_starts, worker.timeouts) == (3, 1, 1)
    assert edges[("queue:orders", "function:worker", "deliver")].cold_starts == 0  # nodes only
    by_minute = store.graph_minutes(default, minute, minute + 2 * 60 * S, node="function:worker")
    first = minute // (60 * S)
    assert [(m, r.count, r.cold_starts, r.timeouts) for m, r in by_minute] == [(first, 2, 1, 0), (first + 1, 1, 0, 1)]
    on_edge = store.graph_minutes(default, minute, minute + 60 * S, edge=("queue:orders", "function:worker", "deliver"))
    assert [(m, r.count) for m, r in on_edge] == [(first, 2)]
    assert store.graph_last_seen(default, minute, minute + 2 * 60 * S) == {"function:worker": first + 1}
    assert store.graph_last_seen(default, minute, minute + 60 * S) == {"function:worker": first}


def test_projects_never_join_each_other_hops(store: SpanStore, default: int) -> None:
    other = store.create_project("other")
    send = sqs_send("shared-id", BASE)
    store.write([(default, fn_batch([send], "api"))])
    store.write([(other.id, fn_batch([sqs_consume("shared-id", BASE + S)], "worker"))])
    (mine,) = txns(store, default)
    assert mine.trace_ids == (send.trace_id.hex(),)
    assert mine.incomplete
    assert len(txns(store, other.id)) == 1
    assert synced(store).graph_window(other.id, BASE - S, BASE + 60 * S)[1].keys() == {
        ("queue:orders", "function:worker", "deliver")
    }


def test_written_spans_stay_queued_for_the_graph_until_a_pass_commits_their_facts(
    store: SpanStore, store_url: str, default: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hoptrace.collector.store.postgres as pg_module
    import hoptrace.collector.store.sqlite as sqlite_module

    def broken(*_: Any, **__: Any) -> int:
        raise RuntimeError("graph pass failed")

    no_background_pass(store)  # or, retrying once the failure is undone, it would catch up before the restart
    for module in (sqlite_module, pg_module):
        monkeypatch.setattr(module, "apply_backlog", broken)
    send = sqs_send("q-1", BASE)
    store.write([(default, fn_batch([send], "api"))])  # acknowledged: spans and their queue row committed
    with pytest.raises(RuntimeError, match="graph pass failed"):
        store.graph_sync()
    assert store.count_spans() == 1
    assert store.graph_backlog() == 1  # nothing lost: still queued
    monkeypatch.undo()
    store.close()

    restarted = open_store(store_url)  # e.g. the collector was killed before its graph pass ran
    try:
        restarted.migrate()
        assert restarted.graph_sync() == 1
        assert [t.id for t in txns(restarted, default)] == [send.trace_id.hex()]
        assert raw(store_url, "SELECT count(*) FROM graph_backlog") == [(0,)]
    finally:
        restarted.close()


def no_background_pass(store: SpanStore) -> None:
    """Stop the store's own background pass: the test runs the passes it describes itself."""
    cast(Any, store)._graph.stop()


def test_a_pass_stopped_between_deriving_and_writing_leaves_its_batches_queued(
    store: SpanStore, store_url: str, default: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hoptrace.collector.store.postgres as pg_module
    import hoptrace.collector.store.sqlite as sqlite_module

    def crash(*_: Any, **__: Any) -> bool:
        raise RuntimeError("killed after deriving, before the write transaction")

    no_background_pass(store)
    for module in (sqlite_module, pg_module):
        monkeypatch.setattr(module, "apply_backlog", crash)
    send, consume = sqs_send("c-1", BASE), sqs_consume("c-1", BASE + S)
    store.write([(default, fn_batch([send], "api")), (default, fn_batch([consume], "worker"))])
    with pytest.raises(RuntimeError, match="killed after deriving"):
        store.graph_sync()
    assert store.graph_backlog() == 2
    assert store.search_transactions(default, TransactionQuery()) == []
    monkeypatch.undo()
    assert store.graph_sync() == 2
    (txn,) = txns(store, default)
    assert txn.trace_ids == (send.trace_id.hex(), consume.trace_id.hex())


def test_two_passes_deriving_the_same_batches_count_them_once(
    store: SpanStore, default: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hoptrace.collector.store.postgres as pg_module
    import hoptrace.collector.store.sqlite as sqlite_module

    module = sqlite_module if isinstance(store, sqlite_module.SqliteStore) else pg_module
    real = module.prepare_backlog
    raced: list[int] = []

    def racing(*args: Any, **kwargs: Any) -> Any:
        prepared = real(*args, **kwargs)
        if prepared is not None and not raced:
            raced.append(prepared.size)
            assert store.graph_sync() == prepared.size  # another pass takes the same batches and commits
        return prepared

    no_background_pass(store)
    monkeypatch.setattr(module, "prepare_backlog", racing)
    store.write([(default, fn_batch([sqs_send("r-1", BASE)], "api"))])
    store.write([(default, fn_batch([sqs_consume("r-1", BASE + S)], "worker"))])
    assert store.graph_sync() == 0  # its batches were gone when it came to write: nothing written twice
    assert raced == [2]
    assert store.graph_backlog() == 0
    nodes, edges = store.graph_window(default, BASE - S, BASE + 60 * S)
    assert edges[("queue:orders", "function:worker", "deliver")].count == 1
    assert nodes["function:worker"].count == 1
    (txn,) = txns(store, default)
    assert txn.hops == 1


def test_a_pass_that_derived_spans_retention_deleted_meanwhile_writes_nothing_of_them(
    store: SpanStore, store_url: str, default: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hoptrace.collector.store.postgres as pg_module
    import hoptrace.collector.store.sqlite as sqlite_module

    module = sqlite_module if isinstance(store, sqlite_module.SqliteStore) else pg_module
    real = module.prepare_backlog
    raced: list[int] = []

    def racing(*args: Any, **kwargs: Any) -> Any:
        prepared = real(*args, **kwargs)
        if prepared is not None and not raced:
            raced.append(prepared.size)
            store.delete_before(BASE + 300 * S)  # retention runs after it derived, before it writes
        return prepared

    no_background_pass(store)
    monkeypatch.setattr(module, "prepare_backlog", racing)
    old, new = sqs_send("old", BASE), sqs_send("new", BASE + 600 * S)
    store.write([(default, fn_batch([old], "api")), (default, fn_batch([new], "api"))])
    assert store.graph_sync() == 2  # the batches once more, under their new ids: the old span is gone
    assert raced == [2]
    assert [t.id for t in txns(store, default)] == [new.trace_id.hex()]
    assert raw(store_url, "SELECT count(*) FROM trace_facts") == [(1,)]
    assert store.graph_window(default, BASE - S, BASE + 60 * S) == ({}, {})


def test_the_background_pass_derives_the_graph_without_being_asked(store: SpanStore, default: int) -> None:
    send = sqs_send("bg-1", BASE)
    store.write([(default, fn_batch([send], "api"))])
    deadline = time.monotonic() + 60
    while store.graph_backlog() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.graph_backlog() == 0
    assert [t.id for t in store.search_transactions(default, TransactionQuery())] == [send.trace_id.hex()]


def test_pending_hop_keys_are_matched_through_their_index(store: SpanStore, store_url: str, default: int) -> None:
    store.write([(default, fn_batch([sqs_send(f"i-{i}", BASE + i * MS) for i in range(50)], "api"))])
    lookup = "SELECT span_id FROM hop_keys WHERE project_id = 1 AND key IN ('sqs:msg:i-1', 'sqs:msg:i-2')"
    if store_url.startswith("sqlite:"):
        plan = " ".join(str(r) for r in raw(store_url, "EXPLAIN QUERY PLAN " + lookup))
    else:
        with psycopg.connect(store_url, autocommit=True) as pg:
            pg.execute("SET enable_seqscan = off")
            plan = " ".join(str(r) for r in pg.execute("EXPLAIN " + lookup).fetchall())
    assert "hop_keys_by_key" in plan


def test_retention_removes_the_graph_facts_of_old_spans(store: SpanStore, store_url: str, default: int) -> None:
    store.write([(default, fn_batch([sqs_send("old", BASE)], "api"))])
    store.write([(default, fn_batch([sqs_consume("old", BASE + S)], "worker"))])
    new = sqs_send("new", BASE + 600 * S)
    store.write([(default, fn_batch([new], "api"))])
    store.delete_before(BASE + 300 * S)
    assert [t.id for t in txns(store, default)] == [new.trace_id.hex()]
    assert raw(store_url, "SELECT count(*) FROM hop_keys") == [(2,)]  # the new send's parent and message keys
    assert raw(store_url, "SELECT count(*) FROM hops") == [(0,)]
    assert synced(store).graph_window(default, BASE - S, BASE + 60 * S) == ({}, {})


def test_two_spans_of_one_consumer_trace_joined_in_one_write_make_one_delivery(store: SpanStore, default: int) -> None:
    send = sqs_send("d-1", BASE)
    invocation = sqs_consume("d-1", BASE + S)
    record = span("orders process", trace_id=invocation.trace_id, parent=invocation.span_id, kind=CONSUMER,
                  start_ns=BASE + S + MS, attributes={"messaging.system": "aws_sqs",
                  "messaging.destination.name": "orders", "hoptrace.pointers": ["sqs:msg:d-1"]})  # fmt: skip
    store.write([(default, fn_batch([send], "api")), (default, fn_batch([invocation, record], "worker"))])
    (txn,) = txns(store, default)
    assert txn.trace_ids == (send.trace_id.hex(), invocation.trace_id.hex())
    assert txn.hops == 1


def test_a_window_over_whole_hours_and_ragged_ends_counts_every_minute_once(store: SpanStore, default: int) -> None:
    hour = (BASE // (3600 * S) - 5) * 3600 * S  # an hour boundary, five hours back
    offsets = [10, 59, 60, 61, 119, 120, 125, 179, 181]  # minutes after it
    for i, minute in enumerate(offsets):
        store.write([(default, fn_batch([sqs_send(f"h-{i}", hour + minute * 60 * S + S)], "api"))])

    def count(first_minute: int, last_minute: int) -> int:
        _, edges = synced(store).graph_window(default, hour + first_minute * 60 * S, hour + last_minute * 60 * S)
        rollup = edges.get(("function:api", "queue:orders", "publish"))
        return rollup.count if rollup else 0

    for first, last in [(0, 240), (5, 185), (60, 120), (61, 121), (59, 180), (11, 59), (120, 121)]:
        assert count(first, last) == sum(first <= m < last for m in offsets), (first, last)


def test_migrating_to_hourly_rollups_fills_them_from_the_minutes(store: SpanStore, store_url: str) -> None:
    project = store.project("default")
    assert project is not None
    hour = (BASE // (3600 * S) - 3) * 3600 * S
    for i in range(6):
        store.write([(project.id, fn_batch([sqs_send(f"m-{i}", hour + i * 20 * 60 * S)], "api"))])
    store.graph_sync()
    store.close()
    # The database as hoptrace left it before migration 4 (hourly rows did not exist, nor the
    # cold start and timeout columns of migration 5).
    statements = ["DROP TABLE node_rollups_hourly", "DROP TABLE edge_rollups_hourly",
                  "DELETE FROM schema_version WHERE version >= 4"]  # fmt: skip
    statements += ["DROP TABLE node_rollups_10m", "DROP TABLE edge_rollups_10m"]  # migration 13
    statements += [
        f"ALTER TABLE {t}_rollups DROP COLUMN {c}" for t in ("node", "edge") for c in ("cold_starts", "timeouts")
    ]
    statements.append("DROP INDEX transactions_by_duration")
    # … nor the term index of migration 6, and its terms were in migration 1's table (12 keys them by day).
    blob = "BLOB" if store_url.startswith("sqlite:") else "BYTEA"
    statements += [
        f"CREATE TABLE span_terms_v1 (project_id INTEGER NOT NULL, value TEXT NOT NULL, key TEXT NOT NULL,"
        f" trace_id {blob} NOT NULL, span_id {blob} NOT NULL, start_ns BIGINT NOT NULL)",
        "INSERT INTO span_terms_v1 SELECT project_id, value, key, trace_id, span_id, start_ns FROM span_terms",
        "DROP TABLE span_terms", "DROP TABLE term_days", "ALTER TABLE span_terms_v1 RENAME TO span_terms",
        "CREATE INDEX span_terms_by_value ON span_terms (project_id, value, key)",
        "CREATE INDEX span_terms_by_start ON span_terms (start_ns)",
    ]  # fmt: skip
    statements += [f"DROP TABLE {table}" for table in ISSUES_TABLES + HEALTH_TABLES]  # migrations 7 and 8
    statements.append("DROP TABLE logs")  # migration 11
    statements.append("DROP TABLE invocation_starts")  # migration 15
    if store_url.startswith("sqlite:"):
        with closing(sqlite3.connect(store_url[len("sqlite:///") :])) as conn, conn:
            for statement in statements:
                conn.execute(statement)
    else:
        with psycopg.connect(store_url, autocommit=True) as pg:
            for statement in statements:
                pg.execute(statement)
    upgraded = open_store(store_url)
    try:
        assert upgraded.migrate() == LATEST
        _, edges = upgraded.graph_window(project.id, hour, hour + 3 * 3600 * S)
        assert edges[("function:api", "queue:orders", "publish")].count == 6
        assert edges[("function:api", "queue:orders", "publish")].latency.count == 6
        # Ragged ends: minutes 20 and 40 from the ten-minute rows (migration 13), 60-100 from the hour.
        _, edges = upgraded.graph_window(project.id, hour + 5 * 60 * S, hour + 175 * 60 * S)
        assert edges[("function:api", "queue:orders", "publish")].count == 5
        found = upgraded.search_spans(project.id, SpanQuery(terms=(("message", "m-3"),)))
        assert [s.start_ns for s in found] == [hour + 3 * 20 * 60 * S]
        assert upgraded.search_spans(project.id, SpanQuery(terms=((None, "sqs:msg:m-4"),)))
    finally:
        upgraded.close()


def test_a_batch_sent_twice_counts_once_in_the_graph(store: SpanStore, default: int) -> None:
    send, consume = sqs_send("twice", BASE), sqs_consume("twice", BASE + S)
    consume.status.code = Status.STATUS_CODE_ERROR
    sent = fn_batch([send], "api")
    store.write([(default, sent)])
    synced(store)
    store.write([(default, sent), (default, fn_batch([consume], "worker"))])  # resent, with more
    store.write([(default, fn_batch([consume], "worker"))])  # and the consumer's batch resent too
    (txn,) = txns(store, default)
    assert (txn.errors, txn.hops) == (1, 1)
    _, edges = synced(store).graph_window(default, BASE - 60 * S, BASE + 60 * S)
    assert edges[("function:api", "queue:orders", "publish")].count == 1
    assert edges[("queue:orders", "function:worker", "deliver")].count == 1


def sns_publish(message_id: str, start_ns: int) -> Span:
    return span("SNS.Publish", kind=PRODUCER, start_ns=start_ns, duration_ms=5, attributes={
        "messaging.system": "aws_sns", "messaging.destination.name": "order-placed",
        "messaging.operation.type": "publish", "hoptrace.pointers": [f"sns:msg:{message_id}"]})  # fmt: skip


def queue_consume(queue: str, pointer: str, start_ns: int, error: bool = False, receive_count: int = 1) -> Span:
    """A single-record SQS invocation with its context lost: joined by the pointer only."""
    return span(f"{queue} process", kind=CONSUMER, start_ns=start_ns, duration_ms=20, error=error, attributes={
        "faas.trigger": "pubsub", "hoptrace.trigger.source": "aws:sqs", "messaging.system": "aws_sqs",
        "messaging.destination.name": queue, "hoptrace.pointers": [pointer],
        "hoptrace.messaging.receive_count": receive_count})  # fmt: skip


def test_a_topic_delivering_to_two_subscribed_queues_draws_its_deliver_edges(store: SpanStore, default: int) -> None:
    """No span stands for SNS handing a message to a subscribed queue: the hop from the publish to
    each queue's consumer draws topic → queue, once per delivered message."""
    published = [sns_publish(f"sns-{i}", BASE + i * MS) for i in range(3)]
    store.write([(default, fn_batch(published, "checkout-worker"))])
    notified = [queue_consume("notify", f"sns:msg:sns-{i}", BASE + S + i * MS) for i in range(3)]
    store.write([(default, fn_batch(notified, "notify-customer"))])
    analysed = [queue_consume("analytics", f"sns:msg:sns-{i}", BASE + S + i * MS) for i in range(2)]
    store.write([(default, fn_batch(analysed, "analytics-ingest"))])

    _, edges = synced(store).graph_window(default, BASE - 60 * S, BASE + 120 * S)
    assert edges[("function:checkout-worker", "topic:order-placed", "publish")].count == 3
    assert edges[("topic:order-placed", "queue:notify", "deliver")].count == 3
    assert edges[("topic:order-placed", "queue:analytics", "deliver")].count == 2
    assert edges[("queue:notify", "function:notify-customer", "deliver")].count == 3
    assert ("topic:order-placed", "function:notify-customer", "deliver") not in edges  # the queue stands between


def test_a_message_every_consumer_failed_leaves_its_transaction_incomplete(store: SpanStore, default: int) -> None:
    """Every attempt failed (SQS moved the message to its dead-letter queue): never consumed. A
    message whose second attempt succeeded was."""
    dead, retried = sqs_send("m-dead", BASE), sqs_send("m-retried", BASE + MS)
    store.write([(default, fn_batch([dead, retried], "api"))])
    attempts = [
        queue_consume("orders", "sqs:msg:m-dead", BASE + S, error=True),
        queue_consume("orders", "sqs:msg:m-dead", BASE + 2 * S, error=True, receive_count=2),
        queue_consume("orders", "sqs:msg:m-retried", BASE + S, error=True),
        queue_consume("orders", "sqs:msg:m-retried", BASE + 2 * S, receive_count=2),
    ]
    store.write([(default, fn_batch(attempts, "worker"))])

    found = {t.root_trace_id: t for t in txns(store, default)}
    assert set(found) == {dead.trace_id.hex(), retried.trace_id.hex()}
    assert found[dead.trace_id.hex()].incomplete is True
    assert found[retried.trace_id.hex()].incomplete is False
    assert [t.root_trace_id for t in txns(store, default, status="incomplete")] == [dead.trace_id.hex()]


def test_a_label_on_one_record_of_a_shared_batch_finds_only_that_records_transaction(
    store: SpanStore, default: int
) -> None:
    """A stream batch carries no context: its trace belongs to each transaction whose write it read.
    A label set while processing one record belongs to that record's transaction alone."""
    sends = [sqs_send(f"m-{i}", BASE + i * MS) for i in range(3)]
    store.write([(default, fn_batch(sends, "api"))])
    invocation = span("totals", kind=CONSUMER, start_ns=BASE + S, duration_ms=50, attributes={
        "faas.trigger": "pubsub", "hoptrace.trigger.source": "aws:sqs", "messaging.system": "aws_sqs",
        "messaging.destination.name": "orders", "messaging.batch.message_count": 3})  # fmt: skip
    records = [
        span("orders process", trace_id=invocation.trace_id, parent=invocation.span_id, kind=CONSUMER,
             start_ns=BASE + S + i * MS, duration_ms=5, attributes={
                 "messaging.system": "aws_sqs", "messaging.destination.name": "orders",
                 "hoptrace.pointers": [f"sqs:msg:m-{i}"], "hoptrace.label.order_id": f"order-{i}"})
        for i in range(3)
    ]  # fmt: skip
    store.write([(default, fn_batch([invocation, *records], "totals"))])

    for i, send in enumerate(sends):
        found = txns(store, default, labels=(("order_id", f"order-{i}"),))
        assert [t.root_trace_id for t in found] == [send.trace_id.hex()]
        assert invocation.trace_id.hex() in found[0].trace_ids  # the batch trace is shared, still
        assert [t.root_trace_id for t in txns(store, default, text=f"order-{i}")] == [send.trace_id.hex()]
