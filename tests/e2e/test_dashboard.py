"""The dashboard's pages, run by Streamlit's AppTest against the real stack: sign-in through the gateway,
data the worker stored from intervals sent through the gateway, every page's numbers against the query API."""

from __future__ import annotations

import io
import json
import re
import uuid
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import grpc
import pandas as pd
import pytest

from dashboard import charts, formatting
from dashboard.period import preset_period, viewer_today, viewer_zone
from gateway.tokens import DASHBOARD_SCOPE, ensure_signing_key, issue_token
from infra.devices import new_account
from schemas.api_client import add_goal, create_share_link, delete_goal, list_devices, log_out, who_am_i
from tests.conftest import eventually
from tests.e2e.dashboard_fixtures import (
    PAGES,
    T0,
    Account,
    ca_pem,
    chart_of,
    dashboard_env,  # noqa: F401 (a fixture)
    default_period,
    everything_shown,
    interval,
    make_account,
    metric,
    new_app,
    open_page,
    release_insights,
    send_intervals,
    signed_in_app,
)
from warehouse import categories, goals, notices, queries

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
    # A streak is a focus session, start to end; focused time is the time inside the sessions: the desk's
    # terminal ran while the laptop was in focus, so it adds nothing to it (55 active minutes, 45 focused).
    longest = (sessions["end"] - sessions["start"]).max().total_seconds()
    assert metric(at, "Longest streak") == formatting.duration(longest)
    assert metric(at, "Focused") == "45 min"
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


# --- what the charts and figures promise (issue 18) -----------------------------------------------------------


@pytest.fixture(scope="module")
def two_days(stack, warehouse_client):
    """One device's two days: the first with more apps than Vega's default legend keeps (30), one after the
    other; the second with a few of them, in another order, and an app used for the first time."""
    s = stack.settings
    mark = uuid.uuid4().hex[:6]
    user_id, email, password = new_account(s)
    first, second = T0 - timedelta(days=1), T0
    apps = [f"App{mark}-{i:02d}" for i in range(35)]
    sent = [interval(i, first + timedelta(minutes=i), 50, app, keys=3) for i, app in enumerate(apps)]
    later = [f"New{mark}", apps[33], apps[5], apps[22]]
    sent += [interval(35 + i, second + timedelta(minutes=i), 50, app, keys=3) for i, app in enumerate(later)]
    device = send_intervals(s, email, password, f"laptop-{mark}", sent)
    eventually(lambda: len(queries.app_order(warehouse_client, user_id)) == 36, 90)
    return Account(user_id, email, password, mark, {device: f"laptop-{mark}"}), first.date(), second.date()


def _legend(chart) -> dict[str, str]:
    """App -> colour, as the chart's legend and bars show them."""
    scale = chart.encoding("color")["scale"]
    return dict(zip(scale["domain"], scale["range"], strict=True))


def test_timeline_legend_names_every_app_drawn_in_its_colour_for_the_account_on_every_day(two_days, warehouse_client):
    account, first, second = two_days
    at = open_page(signed_in_app(account), "timeline")
    period = default_period()
    shown = {}
    for day in (first, second):
        at.selectbox(key="timeline_day_False").select(day).run()
        chart = chart_of(at, "start")
        sessions = queries.app_timeline(warehouse_client, account.user_id, period.start, period.end, day=day)
        assert set(chart.data["app"]) == set(sessions["app"])
        color = chart.encoding("color")
        # Every app drawn is in the legend, once, and nothing else; however many (no limit), and the chart grows
        # with the legend instead of cutting it at the plot's height.
        assert sorted(color["scale"]["domain"]) == sorted(set(sessions["app"]))
        assert color["legend"] is not None and color["legend"]["symbolLimit"] == 0
        assert chart.spec["autosize"]["type"] == "fit-x"
        # Labels by the span on a UTC scale of wall-clock times (never the browser's own zone).
        assert chart.encoding("x")["scale"]["type"] == "utc"
        assert chart.encoding("x")["axis"]["labelExpr"] == charts.tick_label_expr()
        shown[day] = _legend(chart)
    assert len(shown[first]) > 30  # more apps than Vega's default legend would list
    both = set(shown[first]) & set(shown[second])
    assert len(both) == 3
    assert {app: shown[first][app] for app in both} == {app: shown[second][app] for app in both}
    # The colours are the account's: the 20 first used differ from each other.
    order = list(queries.app_order(warehouse_client, account.user_id)["app"])
    assert len({shown[first][app] for app in order[:20]}) == 20
    # And an app is the same colour on the Overview.
    overview = chart_of(open_page(at, "overview"), "app", "y")
    assert all(colour == {**shown[first], **shown[second]}[app] for app, colour in _legend(overview).items())


