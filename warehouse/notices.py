"""Goal notices in the warehouse, held by the gateway's login: a person's switches (per goal and channel, and the
account's pause and time zone), finding the notices due (`find_due`: every live limiting goal with a channel on is
measured against its current period), handing a channel its waiting notices (`take_pending`, or `pending` then
`record` for a channel that learns only afterwards whether it delivered), and the weekly summary due
(`weekly_summary_due`). `take_due` (a device asking) and `email_due` (the mailer) do those steps together with one
read of the account's settings and goals.

What a notice is and when one is due is `warehouse/notice_rules.py`. A switch that goes off, or a pause, drops the
notices still waiting on that channel at once, so nothing is ever delivered for a goal or channel that is off. A
notice is handed out once and recorded as sent as it is (at most once: a device that then cannot show it says so
in its log, and the notice is not repeated; never twice is the promise, docs/dashboard.md "Notices").
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clickhouse_connect.driver.client import Client

from warehouse import queries
from warehouse.goal_rules import Goal, local_day, period_at, standing
from warehouse.goals import GoalNotFound, list_goals, live_goal, seconds_in
from warehouse.notice_rules import (
    CHANNELS,
    WEEKLY,
    WEEKLY_GOAL_ID,
    InvalidNoticeSetting,
    Notice,
    WeekOfGoal,
    checked_channel,
    due_notices,
    notice_id,
    weekly_notice,
)

DEFAULT_TZ = "UTC"
# The channels every server delivers; e-mail too where the operator configured SMTP (Settings.email_notices).
DESKTOP_ONLY = ("desktop",)
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)
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
    weekly: bool = False  # the weekly summary e-mail
    weekly_since: datetime = _NEVER  # when it was last switched on


_SWITCHES = """
SELECT toString(goal_id), channel FROM notice_switches FINAL
WHERE user_id = {user:String} AND enabled
"""
_ACCOUNT = "SELECT paused, tz FROM notice_accounts FINAL WHERE user_id = {user:String}"
_WEEKLY = "SELECT enabled, since FROM notice_weekly FINAL WHERE user_id = {user:String}"


def notice_settings(client: Client, user_id: str) -> NoticeSettings:
    """The account's notice switches; with nothing ever set, every notice is off, nothing paused, in UTC."""
    switches: dict[str, set[str]] = {}
    for goal_id, channel in client.query(_SWITCHES, parameters={"user": user_id}).result_rows:
        switches.setdefault(goal_id, set()).add(str(channel))
    account = client.query(_ACCOUNT, parameters={"user": user_id}).result_rows
    paused, tz = account[0] if account else (False, DEFAULT_TZ)
    summary = client.query(_WEEKLY, parameters={"user": user_id}).result_rows
    weekly, since = summary[0] if summary else (False, _NEVER)
    return NoticeSettings(
        bool(paused), str(tz), {g: frozenset(c) for g, c in switches.items()}, bool(weekly), _utc(since)
    )


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def checked_tz(tz: object) -> str:
    if not isinstance(tz, str) or not tz:
        raise InvalidNoticeSetting(f"a time zone is a name such as Europe/Berlin; got {tz!r}")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidNoticeSetting(f"{tz!r} is not a time zone this server knows") from None
    return tz


