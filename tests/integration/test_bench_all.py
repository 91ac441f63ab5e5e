"""``python -m bench``'s plumbing, end to end in quick mode: groups run, results merge, markdown renders.

No timing is asserted (the machine is shared): only that the figures exist, are positive numbers,
stand beside a baseline, and that the files say on what machine and when they were made.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.measure import REPO_ROOT
from bench.report import Report, Row, Section, load_results, machine, merge_results, results_markdown

MACHINE_KEYS = {"cpu_model", "cores", "ram_gib", "os", "python", "load_average", "date"}


def bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )


def positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_quick_run_writes_merged_json_and_markdown_with_baselines_and_machine(tmp_path: Path) -> None:
    done = bench("scale", "overload", "--quick", "--backends", "sqlite", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[1/2] scale: starting" in done.stderr and "[2/2] overload: done" in done.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["groups"]) == {"scale", "overload"}
    assert set(results["machine"]) >= MACHINE_KEYS
    for name, group in results["groups"].items():
        assert group["group"] == name and group["config"]["quick"] is True and group["config"]["commit"]
        assert not [w for w in group["warnings"] if w.startswith("FAILED")], group["warnings"]
        m = group["machine"]
        assert set(m) >= MACHINE_KEYS and m["cores"] >= 1 and m["ram_gib"] > 0 and len(m["load_average"]) == 3
        rows = [r for s in group["sections"] for r in s["rows"]]
        assert rows, name
        for r in rows:
            assert r["baseline_name"] and r["unit"], r
            assert positive(r["value"]) and positive(r["baseline"]), r
            assert r["ratio"] == r["value"] / r["baseline"]
        assert (tmp_path / f"{name}.json").exists()
    scale_rows = {r["name"].split(" (")[0] for s in results["groups"]["scale"]["sections"] for r in s["rows"]}
    for kind in ("trace fetch", "transaction fetch", "label search, order_id", "map, last 1 h", "map, last 24 h"):
        assert {f"{kind} p50", f"{kind} p95", f"{kind} p99"} <= scale_rows
    assert "database size per million spans" in scale_rows
    overload = results["groups"]["overload"]["sections"][0]
    raw = overload["raw"]
    # The quick run shrinks the collector's queue to one request, so that 5× the sustained rate is refused with 503s.
    assert sum(raw["overload"]["refused"].values()) > 0 and raw["overload"]["refused_without_retry_after"] == 0
    assert raw["lost_spans"] == 0 and raw["stored_spans"] >= raw["acked_spans"] > 0
    lost_row = next(r for r in overload["rows"] if r["name"].startswith("spans in the store"))
    assert lost_row["met"] is True
    md = (tmp_path / "RESULTS.md").read_text()
    assert md.startswith("# hoptrace benchmark results")
    assert "| [scale](#scale) |" in md and "| [overload](#overload) |" in md
    assert md.index("## overload") < md.index("## scale")  # the order `all` runs them in, not the command's
    assert md.count("| figure | baseline | baseline value | value | added | ratio | goal | met |") >= 2
    assert "Machine: " in md and results["groups"]["scale"]["machine"]["cpu_model"] in md
    assert f"| {results['groups']['scale']['config']['commit']} | quick (smoke test) |" in md

    again = bench("scale", "overload", "--quick", "--resume", "--out", str(tmp_path), timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resume: nothing left to run" in again.stderr
    assert json.loads((tmp_path / "results.json").read_text())["groups"] == results["groups"]


def _report(group: str, value: float, *, quick: bool = False) -> Report:
    row = Row("thing", "ms", "floor", 1.0, value, goal="< 5 ms", met=value < 5)
    return Report(group, sections=[Section("s", "how", rows=[row])], config={"quick": quick})


def test_merging_keeps_other_groups_and_replaces_a_rerun_one(tmp_path: Path) -> None:
    merge_results(_report("graph", 2.0), tmp_path, order=("collector", "graph"))
    merge_results(_report("collector", 3.0), tmp_path, order=("collector", "graph"))
    merge_results(_report("graph", 7.0), tmp_path, order=("collector", "graph"))
    results = load_results(tmp_path / "results.json")
    assert set(results["groups"]) == {"collector", "graph"}
    assert results["groups"]["graph"]["sections"][0]["rows"][0]["value"] == 7.0
    md = (tmp_path / "RESULTS.md").read_text()
    assert md.index("## collector") < md.index("## graph")
    assert "| thing | floor | 1.00 ms | 7.00 ms | +6.00 ms | 7.00× | < 5 ms | **NO** |" in md
    assert "| [graph](#graph) |" in md and "| 0 of 1 |" in md and "| 1 of 1 |" in md
    assert md == results_markdown(results, ("collector", "graph"))


def test_a_broken_results_file_is_kept_aside_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text("{not json")
    merge_results(_report("graph", 1.0), tmp_path)
    assert set(load_results(tmp_path / "results.json")["groups"]) == {"graph"}
    kept = list(tmp_path.glob("results.broken-*.json"))
    assert len(kept) == 1 and kept[0].read_text() == "{not json"


def test_machine_description_names_cpu_cores_ram_os_python_load_and_date() -> None:
    m = machine()
    assert set(m) >= MACHINE_KEYS
    assert m["cpu_model"] and m["cores"] >= 1 and m["ram_gib"] > 0 and m["os"] and m["python"].split()[1]
    assert len(m["load_average"]) == 3 and all(x >= 0 for x in m["load_average"])
    assert m["date"].endswith("Z") and m["date"][:2] == "20"


def test_unknown_group_is_refused_with_the_list() -> None:
    done = bench("nosuchgroup", timeout=60)
    assert done.returncode == 2
    assert "unknown group(s) nosuchgroup" in done.stderr and "phoenix" in done.stderr and "overload" in done.stderr


def test_hoptrace_bench_run_is_python_m_bench_in_the_checkout() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hoptrace.collector.cli", "bench", "run", "nosuchgroup", "--quick"],
        capture_output=True, text=True, timeout=60, cwd="/",
    )  # fmt: skip
    assert done.returncode == 2
    assert "usage: python -m bench" in done.stderr and "unknown group(s) nosuchgroup" in done.stderr
