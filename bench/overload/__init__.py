"""``python -m bench overload``: five times the sustained ingest rate against ``hoptrace serve``.

Per backend (``--backends``; SQLite, and a throwaway PostgreSQL server), on a fresh store:

1. sustained: ``--clients`` closed-loop clients post bodies of the realistic mix for
   ``--overload-sustain`` seconds; what the collector acknowledges per second is the sustained rate;
2. overload: an open-loop sender offers ``--overload-factor`` (5) times that rate for
   ``--overload-seconds``, from enough connections that a slow answer does not slow the offer;
   every 429/503 is counted, with whether it carried ``Retry-After``; a refused body goes back
   into the pool and is offered again when fresh bodies run out (as an exporter retries);
3. retry: afterwards every body still refused is retried by closed-loop clients honouring
   ``Retry-After``, within ``--overload-retry`` seconds; what is still refused then is counted as
   rejected;
4. count: the collector is stopped (it drains), and every (trace id, span id) of every body it
   acknowledged with a 200 is looked up in the store: zero acknowledged spans may be missing.

The collector's resident memory is sampled through all phases: its peak under overload beside its
peak under the sustained load says whether refusing keeps memory bounded. Requests that failed
without an answer (time-out, reset) are counted apart and not retried: their spans may or may not
be stored, and a retry could store them twice.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sqlite3
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import percentile, progress, tree_memory_mib
from bench.report import Report, Row, Section

PROTOBUF = {"Content-Type": "application/x-protobuf"}
NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
REQUEST_TIMEOUT_S = 30.0


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--overload-factor", type=float, default=5.0, help="offered load ÷ sustained rate (default 5)")
    group.add_argument("--overload-seconds", type=float, default=30.0, help="seconds of overload (default 30)")
    group.add_argument("--overload-sustain", type=float, default=20.0, help="seconds measuring the sustained rate")
    group.add_argument("--overload-retry", type=float, default=180.0, help="seconds for retrying refused bodies")
    group.add_argument(
        "--overload-connections",
        type=int,
        default=1024,
        help="sender connections during overload (default 1024: the collector holds requests until their commit, "
        "so refusals start only once its queue holds --max-pending-spans spans, 400 requests by default)",
    )
    group.add_argument(
        "--overload-max-pending",
        type=int,
        help="the collector's --max-pending-spans (default: its own; quick: one request's spans)",
    )
    group.add_argument(
        "--overload-max-spans", type=int, default=600_000, help="most distinct spans generated for the run"
    )


@dataclass
class Body:
    data: bytes
    spans: int
    index: int


@dataclass
class Phase:
    """What one phase's requests got."""

    name: str
    started: float = 0.0
    seconds: float = 0.0
    sent: int = 0
    sent_spans: int = 0
    acked: int = 0
    acked_spans: int = 0
    refused: dict[int, int] = field(default_factory=dict)  # status -> count
    refused_without_retry_after: int = 0
    other_status: dict[int, int] = field(default_factory=dict)
    no_answer: int = 0
    no_answer_spans: int = 0
    first_problem: str = ""
    latencies_ms: list[float] = field(default_factory=list)  # of acknowledged requests
    late: int = 0  # open loop: sends that started over a second behind schedule
    offered: int = 0  # requests started (open loop: what was offered, answered or not)
    offered_spans: int = 0
    offer_seconds: float = 0.0  # open loop: from the first send to the last one's start (late ones stretch it)

    def as_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "latencies_ms"}
        lat = self.latencies_ms
        out.update({f"latency_p{q}_ms": percentile(lat, q) for q in (50, 95, 99)})
        return out


