"""Issues and notifications in SQL, shared by both backends through the graph's ``Sql`` handle.

When computed: ingest queues the ids of its error spans (``queue_rows``: ERROR status or an
``exception`` event, a byte search, no parsing) in the same transaction as the spans. The issue
pass (``collector/notify.py``) reads queued batches and turns their spans into occurrences
outside any write (``prepare``), then in one short write transaction counts them into issues,
evaluates the notification rules, writes the outbox and unqueues the batches (``apply``): a
crash leaves each span either queued or counted, and an occurrence is keyed by its span, so a
batch sent twice counts once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from hoptrace.graph.rollup import MINUTE_NS
from hoptrace.graph.spans import AttrValue, GraphSpan

from .. import health
from .. import issues as grouping
from ..issues import IGNORED, OPEN, RESOLVED, ExceptionEvent, Occurrence, Rule
from ..otlp import SpanBatch
from . import StoredSpan, health_sql
from .graph_rows import attributes, decoded_span, graph_span, resource_attributes
from .graph_sql import CHUNK, ID_SIZE, Sql

QUEUE_INSERT = "INSERT INTO issue_queue (project_id, spans) VALUES (?, ?)"
STEP_SPANS = 2000
MAX_FUNCTIONS = 50  # functions listed per issue
OUTBOX_STACKTRACE = 4000  # characters of the stack trace a notification carries


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _chunks(values: Sequence[Any]) -> list[Sequence[Any]]:
    return [values[i : i + CHUNK] for i in range(0, len(values), CHUNK)]


_INVOCATION_KINDS = (2, 5)  # OTLP SERVER, CONSUMER: what may be an invocation (function health)


def queue_rows(items: list[tuple[int, SpanBatch]]) -> list[tuple[int, bytes]]:
    """Per batch, the packed ids of the spans that may report an error (ERROR status, or an
    ``exception`` event: its name is in the span's bytes) or be an invocation (SERVER or
    CONSUMER: counted into function health). Cheap enough for ingest."""
    out = []
    for project_id, batch in items:
        packed = b"".join(
            s.trace_id + s.span_id
            for s in batch.spans
            if s.status == 2 or s.kind in _INVOCATION_KINDS or b"exception" in s.data
        )
        if packed:
            out.append((project_id, packed))
    return out


# -- the pass -------------------------------------------------------------------------------------


@dataclass
class Prepared:
    rows: list[int]
    occurrences: dict[int, list[Occurrence]] = field(default_factory=dict)
    # Per project, (span id, error key) of spans an exception went up into, with its time: a
    # parent read in a later pass recognises the exception its child already counted.
    raised: dict[int, list[tuple[bytes, str, int]]] = field(default_factory=dict)
    health: dict[int, list[health.Folded]] = field(default_factory=dict)  # invocations, per project


def prepare(sql: Sql, max_spans: int = STEP_SPANS, record_age_ms: float = health.RECORD_AGE_MS) -> Prepared | None:
    """Read the oldest queued batches and derive their occurrences; writes nothing."""
    taken: list[tuple[int, int, bytes]] = []
    size = 0
    for row_id, project, packed in sql.rows("SELECT id, project_id, spans FROM issue_queue ORDER BY id LIMIT ?", [64]):
        taken.append((int(row_id), int(project), bytes(packed)))
        size += len(packed) // ID_SIZE
        if size >= max_spans:
            break
    if not taken:
        return None
    prepared = Prepared([row_id for row_id, _, _ in taken])
    by_project: dict[int, list[bytes]] = {}
    for _, project, packed in taken:
        by_project.setdefault(project, []).append(packed)
    for project, packs in by_project.items():
        loaded = _load(sql, project, b"".join(packs))
        found = grouping.without_propagated(loaded)
        if found:
            prepared.occurrences[project] = found
        folded = [f for f in (health.fold(view, record_age_ms) for view, _ in loaded) if f is not None]
        if folded:
            prepared.health[project] = folded
        raised = grouping.raised_into(loaded)
        if raised:  # kept with the time the exception was raised, for retention
            when = {o.error_key: o.time_ns for _, occs in loaded for o in occs}
            prepared.raised[project] = [(span_id, key, when[key]) for span_id, key in sorted(raised)]
    return prepared


def _load(sql: Sql, project: int, packed: bytes) -> list[tuple[GraphSpan, list[Occurrence]]]:
    wanted = {(packed[i : i + 16], packed[i + 16 : i + ID_SIZE]) for i in range(0, len(packed), ID_SIZE)}
    resources: dict[bytes, dict[str, AttrValue]] = {}
    out: list[tuple[GraphSpan, list[Occurrence]]] = []
    for pairs in _chunks(sorted(wanted)):  # by trace (the index) and span id: only the spans queued
        traces, span_ids = sorted({t for t, _ in pairs}), sorted({s for _, s in pairs})
        for row in sql.rows(
            "SELECT s.trace_id, s.span_id, s.parent_span_id, s.service_name, s.name, s.kind, s.start_ns, s.end_ns,"
            " s.status, s.data, r.data, s.resource_key FROM spans s"
            " JOIN resources r ON r.project_id = s.project_id AND r.key = s.resource_key"
            f" WHERE s.project_id = ? AND s.trace_id IN ({_marks(len(traces))})"
            f" AND s.span_id IN ({_marks(len(span_ids))})",
            [project, *traces, *span_ids],
        ):
            ids = (bytes(row[0]), bytes(row[1]))
            if ids not in wanted:
                continue
            wanted.discard(ids)  # stored twice (a batch sent again): once
            stored = StoredSpan(ids[0], ids[1], bytes(row[2]) if row[2] else None, row[3], row[4], int(row[5]),
                                int(row[6]), int(row[7]), int(row[8]), bytes(row[9]), bytes(row[10]))  # fmt: skip
            key = bytes(row[11])
            attrs = resources.get(key)
            if attrs is None:
                attrs = resources[key] = resource_attributes(stored.resource)
            if stored.status != 2 and b"exception" not in stored.data:
                # An invocation that went well, queued for its health only: no error, and only
                # the attributes its health reads decoded.
                out.append((_health_view(stored, attrs), []))
                continue
            view = graph_span(stored, attrs)
            span = Span()
            span.ParseFromString(stored.data)
            events = [
                ExceptionEvent(e.time_unix_nano, attributes(e.attributes)) for e in span.events if e.name == "exception"
            ]
            out.append((view, grouping.occurrences(view, events, span.status.message)))
    return out


def _health_view(stored: StoredSpan, resource: dict[str, AttrValue]) -> GraphSpan:
    return decoded_span(stored.trace_id, stored.span_id, stored.parent_span_id, stored.service_name, stored.name,
                        stored.kind, stored.start_ns, stored.end_ns, stored.status, stored.data, resource,
                        health.SPAN_KEYS)  # fmt: skip


@dataclass
class _IssueState:
    id: int
    kind: str
    title: str
    culprit: str
    status: str
    count: int
    first_seen_ns: int
    last_seen_ns: int
    regression: int
    status_ns: int
    functions: set[str]


def apply(sql: Sql, prepared: Prepared, lock: str = "") -> bool:
    """Count what ``prepare`` found into issues, write the notifications the rules prescribe and
    unqueue the batches, inside the caller's write transaction. False, writing nothing, when a
    batch is no longer queued (another pass took it): the caller prepares again."""
    present = 0
    for chunk in _chunks(prepared.rows):
        present += len(sql.rows(f"SELECT id FROM issue_queue WHERE id IN ({_marks(len(chunk))}){lock}", list(chunk)))
    if present != len(prepared.rows):
        return False
    now = time.time_ns()
    for project, raised in sorted(prepared.raised.items()):
        sql.run_many(
            "INSERT INTO issue_raised (project_id, span_id, error_key, time_ns) VALUES (?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            [(project, span_id, key, at) for span_id, key, at in raised],
        )
    for project in sorted(prepared.occurrences.keys() | prepared.health.keys()):
        found = _not_raised_below(sql, project, prepared.occurrences.get(project, []))
        found += health_sql.new_error_types(sql, project, found)
        found += health_sql.apply(sql, project, prepared.health.get(project, []), now)
        _apply_project(sql, project, found, now)
    for chunk in _chunks(prepared.rows):
        sql.run(f"DELETE FROM issue_queue WHERE id IN ({_marks(len(chunk))})", list(chunk))
    return True


def _not_raised_below(sql: Sql, project: int, found: list[Occurrence]) -> list[Occurrence]:
    """Without the exceptions a span below already counted (read in an earlier pass)."""
    spans = sorted({o.span_id for o in found if o.kind == grouping.EXCEPTION})
    known: set[tuple[bytes, str]] = set()
    for chunk in _chunks(spans):
        for span_id, key in sql.rows(
            f"SELECT span_id, error_key FROM issue_raised WHERE project_id = ? AND span_id IN ({_marks(len(chunk))})",
            [project, *chunk],
        ):
            known.add((bytes(span_id), key))
    if not known:
        return found
    return [o for o in found if not (o.kind == grouping.EXCEPTION and (o.span_id, o.error_key) in known)]


def _apply_project(sql: Sql, project: int, found: list[Occurrence], now: int) -> None:
    known: set[tuple[bytes, bytes, int]] = set()
    for chunk in _chunks(sorted({o.trace_id for o in found})):
        for trace_id, span_id, seq in sql.rows(
            "SELECT trace_id, span_id, seq FROM issue_occurrences WHERE project_id = ?"
            f" AND trace_id IN ({_marks(len(chunk))})",
            [project, *chunk],
        ):
            known.add((bytes(trace_id), bytes(span_id), int(seq)))
    fresh = []
    for occ in sorted(found, key=lambda o: (o.time_ns, o.trace_id, o.span_id, o.seq)):
        key = (occ.trace_id, occ.span_id, occ.seq)
        if key not in known:
            known.add(key)
            fresh.append(occ)
    if not fresh:
        return
    issues = _load_issues(sql, project, fresh, now)
    rules = load_rules(sql, project, enabled_only=True)
    buckets: dict[tuple[int, str, int], int] = {}
    minutes: dict[tuple[int, int], int] = {}
    outbox: list[tuple[Any, ...]] = []
    occurrence_rows = []
    classes: dict[tuple[str, int, str], int] = {}  # (function, minute, kind): failed spans
    for occ in fresh:
        if occ.seq == 0:  # one error per span, whatever the number of its exception events
            slot_key = (occ.function, occ.time_ns // MINUTE_NS, occ.kind)
            classes[slot_key] = classes.get(slot_key, 0) + 1
        st = issues[occ.fingerprint]
        st.count += 1
        first, event = st.count == 1, "new"
        if st.status == RESOLVED and occ.time_ns > st.status_ns:  # not an old one arriving late
            st.status, st.regression, st.status_ns = OPEN, 1, now
            first, event = True, "regression"
        elif not first:
            event = "threshold"
        st.first_seen_ns = min(st.first_seen_ns, occ.time_ns)
        st.last_seen_ns = max(st.last_seen_ns, occ.time_ns)
        if len(st.functions) < MAX_FUNCTIONS:
            st.functions.add(occ.function)
        minute = occ.time_ns // MINUTE_NS
        minutes[(st.id, minute)] = minutes.get((st.id, minute), 0) + 1
        occurrence_rows.append((project, occ.trace_id, occ.span_id, occ.seq, st.id, occ.time_ns, occ.function,
                                occ.message, occ.stacktrace))  # fmt: skip
        counted: dict[str, int] = {}
        for bucket in sorted({r.bucket for r in rules}):
            start = grouping.bucket_start_minute(minute, bucket)
            slot = (st.id, bucket, start)
            if slot not in buckets:
                buckets[slot] = _bucket_count(sql, project, st.id, start, start + grouping.BUCKETS[bucket] // 60)
            buckets[slot] += 1
            counted[bucket] = buckets[slot]
        if st.status == IGNORED:
            continue
        for rule in rules:
            if rule.applies(st.kind, occ.function) and rule.notifies(first, counted[rule.bucket]):
                payload = _payload(st, occ, event, rule, counted[rule.bucket])
                outbox.append((project, rule.channel_id, rule.id, st.id, event, payload, now, 0, now, "pending", ""))
    sql.run_many(
        "INSERT INTO issue_occurrences (project_id, trace_id, span_id, seq, issue_id, time_ns, function, message,"
        " stacktrace) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        occurrence_rows,
    )
    sql.run_many(
        "INSERT INTO issue_minutes (project_id, issue_id, minute, count) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (project_id, issue_id, minute) DO UPDATE SET count = issue_minutes.count + excluded.count",
        [(project, issue_id, minute, n) for (issue_id, minute), n in sorted(minutes.items())],
    )
    sql.run_many(
        "INSERT INTO function_errors (project_id, function, minute, kind, count) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (project_id, function, minute, kind)"
        " DO UPDATE SET count = function_errors.count + excluded.count",
        [(project, fn, minute, kind, n) for (fn, minute, kind), n in sorted(classes.items())],
    )
    touched = sorted({issues[o.fingerprint].id: issues[o.fingerprint] for o in fresh}.items())
    sql.run_many(
        "UPDATE issues SET count = ?, first_seen_ns = ?, last_seen_ns = ?, status = ?, regression = ?, status_ns = ?"
        " WHERE id = ?",
        [(st.count, st.first_seen_ns, st.last_seen_ns, st.status, st.regression, st.status_ns, issue_id)
         for issue_id, st in touched],
    )  # fmt: skip
    sql.run_many(
        "INSERT INTO issue_functions (project_id, function, issue_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        [(project, fn, issue_id) for issue_id, st in touched for fn in sorted(st.functions)],
    )
    sql.run_many(
        "INSERT INTO notify_outbox (project_id, channel_id, rule_id, issue_id, event, payload, created_ns, attempts,"
        " next_attempt_ns, state, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        outbox,
    )


def _load_issues(sql: Sql, project: int, fresh: list[Occurrence], now: int) -> dict[str, _IssueState]:
    """The issues of these occurrences' fingerprints, created (count 0) where new."""
    issues: dict[str, _IssueState] = {}
    prints = sorted({o.fingerprint for o in fresh})
    for chunk in _chunks(prints):
        for row in sql.rows(
            "SELECT fingerprint, id, kind, title, culprit, status, count, first_seen_ns, last_seen_ns, regression,"
            f" status_ns FROM issues WHERE project_id = ? AND fingerprint IN ({_marks(len(chunk))})",
            [project, *chunk],
        ):
            issues[row[0]] = _IssueState(int(row[1]), row[2], row[3], row[4], row[5], int(row[6]), int(row[7]),
                                         int(row[8]), int(row[9]), int(row[10]), set())  # fmt: skip
    for occ in fresh:
        if occ.fingerprint in issues:
            continue
        (row,) = sql.rows(
            "INSERT INTO issues (project_id, fingerprint, kind, title, culprit, first_seen_ns, last_seen_ns, count,"
            " status, regression, status_ns) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, 0, ?) RETURNING id",
            [project, occ.fingerprint, occ.kind, occ.title, occ.culprit, occ.time_ns, occ.time_ns, OPEN, now],
        )
        issues[occ.fingerprint] = _IssueState(int(row[0]), occ.kind, occ.title, occ.culprit, OPEN, 0, occ.time_ns,
                                              occ.time_ns, 0, now, set())  # fmt: skip
    ids = sorted(st.id for st in issues.values())
    by_id = {st.id: st for st in issues.values()}
    for chunk in _chunks(ids):
        for issue_id, fn in sql.rows(
            "SELECT issue_id, function FROM issue_functions WHERE project_id = ?"
            f" AND issue_id IN ({_marks(len(chunk))})",
            [project, *chunk],
        ):
            by_id[int(issue_id)].functions.add(fn)
    return issues


