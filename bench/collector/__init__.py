"""``python -m bench collector``: what the collector sustains and how fast it answers.

1. ingest — spans/s that concurrent OTLP/HTTP clients get durably stored by ``hoptrace serve``
   on SQLite and on PostgreSQL, beside the floor measured in the same run on the same bodies:
   protobuf decode + batched insert of the span rows (``ingest``);
2. query latency — trace fetch and label search p50/p95 over the HTTP API with millions of spans
   stored, beside a ``/healthz`` round trip (``query``).

The PostgreSQL server is a throwaway child of the run (``postgres``); populated query stores
are kept in ``bench/out/collector/stores/`` for the next run.
"""

from __future__ import annotations

import argparse
import secrets
import time
from pathlib import Path

from bench.measure import Budget, progress
from bench.report import OUT_DIR, Report, Section

SECTIONS = ("ingest", "query")
BACKENDS = ("sqlite", "postgresql")
WORK = OUT_DIR / "collector"


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--collector-sections", default=",".join(SECTIONS), help="comma-separated subset of ingest,query"
    )
    group.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated subset of sqlite,postgresql")
    group.add_argument("--ingest-spans", type=int, default=200_000, help="spans per ingest variant (default 200000)")
    group.add_argument("--clients", type=int, default=4, help="concurrent OTLP/HTTP clients (default 4)")
    group.add_argument("--request-spans", type=int, default=250, help="spans per OTLP request (default 250)")
    group.add_argument(
        "--sizes",
        default="100k",
        help="stored spans for the query section, e.g. 1M,10M (default 100k; populated stores are kept in "
        "bench/out/collector/stores/ and reused)",
    )
    group.add_argument("--queries", type=int, default=300, help="query rounds per store (default 300)")
    group.add_argument(
        "--collector-budget", type=float, default=1800.0, help="seconds the loads may take, populating aside"
    )


def run(args: argparse.Namespace) -> Report:
    from . import ingest, query

    sections = _subset(args.collector_sections, SECTIONS, "--collector-sections")
    backends = _subset(args.backends, BACKENDS, "--backends")
    quick = bool(getattr(args, "quick", False))
    ingest_spans = 20_000 if quick else max(1000, args.ingest_spans)
    queries = 50 if quick else max(10, args.queries)
    sizes = [query.parse_size(s) for s in args.sizes.split(",") if s.strip()]
    profile = bool(getattr(args, "profile", False))
    report = Report(
        "collector",
        config={
            "sections": sections,
            "backends": backends,
            "ingest_spans": ingest_spans,
            "clients": args.clients,
            "request_spans": args.request_spans,
            "sizes": sizes,
            "queries": queries,
            "quick": quick,
        },
    )
    budget = Budget(args.collector_budget)
    started = time.monotonic()
    if "ingest" in sections:
        seed = secrets.randbits(31)  # fresh ids every run: stores are fresh too, but no accidental reuse
        body_path = WORK / "ingest-bodies.bin"
        items = ingest.make_bodies(ingest_spans, args.request_spans, seed, body_path)
        for backend in backends:
            variant_budget = max(30.0, budget.left() / (2 * len(backends)))
            try:
                results = _ingest_backend(backend, items, body_path, args.clients, variant_budget, profile)
            except RuntimeError as exc:
                report.warnings.append(f"FAILED ingest {backend}: {exc}")
                continue
            report.sections.append(ingest.section(backend, results, ingest_spans, args.clients, args.request_spans))
            if profile:
                report.sections[-1].details += ingest.profile_summary(f"collector-ingest-{backend}")
    if "query" in sections:
        try:
            report.sections += query.run(backends, sizes, queries, budget, report.warnings)
        except RuntimeError as exc:
            report.warnings.append(f"FAILED query: {exc}")
    report.config["seconds"] = round(time.monotonic() - started, 1)
    report.config["code"] = _code_state()
    report.sections.append(
        Section("code measured", "The checkout the collector ran from (figures move with the store's write path).",
                notes=[report.config["code"]])
    )  # fmt: skip
    return report


def _code_state() -> str:
    """The commit, and the files changed in the working tree (other people's edits in progress)."""
    import subprocess

    from bench.measure import REPO_ROOT

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        return done.stdout.rstrip("\n")

    head = git("log", "-1", "--format=%h %s")[:100]
    dirty = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return f"commit {head}; " + (f"uncommitted changes in {', '.join(dirty)}" if dirty else "no uncommitted changes")


def _ingest_backend(
    backend: str, items: list[tuple[bytes, int]], body_path: Path, clients: int, budget_s: float, profile: bool
) -> dict[str, object]:
    from . import ingest

    if backend == "sqlite":
        tmp = WORK / "ingest"
        tmp.mkdir(parents=True, exist_ok=True)
        for f in tmp.glob("*.db*"):
            f.unlink()
        urls = {name: f"sqlite:///{tmp / name}.db" for name in _STORES}
        return ingest.run_backend(backend, urls, items, body_path, clients, budget_s, profile)
    from .postgres import database, postgres_server

    with postgres_server() as server:
        progress(f"ingest postgresql: throwaway server at {server}")
        urls = {name: database(server, name, fresh=True) for name in _STORES}
        return ingest.run_backend(backend, urls, items, body_path, clients, budget_s, profile)


# The fresh stores one backend's ingest run writes to.
_STORES = ("collector", "floor", "breakdown")


def _subset(text: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    unknown = set(chosen) - set(allowed)
    if unknown:
        raise SystemExit(f"{flag}: unknown {sorted(unknown)}; choose from {', '.join(allowed)}")
    return chosen
