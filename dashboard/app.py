"""The dashboard: the signed-in user's own time, per application, for a chosen period.

Access needs a signed dashboard token (`?token=` once; it is then kept in the session and removed
from the address bar). Without a valid token the page shows nothing but how to sign in.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import altair as alt
import grpc
import pandas as pd
import streamlit as st

from dashboard.period import day_range, viewer_zone
from gateway.account_client import who_am_i
from gateway.tokens import DASHBOARD_SCOPE, TokenError, read_public_key, verify_token
from infra.settings import load_settings
from warehouse.client import connect
from warehouse.queries import time_per_app


@st.cache_resource
def _settings():
    return load_settings()


@st.cache_resource
def _warehouse():
    return connect(_settings())


def _signed_in_user() -> str | None:
    token = st.query_params.get("token")
    if token:
        st.session_state["token"] = token
        del st.query_params["token"]  # keep the token out of the address bar and browser history
    settings = _settings()
    token = st.session_state.get("token")
    try:
        claims = verify_token(read_public_key(settings.keys_dir), token, DASHBOARD_SCOPE)
        # The signature says who issued it; only the gateway knows whether it was revoked since
        # (logout, password change, deleted account). Unreachable gateway: nobody is signed in.
        user = who_am_i(settings.gateway_public_address, (settings.pki_dir / "ca.crt").read_bytes(), token)
    except TokenError as exc:
        return _signed_out(str(exc))
    except grpc.RpcError as exc:
        return _signed_out(exc.details() or "the gateway could not confirm the sign-in")
    except OSError as exc:
        return _signed_out(f"cannot verify sign-ins: {exc}")
    if user.user_id != claims.user_id:
        return _signed_out("the token does not match its account")
    return claims.user_id


def _signed_out(problem: str) -> None:
    st.session_state.pop("token", None)
    st.session_state["sign_in_problem"] = problem
    return None


def _format_duration(seconds: float) -> str:
    minutes = int(round(seconds / 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def main() -> None:
    st.set_page_config(page_title="Productimon", page_icon="⏱", layout="wide")
    user = _signed_in_user()
    if user is None:
        st.title("Productimon")
        st.error("Sign-in required: open the dashboard with a valid access token.")
        st.caption(f"({st.session_state.get('sign_in_problem', 'no token')})")
        st.stop()

    st.title("Where your time went")
    st.caption(f"Signed in as **{user}**")
    zone = viewer_zone(getattr(st.context, "timezone", None))
    today = datetime.now(zone).date()
    chosen = st.date_input("Period", value=(today - timedelta(days=6), today), max_value=today)
    if not isinstance(chosen, tuple) or len(chosen) != 2:
        st.info("Choose the last day of the period.")
        st.stop()
    start, end = day_range(chosen[0], chosen[1], zone)

    with st.spinner("Loading…"):
        per_app = time_per_app(_warehouse(), user, start, end)

    if per_app.empty:
        st.info("No activity recorded in this period.")
        return
    total = float(per_app["seconds"].sum())
    st.metric("Active time", _format_duration(total))
    per_app = per_app.assign(hours=per_app["seconds"] / 3600, time=per_app["seconds"].map(_format_duration))
    chart = (
        alt.Chart(per_app)
        .mark_bar()
        .encode(
            x=alt.X("hours:Q", title="Hours"),
            y=alt.Y("app:N", sort="-x", title=None),
            tooltip=["app", "time"],
        )
    )
    st.subheader("Time per application")
    st.altair_chart(chart, use_container_width=True)
    st.dataframe(
        pd.DataFrame({"Application": per_app["app"], "Time": per_app["time"]}),
        hide_index=True,
        use_container_width=True,
    )


main()
