"""What every page works with: the settings, the warehouse client and the `View` (whose data, which period,
which devices), set by the entry script before the page runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import streamlit as st
from clickhouse_connect.driver.client import Client

from dashboard.access import SignedIn, one_line
from dashboard.period import Period
from plumbing.settings import Settings, load_settings
from warehouse import queries
from warehouse.client import connect

T = TypeVar("T")
VIEW_KEY = "productimon_view"


@st.cache_resource
def settings() -> Settings:
    return load_settings()


@st.cache_resource
def warehouse() -> Client:
    return connect(settings())


@dataclass(frozen=True)
class View:
    """One person's data as one page shows it. `owner` is the signed-in account, None when the page is shown
    through a share link (read-only: no account actions, nothing beyond the view and period shared)."""

    user_id: str
    period: Period
    devices: tuple[str, ...] = ()
    owner: SignedIn | None = None

    @property
    def shared(self) -> bool:
        return self.owner is None

    @property
    def device_filter(self) -> list[str] | None:
        return list(self.devices) or None


def current_view() -> View:
    view = st.session_state.get(VIEW_KEY)
    if not isinstance(view, View):
        st.error("Sign-in required.")
        st.stop()
    return view


def load(what: str, query: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run a query-API function for the page with a loading message; a failure is one line and stops the page."""
    with st.spinner(f"Loading {what}…"):
        try:
            return query(warehouse(), *args, **kwargs)
        except Exception as exc:  # the warehouse being away is shown, not a traceback
            st.error(f"Could not load {what}: {one_line(exc)}")
            st.stop()


def account_apps(view: View) -> list[str]:
    """The account's apps, first used first (`queries.app_order`): what every chart takes its app colours from
    (`dashboard.charts`), so an app looks the same on every page, day and device filter."""
    return list(load("the apps' colours", queries.app_order, view.user_id)["app"])


def require_owner(view: View) -> SignedIn:
    """The signed-in owner; a page that acts on the account shows nothing through a share link."""
    if view.owner is None:
        st.error("This page is not part of what was shared.")
        st.stop()
    return view.owner
