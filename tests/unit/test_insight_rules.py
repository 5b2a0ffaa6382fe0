"""Insights across people, pure (warehouse/insight_rules.py): each person's bounded part, the OpenDP release, and the
attacks the exact figures fell to, tried statistically over many releases (OpenDP draws fresh noise every time).

The attacker here is stronger than a real one: they know the exact number of people and, for the sybils, every
contribution but the victim's. With the exact figures (the control in each test) the attack recovers the victim's
distribution exactly; with the released ones it must not.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warehouse.insight_rules import (
    CONTRIBUTION_BOUND,
    SETTLE,
    WEEKS_BACK,
    Budget,
    InvalidBudget,
    contribution,
    due_weeks,
    mechanisms,
    release,
    spent,
    summed,
)

WEEK = date(2026, 11, 23)
DEFAULT = Budget(1.0)
TRIALS = 1000
HOURS = 24
NIGHT = (21, 22, 23, 0)  # the victim works at night; the crowd never does


def office_worker(rng: random.Random) -> tuple[float, ...]:
    return contribution([rng.uniform(0.5, 1.5) * 3_600_000 if 8 <= h < 18 else 0 for h in range(HOURS)])


VICTIM = contribution([3_600_000 if h in NIGHT else 0 for h in range(HOURS)])


def exact_shares(people) -> list[float]:
    return [s / len(people) for s in summed(people, HOURS)]


def as_distribution(estimate) -> list[float]:
    """The attacker's best reading of an estimate: negatives cut, the rest made shares."""
    kept = [max(0.0, x) for x in estimate]
    total = sum(kept)
    return [x / total for x in kept] if total > 0 else [1 / len(kept)] * len(kept)


def total_variation(a, b) -> float:
    return 0.5 * sum(abs(x - y) for x, y in zip(a, b, strict=True))


def released_shares(people) -> list[float]:
    r = release("hour", WEEK, people, DEFAULT, k=1, min_active_days=7)
    return list(r.shares) if r.shown else [0.0] * HOURS


# --- each person's part ---------------------------------------------------------------------------------------------

bucket_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-(10**12), max_value=10**12)
)


@given(st.lists(bucket_values, min_size=1, max_size=168))
def test_a_persons_contribution_is_never_negative_and_sums_to_at_most_the_bound(active):
    vector = contribution(active)
    assert len(vector) == len(active)
    assert all(x >= 0 and math.isfinite(x) for x in vector)
    assert math.fsum(vector) <= CONTRIBUTION_BOUND
    kept = [x for x in active if isinstance(x, int | float) and math.isfinite(x) and x > 0]
    if kept:
        assert math.fsum(vector) == pytest.approx(1.0)
    else:
        assert set(vector) == {0.0}


# Active time in milliseconds: none, or at least 1 ms (a scale of a subnormal float is 0, not a share of anything).
milliseconds = st.one_of(st.just(0.0), st.floats(min_value=1.0, max_value=1e6))


@given(st.lists(milliseconds, min_size=2, max_size=24), st.floats(1e-3, 100))
def test_a_contribution_is_the_persons_own_shares_whatever_their_total(active, factor):
    """A heavy user weighs what a light one does: only the proportions of one's own time count (below the clamp
    of a week per bucket)."""
    assert contribution([x * factor for x in active]) == pytest.approx(contribution(active), abs=1e-9)


# --- the budget and what OpenDP says is spent -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("epsilon", "delta", "named"),
    [(0, 0, "insights_epsilon"), (-1, 0, "insights_epsilon"), (11, 0, "insights_epsilon"),
     (float("nan"), 0, "insights_epsilon"), (1, -1e-9, "insights_delta"), (1, 0.01, "insights_delta")],
)  # fmt: skip
def test_a_budget_that_cannot_be_used_is_refused_by_name(epsilon, delta, named):
    with pytest.raises(InvalidBudget, match=named):
        Budget(epsilon, delta)


@pytest.mark.parametrize("buckets", [7, 24])
@pytest.mark.parametrize("epsilon", [0.1, 1.0, 3.0])
def test_a_release_spends_no_more_than_its_budget_as_opendp_maps_it(buckets, epsilon):
    eps, delta = spent(buckets, Budget(epsilon))
    assert eps <= epsilon and eps == pytest.approx(epsilon, rel=1e-6) and delta == 0
    m = mechanisms(buckets, Budget(epsilon))
    # The split: a quarter of ε on the count (discrete Laplace, sensitivity 1), the rest on the sums.
    assert m.count_scale == pytest.approx(1 / (0.25 * epsilon), rel=1e-6)
    assert m.share_scale == pytest.approx(CONTRIBUTION_BOUND / (0.75 * epsilon), rel=1e-6)


def test_with_a_delta_the_less_noisy_mechanism_is_chosen_and_only_what_it_spends_is_recorded():
    """Gaussian noise at (0.75, 1e-6) needs σ ≈ 5.9 where Laplace needs √2·1.33 ≈ 1.9 for the same figure: Laplace
    stays, and the release spends no δ at all."""
    m = mechanisms(24, Budget(1.0, 1e-6))
    assert m.name == "laplace"
    assert spent(24, Budget(1.0, 1e-6)) == pytest.approx((1.0, 0.0))


# --- one release -----------------------------------------------------------------------------------------------------


