"""The dashboard's pages, run by Streamlit's AppTest against the real stack: sign-in through the gateway,
data the worker stored from intervals sent through the gateway, every page's numbers against the query API."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from dashboard import formatting
from dashboard.period import preset_period, viewer_zone
from gateway.tokens import DASHBOARD_SCOPE, ensure_signing_key, issue_token
from schemas.api_client import list_devices, log_out, who_am_i
from tests.conftest import eventually
from tests.e2e.dashboard_fixtures import (
    PAGES,
    ca_pem,
    dashboard_env,  # noqa: F401 (a fixture)
    default_period,
    make_account,
    metric,
    new_app,
    open_page,
    signed_in_app,
)
from warehouse import categories, queries

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("dashboard_env")]


@pytest.fixture(scope="module")
def owner(stack, warehouse_client):
    return make_account(stack.settings, warehouse_client)


@pytest.fixture
def owner_app(owner):
    return signed_in_app(owner)


# --- signing in and out -------------------------------------------------------------------------------------


def test_signing_in_with_email_and_password_shows_the_overview(owner_app, owner, warehouse_client):
    at = owner_app
    assert not at.error
    assert any(owner.email in c.value for c in at.caption)
    period = default_period()
    totals = queries.totals(warehouse_client, owner.user_id, period.start, period.end)
    assert metric(at, "Active in period") == formatting.duration(totals["active_seconds"].iloc[0]) == "55 min"
    assert metric(at, "Idle in period") == formatting.duration(totals["idle_seconds"].iloc[0]) == "10 min"
    apps = at.table[0].value
    assert list(apps["App"]) == [f"Editor{owner.mark}", f"Browser{owner.mark}", f"Terminal{owner.mark}"]
    assert list(apps["Time"]) == ["35 min", "10 min", "10 min"]


def test_a_wrong_password_shows_one_line_and_nothing_of_the_account(owner):
    at = new_app().run()
    at.text_input(key="sign_in_email").input(owner.email)
    at.text_input(key="sign_in_password").input("not the password at all")
    at.form_submit_button[0].click().run()
    assert len(at.error) == 1 and "wrong email or password" in at.error[0].value
    assert "\n" not in at.error[0].value
    assert not at.metric and not at.table
    assert at.text_input(key="sign_in_email").value == owner.email  # what was typed is kept


def test_a_newcomer_creates_an_account_in_the_dashboard_as_the_sign_up_mode_allows(stack):
    from gateway.identity_store import IdentityStore

    email = f"new-{uuid.uuid4().hex[:8]}@example.org"

    def create(at, password: str, again: str, invite: str | None = None):
        at.text_input(key="sign_up_email").input(email)
        at.text_input(key="sign_up_password").input(password)
        at.text_input(key="sign_up_again").input(again)
        if invite is not None:
            at.text_input(key="sign_up_invite").input(invite)
        return at.form_submit_button[1].click().run()

    store = IdentityStore(stack.settings.identity_store_path)
    try:
        store.set_signup_mode("closed")
        at = new_app().run()
        assert not _has(at, "sign_up_email")  # no form where nobody may sign up
        assert any("Sign-up is closed" in c.value for c in at.caption)
        store.set_signup_mode("invite")
        at = new_app().run()
        at = create(at, "a fine passphrase 1", "a fine passphrase 1", "not-an-invite")
        assert at.error and "invite" in at.error[0].value and "\n" not in at.error[0].value
        assert at.text_input(key="sign_up_email").value == email  # what was typed is kept, but the passwords
        assert at.text_input(key="sign_up_password").value == ""
        at = create(at, "a fine passphrase 1", "a fine passphrase 2", store.create_invite())
        assert at.error and "passwords differ" in at.error[0].value
        at = create(at, "short", "short", store.create_invite())
        assert at.error and "shorter than 10 characters" in at.error[0].value
        at = create(at, "a fine passphrase 1", "a fine passphrase 1", store.create_invite())
    finally:
        store.set_signup_mode("open")
        store.close()
    assert not at.error, [e.value for e in at.error]
    # Signed in at once, told what to do next, and the account works with the gateway as any other.
    assert any(email in c.value for c in at.sidebar.caption)
    assert at.success and "Next, enroll this computer" in at.success[0].value
    assert f"--email {email}" in at.code[0].value and "productimon-collector run" in at.code[0].value
    ca = ca_pem(stack.settings)
    assert who_am_i(stack.settings.gateway_public_address, ca, at.session_state["token"]).email == email


def _has(at, key: str) -> bool:
    try:
        at.text_input(key=key)
    except KeyError:
        return False
    return True


def test_signing_out_revokes_the_token_at_the_gateway(stack, owner):
    at = signed_in_app(owner)
    token = at.session_state["token"]
    at.sidebar.button(key="sign_out").click().run()
    assert not at.metric and at.text_input(key="sign_in_email")
    with pytest.raises(grpc.RpcError) as refused:
        who_am_i(stack.settings.gateway_public_address, ca_pem(stack.settings), token)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("token", ["", "not-a-jwt"])
def test_a_missing_or_malformed_token_link_signs_nobody_in(owner, token):
    at = new_app({"token": token}).run()
    assert at.error and "Sign-in required" in at.error[0].value
    assert not at.table and not at.metric


def test_a_token_signed_by_another_key_signs_nobody_in(owner, tmp_path):
    forged_key, _ = ensure_signing_key(tmp_path / "other-keys")
    at = new_app({"token": issue_token(forged_key, owner.user_id, DASHBOARD_SCOPE, 600)}).run()
    assert at.error and not at.table and not at.metric


def test_an_expired_token_signs_nobody_in(stack, owner):
    key = ensure_signing_key(stack.settings.keys_dir)[0]
    long_ago = (datetime.now(UTC) - timedelta(days=2)).timestamp()
    at = new_app({"token": issue_token(key, owner.user_id, DASHBOARD_SCOPE, 600, now=long_ago)}).run()
    assert at.error and "expired" in at.error[0].value
    assert not at.table


def test_a_token_of_another_scope_signs_nobody_in(stack, owner):
    key = ensure_signing_key(stack.settings.keys_dir)[0]
    at = new_app({"token": issue_token(key, owner.user_id, "ingest", 600)}).run()
    assert at.error and not at.table


def test_a_logged_out_token_signs_nobody_in(stack, owner):
    token = owner.token(stack.settings)
    log_out(stack.settings.gateway_public_address, ca_pem(stack.settings), token)
    at = new_app({"token": token}).run()
    assert at.error and "revoked" in at.error[0].value
    assert not at.table and not at.metric


def test_the_operators_token_link_signs_in_and_leaves_the_address_bar(stack, owner):
    at = new_app({"token": owner.token(stack.settings)}).run()
    assert not at.error and "token" not in at.query_params
    assert metric(at, "Active in period") == "55 min"


# --- the pages ------------------------------------------------------------------------------------------------


def test_every_page_runs_without_errors(owner_app):
    for page in PAGES:
        at = open_page(owner_app, page)
        assert not at.error, (page, [e.value for e in at.error])


def test_filters_persist_while_navigating_and_the_device_filter_applies(owner_app, owner, warehouse_client):
    at = owner_app
    laptop = next(d for d, name in owner.devices.items() if name.startswith("laptop"))
    at.sidebar.selectbox(key="period_preset").select("Last 30 days")
    at.sidebar.multiselect(key="device_filter").select(laptop).run()
    open_page(at, "trends")
    assert at.sidebar.multiselect(key="device_filter").value == [laptop]
    assert at.sidebar.selectbox(key="period_preset").value == "Last 30 days"
    zone = viewer_zone("UTC")
    period = preset_period("Last 30 days", datetime.now(zone).date(), zone)
    only_laptop = queries.totals(warehouse_client, owner.user_id, period.start, period.end, devices=[laptop])
    assert metric(at, "Active in period") == formatting.duration(only_laptop["active_seconds"].iloc[0]) == "45 min"
    open_page(at, "overview")
    assert metric(at, "Active in period") == "45 min"


def test_timeline_shows_the_days_app_sessions_per_device(owner_app, owner, warehouse_client):
    at = open_page(owner_app, "timeline")
    from tests.e2e.dashboard_fixtures import T0

    at.selectbox(key="timeline_day_False").select(T0.date()).run()
    period = default_period()
    sessions = queries.app_timeline(warehouse_client, owner.user_id, period.start, period.end, day=T0.date())
    assert metric(at, "App sessions") == str(len(sessions)) and len(sessions) >= 4
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")


def test_trends_shows_the_period_against_the_previous_one(owner_app, owner, warehouse_client):
    at = open_page(owner_app, "trends")
    period = default_period()
    active = queries.totals(warehouse_client, owner.user_id, period.start, period.end)["active_seconds"].iloc[0]
    assert metric(at, "Active in period") == formatting.duration(active)
    assert metric(at, "Previous 7 days") == "0 min"
    change = at.table[0].value
    assert set(change["App"]) == {f"Editor{owner.mark}", f"Terminal{owner.mark}", f"Browser{owner.mark}"}
    at.radio(key="compare_by_False").set_value("Device").run()
    assert set(at.table[0].value["Device"]) == set(owner.devices)


def test_focus_shows_sessions_breaks_and_streaks(owner_app, owner, warehouse_client):
    at = open_page(owner_app, "focus")
    period = default_period()
    sessions = queries.focus_sessions(warehouse_client, owner.user_id, period.start, period.end)
    breaks = queries.focus_breaks(warehouse_client, owner.user_id, period.start, period.end)
    assert metric(at, "Focus sessions") == str(len(sessions)) and len(sessions) >= 2
    assert metric(at, "Breaks") == str(len(breaks))
    assert metric(at, "Longest streak") == formatting.duration(sessions["active_seconds"].max())
    assert len(at.table[0].value) == min(5, len(sessions))


def test_categories_refuse_a_bad_pattern_in_one_line_and_lose_nothing(owner_app, owner, warehouse_client):
    at = open_page(owner_app, "categories")
    at.text_input(key="new_rule_category").input("Work/Writing")
    at.text_input(key="new_rule_pattern").input("(Editor").run()
    assert at.error and "not a valid RE2 regular expression" in at.error[0].value
    assert "\n" not in at.error[0].value
    at.button(key="add_rule").click().run()
    assert at.error and "not a valid" in at.error[0].value
    assert at.text_input(key="new_rule_pattern").value == "(Editor"
    assert at.text_input(key="new_rule_category").value == "Work/Writing"
    # Nothing was added: the account has the rules every new account starts with, and only those.
    rules = categories.list_rules(warehouse_client, owner.user_id)
    assert list(zip(rules["field"], rules["pattern"], rules["category"], strict=True)) == list(categories.DEFAULT_RULES)


def test_categories_preview_a_rule_live_and_relabel_history_when_added(owner_app, owner, warehouse_client):
    at = open_page(owner_app, "categories")
    at.text_input(key="new_rule_pattern").input(f"^Editor{owner.mark}$").run()
    preview = at.table[0].value
    assert list(preview["App"]) == [f"Editor{owner.mark}"] and list(preview["Time"]) == ["35 min"]
    at.text_input(key="new_rule_category").input("Work/Writing")
    at.button(key="add_rule").click().run()
    assert at.success and "Added" in at.success[0].value
    period = default_period()
    per_category = queries.time_per_category(warehouse_client, owner.user_id, period.start, period.end)
    assert dict(zip(per_category["category"], per_category["seconds"], strict=True))["Work/Writing"] == 35 * 60
    rules = at.table[-1].value
    assert list(rules["Category"]) == [c for _, _, c in categories.DEFAULT_RULES] + ["Work/Writing"]
    stored = categories.list_rules(warehouse_client, owner.user_id)
    added = stored[stored["category"] == "Work/Writing"]["rule_id"].iloc[0]
    categories.delete_rule(warehouse_client, owner.user_id, added)


def test_devices_lists_renames_and_makes_an_enrollment_code(stack, warehouse_client):
    account = make_account(stack.settings, warehouse_client)
    at = open_page(signed_in_app(account), "devices")
    table = at.table[0].value
    assert set(table["Name"]) == set(account.devices.values())
    device = next(iter(account.devices))
    at.selectbox(key="device_chosen").select(device).run()
    at.text_input(key=f"device_name_{device}").input("renamed-laptop")
    at.button(key="device_rename").click().run()
    assert at.success and "renamed-laptop" in at.success[0].value
    token = at.session_state["token"]
    listed = list_devices(stack.settings.gateway_public_address, ca_pem(stack.settings), token)
    assert {d.device_id: d.name for d in listed}[device] == "renamed-laptop"
    at.button(key="enrollment_code").click().run()
    assert len(at.code[0].value.replace("-", "")) == 16

    assert at.button(key="device_revoke").disabled  # not before the confirmation
    at.checkbox(key=f"device_revoke_sure_{device}").check().run()
    at.button(key="device_revoke").click().run()
    listed = list_devices(stack.settings.gateway_public_address, ca_pem(stack.settings), token)
    assert {d.device_id: d.revoked for d in listed}[device] is True


def test_data_offers_an_export_of_any_period_in_csv_and_json(owner_app):
    at = open_page(owner_app, "data")
    assert at.button(key="export_prepare").label == "Prepare activity intervals as CSV"
    assert not at.get("download_button")  # nothing is built until it is asked for
    at.button(key="export_prepare").click().run()
    assert at.download_button(key="export_download").label == "Download activity intervals as CSV"
    at.radio(key="export_format").set_value("JSON").run()
    at.selectbox(key="export_dataset").select("Time per app").run()
    # Another dataset or format is prepared anew, never offered from the previous file.
    assert not at.get("download_button")
    at.button(key="export_prepare").click().run()
    assert at.download_button(key="export_download").label == "Download time per app as JSON"


def test_data_deletes_a_period_a_device_and_everything_after_confirmation(stack, warehouse_client):
    account = make_account(stack.settings, warehouse_client)
    at = open_page(signed_in_app(account), "data")
    period = default_period()

    def active(devices=None) -> float:
        return queries.totals(warehouse_client, account.user_id, period.start, period.end, devices=devices)[
            "active_seconds"
        ].iloc[0]

    at.radio(key="delete_scope").set_value("One device's data").run()
    desk = next(d for d, name in account.devices.items() if name.startswith("desk"))
    at.selectbox(key="delete_device").select(desk).run()
    assert at.button(key="delete_data").disabled
    at.text_input(key="delete_confirm_One device's data").input("DELETE").run()
    at.button(key="delete_data").click().run()
    assert at.success and "Deleted" in at.success[0].value
    assert active([desk]) == 0 and active() == 45 * 60

    at.radio(key="delete_scope").set_value("This period").run()
    at.text_input(key="delete_confirm_This period").input("delete").run()  # not the word asked for
    assert at.button(key="delete_data").disabled
    at.text_input(key="delete_confirm_This period").input("DELETE").run()
    at.button(key="delete_data").click().run()
    assert active() == 0

    at.radio(key="delete_scope").set_value("Everything").run()
    at.text_input(key="delete_confirm_Everything").input("DELETE").run()
    at.button(key="delete_data").click().run()
    assert at.success and "Deleted" in at.success[0].value
    for table in ("intervals", "app_sessions", "focus_sessions", "usage_by_hour", "usage_by_day", "device_state"):
        count = warehouse_client.query(
            f"SELECT count() FROM {table} WHERE user_id = {{u:String}}", parameters={"u": account.user_id}
        )
        assert count.result_rows[0][0] == 0, table


def test_data_deletes_the_account_with_its_password_and_signs_out(stack, warehouse_client):
    account = make_account(stack.settings, warehouse_client)
    at = open_page(signed_in_app(account), "data")
    token = at.session_state["token"]
    form = at.get("form")[0]
    form.text_input[0].input("wrong password, surely")
    form.text_input[1].input("DELETE")
    form.form_submit_button[0].click().run()
    assert at.error and "not deleted" in at.error[0].value and "\n" not in at.error[0].value
    form = at.get("form")[0]
    form.text_input[0].input(account.password)
    form.text_input[1].input("DELETE")
    eventually(lambda: _delete_account(at), 60)  # a wrong password just now may throttle for a moment
    assert at.text_input(key="sign_in_email") and "were deleted" in at.info[0].value
    with pytest.raises(grpc.RpcError):
        who_am_i(stack.settings.gateway_public_address, ca_pem(stack.settings), token)
    count = warehouse_client.query(
        "SELECT count() FROM intervals WHERE user_id = {u:String}", parameters={"u": account.user_id}
    )
    assert count.result_rows[0][0] == 0


def _delete_account(at) -> bool:
    form = at.get("form")[0]
    form.form_submit_button[0].click().run()
    return not at.error


def test_insights_appear_only_when_the_operator_enables_them(owner_app, owner, monkeypatch, stack, warehouse_client):
    import streamlit as st

    assert "insights" not in [p for p in at_pages(owner_app)]
    make_account(stack.settings, warehouse_client)  # at least two people active in the period
    monkeypatch.setenv("PRODUCTIMON_DASHBOARD_AGGREGATES", "true")
    monkeypatch.setenv("PRODUCTIMON_AGGREGATE_K", "2")
    st.cache_resource.clear()
    try:
        at = open_page(owner_app.run(), "insights")
        assert not at.error
        assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")
        monkeypatch.setenv("PRODUCTIMON_AGGREGATE_K", "10000")
        st.cache_resource.clear()
        at.run()
        assert any("nothing can be shown" in i.value for i in at.info)
    finally:
        st.cache_resource.clear()


def at_pages(at) -> list[str]:
    return [str(info.get("url_pathname")) for info in at._registered_pages.values()]


def test_privacy_page_sets_the_title_mode_with_a_warning_and_edits_rules_losing_nothing_typed(stack, owner_app, owner):
    from schemas.api_client import get_privacy, log_in

    gateway, ca = stack.settings.gateway_public_address, (stack.settings.pki_dir / "ca.crt").read_bytes()
    token = log_in(gateway, ca, owner.email, owner.password).token
    at = open_page(owner_app, "privacy")
    assert at.radio(key="title_mode").value == "scrubbed"
    at.radio(key="title_mode").set_value("full").run()
    assert at.warning and "passwords typed on a command line" in at.warning[0].value
    at.button(key="title_mode_save").click().run()
    assert at.success and "full" in at.success[0].value
    # A rule that would match everything is refused in one line, and what was typed stays.
    at.selectbox(key="privacy_rule_on").set_value("title")
    at.text_input(key="privacy_rule_pattern").input("*").run()
    at.button(key="privacy_rule_add").click().run()
    assert at.error and "would match everything" in at.error[0].value and "\n" not in at.error[0].value
    assert at.text_input(key="privacy_rule_pattern").value == "*"
    at.selectbox(key="privacy_rule_on").set_value("site")
    at.text_input(key="privacy_rule_pattern").input("MyBank.example").run()
    at.selectbox(key="privacy_rule_action").set_value("drop_details").run()
    at.button(key="privacy_rule_add").click().run()
    assert at.success and "mybank.example" in at.success[0].value.lower()
    assert list(at.table[0].value["Pattern"]) == ["mybank.example"]
    choice = get_privacy(gateway, ca, token)
    assert choice.title_mode == "full" and [(r.on, r.pattern, r.action) for r in choice.rules] == [
        ("site", "mybank.example", "drop_details")
    ]
    at.button(key="privacy_rule_remove").click().run()
    assert at.success and "removed" in at.success[0].value
    assert not get_privacy(gateway, ca, token).rules
    at.radio(key="title_mode").set_value("scrubbed").run()
    at.button(key="title_mode_save").click().run()


def test_privacy_page_previews_a_rule_on_past_data_and_applies_it_only_once_confirmed(
    stack, owner_app, owner, warehouse_client
):
    def apps() -> set[str]:
        rows = warehouse_client.query(
            "SELECT DISTINCT app FROM intervals FINAL WHERE user_id = {u:String}", parameters={"u": owner.user_id}
        ).result_rows
        return {app for (app,) in rows}

    terminal = f"Terminal{owner.mark}"
    assert terminal in apps()
    at = open_page(owner_app, "privacy")
    at.selectbox(key="privacy_rule_on").set_value("app")
    at.text_input(key="privacy_rule_pattern").input(terminal).run()
    at.selectbox(key="privacy_rule_action").set_value("drop_details").run()
    at.button(key="privacy_rule_add").click().run()
    at.button(key="privacy_rule_preview").click().run()
    assert not at.error, [e.value for e in at.error]
    # The desk's terminal: 5 intervals of 2 min.
    assert at.warning and "5 recorded intervals (10 min of activity) on 1 device" in at.warning[0].value
    assert at.button(key="privacy_rule_apply").disabled  # not before it is confirmed
    assert terminal in apps()
    at.checkbox(key="privacy_apply_confirmed").check().run()
    at.button(key="privacy_rule_apply").click().run()
    assert not at.error, [e.value for e in at.error]
    assert at.success and "5 intervals rewritten" in at.success[0].value
    assert terminal not in apps() and "(private)" in apps()
