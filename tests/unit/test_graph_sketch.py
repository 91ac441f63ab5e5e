"""The latency sketch: relative-error quantiles, exact merges, a stable byte form."""

from __future__ import annotations

import random

import pytest

from hoptrace.graph.sketch import ALPHA, LatencySketch


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_quantiles_are_within_the_relative_error_of_the_true_order_statistic(seed: int) -> None:
    rng = random.Random(seed)
    values = [rng.lognormvariate(3, 1.5) for _ in range(5000)]
    sketch = LatencySketch.of(values)
    for q in (0.5, 0.95, 0.99):
        estimate = sketch.quantile(q)
        assert estimate is not None
        assert abs(estimate - exact(values, q)) <= ALPHA * exact(values, q) + 1e-9


def test_merging_minutes_equals_sketching_the_whole_window() -> None:
    rng = random.Random(7)
    minutes = [[rng.expovariate(1 / 40) for _ in range(300)] for _ in range(5)]
    merged = LatencySketch()
    for values in minutes:
        merged.merge(LatencySketch.of(values))
    whole = LatencySketch.of([v for values in minutes for v in values])
    assert merged == whole
    assert merged.count == 1500
    assert merged.quantile(0.95) == whole.quantile(0.95)


def test_bytes_round_trip_keeps_every_bucket_including_zero_and_sub_millisecond_values() -> None:
    sketch = LatencySketch.of([0.0, 0.0005, 0.2, 1.0, 12.5, 12.6, 950.0, 3_600_000.0])
    back = LatencySketch.from_bytes(sketch.to_bytes())
    assert back == sketch
    assert back.count == 8
    assert back.zero == 2
    assert back.quantile(0.0) == 0.0
    assert back.quantile(1.0) == pytest.approx(3_600_000.0, rel=ALPHA)


def test_an_empty_sketch_has_no_quantiles_and_a_tiny_byte_form() -> None:
    sketch = LatencySketch()
    assert sketch.quantile(0.5) is None
    assert LatencySketch.from_bytes(sketch.to_bytes()).count == 0
    assert len(sketch.to_bytes()) == 3


def test_bytes_that_are_not_a_sketch_are_refused() -> None:
    with pytest.raises(ValueError, match="version"):
        LatencySketch.from_bytes(b"\x09\x00")
    with pytest.raises(ValueError, match="truncated"):
        LatencySketch.from_bytes(LatencySketch.of([5.0, 50.0]).to_bytes()[:-1])


def test_merging_serialised_bytes_equals_merging_the_decoded_sketch() -> None:
    rng = random.Random(7)
    for _ in range(50):
        # values across many decades: bucket deltas and counts of one and of several varint bytes
        a = LatencySketch.of(rng.lognormvariate(2, 4) for _ in range(rng.randint(0, 300)))
        b = LatencySketch.of([0.0] * rng.randint(0, 200) + [rng.lognormvariate(0, 6) for _ in range(300)])
        b.add(5.0, 100_000)
        into, reference = LatencySketch.from_bytes(a.to_bytes()), LatencySketch.from_bytes(a.to_bytes())
        into.merge_bytes(b.to_bytes())
        reference.merge(LatencySketch.from_bytes(b.to_bytes()))
        assert (into.buckets, into.zero, into.count) == (reference.buckets, reference.zero, reference.count)


def test_merging_bytes_that_are_no_sketch_is_refused() -> None:
    whole = LatencySketch.of([1.0, 200.0, 3e6]).to_bytes()
    for bad in (b"", b"\x09" + whole[1:], whole[:-1]):
        with pytest.raises(ValueError):
            LatencySketch().merge_bytes(bad)