class Sender:
    """Posts bodies and does the books: acknowledged bodies, refused ones (to retry), unknown ones."""

    def __init__(self, url: str) -> None:
        self.host, _, port = url.removeprefix("http://").partition(":")
        self.port = int(port)
        self.lock = threading.Lock()
        self.acked: list[Body] = []
        self.refused: deque[Body] = deque()
        self.unknown: list[Body] = []

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S)

    def post(
        self, conn: http.client.HTTPConnection, body: Body, phase: Phase
    ) -> tuple[http.client.HTTPConnection, float]:
        """One request; returns the connection to use next and the seconds to wait (Retry-After) if refused."""
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/v1/traces", body=body.data, headers=PROTOBUF)
            response = conn.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            with self.lock:
                phase.sent += 1
                phase.sent_spans += body.spans
                phase.no_answer += 1
                phase.no_answer_spans += body.spans
                phase.first_problem = phase.first_problem or f"no answer: {type(exc).__name__}: {exc}"
                self.unknown.append(body)
            return self.connect(), 0.0
        ms = (time.perf_counter() - t0) * 1000
        status = response.status
        retry_after = response.getheader("Retry-After")
        with self.lock:
            phase.sent += 1
            phase.sent_spans += body.spans
            if status == 200:
                phase.acked += 1
                phase.acked_spans += body.spans
                phase.latencies_ms.append(ms)
                self.acked.append(body)
            elif status in (429, 503):
                phase.refused[status] = phase.refused.get(status, 0) + 1
                if not retry_after:
                    phase.refused_without_retry_after += 1
                self.refused.append(body)
            else:
                phase.other_status[status] = phase.other_status.get(status, 0) + 1
                phase.first_problem = phase.first_problem or f"{status}: {answer[:200]!r}"
                self.unknown.append(body)  # not acknowledged; counted, not retried
        wait = 0.0
        if status in (429, 503):
            try:
                wait = float(retry_after or 1)
            except ValueError:
                wait = 1.0
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = self.connect()
        return conn, wait


class RssSampler:
    """The collector's resident memory (with its graph worker) every ``every`` seconds, tagged with the phase."""

    def __init__(self, pid: int, every: float = 0.25) -> None:
        self.pid = pid
        self.every = every
        self.phase = "idle"
        self.samples: list[tuple[float, str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)
        self._t0 = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            mib = tree_memory_mib(self.pid)
            if mib != mib:  # the collector is gone
                return
            self.samples.append((round(time.monotonic() - self._t0, 2), self.phase, mib))
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def peak(self, phase: str) -> float:
        values = [mib for _, p, mib in self.samples if p == phase]
        return max(values) if values else float("nan")


def closed_loop(sender: Sender, take: Any, phase: Phase, clients: int, seconds: float, honour_retry: bool) -> None:
    """``clients`` threads posting ``take()`` bodies back to back until it gives None or time is up."""
    deadline = time.monotonic() + seconds
    phase.started = time.monotonic()

    def client() -> None:
        conn = sender.connect()
        try:
            while time.monotonic() < deadline:
                body = take()
                if body is None:
                    return
                conn, wait = sender.post(conn, body, phase)
                if wait and honour_retry:
                    time.sleep(min(wait, max(0.0, deadline - time.monotonic())))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, name=f"bench-closed-{n}") for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    phase.seconds = time.monotonic() - phase.started


def open_loop(sender: Sender, take: Any, phase: Phase, connections: int, seconds: float, rate_rps: float) -> None:
    """Send one body every ``1/rate_rps`` seconds whatever the answers, from up to ``connections`` at once."""
    interval = 1.0 / rate_rps
    lock = threading.Lock()
    slot = [0]
    last_start = [0.0]
    phase.started = start = time.monotonic()
    deadline = start + seconds

    def worker() -> None:
        conn = sender.connect()
        try:
            while True:
                with lock:
                    k = slot[0]
                    slot[0] += 1
                at = start + k * interval
                if at >= deadline:
                    return
                delay = at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -1.0:
                    with lock:
                        phase.late += 1
                body = take()
                if body is None:
                    return
                with lock:
                    phase.offered += 1
                    phase.offered_spans += body.spans
                    last_start[0] = time.monotonic()
                conn, _ = sender.post(conn, body, phase)  # the offer does not wait for Retry-After
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, name=f"bench-open-{n}", daemon=True) for n in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    phase.seconds = time.monotonic() - phase.started
    # The offered rate is over the time the sends took to start: late ones (every connection busy) count
    # against it, so a sender that could not keep up shows less than the factor asked for.
    phase.offer_seconds = max(seconds - interval, last_start[0] - start)


