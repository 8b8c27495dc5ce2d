"""Metric helpers: a batch of values observed at once, and the consumer-lag report after a rebalance."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from streams import metrics
from streams.metrics import LAG_BUCKETS, observe_all


def _samples(histogram: Histogram) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for metric in histogram.collect() for s in metric.samples]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=200_000) | st.sampled_from([0.0, *LAG_BUCKETS]), max_size=50))
def test_same_samples_as_one_observe_per_value(values: list[float]) -> None:
    one_by_one = Histogram("lag", "test", buckets=LAG_BUCKETS, registry=CollectorRegistry())
    at_once = Histogram("lag", "test", buckets=LAG_BUCKETS, registry=CollectorRegistry())
    for value in values:
        one_by_one.observe(value)
    observe_all(at_once, values)
    expected, got = _samples(one_by_one), _samples(at_once)
    assert [(n, labels) for n, labels, _ in got] == [(n, labels) for n, labels, _ in expected]
    for (_, _, want), (_, _, have) in zip(expected, got, strict=True):
        assert math.isclose(have, want, rel_tol=1e-9, abs_tol=1e-9)


def test_nan_counts_in_no_bucket_as_with_observe() -> None:
    at_once = Histogram("lag", "test", buckets=(1, 2), registry=CollectorRegistry())
    observe_all(at_once, [0.5, math.nan, 3.0])
    counts = {s.labels.get("le"): s.value for m in at_once.collect() for s in m.samples if s.name == "lag_bucket"}
    assert counts == {"1.0": 1.0, "2.0": 1.0, "+Inf": 2.0}


def test_consumer_lag_report_drops_partitions_no_longer_owned() -> None:
    """After a rebalance a worker reports only what it owns, so sum() over workers counts each partition once."""

    def reported() -> dict[tuple[str, str], float]:
        return {
            (s.labels["topic"], s.labels["partition"]): s.value
            for family in metrics.CONSUMER_LAG.collect()
            for s in family.samples
        }

    try:
        metrics.report_consumer_lag({("in", 0): 5, ("in", 1): 7})
        assert reported() == {("in", "0"): 5, ("in", "1"): 7}
        metrics.report_consumer_lag({("in", 1): 2, ("in", 2): -3})
        assert reported() == {("in", "1"): 2, ("in", "2"): 0}
    finally:
        metrics.CONSUMER_LAG.clear()
