"""Sharing: read-only links to one view of one period, made, listed and revoked by the owner (opt-in: there
are none until the owner makes one; each expires)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from dashboard import share
from dashboard.access import Gateway, one_line
from dashboard.context import View, current_view, require_owner, settings
from dashboard.period import period_from_utc
from schemas import api_client


def _dashboard_url() -> str:
    url = getattr(st.context, "url", None)
    if url:
        return url
    s = settings()
    return f"https://{s.dashboard_host}:{s.dashboard_port}/"


def show(view: View) -> None:
    owner = require_owner(view)
    gateway = Gateway.of(settings())
    st.title("Sharing")
    st.caption(
        "A share link shows one page for one period, read-only, to whoever has the link, until it expires or you "
        "revoke it. Nothing else of your account is reachable through it."
    )
    if problem := st.session_state.pop("share_problem", None):
        st.error(problem)
    st.subheader("New link")
    left, right = st.columns(2)
    chosen = left.selectbox(
        "Page", list(share.SHAREABLE_VIEWS), format_func=share.SHAREABLE_VIEWS.get, key="share_view"
    )
    lifetime = right.selectbox("Expires after", list(share.LIFETIMES), index=1, key="share_lifetime")
    st.caption(f"Period: {view.period.label()} ({view.period.tz}), as chosen in the sidebar; all devices.")
    if st.button("Make a share link", type="primary", key="share_create"):
        request = share.link_request(chosen, view.period, lifetime)
        try:
            made = api_client.create_share_link(gateway.address, gateway.ca_pem, owner.token, **request)
        except Exception as exc:
            st.error(f"Could not make the link: {one_line(exc)}")
        else:
            st.success("Link made. Copy it now: it is shown only once.")
            st.code(share.share_url(_dashboard_url(), made.token), language=None)

    st.subheader("Your links")
    try:
        links = api_client.list_share_links(gateway.address, gateway.ca_pem, owner.token)
    except Exception as exc:
        st.error(f"Could not load the links: {one_line(exc)}")
        return
    if not links:
        st.caption("No links: nothing of yours is shared.")
        return
    zone = view.period.zone

    def when(seconds: int) -> str:
        return datetime.fromtimestamp(seconds, UTC).astimezone(zone).strftime("%d %b %Y %H:%M")

    st.table(
        pd.DataFrame(
            {
                "Page": [share.SHAREABLE_VIEWS.get(link.view, link.view) for link in links],
                "Period": [period_from_utc(link.period_start, link.period_end, link.tz).label() for link in links],
                "Made": [when(link.created_at) for link in links],
                "Expires": [when(link.expires_at) for link in links],
                "State": ["revoked" if link.revoked else "active" for link in links],
            }
        ),
        hide_index=True,
        width="stretch",
    )
    active = {link.link_id: link for link in links if not link.revoked}
    if active:
        chosen_link = st.selectbox(
            "Revoke a link",
            list(active),
            format_func=lambda i: (
                f"{share.SHAREABLE_VIEWS.get(active[i].view, active[i].view)}, "
                f"{period_from_utc(active[i].period_start, active[i].period_end, active[i].tz).label()} "
                f"(made {when(active[i].created_at)}, link {i[:8]})"
            ),
            key="share_revoke_id",
        )
        if st.button("Revoke", key="share_revoke"):
            try:
                api_client.revoke_share_link(gateway.address, gateway.ca_pem, owner.token, chosen_link)
            except Exception as exc:
                st.session_state["share_problem"] = f"Could not revoke: {one_line(exc)}"
            st.rerun()


if __name__ == "__main__":
    show(current_view())
