"""The service map as a networkx graph: built from merged rollups, exported as DESIGN §7's JSON.

Layout hints: ``layer`` is the distance from the nearest entry node (a node nothing calls), so
a front end can draw entry → functions → resources from left to right.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import networkx as nx  # type: ignore[import-untyped]

from .naming import DELIVER, PUBLISH, Node
from .rollup import EdgeKey, Rollup

ASYNC_KINDS = frozenset({PUBLISH, DELIVER})
Json = dict[str, Any]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _metrics(rollup: Rollup, dwell: bool) -> Json:
    out: Json = {
        "count": rollup.count,
        "errors": rollup.errors,
        "throttles": rollup.throttles,
        "p50_ms": _ms(rollup.latency.quantile(0.5)),
        "p95_ms": _ms(rollup.latency.quantile(0.95)),
        "p99_ms": _ms(rollup.latency.quantile(0.99)),
        "health": rollup.health(),
    }
    if dwell:
        out["dwell_p50_ms"] = _ms(rollup.dwell.quantile(0.5))
        out["dwell_p95_ms"] = _ms(rollup.dwell.quantile(0.95))
        out["dwell_count"] = rollup.dwell.count
    return out


class ServiceMap:
    """Nodes and edges of one window; each node and edge carries its merged ``Rollup``."""

    def __init__(self, nodes: Mapping[str, Rollup], edges: Mapping[EdgeKey, Rollup]) -> None:
        self.graph = nx.MultiDiGraph()
        for (source, target, kind), rollup in edges.items():
            for node_id in (source, target):
                if node_id not in self.graph:
                    self.graph.add_node(node_id, rollup=None)
            self.graph.add_edge(source, target, key=kind, rollup=rollup)
        for node_id, rollup in nodes.items():
            if node_id not in self.graph:
                self.graph.add_node(node_id)
            self.graph.nodes[node_id]["rollup"] = rollup

    def node_rollup(self, node_id: str) -> Rollup:
        """A function's own invocations; for a resource, the merge of the calls that reach it; for
        an entry (an API route, a schedule, clients), the merge of what it sent on."""
        own: Rollup | None = self.graph.nodes[node_id].get("rollup")
        if own is not None:
            return own
        merged = Rollup()
        edges = self.graph.in_edges(node_id, data=True) or self.graph.out_edges(node_id, data=True)
        for _, _, data in edges:
            merged.merge(data["rollup"])
        return merged

    def layers(self) -> dict[str, int]:
        """Distance from the nearest entry node; nodes only on cycles count from 0."""
        entries = [n for n in self.graph if self.graph.in_degree(n) == 0]
        found = nx.multi_source_dijkstra_path_length(self.graph, entries) if entries else {}
        layer = {n: int(d) for n, d in found.items()}
        return {n: layer.get(n, 0) for n in self.graph}

    def upstream(self, node_id: str) -> set[str]:
        """Every node from which ``node_id`` can be reached."""
        return set(nx.ancestors(self.graph, node_id)) if node_id in self.graph else set()

    def downstream(self, node_id: str) -> set[str]:
        """Every node reachable from ``node_id``."""
        return set(nx.descendants(self.graph, node_id)) if node_id in self.graph else set()

    def focus(self, node_id: str, direction: str = "both") -> ServiceMap:
        """The map around one node: it and what is upstream, downstream or both of it."""
        keep = {node_id} if node_id in self.graph else set()
        if keep and direction in ("upstream", "both"):
            keep |= self.upstream(node_id)
        if keep and direction in ("downstream", "both"):
            keep |= self.downstream(node_id)
        focused = ServiceMap({}, {})
        focused.graph = self.graph.subgraph(keep).copy()
        return focused

    def to_json(self) -> Json:
        layers = self.layers()
        nodes = []
        for node_id in sorted(self.graph):
            node = Node.parse(node_id)
            entry = {"id": node_id, "kind": node.kind, "name": node.name, "layer": layers[node_id]}
            rollup = self.node_rollup(node_id)
            entry.update(_metrics(rollup, dwell=False))
            if node.kind == "function":
                entry["cold_starts"] = rollup.cold_starts
                entry["timeouts"] = rollup.timeouts
            nodes.append(entry)
        edges = []
        for source, target, kind, data in sorted(self.graph.edges(keys=True, data=True), key=lambda e: e[:3]):
            edge: Json = {"id": f"{source}|{target}|{kind}", "source": source, "target": target, "kind": kind}
            edge.update(_metrics(data["rollup"], dwell=kind in ASYNC_KINDS))
            edges.append(edge)
        return {"nodes": nodes, "edges": edges}


_COMPARED = ("count", "errors", "throttles", "p50_ms", "p95_ms", "p99_ms", "dwell_p50_ms", "dwell_p95_ms")


def compare(current: Json, baseline: Json) -> Json:
    """``current`` with, per node and edge, ``delta`` against ``baseline`` and ``status``.

    ``status`` is ``new`` (absent from the baseline), ``gone`` (only in the baseline; listed
    with zero counts) or ``same``.
    """
    out: Json = {}
    for part in ("nodes", "edges"):
        before = {item["id"]: item for item in baseline[part]}
        now = {item["id"]: item for item in current[part]}
        merged = []
        for item_id, item in now.items():
            old = before.get(item_id)
            entry = dict(item)
            entry["status"] = "new" if old is None else "same"
            entry["delta"] = {k: _delta(item.get(k), (old or {}).get(k)) for k in _COMPARED if k in item}
            merged.append(entry)
        for item_id, old in before.items():
            if item_id not in now:
                entry = {k: v for k, v in old.items() if k not in _COMPARED and k != "health"}
                entry.update({"count": 0, "errors": 0, "throttles": 0, "status": "gone"})
                entry["delta"] = {k: _delta(0 if k in ("count", "errors", "throttles") else None, old.get(k))
                                  for k in _COMPARED if k in old}  # fmt: skip
                merged.append(entry)
        out[part] = sorted(merged, key=lambda e: e["id"])
    return out


def _delta(now: Any, before: Any) -> float | None:
    if now is None and before is None:
        return None
    return round(float(now or 0) - float(before or 0), 3)
