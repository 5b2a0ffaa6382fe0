"""Insights across people, pure: each person's bounded part in a figure, and the figure's differentially private
release (docs/insights.md has the reasoning in plain words; warehouse/insights.py reads and stores).

A figure ("weekday": 7 days of the week, "hour": 24 hours of the day, UTC) describes one week: for each bucket, the
average eligible person's share of their own active time. Each person contributes one vector: their own time per
bucket divided by their total (`contribution`), so it is never negative and sums to at most 1 whatever they did.
Adding or removing one person therefore moves the summed vector by at most 1 in L1 (and so in L2) and the number
of people by 1: the sensitivities the noise is calibrated to. OpenDP calibrates and draws the noise (`release`);
nothing here samples noise of its own. What comes out is post-processed only (negative sums cut to 0, the sums
made shares), which spends no budget.

A figure's budget ε is split: COUNT_WEIGHT of it on how many people it describes, the rest on the sums. Whether
a figure is shown depends on the noisy count reaching k, never on the exact one, so whether a figure appears is
itself private: an exact threshold would tell an attacker with k - 1 accounts of their own whether one more person
was active.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache

import opendp.prelude as dp

# OpenDP's measurements below are in its "contrib" set, as most of the library is: vetted by its maintainers,
# implemented in Rust with floating-point-safe samplers (https://docs.opendp.org/ , "Feature listing").
dp.enable_features("contrib")

FIGURES = {"weekday": 7, "hour": 24}
COUNT_WEIGHT = 0.25
# One person's vector sums to at most this (`contribution`): the L1 and L2 distance one person moves the sums.
CONTRIBUTION_BOUND = 1.0
# A week is released once it is over and this long has passed, so a collector back online after a day away
# has delivered its spool; a week is never released twice (warehouse/insights.py).
SETTLE = timedelta(days=2)
# How far back weeks are released when Insights are turned on: older weeks stay unreleased.
WEEKS_BACK = 12
# An eligible person (warehouse/insights.py): active on at least `min_active_days` of the LOOKBACK_DAYS ending with
# the week, each day counted only from an enrolled device's time that reached the gateway within LIVE_WITHIN of
# happening (history sent later, an import or a backfilled spool, proves no presence), and active in the week.
LOOKBACK_DAYS = 28
LIVE_WITHIN = timedelta(days=1)
WEEK_MS = 7 * 24 * 3600 * 1000.0
_Z95_LAPLACE = math.log(20)  # P(|Laplace(b)| > b ln 20) = 5 %
_Z95_GAUSSIAN = 1.959964


class InvalidBudget(ValueError):
    """A privacy budget that cannot be used; the message names what is wrong."""


@dataclass(frozen=True)
class Budget:
    """What one figure of one week may spend: ε (how much one person can change what is seen: outputs are at most
    e^ε times likelier with them than without), and δ (the chance that bound may fail; 0 for pure ε)."""

    epsilon: float
    delta: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epsilon) and 0 < self.epsilon <= 10):
            raise InvalidBudget(f"insights_epsilon must be above 0 and at most 10, got {self.epsilon}")
        if not (math.isfinite(self.delta) and 0 <= self.delta <= 1e-3):
            raise InvalidBudget(f"insights_delta must be between 0 and 0.001, got {self.delta}")


@dataclass(frozen=True)
class Release:
    """One figure of one week as released: `shares` (noisy, non-negative, summing to 1) and `people` (noisy) are
    all anyone ever sees; `epsilon`/`delta` are what OpenDP says the release spent."""

    figure: str
    week: date
    shown: bool
    shares: tuple[float, ...]
    people: int
    epsilon: float
    delta: float
    mechanism: str  # "laplace" or "gaussian": the noise on the sums
    share_scale: float  # that noise's scale on each bucket's summed shares
    count_scale: float  # the discrete Laplace scale on the count
    k: int
    min_active_days: int

    def margin(self) -> float:
        """About how far one bar may be off, as a share (0.05 = 5 points), 19 times out of 20: the 95 % bound of the
        noise on one bucket's sum over the noisy number of people. Post-processing of the release only."""
        z = _Z95_LAPLACE if self.mechanism == "laplace" else _Z95_GAUSSIAN
        return min(1.0, z * self.share_scale / max(self.people, 1))


def contribution(active_ms: Sequence[float]) -> tuple[float, ...]:
    """One person's part in a figure, from their active time per bucket (ms): non-negative and summing to at most
    CONTRIBUTION_BOUND (all zero when they were not active). Each bucket is clamped to [0, a week]; one that is not
    a finite number counts 0."""
    kept = [min(float(x), WEEK_MS) if isinstance(x, int | float) and math.isfinite(x) and x > 0 else 0.0
            for x in active_ms]  # fmt: skip
    total = math.fsum(kept)
    if total <= 0:
        return (0.0,) * len(kept)
    # Divided by a little more than the total, so rounding can never make the sum exceed the bound.
    denominator = total * (1 + 1e-12) / CONTRIBUTION_BOUND
    return tuple(x / denominator for x in kept)


