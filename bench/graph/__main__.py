"""``python -m bench.graph``: the graph group on its own (markdown to stdout, JSON to bench/out/graph.json)."""

from __future__ import annotations

import argparse
import sys

from bench.graph import add_arguments, run
from bench.report import OUT_DIR, environment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.graph", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller loads: a smoke test, not figures to quote")
    add_arguments(parser.add_argument_group("graph"))
    args = parser.parse_args(argv)
    report = run(args)
    report.environment = environment()
    print(report.markdown(), flush=True)
    report.write_json(OUT_DIR)
    return 1 if any(w.startswith("FAILED") for w in report.warnings) else 0


if __name__ == "__main__":
    sys.exit(main())