def test_a_release_is_shares_summing_to_one_and_a_noisy_count():
    rng = random.Random(7)
    people = [office_worker(rng) for _ in range(200)]
    counts = set()
    for _ in range(50):
        r = release("hour", WEEK, people, DEFAULT, k=10, min_active_days=7)
        assert r.shown and len(r.shares) == HOURS and math.fsum(r.shares) == pytest.approx(1.0)
        assert min(r.shares) >= 0 and (r.epsilon, r.delta, r.mechanism) == (pytest.approx(1.0), 0.0, "laplace")
        counts.add(r.people)
    assert len(counts) > 5, "the count is released with noise, not as it is"
    assert 0 < release("hour", WEEK, people, DEFAULT, k=10, min_active_days=7).margin() < 0.05


def test_a_figure_of_no_one_or_of_a_handful_below_k_is_rarely_shown_and_its_threshold_is_noisy():
    """The threshold is on the noisy count (docs/insights.md, post-processing), so even a week of no one is shown
    now and then, as pure noise: P(0 + DiscreteLaplace(4) >= 10) = e^(-10/4) / (1 + e^(-1/4)) ≈ 4.6 %. An exact
    threshold would never show it, and would tell k - 1 sybils whether one more person was active."""
    nobody = sum(release("weekday", WEEK, [], DEFAULT, k=10, min_active_days=7).shown for _ in range(TRIALS))
    assert 0.015 < nobody / TRIALS < 0.08  # ± 4.5 standard deviations around 4.6 %
    rng = random.Random(8)
    three = [office_worker(rng) for _ in range(3)]
    shown = sum(release("hour", WEEK, three, DEFAULT, k=10, min_active_days=7).shown for _ in range(TRIALS))
    # Shown only when the noisy count reaches 10: P(3 + DiscreteLaplace(4) >= 10) = e^(-7/4) / (1 + e^(-1/4)) ≈ 9.8 %.
    assert shown / TRIALS < 0.14  # 4.5 standard deviations above


def test_with_1000_people_every_bar_is_within_one_point_of_the_truth_in_nine_releases_of_ten():
    rng = random.Random(9)
    people = [office_worker(rng) for _ in range(1000)]
    truth = exact_shares(people)
    worst = [max(abs(a - b) for a, b in zip(released_shares(people), truth, strict=True)) for _ in range(200)]
    assert sum(w <= 0.01 for w in worst) / len(worst) >= 0.9
    assert max(worst) <= 0.02


# --- the attacks -----------------------------------------------------------------------------------------------------


def differencing(crowd, with_victim, shares_of) -> list[float]:
    """10 against 11: the 11th person's distribution is 11 × the shares with them - 10 × the shares without."""
    n = len(crowd)
    return as_distribution(
        [(n + 1) * a - n * b for a, b in zip(shares_of([*crowd, with_victim]), shares_of(crowd), strict=True)]
    )


def test_comparing_ten_people_with_eleven_no_longer_recovers_the_eleventh():
    rng = random.Random(10)
    crowd = [office_worker(rng) for _ in range(10)]
    assert total_variation(differencing(crowd, VICTIM, exact_shares), VICTIM) == pytest.approx(0, abs=1e-9)
    errors = sorted(total_variation(differencing(crowd, VICTIM, released_shares), VICTIM) for _ in range(TRIALS))
    # Recovering the distribution needs an error of at most 0.1; a blind uniform guess is 0.83 off.
    assert sum(e <= 0.1 for e in errors) / TRIALS <= 0.01
    assert errors[TRIALS // 2] >= 0.5


def test_nine_sybils_and_one_victim_no_longer_reveal_the_victims_hours():
    rng = random.Random(11)
    sybils = [office_worker(rng) for _ in range(9)]
    known = summed(sybils, HOURS)

    def attack(shares_of) -> list[float]:
        return as_distribution([10 * s - mine for s, mine in zip(shares_of([*sybils, VICTIM]), known, strict=True)])

    assert total_variation(attack(exact_shares), VICTIM) == pytest.approx(0, abs=1e-9)
    errors = sorted(total_variation(attack(released_shares), VICTIM) for _ in range(TRIALS))
    assert sum(e <= 0.1 for e in errors) / TRIALS <= 0.01
    assert errors[TRIALS // 2] >= 0.5


def test_what_the_attacker_learns_is_bounded_by_e_to_the_epsilon():
    """The differential privacy promise itself: the attacker's guess "the 11th person works at night" is right at
    most e^ε times as often with the night worker present as with an office worker in their place (ε = 1 for the one
    release the victim is in), within the sampling error of TRIALS releases."""
    rng = random.Random(12)
    crowd = [office_worker(rng) for _ in range(10)]

    def says_night(estimate) -> bool:
        return max(range(HOURS), key=estimate.__getitem__) in NIGHT

    def rate(eleventh) -> float:
        return sum(says_night(differencing(crowd, eleventh, released_shares)) for _ in range(TRIALS)) / TRIALS

    assert says_night(differencing(crowd, VICTIM, exact_shares))
    present, absent = rate(VICTIM), rate(office_worker(rng))
    assert present <= math.e * absent + 4 * math.sqrt(absent / TRIALS) + 0.02


# --- which weeks are released ---------------------------------------------------------------------------------------


def test_a_week_is_released_once_it_has_settled_and_never_again():
    monday = date(2026, 11, 30)
    settled = datetime(2026, 12, 7, tzinfo=UTC) + SETTLE
    just_before = due_weeks(settled.replace(microsecond=0) - SETTLE / 48, set())
    assert monday not in just_before and max(just_before) == date(2026, 11, 23)
    due = due_weeks(settled, set())
    assert max(due) == monday and len(due) == WEEKS_BACK and due == sorted(due)
    assert all(w.weekday() == 0 for w in due)
    assert monday not in due_weeks(settled, {monday}) and len(due_weeks(settled, set(due))) == 0
