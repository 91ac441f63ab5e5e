"""Sales report (scheduled): every third window it loads the whole order history into memory.

The demo's function that sometimes runs out of memory. Its sandbox is killed as Lambda kills one
that passes its memory size (the demo worker enforces ``memory_mb`` for it), so the invocation
never ends: hoptrace's start announcement and its memory reading near the limit let the collector
record it as killed, ``out_of_memory``, once its deadline and the grace period have passed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import hoptrace

HISTORY_EVERY_S = 15.0  # one window in three reads the full history


@hoptrace.lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    window = int(time.time() // HISTORY_EVERY_S)
    full_history = window % 3 == 0
    hoptrace.label("report", "full" if full_history else "daily")
    if full_history:  # logged before it runs out: the memory reading near the limit carries it out
        logging.getLogger("shop.sales-report").warning("sales report: loading the full order history into memory")
    rows: list[bytes] = []
    # The history grows 2 MiB every 20 ms: past the function's memory size when it is the full one.
    chunks = 10_000 if full_history else 8
    for _ in range(chunks):
        rows.append(b"order," * (2 * 1024 * 1024 // 6))
        time.sleep(0.02)
    return {"rows": len(rows), "window": window}
