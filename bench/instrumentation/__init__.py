"""``python -m bench instrumentation``: what hoptrace's instrumentation costs a Lambda function.

Five sections, each beside a baseline measured in the same run:

1. cold start — import + init in fresh processes: bare boto3, + hoptrace, + OpenTelemetry's own
   botocore and Lambda instrumentation (``coldstart``);
2. one SQS SendMessage — client-side cost with the network short-circuited, and end to end
   against ``moto_server`` on loopback (``aws_call``);
3. the end-of-invocation flush to an OTLP/HTTP endpoint on loopback (``flush``);
4. instructions per SendMessage counted by valgrind (``instructions``): the SendMessage figure
   the machine's load cannot move;
5. the invocation's start announcement, with the collector up and down (``announce``).

This module stays light: worker processes import the package too.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from bench.measure import Budget, progress
from bench.report import Report, Section

SECTIONS = ("coldstart", "aws_call", "flush", "instructions", "announce")


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--endpoint",
        metavar="URL",
        help="OTLP/HTTP endpoint (base URL, e.g. http://127.0.0.1:4318) to export to instead of the "
        "built-in loopback sink; use it for the real collector",
    )
    group.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    group.add_argument(
        "--aws",
        choices=("stub", "moto", "both"),
        default="both",
        help="SendMessage answered locally (client cost only), by moto_server on loopback, or both",
    )
    group.add_argument("--cold-runs", type=int, default=21, help="fresh processes per cold-start variant (≥ 20)")
    group.add_argument("--rounds", type=int, default=5, help="worker processes per variant for SendMessage")
    group.add_argument("--invocations", type=int, default=200, help="invocations per flush variant")
    group.add_argument("--profile", action="store_true", help="also profile hoptrace; text into bench/out/profile/")
    group.add_argument("--time-budget", type=float, default=170.0, help="seconds the whole group may take")


@contextmanager
def _endpoint(given: str | None) -> Iterator[str]:
    if given:
        yield given.rstrip("/")
        return
    from .servers import otlp_sink

    with otlp_sink() as url:
        progress(f"OTLP sink listening on {url}")
        yield url


def run(args: argparse.Namespace) -> Report:
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    quick = bool(getattr(args, "quick", False))
    cold_runs = 5 if quick else max(1, args.cold_runs)
    rounds = 2 if quick else max(1, args.rounds)
    invocations = 40 if quick else max(1, args.invocations)
    report = Report(
        "instrumentation",
        config={
            "sections": sections,
            "endpoint": args.endpoint or "built-in loopback sink",
            "aws": args.aws,
            "cold_runs": cold_runs,
            "rounds": rounds,
            "invocations": invocations,
            "quick": quick,
        },
    )
    budget = Budget(args.time_budget)
    started = time.monotonic()
    needs_endpoint = {"coldstart", "flush", "announce"} & set(sections)
    with _endpoint(args.endpoint) if needs_endpoint else nullcontext("") as endpoint:
        if "coldstart" in sections:
            from . import coldstart

            # Cold start gets at most about half of what is left, the rest share the remainder.
            load = _loadavg()
            section = coldstart.run(cold_runs, endpoint, Budget(budget.left() * 0.5), report.warnings)
            report.sections.append(_with_load(section, load))
        if "aws_call" in sections:
            from . import aws_call

            modes = ("stub", "moto") if args.aws == "both" else (args.aws,)
            for mode in modes:
                load = _loadavg()
                section = aws_call.run(mode, rounds, quick, Budget(budget.left() * 0.5), report.warnings)
                report.sections.append(_with_load(section, load))
        if "flush" in sections:
            from . import flush

            load = _loadavg()
            section = flush.run(endpoint, invocations, Budget(budget.left() * 0.7), report.warnings)
            report.sections.append(_with_load(section, load))
        if "announce" in sections:
            from . import announce

            load = _loadavg()
            section = announce.run(endpoint, invocations, Budget(budget.left()), report.warnings)
            report.sections.append(_with_load(section, load))
        if "instructions" in sections:
            from . import instructions

            load = _loadavg()
            counted = instructions.run(quick, _bare_cpu_us(report), report.warnings)
            if counted is not None:
                report.sections.append(_with_load(counted, load))
        if args.profile:
            from . import profile

            report.sections.append(profile.run(sections, endpoint, report.warnings))
    report.config["seconds"] = round(time.monotonic() - started, 1)
    return report


def _bare_cpu_us(report: Report) -> float | None:
    """The bare SendMessage's CPU µs per call measured by ``aws_call`` (stub) in this run, if it ran."""
    for section in report.sections:
        for row in section.rows:
            if row.name == "SendMessage CPU: hoptrace":
                return row.baseline
    return None


def _loadavg() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def _with_load(section: Section, before: str) -> Section:
    """Note the machine's load around a section: ratios compare across runs, absolute figures less so."""
    section.notes.append(f"load average (1 min) before / after: {before} / {_loadavg()}")
    return section
