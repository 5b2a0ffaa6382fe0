"""Goal notices, pure: which notices a limiting goal's standing calls for, how each reads, and its identity.

A notice is "this limiting goal reached 85 % (or 100 %) in this period". There is at most one per goal, threshold,
period and channel: its id is derived from exactly those (`notice_id`), so writing it twice writes the same row.
Notices are off by default; a goal's channel is switched on by the person, and an account-wide pause silences every
channel. When a period's time first crosses both thresholds at once, only the higher one is shown: the lower one is
recorded as superseded, so it never arrives afterwards either. `warehouse/notices.py` stores and reads them.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from warehouse.goal_rules import Goal, Period, Standing

CHANNELS = ("desktop", "email")
# What became of a notice: waiting for its channel; sent (handed to its channel, once); dropped (its channel was
# switched off or notices were paused before it went out); superseded (a higher threshold was crossed at once).
STATES = ("pending", "sent", "dropped", "superseded")
_NAMESPACE = uuid.UUID("6f1c2a52-9a57-4c57-8f63-2b1e3c0d7a10")
# The weekly summary e-mail is recorded as a notice of this goal id, no threshold, for the week's Monday.
WEEKLY_GOAL_ID = "00000000-0000-0000-0000-000000000000"
WEEKLY = "weekly"  # what an unsubscribe link of a weekly summary stops


class InvalidNoticeSetting(ValueError):
    """A notice switch that cannot be stored; the message names what is wrong."""


def percent(threshold: float) -> int:
    return round(threshold * 100)


def notice_id(user_id: str, goal_id: str, period_start: date, threshold: int, channel: str) -> str:
    """The one id of a goal's notice for a threshold (in percent), period and channel."""
    return str(uuid.uuid5(_NAMESPACE, f"{user_id}/{goal_id}/{period_start.isoformat()}/{threshold}/{channel}"))


@dataclass(frozen=True)
class Notice:
    notice_id: str
    goal_id: str
    period_start: date  # the local first day of the goal's period
    threshold: int  # percent of the goal's minutes: 85 or 100
    channel: str
    state: str
    summary: str
    body: str
    created_at: datetime | None = None  # when it was first found due; None until stored


def due_notices(
    user_id: str,
    goal: Goal,
    period: Period,
    now: Standing,
    channels: Collection[str],
    known: Collection[str],
) -> list[Notice]:
    """The notices a goal's standing calls for on its switched-on `channels`, leaving out the ids in `known` (any
    state: one notice per goal, threshold, period and channel, ever). Aspiring goals have none."""
    if not goal.limiting or not now.crossed:
        return []
    highest = max(now.crossed)
    found = []
    for channel in CHANNELS:
        if channel not in channels:
            continue
        for threshold in now.crossed:
            nid = notice_id(user_id, goal.goal_id, period.first_day, percent(threshold), channel)
            if nid in known:
                continue
            state = "pending" if threshold == highest else "superseded"
            summary, body = notice_text(goal, threshold, now)
            found.append(Notice(nid, goal.goal_id, period.first_day, percent(threshold), channel, state, summary, body))
    return found


def notice_text(goal: Goal, threshold: float, now: Standing) -> tuple[str, str]:
    """The notice's summary and body: which goal, which threshold, the time so far against the goal."""
    used = int(now.seconds // 60)
    when = "today" if goal.period == "day" else "this week"
    if threshold >= 1.0:
        summary = f"Limit reached: {goal.describe()}"
    else:
        summary = f"{percent(threshold)} % of your limit: {goal.describe()}"
    return summary, f"{used} of {goal.minutes} min {when}."


def checked_channel(channel: object) -> str:
    if channel not in CHANNELS:
        raise InvalidNoticeSetting(f"notices go by {' or '.join(CHANNELS)}; got {channel!r}")
    return str(channel)


@dataclass(frozen=True)
class WeekOfGoal:
    """How one goal went in a finished week: periods met of those counted (7 days or fewer for a daily goal, one
    week for a weekly one), and its time that week."""

    goal: Goal
    met: int
    periods: int
    seconds: float


def weekly_notice(user_id: str, monday: date, total_seconds: float, goals: Sequence[WeekOfGoal]) -> Notice:
    """The weekly summary of the week starting `monday`, as a pending e-mail notice: time only, never content."""
    sunday = monday + timedelta(days=6)
    summary = f"Your week {monday:%d %b} to {sunday:%d %b %Y}: {duration(total_seconds)} of activity"
    lines = [f"Active time: {duration(total_seconds)}."]
    if goals:
        lines.append("")
        lines.append("Goals:")
    for week in goals:
        unit = "day" if week.goal.period == "day" else "week"
        counted = f"{week.periods} {unit}{'s' if week.periods != 1 else ''}"
        lines.append(f"- {week.goal.describe()}: met {week.met} of {counted} ({duration(week.seconds)})")
    nid = notice_id(user_id, WEEKLY_GOAL_ID, monday, 0, "email")
    return Notice(nid, WEEKLY_GOAL_ID, monday, 0, "email", "pending", summary, "\n".join(lines))


def duration(seconds: float) -> str:
    """Whole minutes, as "2 h 05 min", "45 min" or "0 min"."""
    minutes = int(seconds // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"
