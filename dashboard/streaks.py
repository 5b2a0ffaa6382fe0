"""What the Focus page says about focus sessions: focused time, streaks, breaks and context switches per hour.

Pure functions over the query API's `focus_sessions` and `focus_breaks` frames.

A focus session runs from its first activity to its last, through pauses shorter than a break
(`break_after_seconds`), so the time inside focus sessions ("focused") is not the active time: it holds those
pauses, and a stretch when two devices are in focus at once counts once. Every active second lies in some focus
session, which is why the active time inside them is the period's active time and is not what "focused" says.
A streak is one focus session, start to end; a break is a stretch with no focus session on any device.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from dashboard.period import local_hour


@dataclass(frozen=True)
class FocusSummary:
    sessions: int
    focused_seconds: float  # inside focus sessions, start to end, overlaps once
    active_seconds: float  # the active time in those sessions
    longest_seconds: float  # the longest focus session, start to end
    breaks: int
    break_seconds: float
    longest_break_seconds: float
    context_switches: int
    switches_per_hour: float  # per focused hour


def switches_per_hour(context_switches: float, focused_seconds: float) -> float:
    """Context switches per hour of focus; 0 when there was no focused time."""
    return float(context_switches) * 3600 / focused_seconds if focused_seconds > 0 else 0.0


def span_seconds(sessions: pd.DataFrame) -> pd.Series:
    """Each focus session's length, start to end, in seconds (float64)."""
    if sessions.empty:
        return pd.Series(dtype="float64", index=sessions.index)
    return (sessions["end"] - sessions["start"]).dt.total_seconds().clip(lower=0).astype("float64")


def focused_seconds(sessions: pd.DataFrame) -> float:
    """The time inside focus sessions: the length of the union of their [start, end) spans, so time two
    devices were in focus at once counts once."""
    total, reach = 0.0, None
    for start, end in sorted(zip(sessions["start"], sessions["end"], strict=True)):
        if reach is None or start > reach:
            total += max(0.0, (end - start).total_seconds())
            reach = max(start, end)
        elif end > reach:
            total += (end - reach).total_seconds()
            reach = end
    return total


def summarize(sessions: pd.DataFrame, breaks: pd.DataFrame) -> FocusSummary:
    focused = focused_seconds(sessions)
    switches = int(sessions["context_switches"].sum()) if not sessions.empty else 0
    return FocusSummary(
        sessions=len(sessions),
        focused_seconds=focused,
        active_seconds=float(sessions["active_seconds"].sum()) if not sessions.empty else 0.0,
        longest_seconds=float(span_seconds(sessions).max()) if not sessions.empty else 0.0,
        breaks=len(breaks),
        break_seconds=float(breaks["seconds"].sum()) if not breaks.empty else 0.0,
        longest_break_seconds=float(breaks["seconds"].max()) if not breaks.empty else 0.0,
        context_switches=switches,
        switches_per_hour=switches_per_hour(switches, focused),
    )


def longest_streaks(sessions: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """The `n` longest focus sessions (start to end), longest first, with their `span_seconds` and their
    context switches per hour of that span."""
    ranked = sessions.assign(span_seconds=span_seconds(sessions))
    top = ranked.sort_values(["span_seconds", "start"], ascending=[False, True]).head(n).copy()
    top["switches_per_hour"] = [
        switches_per_hour(s, f) for s, f in zip(top["context_switches"], top["span_seconds"], strict=True)
    ]
    return top.reset_index(drop=True)


def switches_by_hour(sessions: pd.DataFrame, zone: str) -> pd.DataFrame:
    """Context switches per focused hour for each local hour of the day a session started in.

    Columns: hour (int64, 0-23), switches_per_hour (float64); only hours with focus."""
    if sessions.empty:
        return pd.DataFrame({"hour": pd.Series(dtype="int64"), "switches_per_hour": pd.Series(dtype="float64")})
    hours = sessions.assign(hour=local_hour(sessions["start"], zone), span_seconds=span_seconds(sessions))
    grouped = hours.groupby("hour")[["context_switches", "span_seconds"]].sum()
    grouped = grouped[grouped["span_seconds"] > 0]
    rate = grouped["context_switches"] * 3600 / grouped["span_seconds"]
    return pd.DataFrame({"hour": grouped.index.astype("int64"), "switches_per_hour": rate.astype("float64").values})
