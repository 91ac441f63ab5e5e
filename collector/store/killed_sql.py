"""The SQL of invocation announcements (``collector/announcements.py``) on either backend.

Ingest upserts one row per invocation (a memory reading updates it); ``killed.KilledPass`` claims
rows past their deadline plus grace, looks each invocation's span up by its ids (an index lookup:
``spans_by_trace``) and deletes the row once that span exists, real or synthesised.
"""

from __future__ import annotations

from ..announcements import Announcement
from ..otlp import SpanBatch
from .graph_sql import Sql

MIGRATION = [
    """CREATE TABLE invocation_starts (
        project_id INTEGER NOT NULL,
        trace_id {blob} NOT NULL,
        span_id {blob} NOT NULL,
        resource_key {blob} NOT NULL,
        service_name TEXT NOT NULL,
        start_ns BIGINT NOT NULL,
        deadline_ns BIGINT NOT NULL,
        max_memory BIGINT NOT NULL,
        rss BIGINT NOT NULL,
        rss_ns BIGINT NOT NULL,
        data {blob} NOT NULL,
        claimed_ns BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (project_id, trace_id, span_id)
    )""",
    "CREATE INDEX invocation_starts_by_deadline ON invocation_starts (deadline_ns)",
]
RETENTION = ["DELETE FROM invocation_starts WHERE deadline_ns < %(cutoff)s"]

# The start and any memory reading of one invocation are one row; the latest reading wins.
UPSERT = (
    "INSERT INTO invocation_starts (project_id, trace_id, span_id, resource_key, service_name, start_ns,"
    " deadline_ns, max_memory, rss, rss_ns, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (project_id, trace_id, span_id) DO UPDATE SET rss = excluded.rss, rss_ns = excluded.rss_ns"
    " WHERE excluded.rss_ns > invocation_starts.rss_ns"
)


def upsert_rows(items: list[tuple[int, SpanBatch]]) -> list[tuple[object, ...]]:
    """The announcements of a write, as rows of ``UPSERT``."""
    return [(project_id, *a) for project_id, batch in items for a in batch.announcements]


def claim_expired(
    sql: Sql, expired_ns: int, reclaim_ns: int, now_ns: int, limit: int
) -> list[tuple[int, Announcement]]:
    """Rows whose deadline is before ``expired_ns``, not claimed since ``reclaim_ns`` (a pass that
    died mid-way left them claimed), oldest deadline first; marks them claimed at ``now_ns``."""
    rows = sql.rows(
        "SELECT project_id, trace_id, span_id, resource_key, service_name, start_ns, deadline_ns, max_memory, rss,"
        " rss_ns, data FROM invocation_starts WHERE deadline_ns < ? AND claimed_ns < ? ORDER BY deadline_ns LIMIT ?",
        [expired_ns, reclaim_ns, limit],
    )
    claimed = [
        (int(r[0]), Announcement(bytes(r[1]), bytes(r[2]), bytes(r[3]), str(r[4]), int(r[5]), int(r[6]), int(r[7]),
                                 int(r[8]), int(r[9]), bytes(r[10])))
        for r in rows
    ]  # fmt: skip
    sql.run_many(
        "UPDATE invocation_starts SET claimed_ns = ? WHERE project_id = ? AND trace_id = ? AND span_id = ?",
        [(now_ns, p, a.trace_id, a.span_id) for p, a in claimed],
    )
    return claimed


def any_expired(sql: Sql, *, expired_ns: int) -> bool:
    """Whether any announcement's deadline is before ``expired_ns`` (claimed or not)."""
    return bool(sql.rows("SELECT 1 FROM invocation_starts WHERE deadline_ns < ? LIMIT 1", [expired_ns]))


def span_stored(sql: Sql, *, project_id: int, trace_id: bytes, span_id: bytes) -> bool:
    """Whether the invocation's span is stored: it ended after all, or was synthesised already."""
    return bool(
        sql.rows(
            "SELECT 1 FROM spans WHERE project_id = ? AND trace_id = ? AND span_id = ? LIMIT 1",
            [project_id, trace_id, span_id],
        )
    )


def resource_data(sql: Sql, *, project_id: int, key: bytes) -> bytes | None:
    rows = sql.rows("SELECT data FROM resources WHERE project_id = ? AND key = ?", [project_id, key])
    return bytes(rows[0][0]) if rows else None


def forget(sql: Sql, done: list[tuple[int, bytes, bytes]]) -> None:
    """Delete the rows of invocations whose span is stored now."""
    sql.run_many("DELETE FROM invocation_starts WHERE project_id = ? AND trace_id = ? AND span_id = ?", done)


def killed_by_function(sql: Sql, *, project_id: int, first_minute: int, end_minute: int) -> dict[str, dict[str, int]]:
    """Killed invocations per function and class in the minutes [first, end), from the issue
    pass's per-minute error counts (``function_errors``)."""
    rows = sql.rows(
        "SELECT function, kind, sum(count) FROM function_errors WHERE project_id = ? AND minute >= ? AND minute < ?"
        " AND kind IN ('timeout', 'out_of_memory', 'crash') GROUP BY function, kind",
        [project_id, first_minute, end_minute],
    )
    out: dict[str, dict[str, int]] = {}
    for function, kind, n in rows:
        out.setdefault(str(function), {})[str(kind)] = int(n)
    return out


def pending(sql: Sql) -> int:
    """Announced invocations not ended (or not yet found killed)."""
    return int(sql.rows("SELECT count(*) FROM invocation_starts", [])[0][0])
