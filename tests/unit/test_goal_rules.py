"""Goals, pure (warehouse/goal_rules.py): what input makes a goal, how its periods fall in the viewer's zone, and
how a period's time reads against it."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warehouse.goal_rules import (
    InvalidGoal,
    checked_goal,
    in_category,
    in_site,
    local_day,
    past_periods,
    period_at,
    standing,
    streak,
)

PRAGUE = ZoneInfo("Europe/Prague")


def goal(**changes):
    fields = {"kind": "app", "target": "Code", "direction": "at_most", "period": "day", "minutes": 60}
    return checked_goal(**{**fields, **changes})


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"kind": "game"}, "a goal is on one of app, site, category, all; got 'game'"),
        ({"direction": "around"}, "a goal is at_most (limiting) or at_least (aspiring); got 'around'"),
        ({"period": "month"}, "a goal is per day or per week; got 'month'"),
        ({"target": "  "}, "a goal on an app needs the app's name"),
        ({"kind": "all", "target": "Code"}, "a goal on all activity names no target; got 'Code'"),
        ({"minutes": 0}, "a goal needs more than 0 minutes; got 0"),
        ({"minutes": -5}, "a goal needs more than 0 minutes; got -5"),
        ({"minutes": 1.5}, "minutes must be a whole number, got 1.5"),
        ({"minutes": True}, "minutes must be a whole number, got True"),
        ({"minutes": 1441}, "a day's goal can be at most 1440 minutes; got 1441"),
        ({"weekdays": [7]}, "weekdays are 0 (Monday) to 6 (Sunday); got 7"),
        ({"target": "a\nb"}, "the target must be at most 256 printable characters"),
    ],
)
def test_a_goal_that_cannot_be_is_refused_in_one_line_naming_why(changes, said):
    with pytest.raises(InvalidGoal) as refused:
        goal(**changes)
    assert str(refused.value) == said


def test_input_is_put_in_normal_form():
    made = goal(kind="site", target=" Docs.Python.org. ", weekdays=[4, 0, 0], devices=["d1", "d1"])
    assert (made.target, made.weekdays, made.devices) == ("docs.python.org", (0, 4), ("d1",))
    assert goal(weekdays=range(7)).weekdays == ()  # every day is no restriction
    assert goal(period="week", minutes=7 * 24 * 60).minutes == 10080
    assert goal(kind="all", target="", direction="at_least", period="week", minutes=1200).describe() == (
        "at least 20 h a week of all activity"
    )


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)))
def test_a_week_runs_monday_to_sunday_in_the_zone_and_holds_its_day(day):
    period = period_at(goal(period="week"), day, PRAGUE)
    assert period.first_day.weekday() == 0 and period.first_day <= day < period.first_day + timedelta(days=7)
    assert period.start == local_day(period.first_day, PRAGUE)[0]
    assert period.end == local_day(period.first_day + timedelta(days=6), PRAGUE)[1]
    assert period.spans(PRAGUE) == [(period.start, period.end)]


def test_weekdays_leave_days_out_of_daily_goals_and_out_of_weekly_time():
    monday, tuesday = date(2026, 3, 9), date(2026, 3, 10)
    daily = goal(weekdays=[0, 2])
    assert period_at(daily, tuesday, PRAGUE) is None
    assert period_at(daily, monday, PRAGUE).days == (monday,)
    weekly = period_at(goal(period="week", weekdays=[0, 1, 4]), tuesday, PRAGUE)
    assert weekly.days == (monday, tuesday, monday + timedelta(days=4))
    # Monday and Tuesday are one span, Friday another.
    assert [end - start for start, end in weekly.spans(PRAGUE)] == [timedelta(days=2), timedelta(days=1)]


def test_a_day_where_the_clocks_change_is_that_long():
    start, end = local_day(date(2026, 3, 29), PRAGUE)  # summer time begins
    assert end - start == timedelta(hours=23)


@given(st.integers(min_value=1, max_value=20), st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True))
def test_past_periods_are_the_last_ones_before_today_oldest_first(count, weekdays):
    today = date(2026, 3, 10)
    periods = past_periods(goal(weekdays=weekdays), today, PRAGUE, count)
    assert len(periods) == count
    days = [p.first_day for p in periods]
    assert days == sorted(days) and days[-1] < today
    assert all(d.weekday() in weekdays for d in days)


def test_a_limit_is_met_until_exceeded_and_crosses_85_then_100_percent():
    limit = goal(minutes=60)
    assert standing(limit, 50 * 60).crossed == ()
    assert standing(limit, 51 * 60).crossed == (0.85,)
    reached = standing(limit, 60 * 60)
    assert reached.met and reached.crossed == (0.85, 1.0)
    assert not standing(limit, 60 * 60 + 1).met


def test_an_aim_is_met_once_reached_and_has_no_thresholds():
    aim = goal(direction="at_least", minutes=30)
    assert not standing(aim, 29 * 60).met
    assert standing(aim, 30 * 60).met and standing(aim, 30 * 60).crossed == ()


def test_a_streak_counts_the_periods_met_in_a_row_up_to_the_last():
    assert streak([True, False, True, True]) == 2
    assert streak([True, True, False]) == 0
    assert streak([]) == 0


def test_sites_and_categories_count_with_what_lies_below_them():
    assert in_site("docs.python.org", "python.org") and in_site("python.org", "python.org")
    assert not in_site("notpython.org", "python.org")
    assert in_category("Work/Programming", "Work") and in_category("Work", "Work")
    assert not in_category("Workout", "Work")