def set_goal_channel(
    client: Client, user_id: str, goal_id: str, channel: str, enabled: bool, available: Collection[str] = DESKTOP_ONLY
) -> None:
    """Switch one channel of one of the user's goals on or off (GoalNotFound for another account's goal);
    switched off, its notices still waiting are dropped. Only the `available` channels can be switched on."""
    channel = checked_channel(channel)
    if enabled and channel not in available:
        raise InvalidNoticeSetting(
            f"this server does not send {channel} notices (its operator has not set up SMTP); "
            f"only {', '.join(available)}"
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
    _write_account(client, user_id, paused, zone)
    if paused:
        _drop_pending(client, user_id, _notices(client, user_id))


def set_weekly_summary(
    client: Client,
    user_id: str,
    enabled: bool,
    tz: str | None = None,
    available: Collection[str] = DESKTOP_ONLY,
    now: datetime | None = None,
) -> None:
    """Switch the account's weekly summary e-mail on or off (and set its time zone, as `set_account`). Switched
    on, the first summary is of the first week that ends after `now`."""
    if enabled and "email" not in available:
        raise InvalidNoticeSetting("this server does not send e-mail (its operator has not set up SMTP)")
    before = notice_settings(client, user_id)
    zone = checked_tz(tz) if tz is not None else before.tz
    since = before.weekly_since if before.weekly or not enabled else (now or _now())
    if zone != before.tz:
        _write_account(client, user_id, before.paused, zone)
    client.insert(
        "notice_weekly",
        [[user_id, bool(enabled), since, _now()]],
        column_names=("user_id", "enabled", "since", "updated_at"),
    )


def _write_account(client: Client, user_id: str, paused: bool, tz: str) -> None:
    client.insert(
        "notice_accounts",
        [[user_id, bool(paused), tz, _now()]],
        column_names=("user_id", "paused", "tz", "updated_at"),
    )


def unsubscribe_target(client: Client, user_id: str, stops: str) -> str | None:
    """What an e-mail's unsubscribe link would switch off (`stops`: a goal id, or WEEKLY), in words; None when
    there is nothing on to switch off: already off, or a deleted goal or account."""
    settings = notice_settings(client, user_id)
    if stops == WEEKLY:
        return "weekly summaries" if settings.weekly else None
    try:
        goal = live_goal(client, user_id, stops)
    except GoalNotFound:
        return None
    if "email" not in settings.switches.get(goal.goal_id, frozenset()):
        return None
    return f"e-mail notices of the goal {goal.describe()}"


def unsubscribe(client: Client, user_id: str, stops: str) -> str | None:
    """Switch off what an e-mail's unsubscribe link stops; returns it in words (`unsubscribe_target`), or None
    when it was already off."""
    target = unsubscribe_target(client, user_id, stops)
    if target is None:
        return None
    if stops == WEEKLY:
        set_weekly_summary(client, user_id, False)
    else:
        set_goal_channel(client, user_id, stops, "email", False)
    return target


_EMAIL_ACCOUNTS = """
SELECT DISTINCT user_id FROM (
    SELECT user_id FROM notice_switches FINAL WHERE channel = 'email' AND enabled
    UNION ALL
    SELECT user_id FROM notice_weekly FINAL WHERE enabled
)
ORDER BY user_id
"""


def email_accounts(client: Client) -> list[str]:
    """The accounts with an e-mail notice or the weekly summary switched on (paused or not)."""
    return [str(user) for (user,) in client.query(_EMAIL_ACCOUNTS).result_rows]


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


def record(client: Client, user_id: str, notices: Iterable[Notice], state: str) -> None:
    """Record what became of notices handed to a channel: "sent" once delivered, "dropped" if they never can be."""
    _write(client, user_id, notices, state)


def _drop_pending(client: Client, user_id: str, notices: Iterable[Notice]) -> None:
    _write(client, user_id, [n for n in notices if n.state == "pending"], "dropped")


def find_due(client: Client, user_id: str, now: datetime | None = None) -> list[Notice]:
    """Measure every live limiting goal that has a channel on against its current period (in the account's time
    zone) and store the notices newly due; returns them. Nothing while the account is paused."""
    settings = notice_settings(client, user_id)
    if settings.paused or not settings.switches:
        return []
    return _find_due(client, user_id, now or datetime.now(UTC), settings, list_goals(client, user_id))


def _find_due(client: Client, user_id: str, now: datetime, settings: NoticeSettings, goals: list[Goal]) -> list[Notice]:
    zone = ZoneInfo(settings.tz)
    today: date = now.astimezone(zone).date()
    known = {n.notice_id for n in _notices(client, user_id)}
    due: list[Notice] = []
    for goal in goals:
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
    return _pending(client, user_id, channel, settings, list_goals(client, user_id))


def _pending(client: Client, user_id: str, channel: str, settings: NoticeSettings, goals: list[Goal]) -> list[Notice]:
    live = {g.goal_id for g in goals}
    return [
        n
        for n in _notices(client, user_id)
        if n.state == "pending"
        and n.channel == channel
        and n.goal_id in live
        and channel in settings.switches.get(n.goal_id, frozenset())
    ]


def weekly_summary_due(client: Client, user_id: str, now: datetime | None = None) -> Notice | None:
    """The weekly summary of the last finished week (Monday to Sunday in the account's time zone) when it is
    switched on, the account is not paused, the week ended after it was switched on, and none was sent for it."""
    settings = notice_settings(client, user_id)
    if settings.paused or not settings.weekly:
        return None
    return _weekly_summary_due(client, user_id, now or datetime.now(UTC), settings, list_goals(client, user_id))


def _weekly_summary_due(
    client: Client, user_id: str, now: datetime, settings: NoticeSettings, goals: list[Goal]
) -> Notice | None:
    zone = ZoneInfo(settings.tz)
    today: date = now.astimezone(zone).date()
    monday = today - timedelta(days=today.weekday() + 7)
    start, _ = local_day(monday, zone)
    _, end = local_day(monday + timedelta(days=6), zone)
    if end <= settings.weekly_since:
        return None
    if notice_id(user_id, WEEKLY_GOAL_ID, monday, 0, "email") in {n.notice_id for n in _notices(client, user_id)}:
        return None
    total = float(queries.time_per_app(client, user_id, start, end)["seconds"].sum())
    weeks = []
    for goal in goals:
        days = [monday + timedelta(days=n) for n in range(7)] if goal.period == "day" else [monday]
        periods = [p for p in (period_at(goal, day, zone) for day in days) if p is not None]
        each = [seconds_in(client, user_id, goal, p, zone, p.end) for p in periods]
        met = sum(standing(goal, seconds).met for seconds in each)
        weeks.append(WeekOfGoal(goal, met, len(periods), sum(each)))
    return weekly_notice(user_id, monday, total, weeks)


def take_due(client: Client, user_id: str, channel: str, now: datetime | None = None) -> list[Notice]:
    """`find_due`, then the notices waiting on `channel` recorded as sent as they are handed out
    (`take_pending`): what a device asking for its notices gets. The account's settings and goals are read once."""
    channel = checked_channel(channel)
    settings = notice_settings(client, user_id)
    if settings.paused:
        return []
    goals = list_goals(client, user_id)
    if settings.switches:
        _find_due(client, user_id, now or datetime.now(UTC), settings, goals)
    taken = _pending(client, user_id, channel, settings, goals)
    _write(client, user_id, taken, "sent")
    return taken


def email_due(client: Client, user_id: str, now: datetime | None = None) -> list[Notice]:
    """What the mailer sends now: after `find_due`, the e-mail notices waiting (`pending`), and the weekly summary
    when one is due (`weekly_summary_due`); the account's settings and goals are read once. Recorded as sent by
    the mailer (`record`), once each is delivered."""
    settings = notice_settings(client, user_id)
    if settings.paused:
        return []
    now = now or datetime.now(UTC)
    goals = list_goals(client, user_id)
    if settings.switches:
        _find_due(client, user_id, now, settings, goals)
    outgoing = _pending(client, user_id, "email", settings, goals)
    weekly = _weekly_summary_due(client, user_id, now, settings, goals) if settings.weekly else None
    return [*outgoing, weekly] if weekly is not None else outgoing


def take_pending(client: Client, user_id: str, channel: str) -> list[Notice]:
    """The notices waiting on `channel` (`pending`), recorded as sent as they are handed out."""
    taken = pending(client, user_id, channel)
    _write(client, user_id, taken, "sent")
    return taken


__all__ = [
    "CHANNELS",
    "DEFAULT_TZ",
    "DESKTOP_ONLY",
    "NoticeSettings",
    "email_accounts",
    "email_due",
    "find_due",
    "notice_history",
    "notice_settings",
    "pending",
    "record",
    "set_account",
    "set_goal_channel",
    "set_weekly_summary",
    "take_due",
    "take_pending",
    "unsubscribe",
    "unsubscribe_target",
    "weekly_summary_due",
]
