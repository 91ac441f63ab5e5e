"""Function health figures and warnings through a running collector on SQLite and PostgreSQL:
init duration, peak memory, time used against the deadline, concurrency, retries and record age
rolled up per minute from invocation spans (as the instrumentation writes them), compared with
an earlier window; and warnings raised as issues of kind ``warning``, once per window."""

from __future__ import annotations

import os
import time
from typing import Any

import httpx
import pytest

from tests.collector_server import CollectorProcess
from tests.integration.test_issues_notify import ENV, MINUTE, MS, S, errors, minute_start, send, wait_for
from tests.otlp_build import json_attrs

MIB = 2**20


def invocation(start_ns: int, duration_ms: float, **attributes: Any) -> dict[str, Any]:
    """One SQS-triggered invocation span with the given ``hoptrace.faas.*`` etc."""
    attrs = {"faas.trigger": "pubsub", "messaging.system": "aws_sqs", "messaging.operation.type": "process",
             "messaging.destination.name": "orders", "faas.max_memory": 128 * MIB, **attributes}  # fmt: skip
    return {
        "traceId": os.urandom(16).hex(), "spanId": os.urandom(8).hex(), "name": "orders process", "kind": 5,
        "startTimeUnixNano": str(start_ns), "endTimeUnixNano": str(start_ns + int(duration_ms * MS)),
        "status": {"code": 0}, "attributes": json_attrs(attrs),
    }  # fmt: skip


def request(spans: list[dict[str, Any]], function: str = "worker") -> dict[str, Any]:
    resource = {"service.name": function, "faas.name": function, "cloud.platform": "aws_lambda"}
    return {"resourceSpans": [{"resource": {"attributes": json_attrs(resource)}, "scopeSpans": [{"spans": spans}]}]}


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'figures.db'}"
    from tests.pg import create_database

    return create_database(request.getfixturevalue("postgres_url"))


def settled(api: httpx.Client) -> None:
    def done() -> bool:
        idle = {"queued_spans": 0, "pending_notifications": 0}
        graph: dict[str, Any] = api.get("/api/v1/graph/status").json()
        return graph["backlog_spans"] == 0 and bool(api.get("/api/v1/issues/status").json() == idle)

    wait_for("the graph and the issue pass", done)


