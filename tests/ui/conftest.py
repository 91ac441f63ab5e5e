"""Browser-test fixtures: real collectors (``hoptrace serve``) filled over OTLP, and Debian's Chromium
driven by Playwright. Screenshots go to ``tests/ui/artifacts/`` (git-ignored) for people to look at.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.collector_server import CollectorProcess
from tests.ui.shop import Order, post_orders

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = os.environ.get("HOPTRACE_CHROMIUM", "/usr/bin/chromium")
# Headless, and nothing that reaches out to the network on its own.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN_KEY = "hoptrace.token"


def _require_built_ui() -> None:
    if not (ROOT / "ui" / "dist" / "index.html").is_file():
        pytest.fail("the web UI is not built (ui/dist/index.html is missing): run ./scripts/ensure-ui.sh")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the session (Debian's package; Playwright's own download is not used)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run ./scripts/ensure-chromium.sh (as root) or set HOPTRACE_CHROMIUM")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Shop:
    """A collector with tokens, filled with the shop's orders."""

    url: str
    read_token: str
    ingest_token: str
    orders: list[Order]

    @property
    def failed(self) -> Order:
        return next(o for o in self.orders if o.failed)

    @property
    def ok(self) -> Order:
        return next(o for o in self.orders if not o.failed)


def create_project(store_url: str, name: str) -> tuple[str, str]:
    """``hoptrace project create`` as a user runs it: (ingest token, read token) from its output."""
    out = subprocess.run(
        [sys.executable, "-m", "hoptrace.collector.cli", "project", "create", name, "--store", store_url],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    ingest = re.search(r"ingest token: (\S+)", out)
    read = re.search(r"read token:\s+(\S+)", out)
    assert ingest and read, f"unexpected output of hoptrace project create: {out}"
    return ingest.group(1), read.group(1)


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    _require_built_ui()
    store = f"sqlite:///{tmp_path_factory.mktemp('ui-shop') / 'shop.db'}"
    ingest, read = create_project(store, "shop")
    with CollectorProcess(store) as collector:
        orders = post_orders(collector.url, ingest)
        wait_for_transactions(collector.url, read, len(orders))
        yield Shop(url=collector.url, read_token=read, ingest_token=ingest, orders=orders)


def wait_for_transactions(url: str, read_token: str, count: int, timeout: float = 30.0) -> None:
    """Until the graph has stitched every posted order into a transaction (it works behind the ack)."""
    deadline = time.monotonic() + timeout
    found = -1
    while time.monotonic() < deadline:
        headers = {"Authorization": f"Bearer {read_token}"} if read_token else {}
        answer = httpx.get(f"{url}/api/v1/transactions", headers=headers, timeout=10)
        if answer.status_code == 200:
            found = len(answer.json()["transactions"])
            if found >= count:
                return
        time.sleep(0.2)
    pytest.fail(f"the collector showed {found} transactions of the {count} orders posted within {timeout} s")


@pytest.fixture(scope="session")
def empty_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A collector with no tokens (loopback, so open) and no spans."""
    _require_built_ui()
    store = f"sqlite:///{tmp_path_factory.mktemp('ui-empty') / 'empty.db'}"
    with CollectorProcess(store) as collector:
        yield collector.url


def _context(browser: Browser) -> BrowserContext:
    return browser.new_context(viewport={"width": 1400, "height": 900})


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser page with nothing stored (no token)."""
    context = _context(browser)
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()


@pytest.fixture
def shop_page(browser: Browser, shop: Shop) -> Iterator[Page]:
    """A page whose browser already holds the shop's read token, as after the token prompt."""
    context = _context(browser)
    context.add_init_script(f"localStorage.setItem({TOKEN_KEY!r}, {shop.read_token!r})")
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield pg
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def screenshot(page: Page, name: str) -> Path:
    """Saves a full-page screenshot as a test artefact and returns its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    # From the top: the sticky navbar is drawn where the page was scrolled to, so a page scrolled
    # to a clicked row showed it halfway down the full-page image.
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=True)
    return path
