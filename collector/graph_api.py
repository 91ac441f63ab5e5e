"""The graph's query endpoints under ``/api/v1`` (DESIGN §7): the service map and transactions.

Kept apart from ``api.py`` (traces and spans) because the graph issue owns them. The map of a
window is a merge of stored minute rollups; a transaction is read by its id from the stored
summaries, membership and hops — neither rescans spans. The graph is derived by the store's
background pass shortly after ingest; ``/api/v1/graph/status`` says how far behind it is.
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime
from functools import partial
from typing import Any

from fastapi import APIRouter, HTTPException, Path, Query, Request

from hoptrace.graph.correlator import derive
from hoptrace.graph.hops import Hop, hop_end, relay
from hoptrace.graph.rollup import MINUTE_NS
from hoptrace.graph.servicemap import ServiceMap, compare
from hoptrace.graph.spans import CLIENT, PRODUCER, AttrValue
from hoptrace.graph.transactions import Transaction

from .app import collector_of, project_for
from .logs import trace_logs
from .store import StoredSpan, TransactionQuery
from .store.graph_rows import graph_span, resource_attributes
from .store.killed_sql import killed_by_function
from .views import label_params, rfc3339, span_json

API = "/api/v1"
router = APIRouter()

HOUR_NS = 3600 * 10**9
_INT64_MAX = 2**63 - 1
MAX_TRANSACTION_SPANS = 10_000  # what one transaction page carries at most


def _time_ns(value: str | None, name: str) -> int | None:
    """RFC 3339 (with a zone) or unix milliseconds, as nanoseconds."""
    if value is None or value == "":
        return None
    try:
        ms = float(value)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise HTTPException(400, f"{name}={value!r} is neither RFC 3339 nor unix milliseconds") from None
        if parsed.tzinfo is None:
            raise HTTPException(400, f"{name}={value!r} needs a time zone (e.g. a trailing Z)") from None
        ms = parsed.timestamp() * 1000
    if not math.isfinite(ms):
        raise HTTPException(400, f"{name}={value!r} is not a time: give RFC 3339 or unix milliseconds")
    return int(min(max(ms * 1e6, 0), _INT64_MAX))


def _window(from_: str | None, to: str | None, names: tuple[str, str], default_end: int) -> tuple[int, int]:
    end = _time_ns(to, names[1])
    end = default_end if end is None else end
    start = _time_ns(from_, names[0])
    start = end - HOUR_NS if start is None else start
    if start >= end:
        raise HTTPException(400, f"{names[0]} must be before {names[1]}")
    return start, end


# -- map ------------------------------------------------------------------------------------------


@router.get(f"{API}/map", tags=["graph"], summary="The service map of a window, optionally compared with another")
def service_map(
    request: Request,
    from_: str | None = Query(None, alias="from", description="RFC 3339 or unix ms; default: an hour before `to`"),
    to: str | None = Query(None, description="RFC 3339 or unix ms; default: now"),
    compare_from: str | None = Query(None, description="start of the window to compare with"),
    compare_to: str | None = Query(None, description="end of the window to compare with"),
    focus: str | None = Query(None, description="a node id: only it and what is upstream/downstream of it"),
    direction: str = Query("both", pattern="^(upstream|downstream|both)$", description="which side of `focus`"),
) -> dict[str, Any]:
    """Nodes (functions, services, queues, topics, tables, streams, API routes, external hosts) and
    edges (sync, publish, deliver) with counts, errors, throttles, latency percentiles and, on
    asynchronous edges, queue dwell. Windows are whole minutes. With ``compare_from`` /
    ``compare_to``: per node and edge ``delta`` against that window and ``status`` new, gone or same.
    With ``focus``: only that node and its upstream and/or downstream nodes. Function nodes whose
    invocations were killed in the window carry ``killed``: counts by class (timeout,
    out_of_memory, crash).
    """
    project_id = project_for(request, "read")
    store = collector_of(request).store
    start, end = _window(from_, to, ("from", "to"), time.time_ns())

    def build(first: int, last: int) -> dict[str, Any]:
        model = ServiceMap(*store.graph_window(project_id, first, last))
        return (model.focus(focus, direction) if focus else model).to_json()

    current = build(start, end)
    _mark_killed(store, project_id, current, start, end)
    out: dict[str, Any] = {"from": rfc3339(start), "to": rfc3339(end)}
    if compare_from is None and compare_to is None:
        return {**out, **current}
    base_start, base_end = _window(compare_from, compare_to, ("compare_from", "compare_to"), start)
    baseline = build(base_start, base_end)
    return {**out, "compare": {"from": rfc3339(base_start), "to": rfc3339(base_end)}, **compare(current, baseline)}


def _mark_killed(store: Any, project_id: int, the_map: dict[str, Any], start: int, end: int) -> None:
    """``killed`` ({class: count}: timeout, out_of_memory, crash) on the function nodes whose
    invocations were killed in the window (collector/killed.py), for the UI's flags."""
    first, last = start // MINUTE_NS, -(-end // MINUTE_NS)
    killed = store.run_read(partial(killed_by_function, project_id=project_id, first_minute=first, end_minute=last))
    for node in the_map["nodes"]:
        if node["kind"] in ("function", "service") and node["name"] in killed:
            node["killed"] = killed[node["name"]]


