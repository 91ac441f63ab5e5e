"""``hoptrace.label(key, value)``: business labels (order id, customer) for search later.

Inside a batch, a label describes the record being processed, so it goes on that record's
span; otherwise on the invocation span; outside any invocation on the current span.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

from ..guard import guard
from . import invocation as inv_mod

PREFIX = "hoptrace.label."
MAX_VALUE_CHARS = 512


def _normalise(value: Any) -> str | int | float | bool:
    if isinstance(value, (bool, int, float)):
        return value
    text = value if isinstance(value, str) else str(value)
    return text[:MAX_VALUE_CHARS]


def set_label(key: str, value: Any) -> None:
    """Record ``hoptrace.label.<key>`` = value on the right span (see module docstring)."""
    with guard("label"):
        name = PREFIX + str(key).strip()
        normalised = _normalise(value)
        inv = inv_mod.current()
        if inv is None:
            trace.get_current_span().set_attribute(name, normalised)
            return
        if inv.current_record is not None:
            inv.current_record.span.set_attribute(name, normalised)
            if inv.trigger.is_batch:
                return
        inv.span.set_attribute(name, normalised)
