"""The graph's facts in SQL, shared by both backends through a three-method ``Sql`` handle.

``write_graph`` runs inside the store's ingest transaction, after the spans: what a client sees
acknowledged includes its hop keys, hops, transaction membership and rollups, and a crash
loses neither half. Each step is an index lookup (keys by ``(project, key)``, members by trace,
hops by trace, rollups by primary key) — never a scan of spans. The logic is
``hoptrace.graph``'s (``derive``, ``match_key``, ``plan_hop``, ``summarise``); this module only
loads what it needs and stores what it returns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from hoptrace.graph.correlator import derive, match_key
from hoptrace.graph.hops import CONSUMER_SIDE, PRODUCER_SIDE, Hop, HopEnd, HopKey, delivery, strongest
from hoptrace.graph.rollup import EdgeKey, Rollup, Rollups
from hoptrace.graph.spans import AttrValue, GraphSpan
from hoptrace.graph.transactions import TraceFacts, Transaction, plan_hop, summarise

from ..otlp import SpanBatch
from . import TransactionQuery
from .graph_rows import graph_span, resource_attributes

CHUNK = 400  # values per IN (...) list


class Sql(Protocol):
    """What the graph needs of a connection inside an open transaction (``?`` placeholders)."""

    def rows(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]: ...

    def run(self, sql: str, args: Sequence[Any]) -> int: ...

    def run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), CHUNK):
        yield values[i : i + CHUNK]


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def batch_spans(batch: SpanBatch) -> list[GraphSpan]:
    """The graph's view of every span of a batch (resources decoded once each)."""
    resources: dict[bytes, dict[str, AttrValue]] = {}
    out = []
    for row in batch.spans:
        attrs = resources.get(row.resource_key)
        if attrs is None:
            resource = batch.resources.get(row.resource_key)
            attrs = resources[row.resource_key] = resource_attributes(resource.data) if resource else {}
        out.append(graph_span(row, attrs))
    return out


def write_graph(sql: Sql, items: list[tuple[int, SpanBatch]]) -> None:
    """Derive and store the graph facts of these batches (inside the caller's transaction)."""
    by_project: dict[int, list[GraphSpan]] = {}
    for project_id, batch in items:
        if batch.spans:
            by_project.setdefault(project_id, []).extend(batch_spans(batch))
    for project_id, spans in by_project.items():
        _GraphWrite(sql, project_id).apply(spans)


