"""Stock sync (scheduled): pulls the supplier's stock feed, which now and then never answers.

The demo's function that sometimes times out: every third window the feed hangs past the
function's 3 s timeout. hoptrace's watchdog ends the invocation just before the deadline, marked
``hoptrace.faas.killed = timeout``, and Lambda (the demo runner) kills the sandbox.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import hoptrace

SLOW_EVERY_S = 15.0


@hoptrace.lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    window = int(time.time() // SLOW_EVERY_S)
    hung = window % 3 == 1
    if hung:
        logging.getLogger("shop.stock-sync").warning("stock sync: the supplier's feed has not answered yet; waiting")
    time.sleep(30.0 if hung else 0.2)  # the supplier's feed
    return {"synced": 42, "window": window}
