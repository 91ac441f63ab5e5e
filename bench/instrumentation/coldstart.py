"""Cold start: import + init of a Lambda handler module in fresh processes, then its first invocations.

Three handler modules are generated into a temporary "task root" beside a stand-in for the Lambda
runtime (``runtime.py``), and each run is a fresh interpreter:

- ``bare``: boto3, an SQS client made at import time, a handler that sends one message;
- ``hoptrace``: the same plus ``import hoptrace; hoptrace.init()`` and ``@hoptrace.lambda_handler``;
- ``otel``: the same plus OpenTelemetry's documented Lambda set-up: SDK ``TracerProvider`` with a
  ``BatchSpanProcessor`` and the OTLP/HTTP protobuf exporter, ``BotocoreInstrumentor().instrument()``
  and ``AwsLambdaInstrumentor().instrument()``.

SendMessage is answered locally (``sqs_stub``), so no run leaves the machine; spans go to the
OTLP endpoint (our loopback sink, or ``--endpoint``). Runs are interleaved, each round in a
rotated order, so a noisy moment hurts all variants alike.

Packaged as a Lambda function is: hoptrace is built into a wheel and installed into the task
root (``pip install --target``, what a deployment package or layer holds), and every run is
``python -S`` with the task root and this interpreter's site-packages on ``PYTHONPATH``. So no
variant pays for the repository's editable install (its import hook and ``.pth`` file), which
a deployed function never has.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import REPO_ROOT, Budget, ChildFailed, child_env, median, progress, run_json_child
from bench.report import Row, Section

from . import lambda_env, sqs_stub

VARIANTS = ("bare", "hoptrace", "otel")
LABELS = {"bare": "bare boto3", "hoptrace": "hoptrace", "otel": "OpenTelemetry"}
WARM_INVOCATIONS = 3
INIT_GOAL_MS = 30.0

RUNTIME = '''\
"""Stand-in for the Lambda Python runtime: import the handler module (init), then invoke it."""
import gc
import importlib
import json
import logging  # the real runtime has it loaded before the function's code
import os
import time

from lambda_env import EVENT, LambdaContext

WARM = {warm}
PHASE = ["startup"]
FULL_GC = {{}}  # phase -> [count, process CPU ms]: where the interpreter's full collections fall
_gc_started = [0.0]


def _on_gc(stage, info):
    if info["generation"] != 2:
        return
    if stage == "start":
        _gc_started[0] = time.process_time()
    else:
        seen = FULL_GC.setdefault(PHASE[0], [0, 0.0])
        seen[0] += 1
        seen[1] += (time.process_time() - _gc_started[0]) * 1000


gc.callbacks.append(_on_gc)


def main():
    module_name, _, function_name = os.environ["_HANDLER"].rpartition(".")
    name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    PHASE[0] = "init"
    c0 = time.process_time_ns()
    t0 = time.perf_counter_ns()
    module = importlib.import_module(module_name)
    handler = getattr(module, function_name)
    t1 = time.perf_counter_ns()
    c1 = time.process_time_ns()
    PHASE[0] = "first"
    handler(EVENT, LambdaContext(name))
    t2 = time.perf_counter_ns()
    c2 = time.process_time_ns()
    PHASE[0] = "warm"
    warm = []
    for _ in range(WARM):
        context = LambdaContext(name)
        start = time.perf_counter_ns()
        handler(EVENT, context)
        warm.append(time.perf_counter_ns() - start)
    PHASE[0] = "settle"
    out = {{"init_ns": t1 - t0, "first_ns": t2 - t1, "warm_ns": warm, "full_gc": FULL_GC,
           "init_cpu_ns": c1 - c0, "first_cpu_ns": c2 - c1}}
    settle = getattr(module, "bench_settle", None)
    if settle is not None:
        out["settle"] = settle()
    print(json.dumps(out))


main()
'''

_COMMON = """\
import json
import os

import boto3
from sqs_stub import short_circuit
"""

_BODY = """
sqs = boto3.client("sqs")
short_circuit(sqs)
QUEUE_URL = os.environ["BENCH_QUEUE_URL"]


{decorator}def handler(event, context):
    sqs.send_message(QueueUrl=QUEUE_URL, MessageBody=json.dumps(event))
    return {{"statusCode": 200}}
