"""The graph's writes in SQL, shared by both backends through a three-method ``Sql`` handle
(the reads are in ``graph_reads``).

When derived: ingest only queues each batch's span ids (``backlog_rows``, inserted in the same
transaction as the spans, so what is acknowledged is durably queued); the store's background
pass reads queued batches and derives what their spans say alone (``prepare_backlog``, on a
reader, outside the write lock), then matches, merges and writes it and deletes the queue rows
in one short write transaction (``apply_backlog``). A crash at any point leaves each span either
queued or processed, never lost, and ingest is not slowed by the derivation.

Each step is an index lookup (keys by ``(project, key)``, members by trace, hops by trace,
rollups by primary key) — never a scan of spans. The logic is ``hoptrace.graph``'s (``derive``,
``match_key``, ``plan_hop``, ``summarise``); this module only loads what it needs and stores
what it returns.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hoptrace.graph.correlator import Derived, derive, match_key
from hoptrace.graph.hops import CONSUMER_SIDE, PRODUCER_SIDE, Hop, HopEnd, HopKey, delivery, strongest
from hoptrace.graph.naming import READ_KEYS
from hoptrace.graph.rollup import Rollup, Rollups
from hoptrace.graph.spans import AttrValue, GraphSpan
from hoptrace.graph.transactions import TraceFacts, Transaction, plan_hop, summarise

from ..otlp import SpanBatch
from .graph_rows import decoded_span, resource_attributes

CHUNK = 400  # values per IN (...) list
# Spans per graph pass: derived outside the write lock, so a pass may be larger than a commit
# of ingest; its write transaction (what ingest waits for) grows with it.
GRAPH_STEP_SPANS = 2000
logger = logging.getLogger("hoptrace.collector")


class Sql(Protocol):
    """What the graph needs of a connection inside an open transaction (``?`` placeholders)."""

    def rows(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]: ...

    def run(self, sql: str, args: Sequence[Any]) -> int: ...

    def run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Plain inserts, no conflict clause (PostgreSQL: ``COPY``)."""


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), CHUNK):
        yield values[i : i + CHUNK]


def _marks(n: int) -> str:
    return ", ".join("?" * n)


ID_SIZE = 24  # trace id + span id, as packed in a backlog row
BACKLOG_INSERT = "INSERT INTO graph_backlog (project_id, spans) VALUES (?, ?)"


def backlog_rows(items: list[tuple[int, SpanBatch]]) -> list[tuple[int, bytes]]:
    """One queue row per batch: its project and its spans' ids, packed."""
    return [
        (project_id, b"".join(s.trace_id + s.span_id for s in batch.spans))
        for project_id, batch in items
        if batch.spans
    ]


@dataclass
class Prepared:
    """The oldest queued batches and what their spans say on their own, read and derived outside
    the write transaction (``prepare_backlog``), to be written by ``apply_backlog``."""

    rows: list[int]  # graph_backlog ids taken
    size: int  # spans they name
    projects: dict[int, tuple[list[GraphSpan], Derived]] = field(default_factory=dict)


def prepare_backlog(sql: Sql, max_spans: int = GRAPH_STEP_SPANS) -> Prepared | None:
    """Read the oldest queued batches (about ``max_spans`` spans), load their spans and derive
    them; writes nothing, so it runs on a reader outside the write lock. None: nothing queued."""
    taken: list[tuple[int, int, bytes]] = []
    size = 0
    queued = sql.rows("SELECT id, project_id, spans FROM graph_backlog ORDER BY id LIMIT ?", [64])
    for row_id, project, packed in queued:
        taken.append((int(row_id), int(project), bytes(packed)))
        size += len(packed) // ID_SIZE
        if size >= max_spans:
            break
    if not taken:
        return None
    by_project: dict[int, list[bytes]] = {}
    for _, project, packed in taken:
        by_project.setdefault(project, []).append(packed)
    prepared = Prepared([row_id for row_id, _, _ in taken], size)
    for project, packs in by_project.items():
        spans = load_spans(sql, project, b"".join(packs))
        if spans:
            prepared.projects[project] = (spans, derive(spans))
    return prepared


