"""What a benchmark group hands back: rows of figures beside their baselines, as markdown and JSON."""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent / "out"


@dataclass
class Row:
    """One figure and the baseline it is compared with, both measured in the same run.

    ``added`` (value − baseline) and ``ratio`` (value / baseline) are what to read: absolute
    numbers shift with the machine, the comparison much less.
    """

    name: str
    unit: str
    baseline_name: str
    baseline: float
    value: float
    goal: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def added(self) -> float:
        return self.value - self.baseline

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else math.nan

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["added"] = self.added
        data["ratio"] = self.ratio
        return data


@dataclass
class Section:
    title: str
    method: str  # one sentence on how it was measured
    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)  # per-run samples, for later analysis
    notes: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)  # markdown lines shown after the table as they are


@dataclass
class Report:
    group: str
    sections: list[Section] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)

    def markdown(self) -> str:
        lines = [f"## {self.group}", ""]
        for section in self.sections:
            lines += [f"### {section.title}", "", section.method, ""]
            if section.rows:
                lines += [
                    "| figure | baseline | baseline value | value | added | ratio | goal | met |",
                    "|---|---|--:|--:|--:|--:|---|:-:|",
                ]
            for r in section.rows:
                met = "" if r.met is None else ("yes" if r.met else "**NO**")
                name = f"{r.name} ({r.note})" if r.note else r.name
                lines.append(
                    f"| {name} | {r.baseline_name} | {_num(r.baseline)} {r.unit} | {_num(r.value)} {r.unit} "
                    f"| {_signed(r.added)} {r.unit} | {_num(r.ratio, 2)}× | {r.goal} | {met} |"
                )
            lines += [f"- {n}" for n in section.notes]
            lines.append("")
            if section.details:
                lines += [*section.details, ""]
        if self.warnings:
            lines += ["**Warnings**", ""] + [f"- {w}" for w in self.warnings] + [""]
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "environment": self.environment,
            "config": self.config,
            "warnings": self.warnings,
            "sections": [
                {
                    "title": s.title,
                    "method": s.method,
                    "rows": [r.as_json() for r in s.rows],
                    "notes": s.notes,
                    "details": s.details,
                    "raw": s.raw,
                }
                for s in self.sections
            ],
        }

    def write_json(self, out_dir: Path = OUT_DIR) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{self.group}.json"
        path.write_text(json.dumps(_clean(self.as_json()), indent=2, default=str, allow_nan=False) + "\n")
        return path


def environment() -> dict[str, Any]:
    """Where the figures came from: they compare only within one run on one machine."""
    import os
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for dist in (
        "hoptrace",
        "opentelemetry-sdk",
        "opentelemetry-exporter-otlp-proto-http",
        "botocore",
        "boto3",
        "opentelemetry-instrumentation-botocore",
        "opentelemetry-instrumentation-aws-lambda",
        "moto",
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": versions,
    }


def _num(x: float, digits: int | None = None) -> str:
    if math.isnan(x):
        return "n/a"
    if digits is None:  # three significant digits, whole numbers from 100 up
        digits = 0 if x == 0 or abs(x) >= 100 else min(4, 2 - math.floor(math.log10(abs(x))))
    return f"{x:,.{digits}f}"


def _signed(x: float) -> str:
    return "n/a" if math.isnan(x) else ("+" if x >= 0 else "−") + _num(abs(x))


