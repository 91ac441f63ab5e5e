"""Function health rollups and warnings in SQL, shared by both backends (``Sql`` handle).

Written by the issue pass (``issues_sql.apply``) inside its write transaction, which holds the
issue lock (PostgreSQL: an advisory lock; SQLite: the single writer), so reading a minute,
merging and writing it back cannot race another pass. Each invocation span counts once
(``health_seen``), even when its batch was sent twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hoptrace.graph.rollup import MINUTE_NS
from hoptrace.graph.sketch import LatencySketch

from .. import health
from ..health import Candidate, Folded, HealthMinute
from ..issues import EXCEPTION, WARNING, Occurrence
from .graph_sql import CHUNK, Sql

COLUMNS = (
    "invocations, cold_starts, throttles, retries, init, record_age, record_age_max, memory_count, memory_peak,"
    " memory_limit, memory_share_max, memory_near, deadline_count, deadline_share_max, deadline_near, busy"
)
_NAMES = COLUMNS.split(", ")


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _chunks(values: Sequence[Any]) -> list[Sequence[Any]]:
    return [values[i : i + CHUNK] for i in range(0, len(values), CHUNK)]


def _from_row(r: Sequence[Any]) -> HealthMinute:
    return HealthMinute(
        int(r[0]), int(r[1]), int(r[2]), int(r[3]), LatencySketch.from_bytes(bytes(r[4])),
        LatencySketch.from_bytes(bytes(r[5])), int(r[6]), int(r[7]), int(r[8]), int(r[9]), int(r[10]), int(r[11]),
        int(r[12]), int(r[13]), int(r[14]), health.unpack_busy(bytes(r[15])),
    )  # fmt: skip


def _to_row(m: HealthMinute) -> tuple[Any, ...]:
    return (m.invocations, m.cold_starts, m.throttles, m.retries, m.init.to_bytes(), m.record_age.to_bytes(),
            m.record_age_max, m.memory_count, m.memory_peak, m.memory_limit, m.memory_share_max, m.memory_near,
            m.deadline_count, m.deadline_share_max, m.deadline_near, health.pack_busy(m.busy))  # fmt: skip


def minutes(sql: Sql, project: int, function: str, first: int, end: int) -> dict[int, HealthMinute]:
    """The function's health per minute in [first, end)."""
    return {
        int(r[0]): _from_row(r[1:])
        for r in sql.rows(
            f"SELECT minute, {COLUMNS} FROM function_health WHERE project_id = ? AND function = ? AND minute >= ?"
            " AND minute < ?",
            [project, function, first, end],
        )
    }


def window(sql: Sql, project: int, function: str, first: int, end: int) -> HealthMinute:
    total = HealthMinute()
    for m in minutes(sql, project, function, first, end).values():
        total.merge(m)
    return total


def apply(sql: Sql, project: int, folded: list[Folded], now: int) -> list[Occurrence]:
    """Count the invocations not counted yet into their minutes; returns the warnings they raise."""
    fresh = _unseen(sql, project, folded)
    if not fresh:
        return []
    sql.run_many(
        "INSERT INTO health_seen (project_id, span_id, minute) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        [(project, f.span_id, min(f.minutes)) for f in fresh],
    )
    merged: dict[tuple[str, int], HealthMinute] = {}
    for f in fresh:
        for minute, m in f.minutes.items():
            slot = merged.get((f.function, minute))
            merged[(f.function, minute)] = m if slot is None else slot.merge(m)
    by_function: dict[str, list[int]] = {}
    for fn, minute in merged:
        by_function.setdefault(fn, []).append(minute)
    for fn, wanted in sorted(by_function.items()):
        for chunk in _chunks(sorted(wanted)):
            for r in sql.rows(
                f"SELECT minute, {COLUMNS} FROM function_health WHERE project_id = ? AND function = ?"
                f" AND minute IN ({_marks(len(chunk))})",
                [project, fn, *chunk],
            ):
                merged[(fn, int(r[0]))].merge(_from_row(r[1:]))
    updates = ", ".join(f"{n} = excluded.{n}" for n in _NAMES)
    sql.run_many(
        f"INSERT INTO function_health (project_id, function, minute, {COLUMNS}) VALUES ({_marks(3 + len(_NAMES))})"
        f" ON CONFLICT (project_id, function, minute) DO UPDATE SET {updates}",
        [(project, fn, minute, *_to_row(m)) for (fn, minute), m in sorted(merged.items())],
    )
    return _warnings(sql, project, [c for f in fresh for c in f.candidates])