def test_focus_figures_say_what_differs_from_active_time_formatted_like_the_rest(stack, warehouse_client):
    """Focused is the time inside focus sessions, short pauses included; the longest streak is a session, start
    to end; switches per hour have one decimal. Computed here from what was sent."""
    s = stack.settings
    mark = uuid.uuid4().hex[:6]
    user_id, email, password = new_account(s)
    minute = timedelta(minutes=1)
    sent = [interval(i, T0 + i * minute, 60, f"Editor{mark}") for i in range(10)]
    # A 3-minute pause (shorter than a break): the same focus session goes on.
    sent += [interval(10 + i, T0 + (13 + i) * minute, 60, f"Editor{mark}") for i in range(10)]
    sent += [interval(20 + i, T0 + (23 + i) * minute, 60, f"Browser{mark}") for i in range(5)]
    # 10 minutes away: a break, then a second session.
    sent += [interval(25 + i, T0 + (38 + i) * minute, 60, f"Editor{mark}") for i in range(5)]
    send_intervals(s, email, password, f"laptop-{mark}", sent)
    period = default_period()
    eventually(lambda: len(queries.focus_sessions(warehouse_client, user_id, period.start, period.end)) == 2, 90)
    eventually(lambda: queries.totals(warehouse_client, user_id, period.start, period.end)["active_seconds"][0] == 1800)
    account = Account(user_id, email, password, mark, {})
    at = signed_in_app(account)
    assert metric(at, "Active in period") == "30 min"
    open_page(at, "focus")
    assert metric(at, "Focus sessions") == "2"
    assert metric(at, "Focused") == "33 min"  # 28 + 5 minutes inside the sessions, not the 30 active
    assert metric(at, "Longest streak") == "28 min"
    assert metric(at, "Breaks") == "1"
    sessions = queries.focus_sessions(warehouse_client, user_id, period.start, period.end)
    switches = int(sessions["context_switches"].sum())
    assert switches >= 1
    assert metric(at, "Context switches / hour") == f"{switches / (33 / 60):.1f}"
    streaks_table = at.table[0].value
    assert list(streaks_table["Focused"]) == ["28 min", "5 min"]
    assert list(streaks_table["Active"]) == ["25 min", "5 min"]
    # One decimal, like the figure above it: never '2.4000'.
    assert all(re.fullmatch(r"\d+\.\d", value) for value in streaks_table["Switches / hour"]), streaks_table
    assert re.fullmatch(r"\d+\.\d", metric(at, "Context switches / hour"))


def test_charts_draw_durations_in_minutes_or_hours_as_fits(owner_app):
    at = open_page(owner_app, "overview")
    apps = chart_of(at, "app", "y")
    # 35, 10 and 10 minutes: drawn in minutes, not as slivers of an hour.
    assert apps.encoding("x")["title"] == "Minutes"
    assert sorted(apps.data["amount"], reverse=True) == [35, 10, 10]
    at = open_page(at, "trends")
    daily = chart_of(at, "amount", "y")
    assert daily.encoding("y")["title"] == "Minutes" and max(daily.data["amount"]) == 55
    at = open_page(at, "categories")
    assert chart_of(at, "category", "y").encoding("x")["title"] == "Minutes"


