"""The graph pass in a process of its own, so that ingest keeps a whole core (and the GIL).

``hoptrace serve`` starts ``python -m hoptrace.collector.graph_worker`` beside itself: it opens
the same store and derives the graph's backlog (``graph_backlog``, queued durably by every
ingest transaction) step after step, exactly what the in-process background pass does
(``SpanStore.graph_step``). Nothing is lost whichever process stops when: a batch stays queued
until the step that derived it commits.

The worker stops on SIGTERM (after its current step) and on its own when the collector that
started it is gone (a ``kill -9`` leaves no orphan deriving forever beside the next collector).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

logger = logging.getLogger("hoptrace.collector")

IDLE_POLL_S = 0.2  # how often an idle worker looks for new batches
# The worker's scheduling priority (nice): on a busy machine the cores go to ingest (whose clients
# wait for their answer) and the database first; the durable backlog waits, and the graph catches
# up as soon as there is CPU to spare (``/api/v1/graph/status`` says how far behind it is).
NICE = 10
RETRY_S = 1.0  # after a failed step
# Garbage collection in this process: a step allocates some hundred thousand short-lived objects
# (decoded spans, keys, facts), which with the default thresholds set off hundreds of young and
# several full collections per step, each full one walking every module loaded (protobuf, the
# database driver): about 15 % of a step's CPU. The worker keeps nothing between steps, so the
# start-up heap is frozen out of collections and young ones run less often.
GC_THRESHOLDS = (50_000, 20, 100)


def run(store_url: str, parent_pid: int | None, stop: threading.Event) -> int:
    """Derive the backlog until ``stop`` is set or the parent is gone; returns spans derived."""
    from .store import open_store

    store = open_store(store_url)
    store.graph_pass_external()  # this process steps itself; no second pass inside it
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    total = 0
    try:
        while not stop.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                logger.warning("hoptrace graph worker: the collector is gone; stopping")
                break
            try:
                done = store.graph_step()
            except Exception:
                if stop.is_set():
                    break
                logger.exception("hoptrace: the graph pass failed; it retries in a second")
                stop.wait(RETRY_S)
                continue
            total += done
            if not done:
                stop.wait(IDLE_POLL_S)
    finally:
        store.close()
    return total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hoptrace.collector.graph_worker")
    parser.add_argument("--store", required=True, help="the collector's store URL")
    parser.add_argument("--parent-pid", type=int, help="stop when this process is no longer the parent")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    try:
        os.nice(NICE)
    except OSError:  # not allowed here: run at the collector's priority
        pass
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the collector stops us
    run(args.store, args.parent_pid, stop)
    return 0


class GraphProcess:
    """The worker as a child of the collector: started with it, stopped (SIGTERM, then waited for)
    when it stops."""

    def __init__(self, store_url: str) -> None:
        cmd = [sys.executable, "-m", "hoptrace.collector.graph_worker", "--store", store_url]
        cmd += ["--parent-pid", str(os.getpid())]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        self.pid = self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Ask the worker to finish its step and exit; True if it did within ``timeout_s``.

        Killed past the timeout: whatever it had not committed stays queued for the next pass.
        """
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        try:
            self._proc.wait(max(0.0, deadline - time.monotonic()))
            return True
        except subprocess.TimeoutExpired:
            logger.error("the graph worker did not stop in %.0f s; killing it (its backlog stays queued)", timeout_s)
            self._proc.kill()
            self._proc.wait(10)
            return False


if __name__ == "__main__":
    raise SystemExit(main())
