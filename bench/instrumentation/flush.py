"""The end-of-invocation flush: what exporting an invocation's spans costs a handler.

A handler making 5 spans (the invocation span and 4 children) is invoked N times, alternating
with the same handler untraced (its children on a no-op tracer) as the baseline, in one worker
process per variant:

- ``hoptrace``: ``@hoptrace.lambda_handler`` in Lambda mode, exporting with its default OTLP/HTTP
  exporter; the flush is timed by wrapping ``State.flush`` of the running instance;
- ``otel``: OpenTelemetry's ``AwsLambdaInstrumentor`` with an SDK ``TracerProvider``,
  ``BatchSpanProcessor`` and the OTLP/HTTP exporter; its flush is ``TracerProvider.force_flush``.

Both export to the same endpoint: the loopback sink (``sink``), or the collector via ``--endpoint``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

from bench.measure import REPO_ROOT, Budget, ChildFailed, child_env, percentile, progress, run_json_child
from bench.report import Row, Section

from . import lambda_env
from .sink import fetch_stats

VARIANTS = ("hoptrace", "otel")
LABELS = {"hoptrace": "hoptrace", "otel": "OpenTelemetry"}
SPANS_PER_INVOCATION = 5
WARMUP = 20
FLUSH_P50_GOAL_MS = 2.0

Handler = Callable[[Any, Any], Any]

# AwsLambdaInstrumentor wraps the function named in _HANDLER as a module attribute: this one.
otel_target: Handler | None = None


def make_handler(tracer: Any) -> Handler:
    """The benchmark's function: four child spans of a little work each, under the invocation."""

    def handler(event: Any, context: Any) -> dict[str, Any]:
        total = 0
        for step in range(SPANS_PER_INVOCATION - 1):
            with tracer.start_as_current_span(f"step {step}") as span:
                span.set_attribute("bench.step", step)
                span.set_attribute("order.id", event["order_id"])
                total += sum(item["qty"] for item in event["items"])
        return {"statusCode": 200, "total": total}

    return handler


class _Timed:
    """Wraps a flush function and records how long each call took."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.last_ns = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter_ns()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.last_ns = time.perf_counter_ns() - start


@dataclass
class Variant:
    traced: Handler
    flush: _Timed  # the flush the Lambda wrapper waits for
    export: Callable[[], _Timed | None]  # the exporter's export(), once it exists
    settle: Callable[[], dict[str, Any]]  # untimed: wait for the last export, report what was sent


def _hoptrace_setup() -> Variant:
    from opentelemetry import trace

    import hoptrace

    state = hoptrace.init()
    probe = _Timed(state.flush)
    state.flush = probe  # type: ignore[method-assign]  # the instance's flush, called by the wrapper
    traced = hoptrace.lambda_handler(make_handler(trace.get_tracer("bench.flush")))

    def export_probe() -> _Timed | None:
        # Read-only look at hoptrace internals, to split the flush into export and hand-off.
        exporter = getattr(getattr(state.processor, "_worker", None), "_exporter", None)
        if exporter is None:
            return None
        timed = _Timed(exporter.export)
        exporter.export = timed
        return timed

    def settle() -> dict[str, Any]:
        hoptrace.flush(5000)
        return dict(hoptrace.stats())

    return Variant(traced, probe, export_probe, settle)


def _otel_setup() -> Variant:
    global otel_target
    import logging

    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.aws_lambda import AwsLambdaInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter = OTLPSpanExporter()
    export = _Timed(exporter.export)
    exporter.export = export  # type: ignore[method-assign]
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    probe = _Timed(provider.force_flush)
    provider.force_flush = probe  # type: ignore[method-assign]  # what the instrumentor calls
    logging.getLogger("opentelemetry.instrumentation.aws_lambda").setLevel(logging.ERROR)  # no MeterProvider
    otel_target = make_handler(provider.get_tracer("bench.flush"))
    AwsLambdaInstrumentor().instrument(tracer_provider=provider)

    def settle() -> dict[str, Any]:
        return {"flushed": bool(probe.fn(5000))}

    return Variant(otel_target, probe, lambda: export, settle)


def worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run in a fresh process: alternate bare and traced invocations, time each, its flush and export."""
    from opentelemetry.trace import NoOpTracer

    variant = _hoptrace_setup() if cfg["variant"] == "hoptrace" else _otel_setup()
    bare = make_handler(NoOpTracer())
    name = f"bench-flush-{cfg['variant']}"
    event = lambda_env.EVENT
    samples: dict[str, list[int]] = {"bare_ns": [], "traced_ns": [], "flush_ns": [], "export_ns": []}
    export: _Timed | None = None
    for i in range(WARMUP + cfg["invocations"]):
        if export is None and i >= WARMUP // 2:
            export = variant.export()
        # Alternate which goes first, so neither always runs on the other's warm caches.
        for kind in ("bare", "traced") if i % 2 == 0 else ("traced", "bare"):
            context = lambda_env.LambdaContext(name)
            if export is not None:
                export.last_ns = 0
            start = time.perf_counter_ns()
            (bare if kind == "bare" else variant.traced)(event, context)
            elapsed = time.perf_counter_ns() - start
            if i < WARMUP:
                continue
            if kind == "bare":
                samples["bare_ns"].append(elapsed)
                continue
            samples["traced_ns"].append(elapsed)
            samples["flush_ns"].append(variant.flush.last_ns)
            if export is not None and export.last_ns:
                samples["export_ns"].append(export.last_ns)
    return {**samples, "settle": variant.settle(), "invocations": WARMUP + cfg["invocations"]}


