"""A mergeable latency sketch with a relative-error guarantee (log-bucketed, DDSketch-like).

A value ``x > MIN_VALUE`` falls in bucket ``i = ceil(log_gamma(x))`` with
``gamma = (1 + alpha) / (1 - alpha)``; the bucket's representative ``2 gamma^i / (gamma + 1)``
is within ``alpha`` (relative) of every value in it, so any quantile is reported within
``alpha`` of the true order statistic. Merging adds bucket counts, which is exact: a window of
the map is the merge of its minutes. Values at or below ``MIN_VALUE`` share one zero bucket.

Serialised form (bytes): version byte, zero count, number of buckets, then per bucket the
zigzag delta of its index and its count, all as unsigned LEB128 varints.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)
MIN_VALUE = 1e-3  # ms: one microsecond
_VERSION = 1


class LatencySketch:
    """Counts of values (milliseconds) per log bucket; see the module docstring."""

    __slots__ = ("buckets", "count", "zero")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.zero = 0
        self.count = 0

    @classmethod
    def of(cls, values: Iterable[float]) -> LatencySketch:
        sketch = cls()
        for v in values:
            sketch.add(v)
        return sketch

    def add(self, value: float, n: int = 1) -> None:
        self.add_bucket(bucket_of(value), n)

    def add_bucket(self, i: int | None, n: int = 1) -> None:
        """Count ``n`` values of bucket ``i`` (``bucket_of``): one logarithm for a value that
        goes into several sketches (a span's node and its edges)."""
        if i is None:
            self.zero += n
        else:
            buckets = self.buckets
            buckets[i] = buckets.get(i, 0) + n
        self.count += n

    def merge(self, other: LatencySketch) -> LatencySketch:
        """Add ``other`` into this sketch (in place) and return it."""
        for i, n in other.buckets.items():
            self.buckets[i] = self.buckets.get(i, 0) + n
        self.zero += other.zero
        self.count += other.count
        return self

    def merge_bytes(self, data: bytes) -> LatencySketch:
        """Add a serialised sketch (``to_bytes``) into this one, decoded straight into its buckets:
        the same as ``merge(from_bytes(data))`` without the sketch in between (a day's map merges
        thousands). Malformed data raises ValueError, leaving this sketch partly merged."""
        if not data or data[0] != _VERSION:
            raise ValueError("not a hoptrace latency sketch (unknown version)")
        try:
            # Varints of one byte (below 0x80) are nearly all of them: read inline, others by _read_varint.
            zero = data[1]
            pos = 2
            if zero & 0x80:
                zero, pos = _read_varint(data, 1)
            n = data[pos]
            pos += 1
            if n & 0x80:
                n, pos = _read_varint(data, pos - 1)
            buckets = self.buckets
            get = buckets.get
            index = 0
            total = zero
            for _ in range(n):
                zz = data[pos]
                pos += 1
                if zz & 0x80:
                    zz, pos = _read_varint(data, pos - 1)
                index += (zz >> 1) ^ -(zz & 1)
                count = data[pos]
                pos += 1
                if count & 0x80:
                    count, pos = _read_varint(data, pos - 1)
                buckets[index] = get(index, 0) + count
                total += count
        except IndexError:
            raise ValueError("truncated latency sketch") from None
        self.zero += zero
        self.count += total
        return self

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0..1), within ALPHA of the true value; None when empty."""
        if self.count == 0:
            return None
        rank = q * (self.count - 1)
        seen = self.zero
        if rank < seen:
            return 0.0
        for i in sorted(self.buckets):
            seen += self.buckets[i]
            if rank < seen:
                return 2 * GAMMA**i / (GAMMA + 1)
        return 2 * GAMMA ** max(self.buckets) / (GAMMA + 1)

    def to_bytes(self) -> bytes:
        out = bytearray([_VERSION])
        _varint(out, self.zero)
        _varint(out, len(self.buckets))
        previous = 0
        for i in sorted(self.buckets):
            delta = i - previous
            _varint(out, (delta << 1) ^ (delta >> 63))
            _varint(out, self.buckets[i])
            previous = i
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> LatencySketch:
        if not data or data[0] != _VERSION:
            raise ValueError("not a hoptrace latency sketch (unknown version)")
        sketch = cls()
        pos = 1
        sketch.zero, pos = _read_varint(data, pos)
        n, pos = _read_varint(data, pos)
        index = 0
        total = sketch.zero
        for _ in range(n):
            zz, pos = _read_varint(data, pos)
            index += (zz >> 1) ^ -(zz & 1)
            count, pos = _read_varint(data, pos)
            sketch.buckets[index] = count
            total += count
        sketch.count = total
        return sketch

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LatencySketch) and (self.buckets, self.zero) == (other.buckets, other.zero)

    def __repr__(self) -> str:
        return f"LatencySketch(count={self.count}, p50={self.quantile(0.5)})"


def bucket_of(value: float) -> int | None:
    """The bucket of a value; None for the zero bucket (at or below ``MIN_VALUE``, or NaN)."""
    if value <= MIN_VALUE or math.isnan(value):
        return None
    return math.ceil(math.log(value) / _LOG_GAMMA)


def _varint(out: bytearray, value: int) -> None:
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated latency sketch")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
