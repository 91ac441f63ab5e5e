"""Top-N with trends under ``/api/v1/top`` (see ``collector/top.py`` for what is read)."""

from __future__ import annotations

import time
from typing import Any, Optional

from fastapi import APIRouter, HTTPException, Query, Request

from hoptrace.graph.rollup import MINUTE_NS

from . import top
from .api import _time_ns
from .app import collector_of
from .issues_api import project_of
from .store import SpanStore, top_sql
from .views import rfc3339

API = "/api/v1"
router = APIRouter()
DAY_NS = 24 * 3600 * 10**9
MAX_DAYS = 31


def compute(store: SpanStore, project_id: int, start: int, end: int, limit: int) -> dict[str, Any]:
    """The rankings of [start, end) against the same window a week earlier (also the digest's)."""
    before_start, before_end = start - top.WEEK_NS, end - top.WEEK_NS
    nodes, edges = store.graph_window(project_id, start, end)
    old_nodes, old_edges = store.graph_window(project_id, before_start, before_end)
    entries, cut = store.run_read(lambda sql: top_sql.entries(sql, project_id, start, end))
    old_entries, old_cut = store.run_read(lambda sql: top_sql.entries(sql, project_id, before_start, before_end))
    return {
        "from": rfc3339(start), "to": rfc3339(end),
        "compare_from": rfc3339(before_start), "compare_to": rfc3339(before_end),
        "functions": top.ranked(top.functions_of(nodes), top.functions_of(old_nodes), limit),
        "routes": top.ranked(top.routes_of(edges), top.routes_of(old_edges), limit),
        "entries": top.ranked(entries, old_entries, limit),
        "truncated": cut or old_cut,
    }  # fmt: skip


@router.get(f"{API}/top", tags=["health"], summary="Top functions, API routes and transaction entries, week over week")
def get_top(
    request: Request,
    from_: Optional[str] = Query(None, alias="from", description="RFC 3339 or unix ms; default: a day before `to`"),
    to: Optional[str] = Query(None, description="RFC 3339 or unix ms; default: now"),
    limit: int = Query(10, ge=1, le=100, description="items per ranking"),
) -> dict[str, Any]:
    """For ``functions``, ``routes`` (API routes) and ``entries`` (what started transactions:
    their end-to-end durations and whether any span failed): ``slowest`` (by p95),
    ``most_called`` and ``most_failing`` (by errors), each item with ``count``, ``errors``,
    ``error_rate``, ``p50_ms``, ``p95_ms``, the same window one week earlier (``previous``),
    ``new`` (absent then) and ``change`` (relative: 0.25 is up a quarter; null when there is
    nothing to compare with). Functions and routes are merged rollups; entries are read from the
    transactions of the window, at most 50 000 (``truncated`` when it held more)."""
    project_id = project_of(request)
    end = _time_ns(to, "to")
    end = time.time_ns() if end is None else end
    start = _time_ns(from_, "from")
    start = end - DAY_NS if start is None else start
    if start >= end:
        raise HTTPException(400, "from must be before to")
    if end - start > MAX_DAYS * DAY_NS:
        raise HTTPException(400, f"the window is longer than {MAX_DAYS} days: narrow from/to")
    return compute(collector_of(request).store, project_id, start // MINUTE_NS * MINUTE_NS, end, limit)
