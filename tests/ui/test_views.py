"""The UI against a real collector holding the shop's orders: pages, search, timeline, inert data, keyboard."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

from playwright.sync_api import Page, Request, expect

from tests.ui.conftest import Shop, screenshot
from tests.ui.shop import HOSTILE, HOSTILE_NAME

expect.set_options(timeout=15_000)


def result_names(page: Page) -> list[str]:
    rows = page.get_by_test_id("span-results").locator("tbody tr")
    return [rows.nth(i).locator("td").nth(2).inner_text() for i in range(rows.count())]


def test_services_page_lists_every_service_with_its_errors(shop_page: Page, shop: Shop) -> None:
    shop_page.goto(f"{shop.url}/services")
    table = shop_page.get_by_test_id("service-results")
    expect(table).to_be_visible()
    expect(table.locator("tbody tr")).to_have_count(2)
    worker = table.locator("tbody tr", has_text="order-worker")
    # 6 orders × 3 worker spans; 2 orders failed, each with one failed span.
    expect(worker.locator("td").nth(1)).to_have_text("18")
    expect(worker.locator("td").nth(2)).to_have_text("2")
    expect(table.locator("tbody tr", has_text="checkout-api").locator("td").nth(2)).to_have_text("0")
    screenshot(shop_page, "services")


def test_span_search_filters_narrow_results_and_live_in_the_url(shop_page: Page, shop: Shop) -> None:
    shop_page.goto(f"{shop.url}/spans")
    results = shop_page.get_by_test_id("span-results")
    expect(results.locator("tbody tr")).to_have_count(30)  # 6 orders × 5 spans
    filters = shop_page.get_by_test_id("span-filters")

    filters.get_by_label("Service").fill("order-worker")
    filters.get_by_role("button", name="Search").click()
    expect(shop_page).to_have_url(re.compile(r"service=order-worker"))
    expect(results.locator("tbody tr")).to_have_count(18)
    assert {row.split()[0] for row in results.locator("tbody tr td:nth-child(2)").all_inner_texts()} == {"order-worker"}

    filters.get_by_label("Status").select_option("error")
    filters.get_by_role("button", name="Search").click()
    expect(results.locator("tbody tr")).to_have_count(2)
    assert set(result_names(shop_page)) == {"orders-queue process"}

    # A shared link: the same filters, a fresh page.
    shop_page.reload()
    expect(results.locator("tbody tr")).to_have_count(2)
    expect(shop_page.get_by_test_id("span-filters").get_by_label("Service")).to_have_value("order-worker")
    screenshot(shop_page, "spans-filtered")

    shop_page.get_by_test_id("span-filters").get_by_role("button", name="Clear").click()
    expect(results.locator("tbody tr")).to_have_count(30)
    shop_page.get_by_test_id("span-filters").get_by_label("Labels").fill(f"order_id={shop.failed.order_id}")
    shop_page.get_by_test_id("span-filters").get_by_role("button", name="Search").click()
    expect(shop_page).to_have_url(re.compile(r"label\.order_id=" + shop.failed.order_id))
    expect(results.locator("tbody tr")).to_have_count(2)  # the API span and the worker span carry the label
    assert sorted(result_names(shop_page)) == ["POST /orders", "orders-queue process"]

    shop_page.get_by_test_id("span-filters").get_by_label("Labels").fill("order_id=o-nope")
    shop_page.get_by_test_id("span-filters").get_by_role("button", name="Search").click()
    expect(shop_page.get_by_test_id("no-results")).to_be_visible()


def test_trace_timeline_shows_each_invocation_and_its_spans_in_order(shop_page: Page, shop: Shop) -> None:
    order = shop.ok
    shop_page.goto(f"{shop.url}/traces/{order.trace_id.hex()}")
    rows = shop_page.get_by_test_id("timeline-row")
    expect(rows).to_have_count(5)
    names = [n.strip() for n in shop_page.locator("[data-testid=timeline-row] .tl-name").all_inner_texts()]
    assert names == order.span_names
    groups = shop_page.locator(".tl-group-title").all_inner_texts()
    assert [g.split()[0] for g in groups] == ["checkout-api", "order-worker"]
    assert "req-worker-" + order.order_id in groups[1]
    expect(shop_page.get_by_test_id("trace-summary")).to_contain_text("5 spans · 2 services")

    # Bars sit on one time axis: each starts no earlier than its parent's.
    lefts = [
        float(style.split("left:")[1].split("%")[0])
        for style in shop_page.locator("[data-testid=timeline-row] .tl-bar").evaluate_all(
            "bars => bars.map(b => b.getAttribute('style'))"
        )
    ]
    assert lefts[0] == 0.0 and lefts[1] > lefts[0] and lefts[2] > lefts[1] and lefts[3] > lefts[2]

    rows.nth(2).click()
    drawer = shop_page.get_by_test_id("span-drawer")
    expect(drawer).to_be_visible()
    expect(drawer.get_by_test_id("span-labels")).to_contain_text(order.order_id)
    expect(drawer.get_by_test_id("span-resource")).to_contain_text("arn:aws:lambda:eu-west-1:123456789012:function:")
    expect(shop_page).to_have_url(re.compile(r"span=[0-9a-f]{16}"))
    screenshot(shop_page, "trace-timeline")
    shop_page.keyboard.press("Escape")
    expect(drawer).to_have_count(0)


def test_html_and_script_in_span_data_render_as_inert_text(shop_page: Page, shop: Shop) -> None:
    order = shop.failed
    shop_page.goto(f"{shop.url}/traces/{order.trace_id.hex()}?span={order.worker_span_id.hex()}")
    drawer = shop_page.get_by_test_id("span-drawer")
    expect(drawer).to_be_visible()
    # The label value appears verbatim, as characters.
    expect(drawer.get_by_test_id("span-labels")).to_contain_text(HOSTILE)
    expect(drawer.get_by_test_id("span-attributes")).to_contain_text("<b>bold</b> & <u>more</u>")
    expect(shop_page.locator(".tl-name", has_text=HOSTILE_NAME)).to_have_count(1)
    # …and none of it became markup or ran.
    assert shop_page.evaluate("window.__hoptraceXss") is None
    assert shop_page.locator("main img, main b, main u, main i, main script").count() == 0
    # The failure itself is readable: status, exception and its stack.
    expect(drawer).to_contain_text("PaymentDeclined: card declined")
    expect(drawer.locator("pre.stack")).to_contain_text('File "handler.py", line 42')
    screenshot(shop_page, "span-drawer-inert-html")


def test_keyboard_reaches_the_main_controls(shop_page: Page, shop: Shop) -> None:
    shop_page.goto(f"{shop.url}/spans")
    expect(shop_page.get_by_test_id("span-results").locator("tbody tr")).to_have_count(30)
    reached: list[str] = []
    for _ in range(40):
        shop_page.keyboard.press("Tab")
        reached.append(
            shop_page.evaluate(
                "() => { const e = document.activeElement;"
                " return (e.tagName + ' ' + (e.getAttribute('name') || e.textContent || '')).trim(); }"
            )
        )
    for control in ["A Skip to content", "A Service map", "A Transactions", "A Spans", "A Services",
                    "SELECT range", "SELECT refresh", "BUTTON Refresh", "INPUT service", "SELECT status",
                    "INPUT labels", "BUTTON Search"]:  # fmt: skip
        assert control in reached, f"Tab never reached {control!r}; reached {reached}"

    # Filter and open a trace with the keyboard alone.
    shop_page.get_by_test_id("span-filters").get_by_label("Service").focus()
    shop_page.keyboard.type("checkout-api")
    shop_page.keyboard.press("Enter")
    expect(shop_page).to_have_url(re.compile(r"service=checkout-api"))
    first = shop_page.get_by_test_id("span-results").locator("tbody tr a").first
    expect(shop_page.get_by_test_id("span-results").locator("tbody tr")).to_have_count(12)
    first.focus()
    shop_page.keyboard.press("Enter")
    expect(shop_page).to_have_url(re.compile(r"/traces/[0-9a-f]{32}"))
    row = shop_page.get_by_test_id("timeline-row").first
    row.focus()
    shop_page.keyboard.press("Enter")
    expect(shop_page.get_by_test_id("span-drawer")).to_be_visible()


def test_an_api_error_is_shown_plainly(shop_page: Page, shop: Shop) -> None:
    missing = "0" * 31 + "1"
    shop_page.goto(f"{shop.url}/traces/{missing}")
    alert = shop_page.get_by_role("alert")
    expect(alert).to_contain_text("HTTP 404")
    expect(alert).to_contain_text(f"no trace {missing} in this project")
    expect(alert).to_contain_text(f"/api/v1/traces/{missing}")

    shop_page.goto(f"{shop.url}/spans?min_ms=-5")
    expect(shop_page.get_by_role("alert")).to_contain_text("HTTP 422")
    expect(shop_page.get_by_role("alert")).to_contain_text("min_ms")


def test_auto_refresh_reloads_with_the_window_moved_forward(shop_page: Page, shop: Shop) -> None:
    shop_page.clock.install()
    with shop_page.expect_request(lambda r: "/api/v1/spans?" in r.url) as first:
        shop_page.goto(f"{shop.url}/spans?range=15m")
    expect(shop_page.get_by_test_id("span-results").locator("tbody tr")).to_have_count(30)
    shop_page.get_by_label("Auto-refresh").select_option("10s")
    expect(shop_page).to_have_url(re.compile(r"refresh=10s"))
    before = parse_qs(urlparse(first.value.url).query)

    def moved_on(r: Request) -> bool:
        # Changing the refresh setting may itself reload the same window: wait for the timer's
        # reload, whose window has moved on with the clock. If it never comes, this times out.
        if "/api/v1/spans?" not in r.url:
            return False
        return int(parse_qs(urlparse(r.url).query)["to"][0]) - int(before["to"][0]) >= 10_000

    with shop_page.expect_request(moved_on, timeout=15_000) as again:
        shop_page.clock.run_for(11_000)
    after = parse_qs(urlparse(again.value.url).query)
    assert int(after["to"][0]) - int(after["from"][0]) == 15 * 60 * 1000


def test_a_custom_time_range_goes_to_the_url_and_the_api(shop_page: Page, shop: Shop) -> None:
    shop_page.goto(f"{shop.url}/spans")
    expect(shop_page.get_by_test_id("span-results").locator("tbody tr")).to_have_count(30)
    shop_page.get_by_label("Time range").select_option("custom")
    shop_page.get_by_label("From", exact=True).fill("2026-01-05T10:00")
    shop_page.get_by_label("To", exact=True).fill("2026-01-05T12:30")
    with shop_page.expect_request(lambda r: "/api/v1/spans?" in r.url) as sent:
        shop_page.get_by_role("button", name="Apply").click()
    expected_from, expected_to = shop_page.evaluate(
        "[new Date('2026-01-05T10:00').getTime(), new Date('2026-01-05T12:30').getTime()]"
    )
    expect(shop_page).to_have_url(re.compile(rf"from={expected_from}&to={expected_to}"))
    query = parse_qs(urlparse(sent.value.url).query)
    assert (int(query["from"][0]), int(query["to"][0])) == (expected_from, expected_to)
    # Nothing was sent that day.
    expect(shop_page.get_by_test_id("how-to-send")).to_contain_text("No spans in this time range")


def test_span_pages_follow_the_cursor_and_columns_sort(shop_page: Page, shop: Shop) -> None:
    shop_page.goto(f"{shop.url}/spans?limit=12")
    rows = shop_page.get_by_test_id("span-results").locator("tbody tr")
    expect(rows).to_have_count(12)
    first_page = rows.all_inner_texts()
    shop_page.get_by_role("link", name="Older spans »").click()
    expect(shop_page).to_have_url(re.compile(r"cursor=\d+%3A[0-9a-f]{16}"))
    expect(rows.first).not_to_have_text(first_page[0])  # the next page has replaced this one
    expect(rows).to_have_count(12)
    second_page = rows.all_inner_texts()
    shop_page.get_by_role("link", name="Older spans »").click()
    expect(rows.first).not_to_have_text(second_page[0])
    expect(rows).to_have_count(6)  # 30 spans: 12 + 12 + 6
    third_page = rows.all_inner_texts()
    assert len(set(first_page) | set(second_page) | set(third_page)) == 30
    expect(shop_page.get_by_role("link", name="Older spans »")).to_have_count(0)
    shop_page.get_by_role("link", name="« Newest").click()
    expect(rows).to_have_count(12)
    assert rows.all_inner_texts() == first_page

    shop_page.get_by_test_id("span-results").get_by_role("button", name="Duration").click()
    durations = [float(t.split()[0]) for t in shop_page.locator("[data-testid=span-results] tbody td:nth-child(5)")
                 .all_inner_texts()]  # fmt: skip
    assert durations == sorted(durations, reverse=True) and durations[0] > durations[-1]
    shop_page.get_by_test_id("span-results").get_by_role("button", name="Duration ▼").click()
    durations = [float(t.split()[0]) for t in shop_page.locator("[data-testid=span-results] tbody td:nth-child(5)")
                 .all_inner_texts()]  # fmt: skip
    assert durations == sorted(durations)