def _bucket_count(sql: Sql, project: int, issue_id: int, first_minute: int, end_minute: int) -> int:
    (row,) = sql.rows(
        "SELECT coalesce(sum(count), 0) FROM issue_minutes WHERE project_id = ? AND issue_id = ? AND minute >= ?"
        " AND minute < ?",
        [project, issue_id, first_minute, end_minute],
    )
    return int(row[0])


def _payload(st: _IssueState, occ: Occurrence, event: str, rule: Rule, bucket_count: int) -> str:
    """What a notification says, fixed when the occurrence is counted (the issue as it was then)."""
    return json.dumps(
        {
            "event": event,
            "issue": {
                "id": st.id, "kind": st.kind, "title": st.title, "culprit": st.culprit,
                "functions": sorted(st.functions), "count": st.count, "first_seen_ns": st.first_seen_ns,
                "last_seen_ns": st.last_seen_ns, "status": st.status, "regression": bool(st.regression),
            },
            "rule": {"id": rule.id, "bucket": rule.bucket, "bucket_count": bucket_count},
            "occurrence": {
                "trace_id": occ.trace_id.hex(), "span_id": occ.span_id.hex(), "function": occ.function,
                "time_ns": occ.time_ns, "message": occ.message, "stacktrace": occ.stacktrace[-OUTBOX_STACKTRACE:],
            },
        },
        separators=(",", ":"),
    )  # fmt: skip


