"""Log records in the store (logs in context): one table per database, rows per project, tied
to their span by trace and span id; both backends run this SQL through ``run_write``/``run_read``.

A record without a span id is kept with its trace id (shown with the trace), and one without
either is kept too (found by nothing but retention). Reads are index lookups by trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .graph_sql import Sql

LOGS_MIGRATION: list[str] = [
    """CREATE TABLE logs (
        id {serial} PRIMARY KEY,
        project_id INTEGER NOT NULL,
        trace_id {blob},
        span_id {blob},
        time_ns BIGINT NOT NULL,
        severity_number SMALLINT NOT NULL,
        severity_text TEXT NOT NULL,
        service_name TEXT NOT NULL,
        body TEXT NOT NULL,
        data {blob} NOT NULL
    )""",
    "CREATE INDEX logs_by_trace ON logs (project_id, trace_id, time_ns)",
    "CREATE INDEX logs_by_time ON logs (time_ns)",
]

# Retention (named parameters as in schema.GRAPH_RETENTION).
LOGS_RETENTION = ["DELETE FROM logs WHERE time_ns < %(cutoff)s"]

# At most this many records of one read (a trace, a transaction): the UI shows them in place.
MAX_READ = 2000


class LogRow(NamedTuple):
    """One record as stored: the columns searched or shown, and the OTLP LogRecord's bytes."""

    trace_id: bytes | None
    span_id: bytes | None
    time_ns: int
    severity_number: int
    severity_text: str
    service_name: str
    body: str
    data: bytes


_INSERT = (
    "INSERT INTO logs (project_id, trace_id, span_id, time_ns, severity_number, severity_text, service_name,"
    " body, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_COLUMNS = "trace_id, span_id, time_ns, severity_number, severity_text, service_name, body, data"


def insert_logs(sql: Sql, project_id: int, rows: Sequence[LogRow]) -> int:
    """Store the records of one request; returns how many."""
    sql.run_many(_INSERT, [(project_id, *row) for row in rows])
    return len(rows)


def logs_of_traces(sql: Sql, project_id: int, trace_ids: Sequence[bytes], limit: int = MAX_READ) -> list[LogRow]:
    """The records of these traces, oldest first, at most ``limit``."""
    out: list[LogRow] = []
    for trace_id in trace_ids:
        found = sql.rows(
            f"SELECT {_COLUMNS} FROM logs WHERE project_id = ? AND trace_id = ? ORDER BY time_ns LIMIT ?",
            [project_id, trace_id, limit - len(out)],
        )
        out.extend(_row(r) for r in found)
        if len(out) >= limit:
            break
    out.sort(key=lambda r: r.time_ns)
    return out


def logs_of_spans(sql: Sql, project_id: int, spans: Sequence[tuple[bytes, bytes]], per_span: int = 50) -> list[LogRow]:
    """The records of a few spans (an issue's latest occurrences), by trace then span."""
    out: list[LogRow] = []
    for trace_id, span_id in spans:
        found = sql.rows(
            f"SELECT {_COLUMNS} FROM logs WHERE project_id = ? AND trace_id = ? AND span_id = ? ORDER BY time_ns"
            " LIMIT ?",
            [project_id, trace_id, span_id, per_span],
        )
        out.extend(_row(r) for r in found)
    return out


def _row(r: tuple[Any, ...]) -> LogRow:
    trace_id, span_id, time_ns, number, text, service, body, data = r
    return LogRow(
        bytes(trace_id) if trace_id is not None else None,
        bytes(span_id) if span_id is not None else None,
        int(time_ns),
        int(number),
        str(text),
        str(service),
        str(body),
        bytes(data),
    )
