"""What the Focus page says about focus sessions: streaks, breaks and context switches per hour.

Pure functions over the query API's `focus_sessions` and `focus_breaks` frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class FocusSummary:
    sessions: int
    focused_seconds: float
    longest_seconds: float
    breaks: int
    break_seconds: float
    context_switches: int
    switches_per_hour: float


def switches_per_hour(context_switches: float, active_seconds: float) -> float:
    """Context switches per hour of focus; 0 when there was no focused time."""
    return float(context_switches) * 3600 / active_seconds if active_seconds > 0 else 0.0


def summarize(sessions: pd.DataFrame, breaks: pd.DataFrame) -> FocusSummary:
    focused = float(sessions["active_seconds"].sum()) if not sessions.empty else 0.0
    switches = int(sessions["context_switches"].sum()) if not sessions.empty else 0
    return FocusSummary(
        sessions=len(sessions),
        focused_seconds=focused,
        longest_seconds=float(sessions["active_seconds"].max()) if not sessions.empty else 0.0,
        breaks=len(breaks),
        break_seconds=float(breaks["seconds"].sum()) if not breaks.empty else 0.0,
        context_switches=switches,
        switches_per_hour=switches_per_hour(switches, focused),
    )


def longest_streaks(sessions: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """The `n` longest focus sessions (by active time), longest first, with their switches per hour."""
    top = sessions.sort_values(["active_seconds", "start"], ascending=[False, True]).head(n).copy()
    top["switches_per_hour"] = [
        switches_per_hour(s, a) for s, a in zip(top["context_switches"], top["active_seconds"], strict=True)
    ]
    return top.reset_index(drop=True)


def switches_by_hour(sessions: pd.DataFrame, zone: str) -> pd.DataFrame:
    """Context switches per focused hour for each local hour of the day a session started in.

    Columns: hour (int64, 0-23), switches_per_hour (float64); only hours with focus."""
    if sessions.empty:
        return pd.DataFrame({"hour": pd.Series(dtype="int64"), "switches_per_hour": pd.Series(dtype="float64")})
    hour = sessions["start"].dt.tz_convert(zone).dt.hour
    grouped = sessions.assign(hour=hour).groupby("hour")[["context_switches", "active_seconds"]].sum()
    grouped = grouped[grouped["active_seconds"] > 0]
    rate = grouped["context_switches"] * 3600 / grouped["active_seconds"]
    return pd.DataFrame({"hour": grouped.index.astype("int64"), "switches_per_hour": rate.astype("float64").values})
