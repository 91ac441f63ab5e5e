"""Transactions (DESIGN §5): the entry trace plus every trace reachable from it along hops.

Membership is kept incrementally, one hop at a time (``plan_hop``): a trace that gains an
incoming cross-trace hop stops being an entry; it and everything reachable from it join every
transaction its producer's trace belongs to. Reachability follows hops forward only, so a batch
consumer that read messages of ten transactions belongs to all ten and never glues them together.

A transaction's summary is computed from per-trace ``TraceFacts`` (mergeable as spans of a trace
arrive in any order) and the hops among its traces, never from a rescan of spans.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from marshal import dumps, loads
from typing import Union, cast

from . import naming
from .hops import PRODUCER_SIDE, Hop, HopKey, keys
from .spans import CONSUMER, SERVER, STATUS_ERROR, GraphSpan

_JSON = json.JSONEncoder(separators=(",", ":"))  # json.dumps' own, without its per-call set-up
SEEN_CAP = 2000  # span ids remembered per trace for counting each span once (bounds the facts' size)
# A message sent along one of these expects a consumer; a DynamoDB write does not (no stream, maybe).
_SEND_VIA = frozenset({"message_id", "event_id", "sequence_number", "md5"})
_RECEIVE_COUNTS = ("hoptrace.messaging.receive_count", "hoptrace.faas.receive_count")


_SMALL = 16  # up to this many ids in a group of traces or in ``seen``: a tuple (see ``Group``)
# ``TraceFacts.packed``: start, end, services, resources, errors, cold starts, retries, sends, entry
# items, entry start, seen span ids (a tuple, or a frozenset past ``_SMALL``), failed consumers.
PackedFacts = tuple[
    int, int, tuple[str, ...], tuple[str, ...], int, int, int, tuple[str, ...], tuple[tuple[str, str], ...], int,
    Union[tuple[str, ...], frozenset[str]], tuple[str, ...],
]  # fmt: skip


@dataclass(frozen=True)
class MembershipChange:
    """What one new hop does to transaction membership."""

    add: tuple[tuple[bytes, bytes], ...]  # (transaction id, trace id)
    drop: bytes | None  # the transaction that no longer exists (its root became reachable)


def plan_hop(
    from_trace: bytes,
    to_trace: bytes,
    transactions_of_from: Iterable[bytes],
    reachable_from_to: Iterable[bytes],
    to_is_root: bool,
) -> MembershipChange:
    """Membership changes for a hop from ``from_trace`` to ``to_trace`` (see the module docstring).

    ``reachable_from_to`` includes ``to_trace`` itself. A cycle (``to_trace`` already reaches
    ``from_trace``) keeps ``to_trace``'s transaction, which would otherwise lose its root.
    """
    if from_trace == to_trace:
        return MembershipChange((), None)
    reach = set(reachable_from_to) | {to_trace}
    add = tuple((txn, t) for txn in sorted(set(transactions_of_from)) for t in sorted(reach))
    drop = to_trace if to_is_root and from_trace not in reach else None
    return MembershipChange(add, drop)


@dataclass
class TraceFacts:
    """What one trace contributes to the transactions it belongs to; merged as spans arrive."""

    start_ns: int = 0
    end_ns: int = 0
    services: set[str] = field(default_factory=set)
    resources: set[str] = field(default_factory=set)
    errors: int = 0
    cold_starts: int = 0
    retries: int = 0
    sends: set[str] = field(default_factory=set)  # hex ids of spans that sent a message
    entry: dict[str, str] = field(default_factory=dict)  # trigger, name, service of the root span
    entry_ns: int = 0
    # Hex ids of the spans counted so far (up to SEEN_CAP): a batch a client sent twice, after
    # losing our acknowledgement, is stored twice but counted once.
    seen: set[str] = field(default_factory=set)
    # Hex ids of receiving spans (SERVER/CONSUMER) that failed: a message whose every consumer
    # failed was not consumed (it is back in its queue, or in a dead-letter queue).
    failed: set[str] = field(default_factory=set)

    def counted(self, span: GraphSpan) -> bool:
        """Whether this span was already counted in these facts."""
        return span.span_id.hex() in self.seen

    @classmethod
    def of(cls, spans: Iterable[GraphSpan]) -> TraceFacts:
        facts = cls()
        for span in spans:
            facts.add(span)
        return facts

    def add(self, span: GraphSpan, v: naming.View | None = None, span_keys: list[HopKey] | None = None) -> None:
        v = v or naming.view(span)
        span_hex = span.span_id.hex()
        seen = self.seen
        if len(seen) < SEEN_CAP:
            seen.add(span_hex)
        start, end = span.start_ns, span.end_ns
        if not self.start_ns or start < self.start_ns:
            self.start_ns = start
        if end > self.end_ns:
            self.end_ns = end
        self.services.add(v.node.name)
        if v.resources:
            self.resources.update(v.resources)
        if span.status == STATUS_ERROR:
            self.errors += 1
            if span.kind in (SERVER, CONSUMER) and len(self.failed) < SEEN_CAP:
                self.failed.add(span_hex)
                if span.kind == CONSUMER and span.parent_span_id:
                    # A failed record fails the single-record invocation it ran in: SQS keeps the
                    # message although that invocation itself returned normally.
                    self.failed.add(span.parent_span_id.hex())
        attrs = span.attributes
        if attrs.get("faas.coldstart") is True:
            self.cold_starts += 1
        # Most spans carry no receive count: two reads, not two parses, tell so.
        if v.invocation and (
            attrs.get("hoptrace.faas.retry") is True
            or (
                span.values(_RECEIVE_COUNTS) != (None, None)
                and (
                    (span.number("hoptrace.messaging.receive_count") or 1) > 1
                    or (span.number("hoptrace.faas.receive_count") or 1) > 1
                )
            )
        ):
            self.retries += 1
        if v.sends_message:
            self.sends.add(span_hex)
        else:
            span_keys = keys(span, v) if span_keys is None else span_keys
            for k in span_keys:
                if k.side == PRODUCER_SIDE and k.via in _SEND_VIA:
                    self.sends.add(span_hex)
                    break
        if span.parent_span_id is None and (not self.entry or start < self.entry_ns):
            trigger, name, service = v.entry
            self.entry = {"trigger": trigger, "name": name, "service": service}
            self.entry_ns = start

    def merge(self, other: TraceFacts, counted: bool = True) -> TraceFacts:
        """Add ``other`` into these facts (in place) and return them; ``counted=False`` leaves out
        the span ids counted so far (a summary across traces never asks for them, and they are
        the largest part: up to SEEN_CAP per trace)."""
        if other.start_ns:
            self.start_ns = other.start_ns if not self.start_ns else min(self.start_ns, other.start_ns)
        self.end_ns = max(self.end_ns, other.end_ns)
        self.services |= other.services
        self.resources |= other.resources
        self.errors += other.errors
        self.cold_starts += other.cold_starts
        self.retries += other.retries
        self.sends |= other.sends
        if counted and len(self.seen) < SEEN_CAP:
            self.seen |= other.seen
        if other.failed and len(self.failed) < SEEN_CAP:
            self.failed |= other.failed
        if other.entry and (not self.entry or other.entry_ns < self.entry_ns):
            self.entry, self.entry_ns = dict(other.entry), other.entry_ns
        return self

    def to_json(self) -> str:
        return _JSON.encode(
            {
                "start_ns": self.start_ns, "end_ns": self.end_ns, "services": sorted(self.services),
                "resources": sorted(self.resources), "errors": self.errors, "cold_starts": self.cold_starts,
                "retries": self.retries, "sends": sorted(self.sends), "entry": self.entry, "entry_ns": self.entry_ns,
                "seen": sorted(self.seen), "failed": sorted(self.failed),
            }
        )  # fmt: skip

    def packed(self) -> PackedFacts:
        """These facts as one tuple of ids, numbers and strings: a million of them kept in memory
        (``Correlator``) are left alone by the cyclic garbage collector, a million sets are not."""
        seen = self.seen
        return (
            self.start_ns, self.end_ns, tuple(self.services), tuple(self.resources), self.errors, self.cold_starts,
            self.retries, tuple(self.sends), tuple(self.entry.items()), self.entry_ns,
            tuple(seen) if len(seen) <= _SMALL else frozenset(seen), tuple(self.failed),
        )  # fmt: skip

    @classmethod
    def unpacked(cls, p: PackedFacts) -> TraceFacts:
        """The facts ``packed`` made (new sets: the result may be merged into)."""
        return cls(
            p[0], p[1], set(p[2]), set(p[3]), p[4], p[5], p[6], set(p[7]), dict(p[8]), p[9], set(p[10]), set(p[11])
        )

    @classmethod
    def from_json(cls, text: str) -> TraceFacts:
        d = json.loads(text)
        return cls(
            int(d["start_ns"]), int(d["end_ns"]), set(d["services"]), set(d["resources"]), int(d["errors"]),
            int(d["cold_starts"]), int(d["retries"]), set(d["sends"]), dict(d["entry"]), int(d["entry_ns"]),
            set(d.get("seen", ())), set(d.get("failed", ())),
        )  # fmt: skip


@dataclass(frozen=True)
class Transaction:
    """One end-to-end transaction as the API returns it (DESIGN §7)."""

    id: str
    root_trace_id: str
    entry: Mapping[str, str]
    start_ns: int
    end_ns: int
    services: tuple[str, ...]
    resources: tuple[str, ...]
    hops: int
    errors: int
    cold_starts: int
    retries: int
    incomplete: bool
    trace_ids: tuple[str, ...]

    @property
    def duration_ms(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e6

    @property
    def status(self) -> str:
        return "error" if self.errors else "incomplete" if self.incomplete else "ok"


def summarise(root: bytes, facts: Mapping[bytes, TraceFacts], hops: Iterable[Hop]) -> Transaction:
    """The transaction rooted at ``root`` from its traces' facts and the hops among them."""
    members = set(facts)
    inner = [h for h in hops if h.from_trace in members and h.to_trace in members]
    total = TraceFacts()
    for trace_id in sorted(members):
        total.merge(facts[trace_id], counted=False)
    incomplete = bool(total.sends - _consumed(inner, total.failed))
    root_facts = facts.get(root, TraceFacts())
    others = sorted(t.hex() for t in members if t != root)
    return Transaction(
        id=root.hex(),
        root_trace_id=root.hex(),
        entry=root_facts.entry or {"trigger": "other", "name": "trace " + root.hex()[:8], "service": ""},
        start_ns=total.start_ns,
        end_ns=total.end_ns,
        services=tuple(sorted(total.services)),
        resources=tuple(sorted(total.resources)),
        hops=len(inner),
        errors=total.errors,
        cold_starts=total.cold_starts,
        retries=total.retries,
        incomplete=incomplete,
        trace_ids=(root.hex(), *others),
    )


