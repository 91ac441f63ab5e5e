"""Logs in context in the browser: a transaction's timeline shows each invocation's log records
under its span, coloured by severity, as inert text."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.ui.conftest import Shop, screenshot
from tests.ui.shop import FAILED_ORDER_LOGS, HOSTILE

expect.set_options(timeout=15_000)


def test_the_transaction_timeline_shows_each_invocations_logs_under_its_span(shop_page: Page, shop: Shop) -> None:
    order = shop.failed
    shop_page.goto(f"{shop.url}/transactions/{order.trace_id.hex()}")
    timeline = shop_page.get_by_test_id("timeline")
    expect(timeline.get_by_test_id("timeline-row")).to_have_count(5)
    lines = timeline.get_by_test_id("log-line")
    expect(lines).to_have_count(len(FAILED_ORDER_LOGS))
    texts = [t.replace("\n", " ") for t in lines.all_inner_texts()]
    assert [t.split()[0] for t in texts] == [text for _, text, _, _ in FAILED_ORDER_LOGS]
    assert "card declined, retrying in 2 s" in texts[0] and "+30 ms" in texts[0]
    assert "payment gateway refused the order for good" in texts[1]
    assert [lines.nth(i).get_attribute("data-severity") for i in range(3)] == ["warn", "error", "warn"]
    # Severity is colour-coded: the error line's rule differs from the warnings'.
    colour = "el => getComputedStyle(el).borderLeftColor"
    assert lines.nth(1).evaluate(colour) != lines.nth(0).evaluate(colour)
    # In place: the logs follow the worker's invocation row, before its children.
    items = [t.replace("\n", " ") for t in timeline.locator("ol.tl-rows > li").all_inner_texts()]
    worker_row = next(i for i, t in enumerate(items) if "orders-queue process" in t)
    assert "card declined" in items[worker_row + 1] and "orders PutItem" in items[worker_row + 2]
    # A body that is HTML stays text.
    expect(lines.nth(2).locator(".log-body")).to_have_text(HOSTILE)
    assert shop_page.evaluate("() => window.__hoptraceXss") is None
    lines.nth(1).scroll_into_view_if_needed()
    screenshot(shop_page, "transaction-logs")


def test_a_transaction_without_logs_shows_none(shop_page: Page, shop: Shop) -> None:
    shop_page.goto(f"{shop.url}/transactions/{shop.ok.trace_id.hex()}")
    expect(shop_page.get_by_test_id("timeline-row")).to_have_count(5)
    expect(shop_page.get_by_test_id("log-line")).to_have_count(0)
