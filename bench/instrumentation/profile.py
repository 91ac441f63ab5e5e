"""``--profile``: where hoptrace's time goes, for whoever sets out to cut it.

Each target is a real benchmark process (a cold-start child or a worker, as for the figures).

- Cold start and flush run under ``py-spy record --gil --nonblocking``: each sample is the stack
  of the thread holding the GIL, so samples add up to Python CPU time across threads (hoptrace's
  export thread included); waiting on the network or another thread is not in them. Non-blocking
  sampling keeps the process at full speed (blocking sampling slowed it several times here) but
  loses some samples and may misread a fast-changing stack: good for imports and the exporter,
  whose frames last. Cold start: CPU per line of the handler module and import time per package,
  hoptrace beside bare. Flush: µs per invocation per function, export thread included.
- SendMessage runs pyinstrument inside the worker on every other batch (one thread is all a call
  uses): exact stacks, but its per-call hook slows botocore's many small calls, so figures are
  scaled back by the slow-down measured on the unprofiled batches of the same worker. Self time
  per function in traced batches beside bare ones, and hoptrace's functions inclusive.

Raw data (folded stacks, per-function JSON) is kept in ``bench/out/profile/``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import REPO_ROOT, median, progress, run_json_child
from bench.report import OUT_DIR, Section

from . import aws_call, coldstart, flush, lambda_env

RATE = 2000  # samples per second
PROFILE_DIR = OUT_DIR / "profile"
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*):(?P<line>\d+)\)$")
_SAMPLES = re.compile(r"Samples: (\d+) Errors: (\d+)")
_OURS = tuple(str(REPO_ROOT / d) + "/" for d in ("instrumentation", "hoptrace"))
# Code that tracing runs besides hoptrace's own: the OpenTelemetry SDK and what its exporter uses.
_TRACING_PACKAGES = ("opentelemetry", "google", "requests", "urllib3")


@dataclass(frozen=True)
class Frame:
    func: str
    file: str
    line: int

    @property
    def ours(self) -> bool:
        # The checkout's files, or the wheel installed into a cold-start task root.
        return self.file.startswith(_OURS) or "/hoptrace/instrumentation/" in self.file

    @property
    def where(self) -> str:
        """A short file name: ``hoptrace/…`` for ours, the path below site-packages for installed code."""
        if self.file.startswith(_OURS):
            return "hoptrace/" + self.file[len(str(REPO_ROOT)) + 1 :]
        if self.ours:
            return "hoptrace/" + self.file.rsplit("/hoptrace/", 1)[1]
        if "site-packages/" in self.file:
            return self.file.split("site-packages/", 1)[1]
        if "/lib/python" in self.file:
            return "stdlib/" + self.file.split("/lib/python", 1)[1].split("/", 1)[-1]
        return self.file

    @property
    def package(self) -> str:
        """``hoptrace``, ``stdlib``, or the installed distribution's top package (two levels for opentelemetry)."""
        parts = self.where.split("/")
        if parts[0] in ("hoptrace", "stdlib"):
            return parts[0]
        if parts[0] in ("opentelemetry", "google") and len(parts) > 2:
            return "/".join(parts[:2])
        return parts[0].removesuffix(".py")

    @property
    def tracing(self) -> bool:
        return self.ours or self.where.startswith(_TRACING_PACKAGES)

    @property
    def importing(self) -> bool:
        return self.file.startswith("<frozen importlib")

    @property
    def function(self) -> str:
        return f"{self.func.rsplit('.<locals>.', 1)[-1]} ({self.where})"


Stack = tuple[Frame, ...]


@dataclass
class Recording:
    stacks: Counter[Stack]
    ms_per_sample: float  # from the rate and the share of samples py-spy could read
    output: dict[str, Any]  # the child's own JSON result, if it printed one

    def where(self, keep: Callable[[Stack], bool]) -> list[tuple[Stack, int]]:
        return [(s, n) for s, n in self.stacks.items() if keep(s)]


def parse_folded(text: str) -> Counter[Stack]:
    """py-spy's raw output: ``frame;frame;… COUNT`` per line, outermost frame first."""
    stacks: Counter[Stack] = Counter()
    for line in text.splitlines():
        body, _, count = line.rpartition(" ")
        if not body or not count.isdigit():
            continue
        frames = tuple(
            Frame(m["func"], m["file"], int(m["line"])) for m in map(_FRAME.match, body.split(";")) if m is not None
        )
        stacks[frames] += int(count)
    return stacks


