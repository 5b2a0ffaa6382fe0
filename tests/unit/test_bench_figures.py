"""How the benchmarks make figures of samples (bench/_figures.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.__main__ import BENCH_DIR, available
from bench._figures import REQUIRED_KEYS, IncompleteFigures, checked, percentile, tail


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


def test_a_tail_percentile_of_fewer_than_100_samples_is_no_figure():
    assert tail(list(range(99)), 0.95) is None
    assert tail(list(range(100)), 0.95) == 94


@pytest.mark.parametrize("missing", REQUIRED_KEYS)
def test_figures_that_do_not_say_their_data_target_or_verdict_are_refused_by_name(missing):
    figures = {"data": "a year of one person", "target": "p95 < 100 ms", "meets_target": True, "p95_ms": 9.0}
    assert checked(dict(figures)) == figures
    del figures[missing]
    with pytest.raises(IncompleteFigures, match=missing):
        checked(figures)


def test_a_verdict_that_is_not_true_or_false_is_refused():
    with pytest.raises(IncompleteFigures, match="meets_target"):
        checked({"data": "d", "target": "t", "meets_target": None})


@pytest.mark.parametrize("name", available())
def test_every_benchmark_says_what_its_data_looks_like(name):
    """The runner refuses figures without "data" (checked above); this keeps each module's own description beside
    its generator, where a reader of the code finds it."""
    source = (BENCH_DIR / f"{name}.py").read_text()
    for key in ("data", "target"):
        assert re.search(rf'"{key}"(:|\] =)', source), f"bench/{name}.py gives no {key}"
