"""``python -m bench [all | GROUP ...] [options]``: run benchmark groups (all of them when none is named).

Each group is a module with ``add_arguments(parser)`` and ``run(args) -> Report``; its markdown
goes to stdout, its JSON to ``OUT/GROUP.json``, progress to stderr. Every group's result is also
merged into ``OUT/results.json`` and rendered, with the machine and the load it ran under, into
``OUT/RESULTS.md`` (``OUT`` is ``bench/out`` unless ``--out`` says otherwise). Running some groups
replaces only their entries, so a long run can be done in parts, or continued with ``--resume``.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType

from bench.measure import progress
from bench.report import OUT_DIR, RESULTS_JSON, RESULTS_MD, Report, environment, load_results, machine, merge_results

# Group name -> module, in the order ``all`` runs them.
GROUPS = {
    "instrumentation": "bench.instrumentation",
    "collector": "bench.collector",
    "graph": "bench.graph",
    "phoenix": "bench.phoenix",
    "overload": "bench.overload",
    "scale": "bench.scale",
    "issues": "bench.issues",
}
PUBLISHED = Path(__file__).resolve().parent / "RESULTS.md"  # the committed copy (``--publish``)


def main(argv: list[str] | None = None) -> int:
    modules: dict[str, ModuleType] = {name: importlib.import_module(path) for name, path in GROUPS.items()}
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run hoptrace's benchmark groups: markdown to stdout, JSON to bench/out/GROUP.json and merged "
        "into bench/out/results.json + RESULTS.md, progress to stderr. Every figure is a ratio against a baseline "
        "measured in the same run.",
    )
    parser.add_argument(
        "groups", nargs="*", metavar="GROUP", help=f"which to run: all (the default), or some of {', '.join(GROUPS)}"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer runs: a smoke test, not figures")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="where GROUP.json, results.json and RESULTS.md go")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="skip groups results.json already holds from a run of the same mode that did not fail",
    )
    parser.add_argument("--publish", action="store_true", help=f"also copy RESULTS.md to {PUBLISHED}")
    for name, module in modules.items():
        module.add_arguments(parser.add_argument_group(name))
    args = parser.parse_args(argv)
    chosen = [g for g in args.groups if g != "all"]
    unknown = [g for g in chosen if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; available: all, {', '.join(GROUPS)}")
    names = list(dict.fromkeys(chosen)) if chosen and "all" not in args.groups else list(GROUPS)
    out: Path = args.out
    if args.resume:
        names = [n for n in names if not _done(out, n, args.quick)]
        progress(f"resume: {', '.join(names) or 'nothing'} left to run")
    failed = False
    for k, name in enumerate(names, 1):
        started = time.perf_counter()
        before = machine()
        progress(f"[{k}/{len(names)}] {name}: starting (load average {before['load_average'][:1]})")
        try:
            report = modules[name].run(args)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # one group failing must not lose the others' results
            traceback.print_exc()
            report = Report(
                name, warnings=[f"FAILED {name}: {type(exc).__name__}: {exc}"], config={"quick": args.quick}
            )
        report.config.setdefault("quick", bool(args.quick))
        report.config.setdefault("commit", _commit())
        report.environment = environment()
        print(report.markdown(), flush=True)
        path = report.write_json(out)
        merge_results(report, out, started=before, order=tuple(GROUPS))
        progress(
            f"[{k}/{len(names)}] {name}: done in {time.perf_counter() - started:.0f}s; JSON in {path}, merged into "
            f"{out / RESULTS_JSON} and {out / RESULTS_MD}"
        )
        failed = failed or any(w.startswith("FAILED") for w in report.warnings)
    if args.publish and (out / RESULTS_MD).exists():
        shutil.copyfile(out / RESULTS_MD, PUBLISHED)
        progress(f"published {PUBLISHED}")
    return 1 if failed else 0


def _commit() -> str:
    """The checkout measured: figures move with the code, so each group says which it ran."""
    import subprocess

    def git(*a: str) -> str:
        done = subprocess.run(["git", *a], cwd=PUBLISHED.parent.parent, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def _done(out: Path, name: str, quick: bool) -> bool:
    """Whether results.json already holds this group from a run of this mode that did not fail."""
    entry = load_results(out / RESULTS_JSON)["groups"].get(name)
    if not isinstance(entry, dict):
        return False
    same_mode = bool(entry.get("config", {}).get("quick")) == bool(quick)
    return same_mode and not any(str(w).startswith("FAILED") for w in entry.get("warnings", []))


if __name__ == "__main__":
    sys.exit(main())
