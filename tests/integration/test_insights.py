"""Insights across people against the real embedded warehouse server (warehouse/insights.py): who counts, each week
released once and stored, the budget recorded, and the release of 1,000 people close to the truth.

The fixture week is Monday 2026-11-02; "now" is Thursday 2026-11-12, when it (and the 11 weeks before it) are due.
"Live" time reached the gateway a minute after it ended, as a running collector's does.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from tests.conftest import lone_warehouse, store_recorded
from warehouse.insight_rules import FIGURES, WEEKS_BACK, Budget, contribution
from warehouse.insights import (
    InsightSettings,
    budget_spent,
    contributions,
    release_due,
    release_week,
    released_weeks,
    releases,
)

WEEK = date(2026, 11, 2)
NOW = datetime(2026, 11, 12, 12, tzinfo=UTC)
LAPTOP = "laptop"
CHOSEN = InsightSettings(Budget(1.0), k=10, min_active_days=7)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def day_at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def worked(device: str, days: list[date], hours: range, *, late: timedelta | None = None, idle=False) -> list[dict]:
    """50 minutes of each of `hours` on each of `days`; received a minute after, or `late` after the last day."""
    rows = []
    last = day_at(max(days), 23, 59)
    for day in days:
        for hour in hours:
            start, end = day_at(day, hour), day_at(day, hour, 50)
            received = last + late if late is not None else end + timedelta(minutes=1)
            rows.append({"device_id": device, "event_id": str(uuid.uuid4()), "device_seq": 0, "start": ms(start),
                         "end": ms(end), "app": "Code", "title": "", "site": "", "keystrokes": 1, "clicks": 0,
                         "idle": idle, "received_at": ms(received)})  # fmt: skip
    return rows


def store(client, rows_by_user: dict[str, list[dict]], enrolled: dict[str, list[str]]) -> None:
    owned = [{**r, "user_id": user} for user, rows in rows_by_user.items() for r in rows]
    store_recorded(client, owned, [(user, d) for user, devices in enrolled.items() for d in devices])


def days(first: date, n: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(n)]


WEEKDAYS_OF_WEEK = days(WEEK, 5)
TWO_BEFORE = [WEEK - timedelta(days=3), WEEK - timedelta(days=2)]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with lone_warehouse(tmp_path_factory.mktemp("insights")) as c:
        store(
            c,
            {
                # 7 live days (5 in the week, 2 before): counts.
                "regular": worked(LAPTOP, TWO_BEFORE + WEEKDAYS_OF_WEEK, range(9, 12)),
                # 6 live days: does not.
                "six-days": worked(LAPTOP, TWO_BEFORE[1:] + WEEKDAYS_OF_WEEK, range(9, 12)),
                # 12 days sent three days after the last: a backfill or a made-up history proves no presence.
                "backfilled": worked(LAPTOP, days(WEEK - timedelta(days=5), 12), range(9, 12), late=timedelta(days=3)),
                # 12 live days from a device no one enrolled (an imported stream's id).
                "unenrolled": worked("imported-stream", days(WEEK - timedelta(days=5), 12), range(9, 12)),
                # 12 live days, all before the week: nothing of theirs in the week to describe.
                "gone-quiet": worked(LAPTOP, days(WEEK - timedelta(days=14), 12), range(9, 12)),
                # 12 live days of idle time only.
                "idle-only": worked(LAPTOP, days(WEEK - timedelta(days=5), 12), range(9, 12), idle=True),
            },
            {u: [LAPTOP] for u in ("regular", "six-days", "backfilled", "gone-quiet", "idle-only")},
        )
        yield c


def regular_contribution() -> dict[str, tuple[float, ...]]:
    return {
        "weekday": contribution([1, 1, 1, 1, 1, 0, 0]),
        "hour": contribution([1 if 9 <= h < 12 else 0 for h in range(24)]),
    }


def test_only_people_with_seven_days_recorded_live_by_an_enrolled_device_count(client):
    parts = contributions(client, WEEK, 7)
    expected = regular_contribution()
    for figure in FIGURES:
        assert parts[figure] == [pytest.approx(expected[figure])], figure
    # Six days count once the operator asks for six; the backfilled, unenrolled, quiet and idle never do.
    assert len(contributions(client, WEEK, 6)["hour"]) == 2
    assert len(contributions(client, WEEK, 1)["hour"]) == 2


def test_a_week_is_released_once_and_asking_again_returns_the_same_figures_and_spends_nothing(client):
    first = release_due(client, CHOSEN, NOW)
    assert len(first) == WEEKS_BACK * len(FIGURES) and max(r.week for r in first) == WEEK
    assert released_weeks(client) >= {WEEK}
    stored = releases(client, WEEK)
    assert stored == {r.figure: r for r in first if r.week == WEEK}
    spent = budget_spent(client)
    assert set(spent["releases"]) == {2} and list(spent["epsilon"]) == pytest.approx([2.0] * WEEKS_BACK)

    assert release_due(client, CHOSEN, NOW + timedelta(days=3)) == []
    assert releases(client, WEEK) == stored
    assert budget_spent(client).equals(spent)

    # A second releaser racing the first: the first release stays the one shown, and both count as spent.
    release_week(client, WEEK, CHOSEN, NOW + timedelta(minutes=1))
    assert releases(client, WEEK) == stored
    again = budget_spent(client).set_index("week")
    assert again.loc[WEEK, "releases"] == 4 and again.loc[WEEK, "epsilon"] == pytest.approx(4.0)


def test_with_1000_people_the_released_week_is_within_two_points_of_the_truth(client):
    rng = random.Random(23)
    week = date(2026, 6, 1)  # long before the weeks the test above releases
    people, truth = {}, {f: [0.0] * n for f, n in FIGURES.items()}
    for n in range(1000):
        first = rng.randrange(6, 11)
        hours = range(first, first + rng.randrange(4, 10))
        worked_days = [week - timedelta(days=3), week - timedelta(days=2), *days(week, rng.randrange(5, 8))]
        people[f"p{n:04}"] = worked(LAPTOP, worked_days, hours)
        in_week = [d for d in worked_days if d >= week]
        part = {
            "weekday": contribution([1 if week + timedelta(days=i) in in_week else 0 for i in range(7)]),
            "hour": contribution([1 if h in hours else 0 for h in range(24)]),
        }
        for f in FIGURES:
            truth[f] = [a + b / 1000 for a, b in zip(truth[f], part[f], strict=True)]
    names = list(people)
    for n in range(0, len(names), 10):  # a rollup rebuild's parameters travel in its URL
        store(client, {p: people[p] for p in names[n : n + 10]}, {p: [LAPTOP] for p in names[n : n + 10]})
    released = {r.figure: r for r in release_week(client, week, CHOSEN, NOW)}
    for figure, r in released.items():
        assert r.shown and abs(r.people - 1000) <= 40, figure
        worst = max(abs(a - b) for a, b in zip(r.shares, truth[figure], strict=True))
        assert worst <= 0.02, (figure, worst)
        assert worst > 0, "a release equal to the truth would carry no noise"


def test_the_gateways_round_releases_every_due_week_once_and_a_later_round_spends_nothing(client):
    import asyncio

    from gateway import insights_releaser
    from plumbing.settings import Settings
    from warehouse.insight_rules import due_weeks

    settings = Settings(dashboard_aggregates=True, insights_epsilon=0.5)

    def one_round() -> None:
        stop = asyncio.Event()

        def warehouse():
            stop.set()  # this round goes on; the loop stops after it
            return client

        asyncio.run(insights_releaser.run(warehouse, settings, stop))

    one_round()
    now = datetime.now(UTC)
    assert set(due_weeks(now, set())) <= released_weeks(client)
    spent = budget_spent(client)
    newest = max(due_weeks(now, set()))
    assert spent.set_index("week").loc[newest, "epsilon"] == pytest.approx(1.0)  # two figures at 0.5
    one_round()
    assert budget_spent(client).equals(spent)