def queue_size(sql: Sql) -> int:
    """Error spans queued and not yet counted into issues."""
    rows = sql.rows(f"SELECT coalesce(sum(length(spans)), 0) / {ID_SIZE} FROM issue_queue", [])
    return int(rows[0][0])


# -- issue reads and status ---------------------------------------------------------------------

ISSUE_COLUMNS = "id, kind, title, culprit, first_seen_ns, last_seen_ns, count, status, regression, status_ns"


@dataclass(frozen=True)
class IssueRow:
    id: int
    kind: str
    title: str
    culprit: str
    first_seen_ns: int
    last_seen_ns: int
    count: int
    status: str
    regression: bool
    status_ns: int
    functions: tuple[str, ...] = ()


def _issue(row: Sequence[Any], functions: tuple[str, ...] = ()) -> IssueRow:
    return IssueRow(int(row[0]), row[1], row[2], row[3], int(row[4]), int(row[5]), int(row[6]), row[7],
                    bool(row[8]), int(row[9]), functions)  # fmt: skip


@dataclass(frozen=True)
class IssueQuery:
    kind: str | None = None
    status: str | None = None
    function: str | None = None
    start_ns: int | None = None  # last seen at or after
    end_ns: int | None = None  # first seen before
    limit: int = 50
    before: tuple[int, int] | None = None  # cursor: (last_seen_ns, id)


