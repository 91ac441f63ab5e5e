"""``python -m bench.collector.breakdown JSON``: where one span's ingest time goes, in one process.

The same bodies as the ingest run, through the collector's own steps without HTTP or the writer
thread: protobuf parse, ``normalise`` (validation, search terms), then ``store.write`` on two
fresh stores of the backend, batch by batch in turns — one as it is, one with the graph's share
(``write_graph``, when the store module calls it) replaced by a no-op. Both this process's CPU
time per span (steady under load; PostgreSQL's server not included) and wall time (its round
trips included, and whatever else the machine runs). Prints one JSON line.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.collector import bodies as bodies_file
from hoptrace.collector.otlp import Limits, normalise
from hoptrace.collector.store import open_store


def run(payload: dict[str, Any]) -> dict[str, Any]:
    loaded = bodies_file.load(Path(payload["bodies"]))
    per_batch = max(1, int(payload["bodies_per_batch"]))
    deadline = time.monotonic() + float(payload["budget_s"])
    backend = "sqlite" if payload["store"].startswith("sqlite:") else "postgres"
    module = importlib.import_module(f"hoptrace.collector.store.{backend}")
    real = getattr(module, "write_graph", None)
    stores = [open_store(payload["store"]), open_store(payload["store_without_graph"])]
    for store in stores:
        store.migrate()
    limits = Limits()
    spans = 0
    seconds = {"parse": 0.0, "normalise": 0.0, "write": 0.0, "write_without_graph": 0.0}
    cpu = dict.fromkeys(seconds, 0.0)
    for i in range(0, len(loaded), per_batch):
        group = loaded[i : i + per_batch]
        for n, store in enumerate(stores):
            t0, c0 = time.perf_counter(), time.process_time()
            requests = [ExportTraceServiceRequest.FromString(body) for body, _ in group]
            t1, c1 = time.perf_counter(), time.process_time()
            batches = [normalise(request, limits) for request in requests]
            t2, c2 = time.perf_counter(), time.process_time()
            if real is not None:
                setattr(module, "write_graph", real if n == 0 else (lambda sql, items: None))  # noqa: B010
            store.write([(1, batch) for batch in batches])
            t3, c3 = time.perf_counter(), time.process_time()
            if n == 0:
                for key, wall, used in (("parse", t1 - t0, c1 - c0), ("normalise", t2 - t1, c2 - c1),
                                        ("write", t3 - t2, c3 - c2)):  # fmt: skip
                    seconds[key] += wall
                    cpu[key] += used
                spans += sum(len(b.spans) for b in batches)
            else:
                seconds["write_without_graph"] += t3 - t2
                cpu["write_without_graph"] += c3 - c2
        if time.monotonic() > deadline:
            break
    for store in stores:
        store.close()
    return {"spans": spans, "seconds": seconds, "cpu_seconds": cpu, "graph_patched": real is not None}


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))), flush=True)