def health(api: httpx.Client, function: str, start: int, minutes: int, **compare: int) -> dict[str, Any]:
    params = {"from": str(start // MS), "to": str((start + minutes * MINUTE) // MS)}
    params.update({k: str(v // MS) for k, v in compare.items()})
    answer = api.get(f"/api/v1/functions/{function}/health", params=params)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_health_figures_roll_up_per_minute_count_a_resent_batch_once_and_compare(store_url: str) -> None:
    before, now = minute_start(40), minute_start(10)
    earlier = [invocation(before + i * S, 100, **{"hoptrace.faas.peak_memory": 40 * MIB}) for i in range(4)]
    # Minute 0: three cold starts (init 200, 400 and 600 ms), four invocations of 2 s each, all four
    # running at once during seconds 10-11 (one second each of busy time 4000 ms); one retry.
    minute0 = [
        invocation(now + 10 * S, 2000, **{"faas.coldstart": True, "hoptrace.faas.init_ms": 200.0,
                                          "hoptrace.faas.peak_memory": 60 * MIB, "hoptrace.faas.deadline_ms": 10_000,
                                          "hoptrace.faas.record_age_ms": 1_500}),
        invocation(now + 10 * S, 2000, **{"faas.coldstart": True, "hoptrace.faas.init_ms": 400.0,
                                          "hoptrace.faas.peak_memory": 100 * MIB, "hoptrace.faas.deadline_ms": 10_000,
                                          "hoptrace.faas.record_age_ms": 30_000}),
        invocation(now + 10 * S, 2000, **{"hoptrace.faas.retry": True, "hoptrace.faas.deadline_ms": 4_000}),
        invocation(now + 10 * S, 2000, **{"faas.coldstart": True, "hoptrace.faas.init_ms": 600.0}),
    ]  # fmt: skip
    # Minute 1: one invocation running from second 59.5 of minute 1 into minute 2 (1 s).
    minute1 = [invocation(now + MINUTE + 59_500 * MS, 1000, **{"hoptrace.faas.record_age_ms": 500})]
    with CollectorProcess(store_url, env=ENV) as collector, collector.client() as api:
        send(api, request(earlier))
        send(api, request(minute0))
        send(api, request(minute1))
        settled(api)
        send(api, request(minute0))  # resent (its acknowledgement was lost): counted once
        settled(api)
        h = health(api, "worker", now, 3, compare_from=before, compare_to=before + 3 * MINUTE)
        t = h["totals"]
        assert t["invocations"] == 5 and t["cold_starts"] == 3 and t["retries"] == 1
        assert 396 <= t["init_p50_ms"] <= 404 and 396 <= t["init_p95_ms"] <= 606  # of 200, 400 and 600 ms
        assert t["memory_peak_bytes"] == 100 * MIB and t["memory_limit_bytes"] == 128 * MIB
        assert t["memory_share_max"] == round(100 / 128, 4) and t["memory_near_limit"] == 0
        assert t["deadline_share_max"] == 0.5 and t["near_timeout"] == 0  # 2 s of the 4 s the retry had
        assert t["record_age_max_ms"] == 30_000 and 1_485 <= t["record_age_p95_ms"] <= 1_515  # of 500, 1500, 30000
        # 4 × 2 s + 1 s busy over 3 minutes; the busiest second had all four running.
        assert t["concurrency_avg"] == round(9 / 180, 3) and t["concurrency_peak"] == 4.0
        series = h["series"]
        assert [p["concurrency_peak"] for p in series] == [4.0, 0.5, 0.5]  # half a second each side
        assert [p["retries"] for p in series] == [1, 0, 0]
        assert [p["record_age_max_ms"] for p in series] == [30_000, 500, None]
        assert series[0]["concurrency_avg"] == round(8 / 60, 3)
        base = h["compare"]["totals"]
        assert base["memory_peak_bytes"] == 40 * MIB and base["init_p95_ms"] is None
        assert h["delta"]["memory_peak_bytes"] == 60 * MIB and h["delta"]["retries"] == 1
        assert h["delta"]["init_p95_ms"] is None  # nothing to compare with
        # Nothing above a threshold here: no warning issue.
        assert api.get("/api/v1/issues", params={"kind": "warning"}).json()["issues"] == []


def test_warnings_are_issues_raised_once_per_window_and_follow_the_rules(store_url: str) -> None:
    start = minute_start(20)
    env = {**ENV, "HOPTRACE_RECORD_AGE_WARN": "1m"}
    with CollectorProcess(store_url, env=env) as collector, collector.client() as api:
        # Memory: 3 invocations above 95 % of 128 MiB over two minutes: one warning, counted once.
        near = [invocation(start + i * 40 * S, 50, **{"hoptrace.faas.peak_memory": 125 * MIB}) for i in range(3)]
        # Near the timeout: 2.9 s of the 3 s the invocation had.
        slow = [invocation(start + 5 * S, 2900, **{"hoptrace.faas.deadline_ms": 3000})]
        # Record age: 90 s, above the 1 minute configured; 30 s is not.
        aged = [invocation(start + 6 * S, 10, **{"hoptrace.faas.record_age_ms": 90_000}),
                invocation(start + 7 * S, 10, **{"hoptrace.faas.record_age_ms": 30_000})]  # fmt: skip
        send(api, request(near + slow + aged))
        # Cold starts: 2 of 100 invocations of "api" (2 %, above 1 %); throttles: 5 % (below 10 %).
        calls = [invocation(start + i * 100 * MS, 10, **{"faas.coldstart": i < 2}) for i in range(100)]
        for i in range(5):
            calls[50 + i]["attributes"] += json_attrs({"hoptrace.throttled": True})
        send(api, request(calls, function="api"))
        # Throttles: 8 of 60 invocations of "payments" (13 %, above 10 %): one answered 429, the
        # rest flagged by the instrumentation (AWS throttling errors).
        paid = [invocation(start + i * 100 * MS, 10) for i in range(60)]
        paid[0]["attributes"] += json_attrs({"http.response.status_code": 429})
        for i in range(1, 8):
            paid[i]["attributes"] += json_attrs({"hoptrace.throttled": True})
        send(api, request(paid, function="payments"))
        # A new error type in a function that failed before (the first type does not warn).
        send(api, errors(2, start + 8 * S, exc_type="PaymentError"))
        send(api, errors(1, start + 9 * S, exc_type="RefundError"))
        send(api, errors(1, start + 10 * S, exc_type="RefundError", line=40))
        settled(api)
        found = api.get("/api/v1/issues", params={"kind": "warning"}).json()["issues"]
        by = {(i["functions"][0], i["subtype"]): i for i in found}
        assert sorted(by) == [("api", "cold_starts"), ("checkout", "new_error_type"), ("payments", "throttles"),
                              ("worker", "memory"), ("worker", "near_timeout"), ("worker", "record_age")]  # fmt: skip
        throttled = api.get(f"/api/v1/issues/{by[('payments', 'throttles')]['id']}").json()
        assert throttled["occurrences"][0]["message"].startswith("8 throttled of 60 invocations")
        assert all(i["count"] == 1 and i["status"] == "open" for i in found)
        assert by[("worker", "memory")]["title"] == "worker: memory above 95 % of the configured size"
        detail = api.get(f"/api/v1/issues/{by[('worker', 'record_age')]['id']}").json()
        assert "90.0 s old" in detail["occurrences"][0]["message"]
        assert detail["occurrences"][0]["trace_id"] == aged[0]["traceId"]  # the oldest record's invocation
        new_type = api.get(f"/api/v1/issues/{by[('checkout', 'new_error_type')]['id']}").json()
        assert new_type["occurrences"][0]["message"].startswith("RefundError raised in checkout for the first time")

        # More of the same within the 15-minute window: not counted again (no flapping) …
        send(api, request([invocation(start + 3 * MINUTE, 50, **{"hoptrace.faas.peak_memory": 127 * MIB})]))
        settled(api)
        memory = api.get(f"/api/v1/issues/{by[('worker', 'memory')]['id']}").json()
        assert memory["count"] == 1
        # … after it, counted: resolved, it comes back as a regression.
        assert api.post(f"/api/v1/issues/{memory['id']}/status", json={"status": "resolved"}).status_code == 200
        send(api, request([invocation(time.time_ns(), 50, **{"hoptrace.faas.peak_memory": 127 * MIB})]))
        settled(api)
        again = api.get(f"/api/v1/issues/{memory['id']}").json()
        assert (again["count"], again["status"], again["regression"]) == (2, "open", True)
        throttles = api.get("/api/v1/issues", params={"kind": "warning", "function": "api"}).json()["issues"]
        assert [i["subtype"] for i in throttles] == ["cold_starts"]  # 5 % throttled stays quiet
        assert api.get("/api/v1/issues", params={"kind": "nonsense"}).status_code == 422