def run(args: argparse.Namespace) -> Report:
    quick = bool(getattr(args, "quick", False))
    backends = [b.strip() for b in str(getattr(args, "backends", "sqlite,postgresql")).split(",") if b.strip()]
    clients = int(getattr(args, "clients", 4))
    request_spans = int(getattr(args, "request_spans", 250))
    cfg = {
        "factor": args.overload_factor,
        "sustain_s": 3.0 if quick else args.overload_sustain,
        "overload_s": 4.0 if quick else args.overload_seconds,
        "retry_s": 30.0 if quick else args.overload_retry,
        "connections": 64 if quick else args.overload_connections,
        # Quick (a smoke test, on any machine): a queue of one request, so that requests arriving
        # together are refused whether or not this machine's writer keeps up with 5×.
        "max_pending": request_spans if quick and args.overload_max_pending is None else args.overload_max_pending,
        "max_spans": 30_000 if quick else args.overload_max_spans,
        "clients": clients,
        "request_spans": request_spans,
        "backends": backends,
        "quick": quick,
    }
    report = Report("overload", config=cfg)
    for backend in backends:
        if backend not in NAMES:
            report.warnings.append(f"FAILED overload: unknown backend {backend!r}")
            continue
        try:
            with _store(backend) as (url, count_ids):
                result = run_backend(backend, url, count_ids, cfg)
        except RuntimeError as exc:
            report.warnings.append(f"FAILED overload {backend}: {exc}")
            continue
        report.sections.append(section(backend, result, cfg))
        if result["lost_spans"]:
            report.warnings.append(f"FAILED overload {backend}: {result['lost_spans']:,} acknowledged spans missing")
    return report


