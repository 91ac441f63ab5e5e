"""Logs in context in the browser: a transaction's timeline shows each invocation's log records
under its span, coloured by severity, as inert text."""

from __future__ import annotations

import time

import httpx
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


def test_an_issue_occurrence_shows_the_logs_of_its_trace(shop_page: Page, shop: Shop) -> None:
    headers = {"Authorization": f"Bearer {shop.read_token}"}
    deadline = time.monotonic() + 30
    while True:
        issues = httpx.get(f"{shop.url}/api/v1/issues", headers=headers, params={"kind": "exception"}).json()["issues"]
        declined = [i for i in issues if "PaymentDeclined" in i["title"]]
        if declined or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert declined, issues
    shop_page.goto(f"{shop.url}/issues/{declined[0]['id']}")
    occurrence = shop_page.get_by_test_id("occurrence").first
    logs = occurrence.get_by_test_id("occurrence-logs")
    expect(logs).to_contain_text(f"Logs of its trace ({len(FAILED_ORDER_LOGS)})")
    logs.locator("summary").click()
    lines = logs.get_by_test_id("log-line")
    expect(lines).to_have_count(len(FAILED_ORDER_LOGS))
    expect(lines.nth(1)).to_contain_text("payment gateway refused the order for good")
    assert lines.nth(1).get_attribute("data-severity") == "error"
    screenshot(shop_page, "issue-occurrence-logs")
