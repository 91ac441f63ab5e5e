"""The query API under ``/api/v1`` (DESIGN §7): traces, span search, services."""

from __future__ import annotations

import math
import re
import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Path, Query, Request

from .app import collector_of, project_for
from .store import SpanQuery
from .views import label_params, span_json

API = "/api/v1"
router = APIRouter()


# Bounds of the stores' BIGINT columns: values past them are clamped, never sent to the database.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _clamp_ns(ns: float) -> int:
    return int(min(max(ns, _INT64_MIN), _INT64_MAX))


def _time_ns(value: str | None, name: str) -> int | None:
    """RFC 3339 or unix milliseconds as nanoseconds (clamped to what the store can compare)."""
    if value is None or value == "":
        return None
    try:
        ms = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(ms):
            raise HTTPException(400, f"{name}={value!r} is not a time: give RFC 3339 or unix milliseconds")
        return _clamp_ns(ms * 1_000_000)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(400, f"{name}={value!r} is neither RFC 3339 nor unix milliseconds") from None
    if parsed.tzinfo is None:
        raise HTTPException(400, f"{name}={value!r} needs a time zone (e.g. a trailing Z)")
    return _clamp_ns(parsed.timestamp() * 1e9)


def _duration_ns(ms: float | None, name: str) -> int | None:
    if ms is None:
        return None
    if not math.isfinite(ms):
        raise HTTPException(400, f"{name} must be a finite number of milliseconds")
    return _clamp_ns(ms * 1e6)


def _hex_id(value: str, size: int, name: str) -> bytes:
    if not re.fullmatch(f"[0-9a-fA-F]{{{size * 2}}}", value):
        raise HTTPException(400, f"{name} must be {size * 2} hex characters")
    return bytes.fromhex(value)


@router.get(f"{API}/traces/{{trace_id}}", tags=["query"], summary="Every span of one trace")
def get_trace(
    request: Request,
    trace_id: str = Path(
        description="32 hex characters, as in OTLP JSON", json_schema_extra={"pattern": "^[0-9a-fA-F]{32}$"}
    ),
) -> dict[str, Any]:
    project_id = project_for(request, "read")
    spans = collector_of(request).store.trace(project_id, _hex_id(trace_id.lower(), 16, "trace_id"))
    if not spans:
        raise HTTPException(404, f"no trace {trace_id.lower()} in this project")
    cache: dict[bytes, dict[str, Any]] = {}
    return {"trace_id": trace_id.lower(), "spans": [span_json(s, cache) for s in spans]}


@router.get(f"{API}/spans", tags=["query"], summary="Search spans, newest first")
def search_spans(
    request: Request,
    from_: str | None = Query(None, alias="from", description="RFC 3339 or unix ms"),
    to: str | None = Query(None, description="RFC 3339 or unix ms"),
    service: str | None = None,
    name: str | None = None,
    status: str | None = Query(None, pattern="^(ok|error|unset)$"),
    min_ms: float | None = Query(None, ge=0),
    max_ms: float | None = Query(None, ge=0),
    q: str | None = Query(None, description="any id: trace id, request id, message id, label value"),
    limit: int = Query(50, ge=1, le=1000),
    cursor: str | None = None,
) -> dict[str, Any]:
    project_id = project_for(request, "read")
    terms: list[tuple[str | None, str]] = [("label." + key, value) for key, value in label_params(request.query_params)]
    store = collector_of(request).store
    if q:
        q = q.strip()
        if len(q) == 32 and _is_hex(q):
            spans = store.trace(project_id, bytes.fromhex(q.lower()))
            cache: dict[bytes, dict[str, Any]] = {}
            return {"spans": [span_json(s, cache) for s in spans[:limit]], "next_cursor": None}
        terms.append((None, q))
    before = None
    if cursor:
        start_text, _, span_hex = cursor.partition(":")
        if not re.fullmatch(r"-?[0-9]{1,19}", start_text) or not re.fullmatch("[0-9a-f]{16}", span_hex):
            raise HTTPException(400, "cursor is not one this API returned")
        before = (_clamp_ns(int(start_text)), bytes.fromhex(span_hex))
    query = SpanQuery(
        start_ns=_time_ns(from_, "from"),
        end_ns=_time_ns(to, "to"),
        service=service,
        name=name,
        status={"unset": 0, "ok": 1, "error": 2}[status] if status else None,
        min_duration_ns=_duration_ns(min_ms, "min_ms"),
        max_duration_ns=_duration_ns(max_ms, "max_ms"),
        terms=tuple(terms),
        limit=limit,
        before=before,
    )
    rows = store.search_spans(project_id, query)
    cache = {}
    next_cursor = f"{rows[-1].start_ns}:{rows[-1].span_id.hex()}" if len(rows) == limit else None
    return {"spans": [span_json(s, cache) for s in rows], "next_cursor": next_cursor}


@router.get(f"{API}/services", tags=["query"], summary="Services seen in a window, with counts and error rates")
def services(
    request: Request,
    from_: str | None = Query(None, alias="from"),
    to: str | None = Query(None),
) -> dict[str, Any]:
    project_id = project_for(request, "read")
    now = time.time_ns()
    start = _time_ns(from_, "from") or now - 3600 * 10**9
    end = _time_ns(to, "to") or now + 60 * 10**9
    rows = collector_of(request).store.services(project_id, start, end)
    return {
        "services": [
            {
                "name": r.service_name,
                "spans": r.spans,
                "errors": r.errors,
                "error_rate": r.errors / r.spans if r.spans else 0.0,
                "last_seen": datetime.fromtimestamp(r.last_seen_ns / 1e9).astimezone().isoformat(),
            }
            for r in rows
        ]
    }


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
        return True
    except ValueError:
        return False
