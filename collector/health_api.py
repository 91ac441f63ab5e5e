"""Function health under ``/api/v1/functions/{name}/health``: rollups merged, never a span scan.

Invocations, errors, throttles, duration percentiles, cold starts and timeouts come from the
graph's per-minute node rollups; errors split by class (exception, http_5xx, timeout, error)
from the issue pass's per-minute counts (``function_errors``); init duration, peak memory,
time used against the deadline, concurrency, retries and record age from the issue pass's
``function_health`` minutes (``collector/health.py`` says how each is computed). A window can
be compared with an earlier one, like the map ("before and after the deploy").
"""

from __future__ import annotations

import time
from typing import Any, Optional

from fastapi import APIRouter, HTTPException, Path, Query, Request

from hoptrace.graph.rollup import MINUTE_NS, Rollup

from .api import _time_ns
from .app import collector_of
from .health import BASIS, HealthMinute
from .issues import KINDS
from .issues_api import project_of
from .store import health_sql
from .store import issues_sql as db
from .views import rfc3339

API = "/api/v1"
router = APIRouter()
HOUR_NS = 3600 * 10**9
MAX_MINUTES = 7 * 24 * 60
# Warnings raised from a window's health (issue 9): shares above which a function is flagged.
COLD_START_SHARE = 0.01
THROTTLE_SHARE = 0.10


def _window(from_: str | None, to: str | None, names: tuple[str, str], default_end: int) -> tuple[int, int]:
    end = _time_ns(to, names[1])
    end = default_end if end is None else end
    start = _time_ns(from_, names[0])
    start = end - HOUR_NS if start is None else start
    if start >= end:
        raise HTTPException(400, f"{names[0]} must be before {names[1]}")
    if (end - start) // MINUTE_NS > MAX_MINUTES:
        raise HTTPException(400, f"the window is longer than {MAX_MINUTES // 1440} days: narrow {names[0]}/{names[1]}")
    return start, end


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _share(basis_points: int, count: int) -> float | None:
    return round(basis_points / BASIS, 4) if count else None


def _figures(h: HealthMinute) -> dict[str, Any]:
    """What the function_health minutes add to a window's (or one minute's) health."""
    return {
        "init_p50_ms": _ms(h.init.quantile(0.5)),
        "init_p95_ms": _ms(h.init.quantile(0.95)),
        "memory_peak_bytes": h.memory_peak if h.memory_count else None,
        "memory_limit_bytes": h.memory_limit or None,
        "memory_share_max": _share(h.memory_share_max, h.memory_limit and h.memory_count),
        "memory_near_limit": h.memory_near,
        "deadline_share_max": _share(h.deadline_share_max, h.deadline_count),
        "near_timeout": h.deadline_near,
        "retries": h.retries,
        "record_age_p95_ms": _ms(h.record_age.quantile(0.95)),
        "record_age_max_ms": h.record_age_max if h.record_age.count else None,
    }


def _totals(rollup: Rollup, classes: dict[str, int], h: HealthMinute, minutes: int, peak: float) -> dict[str, Any]:
    n = rollup.count
    return {
        "invocations": n,
        "errors": rollup.errors,
        "error_rate": round(rollup.errors / n, 6) if n else 0.0,
        "errors_by_class": dict(classes),
        "throttles": rollup.throttles,
        "p50_ms": _ms(rollup.latency.quantile(0.5)),
        "p95_ms": _ms(rollup.latency.quantile(0.95)),
        "p99_ms": _ms(rollup.latency.quantile(0.99)),
        "cold_starts": rollup.cold_starts,
        "cold_start_rate": round(rollup.cold_starts / n, 6) if n else 0.0,
        "timeouts": rollup.timeouts,
        **_figures(h),
        # Average invocations running at once over the window; the busiest second's average.
        "concurrency_avg": round(sum(h.busy.values()) / (60_000 * max(1, minutes)), 3),
        "concurrency_peak": round(peak, 3),  # the busiest second of any minute
    }


