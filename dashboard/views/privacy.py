"""Privacy: what is recorded of window titles, and the account's exclusion rules (schemas/privacy_rules.py). Set
here once; every device of the account fetches them within a minute and applies them before anything touches its
disk, and the workers apply them again. Written by the gateway with the owner's token."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import formatting
from dashboard.access import Gateway, one_line
from dashboard.context import View, current_view, require_owner, settings
from schemas import api_client

MODES = {
    "scrubbed": "Scrubbed (recommended): the context without the content",
    "off": "Off: no titles at all, only apps and sites",
    "full": "Full: titles exactly as the windows show them",
}
MODE_HELP = (
    "Scrubbed keeps what a title says about the context and drops its content: a browser keeps the site's own "
    "name, never search terms or page text; a terminal the program's name, never its arguments; an editor or "
    "viewer the file's name, never its folders; mail and chat the folder or channel kind, never addresses, "
    "subjects or names. E-mail addresses, paths, links and anything that looks like a password, token or long "
    "number are removed everywhere."
)
FULL_WARNING = (
    "Full titles keep everything a window shows in its title bar: the e-mail addresses in your inbox, what you "
    "searched for, private repository and document names with their folders, and commands with their "
    "arguments, passwords typed on a command line included. Only choose it if that is what you want recorded."
)
TARGETS = {"app": "App", "site": "Site (and its subdomains)", "title": "Title containing"}
ACTIONS = {"hide_title": "Hide the title", "drop_details": "Record only that time was spent"}


def _mode(gateway: Gateway, token: str, current: str) -> None:
    st.subheader("Window titles")
    st.caption(MODE_HELP)
    keys = list(MODES)
    chosen = st.radio("Titles", keys, index=keys.index(current), format_func=MODES.get, key="title_mode")
    if chosen == "full":
        st.warning(FULL_WARNING)
    if chosen != current and st.button("Save", type="primary", key="title_mode_save"):
        try:
            api_client.set_title_mode(gateway.address, gateway.ca_pem, token, chosen)
        except Exception as exc:
            st.session_state["privacy_problem"] = f"Not saved: {one_line(exc)}"
        else:
            st.session_state["privacy_notice"] = (
                f"Titles: {MODES[chosen].split(':')[0].lower()}. Devices follow within a minute."
            )
        st.rerun()


def _add_rule(gateway: Gateway, token: str) -> None:
    st.subheader("Add a rule")
    st.caption(
        "Patterns ignore case; * stands for any text and ? for one character. A rule applies to new activity; "
        "preview and apply it to past data below."
    )
    left, middle, right = st.columns(3)
    target = left.selectbox("Exclude", list(TARGETS), format_func=TARGETS.get, key="privacy_rule_on")
    placeholder = {"app": "KeePassXC", "site": "mybank.com", "title": "salary"}[target]
    pattern = middle.text_input("Pattern", key="privacy_rule_pattern", placeholder=placeholder)
    action = right.selectbox("Then", list(ACTIONS), format_func=ACTIONS.get, key="privacy_rule_action")
    if st.button("Add rule", type="primary", key="privacy_rule_add"):
        try:
            api_client.add_privacy_rule(gateway.address, gateway.ca_pem, token, target, pattern, action)
        except Exception as exc:
            # What was typed stays in the form, so it can be corrected.
            st.session_state["privacy_problem"] = one_line(exc)
        else:
            st.session_state["privacy_notice"] = (
                f"Added: {TARGETS[target].lower()} {pattern} → {ACTIONS[action].lower()}"
            )
            del st.session_state["privacy_rule_pattern"]
        st.rerun()


def _rules(gateway: Gateway, token: str, rules) -> None:
    st.subheader("Your rules")
    if not rules:
        st.caption("No rules: titles are kept as chosen above.")
        return
    st.table(
        pd.DataFrame(
            {
                "Exclude": [TARGETS.get(r.on, r.on) for r in rules],
                "Pattern": [r.pattern for r in rules],
                "Then": [ACTIONS.get(r.action, r.action) for r in rules],
            }
        ),
        hide_index=True,
        width="stretch",
    )
    labels = {r.rule_id: f"{TARGETS.get(r.on, r.on)} {r.pattern} → {ACTIONS.get(r.action, r.action)}" for r in rules}
    chosen = st.selectbox("Remove a rule", list(labels), format_func=labels.get, key="privacy_rule_chosen")
    remove, preview = st.columns(2)
    if remove.button("Remove rule", key="privacy_rule_remove"):
        try:
            api_client.delete_privacy_rule(gateway.address, gateway.ca_pem, token, chosen)
        except Exception as exc:
            st.session_state["privacy_problem"] = f"Not removed: {one_line(exc)}"
        else:
            st.session_state["privacy_notice"] = "Rule removed."
        st.rerun()
    if preview.button("Preview past data", key="privacy_rule_preview"):
        try:
            effect = api_client.preview_privacy_rule(gateway.address, gateway.ca_pem, token, chosen)
        except Exception as exc:
            st.session_state["privacy_problem"] = f"No preview: {one_line(exc)}"
        else:
            st.session_state["privacy_preview"] = (chosen, effect.intervals, effect.active_seconds, effect.devices)
        st.rerun()
    _apply_to_history(gateway, token, chosen, labels[chosen])


def _apply_to_history(gateway: Gateway, token: str, chosen: str, label: str) -> None:
    """The preview of the chosen rule on past data, and applying it once confirmed (stream_jobs/history.py)."""
    shown = st.session_state.get("privacy_preview")
    if not shown or shown[0] != chosen:
        return
    _, intervals, active_seconds, devices = shown
    if not intervals:
        st.info(f"{label}: nothing recorded so far matches it; it applies to what is recorded from now on.")
        return
    st.warning(
        f"Applying {label} to past data rewrites {formatting.count(intervals)} recorded intervals "
        f"({formatting.duration(active_seconds)} of activity) on {devices} device{'s' if devices != 1 else ''}. "
        "The time stays counted; what the rule removes is gone for good."
    )
    confirmed = st.checkbox("I understand this cannot be undone", key="privacy_apply_confirmed")
    if st.button("Apply to past data", type="primary", disabled=not confirmed, key="privacy_rule_apply"):
        try:
            with st.spinner("Applying… (it first waits until every worker has the rule, up to half a minute)"):
                effect = api_client.apply_privacy_rule(gateway.address, gateway.ca_pem, token, chosen)
        except Exception as exc:
            st.session_state["privacy_problem"] = f"Not applied: {one_line(exc)}"
        else:
            st.session_state["privacy_notice"] = (
                f"Applied to past data: {formatting.count(effect.intervals)} intervals rewritten "
                f"in {effect.seconds:.1f} s."
            )
            del st.session_state["privacy_preview"]
        del st.session_state["privacy_apply_confirmed"]
        st.rerun()


def show(view: View) -> None:
    owner = require_owner(view)
    gateway = Gateway.of(settings())
    st.title("Privacy")
    if notice := st.session_state.pop("privacy_notice", None):
        st.success(notice)
    if problem := st.session_state.pop("privacy_problem", None):
        st.error(problem)
    try:
        choice = api_client.get_privacy(gateway.address, gateway.ca_pem, owner.token)
    except Exception as exc:
        st.error(f"Could not load the privacy settings: {one_line(exc)}")
        return
    _mode(gateway, owner.token, choice.title_mode)
    _add_rule(gateway, owner.token)
    _rules(gateway, owner.token, list(choice.rules))


if __name__ == "__main__":
    show(current_view())