def test_exports_name_devices_beside_their_ids(owner_app, owner):
    at = open_page(owner_app, "data")
    at.button(key="export_prepare").click().run()
    exported = pd.read_csv(io.BytesIO(at.session_state["export_prepared"][1]))
    assert list(exported.columns[:4]) == ["start", "end", "device", "device_id"]
    assert set(exported["device_id"]) == set(owner.devices)
    assert all(exported["device"] == exported["device_id"].map(owner.devices))
    at.radio(key="export_format").set_value("JSON").run()
    at.selectbox(key="export_dataset").select("Focus sessions").run()
    at.button(key="export_prepare").click().run()
    rows = json.loads(at.session_state["export_prepared"][1])
    assert rows and all(row["device"] == owner.devices[row["device_id"]] for row in rows)


def test_overview_timeline_and_trends_agree_on_today_in_the_viewers_zone(stack, warehouse_client):
    """In a zone far from UTC, with activity across the viewer's midnight: every page's today is the viewer's."""
    now = datetime.now(UTC)
    # Whichever of the two has been in its today for an hour at least (one of them always has).
    name = next(z for z in ("Pacific/Auckland", "America/Los_Angeles") if now.astimezone(ZoneInfo(z)).hour >= 1)
    zone = ZoneInfo(name)
    today = viewer_today(zone, now)
    midnight = datetime.combine(today, time(), tzinfo=zone).astimezone(UTC)
    # 25 minutes before the viewer's midnight to 30 after: 20 active minutes of it are today's (fixture layout).
    account = make_account(stack.settings, warehouse_client, start=midnight - timedelta(minutes=25))
    day = preset_period("Today", today, zone)
    assert queries.totals(warehouse_client, account.user_id, day.start, day.end)["active_seconds"][0] == 20 * 60
    at = signed_in_app(account, timezone=name)
    assert metric(at, "Active today") == "20 min"
    open_page(at, "timeline")
    assert at.selectbox(key="timeline_day_False").value == today
    assert any("· 20 min active ·" in c.value for c in at.caption), [c.value for c in at.caption]
    bars = chart_of(at, "start").data
    # The chart's times are the viewer's clock: today's first bar starts at the viewer's midnight.
    starts = pd.to_datetime(bars["start"], utc=True)
    assert starts.min() == pd.Timestamp(datetime.combine(today, time()), tz="UTC")
    assert (starts.dt.date == today).all() and bars["came"].min() == "00:00:00"
    open_page(at, "trends")
    daily = chart_of(at, "amount", "y").data
    active = daily[daily["state"] == "Active"].set_index("label")["amount"]
    assert active.index[-1] == today.strftime("%a %d %b") and active.iloc[-1] == 20
    assert active[(today - timedelta(days=1)).strftime("%a %d %b")] == 35


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
    for table in ("intervals", "app_sessions", "focus_sessions", "usage_by_hour", "usage_by_title_day", "device_state"):
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


