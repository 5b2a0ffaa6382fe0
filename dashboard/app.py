"""The dashboard's entry script: who is looking, the filters every page shares, and the pages.

Served over HTTPS with the stack's certificate. People sign in with email and password through the
gateway's login; the session keeps the signed token and every page view confirms it with the gateway.
`?share=<token>` opens a read-only share link instead: exactly one view of one period, nothing else.
`?token=<token>` (the operator's `productimon-token` link) signs in with a token once and is then removed
from the address bar.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import streamlit as st

from dashboard import access, formatting
from dashboard.context import VIEW_KEY, View, settings
from dashboard.period import DEFAULT_PRESET, PRESETS, preset_period, viewer_today, viewer_zone
from dashboard.sessions import COOKIE, SessionBook
from dashboard.share import QUERY_PARAMETER, SHAREABLE_VIEWS
from dashboard.views import VIEWS
from schemas import api_client

HERE = Path(__file__).resolve().parent
TOKEN_KEY = "token"
PROBLEM_KEY = "sign_in_problem"
NOTICE_KEY = "sign_in_notice"
SIGN_UP_PROBLEM_KEY = "sign_up_problem"
WELCOME_KEY = "welcome"


def _page(name: str) -> st.Page:
    title, icon = VIEWS[name]
    return st.Page(
        str(HERE / "views" / f"{name}.py"), title=title, icon=icon, url_path=name, default=name == "overview"
    )


def signed_in() -> access.SignedIn | None:
    """The account this session is signed in as, confirmed by the gateway now; None (and the reason kept for
    the sign-in form) otherwise."""
    from_link = st.query_params.get("token")
    if from_link is not None:
        st.session_state[TOKEN_KEY] = from_link
        del st.query_params["token"]  # keep the token out of the address bar and browser history
    token = st.session_state.get(TOKEN_KEY)
    kept = False
    if token is None:
        # A reload, a new tab, a bookmark or a restarted dashboard: this browser's sign-in, if it has one.
        token, kept = _sessions().recall(_browser_id()), True
        if token is None:
            return None
    try:
        account = access.confirm(settings(), token)
    except access.AccessDenied as exc:
        st.session_state.pop(TOKEN_KEY, None)
        _sessions().forget(_browser_id())
        st.session_state[PROBLEM_KEY] = f"your sign-in has ended: {exc}" if kept else str(exc)
        return None
    if from_link is not None:
        _keep(account)
    st.session_state[TOKEN_KEY] = token
    return account


@st.cache_resource
def _sessions() -> SessionBook:
    return SessionBook(settings().data_dir / "dashboard" / "sessions.json")


def _browser_id() -> str | None:
    """This browser's opaque cookie (dashboard/serve.py); None where there is none (AppTest, or a first load)."""
    try:
        value = st.context.cookies.get(COOKIE)
    except Exception:  # no request behind this run
        return None
    return value if isinstance(value, str) else None


def _keep(account: access.SignedIn) -> None:
    """Keep the sign-in for this browser's next pages, until sign-out or the token's expiry."""
    st.session_state[TOKEN_KEY] = account.token
    _sessions().remember(_browser_id(), account.token, account.expires_at)


def sign_in_form() -> None:
    st.title("Productimon")
    st.subheader("Sign in")
    problem = st.session_state.pop(PROBLEM_KEY, None)
    if problem:
        st.error(f"Sign-in required: {problem}")
    if notice := st.session_state.pop(NOTICE_KEY, None):
        st.info(notice)
    with st.form("sign_in"):
        email = st.text_input("Email", key="sign_in_email")
        password = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        with st.spinner("Signing in…"):
            try:
                account = access.sign_in(settings(), email, password, _browser_address())
            except access.AccessDenied as exc:
                st.session_state[PROBLEM_KEY] = str(exc)
            else:
                _keep(account)
        # The password is not kept in the session once it has been used, whatever the outcome.
        st.session_state.pop("sign_in_password", None)
        st.rerun()
    sign_up_form()


def _browser_address() -> str | None:
    # The browser's address, so the gateway throttles failed sign-ins per person (None under AppTest).
    address = getattr(st.context, "ip_address", None)
    return address if isinstance(address, str) else None


def sign_up_form() -> None:
    """Create an account, where the instance's sign-up mode allows it (an invite code where it asks for one)."""
    mode = access.sign_up_mode(settings())
    if mode == "closed":
        st.caption("No account yet? Sign-up is closed on this instance: ask its operator for an account.")
        return
    if mode is None:
        st.caption("No account yet? Sign-up cannot be reached right now; try again shortly.")
        return
    problem = st.session_state.pop(SIGN_UP_PROBLEM_KEY, None)
    with st.expander("No account yet? Create one", expanded=problem is not None):
        if problem:
            st.error(f"No account was created: {problem}")
        with st.form("sign_up"):
            email = st.text_input("Email", key="sign_up_email")
            password = st.text_input("Password (at least 10 characters)", type="password", key="sign_up_password")
            again = st.text_input("The same password again", type="password", key="sign_up_again")
            invite = st.text_input("Invite code (from the operator)", key="sign_up_invite") if mode == "invite" else ""
            submitted = st.form_submit_button("Create account", type="primary")
    if submitted:
        with st.spinner("Creating your account…"):
            try:
                account = access.sign_up(settings(), email, password, again, invite, _browser_address())
            except access.AccessDenied as exc:
                st.session_state[SIGN_UP_PROBLEM_KEY] = str(exc)
            else:
                _keep(account)
                st.session_state[WELCOME_KEY] = account.email
        for key in ("sign_up_password", "sign_up_again"):
            st.session_state.pop(key, None)
        st.rerun()


