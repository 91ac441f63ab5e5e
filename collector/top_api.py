"""Top-N with trends under ``/api/v1/top`` (see ``collector/top.py`` for what is read)."""

from __future__ import annotations

import time
from typing import Any, Optional

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from hoptrace.graph.rollup import MINUTE_NS

from . import digest, top
from .api import _time_ns
from .app import collector_of
from .issues_api import project_of
from .store import SpanStore, top_sql
from .store import issues_sql as db
from .store.graph_sql import Sql
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


# -- the weekly digest ------------------------------------------------------------------------------


class DigestIn(BaseModel):
    """The weekly digest of the project's top-N (``collector/digest.py``): sent through a slack or
    webhook channel every ``weekday`` (UTC, 0 = Monday) at ``hour``:00 UTC, covering the week
    before against the week before that; ``limit`` items per ranking."""

    channel_id: int = Field(ge=1, le=2**31 - 1)
    weekday: int = Field(0, ge=0, le=6)
    hour: int = Field(8, ge=0, le=23)
    limit: int = Field(5, ge=1, le=20)
    enabled: bool = True


def digest_json(d: digest.Digest | None) -> dict[str, Any]:
    if d is None:
        return {"configured": False}
    return {"configured": True, "channel_id": d.channel_id, "weekday": d.weekday,
            "weekday_name": digest.WEEKDAYS[d.weekday], "hour": d.hour, "limit": d.limit, "enabled": d.enabled,
            "last_sent_slot": rfc3339(d.last_slot_ns) if d.last_slot_ns else None}  # fmt: skip


def _digest_channel(sql: Sql, project_id: int, channel_id: int) -> str | None:
    """What is wrong with the channel for a digest, or None."""
    found = db.channel(sql, project_id, channel_id)
    if found is None:
        return f"no channel {channel_id} in this project"
    if found.type not in digest.CHANNEL_TYPES:
        return f"a digest goes to a slack or webhook channel; channel {channel_id} is {found.type}"
    return None


@router.get(f"{API}/digest", tags=["notifications"], summary="The project's weekly digest settings")
def get_digest(request: Request) -> dict[str, Any]:
    project_id = project_of(request)
    return digest_json(collector_of(request).store.run_read(lambda sql: digest.load(sql, project_id)))


@router.put(f"{API}/digest", tags=["notifications"], summary="Set the weekly digest (admin token)")
def put_digest(request: Request, body: DigestIn) -> dict[str, Any]:
    """Saving marks the current week's slot as sent: the first digest goes at the next one."""
    project_id = project_of(request, write=True)
    settings = digest.Digest(body.channel_id, body.weekday, body.hour, body.limit, body.enabled)

    def write(sql: Sql) -> digest.Digest | str:
        problem = _digest_channel(sql, project_id, body.channel_id)
        return problem if problem else digest.save(sql, project_id, settings, time.time_ns())

    saved = collector_of(request).store.run_write(write)
    if isinstance(saved, str):
        raise HTTPException(400, saved)
    return digest_json(saved)


@router.delete(f"{API}/digest", tags=["notifications"], summary="Stop the weekly digest (admin token)",
               status_code=204)  # fmt: skip
def delete_digest(request: Request) -> Response:
    project_id = project_of(request, write=True)
    if not collector_of(request).store.run_write(lambda sql: digest.delete(sql, project_id)):
        raise HTTPException(404, "no digest is set for this project")
    return Response(status_code=204)


@router.post(f"{API}/digest/send", tags=["notifications"], summary="Send the digest of the last 7 days now (admin)",
             status_code=202)  # fmt: skip
def send_digest(request: Request) -> dict[str, Any]:
    """Queues the digest of the seven days up to now for the digest's channel, whatever its
    schedule (the schedule is left as it is); delivered through the outbox like any notification."""
    project_id = project_of(request, write=True)
    store = collector_of(request).store
    settings = store.run_read(lambda sql: digest.load(sql, project_id))
    if settings is None:
        raise HTTPException(404, "no digest is set for this project: PUT /api/v1/digest first")
    now = time.time_ns()
    payload = digest.digest_payload(compute(store, project_id, now // MINUTE_NS * MINUTE_NS - digest.WEEK_NS, now,
                                            settings.limit))  # fmt: skip
    store.run_write(lambda sql: digest.enqueue(sql, project_id, settings.channel_id, 0, payload))
    return {"queued": True, "from": payload["top"]["from"], "to": payload["top"]["to"]}
