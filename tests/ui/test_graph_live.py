"""The map and transactions as the collector's graph builds them from the shop's spans.

The issue's own story: a user sees the whole system, finds the failed order by its label and
follows it from the API through the queue to the function that failed.
"""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.ui.conftest import Shop, screenshot

expect.set_options(timeout=15_000)


def test_the_map_shows_the_shop_and_a_node_leads_to_its_transactions(shop_page: Page, shop: Shop) -> None:
    shop_page.goto(f"{shop.url}/map")
    nodes = shop_page.get_by_test_id("map-nodes")
    edges = shop_page.get_by_test_id("map-edges")
    expect(nodes.locator("li")).to_have_count(5)
    for kind, name in [("api", "POST /orders"), ("function", "checkout-api"), ("queue", "orders-queue"),
                       ("function", "order-worker"), ("table", "orders")]:  # fmt: skip
        expect(nodes.get_by_role("button", name=f"{kind} {name}", exact=True)).to_have_count(1)
    expect(edges.locator("li")).to_have_count(4)
    expect(edges.locator("li", has_text="POST /orders → checkout-api")).to_contain_text("sync")
    expect(edges.locator("li", has_text="checkout-api → orders-queue")).to_contain_text("publish")
    delivery = edges.locator("li", has_text="orders-queue → order-worker")
    expect(delivery).to_contain_text("deliver")
    expect(delivery).to_contain_text("33% err")  # 2 of the 6 deliveries failed
    expect(delivery).to_contain_text("wait p95 120 ms")
    expect(shop_page.get_by_test_id("service-map").locator("canvas").first).to_be_visible()
    screenshot(shop_page, "live-map")

    nodes.get_by_role("button", name="function order-worker").click()
    panel = shop_page.get_by_test_id("map-panel")
    expect(panel.get_by_test_id("selection-metrics")).to_contain_text("Errors2")
    expect(panel.locator("ol.slowest li")).to_have_count(5)
    # Small charts over the window, from the map of each slice of it: every call and error counted once.
    expect(panel.get_by_test_id("chart-calls")).to_have_attribute("data-values", re.compile(r"^[\d,]+$"))
    calls = panel.get_by_test_id("chart-calls").get_attribute("data-values") or ""
    errors = panel.get_by_test_id("chart-errors").get_attribute("data-values") or ""
    assert len(calls.split(",")) == 12 and sum(int(v) for v in calls.split(",")) == 6
    assert sum(int(v) for v in errors.split(",")) == 2
    expect(panel.get_by_test_id("chart-calls")).to_contain_text("calls per 5 min")
    screenshot(shop_page, "live-map-node-panel")
    panel.get_by_role("link", name="Search transactions through order-worker").click()
    expect(shop_page).to_have_url(re.compile(r"/transactions\?.*service=order-worker"))
    expect(shop_page.get_by_test_id("transaction-results").locator("tbody tr")).to_have_count(6)

    shop_page.goto(f"{shop.url}/map")
    shop_page.get_by_test_id("map-edges").get_by_role("button", name="orders-queue → order-worker").click()
    metrics = shop_page.get_by_test_id("map-panel").get_by_test_id("selection-metrics")
    expect(metrics).to_contain_text("Queue wait p95120 ms")
    expect(metrics).to_contain_text("Error rate33%")
    shop_page.get_by_test_id("map-nodes").get_by_role("button", name="table orders").click()
    shop_page.get_by_test_id("map-panel").get_by_role("link", name="Search transactions through orders").click()
    expect(shop_page).to_have_url(re.compile(r"resource=table%3Aorders"))
    expect(shop_page.get_by_test_id("transaction-results").locator("tbody tr")).to_have_count(6)


def test_a_failed_order_found_by_its_label_is_followed_across_the_queue(shop_page: Page, shop: Shop) -> None:
    order = shop.failed
    shop_page.goto(f"{shop.url}/transactions")
    table = shop_page.get_by_test_id("transaction-results")
    expect(table.locator("tbody tr")).to_have_count(len(shop.orders))
    filters = shop_page.get_by_test_id("transaction-filters")
    filters.get_by_label("Status").select_option("error")
    filters.get_by_role("button", name="Search").click()
    expect(table.locator("tbody tr")).to_have_count(sum(o.failed for o in shop.orders))

    filters = shop_page.get_by_test_id("transaction-filters")
    filters.get_by_label("Labels").fill(f"order_id={order.order_id}")
    filters.get_by_role("button", name="Search").click()
    expect(table.locator("tbody tr")).to_have_count(1)
    row = table.locator("tbody tr").first
    expect(row).to_contain_text("http POST /orders")
    expect(row).to_contain_text("checkout-api, order-worker")
    row.get_by_role("link").click()

    expect(shop_page).to_have_url(re.compile(rf"/transactions/{order.trace_id.hex()}"))
    expect(shop_page.get_by_test_id("transaction-summary")).to_contain_text("5 spans in 1 trace · 1 hop")
    rows = shop_page.locator("[data-testid=timeline] ol.tl-rows > li:not(.tl-logs)")  # its logs aside
    expect(rows).to_have_count(6)
    expect(shop_page.get_by_test_id("log-line")).to_have_count(3)
    texts = [t.replace("\n", " ") for t in rows.all_inner_texts()]
    assert [next(n for n in order.span_names if n in t) for t in texts if "waited" not in t] == order.span_names
    wait = next(i for i, t in enumerate(texts) if "waited" in t)
    assert "waited 120 ms" in texts[wait] and "orders-queue process" in texts[wait + 1]
    expect(shop_page.get_by_test_id("transaction-hops")).to_contain_text("checkout-api · orders-queue send")
    expect(shop_page.get_by_test_id("transaction-map").locator("canvas").first).to_be_visible()

    shop_page.get_by_test_id("timeline-row").filter(has_text="orders-queue process").click()
    drawer = shop_page.get_by_test_id("span-drawer")
    expect(drawer).to_contain_text("PaymentDeclined")
    expect(drawer.get_by_test_id("span-labels")).to_contain_text(order.order_id)
    screenshot(shop_page, "live-transaction")


def test_the_keyboard_reaches_the_maps_controls_and_opens_a_node(shop_page: Page, shop: Shop) -> None:
    shop_page.goto(f"{shop.url}/map")
    expect(shop_page.get_by_test_id("map-nodes").locator("li")).to_have_count(5)
    reached: list[str] = []
    for _ in range(30):
        shop_page.keyboard.press("Tab")
        reached.append(shop_page.evaluate(
            "() => { const e = document.activeElement;"
            " return (e.getAttribute('aria-label') || e.getAttribute('name') || e.textContent || '').trim(); }"
        ))  # fmt: skip
        if reached[-1] == "function order-worker":
            break
    for control in ["range", "refresh", "compare", "Zoom in", "Fit", "api POST /orders"]:
        assert any(control in r or r == control for r in reached), f"Tab never reached {control!r}: {reached}"
    assert reached[-1] == "function order-worker", reached
    shop_page.keyboard.press("Enter")
    expect(shop_page.get_by_test_id("map-panel")).to_contain_text("function: order-worker")
    shop_page.keyboard.press("Escape")
    expect(shop_page.get_by_test_id("map-panel")).to_have_count(0)
