"""Small measuring tools shared by the benchmark groups: statistics, time budgets, child processes."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
_STARTED = time.perf_counter()


def progress(message: str) -> None:
    """One progress line on stderr (stdout is kept for the markdown report)."""
    print(f"[{time.perf_counter() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


class Budget:
    """A wall-clock allowance: loads check it and stop early (with a warning) once it is spent."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._deadline = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self._deadline - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self._deadline


def child_env(
    extra: Mapping[str, str] | None = None, *, drop_prefixes: Sequence[str] = ("OTEL_", "HOPTRACE_")
) -> dict[str, str]:
    """This process's environment without tracing settings inherited by accident, plus ``extra``.

    AWS credentials are fake and instance metadata is off, so botocore never looks beyond this
    machine for credentials.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(drop_prefixes))}
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_LAMBDA_FUNCTION_NAME", "_HANDLER"):
        env.pop(key, None)
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "PYTHONHASHSEED": "0",
        }
    )
    # Children run with compiled bytecode cached, as a deployed package would after its first run.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if extra:
        env.update(extra)
    return env


class ChildFailed(RuntimeError):
    """A benchmark child process exited badly; the message carries its stderr tail."""


def run_json_child(
    args: Sequence[str], *, env: Mapping[str, str], cwd: Path | str, timeout_s: float
) -> tuple[dict[str, Any], int]:
    """Run a child that prints one JSON object as its last stdout line; return it and the wall ns."""
    start = time.perf_counter_ns()
    try:
        done = subprocess.run(
            list(args), env=dict(env), cwd=str(cwd), capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ChildFailed(f"{' '.join(args[:4])}… took longer than {timeout_s:.0f}s") from exc
    wall_ns = time.perf_counter_ns() - start
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise ChildFailed(f"{' '.join(args[:4])}… exited with {done.returncode}:\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    if done.stderr.strip():
        result.setdefault("stderr_tail", done.stderr.strip().splitlines()[-5:])
    return result, wall_ns


def python_module_args(module: str, payload: Mapping[str, Any]) -> list[str]:
    """Command line running ``python -m module`` with a JSON payload argument, in this interpreter."""
    return [sys.executable, "-m", module, json.dumps(dict(payload))]


def free_port() -> int:
    """A port nothing listens on now, on loopback (servers here never bind elsewhere)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_answers(
    proc: subprocess.Popen[Any], url: str, what: str, timeout_s: float, log: Path | None = None
) -> None:
    """Poll ``url`` until it answers; fail early (with the log's tail) if the child exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            tail = "\n" + log.read_text(errors="replace")[-2000:] if log is not None else ""
            raise RuntimeError(f"{what} exited with {proc.returncode} before answering{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not answer on {url} within {timeout_s:.0f}s") from None
            time.sleep(0.1)


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant (``hoptrace serve`` runs its graph pass in a child)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids = [int(k) for k in task.read_text().split()]
        except OSError:
            continue
        for kid in kids:
            found += process_tree(kid)
    return found


def tree_memory_mib(pid: int, field: str = "VmRSS") -> float:
    """``field`` of /proc/PID/status (VmRSS: resident now; VmHWM: each one's peak) summed over the
    process and its descendants, in MiB; NaN when the process is gone."""
    total, seen = 0, False
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
                    seen = True
                    break
        except OSError:
            continue
    return total / 1024 if seen else math.nan