def list_issues(sql: Sql, project: int, q: IssueQuery) -> list[IssueRow]:
    """Issues matching the query, most recently seen first."""
    where, args = ["i.project_id = ?"], [cast(Any, project)]
    join = ""
    if q.function is not None:
        join = " JOIN issue_functions f ON f.project_id = i.project_id AND f.issue_id = i.id AND f.function = ?"
        args.insert(0, q.function)
    for clause, value in (("i.kind = ?", q.kind), ("i.status = ?", q.status), ("i.last_seen_ns >= ?", q.start_ns),
                          ("i.first_seen_ns < ?", q.end_ns)):  # fmt: skip
        if value is not None:
            where.append(clause)
            args.append(value)
    if q.before is not None:
        where.append("(i.last_seen_ns < ? OR (i.last_seen_ns = ? AND i.id < ?))")
        args += [q.before[0], q.before[0], q.before[1]]
    columns = ", ".join(f"i.{c}" for c in ISSUE_COLUMNS.split(", "))
    rows = sql.rows(
        f"SELECT {columns} FROM issues i{join} WHERE {' AND '.join(where)}"
        " ORDER BY i.last_seen_ns DESC, i.id DESC LIMIT ?",
        [*args, q.limit],
    )
    found = [_issue(r) for r in rows]
    functions = _functions(sql, project, [i.id for i in found])
    return [_issue(r, functions.get(int(r[0]), ())) for r in rows]


