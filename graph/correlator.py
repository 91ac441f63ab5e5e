"""Everything the graph derives from arriving spans, in memory: keys, hops, rollups, membership.

The stores do the same work in SQL, durably (pending keys in a table, membership in a table);
this class is the reference they follow, used by the unit tests and the benchmark. Both go
through ``derive`` for what one batch says on its own, then match keys against what came before.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from dataclasses import dataclass, field
from marshal import dumps, loads

from .hops import CONSUMER_SIDE, PRODUCER_SIDE, WINDOWED, Hop, HopEnd, HopKey, choose, delivery, keys, pair, strongest
from .naming import view
from .rollup import Rollups
from .spans import GraphSpan
from .transactions import TraceFacts, Transaction, TransactionIndex, summarise


@dataclass
class Derived:
    """What one batch of spans says on its own, before matching against stored keys."""

    keys: list[HopKey] = field(default_factory=list)
    rollups: Rollups = field(default_factory=Rollups)
    facts: dict[bytes, TraceFacts] = field(default_factory=dict)
    skipped: int = 0  # spans the graph could not read (kept as spans, left off the graph)


def derive(spans: Iterable[GraphSpan]) -> Derived:
    """Keys, rollups and per-trace facts of a batch.

    A span the graph cannot make sense of is skipped, never raised: ingest must not stall on
    one odd span from some SDK (it is still stored and searchable).
    """
    out = Derived()
    for span in spans:
        try:
            v = view(span)
            span_keys = keys(span, v)
        except Exception:
            out.skipped += 1
            continue
        out.keys.extend(span_keys)
        out.rollups.add_span(span, v)
        facts = out.facts.get(span.trace_id)
        if facts is None:
            facts = out.facts[span.trace_id] = TraceFacts()
        facts.add(span, v, span_keys)
    return out


def match_key(new: HopKey, others: Iterable[HopKey], consumer_taken: bool = False) -> list[Hop]:
    """Hops a new key makes with stored keys of the same string and the opposite side.

    ``consumer_taken``: the new key is a windowed consumer key that already has its producer.
    Windowed producer keys skip consumers already joined along that key (the caller filters).
    """
    if new.side == CONSUMER_SIDE:
        producers = [o.end for o in others if o.side == PRODUCER_SIDE]
        if new.windowed:
            if consumer_taken:
                return []
            best = choose(new.end, new.via, producers)
            producers = [best] if best is not None else []
        found = [pair(p, new.end, new.via) for p in producers]
    else:
        found = [pair(new.end, o.end, new.via) for o in others if o.side == CONSUMER_SIDE]
    return [h for h in found if h is not None]


class Correlator:
    """Incremental correlation in memory (see the module docstring).

    What it keeps per span and per trace (keys, facts, hops, what was joined) lives in dicts of
    bytes (``marshal``'s encoding of plain tuples), which the cyclic garbage collector never
    tracks: with a million named tuples, dataclasses or sets kept, every full collection walked
    them all, and collections took longer than correlating (21 s of 56 s at a million spans).
    """

    def __init__(self) -> None:
        self._keys: dict[str, bytes] = {}  # key -> its rows so far: (side, via, *HopEnd) each
        self._taken: dict[bytes, None] = {}  # windowed (key, consumer span) already joined
        self._hops: dict[int, bytes] = {}  # in the order found
        self.rollups = Rollups()
        self._facts: dict[bytes, bytes] = {}  # trace -> ``TraceFacts.packed``
        self.index = TransactionIndex()
        self._deliveries: dict[bytes, None] = {}  # ``delivery(hop)`` of every hop kept

    @property
    def hops(self) -> list[Hop]:
        """Every hop so far, in the order found."""
        return [Hop._make(loads(h)) for h in self._hops.values()]

    def facts(self, trace_id: bytes) -> TraceFacts:
        """What is known of one trace (empty facts for a trace never seen)."""
        packed = self._facts.get(trace_id)
        return TraceFacts() if packed is None else TraceFacts.unpacked(loads(packed))

    def add(self, spans: Iterable[GraphSpan]) -> list[Hop]:
        """Take a batch of spans (any order, any time); the new hops it made.

        The cyclic garbage collector is paused meanwhile: a batch allocates some ten objects per
        span and makes no reference cycles (what it keeps is bytes), so collections set off by
        those allocations only walked them, and the caller's own objects, for nothing (a fifth
        of the time). Reference counting frees them as usual; collections resume after it.
        """
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            return self._add(spans)
        finally:
            if paused:
                gc.enable()

    def _add(self, spans: Iterable[GraphSpan]) -> list[Hop]:
        known_facts = self._facts
        fresh = []
        thawed: dict[bytes, TraceFacts] = {}  # facts of traces seen before, read once per batch
        for s in spans:
            packed_facts = known_facts.get(s.trace_id)
            if packed_facts is None:
                fresh.append(s)
                continue
            facts = thawed.get(s.trace_id)
            if facts is None:
                facts = thawed[s.trace_id] = TraceFacts.unpacked(loads(packed_facts))
            if not facts.counted(s):  # a batch sent twice is counted once
                fresh.append(s)
        derived = derive(fresh)
        self.rollups.merge(derived.rollups)
        see_trace = self.index.see_trace
        for trace_id, facts in derived.facts.items():
            known = thawed.get(trace_id)
            if known is not None:
                facts = known.merge(facts)
            known_facts[trace_id] = dumps(facts.packed())
            see_trace(trace_id)
        found: list[Hop] = []
        by_key, taken = self._keys, self._taken
        for key in derived.keys:
            name = key.key
            stored = by_key.get(name)
            row = (key.side, key.via, *key.end)
            if stored is None:
                by_key[name] = dumps((row,))
                continue  # the first of its key: nothing to match yet
            rows = loads(stored)
            by_key[name] = dumps((*rows, row))
            others = [HopKey(name, r[0], r[1], HopEnd._make(r[2:])) for r in rows]
            windowed = key.via in WINDOWED
            if windowed and key.side == PRODUCER_SIDE:
                others = [o for o in others if dumps((name, o.end.span_id)) not in taken]
            hops = match_key(key, others, windowed and dumps((name, key.end.span_id)) in taken)
            if windowed:
                taken.update((dumps((name, h.to_span)), None) for h in hops)
            found.extend(hops)
        deliveries = self._deliveries
        new = [h for h in strongest(found) if dumps(delivery(h)) not in deliveries]
        for hop in new:
            deliveries[dumps(delivery(hop))] = None
            self._hops[len(self._hops)] = dumps(tuple(hop))
            self.rollups.add_hop(hop)
            self.index.add_hop(hop)
        return new

    def transactions(self) -> list[Transaction]:
        """Every transaction, oldest first."""
        leaving: dict[bytes, list[Hop]] = {}
        for hop in self.hops:
            leaving.setdefault(hop.from_trace, []).append(hop)
        out = []
        for root in self.index.members:
            members = self.index.traces_of(root)
            facts = {t: self.facts(t) for t in members}
            out.append(summarise(root, facts, [h for t in members for h in leaving.get(t, ())]))
        return sorted(out, key=lambda t: (t.start_ns, t.id))

    def transaction_of(self, trace_id: bytes) -> list[Transaction]:
        """The transactions a trace belongs to."""
        return [t for t in self.transactions() if trace_id.hex() in t.trace_ids]
