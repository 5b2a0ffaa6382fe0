"""A person's goals in the warehouse: storing them (the gateway, with its login) and measuring them (the dashboard):
the time toward a goal in a period, its current period's standing, its history of met and missed periods, and its
streak. What a goal is and how its periods fall is `warehouse/goal_rules.py`.

Goals are versioned rows (ReplacingMergeTree(updated_at)), like category rules: a deletion writes a version with
deleted = true. The time is measured with the query API's own functions, by category rules as they are now, so a
goal follows every category edit, history included.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from clickhouse_connect.driver.client import Client

from warehouse import queries
from warehouse.categories import validate_category
from warehouse.goal_rules import (
    Goal,
    InvalidGoal,
    Period,
    Standing,
    checked_goal,
    in_category,
    in_site,
    past_periods,
    period_at,
    standing,
    streak,
)
from warehouse.queries import UNCATEGORIZED

_COLUMNS = (
    "user_id", "goal_id", "kind", "target", "direction", "period", "minutes", "weekdays", "devices", "deleted",
    "updated_at",
)  # fmt: skip
HISTORY = {"day": 14, "week": 8}  # finished periods shown per goal


class GoalNotFound(LookupError):
    """No live goal with this id belongs to the user."""


def _now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


_CATEGORIES = "SELECT DISTINCT category FROM category_rules FINAL WHERE user_id = {user:String} AND NOT deleted"
_DEVICES = "SELECT DISTINCT toString(device_id) FROM devices FINAL WHERE user_id = {user:String}"


def add_goal(client: Client, user_id: str, **fields: object) -> str:
    """Store a new goal (`checked_goal`'s fields) and return its id; InvalidGoal names what is wrong, an unknown
    category or device included."""
    goal = checked_goal(**fields)  # type: ignore[arg-type]
    if goal.kind == "category":
        validate_category_target(client, user_id, goal.target)
    if goal.devices:
        known = {r[0] for r in client.query(_DEVICES, parameters={"user": user_id}).result_rows}
        unknown = [d for d in goal.devices if d not in known]
        if unknown:
            raise InvalidGoal(f"no device {unknown[0]!r} in this account")
    _write(client, user_id, goal, deleted=False)
    return goal.goal_id


def validate_category_target(client: Client, user_id: str, target: str) -> None:
    try:
        validate_category(target)
    except ValueError as exc:
        raise InvalidGoal(str(exc)) from None
    paths = {r[0] for r in client.query(_CATEGORIES, parameters={"user": user_id}).result_rows} | {UNCATEGORIZED}
    if not any(in_category(path, target) for path in paths):
        raise InvalidGoal(f"there is no category {target!r} in this account's category rules")


def delete_goal(client: Client, user_id: str, goal_id: str) -> None:
    goal = live_goal(client, user_id, goal_id)
    _write(client, user_id, goal, deleted=True)


def _write(client: Client, user_id: str, goal: Goal, deleted: bool) -> None:
    row = [
        user_id, goal.goal_id, goal.kind, goal.target, goal.direction, goal.period, goal.minutes,
        list(goal.weekdays), list(goal.devices), deleted, _now(),
    ]  # fmt: skip
    client.insert("goals", [row], column_names=_COLUMNS)


_LIST = """
SELECT toString(goal_id), toString(kind), target, toString(direction), toString(period), minutes, weekdays, devices
FROM goals FINAL
WHERE user_id = {user:String} AND NOT deleted
ORDER BY updated_at, goal_id
"""


def list_goals(client: Client, user_id: str) -> list[Goal]:
    """The user's live goals, in the order they were made."""
    rows = client.query(_LIST, parameters={"user": user_id}).result_rows
    return [Goal(g, k, t, d, p, int(m), tuple(int(x) for x in w), tuple(v)) for g, k, t, d, p, m, w, v in rows]


def live_goal(client: Client, user_id: str, goal_id: str) -> Goal:
    try:
        wanted = str(uuid.UUID(str(goal_id)))
    except ValueError:
        raise GoalNotFound(f"no goal {goal_id!r}") from None
    for goal in list_goals(client, user_id):
        if goal.goal_id == wanted:
            return goal
    raise GoalNotFound(f"no goal {goal_id!r} in this account")


# -- measuring


def seconds_toward(client: Client, user_id: str, goal: Goal, start: datetime, end: datetime) -> float:
    """Active seconds in [start, end) that count for the goal (its target, on its devices)."""
    devices = list(goal.devices) or None
    if goal.kind in ("all", "app"):
        # All activity as the sum over apps: the same seconds as `queries.totals`, from the hourly usage alone,
        # which is all the gateway's login reads to find the notices due (warehouse/roles.py).
        apps = queries.time_per_app(client, user_id, start, end, devices=devices)
        chosen = apps if goal.kind == "all" else apps.loc[apps["app"] == goal.target]
        return float(chosen["seconds"].sum())
    if goal.kind == "site":
        sites = queries.time_per_site(client, user_id, start, end, devices=devices)
        return float(sites.loc[[in_site(s, goal.target) for s in sites["site"]], "seconds"].sum())
    categories = queries.time_per_category(client, user_id, start, end, devices=devices)
    return float(categories.loc[[in_category(c, goal.target) for c in categories["category"]], "seconds"].sum())


def seconds_in(client: Client, user_id: str, goal: Goal, period: Period, zone: ZoneInfo, until: datetime) -> float:
    """The goal's seconds in `period`'s counted days, up to `until`."""
    total = 0.0
    for start, end in period.spans(zone):
        if start < until:
            total += seconds_toward(client, user_id, goal, start, min(end, until))
    return total


@dataclass(frozen=True)
class GoalReport:
    goal: Goal
    current: Period | None  # None: a daily goal on a day it leaves out
    now: Standing | None
    history: list[tuple[Period, Standing]]  # finished periods, oldest first
    streak: int  # finished periods met in a row, up to the last one


def goal_report(
    client: Client, user_id: str, goal: Goal, tz: str, now: datetime | None = None, history: int | None = None
) -> GoalReport:
    """The goal's current period and its standing so far, its last finished periods and its streak."""
    zone = ZoneInfo(tz)
    now = now or datetime.now(UTC)
    today: date = now.astimezone(zone).date()
    current = period_at(goal, today, zone)
    standing_now = standing(goal, seconds_in(client, user_id, goal, current, zone, now)) if current else None
    finished = [
        (p, standing(goal, seconds_in(client, user_id, goal, p, zone, p.end)))
        for p in past_periods(goal, today, zone, HISTORY[goal.period] if history is None else history)
    ]
    return GoalReport(goal, current, standing_now, finished, streak([s.met for _, s in finished]))
