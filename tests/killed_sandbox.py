"""One Lambda sandbox that can be killed from outside: ``python -m tests.killed_sandbox``.

The tests of killed invocations play Lambda's part: they start this process with the function's
environment, hand it one invocation per stdin line and kill it (SIGKILL, as Lambda does) or let
it run out of memory under ``resource.setrlimit(RLIMIT_AS)``. Replies are JSON lines on stdout:
``{"ready": true}`` after init, ``{"running": …}`` once the invocation's start announcement (and,
with ``grow``, its memory reading) has been exported, then the handler's result or error.

    → {"request_id": "...", "timeout_ms": 2000, "memory_mb": 128, "behaviour": "hang", "event": {...},
       "rlimit": false}

Behaviours: ``hang`` (waits to be killed), ``grow_and_hang`` (grows to 90 % of its memory, then
waits), ``grow`` (grows until memory runs out), ``ok``.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import time
import traceback
from typing import Any

import hoptrace
from hoptrace.instrumentation.aws_lambda.announce import memory_rss
from tests.lambda_context import LambdaContext

MIB = 1024 * 1024
HELD: list[bytes] = []  # what the function grows: module-level, as a leaking cache would


def _reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _wait_exported(n: int) -> int:
    """Until ``n`` records (announcements) were exported, at most 10 s; how many were."""
    deadline = time.monotonic() + 10.0
    while hoptrace.stats().get("announcements_exported", 0) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return hoptrace.stats().get("announcements_exported", 0)


def _grow_to(limit_bytes: float) -> None:
    while (memory_rss() or 0) < limit_bytes:
        HELD.append(b"x" * (2 * MIB))  # written, so resident
        time.sleep(0.005)


@hoptrace.lambda_handler
def handler(event: dict[str, Any], context: Any) -> Any:
    behaviour = event["behaviour"]
    exported = _wait_exported(event["exported_before"] + 1)
    if behaviour == "grow_and_hang":
        logging.getLogger("orders").warning("loading the whole order history into memory")
        _grow_to(0.9 * context.memory_limit_in_mb * MIB)
        time.sleep(0.3)  # the watchdog's next reading
        exported = _wait_exported(event["exported_before"] + 2)
    _reply({"running": exported})
    if behaviour in ("hang", "grow_and_hang"):
        time.sleep(3600)
    if behaviour == "grow":
        while True:  # until the address space set by setrlimit runs out: MemoryError
            HELD.append(b"x" * (2 * MIB))
            time.sleep(0.01)  # 200 MiB/s: the watchdog's readings (every 50 ms) see it near the limit
    return {"statusCode": 200, "body": "ok"}


def _limit_address_space(memory_mb: int) -> None:
    """An address-space limit that leaves the process ``memory_mb`` of resident memory in all."""
    with open("/proc/self/statm", "rb") as f:
        size_pages, resident_pages = (int(x) for x in f.read().split()[:2])
    page = os.sysconf("SC_PAGE_SIZE")
    headroom = memory_mb * MIB - resident_pages * page
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size_pages * page + headroom, hard))


def main() -> None:
    hoptrace.init()
    _reply({"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        context = LambdaContext(
            function_name=os.environ["AWS_LAMBDA_FUNCTION_NAME"], memory_limit_in_mb=request["memory_mb"],
            timeout_s=request["timeout_ms"] / 1000.0, aws_request_id=request["request_id"],
        )  # fmt: skip
        event = {**request["event"], "behaviour": request["behaviour"],
                 "exported_before": hoptrace.stats().get("announcements_exported", 0)}  # fmt: skip
        if request.get("rlimit"):
            _limit_address_space(request["memory_mb"])
        try:
            result = handler(event, context)
        except BaseException as exc:  # MemoryError included: Lambda's runtime reports it
            HELD.clear()
            trace = traceback.format_exception(type(exc), exc, exc.__traceback__)
            _reply({"error": {"errorType": type(exc).__name__, "stackTrace": trace}})
        else:
            _reply({"result": result})


if __name__ == "__main__":
    main()
