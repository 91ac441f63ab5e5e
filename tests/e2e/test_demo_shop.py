"""The demo shop end to end: real function processes on a moto server, spans through a real collector,
everything checked through the query API (``/api/v1/map``, ``/api/v1/transactions``)."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from tests.e2e.demo_run import PAID, SHOPPERS, DemoRun

ROUTES = ["POST /cart", "GET /cart/{customer_id}", "PUT /cart/{customer_id}/{product_id}", "POST /checkout"]
FUNCTIONS = [
    "add-to-cart", "list-cart", "update-cart", "checkout", "checkout-worker", "notify-customer", "analytics-ingest",
    "order-totals", "partner-import", "sales-report", "stock-sync",
]  # fmt: skip
EXPECTED_NODES = {
    *(f"api:{r}" for r in ROUTES),
    *(f"function:{f}" for f in FUNCTIONS),
    "client:direct invokers",  # the partner import's schedule, as OpenTelemetry's Lambda instrumentation reports it
    "http:catalog.shop.test", "http:payments.shop.test",
    "queue:checkout-queue", "queue:order-notifications", "queue:order-analytics", "topic:order-placed",
    "table:shopping-cart", "table:orders", "table:customer-totals", "stream:orders stream",
    "schedule:sales-report-every-15s", "schedule:stock-sync-every-15s",  # the functions sometimes killed
}  # fmt: skip
SYNC, PUBLISH, DELIVER = "sync", "publish", "deliver"
EXPECTED_EDGES = {
    ("api:POST /cart", "function:add-to-cart", SYNC),
    ("api:GET /cart/{customer_id}", "function:list-cart", SYNC),
    ("api:PUT /cart/{customer_id}/{product_id}", "function:update-cart", SYNC),
    ("api:POST /checkout", "function:checkout", SYNC),
    ("client:direct invokers", "function:partner-import", SYNC),
    ("schedule:sales-report-every-15s", "function:sales-report", SYNC),
    ("schedule:stock-sync-every-15s", "function:stock-sync", SYNC),
    ("function:add-to-cart", "http:catalog.shop.test", SYNC),
    ("function:add-to-cart", "table:shopping-cart", SYNC),
    ("function:list-cart", "table:shopping-cart", SYNC),
    ("function:update-cart", "table:shopping-cart", SYNC),
    ("function:checkout", "table:shopping-cart", SYNC),
    ("function:checkout", "queue:checkout-queue", PUBLISH),
    ("function:partner-import", "queue:checkout-queue", PUBLISH),
    ("queue:checkout-queue", "function:checkout-worker", DELIVER),
    ("function:checkout-worker", "http:payments.shop.test", SYNC),
    ("function:checkout-worker", "table:orders", SYNC),
    ("function:checkout-worker", "table:shopping-cart", SYNC),
    ("function:checkout-worker", "topic:order-placed", PUBLISH),
    ("queue:order-notifications", "function:notify-customer", DELIVER),
    ("queue:order-analytics", "function:analytics-ingest", DELIVER),
    ("table:orders", "stream:orders stream", PUBLISH),
    ("stream:orders stream", "function:order-totals", DELIVER),
    ("function:order-totals", "table:customer-totals", SYNC),
}
# SNS's own deliveries are not spans: the hops from the publish to each queue's consumers draw them.
TOPIC_EDGES = {
    ("topic:order-placed", "queue:order-notifications", DELIVER),
    ("topic:order-placed", "queue:order-analytics", DELIVER),
}


def _map(run: DemoRun) -> dict[str, Any]:
    the_map: dict[str, Any] = run.get("/api/v1/map")
    return the_map


def _edges(the_map: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(e["source"], e["target"], e["kind"]): e for e in the_map["edges"]}


def _one_transaction(run: DemoRun, customer: str) -> dict[str, Any]:
    """The order's own transaction, found by its label: exactly one, and its entry carries that label."""
    order_id = run.order_id(customer)
    found = run.get("/api/v1/transactions", **{"label.order_id": order_id})["transactions"]
    assert len(found) == 1, f"{customer}: {len(found)} transactions found for order {order_id}: {found}"
    detail: dict[str, Any] = run.get(f"/api/v1/transactions/{found[0]['id']}")
    entry = [s for s in detail["spans"] if s["trace_id"] == detail["root_trace_id"] and not s["parent_span_id"]]
    assert any(s["attributes"].get("hoptrace.label.order_id") == order_id for s in entry), entry
    assert not detail["spans_truncated"]
    return detail


