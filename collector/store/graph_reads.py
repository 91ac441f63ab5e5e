"""The graph's reads in SQL, for both backends: a map window as a merge of rollup rows, the
transaction search (index lookups on start, terms and membership) and one transaction by id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hoptrace.graph.hops import Hop
from hoptrace.graph.rollup import EdgeKey, Rollup
from hoptrace.graph.transactions import Transaction

from . import TransactionQuery
from .graph_sql import ROLLUP_COLUMNS, Sql, from_row, load_hops, merge_row


def _transaction(row: Sequence[Any]) -> Transaction:
    txn_id, start, end, errors, incomplete, hops, summary = row
    d = json.loads(summary)
    return Transaction(
        id=bytes(txn_id).hex(), root_trace_id=bytes(txn_id).hex(), entry=d["entry"], start_ns=int(start),
        end_ns=int(end), services=tuple(d["services"]), resources=tuple(d["resources"]), hops=int(hops),
        errors=int(errors), cold_starts=int(d["cold_starts"]), retries=int(d["retries"]),
        incomplete=bool(incomplete), trace_ids=tuple(d["trace_ids"]),
    )  # fmt: skip


_TXN_COLUMNS = "t.id, t.start_ns, t.end_ns, t.errors, t.incomplete, t.hops, t.summary"


def read_rollups(
    sql: Sql, project: int, start_minute: int, end_minute: int
) -> tuple[dict[str, Rollup], dict[EdgeKey, Rollup]]:
    """The window [start, end) as one rollup per node and per edge: a merge of its minutes.

    Whole hours inside the window come from the hourly rows, whole ten minutes beside them from
    the ten-minute rows, the ragged ends from the minute rows (each coarser row the merge of its
    minutes, kept as the minutes are written): a day is at most ~24 + 10 + 18 rows per node and
    edge instead of 1,440, an hour at most 6 + 18 instead of 60, and the result is the same.
    """
    ranges = _tiers(start_minute, end_minute)
    nodes: dict[str, Rollup] = {}
    edges: dict[EdgeKey, Rollup] = {}
    for tier, lo, hi in ranges:
        if lo >= hi:
            continue
        for row in sql.rows(
            f"SELECT node, {ROLLUP_COLUMNS} FROM node_rollups{tier}"
            " WHERE project_id = ? AND minute >= ? AND minute < ?",
            [project, lo, hi],
        ):
            node = nodes.get(row[0])
            if node is None:
                node = nodes[row[0]] = Rollup()
            merge_row(node, row[1:])
        for row in sql.rows(
            f"SELECT source, target, kind, {ROLLUP_COLUMNS} FROM edge_rollups{tier}"
            " WHERE project_id = ? AND minute >= ? AND minute < ?",
            [project, lo, hi],
        ):
            key = (row[0], row[1], row[2])
            edge = edges.get(key)
            if edge is None:
                edge = edges[key] = Rollup()
            merge_row(edge, row[3:])
    return nodes, edges


def _tiers(start: int, end: int) -> list[tuple[str, int, int]]:
    """[start, end) as (table suffix, first, last) ranges: hours, then ten minutes, then minutes."""
    first_hour, last_hour = -(-start // 60) * 60, end // 60 * 60
    if first_hour < last_hour:
        return [*_tens(start, first_hour), ("_hourly", first_hour, last_hour), *_tens(last_hour, end)]
    return _tens(start, end)


def _tens(start: int, end: int) -> list[tuple[str, int, int]]:
    first, last = -(-start // 10) * 10, end // 10 * 10
    if first < last:
        return [("", start, first), ("_10m", first, last), ("", last, end)]
    return [("", start, end)]


def search_transactions(sql: Sql, project: int, q: TransactionQuery) -> list[Transaction]:
    """Transactions matching every filter, newest first (index lookups on start, terms, members)."""
    where = ["t.project_id = ?"]
    args: list[Any] = [project]
    for column, op, bound in (
        ("t.start_ns", ">=", q.start_ns),
        ("t.start_ns", "<", q.end_ns),
        ("t.duration_ns", ">=", q.min_duration_ns),
        ("t.duration_ns", "<=", q.max_duration_ns),
    ):
        if bound is not None:
            where.append(f"{column} {op} ?")
            args.append(bound)
    if q.status == "error":
        where.append("t.errors > 0")
    elif q.status == "ok":
        where.append("t.errors = 0 AND t.incomplete = 0")
    elif q.status == "incomplete":
        where.append("t.incomplete = 1")
    for key, value in (("service", q.service), ("resource", q.resource)):
        if value is not None:
            where.append(
                "t.id IN (SELECT transaction_id FROM transaction_terms WHERE project_id = ? AND key = ? AND value = ?)"
            )
            args += [project, key, value]
    for key, value in q.labels:
        where.append(f"t.id IN ({_OWN_TERM} AND s.key = ?)")
        args += [project, value, "label." + key]
    if q.text is not None:
        options = [f"t.id IN ({_OWN_TERM})"]
        args += [project, q.text]
        raw = _hex_id(q.text)
        if raw is not None:
            options.append("t.id = ?")
            options.append(
                "t.id IN (SELECT transaction_id FROM transaction_members WHERE project_id = ? AND trace_id = ?)"
            )
            args += [raw, project, raw]
        where.append("(" + " OR ".join(options) + ")")
    column = _SORTS[q.sort]
    op, order = (">", "ASC") if q.ascending else ("<", "DESC")
    if q.before is not None:
        where.append(f"({column} {op} ? OR ({column} = ? AND t.id {op} ?))")
        args += [q.before[0], q.before[0], q.before[1]]
    args.append(q.limit)
    rows = sql.rows(
        f"SELECT {_TXN_COLUMNS}, {column} FROM transactions t WHERE {' AND '.join(where)}"
        f" ORDER BY {column} {order}, t.id {order} LIMIT ?",
        args,
    )
    return [_transaction(r[:-1]) for r in rows]


# The transactions a term (``s.value``) belongs to: those of the trace of the span that holds it,
# except where that trace is shared (a batch consumer's trace belongs to every transaction it read
# from) and a hop reached the span itself: then only the transaction of that hop's producer. A
# label set while processing one record of a batch finds that record's order, not its batch mates.
_OWN_TERM = (
    "SELECT m.transaction_id FROM span_terms s JOIN transaction_members m"
    " ON m.project_id = s.project_id AND m.trace_id = s.trace_id WHERE s.project_id = ?"
    " AND s.day IN (SELECT day FROM term_days WHERE project_id = s.project_id) AND s.value = ?"
    " AND (NOT EXISTS (SELECT 1 FROM transaction_members o WHERE o.project_id = m.project_id"
    " AND o.trace_id = m.trace_id AND o.transaction_id <> m.transaction_id)"
    " OR NOT EXISTS (SELECT 1 FROM hops h WHERE h.project_id = s.project_id AND h.to_trace = s.trace_id"
    " AND h.to_span = s.span_id)"
    " OR EXISTS (SELECT 1 FROM hops h JOIN transaction_members f ON f.project_id = h.project_id"
    " AND f.trace_id = h.from_trace WHERE h.project_id = s.project_id AND h.to_trace = s.trace_id"
    " AND h.to_span = s.span_id AND f.transaction_id = m.transaction_id))"
)

# Sort keys of the transaction search -> column (each with an index by project).
_SORTS = {"start": "t.start_ns", "duration": "t.duration_ns"}


def read_minutes(
    sql: Sql, project: int, first: int, last: int, node: str | None, edge: EdgeKey | None
) -> list[tuple[int, Rollup]]:
    """Minute rows [first, last) of one node or edge, oldest first (minute rows only: per-minute series)."""
    if node is not None:
        table, match, key = "node_rollups", "node = ?", [node]
    elif edge is not None:
        table, match, key = "edge_rollups", "source = ? AND target = ? AND kind = ?", list(edge)
    else:
        return []
    rows = sql.rows(
        f"SELECT minute, {ROLLUP_COLUMNS} FROM {table}"
        f" WHERE project_id = ? AND minute >= ? AND minute < ? AND {match} ORDER BY minute",
        [project, first, last, *key],
    )
    return [(int(r[0]), from_row(r[1:])) for r in rows]


def read_last_seen(sql: Sql, project: int, first: int, last: int) -> dict[str, int]:
    """Per node: the last minute in [first, last) that has a rollup row."""
    rows = sql.rows(
        "SELECT node, max(minute) FROM node_rollups WHERE project_id = ? AND minute >= ? AND minute < ? GROUP BY node",
        [project, first, last],
    )
    return {str(node): int(minute) for node, minute in rows}


def _hex_id(text: str) -> bytes | None:
    if len(text) != 32:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def read_transaction(sql: Sql, project: int, txn: bytes) -> tuple[Transaction, list[Hop]] | None:
    """A transaction's summary and every hop among its traces."""
    rows = sql.rows(f"SELECT {_TXN_COLUMNS} FROM transactions t WHERE t.project_id = ? AND t.id = ?", [project, txn])
    if not rows:
        return None
    t = _transaction(rows[0])
    members = [bytes.fromhex(x) for x in t.trace_ids]
    inside = set(members)
    hops = [h for h in load_hops(sql, project, members) if h.to_trace in inside]
    return t, hops
