"""``hoptrace demo`` as a user runs it: it says where the UI is, shows progress, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from hoptrace.demo.stack import free_port

START_S = 180.0  # upper bounds on a loaded machine, never measured durations
STOP_S = 90.0


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc), whatever session or group it moved to."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_demo_command_prints_the_ui_address_shows_progress_and_ctrl_c_stops_every_process(
    tmp_path: Path,
) -> None:
    port = free_port()
    store = f"sqlite:///{tmp_path / 'demo.db'}"
    cmd = [sys.executable, "-m", "hoptrace.collector.cli", "demo", "--port", str(port), "--store", store]
    proc = subprocess.Popen(
        [*cmd, "--interval", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp_path)},  # its logs go with the test
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + START_S
        while not any("collector:" in line and "spans" in line for line in lines):  # the first progress line
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.5)
        output = "".join(lines)
        assert f"open the UI: http://127.0.0.1:{port}/" in output, output
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        started = descendants(proc.pid)
        # moto, the collector and one sandbox per function (nine), at least.
        assert len(started) >= 11, (started, output)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert proc.wait(STOP_S) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    reader.join(10)
    left = [pid for pid in started if alive(pid)]
    assert not left, f"still running after Ctrl-C: {left}"
    assert "stopped" in "".join(lines).splitlines()[-1], "".join(lines)
