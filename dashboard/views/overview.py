"""Overview: today's and this week's totals, active against idle, and the top apps, sites and categories."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import charts, formatting
from dashboard.context import View, account_apps, current_view, load
from dashboard.period import preset_period, viewer_today
from dashboard.views.goals import plain, progress_text, report_of
from warehouse import goals, queries

TOP = 10


def _bars(df: pd.DataFrame, key: str, title: str, apps: Sequence[str] | None = None) -> alt.Chart:
    """The top rows as bars in minutes or hours, as fits; apps (given the account's app order) in their colours."""
    top = df.head(TOP)
    unit = formatting.chart_unit(top["seconds"])
    data = top.assign(amount=top["seconds"] / unit.seconds, time=top["seconds"].map(formatting.duration))
    encoding = {
        "x": alt.X("amount:Q", title=unit.title),
        "y": alt.Y(f"{key}:N", sort="-x", title=None),
        "tooltip": [alt.Tooltip(f"{key}:N", title=title), alt.Tooltip("time:N", title="Time")],
    }
    if apps is not None:
        encoding["color"] = charts.app_color(key, data[key], apps, legend=False)
    return alt.Chart(data).mark_bar().encode(**encoding)


def _top(df: pd.DataFrame, key: str, title: str, total: float, apps: Sequence[str] | None = None) -> None:
    if df.empty:
        st.caption(f"No {title.lower()} in this period.")
        return
    st.altair_chart(_bars(df, key, title, apps), width="stretch")
    st.table(
        pd.DataFrame(
            {
                title: df[key].head(TOP),
                "Time": df["seconds"].head(TOP).map(formatting.duration),
                "Share": [formatting.share(s, total) for s in df["seconds"].head(TOP)],
            }
        ),
        hide_index=True,
        width="stretch",
    )


def _goals(view: View) -> None:
    """The owner's goals, one line each with today's or this week's progress (the Goals page has the rest)."""
    listed = load("the goals", goals.list_goals, view.user_id)
    if not listed:
        return
    st.subheader("Goals")
    for goal in listed:
        report = report_of(view, goal, history=0)
        mark = "" if report.now is None else ("✅ " if report.now.met else "⚠️ ")
        st.markdown(f"{mark}{plain(goal.describe())}: {progress_text(report)}")


def show(view: View) -> None:
    period, user, devices = view.period, view.user_id, view.device_filter
    st.title("Overview")
    st.caption(period.label())
    figures: list[tuple[str, str]] = []
    if not view.shared:
        # Today and this week are the owner's own running totals; a share link shows only its period.
        for preset in ("Today", "This week"):
            p = preset_period(preset, viewer_today(period.zone), period.zone)
            t = load(preset.lower(), queries.totals, user, p.start, p.end, devices=devices)
            figures.append((f"Active {preset.lower()}", formatting.duration(t["active_seconds"].iloc[0])))
    totals = load("the period's totals", queries.totals, user, period.start, period.end, devices=devices)
    active, idle = float(totals["active_seconds"].iloc[0]), float(totals["idle_seconds"].iloc[0])
    figures += [("Active in period", formatting.duration(active)), ("Idle in period", formatting.duration(idle))]
    for column, (label, value) in zip(st.columns(len(figures)), figures, strict=True):
        column.metric(label, value)
    if not view.shared:
        _goals(view)  # the owner's own; a share link shows only its view of its period
    if active + idle == 0:
        st.info("No activity recorded in this period.")
        return
    keys, clicks = int(totals["keystrokes"].iloc[0]), int(totals["clicks"].iloc[0])
    st.caption(
        f"{formatting.count(keys)} keys · "
        f"{formatting.count(clicks)} clicks · {int(totals['app_sessions'].iloc[0])} app sessions"
    )
    st.progress(
        active / (active + idle),
        text=f"Active vs idle: {formatting.duration(active)} active ({formatting.share(active, active + idle)}), "
        f"{formatting.duration(idle)} idle",
    )
    apps_column, sites_column, categories_column = st.columns(3)
    with apps_column:
        st.subheader("Top apps")
        apps = load("apps", queries.time_per_app, user, period.start, period.end, devices=devices)
        _top(apps, "app", "App", active, account_apps(view))
    with sites_column:
        st.subheader("Top sites")
        sites = load("sites", queries.time_per_site, user, period.start, period.end, devices=devices)
        _top(sites, "site", "Site", active)
    with categories_column:
        st.subheader("Top categories")
        categories = load("categories", queries.time_per_category, user, period.start, period.end, devices=devices)
        _top(categories, "category", "Category", active)


if __name__ == "__main__":
    show(current_view())
