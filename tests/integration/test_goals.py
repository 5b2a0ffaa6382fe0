"""Goals against the real embedded warehouse (warehouse/goals.py): stored and refused, measured exactly in the
viewer's zone, following category edits through history, one account's goals and time never another's.

The fixture weeks are those of Monday 2026-03-02 and Monday 2026-03-09; "now" is Wednesday 2026-03-11 12:00 UTC.
Prague is UTC+1 then.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from stream_jobs.rows import interval_columns
from tests.conftest import lone_warehouse
from warehouse.categories import add_rule, delete_rule
from warehouse.goal_rules import InvalidGoal
from warehouse.goals import GoalNotFound, add_goal, delete_goal, goal_report, list_goals
from warehouse.rollups import rebuild_touched
from warehouse.writes import NO_DELETIONS, store_intervals

NOW = datetime(2026, 3, 11, 12, tzinfo=UTC)
PRAGUE = "Europe/Prague"


def interval(device: str, start: datetime, minutes: float, app: str, site: str = "", seq: int = 0) -> dict:
    return {
        "device_id": device,
        "event_id": str(uuid.uuid4()),
        "device_seq": seq,
        "start": int(start.timestamp() * 1000),
        "end": int((start + timedelta(minutes=minutes)).timestamp() * 1000),
        "app": app,
        "title": f"{app} window",
        "site": site,
        "keystrokes": 0,
        "clicks": 0,
        "idle": False,
        "received_at": int(start.timestamp() * 1000),
    }


def store(client, user: str, intervals: list[dict]) -> None:
    owned = [{**i, "user_id": user} for i in intervals]
    store_intervals(client, NO_DELETIONS, interval_columns(owned))
    rebuild_touched(client, owned)


def device(client, user: str, device_id: str) -> None:
    client.insert(
        "devices",
        [[user, device_id, device_id, "Linux", "6.1", False, NOW]],
        column_names=["user_id", "device_id", "name", "os", "os_version", "revoked", "updated_at"],
    )


def days_of_work(user_mark: str = "") -> list[dict]:
    """Every day from Monday 2026-03-02 to Wednesday 2026-03-11 at 09:00 UTC: 40 min of Code on the laptop, and
    on the desk 20 min of docs.python.org (a subdomain) in Firefox; Game for 90 min on Saturdays, late at night:
    23:30 UTC, which is Sunday 00:30 in Prague."""
    out = []
    day = datetime(2026, 3, 2, tzinfo=UTC)
    while day <= NOW:
        at = day + timedelta(hours=9)
        if at + timedelta(minutes=40) <= NOW:
            out.append(interval("laptop", at, 40, f"Code{user_mark}"))
            out.append(interval("desk", at + timedelta(minutes=40), 20, "Firefox", f"docs.python{user_mark}.org"))
        if day.weekday() == 5:
            out.append(interval("laptop", day + timedelta(hours=23, minutes=30), 90, f"Game{user_mark}"))
        day += timedelta(days=1)
    return out


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with lone_warehouse(tmp_path_factory.mktemp("goals")) as c:
        for user, mark in (("ann", ""), ("bob", "-bob")):
            store(c, user, days_of_work(mark))
            device(c, user, "laptop")
            device(c, user, "desk")
        add_rule(c, "ann", "app", "^Code$", "Work/Programming")
        add_rule(c, "bob", "app", ".", "Work/Programming")
        yield c


def test_a_daily_limit_on_an_app_is_measured_today_and_in_each_finished_day(client):
    goal_id = add_goal(client, "ann", kind="app", target="Code", direction="at_most", period="day", minutes=30)
    [goal] = [g for g in list_goals(client, "ann") if g.goal_id == goal_id]
    report = goal_report(client, "ann", goal, PRAGUE, now=NOW, history=7)
    assert report.now.seconds == 40 * 60 and not report.now.met and report.now.crossed == (0.85, 1.0)
    assert [p.first_day.isoformat() for p, _ in report.history] == [f"2026-03-{d:02}" for d in range(4, 11)]
    assert all(s.seconds == 40 * 60 and not s.met for _, s in report.history)
    assert report.streak == 0
    delete_goal(client, "ann", goal_id)


def test_an_aim_on_a_site_counts_its_subdomains_and_builds_a_streak(client):
    goal_id = add_goal(client, "ann", kind="site", target="python.org", direction="at_least", period="day", minutes=20)
    goal = next(g for g in list_goals(client, "ann") if g.goal_id == goal_id)
    report = goal_report(client, "ann", goal, PRAGUE, now=NOW, history=5)
    assert [s.seconds for _, s in report.history] == [20 * 60] * 5
    assert report.streak == 5 and report.now.met
    delete_goal(client, "ann", goal_id)


def test_a_weekly_goal_falls_in_the_viewers_week_and_counts_only_its_weekdays(client):
    goal_id = add_goal(client, "ann", kind="app", target="Game", direction="at_most", period="week", minutes=60)
    goal = next(g for g in list_goals(client, "ann") if g.goal_id == goal_id)
    # Saturday 23:30 UTC is Sunday in Prague: each week holds its Saturday's 90 min of Game.
    prague = goal_report(client, "ann", goal, PRAGUE, now=NOW, history=1)
    assert prague.history[0][0].first_day.isoformat() == "2026-03-02"
    assert prague.history[0][1].seconds == 90 * 60 and not prague.history[0][1].met
    # In Tokyo (UTC+9) the 23:30 start is Sunday too; in Los Angeles (UTC-8) it is Saturday 15:30.
    assert goal_report(client, "ann", goal, "America/Los_Angeles", now=NOW, history=1).history[0][1].seconds == 5400
    weekdays = add_goal(
        client, "ann", kind="all", target="", direction="at_least", period="week", minutes=60, weekdays=[0, 1]
    )
    only = next(g for g in list_goals(client, "ann") if g.goal_id == weekdays)
    week = goal_report(client, "ann", only, PRAGUE, now=NOW, history=1).history[0][1]
    assert week.seconds == 2 * 60 * 60  # Monday's and Tuesday's hour; no Game on those days
    delete_goal(client, "ann", goal_id)
    delete_goal(client, "ann", weekdays)


def test_a_goal_on_some_devices_counts_only_theirs(client):
    goal_id = add_goal(
        client, "ann", kind="all", target="", direction="at_most", period="day", minutes=600, devices=["desk"]
    )
    goal = next(g for g in list_goals(client, "ann") if g.goal_id == goal_id)
    assert goal_report(client, "ann", goal, PRAGUE, now=NOW, history=1).history[0][1].seconds == 20 * 60
    delete_goal(client, "ann", goal_id)


def test_a_category_goal_follows_category_edits_history_included(client):
    goal_id = add_goal(client, "ann", kind="category", target="Work", direction="at_least", period="day", minutes=45)
    goal = next(g for g in list_goals(client, "ann") if g.goal_id == goal_id)
    before = goal_report(client, "ann", goal, PRAGUE, now=NOW, history=3)
    assert [s.seconds for _, s in before.history] == [40 * 60] * 3 and before.streak == 0
    # The browser's time becomes work too: every finished day now holds an hour of Work.
    rule = add_rule(client, "ann", "app", "^Firefox$", "Work/Reading")
    after = goal_report(client, "ann", goal, PRAGUE, now=NOW, history=3)
    assert [s.seconds for _, s in after.history] == [60 * 60] * 3 and after.streak == 3
    delete_rule(client, "ann", rule)
    delete_goal(client, "ann", goal_id)


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"kind": "category", "target": "Leisure"}, "there is no category 'Leisure' in this account's category rules"),
        ({"kind": "category", "target": "Work/"}, "category 'Work/' has an empty level"),
        ({"kind": "all", "target": "", "devices": ["phone"]}, "no device 'phone' in this account"),
        ({"minutes": 0}, "a goal needs more than 0 minutes; got 0"),
        ({"target": ""}, "a goal on an app needs the app's name"),
    ],
)
def test_bad_input_is_one_line_and_stores_nothing(client, fields, said):
    before = list_goals(client, "ann")
    base = {"kind": "app", "target": "Code", "direction": "at_most", "period": "day", "minutes": 30}
    with pytest.raises(InvalidGoal) as refused:
        add_goal(client, "ann", **{**base, **fields})
    assert str(refused.value).startswith(said) and "\n" not in str(refused.value)
    assert list_goals(client, "ann") == before


def test_a_category_of_another_account_is_unknown_here_and_goals_stay_apart(client):
    bob = add_goal(client, "bob", kind="category", target="Work", direction="at_least", period="day", minutes=1)
    with pytest.raises(InvalidGoal):
        add_goal(client, "ann", kind="category", target="Work/Everything", direction="at_most", period="day",
                 minutes=5)  # fmt: skip
    assert bob not in {g.goal_id for g in list_goals(client, "ann")}
    with pytest.raises(GoalNotFound):
        delete_goal(client, "ann", bob)
    # Bob's goal measures Bob's time only: his apps are all Work, ann's are not his.
    goal = next(g for g in list_goals(client, "bob") if g.goal_id == bob)
    assert goal_report(client, "bob", goal, PRAGUE, now=NOW, history=1).history[0][1].seconds == 60 * 60
    delete_goal(client, "bob", bob)
    assert list_goals(client, "bob") == []