@contextmanager
def _store(backend: str) -> Iterator[tuple[str, Any]]:
    """A fresh store URL and a function reading back every stored (trace id, span id)."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="hoptrace-bench-overload-") as tmp:
            path = Path(tmp) / "overload.db"

            def ids_sqlite() -> set[tuple[bytes, bytes]]:
                with closing(sqlite3.connect(path)) as conn:
                    return {(bytes(t), bytes(s)) for t, s in conn.execute("SELECT trace_id, span_id FROM spans")}

            yield f"sqlite:///{path}", ids_sqlite
        return
    import psycopg

    from bench.collector.postgres import database, postgres_server

    with postgres_server() as server:
        url = database(server, "overload", fresh=True)

        def ids_pg() -> set[tuple[bytes, bytes]]:
            with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
                return {(bytes(t), bytes(s)) for t, s in conn.execute("SELECT trace_id, span_id FROM spans")}

        yield url, ids_pg


def run_backend(backend: str, store_url: str, stored_ids: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    from bench.collector.serve import collector
    from hoptrace.collector.populate import SpanMix

    name = NAMES[backend]
    mix = SpanMix.for_spans(cfg["max_spans"], seed=int(time.time()) % 1_000_000, days=1.0)
    pool_lock = threading.Lock()
    # Made before the collector starts, so that making them neither competes with it nor paces the offer.
    started = time.monotonic()
    pool: deque[Body] = deque(
        Body(data, count, k) for k, (data, count) in enumerate(mix.requests(0, mix.traces, cfg["request_spans"]))
    )
    progress(
        f"overload {name}: {len(pool):,} distinct bodies ({mix.spans:,} spans) made in "
        f"{time.monotonic() - started:.0f}s"
    )

    def fresh() -> Body | None:
        with pool_lock:
            return pool.popleft() if pool else None

    serve_args = ["--max-pending-spans", str(cfg["max_pending"])] if cfg["max_pending"] else []
    with collector(store_url, f"overload-{backend}", *serve_args) as served:
        sender = Sender(served.url)
        with RssSampler(served.pid) as rss:
            time.sleep(1.0)
            # 1. sustained rate, closed loop
            rss.phase = "sustained"
            sustained = Phase("sustained")
            progress(f"overload {name}: sustained rate, {cfg['clients']} clients for {cfg['sustain_s']:.0f}s")
            closed_loop(sender, fresh, sustained, cfg["clients"], cfg["sustain_s"], honour_retry=True)
            rate = sustained.acked_spans / sustained.seconds if sustained.seconds else 0.0
            if rate <= 0:
                raise RuntimeError(f"nothing acknowledged in the sustained phase ({sustained.first_problem})")
            # 2. overload, open loop
            target = cfg["factor"] * rate
            per_body = sustained.sent_spans / max(1, sustained.sent)
            rps = target / per_body

            def offer() -> Body | None:
                body = fresh()
                if body is not None:
                    return body
                with sender.lock:  # fresh bodies ran out: offer a refused one again
                    return sender.refused.popleft() if sender.refused else None

            rss.phase = "overload"
            overload = Phase("overload")
            progress(
                f"overload {name}: offering {target:,.0f} spans/s ({cfg['factor']:g}× {rate:,.0f}) for "
                f"{cfg['overload_s']:.0f}s from {cfg['connections']} connections ({len(pool):,} fresh bodies left)"
            )
            open_loop(sender, offer, overload, cfg["connections"], cfg["overload_s"], rps)
            # 3. retry what was refused, honouring Retry-After
            rss.phase = "retry"
            retry = Phase("retry")
            refused_after_overload = len(sender.refused)
            progress(
                f"overload {name}: retrying {refused_after_overload:,} refused bodies for up to {cfg['retry_s']:.0f}s"
            )

            def again() -> Body | None:
                with sender.lock:
                    return sender.refused.popleft() if sender.refused else None

            closed_loop(sender, again, retry, cfg["clients"], cfg["retry_s"], honour_retry=True)
            rss.phase = "after"
            time.sleep(1.0)
        hwm = tree_memory_mib(served.pid, "VmHWM")
    # 4. the collector drained and stopped: every acknowledged span must be in the store
    stored = stored_ids()
    acked_ids = _span_ids(sender.acked)
    lost = len(acked_ids - stored)
    extra = len(stored - acked_ids)
    idle = [mib for _, p, mib in rss.samples if p == "idle"]
    over = [(t, mib) for t, p, mib in rss.samples if p == "overload"]
    half = len(over) // 2
    return {
        "sustained": sustained.as_json(),
        "overload": overload.as_json(),
        "retry": retry.as_json(),
        "sustained_rate": rate,
        "target_rate": target,
        "refused_after_overload": refused_after_overload,
        "still_refused": len(sender.refused),
        "still_refused_spans": sum(b.spans for b in sender.refused),
        "unknown_spans": sum(b.spans for b in sender.unknown),
        "acked_spans": len(acked_ids),
        "stored_spans": len(stored),
        "lost_spans": lost,
        "extra_spans": extra,
        "rss_idle_mib": max(idle) if idle else float("nan"),
        "rss_peak_sustained_mib": rss.peak("sustained"),
        "rss_peak_overload_mib": rss.peak("overload"),
        "rss_peak_overload_first_half_mib": max((m for _, m in over[:half]), default=float("nan")),
        "rss_peak_overload_second_half_mib": max((m for _, m in over[half:]), default=float("nan")),
        "rss_peak_retry_mib": rss.peak("retry"),
        "rss_hwm_mib": hwm,
        "rss_samples": rss.samples,
        "load_average": os.getloadavg()[0],
    }


def _span_ids(bodies: list[Body]) -> set[tuple[bytes, bytes]]:
    """Every (trace id, span id) in these OTLP bodies."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    out: set[tuple[bytes, bytes]] = set()
    for body in bodies:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body.data)
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                out.update((span.trace_id, span.span_id) for span in ss.spans)
    return out


