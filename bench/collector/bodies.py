"""OTLP request bodies of the benchmark span mix, kept in a file the floor's child process reads too."""

from __future__ import annotations

import struct
from pathlib import Path

from hoptrace.collector.populate import SpanMix

_HEADER = struct.Struct("<II")  # body length, spans in it


def make(spans: int, request_spans: int, seed: int) -> list[tuple[bytes, int]]:
    """About ``spans`` spans of the mix as protobuf ExportTraceServiceRequest bodies: ``(body, spans)``."""
    mix = SpanMix.for_spans(spans, seed=seed, days=1.0)
    return list(mix.requests(0, mix.traces, request_spans))


def save(bodies: list[tuple[bytes, int]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for body, count in bodies:
            out.write(_HEADER.pack(len(body), count))
            out.write(body)


def load(path: Path) -> list[tuple[bytes, int]]:
    data = path.read_bytes()
    out = []
    pos = 0
    while pos < len(data):
        size, count = _HEADER.unpack_from(data, pos)
        pos += _HEADER.size
        out.append((data[pos : pos + size], count))
        pos += size
    return out
