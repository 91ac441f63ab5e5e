"""Answers shaped as DESIGN §7 describes the graph's endpoints (map, transactions), for the UI's tests.

The browser tests serve these through Playwright's request routing until the collector's own
endpoints land. Node and edge metrics are flat with ``health`` shares, ids ``kind:name`` and
``source|target|kind``, and compare adds ``status`` and ``delta``, as graph/servicemap.py
exports them; the UI also reads metrics nested under ``metrics``.
"""

from __future__ import annotations

import copy
from typing import Any


def _metrics(count: int, errors: int = 0, throttles: int = 0, p: tuple[float, float, float] | None = None,
             client_errors: int = 0, **more: Any) -> dict[str, Any]:
    faults = errors - throttles - client_errors
    ok = count - errors
    total = count or 1
    out: dict[str, Any] = {
        "count": count,
        "errors": errors,
        "throttles": throttles,
        "p50_ms": p[0] if p else None,
        "p95_ms": p[1] if p else None,
        "p99_ms": p[2] if p else None,
        "health": {
            "ok": ok / total,
            "4xx": client_errors / total,
            "5xx": faults / total,
            "throttled": throttles / total,
        },
    }
    out.update(more)
    return out


def _node(kind: str, name: str, layer: int, **metrics: Any) -> dict[str, Any]:
    return {"id": f"{kind}:{name}", "kind": kind, "name": name, "layer": layer, **_metrics(**metrics)}


def _edge(source: str, target: str, kind: str, **metrics: Any) -> dict[str, Any]:
    return {"id": f"{source}|{target}|{kind}", "source": source, "target": target, "kind": kind, **_metrics(**metrics)}


SHOP_MAP: dict[str, Any] = {
    "nodes": [
        _node("api", "POST /orders", 0, count=600, errors=6, client_errors=6, p=(30, 47, 88)),
        _node("function", "checkout-api", 1, count=600, errors=6, client_errors=6, p=(31, 48, 90), cold_starts=4),
        _node("queue", "orders-queue", 2, count=600),
        _node("function", "order-worker", 3, count=600, errors=120, throttles=30, p=(80, 95, 240), cold_starts=9,
              timeouts=2, series=[{"count": 40, "errors": 2, "p95_ms": 90}, {"count": 60, "errors": 30, "p95_ms": 140},
                                  {"count": 50, "errors": 8, "p95_ms": 96}]),
        _node("table", "orders", 4, count=600, p=(15, 22, 30)),
        _node("stream", "orders stream", 5, count=580),
        _node("function", "order-events", 6, count=580, p=(9, 12, 14)),
        _node("http", "payments.example.com", 4, count=600, errors=120, p=(40, 60, 70)),
    ],
    "edges": [
        _edge("api:POST /orders", "function:checkout-api", "sync", count=600, errors=6, client_errors=6,
              p=(31, 48, 90)),
        _edge("function:checkout-api", "queue:orders-queue", "publish", count=600, p=(12, 18, 25)),
        _edge("queue:orders-queue", "function:order-worker", "deliver", count=600, errors=120, throttles=30,
              p=(80, 95, 240), dwell_p50_ms=110, dwell_p95_ms=120, dwell_count=600),
        _edge("function:order-worker", "http:payments.example.com", "sync", count=600, errors=120, p=(40, 60, 70)),
        _edge("function:order-worker", "table:orders", "sync", count=600, p=(15, 22, 30)),
        _edge("table:orders", "stream:orders stream", "publish", count=580),
        _edge("stream:orders stream", "function:order-events", "deliver", count=580, p=(9, 12, 14),
              dwell_p50_ms=300, dwell_p95_ms=900, dwell_count=580),
    ],
}


def compared_map() -> dict[str, Any]:
    """SHOP_MAP against an earlier window in which order-events and its stream edge did not exist yet."""
    out = copy.deepcopy(SHOP_MAP)
    for part in ("nodes", "edges"):
        for item in out[part]:
            item["status"] = "same"
            item["delta"] = {"count": 0, "errors": 0, "throttles": 0, "p95_ms": 0.0}
    worker = next(n for n in out["nodes"] if n["name"] == "order-worker")
    worker["delta"] = {"count": 120, "errors": 90, "throttles": 30, "p95_ms": 41.5}
    next(n for n in out["nodes"] if n["name"] == "order-events")["status"] = "new"
    next(e for e in out["edges"] if e["target"] == "function:order-events")["status"] = "new"
    gone = {"id": "function:legacy-mailer", "kind": "function", "name": "legacy-mailer", "layer": 4}
    out["nodes"].append({**gone, "count": 0, "errors": 0, "throttles": 0, "status": "gone", "delta": {"count": -300}})
    return out


def transaction_row(order_id: str, trace_id: str, duration_ms: float, errors: int, start: str) -> dict[str, Any]:
    return {
        "id": f"tx-{order_id}",
        "root_trace_id": trace_id,
        "entry": {"trigger": "http", "name": "POST /orders", "service": "checkout-api"},
        "start": start,
        "duration_ms": duration_ms,
        "services": ["checkout-api", "order-worker"],
        "hops": 1,
        "errors": errors,
        "trace_ids": [trace_id],
        "cold_starts": 1 if order_id.endswith("1") else 0,
        "labels": {"order_id": order_id},
    }
