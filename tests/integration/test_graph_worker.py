"""``hoptrace serve`` derives the graph in a child process (``collector.graph_worker``).

The worker must start with the collector, derive what ingest queued, stop with it (SIGTERM),
and not outlive a collector killed with ``kill -9``; ``--graph-pass thread`` keeps the pass in
the collector's own process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.collector_server import CollectorProcess
from tests.otlp_build import request as otlp_request
from tests.otlp_build import span
from tests.pg import create_database, drop_database

PROTO = {"Content-Type": "application/x-protobuf"}


def children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        kids += [int(k) for k in task.read_text().split()]
    return kids


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to read its status counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting until {what}")
        time.sleep(0.1)


def workers(collector: CollectorProcess) -> list[int]:
    return [kid for kid in children(collector.pid) if "hoptrace.collector.graph_worker" in cmdline(kid)]


def post_and_wait_for_the_graph(collector: CollectorProcess) -> None:
    """Post a few spans, then wait until the graph's backlog is empty again."""
    spans = [span(f"op{i}", start_ns=time.time_ns() - 10**9, attributes={"hoptrace.label.k": "v"}) for i in range(5)]
    with collector.client() as http:
        answer = http.post("/v1/traces", content=otlp_request(spans, "svc").SerializeToString(), headers=PROTO)
        assert answer.status_code == 200, answer.text
        wait_until(lambda: http.get("/api/v1/graph/status").json()["backlog_spans"] == 0, 30, "the graph caught up")
        assert http.get("/api/v1/graph/status").json()["backlog_spans"] == 0


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'g.db'}"
        return
    server: str = request.getfixturevalue("postgres_url")
    url = create_database(server)
    try:
        yield url
    finally:
        drop_database(server, url)


def test_serve_derives_the_graph_in_a_child_that_stops_with_it(store_url: str) -> None:
    url = store_url
    collector = CollectorProcess(url).start()
    try:
        wait_until(lambda: len(workers(collector)) == 1, 30, "the graph worker started")
        (worker,) = workers(collector)
        post_and_wait_for_the_graph(collector)
        assert alive(worker)
        assert collector.stop() == 0
        wait_until(lambda: not alive(worker), 10, "the graph worker stopped with the collector")
    finally:
        collector.kill()


def test_a_graph_worker_does_not_outlive_a_collector_killed_with_kill_9(tmp_path: Path) -> None:
    collector = CollectorProcess(f"sqlite:///{tmp_path / 'g.db'}").start()
    try:
        wait_until(lambda: len(workers(collector)) == 1, 30, "the graph worker started")
        (worker,) = workers(collector)
        collector.kill()
        wait_until(lambda: not alive(worker), 10, "the orphaned graph worker stopped")
    finally:
        collector.kill()
        if alive(worker):  # never leave it running, even when the test failed
            os.kill(worker, 9)


def test_graph_pass_thread_keeps_the_pass_in_the_collector(tmp_path: Path) -> None:
    with CollectorProcess(f"sqlite:///{tmp_path / 'g.db'}", "--graph-pass", "thread") as collector:
        post_and_wait_for_the_graph(collector)
        assert workers(collector) == []
