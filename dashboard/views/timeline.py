"""Timeline: one day's app sessions per device, as a chart to zoom into (scroll) and pan (drag); every app drawn
is in the legend, in its colour for the account (dashboard/charts.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import charts, formatting
from dashboard.context import View, account_apps, current_view, load
from dashboard.period import wall_clock
from warehouse import queries


def chart(sessions: pd.DataFrame, tz: str, apps: Sequence[str] = ()) -> alt.Chart:
    """The day's sessions as bars on the viewer's clock, one row per device; `apps` is the account's app order
    (`context.account_apps`), which sets each app's colour."""
    start, end = wall_clock(sessions["start"], tz), wall_clock(sessions["end"], tz)
    devices = formatting.device_labels(dict(zip(sessions["device_id"], sessions["device_name"], strict=True)))
    data = sessions.assign(
        start=start,
        end=end,
        device=sessions["device_id"].map(devices),
        time=sessions["active_seconds"].map(formatting.duration),
        what=[f"{a} — {s}" if s else a for a, s in zip(sessions["app"], sessions["site"], strict=True)],
        came=start.dt.strftime("%H:%M:%S"),
        went=end.dt.strftime("%H:%M:%S"),
    )
    return (
        alt.Chart(data)
        .mark_bar(cornerRadius=2)
        .encode(
            x=alt.X("start:T", scale=alt.Scale(type="utc"), axis=charts.time_axis(f"Time ({tz})")),
            x2="end:T",
            y=alt.Y("device:N", title=None),
            color=charts.app_color("app", data["app"], apps),
            tooltip=[
                alt.Tooltip("what:N", title="App"),
                alt.Tooltip("device:N", title="Device"),
                alt.Tooltip("came:N", title="From"),
                alt.Tooltip("went:N", title="To"),
                alt.Tooltip("time:N", title="Active"),
                alt.Tooltip("keystrokes:Q", title="Keys"),
                alt.Tooltip("clicks:Q", title="Clicks"),
            ],
        )
        .properties(
            height=max(120, 60 * data["device"].nunique()),
            # The plot keeps its height and the legend below it adds its own rows, so no app is cut off; drawn
            # as SVG, so its labels are text.
            autosize=alt.AutoSizeParams(type="fit-x", contains="padding"),
            usermeta={"embedOptions": {"renderer": "svg"}},
        )
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
    devices = sessions["device_id"].nunique()
    st.caption(
        f"{len(sessions)} app sessions on {devices} device{'s' if devices != 1 else ''} · "
        f"{formatting.duration(sessions['active_seconds'].sum())} active · scroll to zoom, drag to pan"
    )
    st.metric("App sessions", len(sessions))
    st.altair_chart(chart(sessions, period.tz, account_apps(view)), width="stretch")


if __name__ == "__main__":
    show(current_view())
