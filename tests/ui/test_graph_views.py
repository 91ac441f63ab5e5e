"""The service map and transaction views, against answers in the shape of DESIGN §7.

Playwright answers ``/api/v1/map`` and ``/api/v1/transactions`` with contract-shaped JSON
(tests/ui/contract.py) while the page, its assets and every other call come from the real
collector: this covers what the shop's few spans cannot make the graph produce (throttles,
per-minute series, a week-earlier comparison with new and gone elements, wide maps).
test_graph_live.py runs the same views on the collector's own graph.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
from playwright.sync_api import Page, Route, expect

from tests.ui.conftest import Shop, screenshot
from tests.ui.contract import SHOP_MAP, compared_map, transaction_row

expect.set_options(timeout=15_000)


def serve_json(page: Page, pattern: str, answer: Any, seen: list[dict[str, list[str]]] | None = None) -> None:
    """Answers GETs matching ``pattern`` with ``answer`` (a value, or a function of the query)."""

    def handle(route: Route) -> None:
        query = parse_qs(urlparse(route.request.url).query)
        if seen is not None:
            seen.append(query)
        body = answer(query) if callable(answer) else answer
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page.route(re.compile(pattern), handle)


def shop_transactions(shop: Shop) -> list[dict[str, Any]]:
    rows = []
    for i, order in enumerate(shop.orders):
        rows.append(
            transaction_row(order.order_id, order.trace_id.hex(), 250.0 + 40 * i, 1 if order.failed else 0,
                            f"2026-11-24T10:{10 + i}:00Z")
        )
    return rows


def test_map_draws_every_node_and_edge_and_a_node_opens_its_metrics(shop_page: Page, shop: Shop) -> None:
    seen: list[dict[str, list[str]]] = []
    serve_json(shop_page, r"/api/v1/map\?", SHOP_MAP, seen)
    serve_json(shop_page, r"/api/v1/transactions\?", {"transactions": shop_transactions(shop), "next_cursor": None})
    shop_page.goto(f"{shop.url}/map?range=6h")
    nodes = shop_page.get_by_test_id("map-nodes").locator("li")
    expect(nodes).to_have_count(len(SHOP_MAP["nodes"]))
    expect(shop_page.get_by_test_id("map-edges").locator("li")).to_have_count(len(SHOP_MAP["edges"]))
    expect(shop_page.get_by_test_id("service-map").locator("canvas").first).to_be_visible()
    # The window went to the API: six hours, in unix milliseconds.
    assert seen and int(seen[0]["to"][0]) - int(seen[0]["from"][0]) == 6 * 3600 * 1000
    assert "compare_from" not in seen[0]
    # Edge labels: rate, p95, error share, and the queue wait on the async delivery.
    delivery = shop_page.get_by_test_id("map-edges").locator("li", has_text="orders-queue → order-worker")
    expect(delivery).to_contain_text("deliver")
    expect(delivery).to_contain_text("1.7/min")  # 600 in 360 minutes
    expect(delivery).to_contain_text("p95 95 ms")
    expect(delivery).to_contain_text("20% err")
    expect(delivery).to_contain_text("wait p95 120 ms")
    screenshot(shop_page, "service-map")

    shop_page.get_by_test_id("map-nodes").get_by_role("button", name="order-worker").click()
    panel = shop_page.get_by_test_id("map-panel")
    expect(panel).to_be_visible()
    metrics = panel.get_by_test_id("selection-metrics")
    for text in ["p95", "95 ms", "p99", "240 ms", "Cold starts", "9", "Timeouts", "Error rate", "20%", "Throttles",
                 "ok 80% · 4xx 0.0% · 5xx 15% · throttled 5.0%"]:  # fmt: skip
        expect(metrics).to_contain_text(text)
    expect(panel.locator("figure.spark")).to_have_count(3)
    # The slowest transactions through it, slowest first.
    slowest = panel.locator("ol.slowest li")
    expect(slowest).to_have_count(5)
    expect(slowest.first).to_contain_text("450 ms")
    screenshot(shop_page, "service-map-node-panel")
    panel.get_by_role("link", name="Search transactions through order-worker").click()
    expect(shop_page).to_have_url(re.compile(r"/transactions\?.*service=order-worker"))


def test_compare_asks_for_the_earlier_window_and_shows_deltas_and_new_and_gone(shop_page: Page, shop: Shop) -> None:
    seen: list[dict[str, list[str]]] = []
    serve_json(shop_page, r"/api/v1/map\?", lambda q: compared_map() if "compare_from" in q else SHOP_MAP, seen)
    shop_page.goto(f"{shop.url}/map?range=1h")
    nodes = shop_page.get_by_test_id("map-nodes").locator("li")
    expect(nodes).to_have_count(len(SHOP_MAP["nodes"]))
    shop_page.get_by_label("Compare with").select_option("7d")
    expect(shop_page).to_have_url(re.compile(r"compare=7d"))
    expect(nodes).to_have_count(len(SHOP_MAP["nodes"]) + 1)
    last = seen[-1]
    week = 7 * 24 * 3600 * 1000
    assert int(last["from"][0]) - int(last["compare_from"][0]) == week
    assert int(last["to"][0]) - int(last["compare_to"][0]) == week
    expect(nodes.filter(has_text="order-events")).to_contain_text("new")
    expect(nodes.filter(has_text="legacy-mailer")).to_contain_text("gone")
    expect(nodes.filter(has_text="checkout-api")).not_to_contain_text("same")
    stream_edge = shop_page.get_by_test_id("map-edges").locator("li", has_text="orders stream → order-events")
    expect(stream_edge).to_contain_text("new")
    shop_page.get_by_test_id("map-nodes").get_by_role("button", name="order-worker").click()
    metrics = shop_page.get_by_test_id("map-panel").get_by_test_id("selection-metrics")
    expect(metrics).to_contain_text("Δ Calls+120")
    expect(metrics).to_contain_text("Δ p95+42 ms")
    screenshot(shop_page, "service-map-compare")


def test_transaction_search_sends_its_filters_and_keeps_them_in_the_url(shop_page: Page, shop: Shop) -> None:
    seen: list[dict[str, list[str]]] = []
    rows = shop_transactions(shop)

    def answer(query: dict[str, list[str]]) -> dict[str, Any]:
        found = rows
        if "status" in query:
            found = [r for r in found if (r["errors"] > 0) == (query["status"][0] == "error")]
        if "label.order_id" in query:
            found = [r for r in found if r["labels"]["order_id"] == query["label.order_id"][0]]
        return {"transactions": found, "next_cursor": None}

    serve_json(shop_page, r"/api/v1/transactions\?", answer, seen)
    shop_page.goto(f"{shop.url}/transactions")
    table = shop_page.get_by_test_id("transaction-results")
    expect(table.locator("tbody tr")).to_have_count(len(rows))
    filters = shop_page.get_by_test_id("transaction-filters")
    filters.get_by_label("Status").select_option("error")
    filters.get_by_label("Labels").fill(f"order_id={shop.failed.order_id}")
    filters.get_by_role("button", name="Search").click()
    expect(shop_page).to_have_url(re.compile(r"status=error.*label\.order_id=" + shop.failed.order_id))
    expect(table.locator("tbody tr")).to_have_count(1)
    assert seen[-1]["status"] == ["error"] and seen[-1]["label.order_id"] == [shop.failed.order_id]
    expect(table.locator("tbody tr").first).to_contain_text("POST /orders")

    # Sorting by end-to-end duration, longest first.
    filters = shop_page.get_by_test_id("transaction-filters")
    filters.get_by_role("button", name="Clear").click()
    expect(table.locator("tbody tr")).to_have_count(len(rows))
    table.get_by_role("button", name="End to end").click()
    durations = table.locator("tbody tr td:nth-child(3)").all_inner_texts()
    assert durations == sorted(durations, key=lambda d: -float(d.split()[0]))
    screenshot(shop_page, "transactions")


def test_transaction_view_shows_every_hop_in_order_with_its_wait(shop_page: Page, shop: Shop) -> None:
    order = shop.failed
    trace = httpx.get(
        f"{shop.url}/api/v1/traces/{order.trace_id.hex()}", headers={"Authorization": f"Bearer {shop.read_token}"}
    ).json()
    by_name = {s["name"]: s for s in trace["spans"]}
    detail = {
        "id": f"tx-{order.order_id}",
        "duration_ms": 253.0,
        "spans": trace["spans"],
        "hops": [
            {
                "from_span": by_name["orders-queue send"]["span_id"],
                "to_span": by_name["orders-queue process"]["span_id"],
                "via": "message_id",
                "dwell_ms": 120.0,
            },
        ],
        "map": {"nodes": SHOP_MAP["nodes"][:4], "edges": SHOP_MAP["edges"][:3]},
    }
    serve_json(shop_page, rf"/api/v1/transactions/tx-{order.order_id}$", detail)
    shop_page.goto(f"{shop.url}/transactions/tx-{order.order_id}")
    expect(shop_page.get_by_test_id("transaction-summary")).to_contain_text("5 spans in 1 trace · 1 hop")
    rows = shop_page.locator("[data-testid=timeline] li")
    expect(rows).to_have_count(6)  # five spans and one wait
    texts = [t.replace("\n", " ") for t in rows.all_inner_texts()]
    assert "POST /orders" in texts[0] and "orders-queue send" in texts[1]
    assert "via message_id" in texts[2] and "waited 120 ms" in texts[2]
    assert "orders-queue process" in texts[3]
    expect(shop_page.get_by_test_id("transaction-hops")).to_contain_text("checkout-api · orders-queue send")
    expect(shop_page.get_by_test_id("transaction-map").locator("canvas").first).to_be_visible()
    shop_page.get_by_test_id("timeline-row").nth(2).click()
    expect(shop_page.get_by_test_id("span-drawer")).to_contain_text("PaymentDeclined")
    screenshot(shop_page, "transaction-view")


def test_hovering_a_node_keeps_its_upstream_and_downstream_and_fades_the_rest(shop_page: Page, shop: Shop) -> None:
    serve_json(shop_page, r"/api/v1/map\?", SHOP_MAP)
    shop_page.goto(f"{shop.url}/map")
    expect(shop_page.get_by_test_id("map-nodes").locator("li")).to_have_count(len(SHOP_MAP["nodes"]))
    canvas = shop_page.locator(".graph-canvas")
    faded = "el => el.cy.$('node.faded').map(n => n.id()).sort()"
    x, y = canvas.evaluate("(el, id) => { const p = el.cy.getElementById(id).renderedPosition(); return [p.x, p.y]; }",
                           "http:payments.example.com")  # fmt: skip
    box = canvas.bounding_box()
    assert box is not None
    shop_page.mouse.move(box["x"] + x, box["y"] + y)
    # payments is reached through api → checkout → queue → worker; the table branch is not its concern.
    assert canvas.evaluate(faded) == ["function:order-events", "stream:orders stream", "table:orders"]
    screenshot(shop_page, "service-map-hover")
    shop_page.mouse.move(box["x"] + 5, box["y"] + 5)
    assert canvas.evaluate(faded) == []
