"""One small, fixed run of the demo shop (``hoptrace demo``'s own stack), shared by the API and browser tests.

Five shoppers check out at once, each with a payment test card that makes their order take a
known path: paid at once (alice, dave), throttled twice then retried (bob), a gateway error then
retried (carol), declined three times and moved to the dead-letter queue (mallory). The partner
import (traced by OpenTelemetry's own instrumentation, not hoptrace) runs once. The run waits
until every queue is drained and the collector's graph has caught up, then stops the functions
and keeps the collector for the tests.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from hoptrace.demo import app
from hoptrace.demo.stack import DemoStack, free_port
from hoptrace.demo.traffic import Shopper, Traffic, Visit

SHOPPERS = [
    Shopper("alice", (("p-100", 2), ("p-200", 1)), "4242", change_quantity=True),
    Shopper("bob", (("p-300", 1),), "4000-429"),
    Shopper("carol", (("p-400", 2),), "4000-503"),
    Shopper("mallory", (("p-200", 1),), "4000-402"),
    Shopper("dave", (("p-100", 1),), "4242"),
]
PAID = ("alice", "bob", "carol", "dave")
SETTLE_S = 180.0  # an upper bound on a loaded machine, never a measured duration


@dataclass
class DemoRun:
    stack: DemoStack
    visits: dict[str, Visit]  # by customer
    dlq_bodies: list[dict[str, Any]]
    partner_orders: int

    @property
    def url(self) -> str:
        return self.stack.collector_url

    def order_id(self, customer: str) -> str:
        order_id = self.visits[customer].order_id
        assert order_id, f"{customer}'s checkout was refused: {self.visits[customer].statuses}"
        return order_id

    def get(self, path: str, **params: Any) -> Any:
        import httpx

        answer = httpx.get(self.url + path, params=params, timeout=30)
        assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text}"
        return answer.json()


def _until(what: str, check: Callable[[], bool], stack: DemoStack) -> None:
    deadline = time.monotonic() + SETTLE_S
    while not check():
        if time.monotonic() > deadline:
            logs = sorted(p.name for p in stack.workdir.rglob("*.log"))
            pytest.fail(f"the demo did not get there: {what} (logs in {stack.workdir}: {logs})")
        time.sleep(0.5)


def _totals(stack: DemoStack) -> int:
    ddb = app.aws_client("dynamodb", stack.aws_endpoint)
    items = ddb.scan(TableName=app.TOTALS_TABLE).get("Items", [])
    return sum(int(item["order_count"]["N"]) for item in items)


def _dlq(stack: DemoStack) -> list[dict[str, Any]]:
    assert stack.resources is not None
    sqs = app.aws_client("sqs", stack.aws_endpoint)
    got = sqs.receive_message(
        QueueUrl=stack.resources.queue_urls[app.CHECKOUT_DLQ], MaxNumberOfMessages=10, VisibilityTimeout=0
    )
    return [json.loads(m["Body"]) for m in got.get("Messages", [])]


def _scheduled_on_map(stack: DemoStack) -> bool:
    nodes = {n["id"] for n in stack.api_get("/api/v1/map")["nodes"]}
    return {"function:sales-report", "function:stock-sync"} <= nodes


def start_run(workdir: Path) -> DemoRun:
    stack = DemoStack(port=free_port(), workdir=workdir, say=lambda line: print(f"demo: {line}", flush=True))
    stack.start()
    try:
        assert stack.runner is not None
        runner = stack.runner
        traffic = Traffic(stack.api_url, shoppers=SHOPPERS, interval_s=0.0, concurrency=len(SHOPPERS))
        traffic.start()
        traffic.join(SETTLE_S)
        assert not traffic.is_alive() and not traffic.errors, traffic.errors
        visits = {v.shopper.customer: v for v in traffic.visits}
        assert all(visits[c].order_id for c in visits), {c: v.statuses for c, v in visits.items()}
        # The partner import: once is enough, and none may start while the run settles.
        _until("the partner import ran", lambda: runner.stats.invocations["partner-import"] >= 1, stack)
        # The functions sometimes killed: on the map, whether killed this time or not.
        _until("the sales report ran", lambda: runner.stats.invocations["sales-report"] >= 1, stack)
        _until("the stock sync ran", lambda: runner.stats.invocations["stock-sync"] >= 1, stack)
        runner.schedules_off.set()
        partner_orders = runner.stats.invocations["partner-import"]
        expected_totals = len(PAID) + partner_orders
        _until("mallory's order in the dead-letter queue", lambda: stack.queue_depth(app.CHECKOUT_DLQ) == 1, stack)
        _until(
            "every paid order counted by the totals function",
            lambda: _totals(stack) == expected_totals,
            stack,
        )
        queues = (app.CHECKOUT_QUEUE, app.NOTIFY_QUEUE, app.ANALYTICS_QUEUE)
        _until("every queue drained", lambda: all(stack.queue_depth(q) == 0 for q in queues), stack)
        # Let the last invocations return (their spans are flushed before they do), then stop the functions.
        time.sleep(2.0)
        runner.stop()
        dlq = _dlq(stack)
        # A sales report killed for its memory is recorded once its deadline and the grace have
        # passed (the collector's killed pass), which may be after everything else settled.
        _until("the sometimes-killed functions on the map", lambda: _scheduled_on_map(stack), stack)
        _until(
            "the collector's graph caught up",
            lambda: stack.api_get("/api/v1/graph/status")["backlog_spans"] == 0,
            stack,
        )
        return DemoRun(stack, visits, dlq, partner_orders)
    except BaseException:
        stack.stop()
        raise


_lock = threading.Lock()
_run: Optional[DemoRun] = None


def shared_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    """The run, started by the first session fixture that asks and stopped when that fixture ends."""
    global _run
    with _lock:
        owner = _run is None
        if owner:
            _run = start_run(tmp_path_factory.mktemp("demo"))
        run = _run
    assert run is not None
    try:
        yield run
    finally:
        if owner:
            run.stack.stop()
            _run = None
