"""Per-minute rollups of nodes and edges: counts, errors, throttles, health shares, sketches.

Any window of the map is the merge of its minutes; nothing here ever looks at a span twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import naming
from .hops import Hop
from .sketch import LatencySketch, bucket_of
from .spans import STATUS_ERROR, GraphSpan

MINUTE_NS = 60 * 10**9

EdgeKey = tuple[str, str, str]  # (source node id, target node id, kind)


def minute_of(ns: int) -> int:
    """Minutes since the epoch: the key of a rollup row."""
    return ns // MINUTE_NS


@dataclass
class Rollup:
    """What one node or edge did in some minutes."""

    count: int = 0
    errors: int = 0
    throttles: int = 0
    ok: int = 0
    client_errors: int = 0  # 4xx
    faults: int = 0  # 5xx
    latency: LatencySketch = field(default_factory=LatencySketch)
    dwell: LatencySketch = field(default_factory=LatencySketch)
    cold_starts: int = 0  # function nodes: invocations that were a cold start (faas.coldstart)
    timeouts: int = 0  # function nodes: invocations the watchdog ended (hoptrace.faas.timeout)

    def add_span(self, span: GraphSpan, n: int = 1, colour: str | None = None) -> None:
        """Count the span ``n`` times (a batch invocation stands for each of its messages)."""
        self.add(bucket_of(span.duration_ms), n, colour or naming.health(span), span.is_error)

    def add(self, bucket: int | None, n: int, colour: str, error: bool) -> None:
        """Count a span of latency bucket ``bucket`` (``sketch.bucket_of``) ``n`` times."""
        self.count += n
        if error:
            self.errors += n
        if colour == "ok":
            self.ok += n
        elif colour == "throttled":
            self.throttles += n
        elif colour == "4xx":
            self.client_errors += n
        elif colour == "5xx":
            self.faults += n
        else:
            self.ok += n
        self.latency.add_bucket(bucket, n)

    def merge(self, other: Rollup) -> Rollup:
        """Add ``other`` into this rollup (in place) and return it."""
        self.count += other.count
        self.errors += other.errors
        self.throttles += other.throttles
        self.ok += other.ok
        self.client_errors += other.client_errors
        self.faults += other.faults
        self.latency.merge(other.latency)
        self.dwell.merge(other.dwell)
        self.cold_starts += other.cold_starts
        self.timeouts += other.timeouts
        return self

    def counters(self) -> tuple[int, int, int, int, int, int]:
        """The counters in storage order: count, errors, throttles, ok, 4xx, 5xx."""
        return self.count, self.errors, self.throttles, self.ok, self.client_errors, self.faults

    @classmethod
    def from_row(
        cls, counters: tuple[int, ...], latency: bytes | None, dwell: bytes | None, cold_starts: int = 0,
        timeouts: int = 0,
    ) -> Rollup:  # fmt: skip
        count, errors, throttles, ok, client_errors, faults = (int(c) for c in counters)
        return cls(
            count, errors, throttles, ok, client_errors, faults,
            LatencySketch.from_bytes(latency) if latency else LatencySketch(),
            LatencySketch.from_bytes(dwell) if dwell else LatencySketch(), int(cold_starts), int(timeouts),
        )  # fmt: skip

    def health(self) -> dict[str, float]:
        """Shares of ok / 4xx / 5xx / throttled, as X-Ray colours a node."""
        total = self.ok + self.client_errors + self.faults + self.throttles
        if not total:
            return {"ok": 0.0, "4xx": 0.0, "5xx": 0.0, "throttled": 0.0}
        return {
            "ok": self.ok / total,
            "4xx": self.client_errors / total,
            "5xx": self.faults / total,
            "throttled": self.throttles / total,
        }


@dataclass
class Rollups:
    """Rollups keyed by minute: nodes by node id, edges by (source, target, kind)."""

    nodes: dict[tuple[int, str], Rollup] = field(default_factory=dict)
    edges: dict[tuple[int, str, str, str], Rollup] = field(default_factory=dict)

    def add_span(self, span: GraphSpan, v: naming.View | None = None) -> None:
        v = v or naming.view(span)
        start = span.start_ns
        minute = start // MINUTE_NS
        bucket = bucket_of(max(0, span.end_ns - start) / 1e6)  # once for the node and every edge
        colour, error = v.health, span.status == STATUS_ERROR
        if v.invocation:
            node_key = (minute, v.node_id)
            rollup = self.nodes.get(node_key)
            if rollup is None:
                rollup = self.nodes[node_key] = Rollup()
            rollup.add(bucket, 1, colour, error)
            attrs = span.attributes
            if attrs.get("faas.coldstart") is True:
                rollup.cold_starts += 1
            if attrs.get("hoptrace.faas.timeout") is True:
                rollup.timeouts += 1
        edges = self.edges
        for source, target, kind, weight in v.edge_keys:
            key = (minute, source, target, kind)
            rollup = edges.get(key)
            if rollup is None:
                rollup = edges[key] = Rollup()
            rollup.add(bucket, weight, colour, error)

    def add_hop(self, hop: Hop) -> None:
        """Queue waiting time: counted on the consumer's deliver edge, in the consumer's minute; and
        a topic's delivery to a subscribed queue (``Hop.relay``), counted once per hop, without a
        latency (SNS reports none: the whole wait is the queue edge's dwell)."""
        if hop.relay:
            topic, _, queue = hop.relay.partition("|")
            relayed = self.edges.setdefault((minute_of(hop.start_ns), topic, queue, naming.DELIVER), Rollup())
            relayed.count += 1
            relayed.ok += 1
        if not hop.edge or hop.dwell_ms is None:
            return
        source, _, target = hop.edge.partition("|")
        key = (minute_of(hop.start_ns), source, target, naming.DELIVER)
        self.edges.setdefault(key, Rollup()).dwell.add(hop.dwell_ms)

    def merge(self, other: Rollups) -> Rollups:
        for nk, rollup in other.nodes.items():
            self.nodes.setdefault(nk, Rollup()).merge(rollup)
        for ek, rollup in other.edges.items():
            self.edges.setdefault(ek, Rollup()).merge(rollup)
        return self

    def window(self, start_minute: int, end_minute: int) -> tuple[dict[str, Rollup], dict[EdgeKey, Rollup]]:
        """Minutes in [start, end) merged into one rollup per node and per edge."""
        nodes: dict[str, Rollup] = {}
        edges: dict[EdgeKey, Rollup] = {}
        for (minute, node), rollup in self.nodes.items():
            if start_minute <= minute < end_minute:
                nodes.setdefault(node, Rollup()).merge(rollup)
        for (minute, source, target, kind), rollup in self.edges.items():
            if start_minute <= minute < end_minute:
                edges.setdefault((source, target, kind), Rollup()).merge(rollup)
        return nodes, edges
