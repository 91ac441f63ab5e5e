"""Killed invocations in Chromium: a collector fed, over OTLP, two invocations that were announced
and never ended (one whose last memory reading was near its size, one past its deadline) shows
them for what they are — flagged with their class on the map's nodes and in their transaction's
timeline. Screenshots: ``tests/ui/artifacts/killed-map.png``, ``killed-timeline.png``."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.collector_server import CollectorProcess
from tests.integration.test_issues_notify import send, wait_for
from tests.otlp_build import json_attrs
from tests.ui.conftest import _context, _require_built_ui, screenshot

expect.set_options(timeout=20_000)
MIB = 1024 * 1024


def _request(service: str, spans: list[dict[str, Any]]) -> dict[str, Any]:
    resource = {"attributes": json_attrs({"service.name": service, "faas.name": service, "cloud.provider": "aws"})}
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]}


def _killed_call(api: httpx.Client, function: str, memory_rss: int | None) -> str:
    """The storefront calls ``function``, whose invocation is announced (and, with ``memory_rss``,
    read near its memory size) but never ends; the storefront's trace id."""
    trace_id, client_id, invocation_id = os.urandom(16).hex(), os.urandom(8).hex(), os.urandom(8).hex()
    start = time.time_ns() - 3_000_000_000
    client = {"traceId": trace_id, "spanId": client_id, "name": "POST", "kind": 3,
              "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 1_200_000_000),
              "attributes": json_attrs({"http.request.method": "POST", "server.address": f"{function}.shop.test",
                                        "url.full": f"https://{function}.shop.test/run"})}  # fmt: skip
    send(api, _request("storefront", [client]))
    attributes = {"faas.trigger": "http", "http.route": "/run", "http.request.method": "POST",
                  "faas.invocation_id": f"req-{invocation_id}", "faas.max_memory": 128 * MIB,
                  "hoptrace.faas.deadline_ms": 800, "hoptrace.faas.watchdog": memory_rss is not None,
                  "hoptrace.faas.announcement": "start"}  # fmt: skip
    announced = {"traceId": trace_id, "spanId": invocation_id, "parentSpanId": client_id, "name": "POST /run",
                 "kind": 2, "startTimeUnixNano": str(start + 5_000_000), "endTimeUnixNano": str(start + 5_000_000)}
    send(api, _request(function, [{**announced, "attributes": json_attrs(attributes)}]))
    if memory_rss is not None:
        reading = {**attributes, "hoptrace.faas.announcement": "memory", "hoptrace.faas.memory_rss": memory_rss,
                   "hoptrace.faas.memory_read_ns": start + 400_000_000}  # fmt: skip
        send(api, _request(function, [{**announced, "attributes": json_attrs(reading)}]))
    return trace_id


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A collector (open, on loopback) holding two killed invocations: (its URL, transaction id by function)."""
    _require_built_ui()
    store = f"sqlite:///{tmp_path_factory.mktemp('ui-killed') / 'killed.db'}"
    with CollectorProcess(store, "--killed-grace", "0.5s") as collector, collector.client() as api:
        traces = {"image-resizer": _killed_call(api, "image-resizer", 124 * MIB),
                  "report-builder": _killed_call(api, "report-builder", None)}  # fmt: skip

        def transaction_of(trace_id: str) -> str | None:
            found = api.get("/api/v1/transactions", params={"q": trace_id}).json()["transactions"]
            return found[0]["id"] if found and found[0]["errors"] >= 1 else None

        wait_for("both killed invocations in their transactions",
                 lambda: all(transaction_of(t) for t in traces.values()), timeout_s=60)  # fmt: skip
        wait_for("the issue pass", lambda: api.get("/api/v1/issues/status").json()["queued_spans"] == 0)
        yield collector.url, {f: str(transaction_of(t)) for f, t in traces.items()}


def test_map_nodes_flag_killed_invocations_with_their_class(
    browser: Browser, killed: tuple[str, dict[str, str]]
) -> None:
    url, _ = killed
    context = _context(browser)
    try:
        page = context.new_page()
        page.goto(f"{url}/")
        nodes = page.get_by_test_id("map-nodes")
        resizer = nodes.locator("li").filter(has=page.get_by_role("button", name="function image-resizer", exact=True))
        expect(resizer.get_by_test_id("killed-badge")).to_have_text("killed: 1 out of memory")
        builder = nodes.locator("li").filter(has=page.get_by_role("button", name="function report-builder", exact=True))
        expect(builder.get_by_test_id("killed-badge")).to_have_text("killed: 1 timed out")
        storefront = nodes.locator("li").filter(has=page.get_by_role("button", name="function storefront", exact=True))
        expect(storefront).to_have_count(1)
        expect(storefront.get_by_test_id("killed-badge")).to_have_count(0)  # only what was killed
        resizer.get_by_role("button").click()
        expect(page.get_by_test_id("selection-metrics")).to_contain_text("Killed invocations1 out of memory")
        screenshot(page, "killed-map")
    finally:
        context.close()


def test_the_transaction_timeline_shows_a_killed_invocation_for_what_it_is(
    browser: Browser, killed: tuple[str, dict[str, str]]
) -> None:
    url, transactions = killed
    context = _context(browser)
    try:
        page = context.new_page()
        page.goto(f"{url}/transactions/{transactions['image-resizer']}")
        rows = page.get_by_test_id("timeline-row")
        killed_row = rows.filter(has_text="image-resizer")
        expect(killed_row.get_by_test_id("killed-badge")).to_have_text("killed · out of memory")
        expect(killed_row).to_have_class("tl-row error killed killed-out_of_memory")
        expect(rows.filter(has_text="storefront").get_by_test_id("killed-badge")).to_have_count(0)
        # a call made while its caller waited is no wait (it once read "waited -1195.00 ms")
        expect(page.get_by_test_id("dwell")).to_have_text("⇢ via parent · called while its caller waited")
        screenshot(page, "killed-timeline")
        page.goto(f"{url}/transactions/{transactions['report-builder']}")
        expect(page.get_by_test_id("timeline-row").filter(has_text="report-builder").get_by_test_id(
            "killed-badge")).to_have_text("killed · timed out")  # fmt: skip
    finally:
        context.close()
