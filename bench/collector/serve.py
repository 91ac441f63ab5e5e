"""``hoptrace serve`` as a child process of the run, on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.measure import REPO_ROOT, child_env, free_port, wait_until_answers
from bench.report import OUT_DIR

LOG_DIR = OUT_DIR / "collector"


@dataclass
class Served:
    url: str
    pid: int
    log: Path

    def cpu_seconds(self) -> float:
        """User + system CPU the collector has used so far: all its threads, and its running child
        processes' (the graph worker) and their waited-for children's."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in [self.pid, *_children(self.pid)]:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except FileNotFoundError:  # a child that ended in between
                continue
            total += int(fields[11]) + int(fields[12])
        return total / ticks

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def _children(pid: int) -> list[int]:
    """Every live descendant of ``pid``."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids = [int(k) for k in task.read_text().split()]
        except FileNotFoundError:
            continue
        for kid in kids:
            found += [kid, *_children(kid)]
    return found


@contextmanager
def collector(store_url: str, name: str, *extra: str, start_timeout_s: float = 120.0) -> Iterator[Served]:
    """Start ``hoptrace serve --store URL`` on 127.0.0.1; stopped with SIGTERM (it drains) afterwards."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = LOG_DIR / f"serve-{name}.log"
    cmd = [sys.executable, "-m", "hoptrace.collector.cli", "serve", "--store", store_url, "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--log-level", "warning", *extra]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=str(REPO_ROOT), env=child_env(), stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(proc, url + "/healthz", "hoptrace serve", start_timeout_s, log)
        yield Served(url, proc.pid, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
