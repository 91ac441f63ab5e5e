"""The search index of span terms (labels, ids, pointers): its layout by day, and which days a
search walks. Both backends write and read it through what is here.

A term row is keyed (project, day, value, key, start, span id, trace id): new terms go into the
current day's part of the index, retention drops whole days by key range (no index by time),
and a search by value asks each day the project has (``term_days``), newest first, one index
seek per day. SQLite keeps the rows in that key order itself (WITHOUT ROWID: one b-tree per
term, where a table and two indexes took three); PostgreSQL has one index in that order.
"""

from __future__ import annotations

from collections.abc import Sequence

DAY_NS = 86_400 * 10**9

# A migration statement carrying one of these runs on that backend only (``for_backend``).
SQLITE_ONLY = "/* sqlite only */ "
POSTGRES_ONLY = "/* postgresql only */ "

_COLUMNS = (
    "project_id INTEGER NOT NULL, day INTEGER NOT NULL, value TEXT NOT NULL, key TEXT NOT NULL,"
    " start_ns BIGINT NOT NULL, span_id {blob} NOT NULL, trace_id {blob} NOT NULL"
)
_KEY = "project_id, day, value, key, start_ns, span_id, trace_id"

TERMS_MIGRATION: list[str] = [
    # A span stored twice (a resent batch) has its terms once in SQLite (the key), twice in
    # PostgreSQL (COPY cannot skip duplicates); searches read distinct spans either way.
    SQLITE_ONLY + f"CREATE TABLE span_terms_by_day ({_COLUMNS}, PRIMARY KEY ({_KEY})) WITHOUT ROWID",
    POSTGRES_ONLY + f"CREATE TABLE span_terms_by_day ({_COLUMNS})",
    f"INSERT INTO span_terms_by_day ({_KEY}) SELECT project_id, start_ns / {DAY_NS}, value, key, start_ns, span_id,"
    " trace_id FROM span_terms WHERE true ON CONFLICT DO NOTHING",
    "DROP TABLE span_terms",
    "ALTER TABLE span_terms_by_day RENAME TO span_terms",
    POSTGRES_ONLY + f"CREATE INDEX span_terms_by_day_value ON span_terms ({_KEY})",
    # The days each project has terms of: what a search walks.
    "CREATE TABLE term_days (project_id INTEGER NOT NULL, day INTEGER NOT NULL, PRIMARY KEY (project_id, day))",
    "INSERT INTO term_days (project_id, day) SELECT DISTINCT project_id, day FROM span_terms",
]

# The days of a project, for ``day IN (…)`` beside a value: one seek per day.
PROJECT_DAYS = "SELECT day FROM term_days WHERE project_id = {mark}"


def for_backend(statement: str, backend: str) -> bool:
    """Whether a migration statement runs on ``backend`` ("sqlite" or "postgresql")."""
    if statement.startswith(SQLITE_ONLY):
        return backend == "sqlite"
    if statement.startswith(POSTGRES_ONLY):
        return backend == "postgresql"
    return True


def term_day(start_ns: int) -> int:
    return start_ns // DAY_NS


def batch_days(rows: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Distinct (project, day) pairs in key order (one lock order for every PostgreSQL replica)."""
    return sorted(set(rows))


def search_days(
    days: Sequence[int], start_ns: int | None, end_ns: int | None, before: tuple[int, bytes] | None
) -> list[int]:
    """The days of ``days`` a search window (and cursor) can reach, newest first."""
    first = term_day(start_ns) if start_ns is not None else None
    last = term_day(end_ns - 1) if end_ns is not None else None
    if before is not None:
        last = term_day(before[0]) if last is None else min(last, term_day(before[0]))
    return sorted((d for d in days if (first is None or d >= first) and (last is None or d <= last)), reverse=True)


def retention(mark: str) -> list[str]:
    """Term retention with parameters (project, day of the cutoff, cutoff ns) in ``mark`` style:
    the days before the cutoff's go by key range, and that day's terms older than the cutoff."""
    return [
        f"DELETE FROM span_terms WHERE project_id = {mark} AND day < {mark}",
        f"DELETE FROM span_terms WHERE project_id = {mark} AND day = {mark} AND start_ns < {mark}",
        f"DELETE FROM term_days WHERE project_id = {mark} AND day < {mark}",
    ]
