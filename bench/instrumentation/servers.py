"""Local servers the benchmarks talk to, each a child process on 127.0.0.1 with a bounded life."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.measure import REPO_ROOT, child_env, free_port, wait_until_answers


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextmanager
def otlp_sink(max_seconds: float = 900.0) -> Iterator[str]:
    """Start ``bench.instrumentation.sink``; yields its endpoint (``http://127.0.0.1:PORT``)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.instrumentation.sink", "--max-seconds", str(max_seconds)],
        cwd=str(REPO_ROOT),
        env=child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"the OTLP sink did not start (said {line!r})")
        yield f"http://127.0.0.1:{line}"
    finally:
        if proc.stdin is not None:
            proc.stdin.close()  # the sink stops when its stdin closes
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _stop(proc)


def _moto_executable() -> str:
    beside = Path(sys.executable).with_name("moto_server")
    found = str(beside) if beside.exists() else shutil.which("moto_server")
    if not found:
        raise RuntimeError("moto_server was not found: install moto[server] into this environment")
    return found


@contextmanager
def moto_server(start_timeout_s: float = 30.0) -> Iterator[str]:
    """Start ``moto_server`` on a free loopback port; yields its endpoint URL."""
    port = free_port()
    proc = subprocess.Popen(
        [_moto_executable(), "-H", "127.0.0.1", "-p", str(port)],
        cwd=str(REPO_ROOT),
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(proc, endpoint + "/moto-api/", "moto_server", start_timeout_s)
        yield endpoint
    finally:
        _stop(proc)
