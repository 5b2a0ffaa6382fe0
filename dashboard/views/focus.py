"""Focus: focus sessions and the breaks between them, context switches per hour, the longest streaks."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import formatting, streaks
from dashboard.context import View, current_view, load
from warehouse import queries


def day_chart(sessions: pd.DataFrame, zone: str) -> alt.Chart:
    """Each focus session as a bar at its time of day, one row per day, coloured by its context switches."""
    start = sessions["start"].dt.tz_convert(zone).dt.tz_localize(None)
    end = sessions["end"].dt.tz_convert(zone).dt.tz_localize(None)
    midnight = start.dt.normalize()
    # On one shared day, so that the x axis is the time of day; a session past midnight is cut at 24:00.
    base = pd.Timestamp("2000-01-01")
    data = sessions.assign(
        day=midnight.dt.strftime("%a %d %b"),
        sort=midnight,
        start_of_day=base + (start - midnight),
        end_of_day=base + (end - midnight).clip(upper=pd.Timedelta(days=1)),
        time=sessions["active_seconds"].map(formatting.duration),
        started=start.dt.strftime("%H:%M"),
    )
    return (
        alt.Chart(data, title="Focus sessions")
        .mark_bar(cornerRadius=2)
        .encode(
            x=alt.X("start_of_day:T", title=f"Time of day ({zone})", axis=alt.Axis(format="%H:%M")),
            x2="end_of_day:T",
            y=alt.Y("day:N", title=None, sort=alt.EncodingSortField(field="sort", op="min", order="ascending")),
            color=alt.Color("context_switches:Q", title="Switches", scale=alt.Scale(scheme="orangered")),
            tooltip=[
                alt.Tooltip("day:N", title="Day"),
                alt.Tooltip("started:N", title="Started"),
                alt.Tooltip("time:N", title="Focused"),
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
    columns = st.columns(5)
    columns[0].metric("Focus sessions", summary.sessions)
    columns[1].metric("Focused", formatting.duration(summary.focused_seconds))
    columns[2].metric("Longest streak", formatting.duration(summary.longest_seconds))
    columns[3].metric("Breaks", summary.breaks, help=f"{formatting.duration(summary.break_seconds)} in all")
    columns[4].metric("Context switches / hour", f"{summary.switches_per_hour:.1f}")
    if sessions.empty:
        st.info("No focus sessions in this period.")
        return
    zone = period.tz
    st.altair_chart(day_chart(sessions, zone), width="stretch")
    by_hour = streaks.switches_by_hour(sessions, zone)
    st.altair_chart(
        alt.Chart(by_hour, title="Context switches per focused hour, by hour of the day")
        .mark_bar()
        .encode(
            x=alt.X("hour:O", title="Hour"),
            y=alt.Y("switches_per_hour:Q", title="Switches / hour"),
            tooltip=["hour:O", alt.Tooltip("switches_per_hour:Q", format=".1f")],
        ),
        width="stretch",
    )
    st.subheader("Longest streaks")
    top = streaks.longest_streaks(sessions)
    st.table(
        pd.DataFrame(
            {
                "Started": top["start"].dt.tz_convert(zone).dt.strftime("%a %d %b %H:%M"),
                "Focused": top["active_seconds"].map(formatting.duration),
                "Context switches": top["context_switches"],
                "Switches / hour": top["switches_per_hour"].round(1),
                "Keys": top["keystrokes"],
                "Clicks": top["clicks"],
            }
        ),
        hide_index=True,
        width="stretch",
    )


if __name__ == "__main__":
    show(current_view())
