"""How the benchmarks make figures of samples (bench/_figures.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench._figures import percentile


def test_the_95th_percentile_of_100_samples_is_the_95th_smallest():
    samples = list(range(100, 0, -1))  # 100 .. 1, any order
    assert percentile(samples, 0.95) == 95
    assert percentile(samples, 0.5) == 50
    assert percentile(samples, 1.0) == 100


def test_no_samples_is_an_error_not_a_figure():
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 0.95)


@given(st.lists(st.floats(allow_nan=False), min_size=1), st.floats(min_value=0.01, max_value=1.0))
def test_at_least_q_of_the_samples_are_at_or_below_the_percentile(samples, q):
    p = percentile(samples, q)
    assert p in samples
    assert sum(x <= p for x in samples) >= q * len(samples)