def _unseen(sql: Sql, project: int, folded: list[Folded]) -> list[Folded]:
    once = {f.span_id: f for f in folded}  # a span stored twice in one pass: once
    seen: set[bytes] = set()
    for chunk in _chunks(sorted(once)):
        for (span_id,) in sql.rows(
            f"SELECT span_id FROM health_seen WHERE project_id = ? AND span_id IN ({_marks(len(chunk))})",
            [project, *chunk],
        ):
            seen.add(bytes(span_id))
    return [f for span_id, f in once.items() if span_id not in seen]


def _warnings(sql: Sql, project: int, candidates: list[Candidate]) -> list[Occurrence]:
    """Candidates whose warning holds over its window and was not counted within one already."""
    found = []
    windows: dict[tuple[str, int], HealthMinute] = {}
    for (fn, subtype), c in sorted(health.worst(candidates).items()):
        end = c.time_ns // MINUTE_NS + 1
        if (fn, end) not in windows:
            windows[(fn, end)] = window(sql, project, fn, end - health.WINDOW_MINUTES, end)
        message = health.raises(c, windows[(fn, end)])
        if message is not None and _once_per_window(sql, project, fn, subtype, end - 1):
            found.append(occurrence(c, message))
    return found


def _once_per_window(sql: Sql, project: int, function: str, subtype: str, minute: int) -> bool:
    """Whether a warning may be counted at ``minute`` (none within a window of it); if so, note it."""
    rows = sql.rows(
        "SELECT minute FROM health_warned WHERE project_id = ? AND function = ? AND subtype = ?",
        [project, function, subtype],
    )
    if rows and abs(minute - int(rows[0][0])) < health.WINDOW_MINUTES:
        return False
    sql.run(
        "INSERT INTO health_warned (project_id, function, subtype, minute) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (project_id, function, subtype) DO UPDATE SET minute = excluded.minute",
        [project, function, subtype, minute],
    )
    return True


def occurrence(c: Candidate, message: str, stacktrace: str = "") -> Occurrence:
    return Occurrence(c.trace_id, c.span_id, health.seq(c.subtype), c.time_ns, WARNING,
                      health.fingerprint(c.subtype, c.function), health.title(c.subtype, c.function), c.subtype,
                      c.function, message, stacktrace)  # fmt: skip


def new_error_types(sql: Sql, project: int, found: list[Occurrence]) -> list[Occurrence]:
    """A warning for each exception type a function that has failed before shows for the first
    time. The types are remembered, so a batch sent again or a later pass does not warn twice;
    a function's very first error type does not warn (its new issue already says so)."""
    first: dict[tuple[str, str], Occurrence] = {}
    for o in sorted(found, key=lambda o: (o.time_ns, o.trace_id, o.span_id, o.seq)):
        if o.kind == EXCEPTION and o.exception_type:
            first.setdefault((o.function, o.exception_type), o)
    if not first:
        return []
    out = []
    for fn in sorted({fn for fn, _ in first}):
        rows = sql.rows("SELECT type FROM function_error_types WHERE project_id = ? AND function = ?", [project, fn])
        known = {t for (t,) in rows}
        new = sorted(((o.time_ns, t), o) for (f, t), o in first.items() if f == fn and t not in known)
        sql.run_many(
            "INSERT INTO function_error_types (project_id, function, type, first_seen_ns) VALUES (?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            [(project, fn, t, at) for (at, t), _ in new],
        )
        for i, ((_, type_), o) in enumerate(new):
            if not known and i == 0:
                continue  # the function's first error type ever
            c = Candidate(health.NEW_ERROR_TYPE, fn, o.trace_id, o.span_id, o.time_ns, 0, "")
            out.append(occurrence(c, f"{type_} raised in {fn} for the first time: {o.message}"[:2000], o.stacktrace))
    return out