def _py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(args: Sequence[str], *, env: dict[str, str], cwd: Path, name: str, timeout_s: float = 180) -> Recording:
    """Run ``args`` under py-spy; the folded stacks are also kept as ``bench/out/profile/NAME.txt``."""
    spy = _py_spy()
    if spy is None:
        raise RuntimeError("py-spy is not installed: pip install py-spy")
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    out = PROFILE_DIR / f"{name}.txt"
    cmd = [spy, "record", "--gil", "--nonblocking", "--full-filenames", "-r", str(RATE), "-f", "raw", "-o", str(out)]
    done = subprocess.run(
        [*cmd, "--", *args], env=env, cwd=str(cwd), capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy on {name} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    said = _SAMPLES.search(done.stdout + done.stderr)
    success = 1.0
    if said and int(said[1]) + int(said[2]) > 0:
        success = max(0.05, int(said[1]) / (int(said[1]) + int(said[2])))
    output: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            output = json.loads(line)
    return Recording(parse_folded(out.read_text()), 1000.0 / RATE / success, output)


def inclusive(stacks: Iterable[tuple[Stack, int]], keep: Callable[[Frame], bool]) -> Counter[str]:
    """Samples per function (counted once per stack), for the frames ``keep`` selects."""
    totals: Counter[str] = Counter()
    for stack, n in stacks:
        for function in {f.function for f in stack if keep(f)}:
            totals[function] += n
    return totals


def innermost(stacks: Iterable[tuple[Stack, int]]) -> Counter[str]:
    """Samples per function actually running (self time)."""
    totals: Counter[str] = Counter()
    for stack, n in stacks:
        if stack:
            totals[stack[-1].function] += n
    return totals


def _table(rows: Iterable[tuple[str, float]], header: str, unit: str, limit: int = 15) -> list[str]:
    lines = [f"| {header} | {unit} |", "|---|--:|"]
    lines += [f"| `{name}` | {value:,.1f} |" for name, value in list(rows)[:limit]]
    return [*lines, ""]


def _steady(stack: Stack) -> bool:
    """Not importing: first-use imports belong to the cold start, not to every call."""
    return not any(f.importing for f in stack)


# -- cold start ---------------------------------------------------------------------------------


def _import_package(stack: Stack, handler_file: str) -> str | None:
    """The package whose module body is executing (innermost ``<module>`` frame), None if not importing."""
    for frame in reversed(stack):
        if frame.func == "<module>" and not frame.file.startswith("<"):
            return None if frame.file.endswith((handler_file, "runtime.py")) else frame.package
    return None


def profile_coldstart(endpoint: str, runs: int = 8) -> list[str]:
    """CPU per handler-module line and import time per package, hoptrace beside bare."""
    by_line: dict[str, defaultdict[str, float]] = {v: defaultdict(float) for v in ("bare", "hoptrace")}
    by_package: dict[str, defaultdict[str, float]] = {v: defaultdict(float) for v in ("bare", "hoptrace")}
    totals: defaultdict[str, float] = defaultdict(float)
    with tempfile.TemporaryDirectory(prefix="hoptrace_bench-task-root_profile-") as tmp:
        root = Path(tmp)
        coldstart.write_task_root(root)
        for i in range(runs):
            progress(f"profile: cold start, run {i + 1}/{runs}")
            for variant in ("bare", "hoptrace"):
                handler_file = f"handler_{variant}.py"
                source = (root / handler_file).read_text().splitlines()
                rec = record(
                    [sys.executable, "-S", "runtime.py"],
                    env=coldstart.variant_env(variant, endpoint, root),
                    cwd=root,
                    name=f"coldstart-{variant}-{i}",
                )
                for stack, n in rec.stacks.items():
                    ms = n * rec.ms_per_sample / runs
                    totals[variant] += ms
                    package = _import_package(stack, handler_file)
                    by_package[variant][package or "(running code, not importing)"] += ms
                    by_line[variant][_line_key(stack, handler_file, source)] += ms
    lines = [
        f"**Cold start**: Python CPU (GIL held) per process, mean of {runs} runs: bare {totals['bare']:.0f} ms, "
        f"hoptrace {totals['hoptrace']:.0f} ms (all threads; includes the runtime stand-in and exit).",
        "",
    ]
    top = sorted(by_line["hoptrace"].items(), key=lambda kv: -kv[1])
    rows = [(f"{k} (bare: {by_line['bare'][k]:.1f})", v) for k, v in top]
    lines += _table(rows, "hoptrace handler module, by line (init and invocations)", "ms", 10)
    packages = set(by_package["bare"]) | set(by_package["hoptrace"])
    delta = sorted(((p, by_package["hoptrace"][p] - by_package["bare"][p]) for p in packages), key=lambda x: -abs(x[1]))
    rows = [(f"{p} ({by_package['hoptrace'][p]:.1f} vs {by_package['bare'][p]:.1f})", d) for p, d in delta]
    lines += _table(rows, "package executing (hoptrace ms vs bare ms)", "ms more than bare", 14)
    return lines


def _line_key(stack: Stack, handler_file: str, source: list[str]) -> str:
    frames = [f for f in stack if f.file.endswith(handler_file)]
    if not frames:
        if any(f.ours for f in stack):
            return "(hoptrace outside the handler module: export thread, watchdog)"
        return "(outside the handler module: runtime stand-in, interpreter exit)"
    f = frames[0]
    text = source[f.line - 1].strip() if 0 < f.line <= len(source) else "?"
    return f"{'init' if f.func == '<module>' else 'invocation'}: {text}"


# -- SendMessage ----------------------------------------------------------------------------------


def summarize(sessions: Sequence[Any], below: str) -> dict[str, Any]:
    """Self and inclusive seconds per function of pyinstrument sessions, under the frames named ``below``."""
    self_s: defaultdict[str, float] = defaultdict(float)
    inclusive_s: defaultdict[str, float] = defaultdict(float)

    def visit(frame: Any, inside: bool, path: frozenset[str]) -> None:
        if frame.is_synthetic:
            return
        qualname = f"{frame.class_name}.{frame.function}" if frame.class_name else frame.function
        label = Frame(qualname, frame.file_path or "", 0).function
        if inside:
            self_s[label] += frame.total_self_time
            if label not in path:  # count a recursive function once
                inclusive_s[label] += frame.time
            path = path | {label}
        for child in frame.children:
            visit(child, inside or frame.function == below, path)

    for session in sessions:
        root = session.root_frame()
        if root is not None:
            visit(root, False, frozenset())
    return {"self": dict(self_s), "inclusive": dict(inclusive_s)}


def profile_aws_call() -> list[str]:
    """Self time per function in traced batches beside bare ones of the same worker, µs per call.

    pyinstrument, in the worker (one thread is all a call uses): accurate stacks at full speed.
    """
    cfg = aws_call.worker_config("hoptrace", "stub", False, None, lambda_env.QUEUE_URL)
    cfg.update(batches=40, profile=True)
    progress("profile: SendMessage worker (hoptrace, stub, pyinstrument)")
    result, _ = run_json_child(
        [sys.executable, "-m", "bench.instrumentation.worker", "aws_call", json.dumps(cfg)],
        env=aws_call.worker_env("hoptrace"),
        cwd=REPO_ROOT,
        timeout_s=300,
    )
    (PROFILE_DIR / "aws-call-hoptrace.json").write_text(json.dumps(result["profile"], indent=1))
    prof = result["profile"]
    # Scaled back to full speed: pyinstrument's call hook slows botocore's many small calls a lot.
    us = {k: 1e6 / p["calls"] / p["slowdown"] for k, p in prof.items()}
    prof.pop("traced_unarmed", None)
    traced, bare = prof["traced"]["self"], prof["bare"]["self"]
    rows = sorted(
        ((f, traced.get(f, 0.0) * us["traced"], bare.get(f, 0.0) * us["bare"]) for f in set(traced) | set(bare)),
        key=lambda r: -(r[1] - r[2]),
    )
    total = {k: sum(p["self"].values()) * us[k] for k, p in prof.items()}
    incl = prof["traced"]["inclusive"]
    hooks = tuple(
        f"{fn} (hoptrace/instrumentation/botocore_hooks.py"
        for fn in ("_before_parameter_build", "_before_call", "_after_call")
    )
    ours = sum(v for f, v in incl.items() if f.startswith(hooks))
    lines = [
        f"**SendMessage (stub)**, hoptrace worker under pyinstrument (which slowed calls "
        f"{prof['bare']['slowdown']:.1f}×; figures scaled back), µs per call: traced {total['traced']:.0f}, "
        f"bare {total['bare']:.0f}, bare + hoptrace's attributes {total.get('bare_ctx', float('nan')):.0f}; "
        f"{ours * us['traced']:.0f} µs of a traced call are inside hoptrace's botocore hooks (carriers and span "
        "work included); the rest of the difference is botocore doing more for it.",
        "",
        "| function (self time) | traced µs | bare µs | added µs |",
        "|---|--:|--:|--:|",
    ]
    lines += [f"| `{f}` | {t:.1f} | {b:.1f} | {t - b:+.1f} |" for f, t, b in rows[:20]]
    lines.append("")
    unprofiled = {k: median(v) / 1000.0 for k, v in result["per_call_ns"].items()}
    if "traced_unarmed" in unprofiled:
        lines += [
            f"Timeout watchdog: unprofiled batches of the same worker took {unprofiled['traced']:.0f} µs per call in "
            f"invocations that armed it (Lambda's default) and {unprofiled['traced_unarmed']:.0f} µs in invocations "
            f"whose context had no deadline (bare: {unprofiled['bare']:.0f} µs).",
            "",
        ]
    tracing = sorted(
        (
            (f, v * us["traced"])
            for f, v in incl.items()
            if f.split(" (", 1)[1].startswith(("hoptrace/", "opentelemetry/"))
        ),
        key=lambda r: -r[1],
    )
    lines += _table(tracing, "hoptrace and OpenTelemetry SDK functions (inclusive)", "µs per call", 20)
    return lines


# -- flush ----------------------------------------------------------------------------------------


def profile_flush(endpoint: str, invocations: int = 300) -> list[str]:
    cfg = {"variant": "hoptrace", "invocations": invocations}
    progress("profile: flush worker (hoptrace)")
    rec = record(
        [sys.executable, "-m", "bench.instrumentation.worker", "flush", json.dumps(cfg)],
        env=flush.worker_env("hoptrace", endpoint),
        cwd=REPO_ROOT,
        name="flush-hoptrace",
    )

    def on_export_thread(s: Stack) -> bool:
        return any(
            f.func.endswith("ExportWorker._run") or (f.func == "_run" and f.file.endswith("export.py")) for f in s
        )

    def in_invocation(s: Stack) -> bool:
        return any(f.ours and f.func.endswith("traced") for f in s)

    relevant = rec.where(lambda s: _steady(s) and (on_export_thread(s) or in_invocation(s)))
    per_inv = rec.ms_per_sample * 1000.0 / (invocations + flush.WARMUP)
    export_thread = sum(n for s, n in relevant if on_export_thread(s))
    total = sum(n for _, n in relevant)
    flush_ms = median(rec.output.get("flush_ns") or [0]) / 1e6
    lines = [
        f"**Flush**, hoptrace worker: about {total * per_inv:.0f} µs of Python CPU per traced invocation, "
        f"{export_thread * per_inv:.0f} µs of it on the export thread (encoding, HTTP); flush p50 while sampled "
        f"{flush_ms:.2f} ms: the rest of the flush is waiting (the endpoint's answer, thread wake-ups).",
        "",
    ]
    rows = inclusive(relevant, lambda f: f.tracing)
    lines += _table(((k, v * per_inv) for k, v in rows.most_common()), "function (inclusive)", "µs per invocation", 22)
    return lines


def run(sections: Sequence[str], endpoint: str, warnings: list[str]) -> Section:
    section = Section(
        "Profile",
        "Where hoptrace's time goes. Cold start and flush: py-spy samples of the thread holding the GIL "
        f"({RATE}/s, non-blocking, all threads); SendMessage: pyinstrument in the worker. Estimates, to point at "
        "code, not figures to compare; raw data in `bench/out/profile/`.",
    )
    jobs: list[Callable[[], list[str]]] = []
    if "coldstart" in sections:
        jobs.append(lambda: profile_coldstart(endpoint))
    if "aws_call" in sections:
        jobs.append(profile_aws_call)
    if "flush" in sections:
        jobs.append(lambda: profile_flush(endpoint))
    for job in jobs:
        try:
            section.details += job()
        except Exception as exc:
            warnings.append(f"profile: {type(exc).__name__}: {exc}")
    return section