def _reachable_spans(detail: dict[str, Any], start: dict[str, Any]) -> list[dict[str, Any]]:
    """Spans reachable from ``start`` going down parent → child and along the transaction's hops."""
    by_key = {(s["trace_id"], s["span_id"]): s for s in detail["spans"]}
    forward: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for s in detail["spans"]:
        if s["parent_span_id"]:
            forward[(s["trace_id"], s["parent_span_id"])].append((s["trace_id"], s["span_id"]))
    for h in detail["hops"]:
        forward[(h["from_trace"], h["from_span"])].append((h["to_trace"], h["to_span"]))
    seen = {(start["trace_id"], start["span_id"])}
    todo = list(seen)
    while todo:
        for nxt in forward.get(todo.pop(), []):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return [by_key[k] for k in seen if k in by_key]


def test_the_map_has_exactly_the_shops_nodes_and_edges(demo_run: DemoRun) -> None:
    the_map = _map(demo_run)
    nodes = {n["id"] for n in the_map["nodes"]}
    assert not EXPECTED_NODES - nodes, f"missing nodes: {EXPECTED_NODES - nodes}"
    assert not nodes - EXPECTED_NODES, f"unexpected nodes: {nodes - EXPECTED_NODES}"
    edges = set(_edges(the_map))
    expected = EXPECTED_EDGES | TOPIC_EDGES
    assert not expected - edges, f"missing edges: {expected - edges}"
    assert not edges - expected, f"unexpected edges: {edges - expected}"
    functions = {n["id"]: n for n in the_map["nodes"] if n["kind"] == "function"}
    assert all(n["count"] >= 1 for n in functions.values()), functions  # every function was invoked


def test_the_map_joins_the_topic_to_its_subscribed_queues(demo_run: DemoRun) -> None:
    edges = _edges(_map(demo_run))
    for edge in TOPIC_EDGES:  # each paid order's "order placed" reached both queues, at least
        assert edges[edge]["count"] >= len(PAID), edges[edge]
    for customer in PAID:  # and each order's own small map draws them too
        own = _one_transaction(demo_run, customer)["map"]
        assert set(_edges(own)) >= TOPIC_EDGES, f"{customer}: {sorted(_edges(own))}"


def test_the_flaky_payment_gateway_shows_its_errors_throttles_and_the_retries_they_cause(demo_run: DemoRun) -> None:
    edges = _edges(_map(demo_run))
    payments = edges[("function:checkout-worker", "http:payments.shop.test", SYNC)]
    partner = demo_run.partner_orders
    # One call per paid order, bob's two 429s, carol's 503, mallory's three declines (402).
    assert payments["count"] >= len(PAID) + partner + 2 + 1 + 3, payments
    assert payments["throttles"] >= 2 and payments["errors"] >= 6, payments
    # Every order is delivered once, plus bob's and carol's second attempts and mallory's second and third.
    delivered = edges[("queue:checkout-queue", "function:checkout-worker", DELIVER)]
    assert delivered["count"] >= len(SHOPPERS) + partner + 4, delivered
    assert delivered["dwell_p50_ms"] is not None and delivered["dwell_count"] >= 1
    for customer, retries in (("bob", 1), ("carol", 1), ("alice", 0), ("dave", 0)):
        detail = _one_transaction(demo_run, customer)
        assert detail["retries"] == retries, (customer, detail["retries"])


