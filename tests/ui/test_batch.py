"""A batch consumer that read the messages of two orders belongs to both transactions, and says so."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from playwright.sync_api import Page, expect

from tests.collector_server import CollectorProcess
from tests.otlp_build import new_id, request, span
from tests.ui.conftest import screenshot, wait_for_transactions
from tests.ui.shop import PROTO

expect.set_options(timeout=15_000)
MS = 1_000_000


def _lambda(function: str) -> dict[str, object]:
    return {"cloud.provider": "aws", "cloud.platform": "aws_lambda", "faas.name": function}


@pytest.fixture
def batch_shop(tmp_path: Path) -> Iterator[tuple[str, list[bytes], bytes]]:
    """Two orders, each API call sending one message; one worker invocation reads both."""
    store = f"sqlite:///{tmp_path / 'batch.db'}"
    with CollectorProcess(store) as collector:
        now = time.time_ns() - 120 * 10**9
        api_spans, sends, traces = [], [], []
        for i in range(2):
            trace, api_id, send_id = new_id(16), new_id(8), new_id(8)
            start = now + i * 50 * MS
            api = {"faas.trigger": "http", "http.request.method": "POST", "http.route": "/orders"}
            api_spans.append(
                span("POST /orders", trace_id=trace, span_id=api_id, kind=Span.SPAN_KIND_SERVER, start_ns=start,
                     duration_ms=40, attributes=api)
            )  # fmt: skip
            send = span("orders-queue send", trace_id=trace, span_id=send_id, parent=api_id,
                        kind=Span.SPAN_KIND_PRODUCER, start_ns=start + 10 * MS, duration_ms=15,
                        attributes={"messaging.system": "aws_sqs", "messaging.operation.type": "send",
                                    "messaging.destination.name": "orders-queue"})  # fmt: skip
            api_spans.append(send)
            sends.append(send)
            traces.append(trace)
        batch_trace = new_id(16)
        batch = span("orders-queue process", trace_id=batch_trace, kind=Span.SPAN_KIND_CONSUMER,
                     start_ns=now + 400 * MS, duration_ms=80,
                     attributes={"faas.trigger": "pubsub", "messaging.system": "aws_sqs",
                                 "messaging.operation.type": "process", "messaging.destination.name": "orders-queue",
                                 "messaging.batch.message_count": 2})  # fmt: skip
        for send in sends:
            batch.links.add(trace_id=send.trace_id, span_id=send.span_id)
        with httpx.Client(base_url=collector.url, timeout=30) as client:
            for spans, service in ((api_spans, "checkout-api"), ([batch], "batch-worker")):
                body = request(spans, service, _lambda(service)).SerializeToString()
                assert client.post("/v1/traces", content=body, headers=PROTO).status_code == 200
        wait_for_transactions(collector.url, "", 2)
        yield collector.url, traces, batch_trace


def test_a_batch_consumer_is_shown_in_each_transaction_as_shared(
    page: Page, batch_shop: tuple[str, list[bytes], bytes]
) -> None:
    url, traces, batch_trace = batch_shop
    first, second = (t.hex() for t in traces)
    page.goto(f"{url}/transactions/{first}")
    rows = page.get_by_test_id("timeline-row")
    expect(rows.filter(has_text="batch-worker")).to_have_count(1)
    expect(page.locator("[data-testid=dwell]")).to_contain_text("via link")
    rows.filter(has_text="batch-worker").click()
    shared = page.get_by_test_id("span-drawer").get_by_test_id("trace-transactions")
    expect(shared).to_contain_text("Shared: this trace also belongs to another transaction")
    expect(shared.get_by_role("link")).to_have_count(1)
    screenshot(page, "batch-shared")
    shared.get_by_role("link").click()
    expect(page).to_have_url(re.compile(rf"/transactions/{second}"))
    expect(page.get_by_test_id("timeline-row").filter(has_text="batch-worker")).to_have_count(1)
    # The trace view of the batch leads to both.
    page.goto(f"{url}/traces/{batch_trace.hex()}")
    expect(page.get_by_test_id("trace-transactions")).to_contain_text("Part of 2 transactions")
    expect(page.get_by_test_id("trace-transactions").get_by_role("link")).to_have_count(2)
