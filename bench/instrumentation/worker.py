"""Entry point of the benchmark worker processes: ``python -m bench.instrumentation.worker KIND JSON``.

Each KIND runs one variant in a process of its own, so instrumentations never meet, and prints
its result as one JSON line.
"""

from __future__ import annotations

import importlib
import json
import sys

KINDS = {
    "aws_call": "bench.instrumentation.aws_call",
    "flush": "bench.instrumentation.flush",
    "announce": "bench.instrumentation.announce",
}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in KINDS:
        print(f"usage: python -m bench.instrumentation.worker {{{','.join(KINDS)}}} JSON", file=sys.stderr)
        return 2
    module = importlib.import_module(KINDS[argv[1]])
    result = module.worker(json.loads(argv[2]))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