def test_each_paid_order_runs_from_the_api_through_queue_topic_and_stream_to_the_totals_function(
    demo_run: DemoRun,
) -> None:
    for customer in PAID:
        detail = _one_transaction(demo_run, customer)
        assert detail["entry"] == {"trigger": "http", "name": "POST /checkout", "service": "checkout"}, detail["entry"]
        assert set(detail["resources"]) >= {
            "queue:checkout-queue", "topic:order-placed", "queue:order-notifications", "queue:order-analytics",
            "table:orders", "stream:orders stream", "table:customer-totals",
        }  # fmt: skip
        (api_call,) = [s for s in detail["spans"] if s["name"] == "POST /checkout" and s["kind"] == "SERVER"]
        assert api_call["trace_id"] == detail["root_trace_id"]
        assert api_call["attributes"]["hoptrace.label.order_id"] == demo_run.order_id(customer)
        reached = _reachable_spans(detail, api_call)
        # Along parent links and hops only: the API call leads to every consumer downstream of it.
        reached_services = {s["service"] for s in reached}
        assert reached_services >= {"checkout", "checkout-worker", "notify-customer", "analytics-ingest",
                                    "order-totals"}, (customer, reached_services)  # fmt: skip
        names = {(s["service"], s["name"]) for s in reached}
        assert ("order-totals", "DynamoDB.UpdateItem") in names, names  # the totals handler's own write
        spans = {(s["trace_id"], s["span_id"]): s for s in detail["spans"]}
        via_by_consumer = defaultdict(set)
        for h in detail["hops"]:
            consumer = spans.get((h["to_trace"], h["to_span"]))
            if consumer is not None:
                via_by_consumer[consumer["service"]].add(h["via"])
        assert via_by_consumer["checkout-worker"] & {"parent", "link", "message_id"}, via_by_consumer
        assert via_by_consumer["notify-customer"] & {"parent", "link", "message_id"}, via_by_consumer  # SNS envelope
        assert via_by_consumer["analytics-ingest"] & {"parent", "link", "md5"}, via_by_consumer  # raw delivery
        assert via_by_consumer["order-totals"] & {"dynamodb_item", "dynamodb_key"}, via_by_consumer  # stream: pointers


def test_a_batch_that_read_several_orders_joins_each_of_their_transactions_and_merges_none(demo_run: DemoRun) -> None:
    found = demo_run.get("/api/v1/transactions", limit=200)["transactions"]
    checkouts = [t for t in found if t["entry"]["name"] == "POST /checkout"]
    assert len(checkouts) == len(SHOPPERS)  # one per order: the shared batches glued none together
    assert len({t["root_trace_id"] for t in checkouts}) == len(SHOPPERS)
    labels_of: dict[str, str] = {}
    transactions_of_trace: dict[str, set[str]] = defaultdict(set)
    batch_traces: set[str] = set()
    for t in checkouts:
        detail = demo_run.get(f"/api/v1/transactions/{t['id']}")
        roots = [s for s in detail["spans"] if s["name"] == "POST /checkout" and s["kind"] == "SERVER"]
        assert len(roots) == 1, "a transaction holds exactly one API call"
        labels_of[t["id"]] = roots[0]["attributes"]["hoptrace.label.order_id"]
        for trace_id in t["trace_ids"]:
            transactions_of_trace[trace_id].add(t["id"])
        for s in detail["spans"]:
            if s["service"] == "checkout-worker" and int(s["attributes"].get("messaging.batch.message_count", 1)) > 1:
                batch_traces.add(s["trace_id"])
    assert sorted(labels_of.values()) == sorted(demo_run.order_id(c) for c in demo_run.visits)
    shared = {trace for trace in batch_traces if len(transactions_of_trace[trace]) > 1}
    assert shared, "no checkout-worker batch carried several orders: the fan-in case did not happen"
    for trace in shared:
        members = transactions_of_trace[trace]
        assert len({labels_of[m] for m in members}) == len(members)  # each its own order


def test_the_dead_lettered_order_is_found_by_its_label_failed_after_its_retries(demo_run: DemoRun) -> None:
    order_id = demo_run.order_id("mallory")
    assert [b["order_id"] for b in demo_run.dlq_bodies] == [order_id]  # SQS moved it after maxReceiveCount
    by_customer = demo_run.get("/api/v1/transactions", **{"label.customer": "mallory"})["transactions"]
    assert _one_transaction(demo_run, "mallory")["id"] in [t["id"] for t in by_customer]
    detail = _one_transaction(demo_run, "mallory")
    assert detail["status"] == "error" and detail["errors"] >= 3
    assert detail["retries"] == 2  # received three times: two retries
    attempts = sorted(h["attempt"] for h in detail["hops"] if h["via"] == "parent" and h["attempt"])
    assert {1, 2, 3} <= set(attempts), detail["hops"]
    # It never got past the payment: its own spans stop at the worker's three failed attempts (the
    # transaction may still hold other orders' work from a batch it shared).
    own = [s for s in detail["spans"] if s["attributes"].get("hoptrace.label.order_id") == order_id]
    assert {s["service"] for s in own} == {"checkout", "checkout-worker"}, own
    # Its record's span in each attempt (not the invocations, which returned batchItemFailures fine): all failed.
    records = [s for s in own if s["service"] == "checkout-worker" and "faas.trigger" not in s["attributes"]]
    assert len(records) == 3 and all(s["status"]["code"] == "ERROR" for s in records), records
    failed = demo_run.get("/api/v1/transactions", status="error")["transactions"]
    assert detail["id"] in {t["id"] for t in failed}