"""

HANDLERS = {
    "bare": _COMMON + _BODY.format(decorator=""),
    "hoptrace": _COMMON
    + "\nimport hoptrace\n\nhoptrace.init()\n"
    + _BODY.format(decorator="@hoptrace.lambda_handler\n")
    + '''

def bench_settle():
    """Not timed: wait for the export, so the run can check the spans arrived (and which hoptrace ran)."""
    hoptrace.flush(5000)
    return {"stats": hoptrace.stats(), "file": hoptrace.__file__}
''',
    "otel": _COMMON
    + """import logging

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.aws_lambda import AwsLambdaInstrumentor
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)
BotocoreInstrumentor().instrument()
# No MeterProvider is set up: mute the warning it logs per invocation (that only helps OTel here).
logging.getLogger("opentelemetry.instrumentation.aws_lambda").setLevel(logging.ERROR)
"""
    + _BODY.format(decorator="")
    + '''

AwsLambdaInstrumentor().instrument()


def bench_settle():
    """Not timed: wait for the export, so the run can check the spans arrived."""
    return {"flushed": provider.force_flush(5000)}
''',
}


def write_task_root(root: Path) -> None:
    """The runtime stand-in, its helpers, one handler module per variant, and hoptrace from a wheel."""
    (root / "runtime.py").write_text(RUNTIME.format(warm=WARM_INVOCATIONS))
    shutil.copy(lambda_env.__file__, root / "lambda_env.py")
    shutil.copy(sqs_stub.__file__, root / "sqs_stub.py")
    for variant, source in HANDLERS.items():
        (root / f"handler_{variant}.py").write_text(source)
    install_hoptrace_wheel(root)


def install_hoptrace_wheel(root: Path) -> None:
    """Build this checkout into a wheel and install it (no dependencies) into ``root``."""
    progress("cold start: building hoptrace's wheel into the task root")
    wheels = root / "_wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(REPO_ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("hoptrace-*.whl")
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-compile", "--target", str(root), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    shutil.rmtree(wheels)


def python_path(root: Path) -> str:
    """The task root first (as in Lambda), then this interpreter's site-packages for the dependencies."""
    dirs = [str(root)]
    for d in [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()]:
        if d not in dirs:
            dirs.append(d)
    return os.pathsep.join(dirs)


def function_name(variant: str) -> str:
    return f"bench-coldstart-{variant}"


def variant_env(variant: str, endpoint: str, root: Path) -> dict[str, str]:
    env = child_env(lambda_env.environment(function_name(variant), f"handler_{variant}.handler"))
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    env["BENCH_QUEUE_URL"] = lambda_env.QUEUE_URL
    env["PYTHONPATH"] = python_path(root)
    return env


@dataclass
class Samples:
    init_ms: list[float] = field(default_factory=list)
    first_ms: list[float] = field(default_factory=list)
    init_cpu_ms: list[float] = field(default_factory=list)
    first_cpu_ms: list[float] = field(default_factory=list)
    total_cpu_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    warm_ms: list[float] = field(default_factory=list)
    process_ms: list[float] = field(default_factory=list)
    settle: list[Any] = field(default_factory=list)
    full_gc: list[dict[str, list[float]]] = field(default_factory=list)

    def add(self, result: dict[str, Any], wall_ns: int) -> None:
        self.full_gc.append(result.get("full_gc") or {})
        init, first = result["init_ns"] / 1e6, result["first_ns"] / 1e6
        self.init_ms.append(init)
        self.first_ms.append(first)
        init_cpu, first_cpu = result["init_cpu_ns"] / 1e6, result["first_cpu_ns"] / 1e6
        self.init_cpu_ms.append(init_cpu)
        self.first_cpu_ms.append(first_cpu)
        self.total_cpu_ms.append(init_cpu + first_cpu)
        self.total_ms.append(init + first)
        self.warm_ms.append(median([w / 1e6 for w in result["warm_ns"]]))
        self.process_ms.append(wall_ns / 1e6)
        self.settle.append(result.get("settle"))


def run(runs: int, endpoint: str, budget: Budget, warnings: list[str]) -> Section:
    """Measure ``runs`` fresh processes per variant, interleaved; two untimed warm-ups each first."""
    samples = {v: Samples() for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="hoptrace_bench-task-root_") as tmp:
        root = Path(tmp)
        write_task_root(root)
        envs = {v: variant_env(v, endpoint, root) for v in VARIANTS}

        def once(variant: str) -> tuple[dict[str, Any], int]:
            # -S: no site-packages processing (.pth files, the editable install's finder); the
            # paths come from PYTHONPATH, as a Lambda runtime's come from its own configuration.
            return run_json_child([sys.executable, "-S", "runtime.py"], env=envs[variant], cwd=root, timeout_s=60)

        for variant in VARIANTS:  # fills the bytecode and file caches
            for _ in range(2):
                once(variant)
        for i in range(runs):
            if budget.expired():
                warnings.append(f"cold start: time budget spent after {i} of {runs} rounds")
                break
            progress(f"cold start: round {i + 1}/{runs}")
            order = VARIANTS[i % 3 :] + VARIANTS[: i % 3]
            for variant in order:
                try:
                    result, wall_ns = once(variant)
                except ChildFailed as exc:
                    warnings.append(f"FAILED cold start {variant}: {exc}")
                    return Section("Cold start", "failed", notes=[str(exc)])
                samples[variant].add(result, wall_ns)
    _check_delivery(samples, warnings)
    return _section(samples, runs)


