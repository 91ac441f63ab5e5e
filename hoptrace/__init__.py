"""hoptrace: trace serverless transactions across queues, topics and table streams.

The top-level package re-exports the instrumentation API lazily, so ``import hoptrace`` costs
nothing until a function is actually used (cold starts matter in Lambda).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = ("init", "shutdown", "flush", "lambda_handler", "records", "label", "stats")

if TYPE_CHECKING:  # pragma: no cover
    from hoptrace.instrumentation import flush as flush
    from hoptrace.instrumentation import init as init
    from hoptrace.instrumentation import label as label
    from hoptrace.instrumentation import lambda_handler as lambda_handler
    from hoptrace.instrumentation import records as records
    from hoptrace.instrumentation import shutdown as shutdown
    from hoptrace.instrumentation import stats as stats


def __getattr__(name: str) -> Any:
    if name in _API:
        from hoptrace import instrumentation

        return getattr(instrumentation, name)
    raise AttributeError(f"module 'hoptrace' has no attribute {name!r}")


__all__ = list(_API)
