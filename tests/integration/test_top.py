"""Top-N with trends through a running collector on SQLite and PostgreSQL: functions, API routes
and transaction entries of a window ranked, each against the same window a week earlier; and
the issues list's sparklines counted in the list call itself."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest

from tests.collector_server import CollectorProcess
from tests.integration.test_issues_notify import ENV, MINUTE, MS, errors, minute_start, send, wait_for
from tests.otlp_build import json_attrs

WEEK = 7 * 24 * 60 * MINUTE


def calls(function: str, route: str, start_ns: int, n: int, duration_ms: float, failed: int = 0) -> dict[str, Any]:
    """``n`` API calls of ``route`` served by ``function``, each its own trace (a transaction),
    the first ``failed`` answering 500."""
    spans = []
    method, path = route.split(" ", 1)
    for i in range(n):
        start = start_ns + i * 200 * MS
        status = 500 if i < failed else 200
        spans.append({
            "traceId": os.urandom(16).hex(), "spanId": os.urandom(8).hex(), "name": route, "kind": 2,
            "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + int(duration_ms * MS)),
            "status": {"code": 2 if status >= 500 else 0},
            "attributes": json_attrs({"faas.trigger": "http", "http.route": path, "http.request.method": method,
                                      "http.response.status_code": status}),
        })  # fmt: skip
    resource = {"service.name": function, "faas.name": function, "cloud.platform": "aws_lambda"}
    return {"resourceSpans": [{"resource": {"attributes": json_attrs(resource)}, "scopeSpans": [{"spans": spans}]}]}


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'top.db'}"
    from tests.pg import create_database

    return create_database(request.getfixturevalue("postgres_url"))


def settled(api: httpx.Client) -> None:
    def done() -> bool:
        graph: dict[str, Any] = api.get("/api/v1/graph/status").json()
        return graph["backlog_spans"] == 0 and bool(api.get("/api/v1/issues/status").json()["queued_spans"] == 0)

    wait_for("the graph and the issue pass", done)


def names(ranking: list[dict[str, Any]]) -> list[str]:
    return [item["name"] for item in ranking]


def test_top_ranks_functions_routes_and_entries_week_over_week(store_url: str) -> None:
    now = minute_start(30)
    with CollectorProcess(store_url, env=ENV) as collector, collector.client() as api:
        # This week: checkout slow and failing, cart called most; search new since last week.
        send(api, calls("checkout", "POST /checkout", now, 10, 800, failed=3))
        send(api, calls("cart", "GET /cart", now, 40, 20))
        send(api, calls("search", "GET /search", now, 5, 100))
        # A week earlier: checkout was fast and fine, cart called half as often.
        send(api, calls("checkout", "POST /checkout", now - WEEK, 10, 200))
        send(api, calls("cart", "GET /cart", now - WEEK, 20, 20, failed=2))
        settled(api)
        window = {"from": str(now // MS), "to": str((now + 10 * MINUTE) // MS), "limit": "2"}
        answer = api.get("/api/v1/top", params=window)
        assert answer.status_code == 200, answer.text
        top = answer.json()
        fns = top["functions"]
        assert names(fns["slowest"]) == ["checkout", "search"]  # limit 2
        assert names(fns["most_called"]) == ["cart", "checkout"]
        assert names(fns["most_failing"]) == ["checkout"]  # cart failed only last week
        checkout = fns["slowest"][0]
        assert (checkout["count"], checkout["errors"], checkout["new"]) == (10, 3, False)
        assert 790 <= checkout["p95_ms"] <= 810 and 195 <= checkout["previous"]["p95_ms"] <= 205
        assert 2.9 <= checkout["change"]["p95_ms"] <= 3.1  # four times as slow: +300 %
        assert checkout["change"]["errors"] is None  # none a week earlier: nothing to compare with
        cart = fns["most_called"][0]
        assert (cart["count"], cart["previous"]["count"], cart["change"]["count"]) == (40, 20, 1.0)
        assert fns["slowest"][1]["name"] == "search" and fns["slowest"][1]["new"] is True
        routes = top["routes"]
        assert names(routes["most_called"]) == ["GET /cart", "POST /checkout"]
        assert routes["most_failing"][0]["name"] == "POST /checkout" and routes["most_failing"][0]["errors"] == 3
        entries = top["entries"]
        assert names(entries["most_called"]) == ["GET /cart", "POST /checkout"]
        assert entries["most_failing"][0]["errors"] == 3 and entries["most_called"][0]["previous"]["count"] == 20
        assert top["truncated"] is False
        assert api.get("/api/v1/top", params={"from": "2", "to": "1"}).status_code == 400
        assert api.get("/api/v1/top", params={"from": "0"}).status_code == 400  # longer than 31 days
        documented = api.get("/openapi.json").json()["paths"]["/api/v1/top"]["get"]
        assert "week" in documented["description"] and {p["name"] for p in documented["parameters"]} >= {"from", "to"}


def test_the_issues_list_carries_each_issues_sparkline(store_url: str) -> None:
    start = minute_start(50)
    with CollectorProcess(store_url, env=ENV) as collector, collector.client() as api:
        send(api, errors(3, start, exc_type="PaymentError"))  # 3 in the first bin of 60 minutes / 6
        send(api, errors(2, start + 25 * MINUTE, exc_type="PaymentError"))  # 2 in the third
        send(api, errors(1, start + 45 * MINUTE, line=40))  # another issue, in the fifth
        settled(api)
        window = {"from": str(start // MS), "to": str((start + 60 * MINUTE) // MS), "spark": "6"}
        listed = api.get("/api/v1/issues", params=window).json()["issues"]
        sparks = {i["count"]: i["spark"] for i in listed if i["kind"] == "exception"}
        assert sparks == {5: [3, 0, 2, 0, 0, 0], 1: [0, 0, 0, 0, 1, 0]}
        assert "spark" not in api.get("/api/v1/issues").json()["issues"][0]  # only when asked
        assert api.get("/api/v1/issues", params={"spark": "1000"}).status_code == 422
