"""Issue 5's done-when on the demo shop's real traffic, in Chromium: a new user sees the whole system on the
map, finds a failed order by its label and follows it across the queue, the topic and the stream.

The data is the end-to-end run of ``tests/e2e/demo_run.py`` (shared with the API tests when both run).
Screenshots: ``tests/ui/artifacts/demo-map.png``, ``demo-failed-order.png``, ``demo-transaction.png``,
``demo-dead-lettered.png``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.demo_run import DemoRun, shared_run
from tests.e2e.test_demo_shop import EXPECTED_NODES, _one_transaction
from tests.ui.conftest import _require_built_ui, screenshot

expect.set_options(timeout=20_000)


@pytest.fixture(scope="session")
def demo_shop(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    _require_built_ui()
    yield from shared_run(request, tmp_path_factory)


@pytest.fixture
def demo_page(page: Page) -> Iterator[Page]:
    """A page on the demo's collector (open on loopback: no token), failing on any JavaScript error."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_the_map_shows_the_whole_shop(demo_page: Page, demo_shop: DemoRun) -> None:
    demo_page.set_viewport_size({"width": 1920, "height": 1000})  # a desktop screen: the shop is wide
    demo_page.goto(f"{demo_shop.url}/map")
    nodes = demo_page.get_by_test_id("map-nodes")
    expect(nodes.locator("li")).to_have_count(len(EXPECTED_NODES))
    for node in sorted(EXPECTED_NODES):
        kind, name = node.split(":", 1)
        expect(nodes.get_by_role("button", name=f"{kind} {name}", exact=True)).to_have_count(1)
    edges = demo_page.get_by_test_id("map-edges")
    expect(edges.locator("li", has_text="checkout-queue → checkout-worker")).to_contain_text("deliver")
    expect(edges.locator("li", has_text="checkout-worker → order-placed")).to_contain_text("publish")
    expect(edges.locator("li", has_text="orders stream → order-totals")).to_contain_text("deliver")
    expect(edges.locator("li", has_text="checkout-worker → payments.shop.test")).to_contain_text("err")
    expect(demo_page.get_by_test_id("service-map").locator("canvas").first).to_be_visible()
    demo_page.wait_for_timeout(1500)  # the layout's animation, for the screenshot only
    screenshot(demo_page, "demo-map")


def test_a_failed_order_found_by_its_label_is_followed_across_queue_topic_and_stream(
    demo_page: Page, demo_shop: DemoRun
) -> None:
    # Bob's card was throttled: his order failed its first attempt, was retried by SQS and went on.
    order_id = demo_shop.order_id("bob")
    own = _one_transaction(demo_shop, "bob")
    demo_page.goto(f"{demo_shop.url}/transactions")
    filters = demo_page.get_by_test_id("transaction-filters")
    filters.get_by_label("Status").select_option("error")
    filters.get_by_label("Labels").fill(f"order_id={order_id}")
    filters.get_by_role("button", name="Search").click()
    expect(demo_page).to_have_url(re.compile(r"status=error.*label\.order_id=" + order_id))
    table = demo_page.get_by_test_id("transaction-results")
    row = table.locator("tbody tr", has=demo_page.locator(f"a[href*='{own['id']}']"))
    expect(row).to_have_count(1)
    expect(row).to_contain_text("POST /checkout")
    expect(row).to_contain_text("checkout-worker")
    screenshot(demo_page, "demo-failed-order")

    row.locator(f"a[href*='{own['id']}']").first.click()
    expect(demo_page).to_have_url(re.compile(rf"/transactions/{own['id']}"))
    summary = demo_page.get_by_test_id("transaction-summary")
    expect(summary).to_contain_text(f"{len(own['trace_ids'])} traces")
    timeline = demo_page.get_by_test_id("timeline")
    # Every hop of the order: the API call, the queue (twice: the throttled attempt and the retry),
    # the topic's two subscriptions, the table's stream and the totals handler's write.
    for name in ["POST /checkout", "checkout-queue process", "SNS.Publish", "order-notifications process",
                 "order-analytics process", "DynamoDB.PutItem", "orders process", "DynamoDB.UpdateItem"]:  # fmt: skip
        expect(timeline.locator("li", has_text=name).first).to_be_visible()
    expect(timeline.locator("li", has_text="waited").first).to_be_visible()
    hops = demo_page.get_by_test_id("transaction-hops")
    for via in ("parent", "dynamodb_item"):  # context carried through queue and topic; the stream by pointer
        expect(hops).to_contain_text(via)
    expect(demo_page.get_by_test_id("transaction-map").locator("canvas").first).to_be_visible()
    demo_page.get_by_test_id("timeline-row").filter(has_text="checkout-queue process").first.click()
    drawer = demo_page.get_by_test_id("span-drawer")
    expect(drawer.get_by_test_id("span-labels")).to_contain_text(order_id)
    demo_page.wait_for_timeout(1000)  # the small map's layout, for the screenshot only
    screenshot(demo_page, "demo-transaction")


def test_the_dead_lettered_order_shows_its_three_failed_attempts(demo_page: Page, demo_shop: DemoRun) -> None:
    order_id = demo_shop.order_id("mallory")
    own = _one_transaction(demo_shop, "mallory")
    demo_page.goto(f"{demo_shop.url}/transactions?label.order_id={order_id}")
    row = demo_page.get_by_test_id("transaction-results").locator("tbody tr", has_text="POST /checkout")
    expect(row.first).to_be_visible()
    demo_page.goto(f"{demo_shop.url}/transactions/{own['id']}")
    attempts = demo_page.get_by_test_id("timeline-row").filter(has_text="checkout-queue process")
    expect(attempts.first).to_be_visible()
    assert attempts.count() >= 3
    demo_page.get_by_test_id("timeline-row").filter(has_text="checkout-queue process").last.click()
    expect(demo_page.get_by_test_id("span-drawer")).to_contain_text("batchItemFailures")
    screenshot(demo_page, "demo-dead-lettered")