MAX_SERIES_MINUTES = 7 * 24 * 60  # points one series may carry


@router.get(f"{API}/map/series", tags=["graph"], summary="Per-minute count, errors and p95 of one node or edge")
def series(
    request: Request,
    node: str | None = Query(None, description="a node id, e.g. function:checkout"),
    edge: str | None = Query(None, description="an edge id SOURCE|TARGET|KIND, as the map gives it"),
    from_: str | None = Query(None, alias="from", description="RFC 3339 or unix ms; default: an hour before `to`"),
    to: str | None = Query(None, description="RFC 3339 or unix ms; default: now"),
) -> dict[str, Any]:
    """One point per whole minute of the window (minutes without calls count 0, ``p95_ms`` null),
    from the minute rollups: what a node's or edge's small charts draw."""
    project_id = project_for(request, "read")
    if (node is None) == (edge is None):
        raise HTTPException(400, "give either node=ID or edge=SOURCE|TARGET|KIND")
    key = None
    if edge is not None:
        parts = edge.split("|")
        if len(parts) != 3 or not all(parts):
            raise HTTPException(400, f"edge={edge!r} is not SOURCE|TARGET|KIND (the map's edge id)")
        key = (parts[0], parts[1], parts[2])
    start, end = _window(from_, to, ("from", "to"), time.time_ns())
    first, last = start // MINUTE_NS, -(-end // MINUTE_NS)
    if last - first > MAX_SERIES_MINUTES:
        raise HTTPException(400, f"the window is longer than {MAX_SERIES_MINUTES // 1440} days: narrow from/to")
    rows = dict(collector_of(request).store.graph_minutes(project_id, start, end, node=node, edge=key))
    points = []
    for minute in range(first, last):
        rollup = rows.get(minute)
        p95 = rollup.latency.quantile(0.95) if rollup is not None else None
        count, errors = (rollup.count, rollup.errors) if rollup is not None else (0, 0)
        points.append({"minute": rfc3339(minute * MINUTE_NS), "count": count, "errors": errors, "p95_ms": _round(p95)})
    target = {"node": node} if node is not None else {"edge": edge}
    return {**target, "from": rfc3339(start), "to": rfc3339(end), "series": points}