def _consumed(hops: Iterable[Hop], failed: set[str]) -> set[str]:
    """Hex ids of the sends some consumer took without failing (a dead-lettered message: none).

    An attempt failed when any span that received it failed (its record, or the single-record
    invocation around that record). A batch invocation's link to a producer says only that the
    message was in the batch: it counts only when no record span of that message was joined.
    """
    bad = {(h.from_span, h.attempt) for h in hops if h.to_span.hex() in failed}
    consumed: set[str] = set()
    recorded: set[str] = set()
    linked: set[str] = set()
    for h in hops:
        if h.via == "link":
            if h.to_span.hex() not in failed:
                linked.add(h.from_span.hex())
        elif h.is_async or h.via == "parent":
            recorded.add(h.from_span.hex())
            if (h.from_span, h.attempt) not in bad:
                consumed.add(h.from_span.hex())
    return consumed | (linked - recorded)


# A group of traces: small ones as ``marshal`` bytes of a tuple (never tracked by the garbage
# collector), large ones (past ``_SMALL``) as a set.
Group = Union[bytes, set[bytes]]


def _items(group: Group | None) -> Collection[bytes]:
    if group is None:
        return ()
    return group if isinstance(group, set) else cast("tuple[bytes, ...]", loads(group))


def _with(group: Group | None, item: bytes) -> Group:
    """``group`` with ``item`` in it (a set is updated in place)."""
    if isinstance(group, set):
        group.add(item)
        return group
    items: tuple[bytes, ...] = loads(group) if group is not None else ()
    if item in items:
        return cast(bytes, group)
    return dumps((*items, item)) if len(items) < _SMALL else {*items, item}