class _GraphWrite:
    """One project's share of one ingest transaction."""

    def __init__(self, sql: Sql, project_id: int) -> None:
        self.sql = sql
        self.project = project_id

    def apply(self, spans: list[GraphSpan]) -> None:
        derived = derive(spans)
        touched = self._merge_facts(derived.facts)
        hops, joins = self._match(derived.keys)
        for hop in hops:
            derived.rollups.add_hop(hop)
        self._merge_rollups(derived.rollups)
        changed: set[bytes] = set()
        dropped: set[bytes] = set()
        for a, b in joins:
            more, drop = self._join(a, b)
            changed |= more
            if drop is not None:
                dropped.add(drop)
        for trace_id in touched:
            changed |= self._transactions_of(trace_id)
        for txn in sorted(changed - dropped):
            self._summarise(txn)

    # -- per-trace facts and membership ---------------------------------------------------

    def _merge_facts(self, facts: dict[bytes, TraceFacts]) -> list[bytes]:
        traces = sorted(facts)
        stored: dict[bytes, TraceFacts] = {}
        for chunk in _chunks(traces):
            for trace_id, text in self.sql.rows(
                f"SELECT trace_id, facts FROM trace_facts WHERE project_id = ? AND trace_id IN ({_marks(len(chunk))})",
                [self.project, *chunk],
            ):
                stored[bytes(trace_id)] = TraceFacts.from_json(text)
        rows = []
        for trace_id in traces:
            merged = stored.get(trace_id, TraceFacts()).merge(facts[trace_id])
            rows.append((self.project, trace_id, merged.start_ns, merged.to_json()))
        self.sql.run_many(
            "INSERT INTO trace_facts (project_id, trace_id, start_ns, facts) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (project_id, trace_id) DO UPDATE SET start_ns = excluded.start_ns, facts = excluded.facts",
            rows,
        )
        new = [t for t in traces if t not in stored]
        # A trace seen for the first time is an entry of its own until a hop reaches it.
        self.sql.run_many(
            "INSERT INTO transaction_members (project_id, transaction_id, trace_id) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            [(self.project, t, t) for t in new],
        )
        return traces

    def _transactions_of(self, trace_id: bytes) -> set[bytes]:
        rows = self.sql.rows(
            "SELECT transaction_id FROM transaction_members WHERE project_id = ? AND trace_id = ?",
            [self.project, trace_id],
        )
        return {bytes(r[0]) for r in rows}

    def _reachable(self, start: bytes) -> set[bytes]:
        seen, todo = {start}, [start]
        while todo:
            current = todo.pop()
            for (nxt,) in self.sql.rows(
                "SELECT DISTINCT to_trace FROM hops WHERE project_id = ? AND from_trace = ?", [self.project, current]
            ):
                nxt = bytes(nxt)
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    def _join(self, a: bytes, b: bytes) -> tuple[set[bytes], bytes | None]:
        """Trace ``a`` now has a hop to trace ``b`` (the first): membership follows (``plan_hop``)."""
        txns = self._transactions_of(a)
        is_root = bool(
            self.sql.rows(
                "SELECT 1 FROM transaction_members WHERE project_id = ? AND transaction_id = ? LIMIT 1",
                [self.project, b],
            )
        )
        change = plan_hop(a, b, txns, self._reachable(b), is_root)
        self.sql.run_many(
            "INSERT INTO transaction_members (project_id, transaction_id, trace_id) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            [(self.project, txn, trace) for txn, trace in change.add],
        )
        if change.drop is not None:
            for table, column in (("transaction_members", "transaction_id"), ("transactions", "id"),
                                  ("transaction_terms", "transaction_id")):  # fmt: skip
                self.sql.run(f"DELETE FROM {table} WHERE project_id = ? AND {column} = ?", [self.project, change.drop])
        return txns, change.drop

    # -- hop keys -----------------------------------------------------------------------------

    def _match(self, keys: list[HopKey]) -> tuple[list[Hop], list[tuple[bytes, bytes]]]:
        """Match the batch's keys against stored ones and each other; store keys and new hops.

        Returns the new hops and the trace pairs joined for the first time (in the order met).
        """
        names = sorted({k.key for k in keys})
        stored: dict[str, list[HopKey]] = {}
        taken: set[tuple[str, bytes]] = set()
        for chunk in _chunks(names):
            for row in self.sql.rows(
                "SELECT key, side, via, trace_id, span_id, service, kind, start_ns, end_ns, detail, edge, attempt,"
                f" joined FROM hop_keys WHERE project_id = ? AND key IN ({_marks(len(chunk))})",
                [self.project, *chunk],
            ):
                key, side, via, trace_id, span_id, service, kind, start, end, detail, edge, attempt, joined = row
                end_ = HopEnd(bytes(trace_id), bytes(span_id), service, kind, start, end, detail, edge, attempt)
                stored.setdefault(key, []).append(HopKey(key, side, via, end_))
                if joined:
                    taken.add((key, end_.span_id))
        was_taken = set(taken)
        found: list[Hop] = []
        for k in keys:
            others = stored.setdefault(k.key, [])
            if k.windowed and k.side == PRODUCER_SIDE:
                others = [o for o in others if (k.key, o.end.span_id) not in taken]
            hops = match_key(k, others, (k.key, k.end.span_id) in taken)
            if k.windowed:
                taken.update((k.key, h.to_span) for h in hops)
            found.extend(hops)
            stored[k.key].append(k)
        self.sql.run_many(
            "INSERT INTO hop_keys (project_id, key, side, via, trace_id, span_id, service, kind, start_ns, end_ns,"
            " detail, edge, attempt, joined) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (self.project, k.key, k.side, k.via, k.end.trace_id, k.end.span_id, k.end.service, k.end.kind,
                 k.end.start_ns, k.end.end_ns, k.end.detail, k.end.edge, k.end.attempt,
                 int(k.side == CONSUMER_SIDE and (k.key, k.end.span_id) in taken))
                for k in keys
            ],
        )  # fmt: skip
        new_ids = {k.end.span_id for k in keys}
        self.sql.run_many(
            "UPDATE hop_keys SET joined = 1 WHERE project_id = ? AND key = ? AND span_id = ? AND side = 'c'",
            [(self.project, key, span) for key, span in taken - was_taken if span not in new_ids],
        )
        inserted = []
        joins: list[tuple[bytes, bytes]] = []
        for hop in strongest(found):
            delivered = self.sql.rows(
                "SELECT 1 FROM hops WHERE project_id = ? AND from_trace = ? AND from_span = ? AND to_trace = ?"
                " AND attempt = ? LIMIT 1",
                [self.project, *delivery(hop)],
            )
            if delivered:
                continue  # the same delivery, met again through another span of the consumer's trace
            pair = (hop.from_trace, hop.to_trace)
            if hop.from_trace != hop.to_trace and pair not in joins:
                known = self.sql.rows(
                    "SELECT 1 FROM hops WHERE project_id = ? AND from_trace = ? AND to_trace = ? LIMIT 1",
                    [self.project, *pair],
                )
                if not known:
                    joins.append(pair)
            count = self.sql.run(
                "INSERT INTO hops (project_id, from_trace, from_span, to_trace, to_span, via, dwell_ms, skew, start_ns,"
                " edge, attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [self.project, hop.from_trace, hop.from_span, hop.to_trace, hop.to_span, hop.via, hop.dwell_ms,
                 int(hop.skew), hop.start_ns, hop.edge, hop.attempt],
            )  # fmt: skip
            if count:
                inserted.append(hop)
        return inserted, joins

    # -- rollups and summaries ------------------------------------------------------------------

    def _merge_rollups(self, rollups: Rollups) -> None:
        for (minute, node), rollup in sorted(rollups.nodes.items()):
            row = self.sql.rows(
                f"SELECT {_COUNTERS}, latency, dwell FROM node_rollups"
                " WHERE project_id = ? AND minute = ? AND node = ?",
                [self.project, minute, node],
            )
            merged = _from_row(row[0]).merge(rollup) if row else rollup
            self.sql.run(
                f"INSERT INTO node_rollups (project_id, minute, node, {_COUNTERS}, latency, dwell)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                f" ON CONFLICT (project_id, minute, node) DO UPDATE SET {_SET}",
                [self.project, minute, node, *_to_row(merged)],
            )
        for (minute, source, target, kind), rollup in sorted(rollups.edges.items()):
            row = self.sql.rows(
                f"SELECT {_COUNTERS}, latency, dwell FROM edge_rollups WHERE project_id = ? AND minute = ?"
                " AND source = ? AND target = ? AND kind = ?",
                [self.project, minute, source, target, kind],
            )
            merged = _from_row(row[0]).merge(rollup) if row else rollup
            self.sql.run(
                f"INSERT INTO edge_rollups (project_id, minute, source, target, kind, {_COUNTERS}, latency, dwell)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                f" ON CONFLICT (project_id, minute, source, target, kind) DO UPDATE SET {_SET}",
                [self.project, minute, source, target, kind, *_to_row(merged)],
            )

    def _summarise(self, txn: bytes) -> None:
        members = [
            bytes(r[0])
            for r in self.sql.rows(
                "SELECT trace_id FROM transaction_members WHERE project_id = ? AND transaction_id = ?",
                [self.project, txn],
            )
        ]
        if not members:
            return
        t = summarise(txn, load_facts(self.sql, self.project, members), load_hops(self.sql, self.project, members))
        self.sql.run(
            "INSERT INTO transactions (project_id, id, start_ns, end_ns, duration_ns, errors, incomplete, hops,"
            " summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            f" ON CONFLICT (project_id, id) DO UPDATE SET {_TXN_SET}",
            [self.project, txn, t.start_ns, t.end_ns, t.end_ns - t.start_ns, t.errors, int(t.incomplete), t.hops,
             transaction_json(t)],
        )  # fmt: skip
        self.sql.run("DELETE FROM transaction_terms WHERE project_id = ? AND transaction_id = ?", [self.project, txn])
        self.sql.run_many(
            "INSERT INTO transaction_terms (project_id, key, value, transaction_id) VALUES (?, ?, ?, ?)",
            [(self.project, "service", s, txn) for s in t.services]
            + [(self.project, "resource", r, txn) for r in t.resources],
        )