def _functions(sql: Sql, project: int, ids: list[int]) -> dict[int, tuple[str, ...]]:
    out: dict[int, list[str]] = {}
    for chunk in _chunks(ids):
        for issue_id, fn in sql.rows(
            "SELECT issue_id, function FROM issue_functions WHERE project_id = ?"
            f" AND issue_id IN ({_marks(len(chunk))}) ORDER BY function",
            [project, *chunk],
        ):
            out.setdefault(int(issue_id), []).append(fn)
    return {k: tuple(v) for k, v in out.items()}


def get_issue(sql: Sql, project: int, issue_id: int) -> IssueRow | None:
    rows = sql.rows(f"SELECT {ISSUE_COLUMNS} FROM issues WHERE project_id = ? AND id = ?", [project, issue_id])
    if not rows:
        return None
    return _issue(rows[0], _functions(sql, project, [issue_id]).get(issue_id, ()))


@dataclass(frozen=True)
class OccurrenceRow:
    trace_id: bytes
    span_id: bytes
    time_ns: int
    function: str
    message: str
    stacktrace: str
    transaction_ids: tuple[bytes, ...]


def latest_occurrences(sql: Sql, project: int, issue_id: int, limit: int) -> list[OccurrenceRow]:
    """The issue's latest occurrences, newest first, each with the transactions its trace is in."""
    rows = sql.rows(
        "SELECT trace_id, span_id, time_ns, function, message, stacktrace FROM issue_occurrences"
        " WHERE project_id = ? AND issue_id = ? ORDER BY time_ns DESC LIMIT ?",
        [project, issue_id, limit],
    )
    traces = sorted({bytes(r[0]) for r in rows})
    members: dict[bytes, list[bytes]] = {}
    for chunk in _chunks(traces):
        for txn, trace in sql.rows(
            "SELECT transaction_id, trace_id FROM transaction_members WHERE project_id = ?"
            f" AND trace_id IN ({_marks(len(chunk))})",
            [project, *chunk],
        ):
            members.setdefault(bytes(trace), []).append(bytes(txn))
    return [
        OccurrenceRow(
            bytes(r[0]), bytes(r[1]), int(r[2]), r[3], r[4], r[5], tuple(sorted(members.get(bytes(r[0]), ())))
        )
        for r in rows
    ]