def test_insights_appear_only_when_the_operator_enables_them_and_say_beside_each_figure_that_it_is_noisy(
    owner_app, owner, monkeypatch, stack, warehouse_client
):
    import streamlit as st

    from dashboard.views.insights import week_label
    from warehouse.insight_rules import week_of

    assert "insights" not in [p for p in at_pages(owner_app)]
    this_week = week_of(datetime.now(UTC).date())
    shown = release_insights(warehouse_client, this_week, k=2, crowd=6)
    assert all(r.shown for r in shown.values())
    hidden = release_insights(warehouse_client, this_week - timedelta(weeks=1), k=10_000)
    assert not any(r.shown for r in hidden.values())
    monkeypatch.setenv("PRODUCTIMON_DASHBOARD_AGGREGATES", "true")
    st.cache_resource.clear()
    try:
        at = open_page(owner_app.run(), "insights")
        assert not at.error
        assert len(at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")) == 2
        notes = [c.value for c in at.caption if c.value.startswith("Noisy on purpose")]
        # Beside each figure: how far it may be off and the noisy count, as released (nothing exact).
        assert len(notes) == 2
        for note, figure in zip(notes, ("weekday", "hour"), strict=True):
            r = shown[figure]
            assert f"±{r.margin() * 100:.0f} points" in note and f"About {r.people} people" in note, note
        # The budget spent, per week: both figures at ε = 10, each release counted (another test's too).
        budget = at.dataframe[-1].value.set_index("week")
        assert budget.loc[week_label(this_week), "epsilon"] >= 20
        assert budget.loc[week_label(this_week), "releases"] % 2 == 0

        at.selectbox[0].set_value(this_week - timedelta(weeks=1)).run()
        assert not at.get("arrow_vega_lite_chart") and not at.get("vega_lite_chart")
        assert sum("too few people this week" in i.value for i in at.info) == 2
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


# --- goals ------------------------------------------------------------------------------------------------------


def _progress_texts(at) -> list[str]:
    return [e.proto.text for e in at.get("progress")]


def _markdown(at) -> list[str]:
    return [m.value for m in at.markdown]


def test_a_goal_is_added_shown_with_its_progress_and_deleted(owner_app, owner, warehouse_client):
    at = open_page(owner_app, "goals")
    editor = f"Editor{owner.mark}"
    at.selectbox(key="new_goal_kind").select("app").run()
    at.selectbox(key="new_goal_target_app").select(editor)
    at.selectbox(key="new_goal_direction").select("at_most")
    at.selectbox(key="new_goal_period").select("day")
    at.number_input(key="new_goal_minutes").set_value(30).run()
    at.button(key="add_goal").click().run()
    assert not at.error, [e.value for e in at.error]
    described = f"at most 30 min a day of {editor}"
    assert at.success and at.success[0].value == f"Added: {described}"
    stored = goals.list_goals(warehouse_client, owner.user_id)
    assert [(g.kind, g.target, g.direction, g.period, g.minutes) for g in stored] == [
        ("app", editor, "at_most", "day", 30)
    ]
    # The owner's editor ran 35 min on T0's day (UTC, the tests' browser zone): over the 30 min limit.
    today = datetime.now(UTC).date()
    expected = "35 min of 30 min today: over by 5 min" if T0.date() == today else "0 min of 30 min today"
    assert f"**A{described[1:]}**" in _markdown(at)
    assert _progress_texts(at) == [expected]
    history = at.table[0].value
    assert len(history) == 14 and set(history["Result"]) <= {"met", "missed"}
    if T0.date() == today:
        assert set(history["Time"]) == {"0 min"} and "Met 14 days in a row." in [c.value for c in at.caption]
    else:
        assert list(history["Time"])[0] == "35 min" and list(history["Result"])[0] == "missed"
        assert "Missed the last day: no streak." in [c.value for c in at.caption]

    open_page(at, "overview")
    mark = "⚠️ " if T0.date() == today else "✅ "
    assert f"{mark}{described}: {expected}" in _markdown(at)

    open_page(at, "goals")
    at.button(key=f"goal_delete_{stored[0].goal_id}").click().run()
    assert not at.error and at.success and at.success[0].value == f"Deleted: {described}"
    assert goals.list_goals(warehouse_client, owner.user_id) == []
    assert not _progress_texts(at) and f"**A{described[1:]}**" not in _markdown(at)
    open_page(at, "overview")
    assert not any(described in m for m in _markdown(at)) and "Goals" not in [s.value for s in at.subheader]


def test_a_goals_desktop_notice_is_off_until_switched_on_and_pausing_stops_all(owner_app, owner, warehouse_client):
    editor = f"Editor{owner.mark}"
    goal_id = goals.add_goal(
        warehouse_client, owner.user_id, kind="app", target=editor, direction="at_most", period="day", minutes=30
    )
    aim = goals.add_goal(
        warehouse_client, owner.user_id, kind="app", target=editor, direction="at_least", period="day", minutes=30
    )
    try:
        at = open_page(owner_app, "goals")
        switch = at.toggle(key=f"goal_desktop_{goal_id}")
        assert switch.value is False and notices.notice_settings(warehouse_client, owner.user_id).switches == {}
        # An aim ("at least") has no notices to switch.
        assert f"goal_desktop_{aim}" not in [t.key for t in at.toggle]
        # This stack has no SMTP: no e-mail switch, no weekly summary (tests/e2e/test_email_notices.py has them).
        assert {f"goal_email_{goal_id}", "weekly_summary"}.isdisjoint(t.key for t in at.toggle)
        assert f"goal_desktop_{goal_id}" in [t.key for t in at.toggle]
        switch.set_value(True).run()
        assert not at.error, [e.value for e in at.error]
        assert at.success[0].value == f"Desktop notices on: at most 30 min a day of {editor}"
        stored = notices.notice_settings(warehouse_client, owner.user_id)
        assert stored.switches == {goal_id: frozenset({"desktop"})}
        assert stored.tz == "UTC" and not stored.paused  # the page's zone (the tests' browser zone)
        assert at.toggle(key=f"goal_desktop_{goal_id}").value is True
        at.toggle(key="notices_paused").set_value(True).run()
        assert at.success[0].value == "All notices paused"
        assert notices.notice_settings(warehouse_client, owner.user_id).paused
        assert at.toggle(key=f"goal_desktop_{goal_id}").disabled
        at.toggle(key="notices_paused").set_value(False).run()
        at.toggle(key=f"goal_desktop_{goal_id}").set_value(False).run()
        assert at.success[0].value == f"Desktop notices off: at most 30 min a day of {editor}"
        assert notices.notice_settings(warehouse_client, owner.user_id).switches == {}
    finally:
        goals.delete_goal(warehouse_client, owner.user_id, goal_id)
        goals.delete_goal(warehouse_client, owner.user_id, aim)


def test_a_goal_with_zero_minutes_is_refused_in_one_line_and_nothing_is_lost(owner_app, owner, warehouse_client):
    at = open_page(owner_app, "goals")
    browser = f"Browser{owner.mark}"
    at.selectbox(key="new_goal_kind").select("app").run()
    at.selectbox(key="new_goal_target_app").select(browser)
    at.selectbox(key="new_goal_direction").select("at_least")
    at.selectbox(key="new_goal_period").select("week")
    at.multiselect(key="new_goal_weekdays").select(0).select(2)
    at.number_input(key="new_goal_minutes").set_value(0).run()
    at.button(key="add_goal").click().run()
    assert len(at.error) == 1 and "a goal needs more than 0 minutes" in at.error[0].value
    assert "\n" not in at.error[0].value and not at.success
    assert at.selectbox(key="new_goal_kind").value == "app"
    assert at.selectbox(key="new_goal_target_app").value == browser
    assert at.selectbox(key="new_goal_direction").value == "at_least"
    assert at.selectbox(key="new_goal_period").value == "week"
    assert at.multiselect(key="new_goal_weekdays").value == [0, 2]
    assert at.number_input(key="new_goal_minutes").value == 0
    assert goals.list_goals(warehouse_client, owner.user_id) == []


def test_a_share_link_shows_no_goals(stack, owner, warehouse_client):
    s = stack.settings
    token = owner.token(s)
    goal_id = add_goal(
        s.gateway_public_address, ca_pem(s), token, kind="all", target="", direction="at_least", period="week",
        minutes=120,
    )  # fmt: skip
    try:
        period = default_period()
        link = create_share_link(
            s.gateway_public_address, ca_pem(s), token, "overview",
            int(period.start.timestamp()), int(period.end.timestamp()), "UTC", 3600,
        ).token  # fmt: skip
        at = new_app({"share": link}).run()
        assert not at.error and not at.exception
        assert at.title[0].value == "Overview"
        shown = everything_shown(at)
        assert "Goals" not in [h.value for h in at.subheader]
        assert "2 h a week" not in shown and "this week" not in shown and "goal" not in shown.lower()
        assert "goals" not in [str(p.get("url_pathname")) for p in at._registered_pages.values()]
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page("views/goals.py")
        # The owner's own overview shows it, so the share link's silence is not for want of a goal.
        own = signed_in_app(owner)
        assert any(m.startswith("⚠️ at least 2 h a week of all activity: ") for m in _markdown(own)) or any(
            m.startswith("✅ at least 2 h a week of all activity: ") for m in _markdown(own)
        )
    finally:
        delete_goal(s.gateway_public_address, ca_pem(s), token, goal_id)
