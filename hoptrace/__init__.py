"""hoptrace: trace serverless transactions across queues, topics and table streams.

The top-level package re-exports the instrumentation API lazily, so ``import hoptrace`` costs
nothing until a function is actually used (cold starts matter in Lambda).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = ("init", "shutdown", "flush", "lambda_handler", "records", "label", "stats")

if TYPE_CHECKING:  # pragma: no cover
    from hoptrace.instrumentation import (  # noqa: F401
        flush,
        init,
        label,
        lambda_handler,
        records,
        shutdown,
        stats,
    )


def __getattr__(name: str) -> Any:
    if name in _API:
        from hoptrace import instrumentation

        return getattr(instrumentation, name)
    raise AttributeError(f"module 'hoptrace' has no attribute {name!r}")


__all__ = list(_API)
