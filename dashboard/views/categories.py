"""Categories: the owner's rules (a regular expression on the app, title or site names a category), with a
live preview of what a rule matches in the period. Applied at query time, so an edit relabels all history."""

from __future__ import annotations

import altair as alt
import grpc
import pandas as pd
import streamlit as st

from dashboard import formatting
from dashboard.access import Gateway, one_line
from dashboard.context import View, current_view, load, require_owner, settings, warehouse
from schemas import api_client
from warehouse import categories, queries

FIELD_LABELS = {"app": "App", "title": "Window title", "site": "Site"}


def _preview(view: View, field: str, pattern: str) -> None:
    if not pattern:
        st.caption("Type a pattern to see what it matches in this period.")
        return
    try:
        matches = categories.preview_rule(warehouse(), view.user_id, field, pattern, view.period.start, view.period.end)
    except categories.InvalidRule as exc:
        st.error(one_line(exc))
        return
    if matches.empty:
        st.caption(f"Matches nothing in {view.period.label()}.")
        return
    what = FIELD_LABELS[field].lower() + ("s" if len(matches) != 1 else "")
    st.caption(f"Matches {len(matches)} {what}, {formatting.duration(matches['seconds'].sum())}:")
    st.table(
        pd.DataFrame({FIELD_LABELS[field]: matches["value"], "Time": matches["seconds"].map(formatting.duration)}),
        hide_index=True,
        width="stretch",
    )


def _add_rule(view: View) -> None:
    st.subheader("Add a rule")
    left, right = st.columns(2)
    with left:
        field = st.selectbox("Match on", list(FIELD_LABELS), format_func=FIELD_LABELS.get, key="new_rule_field")
        pattern = st.text_input(
            "Pattern (RE2 regular expression)", key="new_rule_pattern", placeholder="^(Code|Terminal)$"
        )
        category = st.text_input("Category", key="new_rule_category", placeholder="Work/Programming")
        if st.button("Add rule", type="primary", key="add_rule"):
            # Written by the gateway for the signed-in owner: the dashboard's warehouse login only reads
            # (warehouse/roles.py).
            gateway = Gateway.of(settings())
            try:
                api_client.add_category_rule(
                    gateway.address, gateway.ca_pem, view.owner.token, field, pattern, category
                )
            except grpc.RpcError as exc:
                st.session_state["rule_problem"] = one_line(exc)
            else:
                st.session_state["rule_notice"] = f"Added: {FIELD_LABELS[field].lower()} ~ {pattern} → {category}"
                for key in ("new_rule_pattern", "new_rule_category"):
                    del st.session_state[key]
            st.rerun()
    with right:
        st.markdown("**Live preview**")
        _preview(view, field, pattern)


def _edit_rules(view: View, rules: pd.DataFrame) -> None:
    st.subheader("Your rules")
    if rules.empty:
        st.caption("No rules yet: all time is Uncategorized.")
        return
    st.table(
        pd.DataFrame(
            {
                "Order": rules["position"],
                "Match on": rules["field"].map(FIELD_LABELS),
                "Pattern": rules["pattern"],
                "Category": rules["category"],
            }
        ),
        hide_index=True,
        width="stretch",
    )
    labels = {r.rule_id: f"{FIELD_LABELS[r.field]} ~ {r.pattern} → {r.category}" for r in rules.itertuples(index=False)}
    chosen = st.selectbox("Edit a rule", list(labels), format_func=labels.get, key="edit_rule_id")
    rule = rules[rules["rule_id"] == chosen].iloc[0]
    with st.form(f"edit_rule_{chosen}"):
        field = st.selectbox(
            "Match on", list(FIELD_LABELS), index=list(FIELD_LABELS).index(rule["field"]), format_func=FIELD_LABELS.get
        )
        pattern = st.text_input("Pattern", value=rule["pattern"])
        category = st.text_input("Category", value=rule["category"])
        position = st.number_input("Order", min_value=0, value=int(rule["position"]), step=1)
        save, delete = st.columns(2)
        saved = save.form_submit_button("Save changes")
        deleted = delete.form_submit_button("Delete rule")
    if saved or deleted:
        gateway, token = Gateway.of(settings()), view.owner.token
        try:
            if deleted:
                api_client.delete_category_rule(gateway.address, gateway.ca_pem, token, chosen)
                st.session_state["rule_notice"] = "Rule deleted."
            else:
                # Every field is sent: an emptied pattern or category is refused by name, not left unchanged.
                if not pattern or not category:
                    raise categories.InvalidRule("pattern and category must not be empty")
                api_client.update_category_rule(
                    gateway.address,
                    gateway.ca_pem,
                    token,
                    chosen,
                    field=field,
                    pattern=pattern,
                    category=category,
                    position=int(position),
                )
                st.session_state["rule_notice"] = "Rule saved."
        except (grpc.RpcError, categories.InvalidRule) as exc:
            st.session_state["rule_problem"] = one_line(exc)
        st.rerun()


def show(view: View) -> None:
    require_owner(view)
    st.title("Categories")
    st.caption(view.period.label())
    if notice := st.session_state.pop("rule_notice", None):
        st.success(notice)
    if problem := st.session_state.pop("rule_problem", None):
        st.error(problem)
    per_category = load(
        "categories",
        queries.time_per_category,
        view.user_id,
        view.period.start,
        view.period.end,
        devices=view.device_filter,
    )
    if per_category.empty:
        st.info("No activity recorded in this period.")
    else:
        unit = formatting.chart_unit(per_category["seconds"])
        data = per_category.assign(
            amount=per_category["seconds"] / unit.seconds, time=per_category["seconds"].map(formatting.duration)
        )
        st.altair_chart(
            alt.Chart(data, title="Time per category")
            .mark_bar()
            .encode(
                x=alt.X("amount:Q", title=unit.title),
                y=alt.Y("category:N", sort="-x", title=None),
                tooltip=["category:N", alt.Tooltip("time:N", title="Time")],
            ),
            width="stretch",
        )
    _add_rule(view)
    _edit_rules(view, load("rules", categories.list_rules, view.user_id))


if __name__ == "__main__":
    show(current_view())
