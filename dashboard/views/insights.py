"""Insights: when people on this instance are at their computers, as the gateway released them for each week,
differentially private (warehouse/insights.py, docs/insights.md). Nothing here is exact: every figure, and the
number of people it describes, carries the noise it was released with, and the page says so beside each one.
Only present when the operator turns Insights on."""

from __future__ import annotations

import math
from datetime import date, timedelta

import altair as alt
import pandas as pd
import streamlit as st

from dashboard.context import View, current_view, load, require_owner, settings
from warehouse import insights
from warehouse.insight_rules import LOOKBACK_DAYS, Release

WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
TITLES = {"weekday": "By day of the week (UTC)", "hour": "By hour of the day (UTC)"}


def week_label(week: date) -> str:
    end = week + timedelta(days=6)
    return f"{week:%-d %b} – {end:%-d %b %Y}"


def noise_note(r: Release) -> str:
    """What one figure's noise means, in words: beside every figure."""
    return (
        f"Noisy on purpose: each bar may be off by about ±{r.margin() * 100:.0f} points (19 times out of 20), and "
        f"differences smaller than that mean nothing. About {r.people} people (that count is noisy too). "
        f"Released once with privacy budget ε = {r.epsilon:.2g}"
        + (f", δ = {r.delta:.1g}" if r.delta else "")
        + f": whatever is shown was at most {math.exp(r.epsilon):.3g} times likelier with any one person's data "
        "than without it."
    )


def _chart(r: Release) -> alt.Chart:
    if r.figure == "weekday":
        data = pd.DataFrame({"bucket": WEEKDAYS, "percent": [s * 100 for s in r.shares]})
        x = alt.X("bucket:N", sort=WEEKDAYS, title=None)
    else:
        data = pd.DataFrame({"bucket": list(range(24)), "percent": [s * 100 for s in r.shares]})
        x = alt.X("bucket:O", title="Hour")
    return (
        alt.Chart(data, title=TITLES[r.figure])
        .mark_bar()
        .encode(
            x=x,
            y=alt.Y("percent:Q", title="≈ % of active time (noisy)"),
            tooltip=[alt.Tooltip("bucket", title="When"), alt.Tooltip("percent:Q", title="≈ % (noisy)", format=".0f")],
        )
    )


def _default_week(weeks: list[date], view: View) -> int:
    """The newest released week starting in the page's period, else the newest."""
    start, end = view.period.start.date(), view.period.end.date()
    return next((n for n, w in enumerate(weeks) if start <= w < end), 0)


def show(view: View) -> None:
    require_owner(view)
    s = settings()
    st.title("Insights across people")
    if not s.dashboard_aggregates:
        st.info("The operator of this instance has not turned on cross-user insights.")
        return
    weeks = load("the released weeks", insights.release_weeks)
    if not weeks:
        st.info(
            "No week has been released yet. Each week's figures are released once, two days after the week ends, "
            "and then never change."
        )
        return
    week = st.selectbox("Week", weeks, index=_default_week(weeks, view), format_func=week_label)
    released = load("insights", insights.releases, week)
    st.caption(
        "Each figure is the average person's share of their own active time, over people active on at least "
        f"{next(iter(released.values())).min_active_days} of the {LOOKBACK_DAYS} days ending with the week. "
        "Random noise was added once, when the week was released, so that the figures reveal nothing about any "
        "one person: asking again shows the same figures and reveals nothing more."
    )
    for column, figure in zip(st.columns(2), ("weekday", "hour"), strict=True):
        r = released.get(figure)
        if r is None:
            continue
        if not r.shown:
            column.info(
                f"{TITLES[r.figure]}: too few people this week (a noisy count under {r.k}) to show anything "
                "without describing someone."
            )
            continue
        column.altair_chart(_chart(r), width="stretch")
        column.caption(noise_note(r))
    with st.expander("Privacy budget spent"):
        spent = load("the privacy budget spent", insights.budget_spent)
        st.caption(
            "Every release spends privacy budget once; figures shown again spend nothing. ε adds up over the "
            "figures of a week (docs/insights.md)."
        )
        st.dataframe(
            spent.assign(week=spent["week"].map(week_label)),
            hide_index=True,
            column_config={
                "epsilon": st.column_config.NumberColumn("ε", format="%.3g"),
                "delta": st.column_config.NumberColumn("δ", format="%.1g"),
            },  # fmt: skip
        )


if __name__ == "__main__":
    show(current_view())
