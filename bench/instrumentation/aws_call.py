"""Per-call cost of one SQS SendMessage: bare boto3 beside boto3 with hoptrace and with OpenTelemetry.

One worker process per instrumentation and round (they patch process-wide state, so hoptrace
and OpenTelemetry never share a process). Machines here differ by tens of percent from one
process to the next, so each worker measures its own baseline: its batches of calls alternate,
in rotated order, between

- ``bare``: an uninstrumented client (hoptrace: made from a session created before
  ``hoptrace.init()``, so it has no hooks; OpenTelemetry: ``BotocoreInstrumentor`` is
  uninstrumented for the batch and instrumented again after it);
- ``bare_ctx`` (stub mode): the same bare client carrying the message attributes the
  instrumentation injected into its last call, the way that instrumentation carries them, to
  split its cost into carrying the context and the instrumentation's own work. OpenTelemetry
  adds them to the call's parameters (so botocore validates and serialises them); hoptrace
  appends them to the serialised JSON body, so its ``bare_ctx`` does the same from a
  ``before-call`` handler (the body grows, botocore signs and the stub parses more);
- ``traced``: the instrumented client, the batch inside one traced Lambda invocation as in real
  use (the flush comes after the batch, outside the timing).

A garbage collection runs between batches. Spans go to a counting exporter: this measures
creating and ending spans, injecting context and reading the response, not exporting (see
``flush``). ``stub`` mode answers SendMessage inside botocore (client-side cost only); ``moto``
sends it to ``moto_server`` on loopback (end to end, noisier).
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

VARIANTS = ("hoptrace", "otel")
LABELS = {"hoptrace": "hoptrace", "otel": "OpenTelemetry"}
ADDED_GOAL_US = 20.0
VS_OTEL_GOAL = 5.0  # hoptrace should add at least this many times less than OpenTelemetry

# (calls per batch, timed batches per kind, warm-up rounds of batches); quick runs keep a quarter.
SHAPES = {"stub": (100, 12, 2), "moto": (25, 10, 1)}

Batch = Callable[[Any, Any], int]
# The function each kind of batch runs, as a profile sees it.
BATCH_FUNCTIONS = {
    "traced": "traced_batch",
    "traced_unarmed": "traced_batch",
    "bare": "bare_batch",
    "bare_ctx": "ctx_batch",
}


class _NoDeadline(lambda_env.LambdaContext):
    """A context without ``get_remaining_time_in_millis``: hoptrace then arms no timeout watchdog."""

    get_remaining_time_in_millis = None  # type: ignore[assignment]


def worker_config(variant: str, mode: str, quick: bool, endpoint_url: str | None, queue_url: str) -> dict[str, Any]:
    calls, batches, warmup = SHAPES[mode]
    return {
        "variant": variant,
        "mode": mode,
        "calls": calls,
        "batches": max(3, batches // 4) if quick else batches,
        "warmup": warmup,
        "endpoint_url": endpoint_url,
        "queue_url": queue_url,
    }


class _Instrumentation:
    """One variant's set-up: a bare client, a traced client, and how a traced batch is invoked."""

    def __init__(self, variant: str, endpoint_url: str | None) -> None:
        import boto3

        from .exporters import CountingExporter

        self.exporter = CountingExporter()
        self.stats: Callable[[], dict[str, int]] = dict
        self.on: Callable[[], None] = lambda: None
        self.off: Callable[[], None] = lambda: None
        # Made before any instrumentation: hoptrace hooks only sessions created after init().
        self.bare = boto3.session.Session().client("sqs", endpoint_url=endpoint_url)
        if variant == "hoptrace":
            import hoptrace

            hoptrace.init(exporter=self.exporter, lambda_mode=True)
            self.stats = hoptrace.stats
            self.traced = boto3.session.Session().client("sqs", endpoint_url=endpoint_url)
            self.invoke: Callable[[Batch], Batch] = hoptrace.lambda_handler
        else:
            from opentelemetry import trace
            from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.trace import SpanKind

            provider = TracerProvider()
            provider.add_span_processor(BatchSpanProcessor(self.exporter))
            trace.set_tracer_provider(provider)
            instrumentor = BotocoreInstrumentor()
            # Patching is class-wide: the same client is bare or traced as the patch is on or off.
            self.on = lambda: instrumentor.instrument(tracer_provider=provider, skip_dep_check=True)
            self.off = instrumentor.uninstrument
            self.traced = self.bare
            tracer = provider.get_tracer("bench")

            def invoke(batch: Batch) -> Batch:
                def run(event: Any, context: Any) -> int:
                    with tracer.start_as_current_span("invocation", kind=SpanKind.SERVER):
                        elapsed = batch(event, context)
                    provider.force_flush()
                    return elapsed

                return run

            self.invoke = invoke

    def settle(self) -> None:
        from opentelemetry import trace

        trace.get_tracer_provider().force_flush(5000)  # type: ignore[attr-defined]


def worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run in a fresh process: alternate bare and traced batches, return per-call nanoseconds of each."""
    from . import sqs_stub

    stub = cfg["mode"] == "stub"
    setup = _Instrumentation(cfg["variant"], cfg["endpoint_url"])
    setup.on()
    if stub:
        sqs_stub.short_circuit(setup.bare)
        if setup.traced is not setup.bare:
            sqs_stub.short_circuit(setup.traced)
    calls, body = cfg["calls"], json.dumps(lambda_env.EVENT)
    queue = {"url": cfg["queue_url"]}
    extra: dict[str, Any] = {}

    last_cpu = {"ns": 0}
    last_stub = {"ns": 0}
    spent = sqs_stub.spent

    def timed_calls(client: Any, params: dict[str, Any]) -> int:
        queue_url = queue["url"]
        stub_cpu, stub_wall = spent["cpu_ns"], spent["wall_ns"]
        cpu = time.thread_time_ns()
        start = time.perf_counter_ns()
        for _ in range(calls):
            client.send_message(QueueUrl=queue_url, MessageBody=body, **params)
        elapsed = time.perf_counter_ns() - start
        # This thread's CPU too: on a shared machine, wall time also counts waiting for a core.
        last_cpu["ns"] = time.thread_time_ns() - cpu
        if stub:
            # The stub's answering is the emulated SQS's work, not the client's: left out of
            # both figures, for every kind alike (see sqs_stub.spent).
            last_stub["ns"] = spent["cpu_ns"] - stub_cpu
            last_cpu["ns"] -= last_stub["ns"]
            elapsed -= spent["wall_ns"] - stub_wall
        return elapsed

    # One named function per kind, so a profile can tell their samples apart.
    def traced_batch(event: Any, context: Any) -> int:
        return timed_calls(setup.traced, {})

    def bare_batch(event: Any, context: Any) -> int:
        return timed_calls(setup.bare, {})

    def ctx_batch(event: Any, context: Any) -> int:
        if cfg["variant"] == "hoptrace":
            splicing["on"] = True
            try:
                return timed_calls(setup.bare, {})
            finally:
                splicing["on"] = False
        return timed_calls(setup.bare, extra)

    # hoptrace's way of carrying context: the same JSON members appended to the serialised body.
    splicing: dict[str, Any] = {"on": False}

    def splice(params: dict[str, Any], **_: Any) -> None:
        if splicing["on"] and extra:
            members = splicing.get("members")
            if members is None:  # formatted once: hoptrace formats its members in its own hooks
                members = splicing["members"] = b"," + json.dumps(extra, separators=(",", ":"))[1:-1].encode()
            params["body"] = params["body"][:-1] + members + b"}"

    if cfg["variant"] == "hoptrace":
        setup.bare.meta.events.register("before-call.sqs.SendMessage", splice)

    kinds: dict[str, Batch] = {"traced": setup.invoke(traced_batch), "bare": bare_batch}
    if stub:
        kinds["bare_ctx"] = ctx_batch
    if cfg.get("profile"):
        # The same traced batch in an invocation whose context gives no deadline: no timeout watchdog.
        kinds["traced_unarmed"] = kinds["traced"]
    # Keep everything loaded so far out of the collections between batches (they took 40 ms each).
    gc.collect()
    gc.freeze()
    samples: dict[str, list[float]] = {k: [] for k in kinds}
    # With "profile": every other batch under pyinstrument, timed apart to know how much it slows calls.
    sessions: dict[str, list[Any]] = {k: [] for k in kinds}
    profiled_samples: dict[str, list[float]] = {k: [] for k in kinds}
    cpu_samples: dict[str, list[float]] = {k: [] for k in kinds}
    stub_samples: dict[str, list[float]] = {k: [] for k in kinds}
    order = list(kinds)
    name = f"bench-aws-call-{cfg['variant']}"
    for i in range(cfg["warmup"] + cfg["batches"]):
        for kind in order[i % len(order) :] + order[: i % len(order)]:
            if cfg["mode"] == "moto":
                # moto's SendMessage slows down as a queue fills: every batch starts on an empty one.
                queue["url"] = setup.bare.create_queue(QueueName=f"bench-{name}-{os.getpid()}-{i}-{kind}")["QueueUrl"]
            (setup.on if kind.startswith("traced") else setup.off)()
            gc.collect()
            profiled = bool(cfg.get("profile")) and i >= cfg["warmup"] and (i - cfg["warmup"]) % 2 == 0
            profiler = _profiler() if profiled else None
            context = _NoDeadline(name) if kind == "traced_unarmed" else lambda_env.LambdaContext(name)
            elapsed = kinds[kind](lambda_env.EVENT, context)
            if profiler is not None:
                profiler.stop()
                sessions[kind].append(profiler.last_session)
            if kind == "traced" and stub and not extra:
                # What the instrumentation added to the call, for the bare_ctx batches to send too.
                extra.update(
                    {
                        k: v
                        for k, v in sqs_stub.last_request.items()
                        if k in ("MessageAttributes", "MessageSystemAttributes")
                    }
                )
            if i >= cfg["warmup"]:
                (profiled_samples if profiled else samples)[kind].append(elapsed / calls)
                if not profiled:
                    cpu_samples[kind].append(last_cpu["ns"] / calls)
                    stub_samples[kind].append(last_stub["ns"] / calls)
    setup.on()
    setup.settle()
    traced_calls = (cfg["warmup"] + cfg["batches"]) * calls
    profile = {}
    if cfg.get("profile"):
        from .profile import summarize

        for kind, found in sessions.items():
            profile[kind] = summarize(found, below=BATCH_FUNCTIONS[kind])
            profile[kind]["calls"] = len(found) * calls
            profile[kind]["slowdown"] = median(profiled_samples[kind]) / median(samples[kind])
    return {
        "profile": profile,
        "per_call_ns": samples,  # unprofiled batches only
        "per_call_cpu_ns": cpu_samples,
        "per_call_stub_cpu_ns": stub_samples,  # left out of both figures above
        "traced_calls": traced_calls,
        "spans": setup.exporter.spans,
        "span_names": setup.exporter.names,
        "stats": setup.stats(),
        "injected": extra,
    }


def _profiler() -> Any:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0001, async_mode="disabled")
    profiler.start()
    return profiler


def worker_env(variant: str) -> dict[str, str]:
    return child_env(lambda_env.environment(f"bench-aws-call-{variant}", "bench.handler"))


def _run_worker(cfg: dict[str, Any]) -> dict[str, Any]:
    args = [sys.executable, "-m", "bench.instrumentation.worker", "aws_call", json.dumps(cfg)]
    result, _ = run_json_child(args, env=worker_env(cfg["variant"]), cwd=REPO_ROOT, timeout_s=120)
    return result


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
    # Per variant, per worker: the median µs per call of each batch kind.
    medians: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    cpu_medians: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    stub_medians: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    last: dict[str, dict[str, Any]] = {}
    for r in range(rounds):
        if budget.expired() and r > 0:
            warnings.append(f"SendMessage ({mode}): time budget spent after {r} of {rounds} rounds")
            break
        progress(f"SendMessage ({mode}): round {r + 1}/{rounds}")
        for variant in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
            cfg = worker_config(variant, mode, quick, endpoint_url, queue_url)
            try:
                result = _run_worker(cfg)
            except ChildFailed as exc:
                warnings.append(f"FAILED SendMessage ({mode}) {variant}: {exc}")
                return Section(f"SQS SendMessage, {mode}", "failed", notes=[str(exc)])
            medians[variant].append({k: median(v) / 1000.0 for k, v in result["per_call_ns"].items()})
            cpu_medians[variant].append({k: median(v) / 1000.0 for k, v in result["per_call_cpu_ns"].items()})
            stub_medians[variant].append({k: median(v) / 1000.0 for k, v in result["per_call_stub_cpu_ns"].items()})
            last[variant] = result
            _check_spans(mode, variant, result, warnings)
    section = _section(mode, medians, worker_config("hoptrace", mode, quick, endpoint_url, queue_url))
    if mode == "stub":
        _cpu_rows(section, cpu_medians)
        stub_us = {v: {k: median([w[k] for w in stub_medians[v]]) for k in stub_medians[v][0]} for v in VARIANTS}
        section.notes.append(
            "Left out of every figure above, for every kind alike: the stub's own answering (the emulated SQS "
            "parsing the request, the MD5, the answer; a real client does not do it), median CPU µs per call: "
            + "; ".join(
                f"{LABELS[v]} workers " + ", ".join(f"{k} {us:.1f}" for k, us in stub_us[v].items()) for v in VARIANTS
            )
            + ". What a kind spends there beyond `bare` is the SQS side of parsing the attributes it added."
        )
        section.raw["per_worker_median_stub_cpu_us"] = stub_medians
    section.raw.update(
        injected={v: r.get("injected") for v, r in last.items()},
        span_names_last_worker={v: r.get("span_names") for v, r in last.items()},
        hoptrace_stats_last_worker=last.get("hoptrace", {}).get("stats"),
    )
    return section


def _check_spans(mode: str, variant: str, result: dict[str, Any], warnings: list[str]) -> None:
    errors = {k: v for k, v in result.get("stats", {}).items() if k.startswith("internal_errors")}
    if errors:
        warnings.append(f"SendMessage ({mode}): hoptrace counted internal errors {errors}: figures may be too low")
    if result["spans"] < result["traced_calls"]:
        warnings.append(
            f"SendMessage ({mode}): {LABELS[variant]} exported {result['spans']} spans for {result['traced_calls']} "
            "traced calls; its per-call figure does not include a full span"
        )


def _cpu_rows(section: Section, cpu: dict[str, list[dict[str, float]]]) -> None:
    """The same comparison in the calling thread's CPU time, which a busy machine disturbs less."""
    base = median([w["bare"] for v in VARIANTS for w in cpu[v]])
    added: dict[str, float] = {}
    for variant in VARIANTS:
        row = Row(
            f"SendMessage CPU: {LABELS[variant]}", "µs", "bare boto3 CPU", base, base * _ratio(cpu[variant], "traced")
        )
        added[variant] = row.added
        section.rows.append(row)
    section.rows.append(
        Row(
            "added CPU per call: hoptrace vs OpenTelemetry",
            "µs",
            "OpenTelemetry added",
            added["otel"],
            added["hoptrace"],
        )
    )
    section.notes.append(
        "`CPU` rows: the calling thread's CPU time (time.thread_time) over the same batches, ratios per worker "
        "as above; on an idle machine they match the wall-clock rows, on a shared one they do not count waiting "
        "for a core."
    )
    section.raw["per_worker_median_cpu_us"] = cpu