_TXN_SET = ", ".join(
    f"{c} = excluded.{c}" for c in ("start_ns", "end_ns", "duration_ns", "errors", "incomplete", "hops", "summary")
)
_COUNTERS = "count, errors, throttles, ok, client_errors, faults"
_SET = ", ".join(
    f"{c} = excluded.{c}" for c in ("count", "errors", "throttles", "ok", "client_errors", "faults", "latency", "dwell")
)


def _to_row(r: Rollup) -> tuple[Any, ...]:
    return (*r.counters(), r.latency.to_bytes(), r.dwell.to_bytes())


def _from_row(row: tuple[Any, ...]) -> Rollup:
    return Rollup.from_row(tuple(row[:6]), bytes(row[6]), bytes(row[7]))


def load_facts(sql: Sql, project: int, traces: Sequence[bytes]) -> dict[bytes, TraceFacts]:
    facts = {t: TraceFacts() for t in traces}
    for chunk in _chunks(list(traces)):
        for trace_id, text in sql.rows(
            f"SELECT trace_id, facts FROM trace_facts WHERE project_id = ? AND trace_id IN ({_marks(len(chunk))})",
            [project, *chunk],
        ):
            facts[bytes(trace_id)] = TraceFacts.from_json(text)
    return facts


def load_hops(sql: Sql, project: int, traces: Sequence[bytes]) -> list[Hop]:
    """Hops leaving these traces (by the hops primary key's prefix)."""
    hops = []
    for chunk in _chunks(list(traces)):
        for row in sql.rows(
            "SELECT from_trace, from_span, to_trace, to_span, via, dwell_ms, skew, start_ns, edge, attempt FROM hops"
            f" WHERE project_id = ? AND from_trace IN ({_marks(len(chunk))})",
            [project, *chunk],
        ):
            ft, fs, tt, ts, via, dwell, skew, start, edge, attempt = row
            dwell_ms = None if dwell is None else float(dwell)
            ids = (bytes(ft), bytes(fs), bytes(tt), bytes(ts))
            hops.append(Hop(*ids, via, dwell_ms, bool(skew), int(start), edge, int(attempt)))
    return sorted(hops, key=lambda h: (h.start_ns, h.to_span))


