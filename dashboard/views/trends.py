"""Trends: active and idle time per day, the day-of-week by hour heatmap, and this period against the last."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import charts, formatting
from dashboard.context import View, current_view, load
from warehouse import queries

WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
COMPARE_BY = {"App": "app", "Site": "site", "Category": "category", "Device": "device"}


def daily_chart(daily: pd.DataFrame) -> alt.Chart:
    """Active and idle time per day, stacked, in minutes or hours as fits the longest day."""
    unit = formatting.chart_unit(daily["active_seconds"] + daily["idle_seconds"])
    labels = charts.day_labels(daily["day"])
    long = daily.assign(label=labels).melt(
        id_vars="label", value_vars=["active_seconds", "idle_seconds"], var_name="state", value_name="s"
    )
    long = long.assign(
        amount=long["s"] / unit.seconds,
        state=long["state"].map({"active_seconds": "Active", "idle_seconds": "Idle"}),
        time=long["s"].map(formatting.duration),
    )
    return (
        alt.Chart(long, title="Per day")
        .mark_bar()
        .encode(
            x=alt.X("label:O", title=None, sort=list(labels), axis=alt.Axis(labelAngle=-45)),
            y=alt.Y("amount:Q", title=unit.title, stack="zero"),
            color=alt.Color("state:N", title=None, sort=["Active", "Idle"]),
            order=alt.Order("state:N", sort="ascending"),
            tooltip=[alt.Tooltip("label:N", title="Day"), "state:N", alt.Tooltip("time:N", title="Time")],
        )
    )


def heatmap(cells: pd.DataFrame) -> alt.Chart:
    unit = formatting.chart_unit(cells["active_seconds"])
    data = cells.assign(
        day=cells["weekday"].map(lambda d: WEEKDAYS[d - 1]),
        amount=cells["active_seconds"] / unit.seconds,
        time=cells["active_seconds"].map(formatting.duration),
    )
    return (
        alt.Chart(data, title="Day of the week × hour of the day")
        .mark_rect()
        .encode(
            x=alt.X("hour:O", title="Hour"),
            y=alt.Y("day:N", sort=WEEKDAYS, title=None),
            color=alt.Color("amount:Q", title=f"Active {unit.name}", scale=alt.Scale(scheme="viridis")),
            tooltip=["day:N", "hour:O", alt.Tooltip("time:N", title="Active")],
        )
    )


def show(view: View) -> None:
    period, user, devices = view.period, view.user_id, view.device_filter
    st.title("Trends")
    st.caption(period.label())
    daily = load("daily totals", queries.daily_trend, user, period.start, period.end, tz=period.tz, devices=devices)
    active = float(daily["active_seconds"].sum())
    # A share link shows its period and nothing else: no previous period, no comparison with one.
    previous = None if view.shared else period.previous()
    columns = st.columns(3 if previous else 2)
    columns[0].metric("Active in period", formatting.duration(active))
    columns[1].metric(
        "Daily average", formatting.duration(active / period.days if period.days else 0), help="Over every day"
    )
    if previous is not None:
        before = load("the previous period", queries.totals, user, previous.start, previous.end, devices=devices)
        before_active = float(before["active_seconds"].iloc[0])
        columns[2].metric(
            f"Previous {period.days} day{'s' if period.days != 1 else ''}",
            formatting.duration(before_active),
            delta=formatting.signed_duration(active - before_active),
        )
    if active == 0 and daily["idle_seconds"].sum() == 0:
        st.info("No activity recorded in this period.")
        return
    st.altair_chart(daily_chart(daily), width="stretch")
    cells = load(
        "the heatmap", queries.weekday_hour_heatmap, user, period.start, period.end, tz=period.tz, devices=devices
    )
    st.altair_chart(heatmap(cells), width="stretch")
    if previous is None:
        return

    st.subheader(f"Compared with {previous.label()}")
    by = st.radio("By", list(COMPARE_BY), horizontal=True, key=f"compare_by_{view.shared}")
    change = load(
        "the comparison",
        queries.compare_periods,
        user,
        period.start,
        period.end,
        compare_to=(previous.start, previous.end),
        by=COMPARE_BY[by],
        devices=devices,
    )
    if change.empty:
        st.caption("Nothing to compare.")
        return
    st.table(
        pd.DataFrame(
            {
                by: change["key"],
                "This period": change["seconds"].map(formatting.duration),
                "Before": change["previous_seconds"].map(formatting.duration),
                "Change": change["delta_seconds"].map(formatting.signed_duration),
            }
        ),
        hide_index=True,
        width="stretch",
    )


if __name__ == "__main__":
    show(current_view())
