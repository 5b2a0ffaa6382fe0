"""How the benchmarks turn samples into figures, the same way in each (issue: honest benchmarks)."""

from __future__ import annotations

import math
from collections.abc import Sequence

MIN_SAMPLES_FOR_P95 = 100
# What every benchmark's figures must say (bench/__main__.py refuses them otherwise): what the data looks like, the
# target in words, and whether every part of that target was met.
REQUIRED_KEYS = ("data", "target", "meets_target")


class IncompleteFigures(ValueError):
    """A benchmark returned figures without one of REQUIRED_KEYS."""


def percentile(samples: Sequence[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q <= 1): the smallest sample at least q of all samples are <= to."""
    if not samples:
        raise ValueError("a percentile of no samples")
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def tail(samples: Sequence[float], q: float) -> float | None:
    """The q-th percentile, or None when there are fewer than MIN_SAMPLES_FOR_P95 samples: a p95 of 36 samples is
    the 35th of them, not a p95. A verdict that needs the figure fails on None."""
    return percentile(samples, q) if len(samples) >= MIN_SAMPLES_FOR_P95 else None


def checked(figures: dict) -> dict:
    """The figures, once they say what REQUIRED_KEYS asks; IncompleteFigures naming what is missing otherwise."""
    missing = [key for key in REQUIRED_KEYS if key not in figures]
    if missing:
        raise IncompleteFigures(f"the figures do not say {', '.join(missing)}")
    if not isinstance(figures["meets_target"], bool):
        raise IncompleteFigures(f"meets_target is {figures['meets_target']!r}, not true or false")
    if not str(figures["data"]).strip() or not str(figures["target"]).strip():
        raise IncompleteFigures("data and target must each say something")
    return figures
