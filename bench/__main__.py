"""``python -m bench [GROUP ...] [options]``: run benchmark groups (all of them when none is named).

Each group is a module with ``add_arguments(parser)`` and ``run(args) -> Report``; its markdown
goes to stdout, its JSON to ``bench/out/GROUP.json``, progress to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from types import ModuleType

from bench.measure import progress
from bench.report import OUT_DIR, environment

# Group name -> module.
GROUPS = {
    "instrumentation": "bench.instrumentation",
    "collector": "bench.collector",
    "graph": "bench.graph",
}


def main(argv: list[str] | None = None) -> int:
    modules: dict[str, ModuleType] = {name: importlib.import_module(path) for name, path in GROUPS.items()}
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run hoptrace's benchmark groups: markdown to stdout, JSON to bench/out/GROUP.json, progress "
        "to stderr. Every figure is a ratio against a baseline measured in the same run.",
    )
    parser.add_argument("groups", nargs="*", metavar="GROUP", help=f"which to run: {', '.join(GROUPS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer runs: a smoke test, not figures to quote")
    for name, module in modules.items():
        module.add_arguments(parser.add_argument_group(name))
    args = parser.parse_args(argv)
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; available: {', '.join(GROUPS)}")
    failed = False
    for name in args.groups or list(GROUPS):
        started = time.perf_counter()
        progress(f"{name}: starting")
        report = modules[name].run(args)
        report.environment = environment()
        print(report.markdown(), flush=True)
        path = report.write_json(OUT_DIR)
        progress(f"{name}: done in {time.perf_counter() - started:.0f}s; JSON in {path}")
        failed = failed or any(w.startswith("FAILED") for w in report.warnings)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
