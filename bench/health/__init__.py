"""``python -m bench.health``: what function health rollups add to the issue pass.

The issue pass counts error spans into issues; since function health (issue 9, item 2) it also
reads every invocation span (SERVER/CONSUMER), queued at ingest beside the error spans, and
folds it into per-minute ``function_health`` rows. This measures that cost in one run, ABBA on
fresh SQLite stores, with the realistic mix of ``hoptrace.collector.populate`` (every 20th
SERVER span failed):

- without: only error spans queued, no health fold (the issue pass as it was before);
- with: as shipped.

Figures: CPU time (``time.process_time``: one process, no threads at work, so a loaded machine
disturbs it far less than throughput) per span written through ``store.write`` (ingest's own
write path, queue rows included) and per span the issue pass drains (prepare + apply until the
queue is empty), and write + pass together, with ratios with/without. Printed with the load
average; never an assertion.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from bench.measure import median, progress
from hoptrace.collector import health
from hoptrace.collector.otlp import Limits, normalise
from hoptrace.collector.populate import SpanMix
from hoptrace.collector.store import issues_sql as db
from hoptrace.collector.store import open_store

ERROR_EVERY = 20


@contextmanager
def without_health() -> Iterator[None]:
    kinds, fold = db._INVOCATION_KINDS, health.fold
    db._INVOCATION_KINDS = ()  # type: ignore[assignment]
    health.fold = lambda *_a, **_k: None  # type: ignore[assignment]
    try:
        yield
    finally:
        db._INVOCATION_KINDS, health.fold = kinds, fold  # type: ignore[assignment]


def run(spans: int, with_health: bool) -> tuple[float, float, int]:
    """(write CPU µs per span, issue pass CPU µs per span, spans queued) on a fresh store."""
    mix = SpanMix.for_spans(spans, seed=7, days=0.05)
    limits = Limits(max_spans=20_000)
    batches = []
    for body, _ in mix.requests(0, mix.traces, 2000):
        request = ExportTraceServiceRequest.FromString(body)
        servers = [s for r in request.resource_spans for sc in r.scope_spans for s in sc.spans if s.kind == 2]
        for span in servers[::ERROR_EVERY]:  # every 20th SERVER span failed
            span.status.code = Status.STATUS_CODE_ERROR
        batches.append(normalise(request, limits, now_ns=mix.end_ns + 10**9))
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{os.path.join(tmp, 'h.db')}")
        store.migrate()
        project = store.project("default")
        assert project is not None
        context = without_health() if not with_health else _nothing()
        with context:
            started = time.process_time()
            for batch in batches:
                store.write([(project.id, batch)])
            wrote = time.process_time() - started
            queued = store.run_read(db.queue_size)
            started = time.process_time()
            while True:
                prepared = store.run_read(db.prepare)
                if prepared is None:
                    break
                store.run_write(partial(db.apply, prepared=prepared))
            drained = time.process_time() - started
        store.close()
    total = sum(len(b.spans) for b in batches)
    return wrote / total * 1e6, drained / total * 1e6, queued


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.health")
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=1, help="ABBA rounds")
    args = parser.parse_args()
    results: dict[bool, list[tuple[float, float, int]]] = {True: [], False: []}
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for variant in (False, True, True, False):
            progress(f"{'with' if variant else 'without'} health, {args.spans} spans")
            results[variant].append(run(args.spans, variant))
            load.append(os.getloadavg()[0])
    w, wo = results[True], results[False]

    def med(rows: list[tuple[float, float, int]], i: int) -> float:
        return median([r[i] for r in rows]) if i < 2 else median([r[0] + r[1] for r in rows])

    print(f"spans {args.spans} x {len(w)} runs per variant, load average {min(load):.1f}-{max(load):.1f}")
    print(f"queued ids: without {wo[0][2]}, with {w[0][2]}")
    for i, what in enumerate(("write", "issue pass", "write + issue pass")):
        print(f"{what} CPU µs/span: without {med(wo, i):.1f}, with {med(w, i):.1f}, ratio {med(w, i) / med(wo, i):.2f}")

if __name__ == "__main__":
    main()
