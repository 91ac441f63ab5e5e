"""Functions list, per-minute series, function cold starts/timeouts on the map and sorted transaction
pages, through a running collector (``hoptrace serve``) on SQLite and PostgreSQL, from spans sent
as OTLP/JSON the way an SDK sends them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.collector_server import CollectorProcess
from tests.integration.test_graph_api import get, settle
from tests.pg import create_database

S, MS = 10**9, 10**6
MINUTE = 60 * S
NOW = time.time_ns()
T0 = (NOW - 20 * MINUTE) // MINUTE * MINUTE  # minutes ago, on a minute: inside the default last hour
LAMBDA = {"cloud.platform": "aws_lambda", "cloud.provider": "aws", "telemetry.distro.name": "hoptrace"}
# (minute, second, duration ms, status, cold start, timed out): three invocations of "checkout"
INVOCATIONS = [(0, 1, 40, 0, True, False), (0, 5, 900, 2, False, True), (2, 0, 60, 0, False, False)]


def _value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    return {"stringValue": str(v)}


def _attrs(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _value(v)} for k, v in d.items()]


def _request() -> dict[str, Any]:
    spans = []
    for i, (minute, second, ms, status, cold, timeout) in enumerate(INVOCATIONS):
        start = T0 + minute * MINUTE + second * S
        attributes = {"faas.trigger": "http", "http.request.method": "POST", "http.route": "/checkout",
                      "faas.coldstart": cold, "hoptrace.faas.timeout": timeout}  # fmt: skip
        spans.append({
            "traceId": f"{i + 1:032x}", "spanId": f"{i + 1:016x}", "name": "POST /checkout", "kind": 2,
            "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + ms * MS),
            "attributes": _attrs(attributes), "status": {"code": status},
        })  # fmt: skip
    resource = {"service.name": "checkout", "faas.name": "checkout", **LAMBDA}
    return {"resourceSpans": [{"resource": {"attributes": _attrs(resource)}, "scopeSpans": [{"spans": spans}]}]}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('functions') / 'functions.db'}"
    else:
        url = create_database(request.getfixturevalue("postgres_url"))
    with CollectorProcess(url) as collector, collector.client() as client:
        sent = client.post("/v1/traces", json=_request())
        assert sent.status_code == 200, sent.text
        settle(client)
        yield client


def test_functions_list_invocations_errors_latency_cold_starts_timeouts_and_last_seen(api: httpx.Client) -> None:
    (fn,) = get(api, "/api/v1/functions")["functions"]
    assert (fn["id"], fn["name"], fn["invocations"], fn["errors"], fn["throttles"]) == (
        "function:checkout", "checkout", 3, 1, 0)  # fmt: skip
    assert fn["error_rate"] == round(1 / 3, 6)
    assert (fn["cold_starts"], fn["timeouts"]) == (1, 1)
    assert 59 <= fn["p50_ms"] <= 61  # the sketch is within 1 % of the middle invocation's 60 ms
    node = next(n for n in get(api, "/api/v1/map")["nodes"] if n["id"] == "function:checkout")
    assert [fn[k] for k in ("p50_ms", "p95_ms", "p99_ms")] == [node[k] for k in ("p50_ms", "p95_ms", "p99_ms")]
    minute = time.strftime("%Y-%m-%dT%H:%M", time.gmtime((T0 + 2 * MINUTE) // S))
    assert fn["last_seen"].startswith(minute)
    earlier = get(api, "/api/v1/functions", to=str((T0 + MINUTE) // MS))["functions"]
    assert [(f["invocations"], f["cold_starts"], f["timeouts"]) for f in earlier] == [(2, 1, 1)]
    assert get(api, "/api/v1/functions", to=str(T0 // MS))["functions"] == []


def test_function_nodes_on_the_map_carry_cold_starts_and_timeouts(api: httpx.Client) -> None:
    nodes = {n["id"]: n for n in get(api, "/api/v1/map")["nodes"]}
    assert (nodes["function:checkout"]["cold_starts"], nodes["function:checkout"]["timeouts"]) == (1, 1)
    assert "cold_starts" not in nodes["api:POST /checkout"]  # a resource, not a function


def test_a_series_has_one_point_per_minute_of_the_window_for_a_node_or_an_edge(api: httpx.Client) -> None:
    window = {"from": str(T0 // MS), "to": str((T0 + 3 * MINUTE) // MS)}
    node = get(api, "/api/v1/map/series", node="function:checkout", **window)["series"]
    assert [(p["count"], p["errors"]) for p in node] == [(2, 1), (0, 0), (1, 0)]
    assert node[1]["p95_ms"] is None and 59 <= node[2]["p95_ms"] <= 61
    edge = get(api, "/api/v1/map/series", edge="api:POST /checkout|function:checkout|sync", **window)["series"]
    assert [p["count"] for p in edge] == [2, 0, 1]
    assert api.get("/api/v1/map/series", params=window).status_code == 400
    assert api.get("/api/v1/map/series", params={**window, "edge": "a|b"}).status_code == 400
    wide = api.get("/api/v1/map/series", params={"node": "function:checkout", "from": "0"})
    assert wide.status_code == 400 and "narrow" in wide.text


@pytest.mark.parametrize("sort, expected", [("duration", [0, 2, 1]), ("-duration", [1, 2, 0]),
                                            ("start", [0, 1, 2]), ("-start", [2, 1, 0])])  # fmt: skip
def test_transactions_sorted_by_start_or_duration_page_by_cursor_in_that_order(
    api: httpx.Client, sort: str, expected: list[int]
) -> None:
    ids = [f"{i + 1:032x}" for i in expected]
    assert [t["id"] for t in get(api, "/api/v1/transactions", sort=sort)["transactions"]] == ids
    paged, cursor = [], None
    for _ in range(4):
        page = get(api, "/api/v1/transactions", sort=sort, limit=1, **({"cursor": cursor} if cursor else {}))
        paged += [t["id"] for t in page["transactions"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == ids
    assert api.get("/api/v1/transactions", params={"sort": "name"}).status_code == 422