def transaction_json(t: Transaction) -> str:
    return json.dumps(
        {"entry": dict(t.entry), "services": t.services, "resources": t.resources, "cold_starts": t.cold_starts,
         "retries": t.retries, "trace_ids": t.trace_ids},
        separators=(",", ":"),
    )  # fmt: skip


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


# -- reads --------------------------------------------------------------------------------------


def read_rollups(
    sql: Sql, project: int, start_minute: int, end_minute: int
) -> tuple[dict[str, Rollup], dict[EdgeKey, Rollup]]:
    """The window [start, end) as one rollup per node and per edge: a merge of minute rows."""
    nodes: dict[str, Rollup] = {}
    edges: dict[EdgeKey, Rollup] = {}
    for row in sql.rows(
        f"SELECT node, {_COUNTERS}, latency, dwell FROM node_rollups"
        " WHERE project_id = ? AND minute >= ? AND minute < ?",
        [project, start_minute, end_minute],
    ):
        nodes.setdefault(row[0], Rollup()).merge(_from_row(row[1:]))
    for row in sql.rows(
        f"SELECT source, target, kind, {_COUNTERS}, latency, dwell FROM edge_rollups"
        " WHERE project_id = ? AND minute >= ? AND minute < ?",
        [project, start_minute, end_minute],
    ):
        edges.setdefault((row[0], row[1], row[2]), Rollup()).merge(_from_row(row[3:]))
    return nodes, edges


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
        where.append(
            "t.id IN (SELECT m.transaction_id FROM span_terms s JOIN transaction_members m"
            " ON m.project_id = s.project_id AND m.trace_id = s.trace_id"
            " WHERE s.project_id = ? AND s.value = ? AND s.key = ?)"
        )
        args += [project, value, "label." + key]
    if q.text is not None:
        options = [
            "t.id IN (SELECT m.transaction_id FROM span_terms s JOIN transaction_members m"
            " ON m.project_id = s.project_id AND m.trace_id = s.trace_id WHERE s.project_id = ? AND s.value = ?)"
        ]
        args += [project, q.text]
        raw = _hex_id(q.text)
        if raw is not None:
            options.append("t.id = ?")
            options.append(
                "t.id IN (SELECT transaction_id FROM transaction_members WHERE project_id = ? AND trace_id = ?)"
            )
            args += [raw, project, raw]
        where.append("(" + " OR ".join(options) + ")")
    if q.before is not None:
        where.append("(t.start_ns < ? OR (t.start_ns = ? AND t.id < ?))")
        args += [q.before[0], q.before[0], q.before[1]]
    args.append(q.limit)
    rows = sql.rows(
        f"SELECT {_TXN_COLUMNS} FROM transactions t WHERE {' AND '.join(where)}"
        " ORDER BY t.start_ns DESC, t.id DESC LIMIT ?",
        args,
    )
    return [_transaction(r) for r in rows]


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
