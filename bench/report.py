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
