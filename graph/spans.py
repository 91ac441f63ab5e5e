"""The span as the graph reads it: a small frozen record built from whatever the store holds.

The graph never parses OTLP itself; the collector builds a ``GraphSpan`` from its stored row
(indexed columns + decoded attributes). Everything the graph derives comes from this record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Union

AttrValue = Union[str, bool, int, float, tuple[Union[str, bool, int, float], ...]]

# OTLP span kinds (opentelemetry.proto.trace.v1.Span.SpanKind).
INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER = 1, 2, 3, 4, 5
STATUS_ERROR = 2


@dataclass(frozen=True)
class SpanLink:
    """A link to another span; ``type`` is ``hoptrace.link.type`` when the link carries it."""

    trace_id: bytes
    span_id: bytes
    type: str | None = None


@dataclass(frozen=True, eq=False, init=False)
class GraphSpan:
    """What the graph reads of one span (ids as bytes, times in ns since the epoch)."""

    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes | None
    service: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status: int
    attributes: Mapping[str, AttrValue] = field(default_factory=dict)
    resource: Mapping[str, AttrValue] = field(default_factory=dict)
    links: tuple[SpanLink, ...] = ()
    exception_types: tuple[str, ...] = ()

    def __init__(
        self, trace_id: bytes, span_id: bytes, parent_span_id: bytes | None, service: str, name: str, kind: int,
        start_ns: int, end_ns: int, status: int, attributes: Mapping[str, AttrValue] | None = None,
        resource: Mapping[str, AttrValue] | None = None, links: tuple[SpanLink, ...] = (),
        exception_types: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        # One update of the instance's dict instead of a frozen dataclass's __setattr__ per field:
        # a fifth of the time (the graph pass builds one per span). Span attributes over resource
        # attributes are merged once: the graph asks many times.
        attributes = {} if attributes is None else attributes
        resource = {} if resource is None else resource
        self.__dict__.update(
            trace_id=trace_id, span_id=span_id, parent_span_id=parent_span_id, service=service, name=name, kind=kind,
            start_ns=start_ns, end_ns=end_ns, status=status, attributes=attributes, resource=resource, links=links,
            exception_types=exception_types, _merged={**resource, **attributes},
        )  # fmt: skip

    def attr(self, key: str) -> AttrValue | None:
        """A span attribute, else the resource attribute of that name."""
        merged: dict[str, AttrValue] = self._merged  # type: ignore[attr-defined]
        return merged.get(key)

    def values(self, keys: tuple[str, ...]) -> tuple[AttrValue | None, ...]:
        """The raw values of ``keys`` (span over resource), None where absent: one call for many reads."""
        merged: dict[str, AttrValue] = self._merged  # type: ignore[attr-defined]
        return tuple(map(merged.get, keys))

    def text(self, *keys: str) -> str | None:
        """The first of ``keys`` holding a non-empty scalar, as text."""
        merged: dict[str, AttrValue] = self._merged  # type: ignore[attr-defined]
        for key in keys:
            value = merged.get(key)
            if isinstance(value, tuple):
                value = value[0] if value else None
            if value is not None and value != "":
                return str(value)
        return None

    def texts(self, key: str) -> tuple[str, ...]:
        """A list attribute (or a scalar) as a tuple of strings."""
        value = self.attr(key)
        if value is None:
            return ()
        if isinstance(value, tuple):
            return tuple(map(str, value))
        return (str(value),)

    def number(self, key: str) -> float | None:
        value = self.attr(key)
        if isinstance(value, bool) or value is None or isinstance(value, tuple):
            return None
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None

    @property
    def duration_ms(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e6

    @property
    def is_error(self) -> bool:
        return self.status == STATUS_ERROR
