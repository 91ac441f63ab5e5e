"""The query API and access control, in-process: search filters, cursors, projects and tokens."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hoptrace.collector.app import create_app
from hoptrace.collector.auth import create_project
from hoptrace.collector.config import CollectorConfig
from hoptrace.collector.store import open_store
from tests.otlp_build import new_id, request, span

PROTO = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'api.db'}"


@pytest.fixture
def api(db: str) -> Iterator[TestClient]:
    with TestClient(create_app(CollectorConfig(store_url=db))) as client:
        yield client


def post(client: TestClient, spans: list[Any], service: str = "svc", headers: dict[str, str] | None = None) -> Any:
    body = request(spans, service).SerializeToString()
    return client.post("/v1/traces", content=body, headers={**PROTO, **(headers or {})})


def test_search_filters_narrow_results(api: TestClient) -> None:
    now = time.time_ns()
    spans = [
        span("GET /cart", start_ns=now - 50 * 10**9, duration_ms=5, attributes={"hoptrace.label.order_id": "o-1"}),
        span("GET /cart", start_ns=now - 40 * 10**9, duration_ms=500, error=True),
        span("POST /checkout", start_ns=now - 30 * 10**9, duration_ms=50, attributes={"faas.invocation_id": "req-9"}),
    ]
    assert post(api, spans, service="cart").status_code == 200
    assert post(api, [span("other", start_ns=now - 20 * 10**9)], service="totals").status_code == 200

    def names(**params: Any) -> list[str]:
        response = api.get("/api/v1/spans", params=params)
        assert response.status_code == 200, response.text
        return [s["name"] for s in response.json()["spans"]]

    assert names(service="cart") == ["POST /checkout", "GET /cart", "GET /cart"]
    assert names(service="cart", status="error") == ["GET /cart"]
    assert names(min_ms=40, max_ms=100) == ["POST /checkout"]
    assert names(**{"label.order_id": "o-1"}) == ["GET /cart"]
    assert names(q="req-9") == ["POST /checkout"]
    assert names(name="other") == ["other"]
    assert names(**{"from": str((now - 35 * 10**9) // 10**6)}) == ["other", "POST /checkout"]
    to = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((now - 45 * 10**9) / 1e9)) + "Z"
    assert names(to=to) == ["GET /cart"]
    trace_id = spans[0].trace_id.hex()
    assert names(q=trace_id) == ["GET /cart"]


def test_cursor_pagination_walks_every_span_once(api: TestClient) -> None:
    base = time.time_ns() - 100 * 10**9
    posted = [span(f"op{i}", start_ns=base + (i // 3) * 10**6) for i in range(25)]  # ties on start time
    assert post(api, posted).status_code == 200
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 7}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/api/v1/spans", params=params).json()
        seen.extend(s["span_id"] for s in page["spans"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(s.span_id.hex() for s in posted)
    assert len(seen) == len(set(seen))


def test_trace_fetch_returns_ids_in_lowercase_hex_and_404_for_unknown(api: TestClient) -> None:
    root = span("root")
    child = span("child", trace_id=root.trace_id, parent=root.span_id, attributes={"k": [1, 2]})
    assert post(api, [child, root]).status_code == 200
    body = api.get(f"/api/v1/traces/{root.trace_id.hex().upper()}").json()
    assert [s["name"] for s in body["spans"]] == ["root", "child"]
    assert body["spans"][1]["parent_span_id"] == root.span_id.hex()
    assert body["spans"][1]["attributes"]["k"] == [1, 2]
    assert api.get(f"/api/v1/traces/{new_id(16).hex()}").status_code == 404
    assert api.get("/api/v1/traces/xyz").status_code == 400


def test_search_parameters_carrying_sql_are_inert(api: TestClient) -> None:
    nasty = "x' OR 1=1 --"
    assert post(api, [span("a", attributes={"hoptrace.label.note": nasty})]).status_code == 200
    assert post(api, [span("b")]).status_code == 200
    for params in (
        {"service": "svc' OR '1'='1"},
        {"name": "a'; DROP TABLE spans; --"},
        {"label.note": "nothing' OR 1=1 --"},
        {"q": "' UNION SELECT * FROM tokens --"},
    ):
        response = api.get("/api/v1/spans", params=params)
        assert response.status_code == 200
        assert response.json()["spans"] == []
    found = api.get("/api/v1/spans", params={"label.note": nasty}).json()["spans"]
    assert [s["name"] for s in found] == ["a"]
    assert len(api.get("/api/v1/spans").json()["spans"]) == 2  # the table is intact


def test_bad_parameters_get_a_400_that_says_what_was_wrong(api: TestClient) -> None:
    response = api.get("/api/v1/spans", params={"from": "yesterday"})
    assert response.status_code == 400
    assert "from" in response.json()["detail"]
    assert api.get("/api/v1/spans", params={"cursor": "zz"}).status_code == 400
    assert api.get("/api/v1/spans", params={"status": "bogus"}).status_code == 422


def test_services_lists_counts_and_error_rates(api: TestClient) -> None:
    post(api, [span("a"), span("b", error=True)], service="cart")
    post(api, [span("c")], service="totals")
    services = {s["name"]: s for s in api.get("/api/v1/services").json()["services"]}
    assert set(services) == {"cart", "totals"}
    assert services["cart"]["spans"] == 2
    assert services["cart"]["errors"] == 1
    assert services["cart"]["error_rate"] == 0.5


def test_tokens_map_spans_to_projects_and_a_read_token_sees_only_its_own(db: str) -> None:
    store = open_store(db)
    store.migrate()
    _, ingest_a, read_a = create_project(store, "team-a")
    _, ingest_b, read_b = create_project(store, "team-b")
    store.close()
    with TestClient(create_app(CollectorConfig(store_url=db))) as api:
        secret = span("a-secret", attributes={"hoptrace.label.customer": "acme"})
        assert post(api, [secret], headers={"Authorization": f"Bearer {ingest_a}"}).status_code == 200
        assert post(api, [span("b-span")], headers={"x-hoptrace-token": ingest_b}).status_code == 200
        assert post(api, [span("anon")]).status_code == 401
        assert post(api, [span("wrong")], headers={"Authorization": f"Bearer {read_a}"}).status_code == 403

        def get(path: str, token: str | None, **params: Any) -> Any:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return api.get(path, params=params, headers=headers)

        assert [s["name"] for s in get("/api/v1/spans", read_a).json()["spans"]] == ["a-secret"]
        assert [s["name"] for s in get("/api/v1/spans", read_b).json()["spans"]] == ["b-span"]
        assert get("/api/v1/spans", read_b, **{"label.customer": "acme"}).json()["spans"] == []
        assert get(f"/api/v1/traces/{secret.trace_id.hex()}", read_b).status_code == 404
        assert get(f"/api/v1/traces/{secret.trace_id.hex()}", read_a).status_code == 200
        assert [s["name"] for s in get("/api/v1/services", read_b).json()["services"]] == ["svc"]
        assert get("/api/v1/spans", None).status_code == 401
        assert get("/api/v1/spans", ingest_a).status_code == 403
        assert get("/api/v1/spans", "not-a-token").status_code == 401


def test_openapi_is_served_at_docs(api: TestClient) -> None:
    assert api.get("/docs").status_code == 200
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/v1/traces", "/api/v1/spans", "/api/v1/traces/{trace_id}", "/api/v1/services"} <= set(paths)