def test_the_dead_lettered_orders_payment_failures_are_logged_under_its_attempts(demo_run: DemoRun) -> None:
    order_id = demo_run.order_id("mallory")
    detail = _one_transaction(demo_run, "mallory")
    attempts = {s["span_id"] for s in detail["spans"] if s["attributes"].get("hoptrace.label.order_id") == order_id
                and s["service"] == "checkout-worker" and "faas.trigger" not in s["attributes"]}  # fmt: skip
    logs = [r for r in detail["logs"] if order_id in r["body"]]
    retried = [r for r in logs if "SQS retries it" in r["body"]]
    last = [r for r in logs if r["severity_text"] == "ERROR"]
    assert len(retried) == 2 and all(r["severity_text"] == "WARNING" for r in retried), logs
    assert len(last) == 1 and "dead-letter queue" in last[0]["body"], logs
    # Each tied to the record span of its own attempt.
    assert {r["span_id"] for r in retried + last} == attempts
    assert all(r["service"] == "checkout-worker" for r in logs)


def test_the_dead_lettered_order_is_marked_incomplete(demo_run: DemoRun) -> None:
    assert _one_transaction(demo_run, "mallory")["incomplete"] is True


def test_the_partner_orders_sent_without_trace_context_are_joined_by_message_id(demo_run: DemoRun) -> None:
    found = demo_run.get("/api/v1/transactions", service="partner-import")["transactions"]
    entries = [t for t in found if t["entry"]["service"] == "partner-import"]
    assert len(entries) == demo_run.partner_orders
    for t in entries:
        detail = demo_run.get(f"/api/v1/transactions/{t['id']}")
        sender = {s["span_id"] for s in detail["spans"] if s["service"] == "partner-import" and s["kind"] != "SERVER"}
        spans = {s["span_id"]: s for s in detail["spans"]}
        joined = [h for h in detail["hops"] if h["from_span"] in sender]
        assert joined and {h["via"] for h in joined} == {"message_id"}, detail["hops"]
        assert {spans[h["to_span"]]["service"] for h in joined} == {"checkout-worker"}
        assert {"checkout-worker", "order-totals", "notify-customer", "analytics-ingest"} <= set(t["services"])


def test_a_label_search_returns_only_the_labelled_orders_transaction(demo_run: DemoRun) -> None:
    for customer in PAID:
        found = demo_run.get("/api/v1/transactions", **{"label.order_id": demo_run.order_id(customer)})
        assert [t["id"] for t in found["transactions"]] == [_one_transaction(demo_run, customer)["id"]]


def test_the_payment_gateways_failures_are_issues_posted_to_the_demos_slack_receiver(demo_run: DemoRun) -> None:
    stack = demo_run.stack
    assert stack.slack is not None
    deadline = time.monotonic() + 60
    while demo_run.get("/api/v1/issues/status")["queued_spans"] and time.monotonic() < deadline:
        time.sleep(0.5)
    issues = demo_run.get("/api/v1/issues")["issues"]
    failing = [i for i in issues if "checkout-worker" in i["functions"]]
    assert failing, [(i["kind"], i["title"], i["functions"]) for i in issues]
    while demo_run.get("/api/v1/issues/status")["pending_notifications"] and time.monotonic() < deadline:
        time.sleep(0.5)
    # Every issue's first occurrence notifies: one Slack message each, linking back to the issue.
    links = {f"{stack.collector_url}/issues/{i['id']}" for i in issues}
    posted = [m for m in stack.slack.messages if any(link in m["text"] for link in links)]
    assert len(posted) >= len(issues), [m["text"] for m in stack.slack.messages]
    one = next(m for m in posted if f"/issues/{failing[0]['id']}" in m["text"])
    assert one["blocks"][0]["type"] == "header" and failing[0]["title"][:40] in one["blocks"][0]["text"]["text"]
    buttons = [e["url"] for b in one["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert f"{stack.collector_url}/issues/{failing[0]['id']}" in buttons