def timeline(sql: Sql, project: int, issue_id: int, first_minute: int, end_minute: int) -> list[tuple[int, int]]:
    """(minute, count) of the minutes with occurrences in [first, end), oldest first."""
    rows = sql.rows(
        "SELECT minute, count FROM issue_minutes WHERE project_id = ? AND issue_id = ? AND minute >= ? AND minute < ?"
        " ORDER BY minute",
        [project, issue_id, first_minute, end_minute],
    )
    return [(int(m), int(n)) for m, n in rows]


def timelines(
    sql: Sql, project: int, issue_ids: Sequence[int], first_minute: int, end_minute: int
) -> dict[int, list[tuple[int, int]]]:
    """``timeline`` of several issues in one query per chunk (the list's sparklines)."""
    out: dict[int, list[tuple[int, int]]] = {}
    for chunk in _chunks(sorted(issue_ids)):
        for issue_id, minute, n in sql.rows(
            f"SELECT issue_id, minute, count FROM issue_minutes WHERE project_id = ? AND issue_id IN"
            f" ({_marks(len(chunk))}) AND minute >= ? AND minute < ? ORDER BY minute",
            [project, *chunk, first_minute, end_minute],
        ):
            out.setdefault(int(issue_id), []).append((int(minute), int(n)))
    return out


def set_status(sql: Sql, project: int, issue_id: int, status: str) -> bool:
    """Open, resolve or ignore an issue; resolving clears its regression mark. False: no such issue."""
    clear = "" if status == OPEN else ", regression = 0"
    changed = sql.run(
        f"UPDATE issues SET status = ?, status_ns = ?{clear} WHERE project_id = ? AND id = ?",
        [status, time.time_ns(), project, issue_id],
    )
    return changed > 0


def function_errors(
    sql: Sql, project: int, function: str, first_minute: int, end_minute: int
) -> list[tuple[int, str, int]]:
    """(minute, kind, failed spans) of a function in [first, end), oldest first."""
    rows = sql.rows(
        "SELECT minute, kind, count FROM function_errors WHERE project_id = ? AND function = ? AND minute >= ?"
        " AND minute < ? ORDER BY minute, kind",
        [project, function, first_minute, end_minute],
    )
    return [(int(m), k, int(n)) for m, k, n in rows]


# -- rules and channels ------------------------------------------------------------------------


def _rule(row: Sequence[Any]) -> Rule:
    return Rule(int(row[0]), int(row[1]), int(row[2]), int(row[3]), row[4], tuple(json.loads(row[5])),
                tuple(json.loads(row[6])), bool(row[7]))  # fmt: skip


RULE_COLUMNS = "id, channel_id, threshold, every, bucket, kinds, functions, enabled"


