"""hoptrace instrumentation: trace Python functions (Lambda first) across asynchronous hops.

Public API (also re-exported as ``hoptrace.*``)::

    import hoptrace

    @hoptrace.lambda_handler
    def handler(event, context):
        for record in hoptrace.records(event):   # one `process` span per record
            hoptrace.label("order_id", record["body"])

Configuration comes from the standard ``OTEL_*`` variables (``OTEL_SERVICE_NAME``,
``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_HEADERS``) and ``HOPTRACE_*`` for our own
options; ``init()`` takes the same options as keyword arguments.

This module imports nothing heavy: the SDK is loaded on first use.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from .guard import stats

if TYPE_CHECKING:  # pragma: no cover
    from opentelemetry.sdk.trace.export import SpanExporter

    from .setup import State

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["flush", "init", "label", "lambda_handler", "records", "shutdown", "stats"]


def init(exporter: SpanExporter | None = None, **options: Any) -> State:
    """Set up tracing (idempotent). Options override the environment; see ``Config``."""
    from . import setup

    return setup.init(exporter=exporter, **options)


def shutdown() -> None:
    """Flush what is left and stop; a later ``init()`` starts afresh."""
    from . import setup

    setup.shutdown()


def flush(budget_ms: float | None = None) -> bool:
    """Export finished spans now, waiting at most ``budget_ms``; True if all were sent in time."""
    from . import setup
    from .guard import guard

    st = setup.state()
    if st is None:
        return True
    with guard("flush"):
        return st.flush(None if budget_ms is None else budget_ms / 1000.0)
    return False


def lambda_handler(fn: F) -> F:
    """Decorate a Lambda handler: one invocation span per call, flushed before returning."""
    from .aws_lambda.handler import wrap_handler

    return wrap_handler(fn)


def records(event: Mapping[str, Any] | Iterable[Any]) -> Iterator[Any]:
    """Iterate a batch event's records, each inside its own ``process`` span.

    The span is parented to the record's producer (so each transaction sees its own record)
    and ends when the loop moves to the next record; an exception in the loop body, or the
    record's id in a ``batchItemFailures`` response, marks it failed.
    """
    from .aws_lambda.records import iterate

    return iterate(event)


def label(key: str, value: Any) -> None:
    """Attach a business label (``hoptrace.label.<key>``) to the current invocation, for search."""
    from .aws_lambda.labels import set_label

    set_label(key, value)
