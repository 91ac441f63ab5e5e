"""Answers shaped as DESIGN §7 describes the graph's endpoints (map, transactions), for the UI's tests.

The browser tests serve these through Playwright's request routing until the collector's own
endpoints land; the UI is built to the contract's field names, so both must agree on them.
"""

from __future__ import annotations

from typing import Any

SHOP_MAP: dict[str, Any] = {
    "nodes": [
        {"id": "api:POST /orders", "kind": "api", "name": "POST /orders", "metrics": {"count": 600, "errors": 0}},
        {
            "id": "fn:checkout-api",
            "kind": "function",
            "name": "checkout-api",
            "metrics": {"count": 600, "errors": 6, "throttles": 0, "p50_ms": 31, "p95_ms": 48, "p99_ms": 90,
                        "cold_starts": 4, "timeouts": 0},
        },
        {"id": "queue:orders-queue", "kind": "queue", "name": "orders-queue", "metrics": {"count": 600, "errors": 0}},
        {
            "id": "fn:order-worker",
            "kind": "function",
            "name": "order-worker",
            "metrics": {"count": 600, "errors": 120, "throttles": 30, "p50_ms": 80, "p95_ms": 95, "p99_ms": 240,
                        "cold_starts": 9, "timeouts": 2,
                        "series": [{"count": 40, "errors": 2, "p95_ms": 90}, {"count": 60, "errors": 30, "p95_ms": 140},
                                   {"count": 50, "errors": 8, "p95_ms": 96}]},
        },
        {"id": "table:orders", "kind": "table", "name": "orders", "metrics": {"count": 600, "errors": 0}},
        {"id": "stream:orders", "kind": "stream", "name": "orders (stream)", "metrics": {"count": 580}},
        {"id": "fn:order-events", "kind": "function", "name": "order-events", "metrics": {"count": 580, "errors": 0},
         "status": "new"},
        {"id": "http:payments.example.com", "kind": "http", "name": "payments.example.com",
         "metrics": {"count": 600, "errors": 120}},
    ],
    "edges": [
        {"source": "api:POST /orders", "target": "fn:checkout-api", "kind": "sync", "count": 600, "errors": 6,
         "throttles": 0, "p50_ms": 31, "p95_ms": 48, "p99_ms": 90},
        {"source": "fn:checkout-api", "target": "queue:orders-queue", "kind": "publish", "count": 600, "errors": 0,
         "throttles": 0, "p50_ms": 12, "p95_ms": 18, "p99_ms": 25},
        {"source": "queue:orders-queue", "target": "fn:order-worker", "kind": "deliver", "count": 600, "errors": 120,
         "throttles": 30, "p50_ms": 80, "p95_ms": 95, "p99_ms": 240, "dwell_p50_ms": 110, "dwell_p95_ms": 120},
        {"source": "fn:order-worker", "target": "http:payments.example.com", "kind": "sync", "count": 600,
         "errors": 120, "throttles": 0, "p50_ms": 40, "p95_ms": 60, "p99_ms": 70},
        {"source": "fn:order-worker", "target": "table:orders", "kind": "sync", "count": 600, "errors": 0,
         "throttles": 0, "p50_ms": 15, "p95_ms": 22, "p99_ms": 30},
        {"source": "table:orders", "target": "stream:orders", "kind": "publish", "count": 580, "errors": 0,
         "throttles": 0},
        {"source": "stream:orders", "target": "fn:order-events", "kind": "deliver", "count": 580, "errors": 0,
         "throttles": 0, "p95_ms": 12, "dwell_p50_ms": 300, "dwell_p95_ms": 900, "status": "new"},
    ],
}


def transaction_row(order_id: str, trace_id: str, duration_ms: float, errors: int, start: str) -> dict[str, Any]:
    return {
        "id": f"tx-{order_id}",
        "root_trace_id": trace_id,
        "entry": {"trigger": "http", "name": "POST /orders"},
        "start": start,
        "duration_ms": duration_ms,
        "services": ["checkout-api", "order-worker"],
        "hops": 1,
        "errors": errors,
        "trace_ids": [trace_id],
        "cold_starts": 1 if order_id.endswith("1") else 0,
        "labels": {"order_id": order_id},
    }
