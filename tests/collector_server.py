"""Run the real collector (``hoptrace serve``) as a subprocess on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port, wait_for_port


class CollectorProcess:
    """``with CollectorProcess("sqlite:///…") as c: c.url``; ``kill()`` is a kill -9, ``stop()`` a SIGTERM."""

    def __init__(self, store_url: str, *extra: str, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.store_url = store_url
        self.port = port or free_port()
        self.extra = extra
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"hoptrace-collector-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> CollectorProcess:
        cmd = [sys.executable, "-m", "hoptrace.collector.cli", "serve", "--store", self.store_url]
        cmd += ["--port", str(self.port), "--log-level", "warning", *self.extra]
        with self.log.open("wb") as log:  # the child keeps its own copy of the file
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        try:
            wait_for_port(self.port, timeout=30, proc=self.proc)
        except RuntimeError as exc:
            self.kill()  # a collector that never listened must not outlive the test
            raise RuntimeError(f"{exc}\n{self.output()}") from None
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, **{"timeout": 30, **kw})

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the collector was never started")
        return self.proc.pid

    def status_kib(self, field: str) -> int:
        """A memory figure of the running process from /proc/PID/status (``VmRSS``, ``VmHWM``: the peak)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} in /proc/{self.pid}/status")

    def terminate(self) -> None:
        """Send SIGTERM and return at once; ``wait()`` for the exit status."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float) -> int:
        """The exit status (negative: killed by that signal); TimeoutExpired if still running."""
        if self.proc is None:
            raise RuntimeError("the collector was never started")
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        """SIGKILL: no draining, no shutdown hooks."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM: a graceful shutdown that drains what was accepted."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode or 0)

    def __enter__(self) -> CollectorProcess:
        # ``with CollectorProcess(…).start() as c`` and ``with CollectorProcess(…) as c`` both
        # start it once: a second start would orphan the first process, still holding the port.
        return self if self.proc is not None and self.proc.poll() is None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
