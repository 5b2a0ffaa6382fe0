"""Goals: the owner's limits ("at most") and aims ("at least") for an app, a site, a category or all activity,
per day or per week, with each one's progress in its current period, its history of finished periods and its
streak. Measured in the viewer's time zone by `warehouse/goals.py`; stored and deleted through the gateway (the
dashboard's warehouse login only reads goals). A limiting goal's desktop and e-mail notices (at 85 % and 100 %) are
switched on here, the weekly summary e-mail too, and every notice paused at once; all off by default
(warehouse/notice_rules.py). E-mail is offered only where the operator has set up SMTP (Settings.email_notices)."""

from __future__ import annotations

import grpc
import pandas as pd
import streamlit as st

from dashboard import formatting
from dashboard.access import Gateway, one_line
from dashboard.context import View, current_view, load, require_owner, settings
from dashboard.period import preset_period, viewer_today
from schemas import api_client
from warehouse import categories, goals, notices, queries
from warehouse.goal_rules import WEEKDAYS, Goal
from warehouse.queries import UNCATEGORIZED

KIND_LABELS = {"app": "App", "site": "Site", "category": "Category", "all": "All activity"}
DIRECTION_LABELS = {"at_most": "At most", "at_least": "At least"}
PERIOD_LABELS = {"day": "Per day", "week": "Per week"}
_FORM_KEYS = ("new_goal_minutes", "new_goal_weekdays", "new_goal_devices") + tuple(
    f"new_goal_target_{kind}" for kind in KIND_LABELS
)


def plain(text: str) -> str:
    """Text (an app's, site's or category's name) shown as it is in Markdown, not read as formatting."""
    return "".join("\\" + c if c in "\\`*_[]<>|~$#" else c for c in text)


def progress_text(report: goals.GoalReport) -> str:
    """The current period's progress in one line, e.g. "42 min of 1 h 00 min today", "… this week: over by
    12 min" (a limit exceeded), or "no goal today" (a daily goal on a weekday it leaves out)."""
    goal, now = report.goal, report.now
    when = "today" if goal.period == "day" else "this week"
    if report.current is None or now is None:
        return f"no goal {when}"
    text = f"{formatting.duration(now.seconds)} of {formatting.duration(goal.seconds)} {when}"
    if goal.limiting and not now.met:
        text += f": over by {formatting.duration(now.seconds - goal.seconds)}"
    elif not goal.limiting and now.met:
        text += ": reached"
    return text


def report_of(view: View, goal: Goal, history: int | None = None) -> goals.GoalReport:
    """The goal's report in the viewer's time zone (the one the pages' periods are in)."""
    return load(f"the goal {goal.describe()!r}", goals.goal_report, view.user_id, goal, view.period.tz, history=history)


def _streak_text(report: goals.GoalReport) -> str:
    unit = "day" if report.goal.period == "day" else "week"
    if not report.history:
        return f"No finished {unit} yet."
    if report.streak == 0:
        return f"Missed the last {unit}: no streak."
    return f"Met {report.streak} {unit}{'s' if report.streak != 1 else ''} in a row."


def _target_input(view: View, kind: str) -> str:
    """The goal's target: the account's recent apps or sites (another can be typed), or its categories."""
    key = f"new_goal_target_{kind}"
    if kind == "all":
        return ""
    if kind == "category":
        rules = load("the categories", categories.list_rules, view.user_id)
        paths: set[str] = {UNCATEGORIZED}
        for category in rules["category"]:
            parts = str(category).split("/")
            paths.update("/".join(parts[: n + 1]) for n in range(len(parts)))
        return st.selectbox("Category (with its sub-categories)", sorted(paths), key=key) or ""
    zone = view.period.zone
    recent = preset_period("Last 30 days", viewer_today(zone), zone)
    if kind == "app":
        seen = load("the recent apps", queries.time_per_app, view.user_id, recent.start, recent.end)["app"]
    else:
        seen = load("the recent sites", queries.time_per_site, view.user_id, recent.start, recent.end)["site"]
    label = "App" if kind == "app" else "Site (with its subdomains)"
    chosen = st.selectbox(
        f"{label}: one seen in the last 30 days, or type another",
        list(seen),
        index=None,
        accept_new_options=True,
        placeholder="Choose or type a name",
        key=key,
    )
    return chosen or ""


def _devices(view: View) -> dict[str, str]:
    """The account's devices (id -> name) for the goal's device choice; none offered when the gateway is away."""
    gateway = Gateway.of(settings())
    try:
        listed = api_client.list_devices(gateway.address, gateway.ca_pem, require_owner(view).token)
    except grpc.RpcError as exc:
        st.caption(f"Devices unavailable: {one_line(exc)}")
        return {}
    return formatting.device_labels({d.device_id: d.name + (" (revoked)" if d.revoked else "") for d in listed})


