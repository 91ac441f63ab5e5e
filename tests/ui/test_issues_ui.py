"""The issues pages in Chromium against a real collector filled over OTLP with real error spans:
the list with counts and sparklines, status filters, an issue's page (stack traces as inert text,
resolving), a function's health, and the rule editor (admin token vs read token)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.collector_server import CollectorProcess
from tests.notify_receiver import Receiver
from tests.ui.conftest import TOKEN_KEY, _context, _require_built_ui, screenshot
from tests.ui.errors import S, invocation, minute_start, send, wait_until_counted

expect.set_options(timeout=20_000)

PAYMENT_STACK = """Traceback (most recent call last):
  File "/var/task/app.py", line 30, in handler
    return charge(order)
  File "/var/task/billing.py", line 12, in charge
    raise PaymentError(f"card declined for order {{order}}")
PaymentError: card declined for order {order}
"""
# An exception message and stack trace carrying markup: the page must show it as text.
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>sku</b>'
SECRET = "whsec-never-shown"
HOSTILE_STACK = f"""Traceback (most recent call last):
  File "/var/task/stock.py", line 7, in handler
    render(item)
  File "/var/task/templates.py", line 41, in render
    raise TemplateError(name)
TemplateError: {HOSTILE}
"""


@dataclass
class Errors:
    url: str
    ingest_token: str
    read_token: str
    admin_token: str
    receiver: Receiver

    def api(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token or self.read_token}"},
                            timeout=30)  # fmt: skip

    def issue(self, kind: str, function: str) -> dict[str, object]:
        with self.api() as api:
            found = api.get("/api/v1/issues", params={"kind": kind, "function": function}).json()["issues"]
        assert len(found) == 1, found
        issue: dict[str, object] = found[0]
        return issue


def _tokens(store: str) -> tuple[str, str, str]:
    command = [sys.executable, "-m", "hoptrace.collector.cli", "project", "create", "shop", "--store", store]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout
    found = [re.search(rf"{kind} token:\s+(\S+)", out) for kind in ("ingest", "read", "admin")]
    assert all(found), f"unexpected output of hoptrace project create: {out}"
    ingest, read, admin = (m.group(1) for m in found if m)
    return ingest, read, admin


def _payment(start_ns: int, order: int) -> dict[str, object]:
    message = f"card declined for order {order}"
    return invocation(start_ns, exception=("PaymentError", message, PAYMENT_STACK.format(order=order)))


@pytest.fixture(scope="module")
def errors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Errors]:
    """A collector with checkout (20 good invocations, 7 PaymentErrors over two minutes, 2 HTTP 502
    answers) and stock (3 exceptions whose message is markup), a webhook channel on a local receiver
    and a first-occurrence rule, every span counted into issues and health."""
    _require_built_ui()
    store = f"sqlite:///{tmp_path_factory.mktemp('ui-issues') / 'issues.db'}"
    ingest, read, admin = _tokens(store)
    env = {"HOPTRACE_NOTIFY_BACKOFF": "0.2s", "HOPTRACE_NOTIFY_TIMEOUT": "120s"}
    with Receiver() as receiver, CollectorProcess(store, env=env) as collector:
        with httpx.Client(base_url=collector.url, headers={"Authorization": f"Bearer {admin}"}, timeout=30) as api:
            hook = {"name": "team hook", "type": "webhook", "url": f"{receiver.url}/hook", "secret": SECRET}
            channel = api.post("/api/v1/channels", json=hook)
            assert channel.status_code == 201, channel.text
            rule = api.post("/api/v1/rules", json={"name": "first only", "channel_id": channel.json()["id"],
                                                    "threshold": -1})  # fmt: skip
            assert rule.status_code == 201, rule.text
        early, late = minute_start(20), minute_start(5)
        with httpx.Client(base_url=collector.url, headers={"Authorization": f"Bearer {ingest}"}, timeout=30) as sender:
            send(sender, "checkout", [invocation(late - 6 * 60 * S + i * S, cold=i < 3) for i in range(20)])
            payment = [_payment(early + i * S, 100 + i) for i in range(4)]
            payment += [_payment(late + i * S, 200 + i) for i in range(3)]
            send(sender, "checkout", payment)
            send(sender, "checkout", [invocation(late + 10 * S + i * S, status=502) for i in range(2)])
            hostile = ("TemplateError", HOSTILE, HOSTILE_STACK)
            send(sender, "stock", [invocation(late + 20 * S + i * S, exception=hostile) for i in range(3)])
        found = Errors(collector.url, ingest, read, admin, receiver)
        with found.api() as api:
            wait_until_counted(api)
        yield found


@pytest.fixture
def errors_page(browser: Browser, errors: Errors) -> Iterator[Page]:
    context = _context(browser)
    context.add_init_script(f"localStorage.setItem({TOKEN_KEY!r}, {errors.read_token!r})")
    pg = context.new_page()
    page_errors: list[str] = []
    pg.on("pageerror", lambda exc: page_errors.append(str(exc)))
    try:
        yield pg
    finally:
        context.close()
    assert not page_errors, f"JavaScript errors on the page: {page_errors}"


def _row(page: Page, title: str) -> object:
    return page.get_by_test_id("issue-row").filter(has_text=title)


def test_the_issues_list_shows_the_grouped_issues_with_counts_and_sparklines(errors_page: Page, errors: Errors) -> None:
    page = errors_page
    page.goto(f"{errors.url}/map")
    # Reachable from the top navigation with the keyboard.
    nav = page.get_by_role("navigation", name="Views")
    nav.get_by_role("link", name="Issues").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/issues$"))
    rows = page.get_by_test_id("issue-row")
    expect(rows).to_have_count(3)
    payment = rows.filter(has_text="PaymentError")
    expect(payment.get_by_test_id("issue-count")).to_have_text("7")
    expect(payment).to_contain_text("checkout")
    expect(payment).to_contain_text("exception")
    expect(payment.get_by_test_id("issue-status")).to_have_text("open")
    # The sparkline is the issue's own timeline: 4 then 3 occurrences, 15 minutes apart.
    spark = payment.get_by_test_id("issue-spark")
    expect(spark).to_have_attribute("data-values", re.compile(r"^[0-9,]+$"))
    values = [int(v) for v in (spark.get_attribute("data-values") or "").split(",")]
    assert sum(values) == 7 and sorted(v for v in values if v) == [3, 4], values
    assert payment.locator("svg rect").count() == 2
    http = rows.filter(has_text="HTTP 5xx")
    expect(http.get_by_test_id("issue-count")).to_have_text("2")
    stock = rows.filter(has_text="TemplateError")
    expect(stock.get_by_test_id("issue-count")).to_have_text("3")
    expect(stock).to_contain_text("<script>")  # the title shown as text
    assert page.evaluate("window.__pwned") is None
    # Filters live in the URL: kind narrows and a shared link shows the same rows.
    filters = page.get_by_test_id("issue-filters")
    filters.get_by_label("Kind").select_option("http_5xx")
    filters.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"kind=http_5xx"))
    expect(rows).to_have_count(1)
    page.goto(f"{errors.url}/issues?function=stock")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("TemplateError")
    page.goto(f"{errors.url}/issues")
    expect(rows).to_have_count(3)
    expect(page.get_by_test_id("issue-spark")).to_have_count(3)
    screenshot(page, "issues-list")


def test_the_detail_page_shows_stack_traces_as_inert_text(errors_page: Page, errors: Errors) -> None:
    page = errors_page
    issue = errors.issue("exception", "stock")
    page.goto(f"{errors.url}/issues")
    _row(page, "TemplateError").get_by_role("link", name=re.compile("TemplateError")).click()  # type: ignore[attr-defined]
    expect(page).to_have_url(re.compile(rf"/issues/{issue['id']}"))
    expect(page.get_by_test_id("issue-title")).to_contain_text("TemplateError")
    expect(page.get_by_test_id("issue-total")).to_have_text("3")
    occurrences = page.get_by_test_id("occurrence")
    expect(occurrences).to_have_count(3)
    first = occurrences.first
    expect(first.get_by_test_id("occurrence-message")).to_have_text(HOSTILE)
    expect(first.get_by_test_id("stacktrace")).to_have_text(HOSTILE_STACK.strip("\n"))
    # Nothing of it became markup: no script or image element, no handler ran.
    assert page.locator("main script, main img, main b").count() == 0
    assert page.evaluate("window.__pwned") is None
    # Each occurrence links to its transaction (or its trace until the graph has it).
    link = first.get_by_role("link", name=re.compile(r"^(transaction|trace) "))
    expect(link).to_have_count(1)
    href = link.get_attribute("href") or ""
    assert re.match(r"^/(transactions|traces)/[0-9a-f]{32}", href), href
    # The timeline: 3 occurrences within one minute.
    timeline = page.get_by_test_id("issue-timeline")
    values = [float(v) for v in (timeline.get_attribute("data-values") or "").split(",")]
    assert sum(values) == 3, values
    expect(page.get_by_test_id("notifications")).to_contain_text("delivered")


def test_resolving_an_issue_changes_its_status_and_the_filtered_list(errors_page: Page, errors: Errors) -> None:
    page = errors_page
    issue = errors.issue("exception", "checkout")
    page.goto(f"{errors.url}/issues/{issue['id']}")
    expect(page.get_by_test_id("issue-title")).to_have_text("PaymentError: card declined for order <n>")
    expect(page.get_by_test_id("occurrence")).to_have_count(7)
    expect(page.get_by_test_id("stacktrace").first).to_contain_text('File "/var/task/billing.py", line 12, in charge')
    # The first occurrence notified the webhook through the rule.
    expect(page.get_by_test_id("notifications")).to_contain_text("delivered")
    expect(page.get_by_test_id("issue-status")).to_have_text("open")
    screenshot(page, "issue-detail")
    page.get_by_test_id("issue-resolved").click()
    expect(page.get_by_test_id("issue-status")).to_have_text("resolved")
    expect(page.get_by_test_id("issue-open")).to_be_visible()  # "Reopen" is offered now
    with errors.api() as api:
        assert api.get(f"/api/v1/issues/{issue['id']}").json()["status"] == "resolved"
    # The list follows: open narrows to the other two, resolved shows this one.
    page.goto(f"{errors.url}/issues?status=open")
    rows = page.get_by_test_id("issue-row")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="PaymentError")).to_have_count(0)
    filters = page.get_by_test_id("issue-filters")
    filters.get_by_label("Status").select_option("resolved")
    filters.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"status=resolved"))
    expect(rows).to_have_count(1)
    expect(rows.first.get_by_test_id("issue-status")).to_have_text("resolved")
    # Reopen it from its page: back in the open list.
    rows.first.get_by_role("link", name=re.compile("PaymentError")).click()
    page.get_by_test_id("issue-open").click()
    expect(page.get_by_test_id("issue-status")).to_have_text("open")
    page.goto(f"{errors.url}/issues?status=open")
    expect(rows).to_have_count(3)


def test_a_status_change_the_api_refuses_is_shown_plainly(errors_page: Page, errors: Errors) -> None:
    page = errors_page
    issue = errors.issue("http_5xx", "checkout")
    page.goto(f"{errors.url}/issues/{issue['id']}")
    expect(page.get_by_test_id("issue-status")).to_have_text("open")
    # The stored token is swapped, after the page loaded, for the ingest token (which may send
    # spans but not change issues), then for one the collector does not know.
    page.evaluate(f"localStorage.setItem({TOKEN_KEY!r}, {errors.ingest_token!r})")
    page.get_by_test_id("issue-ignored").click()
    error = page.get_by_test_id("status-error")
    expect(error).to_contain_text("HTTP 403")
    expect(error).to_contain_text("this is a ingest token; this call needs read or admin token")
    page.evaluate(f"localStorage.setItem({TOKEN_KEY!r}, 'ht_read_not-a-real-token')")
    page.get_by_test_id("issue-ignored").click()
    expect(error).to_contain_text("HTTP 401")
    expect(error).to_contain_text("a valid token is required")
    expect(page.get_by_test_id("issue-status")).to_have_text("open")
    with errors.api() as api:
        assert api.get(f"/api/v1/issues/{issue['id']}").json()["status"] == "open"


def test_the_function_health_page_shows_the_function_figures(errors_page: Page, errors: Errors) -> None:
    page = errors_page
    page.goto(f"{errors.url}/map")
    page.get_by_test_id("map-nodes").get_by_role("button", name="checkout").click()
    page.get_by_test_id("map-panel").get_by_role("link", name="Health of checkout").click()
    expect(page).to_have_url(re.compile(r"/functions/checkout"))
    expect(page.get_by_test_id("health-function")).to_have_text("checkout")
    # 20 good invocations, 7 exceptions, 2 HTTP 502: 29 invocations, 9 errors, 3 cold starts.
    expect(page.get_by_test_id("fig-invocations")).to_contain_text("29")
    expect(page.get_by_test_id("fig-errors")).to_contain_text("9 (")
    expect(page.get_by_test_id("fig-cold")).to_contain_text("3 (")
    expect(page.get_by_test_id("fig-throttles")).to_contain_text("0")
    expect(page.get_by_test_id("fig-p50")).to_contain_text("ms")
    # Nothing in the hour before: the change is the whole figure.
    expect(page.get_by_test_id("fig-invocations")).to_contain_text("+29")
    by_class = page.get_by_test_id("errors-by-class")
    expect(by_class.locator("tr[data-class=exception] td.num").first).to_have_text("7")
    expect(by_class.locator("tr[data-class=http_5xx] td.num").first).to_have_text("2")
    chart = page.get_by_test_id("chart-invocations")
    values = [float(v) for v in (chart.get_attribute("data-values") or "").split(",")]
    assert sum(values) == 29 and len(values) >= 59, values
    expect(page.get_by_test_id("health-warnings")).to_contain_text("Cold starts")
    screenshot(page, "function-health")
    # From an issue's functions too.
    page.goto(f"{errors.url}/issues?kind=http_5xx")
    page.get_by_test_id("issue-row").get_by_role("link", name="checkout", exact=True).click()
    expect(page.get_by_test_id("health-function")).to_have_text("checkout")


def test_the_rule_editor_creates_with_an_admin_token_and_shows_a_read_tokens_refusal(
    errors_page: Page, errors: Errors
) -> None:
    page = errors_page
    page.goto(f"{errors.url}/map")
    page.get_by_role("navigation", name="Views").get_by_role("link", name="Rules").click()
    channels = page.get_by_test_id("channel-row")
    expect(channels).to_have_count(1)
    expect(channels.first).to_contain_text("team hook")
    expect(channels.first).to_contain_text("secret: set")
    expect(page.locator("main")).not_to_contain_text(SECRET)
    expect(page.get_by_test_id("rule-row")).to_have_count(1)

    def fill(name: str) -> None:
        page.get_by_test_id("new-rule").click()
        form = page.get_by_test_id("rule-form")
        form.get_by_label("Name").fill(name)
        form.get_by_label("Threshold").fill("10")
        form.get_by_label("Interval").fill("5")
        form.get_by_label("Bucket").select_option("minute")
        form.get_by_label("exception").check()
        form.get_by_label("Functions").fill("checkout, stock")
        form.get_by_role("button", name="Create rule").click()

    # With only the read token: the API's 403 in its own words, and no rule.
    fill("paged")
    error = page.get_by_test_id("rule-error")
    expect(error).to_contain_text("HTTP 403")
    expect(error).to_contain_text("this call needs admin token")
    with errors.api() as api:
        assert len(api.get("/api/v1/rules").json()["rules"]) == 1
    screenshot(page, "rules")
    page.get_by_test_id("rule-form").get_by_role("button", name="Cancel").click()

    page.get_by_role("textbox", name=re.compile("^Admin token")).fill(errors.admin_token)
    fill("paged")
    rows = page.get_by_test_id("rule-row")
    expect(rows).to_have_count(2)
    created = rows.filter(has_text="paged")
    expect(created).to_contain_text("checkout, stock")
    expect(created).to_contain_text("minute")
    with errors.api() as api:
        (rule,) = [r for r in api.get("/api/v1/rules").json()["rules"] if r["name"] == "paged"]
    assert (rule["threshold"], rule["interval"], rule["bucket"], rule["kinds"], rule["functions"]) == (
        10, 5, "minute", ["exception"], ["checkout", "stock"])  # fmt: skip
    screenshot(page, "rules-created")

    # Edit, then delete (confirmed).
    page.get_by_role("button", name="Edit rule paged").click()
    form = page.get_by_test_id("rule-form")
    form.get_by_label("Threshold").fill("20")
    form.get_by_role("button", name="Save rule").click()
    expect(created.locator("td").nth(2)).to_have_text("20")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete rule paged").click()
    expect(rows).to_have_count(1)
    with errors.api() as api:
        assert [r["name"] for r in api.get("/api/v1/rules").json()["rules"]] == ["first only"]


def test_a_resolved_issue_that_comes_back_is_marked_a_regression(errors_page: Page, errors: Errors) -> None:
    page = errors_page
    issue = errors.issue("http_5xx", "checkout")
    page.goto(f"{errors.url}/issues/{issue['id']}")
    page.get_by_test_id("issue-resolved").click()
    expect(page.get_by_test_id("issue-status")).to_have_text("resolved")
    expect(page.get_by_test_id("regression")).to_have_count(0)
    with httpx.Client(base_url=errors.url, headers={"Authorization": f"Bearer {errors.ingest_token}"}) as sender:
        send(sender, "checkout", [invocation(time.time_ns(), status=502)])  # after the resolve: it came back
    with errors.api() as api:
        wait_until_counted(api)
    page.goto(f"{errors.url}/issues?kind=http_5xx")
    row = page.get_by_test_id("issue-row")
    expect(row).to_have_count(1)
    expect(row.get_by_test_id("issue-status")).to_have_text("open")
    expect(row.get_by_test_id("regression")).to_be_visible()
    expect(row.get_by_test_id("issue-count")).to_have_text("3")
    row.get_by_role("link", name=re.compile("HTTP 502")).click()
    expect(page.get_by_test_id("regression")).to_be_visible()
    expect(page.get_by_test_id("occurrence")).to_have_count(3)
