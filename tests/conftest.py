"""Shared fixtures: a real moto server over HTTP, and tracing into an in-memory exporter."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hoptrace.instrumentation import setup
from hoptrace.instrumentation.aws_lambda.announce import ANNOUNCEMENT

# The test command is a gate: the same examples on every run, so a red build names a change, not
# a roll of the dice. HOPTRACE_FUZZ=random explores new examples (and keeps failures in
# .hypothesis/ for the next run).
settings.register_profile("gate", derandomize=True, print_blob=True)
settings.register_profile("random", print_blob=True)
settings.load_profile("random" if os.environ.get("HOPTRACE_FUZZ") == "random" else "gate")

REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server (AWS emulator) over real HTTP on loopback, for the whole test session."""
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if exe is None:
        raise RuntimeError("moto_server not found: install the dev extra (pip install -e '.[dev]')")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials so nothing ever reaches real AWS."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


class Tracing:
    """hoptrace initialised in Lambda mode, exporting into memory."""

    def __init__(self, exporter: InMemorySpanExporter, state: setup.State) -> None:
        self.exporter = exporter
        self.state = state

    def spans(self) -> list[Any]:
        """Flush, then every span finished so far, in end order (typed loosely: tests index attributes);
        invocations' start announcements (``announcements()``) are not spans of their own."""
        self.state.flush(5.0)
        return [s for s in self.exporter.get_finished_spans() if ANNOUNCEMENT not in (s.attributes or {})]

    def announcements(self) -> list[Any]:
        """The records announcing invocations (and their memory near the limit), in send order."""
        self.state.flush(5.0)
        return [s for s in self.exporter.get_finished_spans() if ANNOUNCEMENT in (s.attributes or {})]

    def span(self, name: str) -> Any:
        matches = [s for s in self.spans() if s.name == name]
        assert len(matches) == 1, f"expected one span named {name!r}, got {[s.name for s in self.spans()]}"
        return matches[0]

    def clear(self) -> None:
        self.state.flush(5.0)
        self.exporter.clear()


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    """Fresh tracing state per test: init with an in-memory exporter, shut down afterwards."""
    setup.shutdown()
    exporter = InMemorySpanExporter()
    st = setup.init(exporter=exporter, lambda_mode=True, service_name="test-fn")
    try:
        yield Tracing(exporter, st)
    finally:
        setup.shutdown()


@pytest.fixture
def boto_session(moto_endpoint: str):
    """A boto3 session whose clients talk to the moto server (created after init, so traced)."""
    import boto3

    class _Factory:
        def client(self, service: str) -> Any:
            session: Any = boto3.session.Session(region_name=REGION)
            return session.client(service, endpoint_url=moto_endpoint)

        def resource(self, service: str) -> Any:
            session: Any = boto3.session.Session(region_name=REGION)
            return session.resource(service, endpoint_url=moto_endpoint)

    return _Factory()


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("HOPTRACE_FLUSH_BUDGET_MS", "2000")
from tests.pg import postgres_url  # noqa: E402,F401
