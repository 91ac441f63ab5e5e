"""``python -m bench.collector.breakdown JSON``: where one span's ingest time goes, in one process.

The same bodies as the ingest run, through the collector's own steps without HTTP or the writer
thread: protobuf parse, ``normalise`` (validation, search terms), ``store.write`` (the ingest
transaction: spans, terms, links, the graph's backlog) on a fresh store, batch by batch; then
the graph's derivation of all of them (``store.graph_sync()``), which the collector runs in a
background pass (kept from running during the writes here, so each step is timed alone). Both
this process's CPU time per span (steady under load; PostgreSQL's server not included) and wall
time (its round trips included, and whatever else the machine runs). Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.collector import bodies as bodies_file
from hoptrace.collector import store as store_module
from hoptrace.collector.otlp import Limits, normalise
from hoptrace.collector.store import open_store


def run(payload: dict[str, Any]) -> dict[str, Any]:
    loaded = bodies_file.load(Path(payload["bodies"]))
    per_batch = max(1, int(payload["bodies_per_batch"]))
    deadline = time.monotonic() + float(payload["budget_s"])
    pass_class = getattr(store_module, "GraphPass", None)
    if pass_class is not None:
        pass_class.wake = lambda self: None  # the derivation is timed on its own below
    store = open_store(payload["store"])
    store.migrate()
    limits = Limits()
    spans = 0
    seconds = dict.fromkeys(("parse", "normalise", "write", "graph"), 0.0)
    cpu = dict(seconds)

    def timed(key: str, started: tuple[float, float]) -> tuple[float, float]:
        now = time.perf_counter(), time.process_time()
        seconds[key] += now[0] - started[0]
        cpu[key] += now[1] - started[1]
        return now

    for i in range(0, len(loaded), per_batch):
        mark = time.perf_counter(), time.process_time()
        requests = [ExportTraceServiceRequest.FromString(body) for body, _ in loaded[i : i + per_batch]]
        mark = timed("parse", mark)
        # With each body, as the collector does: spans are stored as sent (``otlp.span_bytes``).
        batches = [normalise(r, limits, raw=body) for r, (body, _) in zip(requests, loaded[i : i + per_batch])]
        mark = timed("normalise", mark)
        store.write([(1, batch) for batch in batches])
        timed("write", mark)
        spans += sum(len(b.spans) for b in batches)
        if time.monotonic() > deadline or spans >= payload.get("max_spans", spans + 1):
            break
    graph_sync = getattr(store, "graph_sync", None)
    if graph_sync is not None:
        mark = time.perf_counter(), time.process_time()
        graph_sync()
        timed("graph", mark)
    store.close()
    return {"spans": spans, "seconds": seconds, "cpu_seconds": cpu, "graph_apart": graph_sync is not None}


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))), flush=True)
