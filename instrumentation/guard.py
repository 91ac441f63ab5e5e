"""The one guard around everything hoptrace does inside the user's process.

Whatever goes wrong in tracing (a bug of ours, an odd event, a dead collector) is logged at
debug level and counted, never raised into the user's code.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable, TypeVar

logger = logging.getLogger("hoptrace")

_lock = threading.Lock()
_counters: Counter[str] = Counter()

F = TypeVar("F", bound=Callable[..., Any])


def count(name: str, n: int = 1) -> None:
    """Add to one of the internal counters (dropped spans, failed exports, guarded errors)."""
    with _lock:
        _counters[name] += n


def stats() -> dict[str, int]:
    """A snapshot of the internal counters: what was dropped, failed or swallowed."""
    with _lock:
        return dict(_counters)


def reset_stats() -> None:
    """Clear the counters (tests and long-running processes that report deltas)."""
    with _lock:
        _counters.clear()


def swallowed(where: str) -> None:
    """Count and log the exception being handled (for hot paths that catch it themselves)."""
    count("internal_errors")
    count(f"internal_errors.{where}")
    logger.debug("hoptrace: error in %s (ignored)", where, exc_info=True)


@contextmanager
def guard(where: str) -> Iterator[None]:
    """Swallow and count any exception raised by tracing code in the block."""
    try:
        yield
    except Exception:  # the whole point: tracing must never break the user's code
        swallowed(where)


def guarded(where: str, default: Any = None) -> Callable[[F], F]:
    """Decorator form of :func:`guard`; the function returns ``default`` if it fails."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception:
                count("internal_errors")
                count(f"internal_errors.{where}")
                logger.debug("hoptrace: error in %s (ignored)", where, exc_info=True)
                return default

        return inner  # type: ignore[return-value]

    return wrap
