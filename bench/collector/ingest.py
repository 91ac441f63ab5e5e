"""Ingest throughput: concurrent OTLP/HTTP clients against ``hoptrace serve``, beside the floor.

Per backend, in one run and on the same request bodies:

- the floor (``bench.collector.floor``, its own process): decode + batched durable insert of the
  span rows, nothing else;
- the collector (``hoptrace serve``, a child process on loopback): ``clients`` threads, each with
  a keep-alive connection, post the bodies as fast as the answers come back. A span counts once
  its request got 200, i.e. once it is committed. 503/429 answers are retried after
  ``Retry-After`` (capped at 1 s), as an SDK would.

Throughput is spans/s of wall time; because the machine is shared, CPU per span (the collector
process's user + system time, the floor's process time; PostgreSQL's own backends in neither)
is reported too.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.measure import REPO_ROOT, ChildFailed, child_env, progress, python_module_args, run_json_child
from bench.report import Row, Section

from . import bodies as bodies_file
from .serve import Served

PROTOBUF = {"Content-Type": "application/x-protobuf"}
GOALS = {"sqlite": 50_000, "postgresql": 30_000}
GRAPH_WAIT_S = 180.0  # how long the graph's pass may take to catch up after the load
BREAKDOWN_SPANS = 40_000  # enough for per-span figures; the derivation of more is slow on PostgreSQL
NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


@dataclass
class Load:
    """What the clients saw."""

    spans: int = 0
    requests: int = 0
    retries: int = 0
    errors: int = 0
    seconds: float = 0.0
    first_error: str = ""
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.spans / self.seconds if self.seconds > 0 else float("nan")


def post_all(url: str, items: list[tuple[bytes, int]], clients: int, budget_s: float) -> Load:
    """Post every body (or as many as fit in ``budget_s``) from ``clients`` threads."""
    parts = urlsplit(url)
    load = Load()
    lock = threading.Lock()
    next_index = [0]
    deadline = time.monotonic() + budget_s

    def client() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=120)
        try:
            while time.monotonic() < deadline:
                with lock:
                    i = next_index[0]
                    next_index[0] += 1
                if i >= len(items):
                    return
                body, count = items[i]
                while True:
                    t0 = time.perf_counter()
                    conn.request("POST", "/v1/traces", body=body, headers=PROTOBUF)
                    response = conn.getresponse()
                    answer = response.read()
                    ms = (time.perf_counter() - t0) * 1000
                    if response.status in (429, 503):
                        with lock:
                            load.retries += 1
                        time.sleep(min(1.0, float(response.getheader("Retry-After") or 1)))
                        continue
                    with lock:
                        load.requests += 1
                        load.latencies_ms.append(ms)
                        if response.status == 200:
                            load.spans += count
                        else:
                            load.errors += 1
                            load.first_error = load.first_error or f"{response.status}: {answer[:200]!r}"
                    break
        finally:
            conn.close()

    threads = [threading.Thread(target=client, name=f"bench-client-{n}") for n in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    load.seconds = time.perf_counter() - started
    return load


def graph_catch_up(url: str, budget_s: float) -> dict[str, Any]:
    """How far the graph's background pass was behind when the load ended, and how long it took to catch up.

    ``{"behind": spans, "seconds": to catch up, "left": spans still behind at the cap}``; an empty
    dict when the collector derives the graph inside the ingest transaction (no status call).
    """
    deadline = time.monotonic() + budget_s
    started = time.monotonic()
    first: int | None = None
    while True:
        try:
            with urllib.request.urlopen(url + "/api/v1/graph/status", timeout=30) as answer:
                behind = int(json.loads(answer.read())["backlog_spans"])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return {}
            raise
        first = behind if first is None else first
        if behind == 0 or time.monotonic() > deadline:
            return {"behind": first, "seconds": time.monotonic() - started, "left": behind}
        time.sleep(0.5)


def floor(store_url: str, bodies_path: Path, first: int, bodies_per_batch: int, budget_s: float) -> dict[str, Any]:
    payload = {
        "store": store_url,
        "bodies": str(bodies_path),
        "first": first,
        "bodies_per_batch": bodies_per_batch,
        "budget_s": budget_s,
    }
    result, _ = run_json_child(
        python_module_args("bench.collector.floor", payload), env=child_env(), cwd=REPO_ROOT, timeout_s=budget_s + 300
    )
    return result


def measure_collector(
    served: Served, items: list[tuple[bytes, int]], warm: int, clients: int, budget_s: float
) -> tuple[Load, float]:
    """Warm up on the first ``warm`` bodies, then load the rest; returns the load and collector CPU s."""
    post_all(served.url, items[:warm], clients, budget_s)
    cpu0 = served.cpu_seconds()
    load = post_all(served.url, items[warm:], clients, budget_s)
    return load, served.cpu_seconds() - cpu0


def section(backend: str, results: dict[str, Any], spans_planned: int, clients: int, request_spans: int) -> Section:
    """The rows of one backend's ingest run."""
    name = NAMES[backend]
    load: Load = results["load"]
    fl: dict[str, Any] = results["floor"]
    floor_rate = fl["spans"] / fl["seconds"] if fl["seconds"] else float("nan")
    goal = GOALS[backend]
    met = load.rate >= goal and load.rate >= floor_rate / 2
    cpu_us = results["collector_cpu_s"] / load.spans * 1e6 if load.spans else float("nan")
    floor_cpu_us = fl["cpu_seconds"] / fl["spans"] * 1e6 if fl["spans"] else float("nan")
    how = "executemany, synchronous=FULL" if backend == "sqlite" else "binary COPY"
    s = Section(
        f"ingest — {name}",
        f"{clients} concurrent clients post protobuf OTLP bodies of ~{request_spans} spans (the realistic mix of "
        f"`hoptrace.collector.populate`) to `hoptrace serve` on loopback, durable (a 200 means committed); "
        f"{load.spans:,} of {spans_planned:,} planned spans measured after a warm-up. Floor: the same bodies "
        "decoded and their span rows inserted into the same schema in one transaction per "
        f"{results['bodies_per_batch']} bodies ({how}), in a process of its own.",
    )
    s.rows.append(
        Row(
            f"ingest {name}",
            "spans/s",
            "floor: decode + batched insert",
            floor_rate,
            load.rate,
            goal=f"≥ {goal:,}/s, ≥ 0.5× floor",
            met=met,
        )
    )
    graph = results.get("graph") or {}
    if graph:
        until = load.seconds + graph["seconds"]
        s.rows.append(
            Row(f"ingest {name}, until the graph caught up", "spans/s", "floor: decode + batched insert", floor_rate,
                load.spans / until if until else float("nan"),
                note=f"{graph['behind']:,} spans behind at the last ack, {graph['seconds']:.0f} s to derive"
                + (f", {graph['left']:,} still behind at the cap" if graph["left"] else ""))
        )  # fmt: skip
        s.rows.append(
            Row(f"CPU per span, {name}, with the graph's derivation", "µs", "floor CPU per span", floor_cpu_us,
                results["collector_cpu_with_graph_s"] / load.spans * 1e6 if load.spans else float("nan"))
        )  # fmt: skip
    s.rows.append(
        Row(f"CPU per span, {name}", "µs", "floor CPU per span", floor_cpu_us, cpu_us,
            note="collector process; PostgreSQL's own in neither" if backend == "postgresql" else "collector process")
    )  # fmt: skip
    lat = sorted(load.latencies_ms)
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")  # noqa: E731
    s.notes.append(
        f"collector: {load.requests:,} requests, {load.retries} retried after 503/429, {load.errors} failed"
        f"{' (first: ' + load.first_error + ')' if load.first_error else ''}; request latency p50 {p(0.5):.0f} ms, "
        f"p95 {p(0.95):.0f} ms; {results['stored']:,} spans in the store afterwards "
        f"({'all acknowledged spans present' if results['stored'] >= results['acked_total'] else '**MISSING SPANS**'})"
        f"; peak RSS {results['rss_mib']:.0f} MiB"
    )
    s.notes.append(
        f"floor: {fl['spans']:,} spans in {fl['seconds']:.1f} s (decode {fl['decode_seconds']:.1f} s, insert "
        f"{fl['insert_seconds']:.1f} s)"
    )
    s.notes.append(f"load average (1 min) before / after: {results['load_before']} / {results['load_after']}")
    s.details += _breakdown_table(results, fl)
    s.raw = {
        "collector": {k: v for k, v in load.__dict__.items() if k != "latencies_ms"},
        "collector_cpu_s": results["collector_cpu_s"],
        "floor": fl,
        "stored": results["stored"],
        "latencies_ms": load.latencies_ms,
    }
    return s


