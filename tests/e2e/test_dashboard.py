"""The dashboard page, run by Streamlit's AppTest against the real warehouse the pipeline filled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from collector.transport import IngestClient
from gateway.account_client import log_in, who_am_i
from gateway.proto import accounts_pb2, accounts_pb2_grpc
from gateway.tokens import DASHBOARD_SCOPE, ensure_signing_key, issue_token
from infra.devices import enroll_device, new_account
from schemas.codec import encode_interval
from tests.conftest import eventually
from tests.e2e.test_pipeline import interval, seconds_per_app

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
pytestmark = pytest.mark.e2e


@pytest.fixture
def dashboard_env(stack, monkeypatch):
    for name, value in stack.env.items():
        if name.startswith("PRODUCTIMON_"):
            monkeypatch.setenv(name, value)
    st.cache_resource.clear()
    yield ensure_signing_key(stack.settings.keys_dir)[0]
    st.cache_resource.clear()


def run_page(token: str | None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if token is not None:
        at.query_params["token"] = token
    return at.run()


def signed_in(stack) -> tuple[str, str, str]:
    """A new account and a token from a real login: (user id, password, token)."""
    user_id, email, password = new_account(stack.settings)
    token = log_in(
        stack.settings.gateway_public_address, (stack.settings.pki_dir / "ca.crt").read_bytes(), email, password
    )
    return user_id, email, token.token


@pytest.fixture
def user_with_activity(stack, warehouse_client):
    user_id, email, password = new_account(stack.settings)
    identity, creds = enroll_device(stack.settings, email, password)
    batch = [interval(0, 0, 3600, "Code"), interval(1, 3600, 1800, "Firefox", url="https://example.com/?q=x")]
    with IngestClient(stack.settings.gateway_address, creds) as client:
        assert client.send_batch([encode_interval(i) for i in batch]).accepted == 2
    eventually(lambda: seconds_per_app(warehouse_client, identity.user_id) == {"Code": 3600.0, "Firefox": 1800.0})
    ca = (stack.settings.pki_dir / "ca.crt").read_bytes()
    return SimpleNamespace(
        user_id=identity.user_id, token=log_in(stack.settings.gateway_public_address, ca, email, password).token
    )


def test_signed_in_user_sees_their_time_per_app(dashboard_env, user_with_activity):
    at = run_page(user_with_activity.token)
    assert not at.exception
    assert not at.error
    assert at.metric[0].value == "1 h 30 min"
    table = at.dataframe[0].value
    assert list(table["Application"]) == ["Code", "Firefox"]
    assert list(table["Time"]) == ["1 h 00 min", "30 min"]
    assert user_with_activity.user_id in at.caption[0].value


@pytest.mark.parametrize("token", [None, "", "not-a-jwt"])
def test_missing_or_malformed_token_sees_nothing(dashboard_env, user_with_activity, token):
    at = run_page(token)
    assert at.error and "Sign-in required" in at.error[0].value
    assert not at.dataframe and not at.metric


def test_token_signed_by_another_key_sees_nothing(dashboard_env, user_with_activity, tmp_path):
    forged_key, _ = ensure_signing_key(tmp_path / "other-keys")
    at = run_page(issue_token(forged_key, user_with_activity.user_id, DASHBOARD_SCOPE, 600))
    assert at.error and not at.dataframe and not at.metric


def test_expired_token_sees_nothing(dashboard_env, user_with_activity):
    long_ago = (datetime.now(UTC) - timedelta(days=2)).timestamp()
    at = run_page(issue_token(dashboard_env, user_with_activity.user_id, DASHBOARD_SCOPE, 600, now=long_ago))
    assert at.error and "expired" in at.caption[0].value
    assert not at.dataframe


def test_token_for_another_scope_sees_nothing(dashboard_env, user_with_activity):
    at = run_page(issue_token(dashboard_env, user_with_activity.user_id, "ingest", 600))
    assert at.error and not at.dataframe


def test_another_users_token_shows_none_of_this_users_data(stack, dashboard_env, user_with_activity):
    _, _, token = signed_in(stack)
    at = run_page(token)
    assert not at.error
    assert not at.dataframe
    assert any("No activity" in info.value for info in at.info)


def test_a_logged_out_token_sees_nothing(stack, dashboard_env, user_with_activity):
    ca = (stack.settings.pki_dir / "ca.crt").read_bytes()
    assert who_am_i(stack.settings.gateway_public_address, ca, user_with_activity.token).user_id
    with grpc.secure_channel(stack.settings.gateway_public_address, grpc.ssl_channel_credentials(ca)) as channel:
        accounts_pb2_grpc.AccountsStub(channel).Logout(
            accounts_pb2.Empty(), metadata=(("authorization", f"Bearer {user_with_activity.token}"),)
        )
    at = run_page(user_with_activity.token)
    assert at.error and "revoked" in at.caption[0].value
    assert not at.dataframe and not at.metric