def _check_delivery(samples: dict[str, Samples], warnings: list[str]) -> None:
    expected = 2 * (1 + WARM_INVOCATIONS)  # invocation span + SendMessage span, per invocation
    for settled in samples["hoptrace"].settle:
        if not isinstance(settled, dict):
            continue
        if "_bench-task-root_" not in str(settled.get("file")):
            warnings.append(f"cold start: hoptrace was imported from {settled.get('file')}, not the task root's wheel")
            break
        stats = settled.get("stats") or {}
        errors = {k: v for k, v in stats.items() if k.startswith("internal_errors")}
        if errors:
            warnings.append(f"cold start: hoptrace counted internal errors {errors}: its figures may be too low")
            break
        if stats.get("spans_exported", 0) < expected:
            warnings.append(
                f"cold start: hoptrace exported {stats.get('spans_exported', 0)} spans, expected {expected}"
            )
            break
    if not all(isinstance(s, dict) and s.get("flushed") for s in samples["otel"].settle):
        warnings.append("cold start: OpenTelemetry's force_flush did not succeed in every run")


def _section(samples: dict[str, Samples], runs: int) -> Section:
    bare = samples["bare"]
    n = len(bare.init_ms)
    section = Section(
        "Cold start",
        f"Median of {n} fresh processes per variant (interleaved, rotated order); a handler module "
        "importing boto3 and making an SQS client, imported by a stand-in Lambda runtime; hoptrace "
        "installed from its wheel into the task root, `python -S` (no editable-install hook). "
        "`first invocation` includes the first flush; SendMessage is answered locally. `paired per round` "
        "rows: bare's median plus the median over rounds of (variant − bare in the same round). `process CPU` "
        "rows: CPU time of the whole process (all threads) over the same phases, which waiting for a core or "
        "for the disk does not inflate; a Lambda with a fraction of a vCPU pays CPU, not wall time.",
    )
    figures = [
        ("import + init", "init_ms"),
        ("first invocation incl. first flush", "first_ms"),
        ("init + first invocation", "total_ms"),
        (f"warm invocation (median of {WARM_INVOCATIONS})", "warm_ms"),
        ("whole process, spawn to exit", "process_ms"),
        ("import + init, process CPU", "init_cpu_ms"),
        ("first invocation, process CPU", "first_cpu_ms"),
        ("init + first invocation, process CPU", "total_cpu_ms"),
    ]
    for title, attr in figures:
        base = median(getattr(bare, attr))
        for variant in ("hoptrace", "otel"):
            value = median(getattr(samples[variant], attr))
            row = Row(f"{title}: {LABELS[variant]}", "ms", LABELS["bare"], base, value)
            if attr == "init_ms" and variant == "hoptrace":
                row.goal = f"≤ {INIT_GOAL_MS:.0f} ms added"
                row.met = row.added <= INIT_GOAL_MS
            section.rows.append(row)
    for title, attr in figures[:3] + figures[5:]:
        # The same figures from each round's own bare run: a round's three runs are adjacent in
        # time, so a load that comes and goes during the run cancels out of these differences.
        base = median(getattr(bare, attr))
        for variant in ("hoptrace", "otel"):
            paired = median([v - b for v, b in zip(getattr(samples[variant], attr), getattr(bare, attr))])
            row = Row(
                f"{title}, paired per round: {LABELS[variant]}", "ms", "bare boto3, same round", base, base + paired
            )
            if attr in ("init_ms", "init_cpu_ms") and variant == "hoptrace":
                row.goal = f"≤ {INIT_GOAL_MS:.0f} ms added"
                row.met = row.added <= INIT_GOAL_MS
            section.rows.append(row)
    for title, attr in figures[:3]:
        base = median(getattr(bare, attr))
        otel_added = median(getattr(samples["otel"], attr)) - base
        hop_added = median(getattr(samples["hoptrace"], attr)) - base
        section.rows.append(
            Row(f"{title}, added: hoptrace vs OpenTelemetry", "ms", "OpenTelemetry added", otel_added, hop_added)
        )
    for variant in VARIANTS:
        runs_of = samples[variant].full_gc
        phases = sorted({p for r in runs_of for p in r if p in ("init", "first", "warm")})
        where = ", ".join(
            f"{p} in {sum(1 for r in runs_of if p in r)}/{len(runs_of)} runs "
            f"(median {median([r[p][1] for r in runs_of if p in r]):.1f} ms CPU)"
            for p in phases
        )
        section.notes.append(
            f"{LABELS[variant]}: full garbage collections (generation 2) during {where or 'no timed phase'}. "
            "One falls wherever the interpreter's allocation counts cross its threshold; it costs in "
            "proportion to every live object (boto3's included), so compare `init + first invocation`."
        )
    section.raw = {
        v: {
            k: getattr(s, k)
            for k in (
                "init_ms",
                "first_ms",
                "total_ms",
                "warm_ms",
                "process_ms",
                "init_cpu_ms",
                "first_cpu_ms",
                "total_cpu_ms",
                "full_gc",
            )
        }
        for v, s in samples.items()
    }
    section.raw["paired_init_added_ms"] = {
        v: median([a - b for a, b in zip(samples[v].init_ms, bare.init_ms)]) for v in ("hoptrace", "otel")
    }
    section.raw["hoptrace_settled_last_run"] = samples["hoptrace"].settle[-1] if samples["hoptrace"].settle else None
    return section
