"""Error spans for the issues pages, sent as OTLP/JSON the way an SDK sends them: exception events
with stack traces (semantic conventions), failed HTTP answers, and plain successful invocations."""

from __future__ import annotations

import os
import time
from typing import Any

import httpx

from tests.otlp_build import json_attrs as attrs

MS, S = 10**6, 10**9
MINUTE = 60 * S


def _resource(function: str) -> dict[str, Any]:
    return {"attributes": attrs({"service.name": function, "faas.name": function, "cloud.platform": "aws_lambda"})}


def invocation(start_ns: int, *, status: int = 200, exception: tuple[str, str, str] | None = None,
               cold: bool = False) -> dict[str, Any]:  # fmt: skip
    """One HTTP-triggered invocation span: answering ``status``, or raising ``exception``
    (type, message, stack trace) recorded as an OpenTelemetry exception event."""
    failed = exception is not None or status >= 500
    attributes: dict[str, Any] = {"faas.trigger": "http", "http.route": "/orders", "faas.coldstart": cold}
    if exception is None:
        attributes["http.response.status_code"] = status
    span: dict[str, Any] = {
        "traceId": os.urandom(16).hex(), "spanId": os.urandom(8).hex(), "name": "POST /orders", "kind": 2,
        "startTimeUnixNano": str(start_ns), "endTimeUnixNano": str(start_ns + 20 * MS),
        "status": {"code": 2 if failed else 0}, "attributes": attrs(attributes),
    }  # fmt: skip
    if exception is not None:
        kind, message, stack = exception
        span["events"] = [{"name": "exception", "timeUnixNano": str(start_ns + 15 * MS), "attributes": attrs({
            "exception.type": kind, "exception.message": message, "exception.stacktrace": stack})}]  # fmt: skip
    return span


def send(client: httpx.Client, function: str, spans: list[dict[str, Any]]) -> None:
    body = {"resourceSpans": [{"resource": _resource(function), "scopeSpans": [{"spans": spans}]}]}
    answer = client.post("/v1/traces", json=body)
    assert answer.status_code == 200, answer.text


def minute_start(minutes_ago: int) -> int:
    return (time.time_ns() - minutes_ago * MINUTE) // MINUTE * MINUTE


def wait_until_counted(client: httpx.Client, timeout_s: float = 120.0) -> None:
    """Until the issue pass and the graph (health rollups) have taken every span in."""
    deadline = time.monotonic() + timeout_s
    while True:
        graph = client.get("/api/v1/graph/status").json()
        issues = client.get("/api/v1/issues/status").json()
        if graph["backlog_spans"] == 0 and issues == {"queued_spans": 0, "pending_notifications": 0}:
            return
        assert time.monotonic() < deadline, f"not settled: graph {graph}, issues {issues}"
        time.sleep(0.1)