def apply_backlog(sql: Sql, prepared: Prepared, lock: str = "") -> bool:
    """Write what ``prepare_backlog`` derived and unqueue its batches, inside the caller's write
    transaction. False, writing nothing, when any of its batches is no longer queued (another
    pass took it in between): the caller prepares again. ``lock``: a row-lock clause for the
    queue (PostgreSQL: ``FOR UPDATE``).

    A crash before the commit leaves the batches queued, to be derived again; facts already
    counting a span (a batch sent twice) keep it from being counted twice.
    """
    present = 0
    for chunk in _chunks(prepared.rows):
        present += len(sql.rows(f"SELECT id FROM graph_backlog WHERE id IN ({_marks(len(chunk))}){lock}", list(chunk)))
    if present != len(prepared.rows):
        return False
    for project, (spans, derived) in prepared.projects.items():
        _GraphWrite(sql, project).apply(spans, derived)
    for chunk in _chunks(prepared.rows):
        sql.run(f"DELETE FROM graph_backlog WHERE id IN ({_marks(len(chunk))})", list(chunk))
    return True


def process_backlog(sql: Sql, max_spans: int = GRAPH_STEP_SPANS) -> int:
    """Prepare and apply in one go, inside the caller's transaction (tests, tools); returns how
    many spans it took."""
    prepared = prepare_backlog(sql, max_spans)
    if prepared is None:
        return 0
    apply_backlog(sql, prepared)
    return prepared.size


def requeue_backlog(sql: Sql) -> None:
    """Queue every waiting batch again under new ids, inside retention's transaction: a pass that
    derived spans before retention deleted them finds its batches gone and prepares again (from
    what is left), instead of writing back facts of deleted spans."""
    (last,) = sql.rows("SELECT max(id) FROM graph_backlog", [])[0]
    if last is None:
        return
    sql.run(
        "INSERT INTO graph_backlog (project_id, spans) SELECT project_id, spans FROM graph_backlog WHERE id <= ?"
        " ORDER BY id",
        [last],
    )
    sql.run("DELETE FROM graph_backlog WHERE id <= ?", [last])


def backlog_size(sql: Sql) -> int:
    """Spans queued for the graph and not yet processed."""
    rows = sql.rows(f"SELECT coalesce(sum(length(spans)), 0) / {ID_SIZE} FROM graph_backlog", [])
    return int(rows[0][0])


def load_spans(sql: Sql, project: int, packed: bytes) -> list[GraphSpan]:
    """The graph's view of the stored spans named in ``packed`` (each once; gone ones skipped),
    with only the span attributes the graph reads (``naming.READ_KEYS``) decoded. Resources are
    read once per distinct key, not joined to every span row."""
    wanted = {(packed[i : i + 16], packed[i + 16 : i + ID_SIZE]) for i in range(0, len(packed), ID_SIZE)}
    rows: list[tuple[Any, ...]] = []
    for chunk in _chunks(sorted({t for t, _ in wanted})):
        for row in sql.rows(
            "SELECT s.trace_id, s.span_id, s.parent_span_id, s.service_name, s.name, s.kind, s.start_ns, s.end_ns,"
            " s.status, s.data, s.resource_key FROM spans s"
            # ``+``: SQLite would otherwise walk spans_by_start for the ORDER BY, a scan of the
            # project's spans per chunk (7.4 s at a million spans), not spans_by_trace (60 ms).
            f" WHERE s.project_id = ? AND s.trace_id IN ({_marks(len(chunk))}) ORDER BY +s.start_ns",
            [project, *chunk],
        ):
            ids = (bytes(row[0]), bytes(row[1]))
            if ids not in wanted:
                continue
            wanted.discard(ids)  # a batch sent twice is stored twice: derive it once
            rows.append(row)
    resources: dict[bytes, dict[str, AttrValue]] = {}
    for chunk in _chunks(sorted({bytes(row[10]) for row in rows})):
        for key, data in sql.rows(
            f"SELECT key, data FROM resources WHERE project_id = ? AND key IN ({_marks(len(chunk))})",
            [project, *chunk],
        ):
            resources[bytes(key)] = resource_attributes(bytes(data))
    out: list[GraphSpan] = []
    for row in rows:
        attrs = resources.get(bytes(row[10]))
        if attrs is None:
            continue  # no resource row (as the join this replaces, leave the span off)
        parent = bytes(row[2]) if row[2] else None
        out.append(decoded_span(bytes(row[0]), bytes(row[1]), parent, row[3], row[4], int(row[5]), int(row[6]),
                                int(row[7]), int(row[8]), bytes(row[9]), attrs, READ_KEYS))  # fmt: skip
    return out