@router.get(f"{API}/functions", tags=["graph"], summary="Functions with invocations, errors, latency, cold starts")
def functions(
    request: Request,
    from_: str | None = Query(None, alias="from", description="RFC 3339 or unix ms; default: an hour before `to`"),
    to: str | None = Query(None, description="RFC 3339 or unix ms; default: now"),
) -> dict[str, Any]:
    """Every function invoked in the window, by name, from the map's node rollups (no span scan):
    invocations, errors and their rate, throttles, p50/p95/p99 duration, cold starts, timeouts and
    the start of the last minute it ran in."""
    project_id = project_for(request, "read")
    store = collector_of(request).store
    start, end = _window(from_, to, ("from", "to"), time.time_ns())
    nodes, _ = store.graph_window(project_id, start, end)
    last_seen = store.graph_last_seen(project_id, start, end)
    out = []
    for node_id, r in sorted(nodes.items()):
        kind, _, name = node_id.partition(":")
        if kind != "function" or not r.count:
            continue
        quantiles = [r.latency.quantile(q) for q in (0.5, 0.95, 0.99)]
        out.append({
            "id": node_id, "name": name, "invocations": r.count, "errors": r.errors,
            "error_rate": round(r.errors / r.count, 6), "throttles": r.throttles,
            "p50_ms": _round(quantiles[0]), "p95_ms": _round(quantiles[1]), "p99_ms": _round(quantiles[2]),
            "cold_starts": r.cold_starts, "timeouts": r.timeouts,
            "last_seen": rfc3339(last_seen[node_id] * MINUTE_NS) if node_id in last_seen else None,
        })  # fmt: skip
    return {"from": rfc3339(start), "to": rfc3339(end), "functions": out}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@router.get(f"{API}/graph/status", tags=["graph"], summary="How far the graph lags behind ingest")
def graph_status(request: Request) -> dict[str, Any]:
    """``backlog_spans``: spans stored whose hops, transactions and map rollups are not derived yet
    (a background pass works through them; 0 means the map and transactions are up to date)."""
    project_for(request, "read")
    return {"backlog_spans": collector_of(request).store.graph_backlog()}


# -- transactions ---------------------------------------------------------------------------------


def transaction_json(t: Transaction) -> dict[str, Any]:
    return {
        "id": t.id,
        "root_trace_id": t.root_trace_id,
        "entry": dict(t.entry),
        "start": rfc3339(t.start_ns),
        "start_unix_nano": str(t.start_ns),
        "duration_ms": t.duration_ms,
        "status": t.status,
        "services": list(t.services),
        "resources": list(t.resources),
        "hops": t.hops,
        "errors": t.errors,
        "cold_starts": t.cold_starts,
        "retries": t.retries,
        "incomplete": t.incomplete,
        "trace_ids": list(t.trace_ids),
    }


def hop_json(h: Hop) -> dict[str, Any]:
    return {
        "from_trace": h.from_trace.hex(),
        "from_span": h.from_span.hex(),
        "to_trace": h.to_trace.hex(),
        "to_span": h.to_span.hex(),
        "via": h.via,
        "dwell_ms": h.dwell_ms,
        "clock_skew": h.skew,
        "attempt": h.attempt,
    }


@router.get(f"{API}/transactions", tags=["graph"], summary="Search end-to-end transactions, newest first")
def search_transactions(
    request: Request,
    from_: str | None = Query(None, alias="from", description="RFC 3339 or unix ms"),
    to: str | None = Query(None, description="RFC 3339 or unix ms"),
    service: str | None = Query(None, description="a function or service the transaction went through"),
    resource: str | None = Query(None, description="a resource node id it touched, e.g. queue:orders"),
    status: str | None = Query(None, pattern="^(ok|error|incomplete)$"),
    min_ms: float | None = Query(None, ge=0),
    max_ms: float | None = Query(None, ge=0),
    q: str | None = Query(None, description="a transaction or trace id, or any indexed id (message, request, label)"),
    limit: int = Query(50, ge=1, le=500),
    sort: str = Query("-start", pattern="^-?(start|duration)$", description="start or duration; -: descending"),
    cursor: str | None = Query(None, description="next_cursor of the previous page, with the same sort"),
) -> dict[str, Any]:
    """Filter also by business labels with ``label.KEY=VALUE`` (repeatable, all must match).
    Sorted by ``sort`` (newest first by default), ties by id; pages follow ``next_cursor``."""
    project_id = project_for(request, "read")
    labels = tuple(label_params(request.query_params))
    before = None
    if cursor:
        start_text, _, id_hex = cursor.partition(":")
        if not re.fullmatch(r"[0-9]{1,19}", start_text) or not re.fullmatch("[0-9a-f]{32}", id_hex):
            raise HTTPException(400, "cursor is not one this API returned")
        before = (min(int(start_text), _INT64_MAX), bytes.fromhex(id_hex))
    durations = []
    for name, ms in (("min_ms", min_ms), ("max_ms", max_ms)):
        if ms is not None and not math.isfinite(ms):
            raise HTTPException(400, f"{name} must be a finite number of milliseconds")
        durations.append(None if ms is None else int(min(ms * 1e6, _INT64_MAX)))
    query = TransactionQuery(
        start_ns=_time_ns(from_, "from"),
        end_ns=_time_ns(to, "to"),
        service=service,
        resource=resource,
        status=status,
        min_duration_ns=durations[0],
        max_duration_ns=durations[1],
        labels=labels,
        text=q.strip().lower() if q and re.fullmatch(r"\s*[0-9a-fA-F]{32}\s*", q) else (q.strip() if q else None),
        limit=limit,
        sort=sort.lstrip("-"),
        ascending=not sort.startswith("-"),
        before=before,
    )
    found = collector_of(request).store.search_transactions(project_id, query)
    last = found[-1] if len(found) == limit else None
    value = 0 if last is None else last.start_ns if query.sort == "start" else last.end_ns - last.start_ns
    return {
        "transactions": [transaction_json(t) for t in found],
        "next_cursor": f"{value}:{last.id}" if last is not None else None,
    }


