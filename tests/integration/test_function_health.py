"""Function health through a running collector on SQLite and PostgreSQL: rollups of a window,
errors split by class, warnings, and the comparison with an earlier window."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest

from tests.collector_server import CollectorProcess
from tests.integration.test_issues_notify import ENV, MINUTE, MS, S, errors, minute_start, send, wait_for
from tests.otlp_build import json_attrs

RESOURCE = {"service.name": "checkout", "faas.name": "checkout", "cloud.platform": "aws_lambda"}


def invocations(start_ns: int, n: int, cold: int = 0, timeout: bool = False) -> dict[str, Any]:
    """``n`` invocations of checkout answering 200 (the first ``cold`` of them cold starts), or
    timed out (ended by the watchdog) when ``timeout``."""
    spans = []
    for i in range(n):
        start = start_ns + i * 100 * MS
        attributes = {"faas.trigger": "http", "http.route": "/orders", "faas.coldstart": i < cold}
        if timeout:
            attributes["hoptrace.faas.timeout"] = True
        else:
            attributes["http.response.status_code"] = 200
        spans.append({
            "traceId": os.urandom(16).hex(), "spanId": os.urandom(8).hex(), "name": "POST /orders", "kind": 2,
            "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + (900 if timeout else 20) * MS),
            "status": {"code": 2 if timeout else 0}, "attributes": json_attrs(attributes),
        })  # fmt: skip
    return {"resourceSpans": [{"resource": {"attributes": json_attrs(RESOURCE)}, "scopeSpans": [{"spans": spans}]}]}


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'health.db'}"
    from tests.pg import create_database

    return create_database(request.getfixturevalue("postgres_url"))


def settled(api: httpx.Client) -> None:
    wait_for("the graph and the issue pass", lambda: api.get("/api/v1/graph/status").json()["backlog_spans"] == 0
             and api.get("/api/v1/issues/status").json()["queued_spans"] == 0)  # fmt: skip


def test_health_of_a_window_splits_errors_by_class_warns_and_compares_with_an_earlier_one(store_url: str) -> None:
    before, after = minute_start(40), minute_start(10)
    with CollectorProcess(store_url, env=ENV) as collector, collector.client() as api:
        send(api, invocations(before, 10, cold=0))
        send(api, errors(2, before + 2 * S))
        send(api, invocations(after, 20, cold=3))
        send(api, errors(3, after + 3 * S))
        send(api, errors(2, after + 4 * S, status=502))
        send(api, invocations(after + 5 * S, 1, timeout=True))
        settled(api)
        window = {"from": str(after // MS), "to": str((after + 5 * MINUTE) // MS)}
        earlier = {"compare_from": str(before // MS), "compare_to": str((before + 5 * MINUTE) // MS)}
        answer = api.get("/api/v1/functions/checkout/health", params={**window, **earlier})
        assert answer.status_code == 200, answer.text
        health = answer.json()
        totals = health["totals"]
        assert health["node"] == "function:checkout"
        assert (totals["invocations"], totals["errors"], totals["cold_starts"], totals["timeouts"]) == (26, 6, 3, 1)
        assert totals["errors_by_class"] == {"exception": 3, "http_5xx": 2, "timeout": 1, "out_of_memory": 0,
                                             "crash": 0, "error": 0}  # fmt: skip
        assert totals["error_rate"] == round(6 / 26, 6) and totals["throttles"] == 0
        assert 19.5 <= totals["p50_ms"] <= 20.5  # 20 of the 26 took 20 ms
        assert [w["kind"] for w in health["warnings"]] == ["cold_starts"]
        assert len(health["series"]) == 5
        assert sum(p["invocations"] for p in health["series"]) == 26
        assert [p["errors_by_class"]["http_5xx"] for p in health["series"]] == [2, 0, 0, 0, 0]

        base = health["compare"]["totals"]
        assert (base["invocations"], base["errors"], base["errors_by_class"]["exception"]) == (12, 2, 2)
        delta = health["delta"]
        assert (delta["invocations"], delta["errors"], delta["cold_starts"], delta["timeouts"]) == (14, 4, 3, 1)
        assert delta["errors_by_class"] == {"exception": 1, "http_5xx": 2, "timeout": 1, "out_of_memory": 0,
                                            "crash": 0, "error": 0}  # fmt: skip

        nothing = api.get("/api/v1/functions/nowhere/health").json()
        assert nothing["totals"]["invocations"] == 0 and nothing["warnings"] == []
        assert api.get("/api/v1/functions/checkout/health", params={"from": "0"}).status_code == 400
        assert api.get("/api/v1/functions/checkout/health", params={"from": "2", "to": "1"}).status_code == 400
