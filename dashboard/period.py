"""The period a page shows: calendar days in the viewer's time zone, as a half-open UTC range.

The dashboard's period filter is a preset ("This week") or two chosen days; either way it becomes a `Period`
of whole local days, which every page turns into the [start, end) the query API takes.

Every page reads the viewer's clock the same way, through this module: `viewer_zone` (the browser's zone),
`viewer_today` (what "Today" is), `wall_clock` (instants as the local times a chart shows) and `local_hour`
(the hour of the day an instant is bucketed in).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import pandas as pd

PRESETS = ("Today", "Yesterday", "This week", "Last 7 days", "Last 30 days", "Custom")
DEFAULT_PRESET = "Last 7 days"
# The longest period a page will query at once; a year of hourly rollups is still quick.
MAX_DAYS = 366


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones()) | {"UTC"}


def viewer_zone(name: str | None) -> ZoneInfo:
    """The browser's time zone when it told us one the query API knows (an IANA name), else UTC."""
    if not name or name not in _known_zones():
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def viewer_today(zone: ZoneInfo, now: datetime | None = None) -> date:
    """The viewer's calendar day at `now` (by default the present): what every page means by "Today"."""
    return (now if now is not None else datetime.now(UTC)).astimezone(zone).date()


def wall_clock(moments: pd.Series, zone: ZoneInfo | str) -> pd.Series:
    """UTC instants as the viewer's wall-clock times, carried as UTC: a chart on a UTC scale shows exactly these
    local times, whatever zone the browser drawing it is in, so the only conversion to local time is this one."""
    return moments.dt.tz_convert(zone).dt.tz_localize(None).dt.tz_localize("UTC")


def local_hour(moments: pd.Series, zone: ZoneInfo | str) -> pd.Series:
    """The viewer's hour of the day (0-23, int64) each UTC instant falls in: how pages bucket by hour."""
    return moments.dt.tz_convert(zone).dt.hour.astype("int64")


def day_range(first: date, last: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """From the start of `first` to the start of the day after `last`, in `zone`."""
    if last < first:
        first, last = last, first
    start = datetime.combine(first, time.min, tzinfo=zone)
    end = datetime.combine(last + timedelta(days=1), time.min, tzinfo=zone)
    return start, end


@dataclass(frozen=True)
class Period:
    """The local days [first, last] in `zone`."""

    first: date
    last: date
    zone: ZoneInfo

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError(f"the period ends ({self.last}) before it starts ({self.first})")
        if self.days > MAX_DAYS:
            raise ValueError(f"the period is {self.days} days long; at most {MAX_DAYS} can be shown at once")

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def start(self) -> datetime:
        return day_range(self.first, self.last, self.zone)[0]

    @property
    def end(self) -> datetime:
        return day_range(self.first, self.last, self.zone)[1]

    @property
    def tz(self) -> str:
        return self.zone.key

    def previous(self) -> Period:
        """The period of the same number of days just before this one, for comparisons."""
        length = timedelta(days=self.days)
        return Period(self.first - length, self.last - length, self.zone)

    def label(self) -> str:
        if self.first == self.last:
            return self.first.strftime("%a %d %b %Y")
        return f"{self.first:%d %b %Y} – {self.last:%d %b %Y}"


def preset_period(preset: str, today: date, zone: ZoneInfo, chosen: tuple[date, date] | None = None) -> Period:
    """The period a preset names, as seen on `today`; "Custom" takes `chosen` (first and last day, any order).
    Weeks start on Monday."""
    if preset == "Today":
        return Period(today, today, zone)
    if preset == "Yesterday":
        return Period(today - timedelta(days=1), today - timedelta(days=1), zone)
    if preset == "This week":
        return Period(today - timedelta(days=today.weekday()), today, zone)
    if preset == "Last 7 days":
        return Period(today - timedelta(days=6), today, zone)
    if preset == "Last 30 days":
        return Period(today - timedelta(days=29), today, zone)
    if preset == "Custom":
        if not chosen or len(chosen) != 2:
            raise ValueError("choose the first and the last day of the period")
        first, last = sorted(chosen)
        return Period(first, last, zone)
    raise ValueError(f"unknown period {preset!r}; choose one of {', '.join(PRESETS)}")


def period_from_utc(start_s: int, end_s: int, tz: str) -> Period:
    """The local days a UTC range [start_s, end_s) covers in `tz` (a shared link's period)."""
    zone = viewer_zone(tz)
    start = datetime.fromtimestamp(start_s, UTC).astimezone(zone)
    last = datetime.fromtimestamp(end_s, UTC).astimezone(zone) - timedelta(microseconds=1)
    return Period(start.date(), last.date(), zone)
