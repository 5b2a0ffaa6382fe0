"""Timeline: one day's app sessions per device, as a chart to zoom into (scroll) and pan (drag)."""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import formatting
from dashboard.context import View, current_view, load
from warehouse import queries


def chart(sessions: pd.DataFrame, tz: str) -> alt.Chart:
    data = sessions.assign(
        start=sessions["start"].dt.tz_convert(tz).dt.tz_localize(None),
        end=sessions["end"].dt.tz_convert(tz).dt.tz_localize(None),
        time=sessions["active_seconds"].map(formatting.duration),
        what=[f"{a} — {s}" if s else a for a, s in zip(sessions["app"], sessions["site"], strict=True)],
    )
    return (
        alt.Chart(data)
        .mark_bar(cornerRadius=2)
        .encode(
            x=alt.X("start:T", title=f"Time ({tz})", axis=alt.Axis(format="%H:%M")),
            x2="end:T",
            y=alt.Y("device_name:N", title=None),
            color=alt.Color("app:N", title="App"),
            tooltip=[
                alt.Tooltip("what:N", title="App"),
                alt.Tooltip("start:T", title="From", format="%H:%M:%S"),
                alt.Tooltip("end:T", title="To", format="%H:%M:%S"),
                alt.Tooltip("time:N", title="Active"),
                alt.Tooltip("keystrokes:Q", title="Keys"),
                alt.Tooltip("clicks:Q", title="Clicks"),
            ],
        )
        .properties(height=max(120, 60 * data["device_name"].nunique()))
        .interactive(bind_y=False)
    )


def show(view: View) -> None:
    period = view.period
    st.title("Timeline")
    days = [period.first + timedelta(days=i) for i in range(period.days)]
    day = st.selectbox(
        "Day", options=days[::-1], format_func=lambda d: d.strftime("%a %d %b %Y"), key=f"timeline_day_{view.shared}"
    )
    sessions = load(
        "the timeline",
        queries.app_timeline,
        view.user_id,
        period.start,
        period.end,
        day=day,
        tz=period.tz,
        devices=view.device_filter,
    )
    if sessions.empty:
        st.info("No app sessions on this day.")
        return
    devices = sessions["device_name"].nunique()
    st.caption(
        f"{len(sessions)} app sessions on {devices} device{'s' if devices != 1 else ''} · "
        f"{formatting.duration(sessions['active_seconds'].sum())} active · scroll to zoom, drag to pan"
    )
    st.metric("App sessions", len(sessions))
    st.altair_chart(chart(sessions, period.tz), width="stretch")


if __name__ == "__main__":
    show(current_view())
