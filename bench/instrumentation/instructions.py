"""Instructions per SQS SendMessage, counted by valgrind's cachegrind: a figure the load cannot move.

The timed SendMessage rows (``aws_call``) swing by ±20 µs between runs on this shared 2-core
machine, more than the goal they are read against (≤ 20 µs added). Counting instructions does not
depend on what else the machine runs: each worker below runs under ``valgrind --tool=cachegrind``
twice, once with no timed calls and once with ``CALLS`` (in invocations of ``PER_INVOCATION``
calls), and the difference divided by ``CALLS`` is what one call executes: its share of the
invocation's start and end, and garbage collections, included. Two runs of the same variant
agree within about ±15k instructions per call (threads, the clock, uuids), about 1 % of a call.

Variants, each in processes of its own (as in ``aws_call``): ``bare`` (an uninstrumented client),
``hoptrace`` (the traced client, the calls inside traced Lambda invocations, their spans handed
to a counting exporter when each ends) and ``otel`` (OpenTelemetry's ``BotocoreInstrumentor``,
the calls inside SDK spans, ``force_flush`` after each). Calls are answered by the stub
(``sqs_stub``), whose parsing of the attributes an instrumentation adds is counted in that
instrumentation's figure (a real SQS does it server side), so the traced figures lean high.

Instructions are turned into microseconds at the rate of the bare call measured by ``aws_call`` in
the same run (the bare call's µs ÷ its instructions): an estimate that assumes the added code runs
at the bare call's instructions per second.
"""

from __future__ import annotations

import gc
import json
import re
import shutil
import subprocess
import sys
from typing import Any

from bench.measure import REPO_ROOT, progress
from bench.report import Row, Section

from . import lambda_env
from .aws_call import ADDED_GOAL_US, VS_OTEL_GOAL, worker_env

CALLS = 1000
QUICK_CALLS = 100
PER_INVOCATION = 10  # calls per traced invocation, as a function makes them: its spans end with it
VARIANTS = ("bare", "hoptrace", "otel")
LABELS = {"bare": "bare boto3", "hoptrace": "hoptrace", "otel": "OpenTelemetry"}
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def worker(variant: str, calls: int) -> None:
    """Run in a fresh process under valgrind: set up ``variant``, warm it, then make ``calls`` calls."""
    from . import sqs_stub
    from .aws_call import _Instrumentation

    setup = _Instrumentation("otel" if variant == "bare" else variant, None)
    if variant == "bare":
        client = setup.bare
    else:
        setup.on()
        client = setup.traced
    sqs_stub.short_circuit(client)
    body = json.dumps(lambda_env.EVENT)

    def batch(event: Any, context: Any) -> int:
        for _ in range(int(event["calls"])):
            client.send_message(QueueUrl=lambda_env.QUEUE_URL, MessageBody=body)
        return 0

    run = batch if variant == "bare" else setup.invoke(batch)
    context = lambda_env.LambdaContext("bench-instructions")
    run({"calls": 3}, context)  # first calls load and cache
    gc.collect()
    for _ in range(calls // PER_INVOCATION):
        run({"calls": PER_INVOCATION}, context)


def count(variant: str, calls: int) -> int:
    """Instructions a whole worker process executes (valgrind's ``I refs``)."""
    args = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
            sys.executable, "-m", "bench.instrumentation.instructions", variant, str(calls)]  # fmt: skip
    env = {**worker_env(variant), "PYTHONHASHSEED": "0"}  # the same string hashes in both processes
    done = subprocess.run(args, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, check=False)
    found = _REFS.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"cachegrind {variant} {calls}: exit {done.returncode}: {done.stderr[-500:]}")
    return int(found.group(1).replace(",", ""))


def run(quick: bool, bare_us: float | None, warnings: list[str]) -> Section | None:
    """Instructions per call of each variant; None (with a warning) when valgrind is not installed."""
    if shutil.which("valgrind") is None:
        warnings.append("instructions: valgrind is not installed (apt-get install valgrind); section skipped")
        return None
    calls = QUICK_CALLS if quick else CALLS
    per_call: dict[str, float] = {}
    for variant in VARIANTS:
        progress(f"instructions: {variant} under cachegrind (2 processes)")
        per_call[variant] = (count(variant, calls) - count(variant, 0)) / calls
    bare = per_call["bare"]
    section = Section(
        "SQS SendMessage, instructions (cachegrind)",
        f"Instructions one SendMessage executes, answered by the stub: (a worker process making {calls} calls "
        f"in invocations of {PER_INVOCATION} − the same process making none) ÷ {calls}, under "
        "`valgrind --tool=cachegrind`; independent of the machine's load (repeat runs agree within about ±15k per "
        "call). Each call's share of its invocation's start and end (spans handed to a counting exporter) is "
        "included; so are garbage collections. See `bench/instrumentation/instructions.py`.",
    )
    added = {v: per_call[v] - bare for v in ("hoptrace", "otel")}
    for variant in ("hoptrace", "otel"):
        section.rows.append(Row(f"SendMessage instructions: {LABELS[variant]}", "instr.", "bare boto3", bare,
                                per_call[variant]))  # fmt: skip
    section.rows.append(
        Row(
            "added instructions per call: hoptrace vs OpenTelemetry",
            "instr.",
            "OpenTelemetry added",
            added["otel"],
            added["hoptrace"],
            goal=f"≥ {VS_OTEL_GOAL:g}× less (ratio ≤ {1 / VS_OTEL_GOAL:.2f})",
            met=added["hoptrace"] * VS_OTEL_GOAL <= added["otel"],
        )
    )
    if bare_us:
        rate = bare_us / bare  # µs per instruction of the bare call, this run
        section.rows.append(
            Row(
                "SendMessage added by hoptrace, at the bare call's instructions per µs",
                "µs",
                "bare boto3",
                bare_us,
                bare_us + added["hoptrace"] * rate,
                goal=f"≤ {ADDED_GOAL_US:g} µs added",
                met=added["hoptrace"] * rate <= ADDED_GOAL_US,
            )
        )
        section.notes.append(f"bare call: {bare_us:.1f} µs (aws_call, stub, this run) for {bare:,.0f} instructions")
    section.raw["instructions_per_call"] = per_call
    return section


if __name__ == "__main__":
    worker(sys.argv[1], int(sys.argv[2]))
