"""How the benchmarks turn samples into figures, the same way in each (issue: honest benchmarks)."""

from __future__ import annotations

import math
from collections.abc import Sequence

MIN_SAMPLES_FOR_P95 = 100


def percentile(samples: Sequence[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q <= 1): the smallest sample at least q of all samples are <= to."""
    if not samples:
        raise ValueError("a percentile of no samples")
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
