"""Focus: the time inside focus sessions (not the active time: it holds the short pauses of a session), the
longest streaks, the breaks between sessions and context switches per focused hour (dashboard/streaks.py)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import charts, formatting, streaks
from dashboard.context import View, current_view, load, settings
from dashboard.period import wall_clock
from warehouse import queries

# The focus chart puts every session on one day (its time of day); the last moment of that day.
_DAY = pd.Timedelta(days=1) - pd.Timedelta(milliseconds=1)


def day_chart(sessions: pd.DataFrame, zone: str) -> alt.Chart:
    """Each focus session as a bar at its time of day, one row per day, coloured by its context switches."""
    start, end = wall_clock(sessions["start"], zone), wall_clock(sessions["end"], zone)
    midnight = start.dt.normalize()
    # On one shared day, so that the x axis is the time of day; a session past midnight is cut at 24:00.
    base = pd.Timestamp("2000-01-01", tz="UTC")
    data = sessions.assign(
        day=midnight.dt.strftime("%a %d %b"),
        sort=midnight.dt.strftime("%Y%m%d").astype("int64"),
        start_of_day=base + (start - midnight),
        end_of_day=base + (end - midnight).clip(upper=_DAY),
        length=streaks.span_seconds(sessions).map(formatting.duration),
        time=sessions["active_seconds"].map(formatting.duration),
        started=start.dt.strftime("%H:%M"),
    )
    return (
        alt.Chart(data, title="Focus sessions")
        .mark_bar(cornerRadius=2)
        .encode(
            x=alt.X("start_of_day:T", scale=alt.Scale(type="utc"), axis=charts.time_axis(f"Time of day ({zone})")),
            x2="end_of_day:T",
            y=alt.Y("day:N", title=None, sort=alt.EncodingSortField(field="sort", op="min", order="ascending")),
            color=alt.Color("context_switches:Q", title="Switches", scale=alt.Scale(scheme="orangered")),
            tooltip=[
                alt.Tooltip("day:N", title="Day"),
                alt.Tooltip("started:N", title="Started"),
                alt.Tooltip("length:N", title="Focused"),
                alt.Tooltip("time:N", title="Active"),
                alt.Tooltip("context_switches:Q", title="Switches"),
            ],
        )
        .interactive(bind_y=False)
    )


def show(view: View) -> None:
    period, user, devices = view.period, view.user_id, view.device_filter
    st.title("Focus")
    st.caption(period.label())
    sessions = load("focus sessions", queries.focus_sessions, user, period.start, period.end, devices=devices)
    breaks = load("breaks", queries.focus_breaks, user, period.start, period.end, devices=devices)
    summary = streaks.summarize(sessions, breaks)
    pause = formatting.duration(settings().break_after_seconds)
    columns = st.columns(5)
    columns[0].metric("Focus sessions", formatting.count(summary.sessions))
    columns[1].metric(
        "Focused",
        formatting.duration(summary.focused_seconds),
        help=f"Time inside focus sessions, from the start of each to its end: pauses shorter than {pause} are "
        f"part of it, and time in focus on two devices at once counts once. "
        f"Active in them: {formatting.duration(summary.active_seconds)}.",
    )
    columns[2].metric(
        "Longest streak",
        formatting.duration(summary.longest_seconds),
        help=f"The longest focus session, start to end: no pause of {pause} or more.",
    )
    columns[3].metric(
        "Breaks",
        formatting.count(summary.breaks),
        help="Stretches between focus sessions with no focus on any device: "
        f"{formatting.duration(summary.break_seconds)} in all, the longest "
        f"{formatting.duration(summary.longest_break_seconds)}.",
    )
    columns[4].metric(
        "Context switches / hour",
        formatting.rate(summary.switches_per_hour),
        help=f"Changes of app inside focus sessions, {formatting.count(summary.context_switches)} in all, per hour.",
    )
    if sessions.empty:
        st.info("No focus sessions in this period.")
        return
    st.caption(
        f"{formatting.duration(summary.focused_seconds)} focused, "
        f"{formatting.duration(summary.active_seconds)} of it active · "
        f"{formatting.count(summary.breaks)} break{'s' if summary.breaks != 1 else ''}, "
        f"{formatting.duration(summary.break_seconds)} in all"
    )
    zone = period.tz
    st.altair_chart(day_chart(sessions, zone), width="stretch")
    by_hour = streaks.switches_by_hour(sessions, zone)
    st.altair_chart(
        alt.Chart(by_hour, title="Context switches per focused hour, by hour of the day")
        .mark_bar()
        .encode(
            x=alt.X("hour:O", title=f"Hour ({zone})"),
            y=alt.Y("switches_per_hour:Q", title="Switches / hour"),
            tooltip=["hour:O", alt.Tooltip("switches_per_hour:Q", title="Switches / hour", format=".1f")],
        ),
        width="stretch",
    )
    st.subheader("Longest streaks")
    top = streaks.longest_streaks(sessions)
    st.table(
        pd.DataFrame(
            {
                "Started": wall_clock(top["start"], zone).dt.strftime("%a %d %b %H:%M"),
                "Focused": top["span_seconds"].map(formatting.duration),
                "Active": top["active_seconds"].map(formatting.duration),
                "Context switches": top["context_switches"].map(formatting.count),
                "Switches / hour": top["switches_per_hour"].map(formatting.rate),
                "Keys": top["keystrokes"].map(formatting.count),
                "Clicks": top["clicks"].map(formatting.count),
            }
        ),
        hide_index=True,
        width="stretch",
    )


if __name__ == "__main__":
    show(current_view())
