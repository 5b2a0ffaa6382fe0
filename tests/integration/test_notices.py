"""Goal notices against the real embedded warehouse (warehouse/notices.py): off by default, one per goal, threshold,
period and channel, dropped at once when switched off or paused, handed out once, the week rolling over in the
account's zone, and never another account's.

"Now" moves through Wednesday 2026-03-11 (UTC); Prague is UTC+1 then.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import lone_warehouse
from tests.integration.test_goals import interval, store
from warehouse.goals import GoalNotFound, add_goal, delete_goal
from warehouse.notice_rules import InvalidNoticeSetting
from warehouse.notices import find_due, notice_history, notice_settings, set_account, set_goal_channel, take_pending

DAY = datetime(2026, 3, 11, tzinfo=UTC)


@pytest.fixture
def client(tmp_path):
    with lone_warehouse(tmp_path) as c:
        yield c


def games(client, user: str, at: datetime, minutes: float, seq: int) -> None:
    store(client, user, [interval("laptop", at, minutes, "Game", seq=seq)])


def limit(client, user: str, minutes: int = 60, period: str = "day") -> str:
    return add_goal(client, user, kind="app", target="Game", direction="at_most", period=period, minutes=minutes)


def states(client, user: str) -> list[tuple[int, str, str]]:
    return sorted((n.threshold, n.channel, n.state) for n in notice_history(client, user))


def test_notices_are_off_until_switched_on(client):
    limit(client, "ann")
    games(client, "ann", DAY + timedelta(hours=9), 70, 1)
    assert notice_settings(client, "ann").switches == {}
    assert find_due(client, "ann", DAY + timedelta(hours=11)) == []
    assert take_pending(client, "ann", "desktop") == []
    assert notice_history(client, "ann") == []


def test_crossing_85_then_100_percent_gives_one_notice_each_and_never_again(client):
    goal = limit(client, "ann")
    set_goal_channel(client, "ann", goal, "desktop", True)
    games(client, "ann", DAY + timedelta(hours=9), 40, 1)
    assert find_due(client, "ann", DAY + timedelta(hours=10)) == []  # 40 of 60 min: not yet 85 %
    games(client, "ann", DAY + timedelta(hours=9, minutes=40), 12, 2)
    (first,) = find_due(client, "ann", DAY + timedelta(hours=10))
    assert (first.threshold, first.state) == (85, "pending")
    assert first.summary == "85 % of your limit: at most 1 h a day of Game"
    assert first.body == "52 of 60 min today."
    (found_at,) = [n.created_at for n in notice_history(client, "ann")]
    # Asking again finds nothing new; the notice is handed out once.
    assert find_due(client, "ann", DAY + timedelta(hours=10, minutes=1)) == []
    assert [n.notice_id for n in take_pending(client, "ann", "desktop")] == [first.notice_id]
    assert take_pending(client, "ann", "desktop") == []
    games(client, "ann", DAY + timedelta(hours=9, minutes=52), 10, 3)
    (second,) = find_due(client, "ann", DAY + timedelta(hours=10, minutes=5))
    assert (second.threshold, second.summary) == (100, "Limit reached: at most 1 h a day of Game")
    assert [n.body for n in take_pending(client, "ann", "desktop")] == ["62 of 60 min today."]
    assert find_due(client, "ann", DAY + timedelta(hours=12)) == []
    assert states(client, "ann") == [(85, "desktop", "sent"), (100, "desktop", "sent")]
    # Sent, a notice keeps when it was found due: the history stays in the order the limits were crossed.
    assert [n.threshold for n in notice_history(client, "ann")] == [85, 100]
    assert notice_history(client, "ann")[0].created_at == found_at


def test_both_thresholds_crossed_at_once_give_only_the_higher(client):
    goal = limit(client, "ann")
    set_goal_channel(client, "ann", goal, "desktop", True)
    games(client, "ann", DAY + timedelta(hours=9), 65, 1)
    find_due(client, "ann", DAY + timedelta(hours=11))
    assert [n.threshold for n in take_pending(client, "ann", "desktop")] == [100]
    assert states(client, "ann") == [(85, "desktop", "superseded"), (100, "desktop", "sent")]


def test_a_new_day_is_a_new_period_with_notices_of_its_own(client):
    goal = limit(client, "ann")
    set_goal_channel(client, "ann", goal, "desktop", True)
    games(client, "ann", DAY + timedelta(hours=9), 65, 1)
    assert len(find_due(client, "ann", DAY + timedelta(hours=11))) == 2
    assert find_due(client, "ann", DAY + timedelta(days=1, hours=11)) == []  # the next day: nothing played yet
    games(client, "ann", DAY + timedelta(days=1, hours=9), 65, 2)
    assert {n.period_start.isoformat() for n in find_due(client, "ann", DAY + timedelta(days=1, hours=11))} == {
        "2026-03-12"
    }


def test_the_week_rolls_over_in_the_accounts_time_zone(client):
    # Sunday 2026-03-15 23:30 UTC is already Monday 00:30 in Prague: a new week there, the same week in UTC.
    goal = limit(client, "ann", minutes=60, period="week")
    set_goal_channel(client, "ann", goal, "desktop", True)
    sunday = datetime(2026, 3, 15, 22, tzinfo=UTC)
    games(client, "ann", sunday - timedelta(hours=3), 55, 1)  # Sunday 19:00 UTC: 55 min that week
    games(client, "ann", sunday + timedelta(hours=1, minutes=30), 10, 2)  # Sunday 23:30 UTC
    late = sunday + timedelta(hours=1, minutes=50)  # Sunday 23:50 UTC, Monday 00:50 in Prague
    set_account(client, "ann", paused=False, tz="Europe/Prague")
    assert find_due(client, "ann", late) == []  # Prague: the new week holds 10 min, below 85 %
    set_account(client, "ann", paused=False, tz="UTC")
    assert [n.threshold for n in find_due(client, "ann", late)] == [85, 100]  # UTC: 65 min in one week


def test_switching_off_mid_period_drops_what_waits_and_sends_nothing_more(client):
    goal = limit(client, "ann")
    set_goal_channel(client, "ann", goal, "desktop", True)
    games(client, "ann", DAY + timedelta(hours=9), 52, 1)
    assert len(find_due(client, "ann", DAY + timedelta(hours=10))) == 1
    set_goal_channel(client, "ann", goal, "desktop", False)
    assert take_pending(client, "ann", "desktop") == []
    games(client, "ann", DAY + timedelta(hours=9, minutes=52), 10, 2)
    assert find_due(client, "ann", DAY + timedelta(hours=10)) == []
    # Switched on again in the same period: the dropped 85 % stays dropped, the 100 % is new.
    set_goal_channel(client, "ann", goal, "desktop", True)
    find_due(client, "ann", DAY + timedelta(hours=10))
    assert [n.threshold for n in take_pending(client, "ann", "desktop")] == [100]
    assert states(client, "ann") == [(85, "desktop", "dropped"), (100, "desktop", "sent")]


def test_pausing_everything_drops_what_waits_and_finds_nothing(client):
    goal = limit(client, "ann")
    set_goal_channel(client, "ann", goal, "desktop", True)
    games(client, "ann", DAY + timedelta(hours=9), 52, 1)
    find_due(client, "ann", DAY + timedelta(hours=10))
    set_account(client, "ann", paused=True)
    assert take_pending(client, "ann", "desktop") == []
    games(client, "ann", DAY + timedelta(hours=9, minutes=52), 10, 2)
    assert find_due(client, "ann", DAY + timedelta(hours=11)) == []
    assert notice_settings(client, "ann").paused
    set_account(client, "ann", paused=False)
    find_due(client, "ann", DAY + timedelta(hours=11))
    assert [n.threshold for n in take_pending(client, "ann", "desktop")] == [100]


def test_a_deleted_goal_sends_nothing(client):
    goal = limit(client, "ann")
    set_goal_channel(client, "ann", goal, "desktop", True)
    games(client, "ann", DAY + timedelta(hours=9), 52, 1)
    find_due(client, "ann", DAY + timedelta(hours=10))
    delete_goal(client, "ann", goal)
    assert take_pending(client, "ann", "desktop") == []
    assert find_due(client, "ann", DAY + timedelta(hours=11)) == []


def test_aspiring_goals_send_nothing(client):
    goal = add_goal(client, "ann", kind="app", target="Game", direction="at_least", period="day", minutes=30)
    set_goal_channel(client, "ann", goal, "desktop", True)
    games(client, "ann", DAY + timedelta(hours=9), 65, 1)
    assert find_due(client, "ann", DAY + timedelta(hours=11)) == []


def test_one_accounts_switches_and_notices_never_reach_another(client):
    ann_goal = limit(client, "ann")
    with pytest.raises(GoalNotFound):
        set_goal_channel(client, "bob", ann_goal, "desktop", True)
    set_goal_channel(client, "ann", ann_goal, "desktop", True)
    games(client, "ann", DAY + timedelta(hours=9), 65, 1)
    games(client, "bob", DAY + timedelta(hours=9), 65, 1)
    assert find_due(client, "bob", DAY + timedelta(hours=11)) == []
    find_due(client, "ann", DAY + timedelta(hours=11))
    assert take_pending(client, "bob", "desktop") == []
    assert notice_history(client, "bob") == []
    assert len(take_pending(client, "ann", "desktop")) == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c, g: set_goal_channel(c, "ann", g, "pigeon", True), "notices go by desktop or email; got 'pigeon'"),
        (lambda c, g: set_goal_channel(c, "ann", g, "email", True), "does not send email notices"),
        (lambda c, g: set_account(c, "ann", paused=False, tz="Mars/Olympus"), "not a time zone"),
        (lambda c, g: set_account(c, "ann", paused=False, tz=""), "a time zone is a name"),
    ],
)
def test_bad_settings_are_refused_with_one_line_and_nothing_changes(client, call, message):
    goal = limit(client, "ann")
    set_goal_channel(client, "ann", goal, "desktop", True)
    set_account(client, "ann", paused=False, tz="Europe/Prague")
    before = notice_settings(client, "ann")
    with pytest.raises(InvalidNoticeSetting, match=message):
        call(client, goal)
    assert notice_settings(client, "ann") == before
