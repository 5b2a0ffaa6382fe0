"""Goal notices in the warehouse, held by the gateway's login: a person's switches (per goal and channel, and the
account's pause and time zone), finding the notices due (`find_due`: every live limiting goal with a channel on is
measured against its current period), and handing a channel its waiting notices (`take_pending`).

What a notice is and when one is due is `warehouse/notice_rules.py`. A switch that goes off, or a pause, drops the
notices still waiting on that channel at once, so nothing is ever delivered for a goal or channel that is off. A
notice is handed out once and recorded as sent as it is (at most once: a device that then cannot show it says so
in its log, and the notice is not repeated; never twice is the promise, docs/dashboard.md "Notices").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clickhouse_connect.driver.client import Client

from warehouse.goal_rules import period_at, standing
from warehouse.goals import list_goals, live_goal, seconds_in
from warehouse.notice_rules import CHANNELS, InvalidNoticeSetting, Notice, checked_channel, due_notices

DEFAULT_TZ = "UTC"
# The channels this server delivers: e-mail is not built yet (docs/dashboard.md, "Notices").
AVAILABLE_CHANNELS = ("desktop",)
_NOTICE_COLUMNS = (
    "user_id", "notice_id", "goal_id", "period_start", "threshold", "channel", "state", "stage", "summary", "body",
    "created_at", "updated_at",
)  # fmt: skip


def _now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class NoticeSettings:
    paused: bool
    tz: str
    switches: dict[str, frozenset[str]]  # goal id -> the channels switched on


_SWITCHES = """
SELECT toString(goal_id), channel FROM notice_switches FINAL
WHERE user_id = {user:String} AND enabled
"""
_ACCOUNT = "SELECT paused, tz FROM notice_accounts FINAL WHERE user_id = {user:String}"


def notice_settings(client: Client, user_id: str) -> NoticeSettings:
    """The account's notice switches; with nothing ever set, every notice is off, nothing paused, in UTC."""
    switches: dict[str, set[str]] = {}
    for goal_id, channel in client.query(_SWITCHES, parameters={"user": user_id}).result_rows:
        switches.setdefault(goal_id, set()).add(str(channel))
    account = client.query(_ACCOUNT, parameters={"user": user_id}).result_rows
    paused, tz = (bool(account[0][0]), str(account[0][1])) if account else (False, DEFAULT_TZ)
    return NoticeSettings(paused, tz, {g: frozenset(c) for g, c in switches.items()})


def checked_tz(tz: object) -> str:
    if not isinstance(tz, str) or not tz:
        raise InvalidNoticeSetting(f"a time zone is a name such as Europe/Berlin; got {tz!r}")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidNoticeSetting(f"{tz!r} is not a time zone this server knows") from None
    return tz


def set_goal_channel(client: Client, user_id: str, goal_id: str, channel: str, enabled: bool) -> None:
    """Switch one channel of one of the user's goals on or off (GoalNotFound for another account's goal);
    switched off, its notices still waiting are dropped."""
    channel = checked_channel(channel)
    if enabled and channel not in AVAILABLE_CHANNELS:
        raise InvalidNoticeSetting(
            f"this server does not send {channel} notices yet; only {', '.join(AVAILABLE_CHANNELS)}"
        )
    goal = live_goal(client, user_id, goal_id)
    client.insert(
        "notice_switches",
        [[user_id, goal.goal_id, channel, bool(enabled), _now()]],
        column_names=("user_id", "goal_id", "channel", "enabled", "updated_at"),
    )
    if not enabled:
        _drop_pending(client, user_id, [n for n in _notices(client, user_id) if n.goal_id == goal.goal_id and
                                        n.channel == channel])  # fmt: skip


def set_account(client: Client, user_id: str, paused: bool, tz: str | None = None) -> None:
    """Pause (or resume) every notice of the account, and set the time zone its goal periods fall in (None keeps
    the one set before); paused, every notice still waiting is dropped."""
    zone = checked_tz(tz) if tz is not None else notice_settings(client, user_id).tz
    client.insert(
        "notice_accounts",
        [[user_id, bool(paused), zone, _now()]],
        column_names=("user_id", "paused", "tz", "updated_at"),
    )
    if paused:
        _drop_pending(client, user_id, _notices(client, user_id))


_NOTICES = """
SELECT toString(notice_id), toString(goal_id), period_start, threshold, channel, state, summary, body, created_at
FROM goal_notices FINAL
WHERE user_id = {user:String}
ORDER BY created_at, notice_id
"""


def _notices(client: Client, user_id: str) -> list[Notice]:
    rows = client.query(_NOTICES, parameters={"user": user_id}).result_rows
    return [Notice(n, g, p, int(t), str(c), str(s), sm, b, at) for n, g, p, t, c, s, sm, b, at in rows]


def notice_history(client: Client, user_id: str) -> list[Notice]:
    """Every notice of the account, oldest first, whatever became of it."""
    return _notices(client, user_id)


def _write(client: Client, user_id: str, notices: Iterable[Notice], state: str | None = None) -> None:
    now = _now()
    rows = []
    for n in notices:
        final = state or n.state
        rows.append([user_id, n.notice_id, n.goal_id, n.period_start, n.threshold, n.channel, final,
                     0 if final == "pending" else 1, n.summary, n.body, n.created_at or now, now])  # fmt: skip
    if rows:
        client.insert("goal_notices", rows, column_names=_NOTICE_COLUMNS)


def _drop_pending(client: Client, user_id: str, notices: Iterable[Notice]) -> None:
    _write(client, user_id, [n for n in notices if n.state == "pending"], "dropped")


def find_due(client: Client, user_id: str, now: datetime | None = None) -> list[Notice]:
    """Measure every live limiting goal that has a channel on against its current period (in the account's time
    zone) and store the notices newly due; returns them. Nothing while the account is paused."""
    settings = notice_settings(client, user_id)
    if settings.paused or not settings.switches:
        return []
    now = now or datetime.now(UTC)
    zone = ZoneInfo(settings.tz)
    today: date = now.astimezone(zone).date()
    known = {n.notice_id for n in _notices(client, user_id)}
    due: list[Notice] = []
    for goal in list_goals(client, user_id):
        channels = settings.switches.get(goal.goal_id, frozenset())
        period = period_at(goal, today, zone) if goal.limiting and channels else None
        if period is None:
            continue
        so_far = standing(goal, seconds_in(client, user_id, goal, period, zone, now))
        due.extend(due_notices(user_id, goal, period, so_far, channels, known))
    _write(client, user_id, due)
    return due


def pending(client: Client, user_id: str, channel: str) -> list[Notice]:
    """The notices waiting on `channel`, oldest first, of live goals whose channel is on, unless paused."""
    channel = checked_channel(channel)
    settings = notice_settings(client, user_id)
    if settings.paused:
        return []
    live = {g.goal_id for g in list_goals(client, user_id)}
    return [
        n
        for n in _notices(client, user_id)
        if n.state == "pending"
        and n.channel == channel
        and n.goal_id in live
        and channel in settings.switches.get(n.goal_id, frozenset())
    ]


def take_pending(client: Client, user_id: str, channel: str) -> list[Notice]:
    """The notices waiting on `channel` (`pending`), recorded as sent as they are handed out."""
    taken = pending(client, user_id, channel)
    _write(client, user_id, taken, "sent")
    return taken


__all__ = [
    "AVAILABLE_CHANNELS",
    "CHANNELS",
    "DEFAULT_TZ",
    "NoticeSettings",
    "find_due",
    "notice_history",
    "notice_settings",
    "pending",
    "set_account",
    "set_goal_channel",
    "take_pending",
]
