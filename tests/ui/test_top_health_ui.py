"""The top-N page, the function health page's new figures and charts, and the issues list's
sparklines in Chromium, against a real collector filled over OTLP: this week's and last week's
API calls, SQS-triggered invocations carrying memory, init, deadline and record age attributes,
and a few errors."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, expect

from tests.collector_server import CollectorProcess
from tests.integration.test_health_figures import MIB, invocation, request
from tests.integration.test_issues_notify import wait_for
from tests.integration.test_top import WEEK, calls
from tests.notify_receiver import Receiver
from tests.ui.conftest import _context, _require_built_ui, screenshot
from tests.ui.errors import S, minute_start, send, wait_until_counted
from tests.ui.errors import invocation as http_invocation

expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _require_built_ui()
    store = f"sqlite:///{tmp_path_factory.mktemp('ui-top') / 'top.db'}"
    with CollectorProcess(store) as c, c.client() as api:
        now = minute_start(20)
        for body in (calls("checkout", "POST /checkout", now, 10, 800, failed=3),
                     calls("cart", "GET /cart", now, 40, 20), calls("checkout", "POST /checkout", now - WEEK, 10, 200),
                     calls("cart", "GET /cart", now - WEEK, 20, 20)):  # fmt: skip
            assert api.post("/v1/traces", json=body).status_code == 200
        worker = [
            invocation(now + i * 20 * S, 500, **{"faas.coldstart": i % 3 == 0, "hoptrace.faas.init_ms": 300.0 + i,
                                                 "hoptrace.faas.peak_memory": (60 + 6 * i) * MIB,
                                                 "hoptrace.faas.deadline_ms": 10_000,
                                                 "hoptrace.faas.record_age_ms": 1000 * i})
            for i in range(12)
        ]  # fmt: skip
        assert api.post("/v1/traces", json=request(worker)).status_code == 200
        failing = [http_invocation(now + i * 90 * S, status=502) for i in range(2)]
        send(api, "checkout", failing)
        wait_until_counted(api)
        yield c.url


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = _context(browser)
    pg = context.new_page()
    page_errors: list[str] = []
    pg.on("pageerror", lambda exc: page_errors.append(str(exc)))
    try:
        yield pg
    finally:
        context.close()
    assert not page_errors, f"JavaScript errors on the page: {page_errors}"


def test_the_top_page_ranks_with_week_over_week_changes(page: Page, collector: str) -> None:
    page.goto(f"{collector}/map")
    page.get_by_role("navigation", name="Views").get_by_role("link", name="Top").click()
    expect(page).to_have_url(re.compile(r"/top$"))
    slowest = page.get_by_test_id("top-functions-slowest").get_by_test_id("top-row")
    expect(slowest.first).to_have_attribute("data-name", "checkout")
    expect(slowest.first.get_by_test_id("change")).to_have_text(re.compile(r"^\+\d+ %$"))  # 800 vs 200 ms
    called = page.get_by_test_id("top-routes-most_called").get_by_test_id("top-row")
    expect(called.first).to_have_attribute("data-name", "GET /cart")
    expect(called.first.get_by_test_id("change")).to_have_text("+100 %")  # 40 against 20
    worker = page.get_by_test_id("top-functions-most_called").get_by_test_id("top-row").filter(has_text="worker")
    expect(worker.get_by_test_id("change")).to_have_text("new")
    failing = page.get_by_test_id("top-entries-most_failing").get_by_test_id("top-row")
    expect(failing.first).to_have_attribute("data-name", "POST /checkout")
    screenshot(page, "top")
    # A function's name leads to its health.
    slowest.first.get_by_role("link", name="checkout").click()
    expect(page.get_by_test_id("health-function")).to_have_text("checkout")


def chart(page: Page, testid: str) -> list[float]:
    return [float(v) for v in (page.get_by_test_id(testid).get_attribute("data-values") or "").split(",")]


def test_the_health_page_charts_memory_concurrency_init_and_record_age(page: Page, collector: str) -> None:
    page.goto(f"{collector}/functions/worker?range=1h")
    expect(page.get_by_test_id("fig-memory")).to_contain_text("126 MiB of 128 MiB")  # 60 + 6 × 11
    expect(page.get_by_test_id("fig-deadline")).to_contain_text("5.0 %")  # 0.5 s of 10 s
    expect(page.get_by_test_id("fig-record-age")).to_contain_text("11")  # 11 s, the oldest
    expect(page.get_by_test_id("fig-init")).to_contain_text("ms")
    expect(page.get_by_test_id("fig-concurrency")).to_contain_text("/ 0.5")  # half a second each, 20 s apart
    memory = page.get_by_test_id("chart-memory")
    values = [float(v) for v in (memory.get_attribute("data-values") or "").split(",")]
    assert max(values) == 126.0 and len([v for v in values if v]) >= 4, values
    assert max(chart(page, "chart-concurrency")) == 0.5  # the busiest second of any minute
    assert max(chart(page, "chart-record-age")) == 11_000.0
    expect(page.get_by_test_id("chart-init")).to_be_visible()
    screenshot(page, "function-health-figures")
    # Its warnings are issues: 126 MiB of 128 MiB is above 95 % of the configured memory.
    page.get_by_role("link", name="Its warnings").click()
    expect(page).to_have_url(re.compile(r"kind=warning"))
    warning = page.get_by_test_id("issue-row")
    expect(warning).to_have_count(1)
    expect(warning).to_contain_text("worker: memory above 95 % of the configured size")
    expect(warning).to_contain_text("warning")


def test_the_issues_list_draws_sparklines_without_a_request_per_issue(page: Page, collector: str) -> None:
    asked: list[str] = []

    def note(req: Request) -> None:
        if "/api/v1/issues" in req.url:
            asked.append(req.url)

    page.on("request", note)
    page.goto(f"{collector}/issues")
    spark = page.get_by_test_id("issue-row").filter(has_text="HTTP 502").get_by_test_id("issue-spark")
    expect(spark).to_have_attribute("data-values", re.compile(r"^[0-9,]+$"))
    assert sum(int(v) for v in (spark.get_attribute("data-values") or "").split(",")) == 2
    assert asked and all(re.search(r"/api/v1/issues\?", url) for url in asked), asked  # no /issues/{id}
    assert all("spark=24" in url for url in asked)


def test_the_weekly_digest_is_set_and_sent_from_the_rules_page(page: Page, collector: str) -> None:
    with Receiver() as receiver, httpx.Client(base_url=collector, timeout=30) as api:
        slack = api.post("/api/v1/channels", json={"name": "team slack", "type": "slack", "url": f"{receiver.url}/s"})
        assert slack.status_code == 201, slack.text
        page.goto(f"{collector}/rules")
        panel = page.get_by_test_id("digest")
        expect(panel.get_by_test_id("digest-state")).to_contain_text("Not set")
        panel.get_by_label("Channel").select_option(label="team slack (slack)")
        panel.get_by_label("Weekday (UTC)").select_option(label="Friday")
        panel.get_by_label("Hour (UTC)").fill("17")
        panel.get_by_role("button", name="Save digest").click()
        expect(panel.get_by_test_id("digest-state")).to_contain_text("Every Friday at 17:00 UTC")
        saved = api.get("/api/v1/digest").json()
        assert (saved["weekday"], saved["hour"], saved["channel_id"]) == (4, 17, slack.json()["id"])
        panel.get_by_role("button", name="Send now").click()
        expect(panel.get_by_test_id("digest-note")).to_contain_text("Queued")
        wait_for("the digest at the receiver", lambda: len(receiver.ok_calls("/s")) == 1)
        blocks = receiver.ok_calls("/s")[0].json()["blocks"]
        text = "\n".join(b["text"]["text"] for b in blocks if b["type"] == "section")
        assert "Most called: cart 40 (+100%)" in text
        screenshot(page, "digest")