def section(backend: str, r: dict[str, Any], cfg: dict[str, Any]) -> Section:
    name = NAMES[backend]
    sus, over, retry = r["sustained"], r["overload"], r["retry"]
    offered = over["offered_spans"] / over["offer_seconds"] if over["offer_seconds"] else float("nan")
    goodput = over["acked_spans"] / over["seconds"] if over["seconds"] else float("nan")
    refused = sum(over["refused"].values())
    s = Section(
        f"overload — {name}, {cfg['factor']:g}× the sustained rate",
        f"`hoptrace serve` on a fresh {name} store: {cfg['clients']} closed-loop clients for {sus['seconds']:.0f} s "
        f"give the sustained rate; then an open-loop sender offers {cfg['factor']:g}× it for {over['seconds']:.0f} s "
        f"from {cfg['connections']} connections (bodies of ~{cfg['request_spans']} spans of the realistic mix), "
        "refused bodies are retried afterwards honouring Retry-After, the collector is stopped and every span of "
        "every acknowledged body is looked up in the store. RSS sampled every 0.25 s.",
    )
    s.rows = [
        Row(
            "offered during overload",
            "spans/s",
            "sustained (acknowledged)",
            r["sustained_rate"],
            offered,
            goal=f"{cfg['factor']:g}× (the test's own load)",
            met=offered >= 0.9 * cfg["factor"] * r["sustained_rate"],
        ),
        Row("acknowledged during overload", "spans/s", "sustained (acknowledged)", r["sustained_rate"], goodput),
        Row(
            "acknowledged request p99 during overload",
            "ms",
            "p99 sustained",
            sus["latency_p99_ms"],
            over["latency_p99_ms"],
        ),
        Row(
            "peak RSS during overload",
            "MiB",
            "peak RSS during sustained load",
            r["rss_peak_sustained_mib"],
            r["rss_peak_overload_mib"],
        ),
        Row(
            "peak RSS, second half of the overload",
            "MiB",
            "first half",
            r["rss_peak_overload_first_half_mib"],
            r["rss_peak_overload_second_half_mib"],
            goal="bounded: stops growing (≤ 1.1× first half)",
            met=r["rss_peak_overload_second_half_mib"] <= 1.1 * r["rss_peak_overload_first_half_mib"],
        ),
        Row(
            "spans in the store afterwards (acknowledged ones)",
            "spans",
            "acknowledged",
            r["acked_spans"],
            r["acked_spans"] - r["lost_spans"],
            goal="0 lost",
            met=r["lost_spans"] == 0,
        ),
    ]
    refusals = ", ".join(f"{n:,} × {code}" for code, n in sorted(over["refused"].items())) or "none"
    s.notes += [
        f"overload: {over['offered']:,} requests ({over['offered_spans']:,} spans) offered in "
        f"{over['offer_seconds']:.0f} s (answers waited for until {over['seconds']:.0f} s), {over['acked']:,} "
        f"acknowledged, {refused:,} refused: {refusals} ({over['refused_without_retry_after']} without Retry-After), "
        f"{sum(over['other_status'].values())} other answers {over['other_status'] or ''}, {over['no_answer']} "
        f"without an answer; {over['late']} sends started over 1 s behind schedule",
        f"retry: {r['refused_after_overload']:,} refused bodies retried in {retry['seconds']:.0f} s: "
        f"{retry['acked']:,} acknowledged, {sum(retry['refused'].values()):,} refused again "
        f"({retry['refused_without_retry_after']} without Retry-After); {r['still_refused']:,} bodies "
        f"({r['still_refused_spans']:,} spans) still refused at the end, counted as rejected",
        f"store afterwards: {r['stored_spans']:,} spans; of the {r['acked_spans']:,} acknowledged, "
        f"{r['lost_spans']:,} missing; {r['extra_spans']:,} stored spans were never acknowledged (requests without "
        f"an answer or a non-200: {r['unknown_spans']:,} spans)",
        f"RSS: idle {r['rss_idle_mib']:.0f} MiB, sustained peak {r['rss_peak_sustained_mib']:.0f}, overload peak "
        f"{r['rss_peak_overload_mib']:.0f}, retry peak {r['rss_peak_retry_mib']:.0f}, high-water mark "
        f"{r['rss_hwm_mib']:.0f} MiB",
        f"sustained: {sus['acked_spans']:,} spans in {sus['seconds']:.1f} s, request p50 "
        f"{sus['latency_p50_ms']:.0f} ms; overload: acknowledged request p50 {over['latency_p50_ms']:.0f} ms; "
        f"load average (1 min) at the end {r['load_average']:.2f}",
    ]
    s.raw = {k: v for k, v in r.items()}
    return s
