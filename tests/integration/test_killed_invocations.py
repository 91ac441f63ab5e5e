"""Invocations that never finished: a sandbox killed mid-invocation (SIGKILL, as Lambda does on
out of memory or at the timeout) or out of memory under ``resource.setrlimit(RLIMIT_AS)``
becomes a killed invocation of the right class, an error in its transaction, after its deadline
plus the grace period, as the collector's HTTP API shows it; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from hoptrace.demo.events import http_api_event
from tests.collector_server import CollectorProcess
from tests.integration.test_issues_notify import send, wait_for
from tests.otlp_build import json_attrs

ROOT = Path(__file__).resolve().parents[2]
GRACE = "1s"
TIMEOUT_MS = 2500


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'killed.db'}"
    from tests.pg import create_database

    return create_database(request.getfixturevalue("postgres_url"))


class Sandbox:
    """``tests/killed_sandbox.py`` in a process of its own, sending to ``collector_url``."""

    def __init__(self, function: str, collector_url: str, watchdog: bool = True) -> None:
        env = {
            **os.environ, "AWS_LAMBDA_FUNCTION_NAME": function, "AWS_REGION": "us-east-1",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector_url, "OTEL_SERVICE_NAME": function,
            "HOPTRACE_WATCHDOG": "true" if watchdog else "false", "PYTHONPATH": str(ROOT),
        }  # fmt: skip
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.killed_sandbox"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
            cwd=ROOT,
        )  # fmt: skip
        assert self.read(60) == {"ready": True}

    def read(self, timeout_s: float) -> dict[str, Any] | None:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else None

    def invoke(self, behaviour: str, event: dict[str, Any], memory_mb: int = 256, rlimit: bool = False) -> str:
        """Start one invocation; its request id."""
        assert self.proc.stdin is not None
        request_id = str(uuid.uuid4())
        request = {"request_id": request_id, "timeout_ms": TIMEOUT_MS, "memory_mb": memory_mb,
                   "behaviour": behaviour, "event": event, "rlimit": rlimit}  # fmt: skip
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()
        return request_id

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def storefront_call(api: httpx.Client) -> tuple[str, dict[str, Any]]:
    """An upstream service's HTTP call (a CLIENT span sent to the collector) and the API Gateway
    event it becomes, carrying its trace context: the killed invocation's transaction."""
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    start = time.time_ns()
    span = {"traceId": trace_id, "spanId": span_id, "name": "POST", "kind": 3,
            "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 2_000_000_000),
            "attributes": json_attrs({"http.request.method": "POST", "url.full": "https://api.shop.test/orders",
                                      "server.address": "api.shop.test"})}  # fmt: skip
    resource = {"attributes": json_attrs({"service.name": "storefront"})}
    send(api, {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]})
    event = http_api_event("POST", "/orders", "/orders", {}, {"traceparent": f"00-{trace_id}-{span_id}-01"}, "{}")
    return trace_id, event


def invocation_spans(api: httpx.Client, request_id: str) -> list[dict[str, Any]]:
    found = api.get("/api/v1/spans", params={"q": request_id, "limit": 10})
    assert found.status_code == 200, found.text
    spans: list[dict[str, Any]] = found.json()["spans"]
    return spans


def killed_invocation(api: httpx.Client, request_id: str, started: float) -> dict[str, Any]:
    """The one invocation span of ``request_id`` once it is there (waiting for deadline plus grace)."""
    wait_for("the killed invocation", lambda: bool(invocation_spans(api, request_id)), timeout_s=90)
    (span,) = invocation_spans(api, request_id)
    return span


def in_its_transaction(api: httpx.Client, trace_id: str, span: dict[str, Any]) -> dict[str, Any]:
    """The transaction of the storefront's call, once the graph has the killed invocation in it."""

    def ready() -> bool:
        found = api.get("/api/v1/transactions", params={"q": trace_id}).json()["transactions"]
        return bool(found) and found[0]["errors"] >= 1 and "orders-api" in found[0]["services"]

    wait_for("the transaction with the killed invocation", ready, timeout_s=90)
    (summary,) = api.get("/api/v1/transactions", params={"q": trace_id}).json()["transactions"]
    detail: dict[str, Any] = api.get(f"/api/v1/transactions/{summary['id']}").json()
    ids = {s["span_id"] for s in detail["spans"]}
    assert span["span_id"] in ids
    return detail


def assert_killed(span: dict[str, Any], cls: str) -> None:
    assert span["attributes"]["hoptrace.faas.killed"] == cls
    assert span["status"]["code"] == "ERROR"
    assert span["service"] == "orders-api"
    assert "hoptrace.faas.announcement" not in span["attributes"]
    assert span["attributes"]["faas.trigger"] == "http"