@router.get(f"{API}/transactions/{{transaction_id}}", tags=["graph"], summary="One transaction, across its traces")
def get_transaction(
    request: Request,
    transaction_id: str = Path(
        description="32 hex characters: the id of its entry trace", json_schema_extra={"pattern": "^[0-9a-fA-F]{32}$"}
    ),
) -> dict[str, Any]:
    """Its summary, every span of every trace it spans (oldest first), its hops with ``via`` and
    ``dwell_ms``, its own small map (built from its spans), and the ``logs`` of its traces, each
    with its ``span_id`` (see ``GET /api/v1/traces/{id}/logs``)."""
    project_id = project_for(request, "read")
    if not re.fullmatch("[0-9a-fA-F]{32}", transaction_id):
        raise HTTPException(400, "transaction_id must be 32 hex characters")
    store = collector_of(request).store
    found = store.transaction(project_id, bytes.fromhex(transaction_id))
    if found is None:
        raise HTTPException(404, f"no transaction {transaction_id.lower()} in this project")
    txn, hops = found
    spans: list[StoredSpan] = []
    for trace_id in txn.trace_ids:
        spans.extend(store.trace(project_id, bytes.fromhex(trace_id)))
        if len(spans) >= MAX_TRANSACTION_SPANS:
            break
    spans.sort(key=lambda s: (s.start_ns, s.span_id))
    truncated = len(spans) > MAX_TRANSACTION_SPANS
    spans = spans[:MAX_TRANSACTION_SPANS]
    cache: dict[bytes, dict[str, Any]] = {}
    return {
        **transaction_json(txn),
        "spans": [span_json(s, cache) for s in spans],
        "spans_truncated": truncated,
        "hops": [hop_json(h) for h in hops],
        "map": _own_map(spans, hops),
        # Log records of its traces, each with its span id: the timeline shows them under their span.
        "logs": trace_logs(store, project_id, [bytes.fromhex(t) for t in txn.trace_ids]),
    }


def _own_map(spans: list[StoredSpan], hops: list[Hop]) -> dict[str, Any]:
    """The map of just this transaction: its spans' nodes and edges, its hops' waiting times."""
    resources: dict[bytes, dict[str, AttrValue]] = {}
    views = []
    for s in spans:
        attrs = resources.get(s.resource)
        if attrs is None:
            attrs = resources[s.resource] = resource_attributes(s.resource)
        views.append(graph_span(s, attrs))
    rollups = derive(views).rollups
    # A stored hop does not keep its topic → queue relay; the producer's span says which topic.
    topics = {(g.trace_id, g.span_id): g for g in views if g.kind in (CLIENT, PRODUCER)}
    for hop in hops:
        producer = topics.get((hop.from_trace, hop.from_span))
        if producer is not None and not hop.relay:
            hop = hop._replace(relay=relay(hop_end(producer).edge, hop.edge))
        rollups.add_hop(hop)
    return ServiceMap(*rollups.window(0, 2**62)).to_json()