def _breakdown_table(results: dict[str, Any], fl: dict[str, Any]) -> list[str]:
    """µs per span of each step, in-process, beside the floor's."""
    if "breakdown" not in results:
        return [f"(no breakdown: {results.get('breakdown_error', 'not run')})"]
    b = results["breakdown"]
    n = max(1, b["spans"])
    wall = {k: v / n * 1e6 for k, v in b["seconds"].items()}
    cpu = {k: v / n * 1e6 for k, v in b["cpu_seconds"].items()}
    steps = [
        ("protobuf parse", "parse"),
        ("`normalise` (validate, search terms)", "normalise"),
        ("`store.write`: the ingest transaction (spans, terms, links, graph backlog)", "write"),
    ]
    total_cpu = cpu["parse"] + cpu["normalise"] + cpu["write"]
    total_wall = wall["parse"] + wall["normalise"] + wall["write"]
    if b.get("graph_apart"):  # derived by a background pass, after the acknowledgement
        total_cpu += cpu["graph"]
        total_wall += wall["graph"]
        steps.append(("graph derivation (`graph_sync`: hops, transactions, rollups; after the ack)", "graph"))
    lines = [
        f"In-process breakdown ({b['spans']:,} spans, the same bodies in the same batches, no HTTP, no writer "
        "thread; CPU of this process, and wall time):",
        "",
        "| step | CPU µs/span | share of CPU | wall µs/span |",
        "|---|--:|--:|--:|",
    ]
    lines += [f"| {label} | {cpu[k]:.1f} | {100 * cpu[k] / total_cpu:.0f} % | {wall[k]:.1f} |" for label, k in steps]
    lines += [
        f"| **total** (one core at this CPU cost: {1e6 / total_cpu:,.0f} spans/s) | {total_cpu:.1f} | 100 % "
        f"| {total_wall:.1f} |",
        f"| floor: decode + insert of the span rows | {fl['cpu_seconds'] / max(1, fl['spans']) * 1e6:.1f} | "
        f"| {fl['seconds'] / max(1, fl['spans']) * 1e6:.1f} |",
    ]
    return [*lines, ""]