def summed(contributions: Sequence[Sequence[float]], buckets: int) -> list[float]:
    sums = [0.0] * buckets
    for vector in contributions:
        if len(vector) != buckets:
            raise ValueError(f"a contribution has {len(vector)} buckets, the figure {buckets}")
        for n, x in enumerate(vector):
            sums[n] += x
    return sums


@dataclass(frozen=True)
class _Mechanisms:
    sums: dp.Measurement
    count: dp.Measurement
    name: str
    share_scale: float
    count_scale: float


def _laplace_sums(buckets: int, scale: float) -> dp.Measurement:
    domain = dp.vector_domain(dp.atom_domain(T=float, nan=False), size=buckets)
    return dp.m.make_laplace(domain, dp.l1_distance(T=float), scale)


def _gaussian_sums(buckets: int, scale: float, delta: float) -> dp.Measurement:
    domain = dp.vector_domain(dp.atom_domain(T=float, nan=False), size=buckets)
    zcdp = dp.m.make_gaussian(domain, dp.l2_distance(T=float), scale)
    return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(zcdp), delta)


def _laplace_count(scale: float) -> dp.Measurement:
    return dp.m.make_laplace(dp.atom_domain(T=int), dp.absolute_distance(T=int), scale)


@lru_cache(maxsize=32)
def mechanisms(buckets: int, budget: Budget) -> _Mechanisms:
    """The figure's measurements, calibrated by OpenDP to the budget: the count gets COUNT_WEIGHT of ε, the sums
    the rest (and all of δ). With δ > 0 the Gaussian mechanism is used for the sums when it adds less noise than
    Laplace at that budget (for these figures it never does: one person's vector is as far in L1 as in L2)."""
    eps_count = budget.epsilon * COUNT_WEIGHT
    eps_sums = budget.epsilon - eps_count
    count_scale = dp.binary_search_param(_laplace_count, d_in=1, d_out=eps_count)
    laplace = dp.binary_search_param(lambda s: _laplace_sums(buckets, s), d_in=CONTRIBUTION_BOUND, d_out=eps_sums)
    sums, name, scale = _laplace_sums(buckets, laplace), "laplace", laplace
    if budget.delta > 0:
        gaussian = dp.binary_search_param(
            lambda s: _gaussian_sums(buckets, s, budget.delta), d_in=CONTRIBUTION_BOUND, d_out=(eps_sums, budget.delta)
        )
        if gaussian < laplace * math.sqrt(2):  # the standard deviations: σ against √2 b
            sums, name, scale = _gaussian_sums(buckets, gaussian, budget.delta), "gaussian", gaussian
    return _Mechanisms(sums, _laplace_count(count_scale), name, scale, count_scale)


def spent(buckets: int, budget: Budget) -> tuple[float, float]:
    """(ε, δ) one release of a figure spends, as OpenDP maps its measurements (basic composition: they add)."""
    m = mechanisms(buckets, budget)
    sums = m.sums.map(CONTRIBUTION_BOUND)
    eps_sums, delta = (sums, 0.0) if m.name == "laplace" else sums
    return float(eps_sums) + float(m.count.map(1)), float(delta)


def release(
    figure: str, week: date, contributions: Sequence[Sequence[float]], budget: Budget, k: int, min_active_days: int
) -> Release:
    """Release one figure of one week from its eligible people's contributions (each from `contribution`)."""
    buckets = FIGURES[figure]
    m = mechanisms(buckets, budget)
    epsilon, delta = spent(buckets, budget)
    noisy_sums = m.sums(summed(contributions, buckets))
    people = int(m.count(len(contributions)))
    kept = [max(0.0, float(x)) for x in noisy_sums]
    total = math.fsum(kept)
    shown = people >= k and total > 0
    return Release(
        figure=figure,
        week=week,
        shown=shown,
        shares=tuple(x / total for x in kept) if shown else (),
        people=max(people, 0),
        epsilon=epsilon,
        delta=delta,
        mechanism=m.name,
        share_scale=m.share_scale,
        count_scale=m.count_scale,
        k=k,
        min_active_days=min_active_days,
    )


def week_of(day: date) -> date:
    """The Monday of the (UTC) week `day` is in."""
    return day - timedelta(days=day.weekday())


def due_weeks(now: datetime, released: set[date]) -> list[date]:
    """The weeks to release now, oldest first: over for at least SETTLE, at most WEEKS_BACK back, not released."""
    last = week_of((now - SETTLE - timedelta(weeks=1)).date())
    weeks = [last - timedelta(weeks=n) for n in range(WEEKS_BACK)]
    return sorted(w for w in weeks if w not in released)
