"""``python -m bench phoenix``: Arize Phoenix fed the same spans as hoptrace, in the same run.

Phoenix (a Python OpenTelemetry backend on SQLite or PostgreSQL) is installed from PyPI into a
virtualenv of its own (``bench/out/phoenix-venv``, made on the first run; nothing of it enters
hoptrace's environment), started on loopback with a fresh SQLite working directory, and sent the
collector ingest bench's bodies (the realistic mix, ``--request-spans`` spans each) by
``--clients`` concurrent OTLP/HTTP clients, the same client code as ``bench collector``. Then
``hoptrace serve`` on a fresh SQLite store gets the same bodies the same way.

Phoenix answers 200 before it stores (the spans go to an in-memory queue that a background task
writes), so its figure is spans *stored* per second: from the first request until its database
holds every acknowledged span (or stops growing), read from Phoenix's ``spans`` table. hoptrace
answers 200 after its commit, so for it acknowledged = stored; its store is counted afterwards too.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from bench.measure import Budget, child_env, free_port, progress, tree_memory_mib, wait_until_answers
from bench.report import OUT_DIR, Report, Row, Section

PHOENIX_VERSION = "20.26.1"  # what PyPI served when this was written; --phoenix-version picks another
VENV = OUT_DIR / "phoenix-venv"
LAUNCH = Path(__file__).resolve().parent / "launch.py"
INSTALL_TIMEOUT_S = 1500.0
GOAL_RATIO = 100.0  # issue 7: ingest ≥ 100× Phoenix


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--phoenix-version", default=PHOENIX_VERSION, help=f"arize-phoenix to install (default {PHOENIX_VERSION})"
    )
    group.add_argument("--phoenix-spans", type=int, default=20_000, help="spans sent to each of Phoenix and hoptrace")
    group.add_argument("--phoenix-budget", type=float, default=420.0, help="seconds Phoenix may take to store them")


def run(args: argparse.Namespace) -> Report:
    from bench.collector import bodies

    quick = bool(getattr(args, "quick", False))
    spans = 2_000 if quick else max(500, args.phoenix_spans)
    clients = int(getattr(args, "clients", 4))
    request_spans = int(getattr(args, "request_spans", 250))
    budget_s = 90.0 if quick else args.phoenix_budget
    report = Report(
        "phoenix",
        config={
            "spans": spans,
            "clients": clients,
            "request_spans": request_spans,
            "quick": quick,
            "phoenix_version": args.phoenix_version,
            "budget_s": budget_s,
        },
    )
    python = ensure_phoenix(args.phoenix_version)
    items = bodies.make(spans, request_spans, seed=7)
    total = sum(count for _, count in items)
    load_before = os.getloadavg()[0]
    progress(f"phoenix: {len(items)} bodies, {total:,} spans to Phoenix {args.phoenix_version}")
    phoenix = feed_phoenix(python, items, clients, Budget(budget_s))
    progress(
        f"phoenix: {phoenix['stored']:,} of {phoenix['acknowledged']:,} acknowledged spans stored in "
        f"{phoenix['seconds']:.1f}s; now hoptrace serve (SQLite) with the same bodies"
    )
    ours = feed_hoptrace(items, clients, Budget(max(60.0, budget_s)))
    load_after = os.getloadavg()[0]
    report.sections.append(section(phoenix, ours, total, clients, request_spans, args.phoenix_version))
    report.sections[-1].notes.append(f"load average (1 min) before / after: {load_before:.2f} / {load_after:.2f}")
    if phoenix["stored"] < phoenix["acknowledged"]:
        report.warnings.append(
            f"Phoenix stored {phoenix['stored']:,} of the {phoenix['acknowledged']:,} spans it acknowledged "
            f"within the budget ({budget_s:.0f} s)"
        )
    if ours["stored"] < ours["acknowledged"]:
        report.warnings.append(
            f"FAILED hoptrace stored {ours['stored']:,} of {ours['acknowledged']:,} acknowledged spans"
        )
    return report


def ensure_phoenix(version: str) -> Path:
    """Phoenix's interpreter in its own virtualenv, installed from PyPI when missing or of another version."""
    python = VENV / "bin" / "python"
    if _installed_version(python) == version:
        return python
    if not python.exists():
        progress(f"phoenix: creating {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
    log = OUT_DIR / "phoenix-install.log"
    progress(f"phoenix: pip install arize-phoenix=={version} into {VENV} (once; log in {log})")
    with log.open("wb") as out:
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", f"arize-phoenix=={version}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
    if done.returncode != 0 or _installed_version(python) != version:
        tail = log.read_text(errors="replace").splitlines()[-10:]
        raise RuntimeError(f"installing arize-phoenix=={version} failed ({done.returncode}):\n" + "\n".join(tail))
    return python


def _installed_version(python: Path) -> str | None:
    if not python.exists():
        return None
    done = subprocess.run(
        [str(python), "-c", "from importlib.metadata import version; print(version('arize-phoenix'))"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else None


@contextmanager
def phoenix_server(python: Path, working_dir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Phoenix serving on 127.0.0.1 (HTTP only) with its SQLite database in ``working_dir``."""
    port = free_port()
    log = OUT_DIR / "phoenix-serve.log"
    env = child_env(
        {
            "PHOENIX_WORKING_DIR": str(working_dir),
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(port),
            "PHOENIX_GRPC_PORT": str(free_port()),  # unused: launch.py keeps gRPC off
            "PHOENIX_TELEMETRY_ENABLED": "false",
        },
        drop_prefixes=("OTEL_", "HOPTRACE_", "PHOENIX_"),
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(python), str(LAUNCH)], env=env, cwd=str(working_dir), stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(proc, url + "/healthz", "Phoenix", 180.0, log)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def stored_spans(db: Path) -> int:
    """Spans in Phoenix's SQLite database (0 before it made its tables)."""
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
            return int(conn.execute("SELECT count(*) FROM spans").fetchone()[0])
    except sqlite3.Error:
        return 0


def feed_phoenix(python: Path, items: list[tuple[bytes, int]], clients: int, budget: Budget) -> dict[str, Any]:
    """Post the bodies to Phoenix, then wait (bounded) until it stored what it acknowledged."""
    from bench.collector.ingest import post_all

    with tempfile.TemporaryDirectory(prefix="hoptrace-bench-phoenix-") as tmp:
        db = Path(tmp) / "phoenix.db"
        with phoenix_server(python, Path(tmp)) as (url, proc):
            started = time.monotonic()
            load = post_all(url, items, clients, budget.left())
            timeline: list[tuple[float, int]] = []
            stored, last_change = 0, time.monotonic()
            while True:  # until all are stored, the budget is spent, or nothing moved for 30 s
                now_stored = stored_spans(db)
                now = time.monotonic()
                timeline.append((round(now - started, 2), now_stored))
                if now_stored != stored:
                    stored, last_change = now_stored, now
                if stored >= load.spans or budget.expired() or now - last_change > 30 or proc.poll() is not None:
                    break
                time.sleep(0.5)
            done_at = last_change if stored else time.monotonic()
            rss = tree_memory_mib(proc.pid, "VmHWM")
    return {
        "acknowledged": load.spans,
        "stored": stored,
        "post_seconds": load.seconds,
        "seconds": max(1e-9, done_at - started),
        "requests": load.requests,
        "retries": load.retries,
        "errors": load.errors,
        "first_error": load.first_error,
        "timeline": timeline,
        "rss_mib": rss,
    }


def feed_hoptrace(items: list[tuple[bytes, int]], clients: int, budget: Budget) -> dict[str, Any]:
    """The same bodies, the same clients, to ``hoptrace serve`` on a fresh SQLite store."""
    from bench.collector.ingest import post_all
    from bench.collector.serve import collector
    from hoptrace.collector.store import open_store

    with tempfile.TemporaryDirectory(prefix="hoptrace-bench-phoenix-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'hoptrace.db'}"
        with collector(url, "phoenix-baseline") as served:
            load = post_all(served.url, items, clients, budget.left())
            rss = tree_memory_mib(served.pid, "VmHWM")
        store = open_store(url)
        try:
            stored = store.count_spans()
        finally:
            store.close()
    return {
        "acknowledged": load.spans,
        "stored": stored,
        "seconds": load.seconds,
        "requests": load.requests,
        "retries": load.retries,
        "errors": load.errors,
        "first_error": load.first_error,
        "rss_mib": rss,
    }


def section(
    phoenix: dict[str, Any], ours: dict[str, Any], total: int, clients: int, request_spans: int, version: str
) -> Section:
    phoenix_rate = phoenix["stored"] / phoenix["seconds"]
    ack_rate = phoenix["acknowledged"] / phoenix["post_seconds"] if phoenix["post_seconds"] > 0 else float("nan")
    our_rate = ours["stored"] / ours["seconds"] if ours["seconds"] > 0 else float("nan")
    ratio = our_rate / phoenix_rate if phoenix_rate > 0 else float("nan")
    s = Section(
        f"ingest against Arize Phoenix {version} (SQLite)",
        f"{total:,} spans of the realistic mix in protobuf OTLP/HTTP bodies of ~{request_spans} spans, posted by "
        f"{clients} concurrent keep-alive clients (retrying after 503/429), first to Phoenix (own virtualenv, "
        "fresh SQLite working directory, loopback), then to `hoptrace serve` on a fresh SQLite store. Phoenix "
        "acknowledges before it stores: its figure is spans in its database per second from the first request "
        "until the last one was stored.",
    )
    s.rows = [
        Row(
            "hoptrace ingest, SQLite (acknowledged = committed)",
            "spans/s",
            "Phoenix, stored",
            phoenix_rate,
            our_rate,
            goal=f"≥ {GOAL_RATIO:.0f}× Phoenix",
            met=bool(ratio >= GOAL_RATIO) if ratio == ratio else None,
        ),
        Row("Phoenix, acknowledged (200 before storing)", "spans/s", "Phoenix, stored", phoenix_rate, ack_rate),
        Row(
            "peak RSS, hoptrace serve (with its graph worker)",
            "MiB",
            "peak RSS, Phoenix",
            phoenix["rss_mib"],
            ours["rss_mib"],
        ),
    ]
    s.notes += [
        f"Phoenix: {phoenix['acknowledged']:,} spans acknowledged in {phoenix['post_seconds']:.1f} s "
        f"({phoenix['requests']} requests, {phoenix['retries']} retried after 503/429, {phoenix['errors']} failed"
        f"{': ' + phoenix['first_error'] if phoenix['first_error'] else ''}); {phoenix['stored']:,} in its "
        f"database after {phoenix['seconds']:.1f} s",
        f"hoptrace: {ours['acknowledged']:,} spans acknowledged in {ours['seconds']:.1f} s ({ours['requests']} "
        f"requests, {ours['retries']} retried after 503/429, {ours['errors']} failed); {ours['stored']:,} in the "
        "store afterwards",
    ]
    s.raw = {"phoenix": phoenix, "hoptrace": ours}
    return s
