"""Goals, pure: what a goal is, which input makes one, which periods it has, and how a period's time reads
against it (met, missed, streaks). `warehouse/goals.py` stores goals and measures the time.

A goal is on an app, a site (with its subdomains), a category (with its sub-categories) or all activity; it is
limiting ("at most") or aspiring ("at least") a number of minutes per day or per week (weeks start on Monday,
in the viewer's time zone), optionally only on chosen weekdays and devices. A daily goal has no period on a
weekday it leaves out; a weekly goal counts only the time of its weekdays. Categories are resolved when the time
is measured, by the account's rules as they are then, so a goal follows every category edit, history included.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

KINDS = ("app", "site", "category", "all")
DIRECTIONS = ("at_most", "at_least")
PERIODS = ("day", "week")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MAX_MINUTES = {"day": 24 * 60, "week": 7 * 24 * 60}
MAX_TARGET_CHARS = 256
MAX_DEVICES = 100
# A limiting goal's notice thresholds, as shares of its minutes (issue 21: at 85 % and at 100 %).
THRESHOLDS = (0.85, 1.0)


class InvalidGoal(ValueError):
    """A goal that cannot be stored; the message names what is wrong."""


@dataclass(frozen=True)
class Goal:
    goal_id: str
    kind: str  # one of KINDS
    target: str  # the app, site or category path; "" for all activity
    direction: str  # one of DIRECTIONS
    period: str  # one of PERIODS
    minutes: int
    weekdays: tuple[int, ...] = ()  # 0 = Monday; empty: every day
    devices: tuple[str, ...] = ()  # device ids; empty: every device

    @property
    def limiting(self) -> bool:
        return self.direction == "at_most"

    @property
    def seconds(self) -> float:
        return self.minutes * 60.0

    def describe(self) -> str:
        """The goal in words, e.g. "at most 60 min a day of Games" or "at least 20 h a week of all activity"."""
        amount = f"{self.minutes // 60} h" if self.minutes % 60 == 0 and self.minutes >= 60 else f"{self.minutes} min"
        what = "all activity" if self.kind == "all" else f"{self.target}" + (" (site)" if self.kind == "site" else "")
        days = "" if not self.weekdays else " on " + ", ".join(WEEKDAYS[d] for d in self.weekdays)
        return f"{self.direction.replace('_', ' ')} {amount} a {self.period} of {what}{days}"


def checked_goal(
    kind: object,
    target: object,
    direction: object,
    period: object,
    minutes: object,
    weekdays: Iterable[object] = (),
    devices: Iterable[object] = (),
    goal_id: str | None = None,
) -> Goal:
    """A goal from what a person entered, or InvalidGoal naming the first thing wrong. The category's and the
    devices' existence is the store's to check (`warehouse/goals.py`)."""
    if kind not in KINDS:
        raise InvalidGoal(f"a goal is on one of {', '.join(KINDS)}; got {kind!r}")
    if direction not in DIRECTIONS:
        raise InvalidGoal(f"a goal is at_most (limiting) or at_least (aspiring); got {direction!r}")
    if period not in PERIODS:
        raise InvalidGoal(f"a goal is per day or per week; got {period!r}")
    if not isinstance(target, str):
        raise InvalidGoal(f"the target must be text, got {type(target).__name__}")
    target = target.strip()
    if kind == "all" and target:
        raise InvalidGoal(f"a goal on all activity names no target; got {target!r}")
    if kind != "all" and not target:
        raise InvalidGoal(f"a goal on {'an' if kind == 'app' else 'a'} {kind} needs the {kind}'s name")
    if len(target) > MAX_TARGET_CHARS or not target.isprintable():
        raise InvalidGoal(f"the target must be at most {MAX_TARGET_CHARS} printable characters")
    if kind == "site":
        target = target.lower().rstrip(".")
    if isinstance(minutes, bool) or not isinstance(minutes, int):
        raise InvalidGoal(f"minutes must be a whole number, got {minutes!r}")
    if minutes <= 0:
        raise InvalidGoal(f"a goal needs more than 0 minutes; got {minutes}")
    if minutes > MAX_MINUTES[str(period)]:
        raise InvalidGoal(f"a {period}'s goal can be at most {MAX_MINUTES[str(period)]} minutes; got {minutes}")
    days = _weekdays(weekdays)
    ids = tuple(dict.fromkeys(str(d) for d in devices))
    if len(ids) > MAX_DEVICES:
        raise InvalidGoal(f"a goal names at most {MAX_DEVICES} devices")
    return Goal(goal_id or str(uuid.uuid4()), str(kind), target, str(direction), str(period), minutes, days, ids)


def _weekdays(weekdays: Iterable[object]) -> tuple[int, ...]:
    days = []
    for day in weekdays:
        if isinstance(day, bool) or not isinstance(day, int) or not 0 <= day <= 6:
            raise InvalidGoal(f"weekdays are 0 (Monday) to 6 (Sunday); got {day!r}")
        days.append(day)
    if len(set(days)) == 7:
        return ()  # every day: the same goal as none named
    return tuple(sorted(set(days)))


@dataclass(frozen=True)
class Period:
    """One period of a goal: [start, end) in UTC, and the local days it counts (its weekdays only)."""

    first_day: date  # local
    start: datetime
    end: datetime
    days: tuple[date, ...]

    def spans(self, zone: ZoneInfo) -> list[tuple[datetime, datetime]]:
        """The UTC spans of the counted days, consecutive days merged."""
        spans: list[tuple[datetime, datetime]] = []
        for day in self.days:
            start, end = local_day(day, zone)
            if spans and spans[-1][1] == start:
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((start, end))
        return spans


def local_day(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """A local calendar day as UTC instants (23 or 25 hours long where the clocks change)."""
    start = datetime.combine(day, time(), zone)
    end = datetime.combine(day + timedelta(days=1), time(), zone)
    return start.astimezone(ZoneInfo("UTC")), end.astimezone(ZoneInfo("UTC"))


def period_at(goal: Goal, day: date, zone: ZoneInfo) -> Period | None:
    """The goal's period holding the local `day`; None for a daily goal on a weekday it leaves out."""
    if goal.period == "day":
        if goal.weekdays and day.weekday() not in goal.weekdays:
            return None
        start, end = local_day(day, zone)
        return Period(day, start, end, (day,))
    monday = day - timedelta(days=day.weekday())
    days = tuple(monday + timedelta(days=n) for n in range(7) if not goal.weekdays or n in goal.weekdays)
    start, _ = local_day(monday, zone)
    _, end = local_day(monday + timedelta(days=6), zone)
    return Period(monday, start, end, days)


