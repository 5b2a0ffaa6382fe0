"""How the dashboard writes numbers: durations, shares, counts and rates, and the unit a chart's durations are
drawn in, the same on every page and in tests."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


def duration(seconds: float) -> str:
    """'1 h 05 min', '12 min', '0 min' — rounded to the minute, as people read time spent."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        seconds = 0.0
    minutes = int(round(max(0.0, float(seconds)) / 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def signed_duration(seconds: float) -> str:
    """A change in time: '+1 h 05 min', '−12 min', '±0 min'."""
    if round(seconds / 60) == 0:
        return "±0 min"
    return ("+" if seconds > 0 else "−") + duration(abs(seconds))


def share(part: float, whole: float) -> str:
    """'42 %' of the whole; '–' when there is no whole."""
    if not whole:
        return "–"
    return f"{100 * part / whole:.0f} %"


def count(value: float) -> str:
    """A thousands-separated integer: '12,345'."""
    return f"{int(value):,}"


def rate(value: float) -> str:
    """A rate such as context switches per hour, to one decimal: '2.4', '0.0'; '–' when there is none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{float(value):.1f}"


@dataclass(frozen=True)
class DurationUnit:
    """The unit a chart's time axis is drawn in: `title` for the axis, `seconds` in one unit."""

    name: str
    title: str
    seconds: int

    def of(self, seconds: float) -> float:
        return float(seconds) / self.seconds


MINUTES = DurationUnit("min", "Minutes", 60)
HOURS = DurationUnit("h", "Hours", 3600)
# A chart whose largest value is under this many seconds reads in minutes (at most '119'), else in hours.
HOURS_FROM = 2 * 3600


def chart_unit(seconds: Iterable[float]) -> DurationUnit:
    """Minutes or hours, as fits a chart of these durations: minutes while the largest is under two hours (so
    a chart of minutes is never drawn as slivers of an hour), hours from there (never thousands of minutes)."""
    largest = max((float(s) for s in seconds if s is not None and not math.isnan(float(s))), default=0.0)
    return HOURS if largest >= HOURS_FROM else MINUTES


def device_labels(devices: dict[str, str]) -> dict[str, str]:
    """device id -> the label a person picks it by: its name, with the start of its id when names repeat."""
    seen: dict[str, int] = {}
    for name in devices.values():
        seen[name] = seen.get(name, 0) + 1
    return {d: name if seen[name] == 1 else f"{name} ({d[:8]})" for d, name in devices.items()}
