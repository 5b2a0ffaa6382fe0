"""How the dashboard writes numbers: durations, shares and counts, the same on every page and in tests."""

from __future__ import annotations

import math


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


def hours(seconds: float) -> float:
    return float(seconds) / 3600


def device_labels(devices: dict[str, str]) -> dict[str, str]:
    """device id -> the label a person picks it by: its name, with the start of its id when names repeat."""
    seen: dict[str, int] = {}
    for name in devices.values():
        seen[name] = seen.get(name, 0) + 1
    return {d: name if seen[name] == 1 else f"{name} ({d[:8]})" for d, name in devices.items()}
