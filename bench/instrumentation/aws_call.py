"""Per-call cost of one SQS SendMessage: bare boto3, with hoptrace, with OpenTelemetry's botocore instrumentation.

Each variant runs in worker processes of its own (instrumentations patch process-wide state),
several rounds interleaved. In a worker, calls run in batches, each batch inside one traced
Lambda invocation as in real use (the flush happens after the batch, outside the timing), with a
garbage collection between batches. Spans go to a counting exporter: this measures creating and
ending spans, injecting context and reading the response, not exporting (see ``flush``).

Modes: ``stub`` answers SendMessage inside botocore (client-side cost only); ``moto`` sends it to
``moto_server`` on loopback (end to end, noisier).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from typing import Any, Callable

from bench.measure import REPO_ROOT, Budget, ChildFailed, child_env, median, progress, run_json_child
from bench.report import Row, Section

from . import lambda_env

VARIANTS = ("bare", "hoptrace", "otel")
LABELS = {"bare": "bare boto3", "hoptrace": "hoptrace", "otel": "OpenTelemetry"}
ADDED_GOAL_US = 20.0
VS_OTEL_GOAL = 5.0  # hoptrace should add at least this many times less than OpenTelemetry

# (calls per batch, timed batches, warm-up batches); quick runs keep a quarter of the batches.
SHAPES = {"stub": (100, 30, 3), "moto": (25, 12, 2)}


def worker_config(variant: str, mode: str, quick: bool, endpoint_url: str | None, queue_url: str) -> dict[str, Any]:
    calls, batches, warmup = SHAPES[mode]
    if quick:
        batches = max(3, batches // 4)
    return {
        "variant": variant,
        "mode": mode,
        "calls": calls,
        "batches": batches,
        "warmup": warmup,
        "endpoint_url": endpoint_url,
        "queue_url": queue_url,
    }


def worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run in a fresh process: set up one variant, time its batches, return per-call nanoseconds."""
    import boto3

    from .exporters import CountingExporter
    from .sqs_stub import short_circuit

    variant = cfg["variant"]
    exporter = CountingExporter()
    stats: Callable[[], dict[str, int]] = dict
    if variant == "hoptrace":
        import hoptrace

        hoptrace.init(exporter=exporter, lambda_mode=True)
        stats = hoptrace.stats
    elif variant == "otel":
        from opentelemetry import trace
        from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        BotocoreInstrumentor().instrument(tracer_provider=provider)

    client = boto3.client("sqs", endpoint_url=cfg["endpoint_url"])
    if cfg["mode"] == "stub":
        short_circuit(client)
    calls, body = cfg["calls"], json.dumps(lambda_env.EVENT)
    queue = {"url": cfg["queue_url"]}

    def batch(event: Any, context: Any) -> int:
        queue_url = queue["url"]
        start = time.perf_counter_ns()
        for _ in range(calls):
            client.send_message(QueueUrl=queue_url, MessageBody=body)
        return time.perf_counter_ns() - start

    invoke = _invocation(variant, batch)
    name = f"bench-aws-call-{variant}"
    per_call: list[float] = []
    for i in range(cfg["warmup"] + cfg["batches"]):
        if cfg["mode"] == "moto":
            # moto's SendMessage slows down as a queue fills: every batch starts on an empty one.
            queue["url"] = client.create_queue(QueueName=f"bench-{variant}-{os.getpid()}-{i}")["QueueUrl"]
        gc.collect()
        elapsed = invoke(lambda_env.EVENT, lambda_env.LambdaContext(name))
        if i >= cfg["warmup"]:
            per_call.append(elapsed / calls)
    result: dict[str, Any] = {"per_call_ns": per_call}
    _settle(variant)
    result.update(spans=exporter.spans, span_names=exporter.names, stats=stats())
    return result


def _invocation(variant: str, batch: Callable[[Any, Any], int]) -> Callable[[Any, Any], int]:
    """The batch inside one Lambda invocation, traced as each variant traces a handler."""
    if variant == "hoptrace":
        import hoptrace

        return hoptrace.lambda_handler(batch)
    if variant == "otel":
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

        provider = trace.get_tracer_provider()
        tracer = provider.get_tracer("bench")

        def invoke(event: Any, context: Any) -> int:
            with tracer.start_as_current_span("invocation", kind=SpanKind.SERVER):
                elapsed = batch(event, context)
            provider.force_flush()  # type: ignore[attr-defined]
            return elapsed

        return invoke
    return batch


def _settle(variant: str) -> None:
    if variant == "hoptrace":
        import hoptrace

        hoptrace.flush(5000)
    elif variant == "otel":
        from opentelemetry import trace

        trace.get_tracer_provider().force_flush(5000)  # type: ignore[attr-defined]