def _clean(obj: Any) -> Any:
    """JSON has no NaN: a figure that could not be measured is written as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


# -- the results of every group, merged: bench/out/results.json and bench/out/RESULTS.md ---------------

RESULTS_JSON = "results.json"
RESULTS_MD = "RESULTS.md"


def machine() -> dict[str, Any]:
    """What the figures ran on, and how busy it was: CPU model, cores, RAM, OS, Python, load, date."""
    import os

    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = math.nan
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = int(line.split()[1]) / 1024**2
                break
    except OSError:
        pass
    os_name = platform.platform()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = f"{line.split('=', 1)[1].strip().strip(chr(34))} ({platform.system()} {platform.release()})"
                break
    except OSError:
        pass
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "cpu_model": cpu_model or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "ram_gib": round(ram_gib, 1),
        "os": os_name,
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "load_average": load,  # 1, 5 and 15 minutes
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def machine_line(m: dict[str, Any]) -> str:
    load = " / ".join(f"{x:.2f}" for x in m.get("load_average", []))
    return (
        f"{m.get('cpu_model', '?')}, {m.get('cores', '?')} cores, {m.get('ram_gib', '?')} GiB RAM; {m.get('os', '?')}; "
        f"{m.get('python', '?')}; load average (1/5/15 min) {load or 'n/a'}; {m.get('date', '?')}"
    )


def report_from_json(data: dict[str, Any]) -> Report:
    """A group's report read back from its JSON (to render the merged results again)."""
    row_fields = set(Row.__dataclass_fields__)

    def row(r: dict[str, Any]) -> Row:
        kwargs: dict[str, Any] = {k: v for k, v in r.items() if k in row_fields}
        for k in ("baseline", "value"):  # NaN was written as null
            kwargs[k] = math.nan if kwargs.get(k) is None else kwargs[k]
        return Row(**kwargs)

    sections = [
        Section(
            title=s.get("title", ""),
            method=s.get("method", ""),
            rows=[row(r) for r in s.get("rows", [])],
            notes=list(s.get("notes", [])),
            details=list(s.get("details", [])),
        )
        for s in data.get("sections", [])
    ]
    return Report(
        group=data.get("group", "?"),
        sections=sections,
        warnings=list(data.get("warnings", [])),
        config=dict(data.get("config", {})),
        environment=dict(data.get("environment", {})),
    )


def merge_results(
    report: Report, out_dir: Path = OUT_DIR, *, started: dict[str, Any] | None = None, order: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Put one group's report into ``results.json`` (other groups' results stay) and render ``RESULTS.md``.

    A run of some groups thus updates their entries only: the file always holds the latest result
    of every group, each with its own machine description, load and date (``started``: the
    machine when the group began; the load at its end is added).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RESULTS_JSON
    results = load_results(path)
    entry = _clean(report.as_json())
    entry["machine"] = started if started is not None else machine()
    entry["load_average_after"] = machine()["load_average"]
    results["groups"][report.group] = entry
    results["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results["machine"] = machine()
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str, allow_nan=False) + "\n")
    tmp.replace(path)
    (out_dir / RESULTS_MD).write_text(results_markdown(results, order))
    return results


def load_results(path: Path) -> dict[str, Any]:
    """The merged results so far; a file that is not ours (or is broken) is kept aside, not overwritten."""
    empty: dict[str, Any] = {"groups": {}}
    if not path.exists():
        return empty
    try:
        data = json.loads(path.read_text())
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("groups"), dict):
        path.replace(path.with_suffix(f".broken-{int(time.time())}.json"))
        return empty
    return data


def results_markdown(results: dict[str, Any], order: tuple[str, ...] = ()) -> str:
    """Every group's table with its baselines, each headed by when, where and under what load it ran."""
    groups: dict[str, Any] = results.get("groups", {})
    names = [g for g in order if g in groups] + sorted(g for g in groups if g not in order)
    lines = [
        "# hoptrace benchmark results",
        "",
        "Made by `python -m bench` (see `bench/README.md`). Every figure stands beside a baseline measured in "
        "the same run on the same machine: read the ratios; absolute figures move with the machine and its load "
        "(a load average above the number of cores means the run shared them with other work).",
        "",
        f"Last updated {results.get('updated_at', '?')}; machine: {machine_line(results.get('machine', {}))}.",
        "",
        "| group | measured | commit | mode | load average before → after (1 min) | goals met |",
        "|---|---|---|---|---|--:|",
    ]
    for name in names:
        g = groups[name]
        m = g.get("machine", {})
        load_before = (m.get("load_average") or ["?"])[0]
        load_after = (g.get("load_average_after") or ["?"])[0]
        rows = [r for s in g.get("sections", []) for r in s.get("rows", [])]
        goals = [r for r in rows if r.get("met") is not None]
        met = sum(1 for r in goals if r.get("met"))
        failed = any(str(w).startswith("FAILED") for w in g.get("warnings", []))
        mode = "quick (smoke test)" if g.get("config", {}).get("quick") else "full"
        lines.append(
            f"| [{name}](#{name}) | {m.get('date', '?')} | {g.get('config', {}).get('commit', '?')} "
            f"| {mode}{', **FAILED parts**' if failed else ''} "
            f"| {load_before} → {load_after} | {met} of {len(goals)} |"
        )
    lines.append("")
    for name in names:
        g = groups[name]
        rendered = report_from_json(g).markdown().splitlines()
        lines += [rendered[0], "", f"Machine: {machine_line(g.get('machine', {}))}.", *rendered[1:], ""]
    return "\n".join(lines).rstrip() + "\n"