def _ratio(workers: list[dict[str, float]], kind: str) -> float:
    """Median over workers of kind / bare in the same worker: a process's speed cancels out."""
    return median([w[kind] / w["bare"] for w in workers])


def _section(mode: str, medians: dict[str, list[dict[str, float]]], shape: dict[str, Any]) -> Section:
    what = "answered inside botocore (client-side cost only)" if mode == "stub" else "sent to moto_server on loopback"
    n = len(medians["hoptrace"])
    section = Section(
        f"SQS SendMessage, {mode}",
        f"µs per call, {what}. {n} worker processes per instrumentation, each alternating {shape['batches']} "
        f"batches of {shape['calls']} calls per kind. Processes differ in speed, so each worker is its own "
        "baseline: value = baseline × median over workers of (traced ÷ bare in that worker), with baseline the "
        "median bare call over all workers.",
    )
    base = median([w["bare"] for v in VARIANTS for w in medians[v]])
    added: dict[str, float] = {}
    for variant in VARIANTS:
        workers = medians[variant]
        if "bare_ctx" in workers[0]:
            value = base * _ratio(workers, "bare_ctx")
            how = "in the serialised body" if variant == "hoptrace" else "as parameters"
            section.rows.append(
                Row(
                    f"SendMessage, bare + {LABELS[variant]}'s message attributes ({how}, as it adds them)",
                    "µs",
                    "bare boto3",
                    base,
                    value,
                )
            )
        row = Row(f"SendMessage: {LABELS[variant]}", "µs", "bare boto3", base, base * _ratio(workers, "traced"))
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
    for variant in VARIANTS:
        ratios = ", ".join(f"{w['traced'] / w['bare']:.2f}" for w in medians[variant])
        bares = ", ".join(f"{w['bare']:.0f}" for w in medians[variant])
        section.notes.append(f"{LABELS[variant]} workers: traced ÷ bare {ratios}; bare µs {bares}")
    section.raw = {"per_worker_median_us": medians, "config": shape}
    return section