def test_a_sandbox_killed_mid_invocation_becomes_a_crash_in_its_transaction_after_deadline_and_grace(
    store_url: str,
) -> None:
    with CollectorProcess(store_url, "--killed-grace", GRACE) as collector, collector.client() as api:
        sandbox = Sandbox("orders-api", collector.url)
        try:
            trace_id, event = storefront_call(api)
            started = time.monotonic()
            request_id = sandbox.invoke("hang", event)
            running = sandbox.read(30)
            assert running is not None and running["running"] >= 1, running  # the announcement went out
            sandbox.kill()
            killed_at = time.monotonic()
            assert invocation_spans(api, request_id) == []  # nothing ended: nothing to see yet
        finally:
            sandbox.kill()
        span = killed_invocation(api, request_id, started)
        assert time.monotonic() - started >= TIMEOUT_MS / 1000 + 1.0  # not before its deadline plus grace
        assert killed_at > started
        assert_killed(span, "crash")
        assert span["trace_id"] == trace_id
        in_its_transaction(api, trace_id, span)
        errors = api.get("/api/v1/spans", params={"q": request_id, "status": "error"}).json()["spans"]
        assert [s["span_id"] for s in errors] == [span["span_id"]]


def test_a_sandbox_killed_at_its_memory_limit_is_out_of_memory_and_one_left_past_its_deadline_a_timeout(
    store_url: str,
) -> None:
    with CollectorProcess(store_url, "--killed-grace", GRACE) as collector, collector.client() as api:
        big = Sandbox("orders-api", collector.url)
        slow = Sandbox("orders-api", collector.url, watchdog=False)
        try:
            trace_big, event_big = storefront_call(api)
            trace_slow, event_slow = storefront_call(api)
            started = time.monotonic()
            oom_id = big.invoke("grow_and_hang", event_big, memory_mb=160)
            slow_id = slow.invoke("hang", event_slow)
            running = big.read(60)
            assert running is not None and running["running"] >= 2, running  # start and memory reading sent
            big.kill()  # as Lambda does when a function passes its memory size
            assert slow.read(30) is not None
            time.sleep(max(0.0, TIMEOUT_MS / 1000 - (time.monotonic() - started)))
            slow.kill()  # as Lambda does at the deadline; its watchdog was off, so it said nothing
        finally:
            big.kill()
            slow.kill()
        oom = killed_invocation(api, oom_id, started)
        assert_killed(oom, "out_of_memory")
        assert oom["attributes"]["hoptrace.faas.peak_memory"] >= 0.85 * 160 * 1024 * 1024
        timeout = killed_invocation(api, slow_id, started)
        assert_killed(timeout, "timeout")
        assert timeout["attributes"]["hoptrace.faas.timeout"] is True
        assert abs(timeout["duration_ms"] - timeout["attributes"]["hoptrace.faas.deadline_ms"]) < 1
        in_its_transaction(api, trace_big, oom)
        # what it logged before its memory ran out went out with the reading near the limit
        logged = api.get(f"/api/v1/traces/{trace_big}/logs").json()["logs"]
        assert [(r["span_id"], r["body"]) for r in logged] == [
            (oom["span_id"], "loading the whole order history into memory")
        ]
        in_its_transaction(api, trace_slow, timeout)
        # one issue per function and class, and the map's function node counts both as errors
        wait_for("the issues", lambda: {i["kind"] for i in api.get("/api/v1/issues").json()["issues"]}
                 >= {"out_of_memory", "timeout"})  # fmt: skip
        kinds = sorted(i["kind"] for i in api.get("/api/v1/issues").json()["issues"] if i["kind"] != "warning")
        assert kinds == ["out_of_memory", "timeout"]  # (health may warn too: memory, time near the limit)
        health = api.get("/api/v1/functions/orders-api/health").json()
        classes = health["totals"]["errors_by_class"]
        assert classes["out_of_memory"] == 1 and classes["timeout"] == 1 and classes["crash"] == 0
        node = next(n for n in api.get("/api/v1/map").json()["nodes"] if n["id"] == "function:orders-api")
        assert node["killed"] == {"out_of_memory": 1, "timeout": 1} and node["errors"] == 2, node


