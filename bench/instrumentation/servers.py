"""Local servers the benchmarks talk to, each a child process on 127.0.0.1 with a bounded life."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.measure import REPO_ROOT, child_env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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
    port = _free_port()
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
        deadline = time.monotonic() + start_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {proc.returncode} before answering")
            try:
                with urllib.request.urlopen(endpoint + "/moto-api/", timeout=1.0):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"moto_server did not answer on {endpoint} within {start_timeout_s:.0f}s"
                    ) from None
                time.sleep(0.1)
        yield endpoint
    finally:
        _stop(proc)