def past_periods(goal: Goal, today: date, zone: ZoneInfo, count: int) -> list[Period]:
    """The `count` periods before the one holding `today`, oldest first (a daily goal's left-out days skipped)."""
    found: list[Period] = []
    step = timedelta(days=1 if goal.period == "day" else 7)
    day = today - step
    # A daily goal on one weekday needs 7 days per period; bound the walk anyway.
    for _ in range(count * 7 + 7):
        if len(found) == count:
            break
        period = period_at(goal, day, zone)
        if period is not None:
            found.append(period)
        day -= step
    return list(reversed(found))


@dataclass(frozen=True)
class Standing:
    """How a period's time reads against its goal."""

    seconds: float
    share: float  # of the goal's minutes
    met: bool  # for a period still running: met so far (a limit not yet exceeded, an aim already reached)
    crossed: tuple[float, ...]  # of THRESHOLDS, those reached (limiting goals)


def standing(goal: Goal, seconds: float) -> Standing:
    share = seconds / goal.seconds
    met = seconds <= goal.seconds if goal.limiting else seconds >= goal.seconds
    crossed = tuple(t for t in THRESHOLDS if share >= t) if goal.limiting else ()
    return Standing(seconds, share, met, crossed)


def streak(met: Sequence[bool]) -> int:
    """Consecutive periods met at the end of `met` (finished periods, oldest first)."""
    count = 0
    for one in reversed(met):
        if not one:
            break
        count += 1
    return count


def in_site(site: str, target: str) -> bool:
    """Whether a stored site counts for a site goal: the site itself or one of its subdomains."""
    return site == target or site.endswith("." + target)


def in_category(category: str, target: str) -> bool:
    """Whether a category path counts for a category goal: the category itself or one of its sub-categories."""
    return category == target or category.startswith(target + "/")