def test_a_sandbox_out_of_memory_under_setrlimit_is_a_killed_invocation_and_a_later_one_succeeds(
    store_url: str,
) -> None:
    with CollectorProcess(store_url, "--killed-grace", GRACE) as collector, collector.client() as api:
        sandbox = Sandbox("orders-api", collector.url)
        try:
            # A warm sandbox (its tracer's threads started), then the limit: 160 MiB in all.
            sandbox.invoke("ok", http_api_event("GET", "/orders", "/orders", {}, {}, None))
            assert sandbox.read(30) is not None and sandbox.read(30) == {"result": {"statusCode": 200, "body": "ok"}}
            trace_id, event = storefront_call(api)
            started = time.monotonic()
            request_id = sandbox.invoke("grow", event, memory_mb=160, rlimit=True)
            assert sandbox.read(30) is not None  # running
            reply = sandbox.read(60)
            # The handler's own outcome is untouched by tracing: Python's MemoryError, as raised.
            assert reply is not None and reply["error"]["errorType"] == "MemoryError", reply
        finally:
            sandbox.kill()
        wait_for("deadline plus grace", lambda: time.monotonic() - started > TIMEOUT_MS / 1000 + 1.0)
        span = killed_invocation(api, request_id, started)
        assert_killed(span, "out_of_memory")
        in_its_transaction(api, trace_id, span)


def announced(trace_id: str, span_id: str, deadline_ms: int, end: bool = False, **extra: Any) -> dict[str, Any]:
    """What any SDK may send: an invocation's start announcement (or, ``end``, the invocation span
    itself, ended 100 ms after its start), in OTLP JSON."""
    start = time.time_ns() - 200_000_000
    attributes = {"faas.trigger": "datasource", "faas.invocation_id": f"req-{span_id}", "faas.max_memory": 128 * 2**20,
                  "hoptrace.faas.deadline_ms": deadline_ms, **extra}  # fmt: skip
    if not end:
        attributes["hoptrace.faas.announcement"] = "start"
    span = {"traceId": trace_id, "spanId": span_id, "name": "nightly-report", "kind": 5,
            "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + (100_000_000 if end else 0)),
            "attributes": json_attrs(attributes)}  # fmt: skip
    resource = {"attributes": json_attrs({"service.name": "reports", "faas.name": "reports"})}
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}


def trace_spans(api: httpx.Client, trace_id: str) -> list[dict[str, Any]]:
    answer = api.get(f"/api/v1/traces/{trace_id}")
    if answer.status_code == 404:
        return []
    assert answer.status_code == 200, answer.text
    spans: list[dict[str, Any]] = answer.json()["spans"]
    return spans


def test_announcements_survive_a_collector_restart_and_an_invocation_that_ended_is_not_killed(
    store_url: str,
) -> None:
    killed_trace, killed_span = os.urandom(16).hex(), os.urandom(8).hex()
    ended_trace, ended_span = os.urandom(16).hex(), os.urandom(8).hex()
    collector = CollectorProcess(store_url, "--killed-grace", GRACE).start()
    try:
        with collector.client() as api:
            send(api, announced(killed_trace, killed_span, 1500))
            send(api, announced(ended_trace, ended_span, 1500))
            send(api, announced(ended_trace, ended_span, 1500, end=True))
            assert trace_spans(api, killed_trace) == []  # an announcement is no span
    finally:
        collector.kill()  # before the deadline: the announcement waits in the store
    with CollectorProcess(store_url, "--killed-grace", GRACE) as again, again.client() as api:
        wait_for("the killed invocation after the restart",
                 lambda: bool(trace_spans(api, killed_trace)), timeout_s=60)  # fmt: skip
        (span,) = trace_spans(api, killed_trace)
        assert span["attributes"]["hoptrace.faas.killed"] == "timeout"  # no watchdog said otherwise
        assert span["status"]["code"] == "ERROR"
        assert span["duration_ms"] == pytest.approx(1500, abs=1)
        wait_for("the ended one's deadline plus grace", lambda: time.time_ns() > int(
            span["end_unix_nano"]) + 2 * 10**9)  # fmt: skip
        time.sleep(1.5)  # a pass of the killed-invocation step (every second) after that
        (ended,) = trace_spans(api, ended_trace)
        assert "hoptrace.faas.killed" not in ended["attributes"] and ended["status"]["code"] == "UNSET"
        # a late copy of the real end of the killed one does not make a second invocation
        send(api, announced(killed_trace, killed_span, 1500, end=True))
        wait_for("the graph", lambda: api.get("/api/v1/graph/status").json()["backlog_spans"] == 0)
        node = next(n for n in api.get("/api/v1/map").json()["nodes"] if n["name"] == "reports")
        assert node["count"] == 2 and node["errors"] == 1