def _worker_args(cfg: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", "bench.instrumentation.worker", "aws_call", json.dumps(cfg)]


def worker_env(variant: str) -> dict[str, str]:
    return child_env(lambda_env.environment(f"bench-aws-call-{variant}", "bench.handler"))


def run(mode: str, rounds: int, quick: bool, budget: Budget, warnings: list[str]) -> Section:
    if mode == "moto":
        from .servers import moto_server

        with moto_server() as endpoint_url:
            progress(f"moto_server listening on {endpoint_url}")
            return _run(mode, rounds, quick, endpoint_url, "", budget, warnings)
    return _run(mode, rounds, quick, None, lambda_env.QUEUE_URL, budget, warnings)


def _run(
    mode: str, rounds: int, quick: bool, endpoint_url: str | None, queue_url: str, budget: Budget, warnings: list[str]
) -> Section:
    per_round: dict[str, list[float]] = {v: [] for v in VARIANTS}
    last: dict[str, dict[str, Any]] = {}
    for r in range(rounds):
        if budget.expired() and r > 0:
            warnings.append(f"SendMessage ({mode}): time budget spent after {r} of {rounds} rounds")
            break
        progress(f"SendMessage ({mode}): round {r + 1}/{rounds}")
        for variant in VARIANTS[r % 3 :] + VARIANTS[: r % 3]:
            cfg = worker_config(variant, mode, quick, endpoint_url, queue_url)
            try:
                result, _ = run_json_child(_worker_args(cfg), env=worker_env(variant), cwd=REPO_ROOT, timeout_s=120)
            except ChildFailed as exc:
                warnings.append(f"FAILED SendMessage ({mode}) {variant}: {exc}")
                return Section(f"SQS SendMessage, {mode}", "failed", notes=[str(exc)])
            per_round[variant].append(median(result["per_call_ns"]) / 1000.0)
            last[variant] = result
            _check_spans(mode, variant, cfg, result, warnings)
    return _section(mode, per_round, last, worker_config("bare", mode, quick, endpoint_url, queue_url))


def _check_spans(mode: str, variant: str, cfg: dict[str, Any], result: dict[str, Any], warnings: list[str]) -> None:
    if variant == "bare":
        return
    calls = (cfg["warmup"] + cfg["batches"]) * cfg["calls"]
    errors = {k: v for k, v in result.get("stats", {}).items() if k.startswith("internal_errors")}
    if errors:
        warnings.append(f"SendMessage ({mode}): hoptrace counted internal errors {errors}: figures may be too low")
    if result["spans"] < calls:
        warnings.append(
            f"SendMessage ({mode}): {LABELS[variant]} exported {result['spans']} spans for {calls} calls; "
            "its per-call figure does not include a full span"
        )


def _section(
    mode: str, per_round: dict[str, list[float]], last: dict[str, dict[str, Any]], shape: dict[str, Any]
) -> Section:
    what = "answered inside botocore (client-side cost only)" if mode == "stub" else "sent to moto_server on loopback"
    n = len(per_round["bare"])
    section = Section(
        f"SQS SendMessage, {mode}",
        f"µs per call, {what}: median over {n} worker processes per variant (interleaved) of each worker's "
        f"median over {shape['batches']} batches of {shape['calls']} calls, each batch one traced invocation.",
    )
    base = median(per_round["bare"])
    added: dict[str, float] = {}
    for variant in ("hoptrace", "otel"):
        row = Row(f"SendMessage: {LABELS[variant]}", "µs", LABELS["bare"], base, median(per_round[variant]))
        added[variant] = row.added
        if mode == "stub" and variant == "hoptrace":
            row.goal = f"≤ {ADDED_GOAL_US:.0f} µs added"
            row.met = row.added <= ADDED_GOAL_US
        section.rows.append(row)
    vs = Row("added per call: hoptrace vs OpenTelemetry", "µs", "OpenTelemetry added", added["otel"], added["hoptrace"])
    if mode == "stub":
        vs.goal = f"≥ {VS_OTEL_GOAL:.0f}× less (ratio ≤ {1 / VS_OTEL_GOAL:.2f})"
        vs.met = added["otel"] > 0 and vs.ratio <= 1 / VS_OTEL_GOAL
    section.rows.append(vs)
    spread = {v: f"{min(x):.1f}–{max(x):.1f}" for v, x in per_round.items() if x}
    section.notes.append("per-worker medians, min–max µs: " + ", ".join(f"{LABELS[v]} {s}" for v, s in spread.items()))
    section.raw = {
        "per_worker_median_us": per_round,
        "config": shape,
        "span_names_last_worker": {v: r.get("span_names") for v, r in last.items()},
        "hoptrace_stats_last_worker": last.get("hoptrace", {}).get("stats"),
    }
    return section