def _add_goal(view: View) -> None:
    st.subheader("Add a goal")
    left, right = st.columns(2)
    with left:
        kind = st.selectbox("On", list(KIND_LABELS), format_func=KIND_LABELS.get, key="new_goal_kind")
        target = _target_input(view, kind)
        direction = st.selectbox(
            "Direction", list(DIRECTION_LABELS), format_func=DIRECTION_LABELS.get, key="new_goal_direction"
        )
        period = st.selectbox("Period", list(PERIOD_LABELS), format_func=PERIOD_LABELS.get, key="new_goal_period")
    with right:
        # 0 can be typed: the gateway refuses it by name, as it refuses any goal it cannot keep.
        minutes = st.number_input("Minutes", min_value=0, value=60, step=5, key="new_goal_minutes")
        weekdays = st.multiselect(
            "Only on these weekdays",
            list(range(7)),
            format_func=lambda d: WEEKDAYS[d],
            key="new_goal_weekdays",
            placeholder="Every day",
        )
        devices = _devices(view)
        chosen_devices = st.multiselect(
            "Only on these devices",
            list(devices),
            format_func=lambda d: devices.get(d, d),
            key="new_goal_devices",
            placeholder="All devices",
        )
    if st.button("Add goal", type="primary", key="add_goal"):
        gateway = Gateway.of(settings())
        try:
            api_client.add_goal(
                gateway.address,
                gateway.ca_pem,
                require_owner(view).token,
                kind=kind,
                target=target,
                direction=direction,
                period=period,
                minutes=int(minutes),
                weekdays=weekdays,
                devices=chosen_devices,
            )
        except grpc.RpcError as exc:
            st.session_state["goal_problem"] = one_line(exc)
        else:
            added = Goal("", kind, target.strip(), direction, period, int(minutes), tuple(sorted(weekdays)))
            st.session_state["goal_notice"] = f"Added: {added.describe()}"
            for key in _FORM_KEYS:
                st.session_state.pop(key, None)
        st.rerun()


def _history(report: goals.GoalReport) -> None:
    if not report.history:
        return
    st.table(
        pd.DataFrame(
            {
                "Period": [
                    f"{p.first_day:%a %d %b}" if report.goal.period == "day" else f"week of {p.first_day:%d %b}"
                    for p, _ in report.history
                ],
                "Time": [formatting.duration(s.seconds) for _, s in report.history],
                "Result": ["met" if s.met else "missed" for _, s in report.history],
            }
        ).iloc[::-1],  # the latest first
        hide_index=True,
        width="stretch",
    )


def _change_notices(view: View, key: str, done: str, *calls: tuple) -> None:
    """Changes of the notice settings through the gateway, each a (function, arguments...) tuple; refused, the
    switch goes back to what is stored and the refusal is shown in one line."""
    gateway = Gateway.of(settings())
    try:
        for call, *args in calls:
            call(gateway.address, gateway.ca_pem, require_owner(view).token, *args)
    except grpc.RpcError as exc:
        st.session_state["goal_problem"] = one_line(exc)
        st.session_state.pop(key, None)
    else:
        st.session_state["goal_notice"] = done
    st.rerun()


_CHANNEL_LABELS = {"desktop": "Desktop notice at 85 % and 100 %", "email": "E-mail at 85 % and 100 %"}


def _notice_switch(view: View, goal: Goal, switches: notices.NoticeSettings, channel: str) -> None:
    on = channel in switches.switches.get(goal.goal_id, frozenset())
    key = f"goal_{channel}_{goal.goal_id}"
    wanted = st.toggle(_CHANNEL_LABELS[channel], value=on, key=key, disabled=switches.paused)
    if wanted != on:
        switch = (api_client.set_goal_notice, goal.goal_id, channel, wanted)
        # Switched on, the goal's days for its notices fall in the zone this page measures in.
        zone = (api_client.set_notice_pause, switches.paused, view.period.tz)
        name = "Desktop" if channel == "desktop" else "E-mail"
        done = f"{name} notices {'on' if wanted else 'off'}: {goal.describe()}"
        _change_notices(view, key, done, *((zone, switch) if wanted else (switch,)))


def _channels() -> tuple[str, ...]:
    return ("desktop", "email") if settings().email_notices else ("desktop",)


def _goal(view: View, goal: Goal, switches: notices.NoticeSettings) -> None:
    report = report_of(view, goal)
    with st.container(border=True):
        described = goal.describe()
        st.markdown(f"**{plain(described[0].upper() + described[1:])}**")
        if report.now is None:
            st.caption(progress_text(report))
        else:
            st.progress(min(report.now.share, 1.0), text=progress_text(report))
        st.caption(_streak_text(report))
        with st.expander("History"):
            _history(report)
        if goal.limiting:
            for channel in _channels():
                _notice_switch(view, goal, switches, channel)
        if st.button("Delete", key=f"goal_delete_{goal.goal_id}"):
            gateway = Gateway.of(settings())
            try:
                api_client.delete_goal(gateway.address, gateway.ca_pem, require_owner(view).token, goal.goal_id)
            except grpc.RpcError as exc:
                st.session_state["goal_problem"] = one_line(exc)
            else:
                st.session_state["goal_notice"] = f"Deleted: {goal.describe()}"
            st.rerun()


def show(view: View) -> None:
    require_owner(view)
    st.title("Goals")
    st.caption(f"Days and weeks (from Monday) in {view.period.tz}.")
    if notice := st.session_state.pop("goal_notice", None):
        st.success(notice)
    if problem := st.session_state.pop("goal_problem", None):
        st.error(problem)
    listed = load("the goals", goals.list_goals, view.user_id)
    switches = load("the notice settings", notices.notice_settings, view.user_id)
    paused = st.toggle("Pause all notices", value=switches.paused, key="notices_paused")
    if paused != switches.paused:
        done = "All notices paused" if paused else "Notices resumed"
        _change_notices(view, "notices_paused", done, (api_client.set_notice_pause, paused, view.period.tz))
    if "email" in _channels():
        weekly = st.toggle(
            "Weekly summary by e-mail (each Monday: last week's time and goals)",
            value=switches.weekly,
            key="weekly_summary",
            disabled=switches.paused,
        )
        if weekly != switches.weekly:
            done = "Weekly summary on" if weekly else "Weekly summary off"
            _change_notices(view, "weekly_summary", done, (api_client.set_weekly_summary, weekly, view.period.tz))
    st.subheader("Your goals")
    if not listed:
        st.caption("No goals yet.")
    for goal in listed:
        _goal(view, goal, switches)
    _add_goal(view)


if __name__ == "__main__":
    show(current_view())
