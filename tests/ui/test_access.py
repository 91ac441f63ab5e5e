"""Who sees what: the token prompt on 401/403, the empty collector's instructions, the not-built page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.collector_server import CollectorProcess
from tests.ui.conftest import TOKEN_KEY, Shop, screenshot

expect.set_options(timeout=15_000)


def test_a_401_asks_for_the_read_token_and_keeps_it(page: Page, shop: Shop) -> None:
    page.goto(f"{shop.url}/spans?service=order-worker")
    gate = page.get_by_test_id("token-gate")
    expect(gate).to_be_visible()
    expect(gate).to_contain_text("HTTP 401")
    expect(gate).to_contain_text("a valid token is required")
    screenshot(page, "token-prompt")

    # A wrong token: asked again, still no data.
    gate.get_by_label("Read token").fill("ht_read_not-a-real-token")
    gate.get_by_role("button", name="Use this token").click()
    expect(page.get_by_test_id("token-gate")).to_contain_text("HTTP 401")
    expect(page.get_by_test_id("span-results")).to_have_count(0)

    # The ingest token is the wrong kind: the API's 403 is shown as it is.
    page.get_by_test_id("token-gate").get_by_label("Read token").fill(shop.ingest_token)
    page.get_by_test_id("token-gate").get_by_role("button", name="Use this token").click()
    expect(page.get_by_test_id("token-gate")).to_contain_text("HTTP 403")
    expect(page.get_by_test_id("token-gate")).to_contain_text("this call needs a read token")

    page.get_by_test_id("token-gate").get_by_label("Read token").fill(shop.read_token)
    page.get_by_test_id("token-gate").get_by_role("button", name="Use this token").click()
    expect(page.get_by_test_id("span-results").locator("tbody tr")).to_have_count(18)
    assert page.evaluate(f"localStorage.getItem({TOKEN_KEY!r})") == shop.read_token

    # Kept across reloads; "Forget token" brings the prompt back.
    page.reload()
    expect(page.get_by_test_id("span-results").locator("tbody tr")).to_have_count(18)
    page.get_by_role("button", name="Forget token").click()
    expect(page.get_by_test_id("token-gate")).to_be_visible()
    assert page.evaluate(f"localStorage.getItem({TOKEN_KEY!r})") is None


def test_a_token_in_the_link_is_kept_and_taken_out_of_the_address(page: Page, shop: Shop) -> None:
    page.goto(f"{shop.url}/services?token={shop.read_token}")
    expect(page.get_by_test_id("service-results").locator("tbody tr")).to_have_count(2)
    assert "token=" not in page.url
    assert page.evaluate(f"localStorage.getItem({TOKEN_KEY!r})") == shop.read_token


def test_an_empty_collector_explains_how_to_send_spans(page: Page, empty_collector: str) -> None:
    page.goto(f"{empty_collector}/services")
    how = page.get_by_test_id("how-to-send")
    expect(how).to_be_visible()
    expect(how).to_contain_text(f"{empty_collector}/v1/traces")
    expect(how).to_contain_text(f"OTEL_EXPORTER_OTLP_ENDPOINT={empty_collector}")
    expect(how).to_contain_text("OTEL_SERVICE_NAME=")
    expect(how).to_contain_text("OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20")
    screenshot(page, "empty-collector")
    for view in ["spans", "map", "transactions"]:
        page.goto(f"{empty_collector}/{view}")
        expect(page.get_by_test_id("how-to-send")).to_contain_text("OTEL_EXPORTER_OTLP_ENDPOINT=")


@pytest.fixture
def unbuilt_collector(tmp_path: Path) -> Iterator[str]:
    """A collector whose UI folder holds no build, as from a wheel built without ensure-ui.sh."""
    empty = tmp_path / "no-ui"
    empty.mkdir()
    store = f"sqlite:///{tmp_path / 'unbuilt.db'}"
    with CollectorProcess(store, env={"HOPTRACE_UI_DIR": str(empty)}) as collector:
        yield collector.url


def test_without_a_build_the_collector_says_how_to_build_the_ui(page: Page, unbuilt_collector: str) -> None:
    response = page.goto(f"{unbuilt_collector}/map")
    assert response is not None and response.status == 503
    expect(page.get_by_role("heading", level=1)).to_have_text("The hoptrace web UI is not built")
    expect(page.locator("pre")).to_have_text("./scripts/ensure-ui.sh")
    screenshot(page, "not-built")
    # The collector itself is unaffected.
    assert httpx.get(f"{unbuilt_collector}/healthz").json()["status"] == "ok"
    assert httpx.get(f"{unbuilt_collector}/api/v1/services").status_code == 200
    page.get_by_role("link", name="/docs").click()
    expect(page).to_have_url(re.compile(r"/docs$"))