def welcome(account: access.SignedIn) -> None:
    """Once, right after sign-up: what to do next to see one's own data."""
    if st.session_state.pop(WELCOME_KEY, None) is None:
        return
    s = settings()
    st.success(
        f"Welcome, {account.email}: your account is ready. Next, enroll this computer, and your activity shows "
        "here within a minute of it running:"
    )
    st.code(
        f"productimon-collector enroll --server {s.gateway_address} --public-server {s.gateway_public_address} "
        f"--ca {s.pki_dir / 'ca.crt'} --email {account.email}\nproductimon-collector run",
        language="sh",
    )


def sign_out(account: access.SignedIn) -> None:
    _sessions().forget(_browser_id())
    try:
        access.sign_out(settings(), account.token)
    except Exception as exc:  # signed out here either way; say that the token may outlive the session
        st.session_state[PROBLEM_KEY] = (
            f"signed out here, but the gateway did not revoke the token: {access.one_line(exc)}"
        )
    for key in list(st.session_state.keys()):
        if key != PROBLEM_KEY:
            del st.session_state[key]
    st.rerun()


def filters(account: access.SignedIn) -> View:
    """The period and device filters in the sidebar; widget keys keep them while navigating."""
    zone = viewer_zone(getattr(st.context, "timezone", None))
    today = viewer_today(zone)
    with st.sidebar:
        st.caption(f"Signed in as **{account.email}**")
        preset = st.selectbox("Period", PRESETS, index=PRESETS.index(DEFAULT_PRESET), key="period_preset")
        chosen = None
        if preset == "Custom":
            chosen = st.date_input("Days", value=(today, today), max_value=today, key="period_days")
        try:
            period = preset_period(preset, today, zone, chosen if isinstance(chosen, tuple) else None)
        except ValueError as exc:
            st.info(f"{str(exc)[0].upper()}{str(exc)[1:]}.")
            period = preset_period("Today", today, zone)
        st.caption(f"{period.label()} ({period.tz})")
        devices = _devices(account)
        chosen_devices = st.multiselect(
            "Devices",
            options=list(devices),
            format_func=lambda d: devices.get(d, d),
            key="device_filter",
            placeholder="All devices",
        )
        if st.button("Sign out", key="sign_out"):
            sign_out(account)
    return View(account.user_id, period, tuple(chosen_devices), owner=account)


def _devices(account: access.SignedIn) -> dict[str, str]:
    """The account's devices (id -> name, revoked ones marked), from the gateway once per session."""
    cache_key = f"devices_of_{account.user_id}"
    if cache_key not in st.session_state:
        gateway = access.Gateway.of(settings())
        try:
            listed = api_client.list_devices(gateway.address, gateway.ca_pem, account.token)
        except Exception as exc:  # the filter is optional; the pages still work for all devices
            st.sidebar.caption(f"Devices unavailable: {access.one_line(exc)}")
            return {}
        names = {d.device_id: d.name + (" (revoked)" if d.revoked else "") for d in listed}
        st.session_state[cache_key] = formatting.device_labels(names)
    return st.session_state[cache_key]


def shared(token: str) -> None:
    """A read-only share link: the one view it names, for its period, of its owner's data; nothing else."""
    try:
        link = access.open_share(settings(), token)
    except access.AccessDenied as exc:
        st.session_state.pop(VIEW_KEY, None)
        st.title("Productimon")
        st.error(f"This link shows nothing: {exc}")
        st.stop()
    st.session_state[VIEW_KEY] = View(link.user_id, link.period)
    page = st.Page(
        str(HERE / "views" / f"{link.view}.py"), title=SHAREABLE_VIEWS[link.view], url_path=link.view, default=True
    )
    st.caption(
        f"Shared read-only: {SHAREABLE_VIEWS[link.view]}, {link.period.label()} ({link.period.tz}); "
        f"the link expires {datetime.fromtimestamp(link.expires_at, link.period.zone):%d %b %Y %H:%M}."
    )
    st.navigation([page], position="hidden").run()


def main() -> None:
    st.set_page_config(page_title="Productimon", page_icon="⏱", layout="wide")
    share_token = st.query_params.get(QUERY_PARAMETER)
    if share_token is not None:
        # A share link never shows the session's own sign-in: only what the link names.
        shared(share_token)
        return
    account = signed_in()
    if account is None:
        st.session_state.pop(VIEW_KEY, None)
        sign_in_form()
        st.stop()
    view = filters(account)
    welcome(account)
    names = [name for name in VIEWS if name != "insights" or settings().dashboard_aggregates]
    navigation = st.navigation([_page(name) for name in names])
    st.session_state[VIEW_KEY] = view
    navigation.run()


main()