def _without(group: Group, item: bytes) -> Group:
    if isinstance(group, set):
        group.discard(item)
        return group
    return dumps(tuple(g for g in loads(group) if g != item))


class TransactionIndex:
    """Membership in memory (tests, benchmarks): the same rules the stores apply in SQL.

    Groups of traces are kept as bytes until they grow past a few (see ``Group``): most traces
    belong to one transaction and hop to one or two others, and a million sets (or a dict of a
    million tuples) would be walked by every full garbage collection.
    """

    def __init__(self) -> None:
        self.members: dict[bytes, Group] = {}  # transaction -> traces
        self.of_trace: dict[bytes, Group] = {}  # trace -> transactions
        self.forward: dict[bytes, Group] = {}  # trace -> traces it has hops to

    def traces_of(self, transaction_id: bytes) -> Collection[bytes]:
        """The traces of a transaction (none for an unknown one)."""
        return _items(self.members.get(transaction_id))

    def see_trace(self, trace_id: bytes) -> None:
        """A trace with spans: an entry of its own until a hop reaches it."""
        if trace_id not in self.of_trace:
            self.members[trace_id] = self.of_trace[trace_id] = dumps((trace_id,))

    def reachable(self, start: bytes) -> set[bytes]:
        seen, todo = {start}, [start]
        forward = self.forward
        while todo:
            for nxt in _items(forward.get(todo.pop())):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    def add_hop(self, hop: Hop) -> None:
        a, b = hop.from_trace, hop.to_trace
        if a == b or b in _items(self.forward.get(a)):
            return
        self.see_trace(a)
        self.see_trace(b)
        self.forward[a] = _with(self.forward.get(a), b)
        members, of_trace = self.members, self.of_trace
        change = plan_hop(a, b, _items(of_trace[a]), self.reachable(b), b in members)
        for txn, trace in change.add:
            members[txn] = _with(members[txn], trace)
            of_trace[trace] = _with(of_trace[trace], txn)
        if change.drop is not None:
            for trace in _items(members.pop(change.drop)):
                of_trace[trace] = _without(of_trace[trace], change.drop)