def _health(request: Request, project_id: int, name: str, start: int, end: int) -> tuple[str, dict[str, Any]]:
    """The function's node id and its totals and per-minute series over [start, end)."""
    store = collector_of(request).store
    node, rows = f"function:{name}", store.graph_minutes(project_id, start, end, node=f"function:{name}")
    if not rows:  # a service outside Lambda is the same thing under another node kind
        service = store.graph_minutes(project_id, start, end, node=f"service:{name}")
        if service:
            node, rows = f"service:{name}", service
    first, last = start // MINUTE_NS, -(-end // MINUTE_NS)
    errors = store.run_read(lambda sql: db.function_errors(sql, project_id, name, first, last))
    by_minute: dict[int, dict[str, int]] = {}
    total_classes = dict.fromkeys(KINDS, 0)
    for minute, kind, n in errors:
        by_minute.setdefault(minute, dict.fromkeys(KINDS, 0))[kind] = n
        total_classes[kind] += n
    figures = store.run_read(lambda sql: health_sql.minutes(sql, project_id, name, first, last))
    rollups = dict(rows)
    total, total_health, peak = Rollup(), HealthMinute(), 0.0
    series = []
    for minute in range(first, last):
        rollup = rollups.get(minute) or Rollup()
        h = figures.get(minute) or HealthMinute()
        total.merge(rollup)
        total_health.merge(h)  # its per-second busy time summed across minutes: only the sum is used
        peak = max(peak, h.concurrency_peak)
        classes = by_minute.get(minute, dict.fromkeys(KINDS, 0))
        series.append({"minute": rfc3339(minute * MINUTE_NS), "invocations": rollup.count, "errors": rollup.errors,
                       "errors_by_class": classes, "throttles": rollup.throttles, "cold_starts": rollup.cold_starts,
                       "timeouts": rollup.timeouts, "p95_ms": _ms(rollup.latency.quantile(0.95)), **_figures(h),
                       "concurrency_avg": round(h.concurrency_avg, 3),
                       "concurrency_peak": round(h.concurrency_peak, 3)})  # fmt: skip
    totals = _totals(total, total_classes, total_health, last - first, peak)
    return node, {"from": rfc3339(start), "to": rfc3339(end), "totals": totals, "series": series,
                  "warnings": _warnings(totals)}  # fmt: skip


def _warnings(totals: dict[str, Any]) -> list[dict[str, Any]]:
    """Shares past what a healthy function shows: cold starts above 1 %, throttles above 10 %."""
    n = totals["invocations"]
    found = []
    if n and totals["cold_start_rate"] > COLD_START_SHARE:
        found.append({"kind": "cold_starts", "share": totals["cold_start_rate"], "above": COLD_START_SHARE})
    if n and totals["throttles"] / n > THROTTLE_SHARE:
        found.append({"kind": "throttles", "share": round(totals["throttles"] / n, 6), "above": THROTTLE_SHARE})
    return found


_DELTA_KEYS = ("invocations", "errors", "error_rate", "throttles", "p50_ms", "p95_ms", "p99_ms", "cold_starts",
               "cold_start_rate", "timeouts", "init_p50_ms", "init_p95_ms", "memory_peak_bytes", "memory_share_max",
               "memory_near_limit", "deadline_share_max", "near_timeout", "retries", "record_age_p95_ms",
               "record_age_max_ms", "concurrency_avg", "concurrency_peak")  # fmt: skip


@router.get(f"{API}/functions/{{name}}/health", tags=["health"], summary="A function's health over a window")
def function_health(
    request: Request,
    name: str = Path(description="the function's name (its map node is function:NAME)"),
    from_: Optional[str] = Query(None, alias="from", description="RFC 3339 or unix ms; default: an hour before `to`"),
    to: Optional[str] = Query(None, description="RFC 3339 or unix ms; default: now"),
    compare_from: Optional[str] = Query(None, description="start of an earlier window to compare with"),
    compare_to: Optional[str] = Query(None, description="end of that window"),
) -> dict[str, Any]:
    """``totals`` (invocations, errors and their rate, ``errors_by_class``, throttles, p50/p95/p99,
    cold starts and their rate, timeouts; init duration p50/p95 of cold starts; peak memory in
    bytes, the configured size and the largest share of it, invocations above 95 % of it; the
    largest share of its deadline an invocation used and how many used above 95 %; retries; the
    oldest record's age at invocation, p95 and max; ``concurrency_avg``, invocations running at
    once on average (busy time / window), and ``concurrency_peak``, the busiest second's
    average), a per-minute ``series`` of the same and ``warnings`` (cold starts above 1 %,
    throttles above 10 % of invocations). With ``compare_from``/``compare_to``:
    ``compare`` holds that window's totals and ``delta`` this window's minus that one's."""
    project_id = project_of(request)
    start, end = _window(from_, to, ("from", "to"), time.time_ns())
    node, current = _health(request, project_id, name, start, end)
    out = {"function": name, "node": node, **current}
    if compare_from is None and compare_to is None:
        return out
    base_start, base_end = _window(compare_from, compare_to, ("compare_from", "compare_to"), start)
    _, baseline = _health(request, project_id, name, base_start, base_end)
    delta = {}
    for key in _DELTA_KEYS:
        now, before = current["totals"][key], baseline["totals"][key]
        delta[key] = None if now is None or before is None else round(now - before, 6)
    delta["errors_by_class"] = {
        k: current["totals"]["errors_by_class"][k] - baseline["totals"]["errors_by_class"][k] for k in KINDS
    }
    compare = {"from": baseline["from"], "to": baseline["to"], "totals": baseline["totals"]}
    return {**out, "compare": compare, "delta": delta}