class _GraphWrite:
    """One project's share of one ingest transaction."""

    def __init__(self, sql: Sql, project_id: int) -> None:
        self.sql = sql
        self.project = project_id

    def apply(self, spans: list[GraphSpan], derived: Derived | None = None) -> None:
        """Write the graph facts of ``spans`` (``derived``: what ``derive`` made of them, if known)."""
        stored = load_facts(self.sql, self.project, sorted({s.trace_id for s in spans}), fill=False)
        empty = TraceFacts()
        fresh = [s for s in spans if not stored.get(s.trace_id, empty).counted(s)]  # a batch sent twice: once
        if not fresh:
            return
        if derived is None or len(fresh) < len(spans):
            derived = derive(fresh)
        if derived.skipped:
            logger.warning("hoptrace: %d span(s) left off the graph (unreadable attributes)", derived.skipped)
        merged = self._merge_facts(derived.facts, stored)
        hops, joins = self._match(derived.keys)
        for hop in hops:
            derived.rollups.add_hop(hop)
        self._merge_rollups(derived.rollups)
        changed, dropped = self._join_all(joins)
        changed |= self._transactions_of_all(list(merged))
        self._summarise_all(sorted(changed - dropped), merged)

    # -- per-trace facts and membership ---------------------------------------------------

    def _merge_facts(self, facts: dict[bytes, TraceFacts], known: dict[bytes, TraceFacts]) -> dict[bytes, TraceFacts]:
        """Store the batch's facts merged into what was known of their traces; returns the merged
        facts by trace (what the summaries of their transactions read, without reading them back)."""
        traces = sorted(facts)
        stored = {t: known[t] for t in traces if t in known}  # facts of traces seen before
        rows = []
        out: dict[bytes, TraceFacts] = {}
        for trace_id in traces:
            merged = out[trace_id] = stored.get(trace_id, TraceFacts()).merge(facts[trace_id])
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
        return out

    def _transactions_of_all(self, traces: Sequence[bytes]) -> set[bytes]:
        found: set[bytes] = set()
        for chunk in _chunks(list(traces)):
            for (txn,) in self.sql.rows(
                "SELECT DISTINCT transaction_id FROM transaction_members WHERE project_id = ?"
                f" AND trace_id IN ({_marks(len(chunk))})",
                [self.project, *chunk],
            ):
                found.add(bytes(txn))
        return found

    def _forward(self, starts: set[bytes]) -> dict[bytes, set[bytes]]:
        """Trace-level hop edges of everything reachable from ``starts`` (one query per level)."""
        forward: dict[bytes, set[bytes]] = {}
        seen, frontier = set(starts), sorted(starts)
        while frontier:
            found: list[bytes] = []
            for chunk in _chunks(frontier):
                for ft, tt in self.sql.rows(
                    "SELECT DISTINCT from_trace, to_trace FROM hops WHERE project_id = ?"
                    f" AND from_trace IN ({_marks(len(chunk))})",
                    [self.project, *chunk],
                ):
                    ft, tt = bytes(ft), bytes(tt)
                    if ft != tt:
                        forward.setdefault(ft, set()).add(tt)
                        if tt not in seen:
                            seen.add(tt)
                            found.append(tt)
            frontier = sorted(found)
        return forward

    def _join_all(self, joins: list[tuple[bytes, bytes]]) -> tuple[set[bytes], set[bytes]]:
        """Membership after trace pairs joined for the first time: ``plan_hop`` for each, in order,
        on the stored state loaded once (reachability as stored now, this batch's hops included).

        Returns the transactions that changed and those that no longer exist.
        """
        if not joins:
            return set(), set()
        forward = self._forward({b for _, b in joins})

        def reach(start: bytes) -> set[bytes]:
            seen, todo = {start}, [start]
            while todo:
                for nxt in forward.get(todo.pop(), ()):
                    if nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)
            return seen

        involved = sorted({a for a, _ in joins} | {b for _, b in joins} | {t for ts in forward.values() for t in ts})
        of_trace: dict[bytes, set[bytes]] = {}
        roots: set[bytes] = set()
        for chunk in _chunks(involved):
            for txn, trace in self.sql.rows(
                "SELECT transaction_id, trace_id FROM transaction_members WHERE project_id = ?"
                f" AND trace_id IN ({_marks(len(chunk))})",
                [self.project, *chunk],
            ):
                of_trace.setdefault(bytes(trace), set()).add(bytes(txn))
                if txn == trace:
                    roots.add(bytes(txn))
        # Every stored membership of every trace these joins can reach (this step's new traces
        # included): what is not among them is new, so the rows go in as plain inserts (COPY).
        stored = {(txn, trace) for trace, txns in of_trace.items() for txn in txns}
        added: set[tuple[bytes, bytes]] = set()
        changed: set[bytes] = set()
        dropped: set[bytes] = set()
        for a, b in joins:
            txns = of_trace.get(a, set()) - dropped
            change = plan_hop(a, b, txns, reach(b), b in roots and b not in dropped)
            for txn, trace in change.add:
                of_trace.setdefault(trace, set()).add(txn)
                added.add((txn, trace))
            changed |= txns
            if change.drop is not None:
                dropped.add(change.drop)
        self.sql.insert(
            "transaction_members", ("project_id", "transaction_id", "trace_id"),
            [(self.project, txn, trace) for txn, trace in sorted(added - stored) if txn not in dropped],
        )  # fmt: skip
        for chunk in _chunks(sorted(dropped)):
            for table, column in (("transaction_members", "transaction_id"), ("transactions", "id"),
                                  ("transaction_terms", "transaction_id")):  # fmt: skip
                self.sql.run(
                    f"DELETE FROM {table} WHERE project_id = ? AND {column} IN ({_marks(len(chunk))})",
                    [self.project, *chunk],
                )
        return changed - dropped, dropped

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
        # Consumer keys that found their producer here: no later producer needs them (ids are
        # unique; a windowed key already joined is skipped by later producers), so they are not
        # stored. About a third of all keys: the largest table the pass writes.
        matched: set[tuple[str, bytes]] = set()
        for k in keys:
            others = stored.setdefault(k.key, [])
            if k.windowed and k.side == PRODUCER_SIDE:
                others = [o for o in others if (k.key, o.end.span_id) not in taken]
            hops = match_key(k, others, (k.key, k.end.span_id) in taken)
            if k.windowed:
                taken.update((k.key, h.to_span) for h in hops)
            if hops:
                if k.side == CONSUMER_SIDE:
                    matched.add((k.key, k.end.span_id))
                else:
                    matched.update((k.key, h.to_span) for h in hops)
            found.extend(hops)
            stored[k.key].append(k)
        self.sql.insert(
            "hop_keys", _HOP_KEY_COLUMNS,
            [
                (self.project, k.key, k.side, k.via, k.end.trace_id, k.end.span_id, k.end.service, k.end.kind,
                 k.end.start_ns, k.end.end_ns, k.end.detail, k.end.edge, k.end.attempt,
                 int(k.side == CONSUMER_SIDE and (k.key, k.end.span_id) in taken))
                for k in keys
                if k.side == PRODUCER_SIDE or (k.key, k.end.span_id) not in matched
            ],
        )  # fmt: skip
        new_ids = {k.end.span_id for k in keys}
        self.sql.run_many(
            "UPDATE hop_keys SET joined = 1 WHERE project_id = ? AND key = ? AND span_id = ? AND side = 'c'",
            [(self.project, key, span) for key, span in taken - was_taken if span not in new_ids],
        )
        candidates = strongest(found)
        # What is already stored of these producers' traces: deliveries and joined trace pairs.
        delivered: set[tuple[bytes, bytes, bytes, int, str]] = set()
        known: set[tuple[bytes, bytes]] = set()
        for chunk in _chunks(sorted({h.from_trace for h in candidates})):
            for ft, fs, tt, attempt, edge in self.sql.rows(
                f"SELECT from_trace, from_span, to_trace, attempt, edge FROM hops WHERE project_id = ?"
                f" AND from_trace IN ({_marks(len(chunk))})",
                [self.project, *chunk],
            ):
                delivered.add((bytes(ft), bytes(fs), bytes(tt), int(attempt), str(edge)))
                known.add((bytes(ft), bytes(tt)))
        inserted = []
        joins: list[tuple[bytes, bytes]] = []
        for hop in candidates:
            if delivery(hop) in delivered:
                continue  # the same delivery, met again through another span of the consumer's trace
            delivered.add(delivery(hop))
            pair = (hop.from_trace, hop.to_trace)
            if hop.from_trace != hop.to_trace and pair not in known:
                known.add(pair)
                joins.append(pair)
            inserted.append(hop)
        self.sql.run_many(
            "INSERT INTO hops (project_id, from_trace, from_span, to_trace, to_span, via, dwell_ms, skew, start_ns,"
            " edge, attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [(self.project, h.from_trace, h.from_span, h.to_trace, h.to_span, h.via, h.dwell_ms, int(h.skew),
              h.start_ns, h.edge, h.attempt) for h in inserted],
        )  # fmt: skip
        return inserted, joins

    # -- rollups and summaries ------------------------------------------------------------------

    def _merge_rollups(self, rollups: Rollups) -> None:
        """Add the batch's rollups to the stored minutes, their ten minutes and their hours (see
        ``read_rollups``):
        per table, one read of the rows these minutes already have and one upsert of them all."""
        tiers = [("", rollups)]
        for tier, size in TIERS:
            merged = Rollups()
            for (minute, node), rollup in rollups.nodes.items():
                merged.nodes.setdefault((minute // size * size, node), Rollup()).merge(rollup)
            for (minute, source, target, kind), rollup in rollups.edges.items():
                merged.edges.setdefault((minute // size * size, source, target, kind), Rollup()).merge(rollup)
            tiers.append((tier, merged))
        for tier, tiered in tiers:
            self._upsert_all(f"node_rollups{tier}", ("node",), tiered.nodes)
            self._upsert_all(f"edge_rollups{tier}", ("source", "target", "kind"), tiered.edges)

    def _upsert_all(self, table: str, names: tuple[str, ...], rollups: Mapping[tuple[Any, ...], Rollup]) -> None:
        if not rollups:
            return
        columns = ("minute", *names)
        merged = dict(rollups)
        minutes = sorted({key[0] for key in merged})
        for chunk in _chunks(minutes):
            for row in self.sql.rows(
                f"SELECT {', '.join(columns)}, {ROLLUP_COLUMNS} FROM {table} WHERE project_id = ?"
                f" AND minute IN ({_marks(len(chunk))})",
                [self.project, *chunk],
            ):
                key = (int(row[0]), *row[1 : len(columns)])
                if key in merged:  # a new Rollup: the batch's own is left as it was
                    merged[key] = from_row(row[len(columns) :]).merge(merged[key])
        self.sql.run_many(
            f"INSERT INTO {table} (project_id, {', '.join(columns)}, {ROLLUP_COLUMNS})"
            f" VALUES ({_marks(len(columns) + 11)})"
            f" ON CONFLICT (project_id, {', '.join(columns)}) DO UPDATE SET {_SET}",
            [(self.project, *key, *to_row(rollup)) for key, rollup in sorted(merged.items())],
        )

    def _summarise_all(self, txns: list[bytes], known: dict[bytes, TraceFacts]) -> None:
        """Recompute the stored summaries of these transactions, a few statements for all of them
        (``known``: facts of traces already in hand, not read again).

        A transaction only grows (traces join it, facts gain spans), so its search terms only
        grow: the terms it did not have are added, and the rest left alone; one that would lose a
        term (never, by the rules) has its terms written afresh."""
        members: dict[bytes, list[bytes]] = {}
        for chunk in _chunks(txns):
            for txn, trace in self.sql.rows(
                "SELECT transaction_id, trace_id FROM transaction_members WHERE project_id = ?"
                f" AND transaction_id IN ({_marks(len(chunk))})",
                [self.project, *chunk],
            ):
                members.setdefault(bytes(txn), []).append(bytes(trace))
        traces = sorted({t for ts in members.values() for t in ts})
        facts = load_facts(self.sql, self.project, [t for t in traces if t not in known])
        facts.update((t, known[t]) for t in traces if t in known)
        before: dict[bytes, set[tuple[str, str]]] = {}
        for chunk in _chunks(sorted(members)):
            for txn, summary in self.sql.rows(
                f"SELECT id, summary FROM transactions WHERE project_id = ? AND id IN ({_marks(len(chunk))})",
                [self.project, *chunk],
            ):
                d = json.loads(summary)
                before[bytes(txn)] = {("service", n) for n in d["services"]} | {("resource", n) for n in d["resources"]}
        hops = load_hops(self.sql, self.project, traces)
        rows, terms, rewrite = [], [], []
        leaving: dict[bytes, list[Hop]] = {}
        for hop in hops:
            leaving.setdefault(hop.from_trace, []).append(hop)
        for txn, ts in sorted(members.items()):
            t = summarise(
                txn, {trace: facts[trace] for trace in ts}, [h for trace in ts for h in leaving.get(trace, ())]
            )
            rows.append((self.project, txn, t.start_ns, t.end_ns, t.end_ns - t.start_ns, t.errors, int(t.incomplete),
                         t.hops, transaction_json(t)))  # fmt: skip
            now = [("service", name) for name in t.services] + [("resource", name) for name in t.resources]
            had = before.get(txn, set())
            if had.issubset(now):
                terms += [(self.project, key, value, txn) for key, value in now if (key, value) not in had]
            else:
                rewrite.append(txn)
                terms += [(self.project, key, value, txn) for key, value in now]
        self.sql.run_many(
            "INSERT INTO transactions (project_id, id, start_ns, end_ns, duration_ns, errors, incomplete, hops,"
            " summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            f" ON CONFLICT (project_id, id) DO UPDATE SET {_TXN_SET}",
            rows,
        )
        for chunk in _chunks(rewrite):
            self.sql.run(
                f"DELETE FROM transaction_terms WHERE project_id = ? AND transaction_id IN ({_marks(len(chunk))})",
                [self.project, *chunk],
            )
        self.sql.insert("transaction_terms", ("project_id", "key", "value", "transaction_id"), terms)


_HOP_KEY_COLUMNS = ("project_id", "key", "side", "via", "trace_id", "span_id", "service", "kind", "start_ns", "end_ns",
                    "detail", "edge", "attempt", "joined")  # fmt: skip
_TXN_SET = ", ".join(
    f"{c} = excluded.{c}" for c in ("start_ns", "end_ns", "duration_ns", "errors", "incomplete", "hops", "summary")
)
# Rollup tables beside the minutes: (table suffix, minutes per row), coarsest last.
TIERS = (("_10m", 10), ("_hourly", 60))
COUNTERS = "count, errors, throttles, ok, client_errors, faults"
# Every value column of a rollup row, in ``to_row`` order (cold_starts, timeouts: migration 5).
ROLLUP_COLUMNS = f"{COUNTERS}, latency, dwell, cold_starts, timeouts"
_SET = ", ".join(f"{c} = excluded.{c}" for c in ROLLUP_COLUMNS.split(", "))


def to_row(r: Rollup) -> tuple[Any, ...]:
    return (*r.counters(), r.latency.to_bytes(), r.dwell.to_bytes(), r.cold_starts, r.timeouts)


def from_row(row: Sequence[Any]) -> Rollup:
    """A rollup from its value columns (``ROLLUP_COLUMNS``, or the first eight of them)."""
    return Rollup.from_row(tuple(row[:6]), bytes(row[6]), bytes(row[7]), *row[8:10])


def merge_row(into: Rollup, row: Sequence[Any]) -> Rollup:
    """``into.merge(from_row(row))`` without building the row's rollup and its two sketches (a
    window of the map merges thousands of rows)."""
    into.count += int(row[0])
    into.errors += int(row[1])
    into.throttles += int(row[2])
    into.ok += int(row[3])
    into.client_errors += int(row[4])
    into.faults += int(row[5])
    if row[6]:
        into.latency.merge_bytes(bytes(row[6]))
    if row[7]:
        into.dwell.merge_bytes(bytes(row[7]))
    if len(row) > 8:
        into.cold_starts += int(row[8])
        if len(row) > 9:
            into.timeouts += int(row[9])
    return into


def load_facts(sql: Sql, project: int, traces: Sequence[bytes], fill: bool = True) -> dict[bytes, TraceFacts]:
    """Stored facts of these traces; with ``fill``, empty facts for traces that have none."""
    facts = {t: TraceFacts() for t in traces} if fill else {}
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


def backfill_hourly(sql: Sql) -> None:
    """Fill the hourly rollups from minute rows written before they existed (migration 4)."""
    for kind, names in (("node", ("node",)), ("edge", ("source", "target", "kind"))):
        hours: dict[tuple[Any, ...], Rollup] = {}
        for row in sql.rows(f"SELECT project_id, minute, {', '.join(names)}, {COUNTERS}, latency, dwell"
                            f" FROM {kind}_rollups", []):  # fmt: skip
            key = (row[0], int(row[1]) // 60 * 60, *row[2 : 2 + len(names)])
            hours.setdefault(key, Rollup()).merge(from_row(row[2 + len(names) :]))
        columns = ", ".join(("project_id", "minute", *names))
        sql.run_many(  # the columns of migration 4's time (later ones start at their defaults)
            f"INSERT INTO {kind}_rollups_hourly ({columns}, {COUNTERS}, latency, dwell)"
            f" VALUES ({_marks(len(names) + 10)})",
            [(*key, *to_row(r)[:8]) for key, r in sorted(hours.items())],
        )


def backfill_ten_minutes(sql: Sql) -> None:
    """Fill the ten-minute rollups from minute rows written before they existed (migration 13)."""
    for kind, names in (("node", ("node",)), ("edge", ("source", "target", "kind"))):
        tens: dict[tuple[Any, ...], Rollup] = {}
        for row in sql.rows(f"SELECT project_id, minute, {', '.join(names)}, {ROLLUP_COLUMNS} FROM {kind}_rollups", []):
            key = (row[0], int(row[1]) // 10 * 10, *row[2 : 2 + len(names)])
            tens.setdefault(key, Rollup()).merge(from_row(row[2 + len(names) :]))
        columns = ", ".join(("project_id", "minute", *names))
        sql.run_many(
            f"INSERT INTO {kind}_rollups_10m ({columns}, {ROLLUP_COLUMNS}) VALUES ({_marks(len(names) + 12)})",
            [(*key, *to_row(r)) for key, r in sorted(tens.items())],
        )