def load_rules(sql: Sql, project: int, enabled_only: bool = False) -> list[Rule]:
    extra = " AND enabled = 1" if enabled_only else ""
    return [
        _rule(r)
        for r in sql.rows(f"SELECT {RULE_COLUMNS} FROM notify_rules WHERE project_id = ?{extra} ORDER BY id", [project])
    ]


def rule_names(sql: Sql, project: int) -> dict[int, str]:
    return {int(i): n for i, n in sql.rows("SELECT id, name FROM notify_rules WHERE project_id = ?", [project])}


def save_rule(sql: Sql, project: int, name: str, rule: Rule) -> int:
    """Insert (``rule.id`` 0) or update a rule; returns its id (0: no such rule)."""
    values = [name, rule.channel_id, rule.threshold, rule.interval, rule.bucket, json.dumps(list(rule.kinds)),
              json.dumps(list(rule.functions)), int(rule.enabled)]  # fmt: skip
    if rule.id == 0:
        (row,) = sql.rows(
            "INSERT INTO notify_rules (name, channel_id, threshold, every, bucket, kinds, functions, enabled,"
            " project_id, created_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            [*values, project, time.time_ns()],
        )
        return int(row[0])
    changed = sql.run(
        "UPDATE notify_rules SET name = ?, channel_id = ?, threshold = ?, every = ?, bucket = ?, kinds = ?,"
        " functions = ?, enabled = ? WHERE project_id = ? AND id = ?",
        [*values, project, rule.id],
    )
    return rule.id if changed else 0


def delete_rule(sql: Sql, project: int, rule_id: int) -> bool:
    return sql.run("DELETE FROM notify_rules WHERE project_id = ? AND id = ?", [project, rule_id]) > 0


@dataclass(frozen=True)
class ChannelRow:
    id: int
    name: str
    type: str
    config: dict[str, Any]
    secret: dict[str, Any]  # never leaves the collector except to the channel itself


def _channel(row: Sequence[Any]) -> ChannelRow:
    return ChannelRow(int(row[0]), row[1], row[2], json.loads(row[3]), json.loads(row[4]))


def channels(sql: Sql, project: int) -> list[ChannelRow]:
    return [
        _channel(r)
        for r in sql.rows(
            "SELECT id, name, type, config, secret FROM notify_channels WHERE project_id = ? ORDER BY id", [project]
        )
    ]


def channel(sql: Sql, project: int, channel_id: int) -> ChannelRow | None:
    rows = sql.rows(
        "SELECT id, name, type, config, secret FROM notify_channels WHERE project_id = ? AND id = ?",
        [project, channel_id],
    )
    return _channel(rows[0]) if rows else None


def save_channel(sql: Sql, project: int, c: ChannelRow) -> int:
    """Insert (``c.id`` 0) or update a channel; returns its id (0: no such channel)."""
    values = [c.name, c.type, json.dumps(c.config), json.dumps(c.secret)]
    if c.id == 0:
        (row,) = sql.rows(
            "INSERT INTO notify_channels (name, type, config, secret, project_id, created_ns)"
            " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            [*values, project, time.time_ns()],
        )
        return int(row[0])
    changed = sql.run(
        "UPDATE notify_channels SET name = ?, type = ?, config = ?, secret = ? WHERE project_id = ? AND id = ?",
        [*values, project, c.id],
    )
    return c.id if changed else 0


def delete_channel(sql: Sql, project: int, channel_id: int) -> bool:
    """Delete a channel with its rules; its undelivered notifications are dropped with it."""
    sql.run("DELETE FROM notify_rules WHERE project_id = ? AND channel_id = ?", [project, channel_id])
    sql.run(
        "UPDATE notify_outbox SET state = 'dropped', done_ns = ?, last_error = 'channel deleted'"
        " WHERE project_id = ? AND channel_id = ? AND state = 'pending'",
        [time.time_ns(), project, channel_id],
    )
    return sql.run("DELETE FROM notify_channels WHERE project_id = ? AND id = ?", [project, channel_id]) > 0


# -- the outbox ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """A claimed notification with its channel, as the notifier sends it."""

    id: int
    project_id: int
    project: str
    issue_id: int
    event: str
    payload: dict[str, Any]
    attempts: int
    channel: ChannelRow


