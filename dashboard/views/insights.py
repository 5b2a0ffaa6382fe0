"""Insights: when people on this instance are at their computers, as k-anonymous aggregates (every figure
describes at least k people, or it is not shown). Only present when the operator turns it on."""

from __future__ import annotations

import altair as alt
import streamlit as st

from dashboard.context import View, current_view, load, require_owner, settings
from warehouse import queries

WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def show(view: View) -> None:
    require_owner(view)
    s = settings()
    st.title("Insights across people")
    if not s.dashboard_aggregates:
        st.info("The operator of this instance has not turned on cross-user insights.")
        return
    k, period = s.aggregate_k, view.period
    st.caption(
        f"{period.label()}, in UTC days. Each figure is the average person's share of their own active time and "
        f"describes at least {k} people; anything fewer people could be recognised in is left out."
    )
    weekdays = load("insights", queries.weekday_share_across_users, period.start, period.end, k=k)
    hours = load("insights", queries.hour_share_across_users, period.start, period.end, k=k)
    if weekdays.empty and hours.empty:
        st.info(f"Fewer than {k} people were active in this period: nothing can be shown without describing someone.")
        return
    left, right = st.columns(2)
    if not weekdays.empty:
        data = weekdays.assign(day=weekdays["weekday"].map(lambda d: WEEKDAYS[d - 1]), percent=weekdays["share"] * 100)
        left.altair_chart(
            alt.Chart(data, title="By day of the week")
            .mark_bar()
            .encode(
                x=alt.X("day:N", sort=WEEKDAYS, title=None),
                y=alt.Y("percent:Q", title="% of active time"),
                tooltip=["day:N", alt.Tooltip("percent:Q", format=".1f"), alt.Tooltip("users:Q", title="People")],
            ),
            width="stretch",
        )
    if not hours.empty:
        data = hours.assign(percent=hours["share"] * 100)
        right.altair_chart(
            alt.Chart(data, title="By hour of the day (UTC)")
            .mark_bar()
            .encode(
                x=alt.X("hour:O", title="Hour"),
                y=alt.Y("percent:Q", title="% of active time"),
                tooltip=["hour:O", alt.Tooltip("percent:Q", format=".1f"), alt.Tooltip("users:Q", title="People")],
            ),
            width="stretch",
        )


if __name__ == "__main__":
    show(current_view())
