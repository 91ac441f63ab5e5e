"""Top-N with trends: the slowest, most called and most failing functions, API routes and
transaction entries of a window, each against the same window one week earlier.

Functions and routes come from the graph's rollups (a window is a merge of minutes, and of
hours past the first ones): a function is its map node (``function:NAME``, ``service:NAME``),
an API route its ``api:`` node's calls into the function behind it (the sync edges out of it).
Transaction entries (what started a transaction: a route, a schedule, a queue…) are read from
the transactions index of the window, end-to-end durations included: a transaction's duration
grows as late hops arrive, so it is not rolled up per minute; at most ``MAX_TRANSACTIONS`` are
read per window, newest first, and ``truncated`` says when a window held more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hoptrace.graph.rollup import Rollup
from hoptrace.graph.sketch import LatencySketch

WEEK_NS = 7 * 24 * 3600 * 10**9
MAX_TRANSACTIONS = 50_000
GROUPS = ("functions", "routes", "entries")
RANKINGS = ("slowest", "most_called", "most_failing")


@dataclass
class Figures:
    """What one function, route or entry did in a window."""

    count: int = 0
    errors: int = 0
    latency: LatencySketch = field(default_factory=LatencySketch)

    @classmethod
    def of(cls, rollup: Rollup) -> Figures:
        return cls(rollup.count, rollup.errors, rollup.latency)

    def add(self, other: Figures) -> None:
        self.count += other.count
        self.errors += other.errors
        self.latency.merge(other.latency)

    def json(self) -> dict[str, Any]:
        p50, p95 = self.latency.quantile(0.5), self.latency.quantile(0.95)
        return {
            "count": self.count,
            "errors": self.errors,
            "error_rate": round(self.errors / self.count, 6) if self.count else 0.0,
            "p50_ms": None if p50 is None else round(p50, 3),
            "p95_ms": None if p95 is None else round(p95, 3),
        }


def functions_of(nodes: Mapping[str, Rollup]) -> dict[str, Figures]:
    """Function and service nodes of a map window, by name."""
    out: dict[str, Figures] = {}
    for node_id, rollup in nodes.items():
        kind, _, name = node_id.partition(":")
        if kind in ("function", "service") and rollup.count:
            out.setdefault(name, Figures()).add(Figures.of(rollup))
    return out


def routes_of(edges: Mapping[tuple[str, str, str], Rollup]) -> dict[str, Figures]:
    """API routes of a map window, by name: the calls out of each ``api:`` node."""
    out: dict[str, Figures] = {}
    for (source, _target, kind), rollup in edges.items():
        if source.startswith("api:") and kind == "sync" and rollup.count:
            out.setdefault(source[4:], Figures()).add(Figures.of(rollup))
    return out


def _change(now: float | None, before: float | None) -> float | None:
    """Relative change (0.25: up a quarter), None when there is nothing to compare with."""
    if now is None or not before:
        return None
    return round((now - before) / before, 4)


def ranked(now: Mapping[str, Figures], before: Mapping[str, Figures], limit: int) -> dict[str, list[dict[str, Any]]]:
    """The three rankings of one group, each item with the earlier window's figures and the change."""

    def item(name: str) -> dict[str, Any]:
        cur = now[name].json()
        prev = before.get(name, Figures()).json()
        return {
            "name": name, **cur, "previous": prev, "new": prev["count"] == 0,
            "change": {k: _change(cur[k], prev[k]) for k in ("count", "errors", "error_rate", "p95_ms")},
        }  # fmt: skip

    p95 = {name: f.latency.quantile(0.95) or 0.0 for name, f in now.items()}
    slowest = sorted(now, key=lambda n: (-p95[n], n))
    called = sorted(now, key=lambda n: (-now[n].count, n))
    failing = sorted((n for n in now if now[n].errors), key=lambda n: (-now[n].errors, n))
    return {
        "slowest": [item(n) for n in slowest[:limit]],
        "most_called": [item(n) for n in called[:limit]],
        "most_failing": [item(n) for n in failing[:limit]],
    }