def loadavg() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def run_backend(
    backend: str,
    urls: dict[str, str],
    items: list[tuple[bytes, int]],
    bodies_path: Path,
    clients: int,
    budget_s: float,
    profile: bool,
) -> dict[str, Any]:
    """Floor, collector, then the in-process breakdown, each on fresh stores of one backend (``urls``)."""
    from hoptrace.collector.store import open_store

    from .serve import collector

    warm = max(clients * 2, len(items) // 20)
    results: dict[str, Any] = {"load_before": loadavg(), "bodies_per_batch": clients}
    progress(f"ingest {backend}: floor on {len(items) - warm} bodies")
    try:
        results["floor"] = floor(urls["floor"], bodies_path, warm, clients, budget_s)
    except ChildFailed as exc:
        raise RuntimeError(f"the {backend} floor failed: {exc}") from None
    progress(f"ingest {backend}: collector, {clients} clients, {len(items) - warm} bodies after {warm} warm-up")
    with collector(urls["collector"], f"ingest-{backend}") as served:
        spy = _start_profile(served.pid, f"collector-ingest-{backend}") if profile else None
        load, cpu_s = measure_collector(served, items, warm, clients, budget_s)
        cpu_at_ack = served.cpu_seconds()
        results["graph"] = graph_catch_up(served.url, min(budget_s, GRAPH_WAIT_S))
        results["collector_cpu_with_graph_s"] = cpu_s + served.cpu_seconds() - cpu_at_ack
        if spy is not None:
            _stop_profile(spy)
        results["rss_mib"] = served.rss_mib()
    results["load_after"] = loadavg()
    results["load"] = load
    results["collector_cpu_s"] = cpu_s
    results["acked_total"] = load.spans + sum(c for _, c in items[:warm])
    store = open_store(urls["collector"])
    try:
        results["stored"] = store.count_spans()
    finally:
        store.close()
    floor_rate = results["floor"]["spans"] / results["floor"]["seconds"]
    progress(f"ingest {backend}: {load.rate:,.0f} spans/s; floor {floor_rate:,.0f} spans/s; breakdown next")
    payload = {
        "store": urls["breakdown"],
        "bodies": str(bodies_path),
        "bodies_per_batch": clients,
        "max_spans": BREAKDOWN_SPANS,
        "budget_s": budget_s / 2,
    }
    try:
        results["breakdown"], _ = run_json_child(
            python_module_args("bench.collector.breakdown", payload), env=child_env(), cwd=REPO_ROOT,
            timeout_s=budget_s + 300,
        )  # fmt: skip
    except ChildFailed as exc:
        results["breakdown_error"] = str(exc)
    return results


def _start_profile(pid: int, name: str) -> Any:
    import shutil
    import subprocess
    import sys

    from bench.instrumentation.profile import PROFILE_DIR

    spy = str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        spy = shutil.which("py-spy") or "py-spy"
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    out = PROFILE_DIR / f"{name}.txt"
    proc = subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "-r",
            "100",
            "-f",
            "raw",
            "--full-filenames",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, out


def _stop_profile(spy: Any) -> None:
    import signal

    proc, _ = spy
    proc.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
    proc.wait(timeout=60)


# Leaves where a thread waits rather than works (py-spy samples idle threads too).
_IDLE = ("Condition.wait", "EpollSelector.select", "Event.wait", "Thread.join", "_worker (")


def profile_summary(name: str, limit: int = 20) -> list[str]:
    """Where the collector's busy time went during ingest: the writer thread, then everything."""
    from bench.instrumentation.profile import PROFILE_DIR, Frame, parse_folded

    path = PROFILE_DIR / f"{name}.txt"
    if not path.exists():
        return [f"(no profile at {path})"]
    stacks = parse_folded(path.read_text())
    busy = {s: n for s, n in stacks.items() if s and not s[-1].func.startswith(_IDLE)}
    total = sum(busy.values()) or 1
    writer = {s: n for s, n in busy.items() if any(f.file.endswith("collector/writer.py") for f in s)}

    def ours(f: Frame) -> bool:
        return f.file.startswith(str(REPO_ROOT)) and "/.venv/" not in f.file

    def label(f: Frame) -> str:
        where = f.file[len(str(REPO_ROOT)) + 1 :] if ours(f) else f.where
        return f"{f.func} ({where})"

    lines = [
        f"**{name}**: {total:,} busy samples at 100 Hz over all threads (idle waits left out), "
        f"{100 * sum(writer.values()) / total:.0f} % of them in the writer thread; folded stacks in "
        f"{path.relative_to(REPO_ROOT)}",
        "",
        "| hoptrace function (inclusive, share of busy samples) | all threads % | writer thread % |",
        "|---|--:|--:|",
    ]
    inclusive: Counter[str] = Counter()
    in_writer: Counter[str] = Counter()
    for stack, n in busy.items():
        for key in {label(f) for f in stack if ours(f)}:
            inclusive[key] += n
            if stack in writer:
                in_writer[key] += n
    for key, n in inclusive.most_common(limit):
        lines.append(f"| `{key}` | {100 * n / total:.1f} | {100 * in_writer[key] / total:.1f} |")
    return [*lines, ""]


def make_bodies(spans: int, request_spans: int, seed: int, path: Path) -> list[tuple[bytes, int]]:
    t0 = time.perf_counter()
    items = bodies_file.make(spans, request_spans, seed)
    bodies_file.save(items, path)
    total = sum(c for _, c in items)
    progress(f"ingest: {len(items)} bodies, {total:,} spans, {sum(len(b) for b, _ in items) / total:.0f} B/span, "
             f"made in {time.perf_counter() - t0:.1f}s")  # fmt: skip
    return items
