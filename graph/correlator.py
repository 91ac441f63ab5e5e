"""Everything the graph derives from arriving spans, in memory: keys, hops, rollups, membership.

The stores do the same work in SQL, durably (pending keys in a table, membership in a table);
this class is the reference they follow, used by the unit tests and the benchmark. Both go
through ``derive`` for what one batch says on its own, then match keys against what came before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .hops import CONSUMER_SIDE, PRODUCER_SIDE, Hop, HopEnd, HopKey, choose, delivery, keys, pair, strongest
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


_Packed = tuple[str, str, tuple[Any, ...]]


def _packed(key: HopKey) -> _Packed:
    return key.side, key.via, tuple(key.end)


def _unpacked(name: str, packed: _Packed) -> HopKey:
    return HopKey(name, packed[0], packed[1], HopEnd(*packed[2]))


class Correlator:
    """Incremental correlation in memory (see the module docstring)."""

    def __init__(self) -> None:
        # Keys kept as plain tuples of ids and numbers (``_packed``), which the cyclic garbage
        # collector stops walking; a million named tuples in lists it walks again and again
        # (a third of the time at a million spans).
        self.by_key: dict[str, tuple[_Packed, ...]] = {}
        self.taken: set[tuple[str, bytes]] = set()  # windowed (key, consumer span) already joined
        self.hops: list[Hop] = []
        self.rollups = Rollups()
        self.facts: dict[bytes, TraceFacts] = {}
        self.index = TransactionIndex()
        self._deliveries: set[tuple[bytes, bytes, bytes, int]] = set()

    def add(self, spans: Iterable[GraphSpan]) -> list[Hop]:
        """Take a batch of spans (any order, any time); the new hops it made."""
        empty = TraceFacts()
        derived = derive(s for s in spans if not self.facts.get(s.trace_id, empty).counted(s))
        self.rollups.merge(derived.rollups)
        for trace_id, facts in derived.facts.items():
            known = self.facts.get(trace_id)
            if known is None:
                self.facts[trace_id] = facts
            else:
                known.merge(facts)
            self.index.see_trace(trace_id)
        found: list[Hop] = []
        by_key = self.by_key
        for key in derived.keys:
            packed = by_key.get(key.key, ())
            by_key[key.key] = (*packed, _packed(key))
            if not packed:
                continue  # the first of its key: nothing to match yet
            others = tuple(_unpacked(key.key, p) for p in packed)
            if key.windowed and key.side == PRODUCER_SIDE:
                others = tuple(o for o in others if (key.key, o.end.span_id) not in self.taken)
            hops = match_key(key, others, (key.key, key.end.span_id) in self.taken)
            if key.windowed:
                self.taken.update((key.key, h.to_span) for h in hops)
            found.extend(hops)
        new = [h for h in strongest(found) if delivery(h) not in self._deliveries]
        for hop in new:
            self._deliveries.add(delivery(hop))
            self.hops.append(hop)
            self.rollups.add_hop(hop)
            self.index.add_hop(hop)
        return new

    def transactions(self) -> list[Transaction]:
        """Every transaction, oldest first."""
        out = []
        for root, members in self.index.members.items():
            facts = {t: self.facts.get(t, TraceFacts()) for t in members}
            out.append(summarise(root, facts, self.hops))
        return sorted(out, key=lambda t: (t.start_ns, t.id))

    def transaction_of(self, trace_id: bytes) -> list[Transaction]:
        """The transactions a trace belongs to."""
        return [t for t in self.transactions() if trace_id.hex() in t.trace_ids]
