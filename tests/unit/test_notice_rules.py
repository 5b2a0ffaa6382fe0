"""Which notices a limiting goal's standing calls for (warehouse/notice_rules.py), pure."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from warehouse.goal_rules import Goal, period_at, standing
from warehouse.notice_rules import CHANNELS, due_notices, notice_id, notice_text

GAMES = Goal("0b8f6f9e-8a0e-4c1e-9a53-7f3f6b1d2c4e", "app", "Game", "at_most", "day", 60)
DAY = date(2026, 3, 11)
PERIOD = period_at(GAMES, DAY, ZoneInfo("UTC"))


def test_nothing_below_85_percent_and_nothing_for_an_aim():
    assert due_notices("ann", GAMES, PERIOD, standing(GAMES, 50 * 60), {"desktop"}, set()) == []
    aim = Goal(GAMES.goal_id, "app", "Game", "at_least", "day", 60)
    assert due_notices("ann", aim, PERIOD, standing(aim, 90 * 60), {"desktop"}, set()) == []


def test_nothing_on_a_channel_that_is_off():
    assert due_notices("ann", GAMES, PERIOD, standing(GAMES, 90 * 60), set(), set()) == []


def test_85_percent_alone_then_100_percent_alone():
    (first,) = due_notices("ann", GAMES, PERIOD, standing(GAMES, 52 * 60), {"desktop"}, set())
    assert (first.threshold, first.state, first.period_start) == (85, "pending", DAY)
    (second,) = due_notices("ann", GAMES, PERIOD, standing(GAMES, 61 * 60), {"desktop"}, {first.notice_id})
    assert (second.threshold, second.state) == (100, "pending")
    assert due_notices("ann", GAMES, PERIOD, standing(GAMES, 90 * 60), {"desktop"}, {first.notice_id,
                       second.notice_id}) == []  # fmt: skip


def test_both_crossed_at_once_the_lower_is_superseded():
    found = due_notices("ann", GAMES, PERIOD, standing(GAMES, 61 * 60), {"desktop"}, set())
    assert [(n.threshold, n.state) for n in found] == [(85, "superseded"), (100, "pending")]


def test_the_text_says_the_goal_the_threshold_and_the_time():
    assert notice_text(GAMES, 0.85, standing(GAMES, 52 * 60 + 59)) == (
        "85 % of your limit: at most 1 h a day of Game",
        "52 of 60 min today.",
    )
    weekly = Goal(GAMES.goal_id, "all", "", "at_most", "week", 600)
    assert notice_text(weekly, 1.0, standing(weekly, 601 * 60)) == (
        "Limit reached: at most 10 h a week of all activity",
        "601 of 600 min this week.",
    )


def test_a_notice_id_is_one_per_user_goal_period_threshold_and_channel():
    ids = {
        notice_id(user, GAMES.goal_id, day, threshold, channel)
        for user in ("ann", "bob")
        for day in (DAY, date(2026, 3, 12))
        for threshold in (85, 100)
        for channel in CHANNELS
    }
    assert len(ids) == 16
    assert notice_id("ann", GAMES.goal_id, DAY, 85, "desktop") == notice_id("ann", GAMES.goal_id, DAY, 85, "desktop")


@given(
    steps=st.lists(st.integers(min_value=0, max_value=200 * 60), min_size=1, max_size=12),
    channels=st.sets(st.sampled_from(CHANNELS)),
)
def test_however_the_time_grows_each_threshold_is_noticed_at_most_once_per_channel(steps, channels):
    known: set[str] = set()
    pending = []
    seconds = 0
    for step in steps:
        seconds += step
        found = due_notices("ann", GAMES, PERIOD, standing(GAMES, seconds), channels, known)
        known |= {n.notice_id for n in found}
        pending += [n for n in found if n.state == "pending"]
    keys = [(n.threshold, n.channel) for n in pending]
    assert len(keys) == len(set(keys))
    assert {c for _, c in keys} <= channels
    if seconds >= 60 * 60 and channels:
        assert {(100, c) for c in channels} <= set(keys)
