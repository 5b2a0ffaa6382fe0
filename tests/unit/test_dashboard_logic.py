"""The dashboard's pure parts: periods and presets, how numbers are written, focus streaks, exports, share
links' rules, share-link records in the identity store, and the token claims a share link carries."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import grpc
import pandas as pd
import pytest
from argon2 import PasswordHasher

from dashboard import export, formatting, share, streaks
from dashboard.access import one_line
from dashboard.period import MAX_DAYS, Period, period_from_utc, preset_period, viewer_zone
from gateway.identity_store import IdentityStore, InvalidShareLink
from gateway.tokens import (
    DASHBOARD_SCOPE,
    SHARE_SCOPE,
    TokenError,
    ensure_signing_key,
    issue_share_token,
    verify_token,
)

PRAGUE = ZoneInfo("Europe/Prague")
SATURDAY = date(2026, 11, 28)


# --- periods ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "first", "last"),
    [
        ("Today", SATURDAY, SATURDAY),
        ("Yesterday", date(2026, 11, 27), date(2026, 11, 27)),
        ("This week", date(2026, 11, 23), SATURDAY),
        ("Last 7 days", date(2026, 11, 22), SATURDAY),
        ("Last 30 days", date(2026, 10, 30), SATURDAY),
    ],
)
def test_presets_are_whole_local_days_ending_today(preset, first, last):
    period = preset_period(preset, SATURDAY, PRAGUE)
    assert (period.first, period.last) == (first, last)
    assert period.start == datetime(first.year, first.month, first.day, tzinfo=PRAGUE)
    # Prague is UTC+1 in November: the last day ends at 23:00 UTC.
    assert period.end.astimezone(UTC) == datetime(last.year, last.month, last.day, 23, tzinfo=UTC)


def test_a_custom_period_takes_its_days_in_any_order_and_refuses_none():
    period = preset_period("Custom", SATURDAY, PRAGUE, (SATURDAY, date(2026, 11, 1)))
    assert (period.first, period.last, period.days) == (date(2026, 11, 1), SATURDAY, 28)
    with pytest.raises(ValueError, match="choose the first and the last day"):
        preset_period("Custom", SATURDAY, PRAGUE, None)
    with pytest.raises(ValueError, match="unknown period"):
        preset_period("Forever", SATURDAY, PRAGUE)


def test_a_period_is_bounded_and_knows_the_one_before():
    with pytest.raises(ValueError, match="at most"):
        Period(date(2020, 1, 1), date(2020, 1, 1) + pd.Timedelta(days=MAX_DAYS).to_pytimedelta(), PRAGUE)
    week = preset_period("This week", SATURDAY, PRAGUE)
    before = week.previous()
    assert (before.first, before.last) == (date(2026, 11, 17), date(2026, 11, 22))
    assert before.end == week.start


def test_a_dst_change_day_is_23_hours_long():
    day = Period(date(2026, 3, 29), date(2026, 3, 29), PRAGUE)
    assert (day.end.astimezone(UTC) - day.start.astimezone(UTC)).total_seconds() == 23 * 3600


def test_a_shared_utc_range_comes_back_as_the_same_local_days():
    period = preset_period("Last 7 days", SATURDAY, PRAGUE)
    again = period_from_utc(int(period.start.timestamp()), int(period.end.timestamp()), "Europe/Prague")
    assert again == period


def test_an_unknown_zone_falls_back_to_utc():
    assert viewer_zone("Mars/Olympus") == ZoneInfo("UTC")
    assert viewer_zone(None) == ZoneInfo("UTC")


# --- numbers ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 min"), (29, "0 min"), (31, "1 min"), (3599, "1 h 00 min"), (5400, "1 h 30 min"), (float("nan"), "0 min")],
)
def test_durations_read_like_time_spent(seconds, text):
    assert formatting.duration(seconds) == text


def test_changes_and_shares_say_which_way():
    assert formatting.signed_duration(3900) == "+1 h 05 min"
    assert formatting.signed_duration(-720) == "−12 min"
    assert formatting.signed_duration(10) == "±0 min"
    assert formatting.share(1, 4) == "25 %" and formatting.share(1, 0) == "–"


def test_devices_with_the_same_name_can_be_told_apart():
    labels = formatting.device_labels({"aaaaaaaa-1": "laptop", "bbbbbbbb-2": "laptop", "c": "desk"})
    assert labels == {"aaaaaaaa-1": "laptop (aaaaaaaa)", "bbbbbbbb-2": "laptop (bbbbbbbb)", "c": "desk"}


def test_errors_are_one_line():
    assert one_line(ValueError("first line\nsecond line")) == "first line"
    assert one_line(ValueError("")) == "ValueError"

    class Refused(grpc.RpcError):
        def details(self):
            return "wrong email or password"

        def code(self):
            return grpc.StatusCode.UNAUTHENTICATED

    assert one_line(Refused()) == "wrong email or password"


# --- focus ------------------------------------------------------------------------------------------------------


def sessions_frame() -> pd.DataFrame:
    starts = pd.to_datetime(["2026-11-27T09:00Z", "2026-11-27T11:00Z", "2026-11-27T14:00Z"], utc=True)
    return pd.DataFrame(
        {
            "start": starts,
            "end": starts + pd.to_timedelta([3600, 1800, 7200], unit="s"),
            "active_seconds": [3600.0, 1800.0, 7200.0],
            "context_switches": [6, 6, 4],
            "keystrokes": [1, 2, 3],
            "clicks": [1, 1, 1],
        }
    )


def test_focus_summary_counts_streaks_breaks_and_switches_per_hour():
    sessions = sessions_frame()
    breaks = pd.DataFrame({"seconds": [3600.0, 5400.0]})
    summary = streaks.summarize(sessions, breaks)
    assert summary.sessions == 3 and summary.breaks == 2
    assert summary.longest_seconds == 7200.0 and summary.break_seconds == 9000.0
    assert summary.switches_per_hour == pytest.approx(16 / 3.5)
    top = streaks.longest_streaks(sessions, n=2)
    assert list(top["active_seconds"]) == [7200.0, 3600.0]
    assert list(top["switches_per_hour"]) == [2.0, 6.0]


def test_switches_by_hour_are_local_and_empty_without_focus():
    by_hour = streaks.switches_by_hour(sessions_frame(), "Europe/Prague")
    assert dict(zip(by_hour["hour"], by_hour["switches_per_hour"], strict=True)) == {10: 6.0, 12: 12.0, 15: 2.0}
    empty = streaks.switches_by_hour(sessions_frame().iloc[0:0], "UTC")
    assert empty.empty and list(empty.columns) == ["hour", "switches_per_hour"]
    assert streaks.summarize(sessions_frame().iloc[0:0], pd.DataFrame({"seconds": []})).switches_per_hour == 0.0


# --- export -----------------------------------------------------------------------------------------------------


def test_exports_write_utc_timestamps_and_plain_numbers():
    df = pd.DataFrame(
        {
            "start": pd.to_datetime(["2026-11-27T09:00:00.250Z"], utc=True).astype("datetime64[ms, UTC]"),
            "app": ["Code, the editor"],
            "keystrokes": pd.Series([12], dtype="int64"),
            "idle": [False],
        }
    )
    rows = json.loads(export.to_json(df))
    assert rows == [{"start": "2026-11-27T09:00:00.250Z", "app": "Code, the editor", "keystrokes": 12, "idle": False}]
    assert export.to_csv(df).decode().splitlines() == [
        "start,app,keystrokes,idle",
        '2026-11-27T09:00:00.250Z,"Code, the editor",12,False',
    ]
    assert export.encode(df, "JSON")[1] == "application/json"
    with pytest.raises(ValueError, match="unknown export format"):
        export.encode(df, "XLSX")
    assert export.file_name("apps", date(2026, 11, 1), SATURDAY, "CSV") == "productimon-apps-2026-11-01-2026-11-28.csv"


# --- share links ------------------------------------------------------------------------------------------------


def test_only_views_about_a_period_can_be_shared():
    period = preset_period("Last 7 days", SATURDAY, PRAGUE)
    request = share.link_request("trends", period, "7 days")
    assert request == {
        "view": "trends",
        "period_start": int(period.start.timestamp()),
        "period_end": int(period.end.timestamp()),
        "tz": "Europe/Prague",
        "ttl_s": 7 * 86400,
    }
    for view in ("devices", "data", "categories", "sharing", "insights"):
        with pytest.raises(ValueError, match="cannot be shared"):
            share.link_request(view, period, "1 day")
        with pytest.raises(share.ShareRefused):
            share.shared_view("id", "user", view, request["period_start"], request["period_end"], "UTC", 0)
    with pytest.raises(ValueError, match="lifetime"):
        share.link_request("trends", period, "forever")


def test_an_opened_link_shows_its_own_period():
    period = preset_period("This week", SATURDAY, PRAGUE)
    view = share.shared_view(
        "id", "user", "overview", int(period.start.timestamp()), int(period.end.timestamp()), "Europe/Prague", 1
    )
    assert view.period == period
    with pytest.raises(share.ShareRefused, match="empty"):
        share.shared_view("id", "user", "overview", 10, 10, "UTC", 1)


def test_the_share_url_carries_only_the_token():
    url = share.share_url("https://dash.example.org:8501/sharing?token=secret#x", "abc.def.ghi")
    assert url == "https://dash.example.org:8501/?share=abc.def.ghi"


def test_a_share_token_reads_as_nothing_but_its_link_id_and_only_opens_links(tmp_path):
    private, public = ensure_signing_key(tmp_path)
    link_id = str(uuid.uuid4())
    now = int(time.time())
    token = issue_share_token(private, link_id, 600, now=now)
    # What anyone holding the link can read, without any key.
    readable = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert readable == {
        "iss": "productimon",
        "sub": link_id,
        "scope": SHARE_SCOPE,
        "iat": now,
        "exp": now + 600,
        "jti": link_id,
    }
    assert verify_token(public, token, SHARE_SCOPE).token_id == link_id
    with pytest.raises(TokenError, match="not valid for dashboard"):
        verify_token(public, token, DASHBOARD_SCOPE)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    clock = Clock()
    store = IdentityStore(
        tmp_path / "identity.sqlite3",
        clock=clock,
        password_hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )
    store.clock = clock
    yield store
    store.close()


def test_share_links_are_listed_opened_revoked_and_expire(store):
    alice = store.sign_up("alice@example.com", "correct horse battery staple")
    bob = store.sign_up("bob@example.com", "correct horse battery staple")
    link_id = str(uuid.uuid4())
    link = store.add_share_link(alice.id, link_id, "trends", 100, 200, "UTC", 3600)
    assert store.open_share_link(link_id) == link  # the id alone says whose link it is and what it shows
    assert store.list_share_links(alice.id) == [link] and store.list_share_links(bob.id) == []
    with pytest.raises(InvalidShareLink, match="does not exist"):
        store.open_share_link(str(uuid.uuid4()))
    with pytest.raises(InvalidShareLink, match="no share link"):
        store.revoke_share_link(bob.id, link_id)
    store.revoke_share_link(alice.id, link_id)
    with pytest.raises(InvalidShareLink, match="revoked"):
        store.open_share_link(link_id)

    other = str(uuid.uuid4())
    store.add_share_link(alice.id, other, "overview", 100, 200, "UTC", 60)
    store.clock.now += 61
    with pytest.raises(InvalidShareLink, match="expired"):
        store.open_share_link(other)
    assert [listed.id for listed in store.list_share_links(alice.id)] == [link_id]

    store.delete_user(alice.id)
    with pytest.raises(InvalidShareLink):
        store.open_share_link(link_id)


@pytest.mark.parametrize(
    ("view", "start", "end", "tz", "ttl", "message"),
    [
        ("Trends!", 1, 2, "UTC", 60, "not a view that can be shared"),
        ("trends", 2, 1, "UTC", 60, "ends before it starts"),
        ("trends", 1, 2, "", 60, "time zone"),
        ("trends", 1, 2, "UTC", 59, "lasts from"),
        ("trends", 1, 2, "UTC", 91 * 86400, "lasts from"),
    ],
)
def test_a_share_link_that_makes_no_sense_is_refused(store, view, start, end, tz, ttl, message):
    alice = store.sign_up("alice@example.com", "correct horse battery staple")
    with pytest.raises(InvalidShareLink, match=message):
        store.add_share_link(alice.id, str(uuid.uuid4()), view, start, end, tz, ttl)