def worker_env(variant: str, endpoint: str) -> dict[str, str]:
    env = child_env(lambda_env.environment(f"bench-flush-{variant}", f"{__name__}.otel_target"))
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    return env


def run_worker(variant: str, endpoint: str, invocations: int) -> dict[str, Any]:
    cfg = {"variant": variant, "invocations": invocations}
    args = [sys.executable, "-m", "bench.instrumentation.worker", "flush", json.dumps(cfg)]
    result, _ = run_json_child(args, env=worker_env(variant, endpoint), cwd=REPO_ROOT, timeout_s=120)
    return result


# Two workers per variant in an ABBA order, so a drifting endpoint (a collector's store growing,
# the machine warming up) weighs on both alike.
ORDER = ("hoptrace", "otel", "otel", "hoptrace")


def run(endpoint: str, invocations: int, budget: Budget, warnings: list[str]) -> Section:
    results: dict[str, dict[str, Any]] = {}
    before = fetch_stats(endpoint)
    share = max(1, invocations // 2)
    for i, variant in enumerate(ORDER):
        if budget.expired() and len(results) == len(VARIANTS):
            warnings.append(f"flush: time budget spent after {i} of {len(ORDER)} workers")
            break
        progress(f"flush: {LABELS[variant]}, {share} invocations ({i + 1}/{len(ORDER)})")
        try:
            results[variant] = _merge(results.get(variant), run_worker(variant, endpoint, share))
        except ChildFailed as exc:
            warnings.append(f"FAILED flush {variant}: {exc}")
            return Section("End-of-invocation flush", "failed", notes=[str(exc)])
    after = fetch_stats(endpoint)
    _check_delivery(results, before, after, warnings)
    return _section(results, sum(len(r["traced_ns"]) for r in results.values()) // len(results), endpoint)


def _merge(into: dict[str, Any] | None, result: dict[str, Any]) -> dict[str, Any]:
    """Two workers' results as one: samples appended, counters added, flags and-ed."""
    if into is None:
        return result
    merged = {k: into[k] + result[k] for k in ("bare_ns", "traced_ns", "flush_ns", "export_ns", "invocations")}
    settle: dict[str, Any] = {}
    for key in set(into["settle"]) | set(result["settle"]):
        a, b = into["settle"].get(key), result["settle"].get(key)
        settle[key] = (bool(a) and bool(b)) if isinstance(a or b, bool) else (a or 0) + (b or 0)
    merged["settle"] = settle
    return merged


def _check_delivery(
    results: dict[str, dict[str, Any]], before: dict[str, Any] | None, after: dict[str, Any] | None, warnings: list[str]
) -> None:
    hop = results.get("hoptrace")
    if hop is not None:
        stats = hop["settle"]
        expected = hop["invocations"] * SPANS_PER_INVOCATION
        errors = {k: v for k, v in stats.items() if k.startswith("internal_errors")}
        if errors:
            warnings.append(f"flush: hoptrace counted internal errors {errors}")
        if stats.get("spans_exported", 0) < expected:
            warnings.append(
                f"flush: hoptrace exported {stats.get('spans_exported', 0)} of {expected} spans "
                f"(dropped {stats.get('spans_dropped', 0)}, budget exceeded {stats.get('flush_budget_exceeded', 0)}): "
                "the flush figures are of a failing export"
            )
    otel = results.get("otel")
    if otel is not None and not otel["settle"].get("flushed"):
        warnings.append("flush: OpenTelemetry's final force_flush failed")
    if before is not None and after is not None:
        got = {k: v - before.get("by_service", {}).get(k, 0) for k, v in after.get("by_service", {}).items()}
        for variant, result in results.items():
            expected = result["invocations"] * SPANS_PER_INVOCATION
            received = got.get(f"bench-flush-{variant}", 0)
            if received < expected:
                warnings.append(f"flush: the sink received {received} of {expected} spans from {LABELS[variant]}")


def _ms(values: list[int], q: float) -> float:
    return percentile([v / 1e6 for v in values], q)


def _section(results: dict[str, dict[str, Any]], invocations: int, endpoint: str) -> Section:
    section = Section(
        "End-of-invocation flush",
        f"{invocations} invocations per variant (two workers each, ABBA order) of a handler making "
        f"{SPANS_PER_INVOCATION} spans, each beside the same handler untraced (alternating, after {WARMUP} warm-ups "
        f"per worker), exporting OTLP/HTTP to {endpoint}. "
        "`flush` is the time the wrapper waits for the export.",
    )
    for variant, result in results.items():
        label = LABELS[variant]
        for q in (50.0, 95.0):
            section.rows.append(
                Row(
                    f"invocation p{q:.0f}: {label}",
                    "ms",
                    f"untraced handler p{q:.0f}",
                    _ms(result["bare_ns"], q),
                    _ms(result["traced_ns"], q),
                )
            )
    if "hoptrace" in results and "otel" in results:
        for q in (50.0, 95.0):
            row = Row(
                f"flush p{q:.0f}: hoptrace",
                "ms",
                "OpenTelemetry force_flush",
                _ms(results["otel"]["flush_ns"], q),
                _ms(results["hoptrace"]["flush_ns"], q),
            )
            if q == 50.0:
                row.goal = f"≤ {FLUSH_P50_GOAL_MS:g} ms"
                row.met = row.value <= FLUSH_P50_GOAL_MS
            section.rows.append(row)
        for q in (50.0, 95.0):
            hop, otel = results["hoptrace"]["export_ns"], results["otel"]["export_ns"]
            if hop and otel:
                section.rows.append(
                    Row(
                        f"export (encode + POST) p{q:.0f}: hoptrace",
                        "ms",
                        "OpenTelemetry export",
                        _ms(otel, q),
                        _ms(hop, q),
                    )
                )
        section.notes.append(
            "export is the exporter's own export() call (on hoptrace's export thread, on the caller's thread in "
            "OpenTelemetry); flush − export is what handing the spans over costs."
        )
    section.raw = {
        v: {k: [x / 1e6 for x in r[k]] for k in ("bare_ns", "traced_ns", "flush_ns", "export_ns")}
        | {"settle": r["settle"]}
        for v, r in results.items()
    }
    return section