def any_due(sql: Sql, now: int) -> bool:
    return bool(sql.rows("SELECT 1 FROM notify_outbox WHERE state = 'pending' AND next_attempt_ns <= ? LIMIT 1", [now]))


def claim_due(sql: Sql, now: int, lease_ns: int, limit: int) -> list[Delivery]:
    """Claim due notifications: each moves its next attempt past the lease first, so another
    notifier (a replica) skips it, and a notifier that died with it lets it come due again."""
    rows = sql.rows(
        "SELECT o.id, o.project_id, p.name, o.issue_id, o.event, o.payload, o.attempts, c.id, c.name, c.type,"
        " c.config, c.secret FROM notify_outbox o JOIN notify_channels c ON c.id = o.channel_id"
        " JOIN projects p ON p.id = o.project_id"
        " WHERE o.state = 'pending' AND o.next_attempt_ns <= ? ORDER BY o.next_attempt_ns, o.id LIMIT ?",
        [now, limit],
    )
    claimed = []
    for r in rows:
        took = sql.run(
            "UPDATE notify_outbox SET next_attempt_ns = ? WHERE id = ? AND state = 'pending' AND next_attempt_ns <= ?",
            [now + lease_ns, r[0], now],
        )
        if took:
            claimed.append(Delivery(int(r[0]), int(r[1]), r[2], int(r[3]), r[4], json.loads(r[5]), int(r[6]),
                                    _channel(r[7:12])))  # fmt: skip
    return claimed


def finish(sql: Sql, delivery_id: int, state: str, error: str, next_attempt_ns: int) -> None:
    """After an attempt: ``delivered`` or ``failed`` (done), or ``pending`` again at ``next_attempt_ns``."""
    done = time.time_ns() if state != "pending" else None
    sql.run(
        "UPDATE notify_outbox SET state = ?, last_error = ?, next_attempt_ns = ?, attempts = attempts + 1,"
        " done_ns = ? WHERE id = ? AND state = 'pending'",  # not one dropped meanwhile (its channel deleted)
        [state, error[:500], next_attempt_ns, done, delivery_id],
    )


def release(sql: Sql, delivery_id: int, now: int) -> None:
    """Give back a claimed notification not attempted (the notifier is stopping): due at once."""
    sql.run("UPDATE notify_outbox SET next_attempt_ns = ? WHERE id = ? AND state = 'pending'", [now, delivery_id])


def outbox_pending(sql: Sql) -> int:
    return int(sql.rows("SELECT count(*) FROM notify_outbox WHERE state = 'pending'", [])[0][0])


@dataclass(frozen=True)
class NotificationRow:
    id: int
    channel_id: int
    rule_id: int
    issue_id: int
    event: str
    created_ns: int
    attempts: int
    state: str
    last_error: str
    done_ns: int | None


def notifications(sql: Sql, project: int, issue_id: int | None, limit: int) -> list[NotificationRow]:
    """Notifications of a project (or one issue), newest first: who has been told, or is being."""
    where, args = "project_id = ?", [project]
    if issue_id is not None:
        where += " AND issue_id = ?"
        args.append(issue_id)
    rows = sql.rows(
        "SELECT id, channel_id, rule_id, issue_id, event, created_ns, attempts, state, last_error, done_ns"
        f" FROM notify_outbox WHERE {where} ORDER BY id DESC LIMIT ?",
        [*args, limit],
    )
    return [NotificationRow(int(r[0]), int(r[1]), int(r[2]), int(r[3]), r[4], int(r[5]), int(r[6]), r[7], r[8],
                            None if r[9] is None else int(r[9])) for r in rows]  # fmt: skip


def github_issue(sql: Sql, channel_id: int, issue_id: int) -> int | None:
    rows = sql.rows(
        "SELECT number FROM notify_github_issues WHERE channel_id = ? AND issue_id = ?", [channel_id, issue_id]
    )
    return int(rows[0][0]) if rows else None


def remember_github_issue(sql: Sql, channel_id: int, issue_id: int, number: int) -> None:
    sql.run(
        "INSERT INTO notify_github_issues (channel_id, issue_id, number) VALUES (?, ?, ?)"
        " ON CONFLICT (channel_id, issue_id) DO UPDATE SET number = excluded.number",
        [channel_id, issue_id, number],
    )
