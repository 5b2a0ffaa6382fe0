"""The query API against the real embedded warehouse server: exact answers, one user at a time, and
category rules applied at query time.

The fixture day is Tuesday 2026-03-10 (UTC). Europe/Prague is UTC+1 then, so the desk's late Terminal
interval falls on Wednesday in Prague.
"""

from __future__ import annotations

import inspect
import math
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from stream_jobs.rows import interval_columns
from stream_jobs.trim import site_of
from tests.conftest import lone_warehouse
from warehouse import queries
from warehouse.categories import (
    InvalidRule,
    RuleNotFound,
    add_rule,
    delete_rule,
    list_rules,
    preview_rule,
    update_rule,
)
from warehouse.imports import ImportStream, register_stream, store_source_intervals
from warehouse.rollups import rebuild_touched
from warehouse.writes import APP_SESSION_COLUMNS, FOCUS_SESSION_COLUMNS, NO_DELETIONS, store_intervals, store_rows

DAY = datetime(2026, 3, 10, tzinfo=UTC)
PERIOD = (DAY, DAY + timedelta(days=1))
PRAGUE = "Europe/Prague"


def at(hh: int, mm: int, day: datetime = DAY) -> datetime:
    return day + timedelta(hours=hh, minutes=mm)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def interval(device, start, end, app, title="", site="", keys=0, clicks=0, idle=False, seq=0) -> dict:
    return {
        "device_id": device,
        "event_id": str(uuid.uuid4()),
        "device_seq": seq,
        "start": ms(start),
        "end": ms(end),
        "app": app,
        "title": title,
        "site": site,
        "keystrokes": keys,
        "clicks": clicks,
        "idle": idle,
        "received_at": ms(end),
    }


def store(client, user: str, intervals: list[dict]) -> None:
    """Store the intervals and roll them up, as the worker does."""
    owned = [{**i, "user_id": user} for i in intervals]
    store_intervals(client, NO_DELETIONS, interval_columns(owned))
    rebuild_touched(client, owned)


def day_of(user_mark: str = "") -> list[dict]:
    """The fixture day; `user_mark` is added to every name so another user's data is recognisable."""
    m = user_mark
    return [
        interval("laptop", at(9, 0), at(9, 10), f"Code{m}", f"main.py — proj{m}", keys=100, clicks=5),
        interval("laptop", at(9, 10), at(9, 15), f"Firefox{m}", f"GitHub PR{m}", f"github.com{m}", 10, 20),
        interval("laptop", at(9, 15), at(9, 25), f"Firefox{m}", f"GitHub PR{m}", f"github.com{m}", idle=True),
        interval("laptop", at(9, 55), at(10, 5), f"Code{m}", f"test.py — proj{m}", keys=50, clicks=1),
        interval("desk", at(22, 50), at(23, 0), f"Firefox{m}", f"Docs{m}", f"docs.python.org{m}", 5, 7),
        interval("desk", at(23, 30), at(23, 50), f"Terminal{m}", f"bash{m}", keys=200),
    ]


def the_day_before(user_mark: str = "") -> list[dict]:
    before = DAY - timedelta(days=1)
    return [
        interval("laptop", at(8, 0, before), at(8, 20, before), f"Code{user_mark}", "old.py"),
        interval("laptop", at(10, 0, before), at(10, 5, before), f"Slack{user_mark}", "general"),
    ]


def app_session(user, device, sid, app, site, start, end, active_s, keys, clicks, closed=True, version=1):
    return (user, device, sid, app, site, start, end, active_s * 1000, keys, clicks, 1, closed, version)


def focus_session(user, device, sid, start, end, active_s, switches, sessions, keys, clicks, closed=True, version=1):
    return (user, device, sid, start, end, active_s * 1000, switches, sessions, keys, clicks, closed, version)


def sessions_of(client, user: str, m: str = "") -> None:
    app_rows = [
        # An open version first, then the longer closed one: only the latest may count.
        app_session(user, "laptop", f"s1{m}", f"Code{m}", "", at(9, 0), at(9, 5), 300, 50, 2, closed=False),
        app_session(user, "laptop", f"s1{m}", f"Code{m}", "", at(9, 0), at(9, 10), 600, 100, 5, version=2),
        app_session(user, "laptop", f"s2{m}", f"Firefox{m}", f"github.com{m}", at(9, 10), at(9, 15), 300, 10, 20),
        app_session(user, "laptop", f"s3{m}", f"Code{m}", "", at(9, 55), at(10, 5), 600, 50, 1),
        app_session(user, "desk", f"s4{m}", f"Firefox{m}", f"docs.python.org{m}", at(22, 50), at(23, 0), 600, 5, 7),
        app_session(user, "desk", f"s5{m}", f"Terminal{m}", "", at(23, 30), at(23, 50), 1200, 200, 0),
    ]
    store_rows(client, NO_DELETIONS, "app_sessions", APP_SESSION_COLUMNS, app_rows)
    focus_rows = [
        focus_session(user, "laptop", f"f1{m}", at(9, 0), at(9, 10), 600, 0, 1, 100, 5, closed=False),
        focus_session(user, "laptop", f"f1{m}", at(9, 0), at(9, 15), 900, 1, 2, 110, 25, version=2),
        focus_session(user, "laptop", f"f2{m}", at(9, 55), at(10, 5), 600, 0, 1, 50, 1),
        focus_session(user, "desk", f"f3{m}", at(22, 50), at(23, 0), 600, 0, 1, 5, 7),
        focus_session(user, "desk", f"f4{m}", at(23, 30), at(23, 50), 1200, 0, 1, 200, 0),
    ]
    store_rows(client, NO_DELETIONS, "focus_sessions", FOCUS_SESSION_COLUMNS, focus_rows)


def device(client, user: str, device_id: str, name: str, os: str = "Linux") -> None:
    client.insert(
        "devices",
        [[user, device_id, name, os, "6.1", False, DAY]],
        column_names=["user_id", "device_id", "name", "os", "os_version", "revoked", "updated_at"],
    )


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with lone_warehouse(tmp_path_factory.mktemp("queries")) as c:
        # alice is the user under test; bob has the same day, the same device ids and "bob" in every name.
        store(c, "alice", day_of() + the_day_before())
        sessions_of(c, "alice")
        device(c, "alice", "laptop", "Alice's laptop")
        store(c, "bob", day_of("-bob") + the_day_before("-bob"))
        sessions_of(c, "bob", "-bob")
        device(c, "bob", "laptop", "bob's laptop", os="bob-os")
        device(c, "bob", "desk", "bob's desk")
        add_rule(c, "bob", "app", ".", "bob/Everything")
        yield c


def as_dict(df: pd.DataFrame, key: str, value: str) -> dict:
    return dict(zip(df[key], df[value], strict=True))


# --- totals and time per app, site, device ------------------------------------------------------------------


def test_totals_count_active_and_idle_time_keys_clicks_and_sessions_of_the_day(client):
    row = queries.totals(client, "alice", *PERIOD).iloc[0].to_dict()
    assert row == {
        "active_seconds": 3300.0,
        "idle_seconds": 600.0,
        "keystrokes": 365,
        "clicks": 33,
        "app_sessions": 5,
        "focus_sessions": 4,
    }


def test_time_per_app_orders_by_time_then_name(client):
    df = queries.time_per_app(client, "alice", *PERIOD)
    assert list(df["app"]) == ["Code", "Terminal", "Firefox"]
    assert list(df["seconds"]) == [1200.0, 1200.0, 900.0]


def test_intervals_are_clipped_to_a_period_that_is_not_hour_aligned(client):
    period = (at(9, 5), at(10, 2))
    assert as_dict(queries.time_per_app(client, "alice", *period), "app", "seconds") == {
        "Code": 720.0,
        "Firefox": 300.0,
    }
    row = queries.totals(client, "alice", *period).iloc[0]
    # Keys and clicks count where their interval started: the 09:00 Code interval started before the period.
    assert (row["active_seconds"], row["idle_seconds"], row["keystrokes"], row["clicks"]) == (1020.0, 600.0, 60, 21)


def test_a_period_mixing_whole_hours_and_partial_hours_is_exact(client):
    period = (at(8, 30), at(10, 2))
    assert as_dict(queries.time_per_app(client, "alice", *period), "app", "seconds") == {
        "Code": 1020.0,
        "Firefox": 300.0,
    }
    assert queries.totals(client, "alice", *period).iloc[0]["keystrokes"] == 160


def test_a_period_inside_one_hour_is_exact(client):
    period = (at(9, 12), at(9, 58))
    assert as_dict(queries.time_per_app(client, "alice", *period), "app", "seconds") == {
        "Firefox": 180.0,
        "Code": 180.0,
    }


def test_time_per_site_leaves_out_time_without_a_site(client):
    df = queries.time_per_site(client, "alice", *PERIOD)
    assert list(df.itertuples(index=False, name=None)) == [("docs.python.org", 600.0), ("github.com", 300.0)]


def test_time_per_device_names_known_devices_and_falls_back_to_the_id(client):
    df = queries.time_per_device(client, "alice", *PERIOD)
    assert list(df.itertuples(index=False, name=None)) == [
        ("desk", "desk", "", 1800.0, 205, 7),
        ("laptop", "Alice's laptop", "Linux", 1500.0, 160, 26),
    ]


# --- sessions ------------------------------------------------------------------------------------------------


def test_timeline_shows_the_latest_version_of_each_app_session_per_device(client):
    df = queries.app_timeline(client, "alice", *PERIOD)
    assert list(df["session_id"]) == ["s4", "s5", "s1", "s2", "s3"]
    assert list(df["device_name"]) == ["desk", "desk", "Alice's laptop", "Alice's laptop", "Alice's laptop"]
    s1 = df[df["session_id"] == "s1"].iloc[0]
    assert (s1["end"], s1["active_seconds"], s1["keystrokes"], bool(s1["closed"])) == (at(9, 10), 600.0, 100, True)
    assert df["start"].dtype == "datetime64[ms, UTC]"


def test_timeline_day_follows_the_time_zone(client):
    tuesday = queries.app_timeline(client, "alice", *PERIOD, day=date(2026, 3, 10), tz=PRAGUE)
    wednesday = queries.app_timeline(client, "alice", *PERIOD, day=date(2026, 3, 11), tz=PRAGUE)
    assert sorted(tuesday["session_id"]) == ["s1", "s2", "s3", "s4"]
    assert list(wednesday["session_id"]) == ["s5"]


def test_timeline_defaults_to_the_last_day_of_the_period(client):
    df = queries.app_timeline(client, "alice", DAY - timedelta(days=3), DAY + timedelta(days=1))
    assert len(df) == 5


def test_focus_sessions_carry_the_break_before_them(client):
    df = queries.focus_sessions(client, "alice", *PERIOD)
    assert list(df["session_id"]) == ["f1", "f2", "f3", "f4"]
    assert list(df["active_seconds"]) == [900.0, 600.0, 600.0, 1200.0]
    assert list(df["context_switches"]) == [1, 0, 0, 0]
    assert math.isnan(df["break_before_seconds"].iloc[0])
    assert list(df["break_before_seconds"].iloc[1:]) == [2400.0, 45900.0, 1800.0]


def test_a_focus_session_cut_at_an_edge_counts_only_the_app_sessions_in_what_is_shown(client):
    """f1 (9:00-9:15) holds s1 (9:00-9:10) and s2 (9:10-9:15): cut at 9:12 it shows s2 alone, cut at 9:08 s1 alone."""
    late = queries.focus_sessions(client, "alice", at(9, 12), at(23, 40))
    f1 = late[late["session_id"] == "f1"].iloc[0]
    assert (f1["start"], f1["end"], f1["app_sessions"], f1["context_switches"]) == (at(9, 12), at(9, 15), 1, 0)
    early = queries.focus_sessions(client, "alice", at(8, 0), at(9, 8))
    f1 = early[early["session_id"] == "f1"].iloc[0]
    assert (f1["start"], f1["end"], f1["app_sessions"], f1["context_switches"]) == (at(9, 0), at(9, 8), 1, 0)
    both = queries.focus_sessions(client, "alice", at(9, 5), at(9, 14))
    f1 = both[both["session_id"] == "f1"].iloc[0]
    assert (f1["app_sessions"], f1["context_switches"]) == (2, 1)


def test_focus_breaks_are_the_gaps_between_focus_sessions(client):
    df = queries.focus_breaks(client, "alice", *PERIOD)
    assert list(df["seconds"]) == [2400.0, 45900.0, 1800.0]
    assert list(df["start"]) == [at(9, 15), at(10, 5), at(23, 0)]
    assert list(df["end"]) == [at(9, 55), at(22, 50), at(23, 30)]


# --- local time ------------------------------------------------------------------------------------------------


def test_daily_trend_splits_days_at_local_midnight(client):
    utc = queries.daily_trend(client, "alice", DAY, DAY + timedelta(days=2))
    assert list(utc["active_seconds"]) == [3300.0, 0.0]
    prague_days = (datetime(2026, 3, 9, 23, tzinfo=UTC), datetime(2026, 3, 11, 23, tzinfo=UTC))
    prague = queries.daily_trend(client, "alice", *prague_days, tz=PRAGUE)
    assert list(prague["day"]) == [pd.Timestamp("2026-03-10"), pd.Timestamp("2026-03-11")]
    assert list(prague["active_seconds"]) == [2100.0, 1200.0]
    assert list(prague["idle_seconds"]) == [600.0, 0.0]
    assert list(prague["keystrokes"]) == [165, 200]
    assert list(prague["clicks"]) == [33, 0]


def test_heatmap_places_time_in_local_weekday_and_hour(client):
    def cells(tz):
        df = queries.weekday_hour_heatmap(client, "alice", *PERIOD, tz=tz)
        assert len(df) == 7 * 24
        busy = df[df["active_seconds"] > 0]
        return {(w, h): (s, k, c) for w, h, s, k, c in busy.itertuples(index=False, name=None)}

    assert cells("UTC") == {
        (2, 9): (1200.0, 160, 26),
        (2, 10): (300.0, 0, 0),
        (2, 22): (600.0, 5, 7),
        (2, 23): (1200.0, 200, 0),
    }
    assert cells(PRAGUE) == {
        (2, 10): (1200.0, 160, 26),
        (2, 11): (300.0, 0, 0),
        (2, 23): (600.0, 5, 7),
        (3, 0): (1200.0, 200, 0),
    }


def test_intensity_is_keys_and_clicks_per_active_minute_per_local_hour(client):
    df = queries.input_intensity(client, "alice", *PERIOD).set_index("hour")
    assert len(df) == 24
    assert (df.loc[9, "keys_per_active_minute"], df.loc[9, "clicks_per_active_minute"]) == (8.0, 1.3)
    assert df.loc[23, "keys_per_active_minute"] == 10.0
    assert df.loc[3, "keys_per_active_minute"] == 0.0
    prague = queries.input_intensity(client, "alice", *PERIOD, tz=PRAGUE).set_index("hour")
    assert prague.loc[0, "keystrokes"] == 200


@pytest.mark.parametrize("tz", ["Mars/Olympus", "UTC'); DROP TABLE intervals; --", ""])
def test_an_unknown_time_zone_is_refused(client, tz):
    with pytest.raises(ValueError, match="time zone"):
        queries.daily_trend(client, "alice", *PERIOD, tz=tz)


def test_a_naive_datetime_is_refused(client):
    with pytest.raises(ValueError, match="timezone-aware"):
        queries.time_per_app(client, "alice", datetime(2026, 3, 10), datetime(2026, 3, 11))


# --- titles and comparisons -------------------------------------------------------------------------------------


def test_top_titles_of_the_top_app_by_default(client):
    df = queries.top_titles(client, "alice", *PERIOD)
    assert list(df.itertuples(index=False, name=None)) == [
        ("main.py — proj", 600.0, 100, 5),
        ("test.py — proj", 600.0, 50, 1),
    ]
    firefox = queries.top_titles(client, "alice", *PERIOD, app="Firefox", limit=1)
    assert list(firefox["title"]) == ["Docs"]


def test_comparison_with_the_previous_period_of_the_same_length(client):
    df = queries.compare_periods(client, "alice", *PERIOD)
    assert list(df["key"]) == ["Terminal", "Firefox", "Slack", "Code"]
    assert list(df["delta_seconds"]) == [1200.0, 900.0, -300.0, 0.0]
    assert list(df["previous_seconds"]) == [0.0, 0.0, 300.0, 1200.0]
    assert math.isnan(df["delta_ratio"].iloc[0])
    assert list(df["delta_ratio"].iloc[2:]) == [-1.0, 0.0]


def test_comparison_with_a_chosen_period_by_device(client):
    earlier = (DAY - timedelta(days=1), DAY)
    df = queries.compare_periods(client, "alice", *PERIOD, compare_to=earlier, by="device")
    assert as_dict(df, "key", "delta_seconds") == {"desk": 1800.0, "laptop": 1500.0 - 1500.0}


# --- one user at a time ---------------------------------------------------------------------------------------
#
# Every answer of the query API for a user is exactly the same with and without another user's data present:
# another user with the same apps, sites, titles, categories, device ids and names, in the same hours, with the
# same session ids and more sessions in the first user's breaks. A function that reads any of it, strings or
# numbers, changes its answer and fails. The users are fresh, so no other test's data matters.

ODD = (at(9, 5), at(23, 40))  # partial hours at both edges, whole hours between; it cuts f1, s1, f4 and s5
INSIDE = (at(9, 12), at(9, 58))  # inside one UTC hour: raw intervals only
TWO_DAYS = (DAY - timedelta(days=1), DAY + timedelta(days=1))
PRAGUE_DAYS = (datetime(2026, 3, 9, 23, tzinfo=UTC), datetime(2026, 3, 11, 23, tzinfo=UTC))

# Public query functions that take (client, user_id, ...) and are not in queries.QUERY_FUNCTIONS (the registry the
# benchmark times, each callable as fn(client, user_id, start, end)): checked all the same.
NOT_IN_REGISTRY = {"export_intervals", "app_order", "clip_sessions", "import_streams", "time_per_source"}
# Public functions taking (client, user_id, ...) that the isolation check leaves out, by name, each with the reason
# it may. None: every function serving one user is checked. (Nothing here answers across people: that is
# warehouse/insights.py, noisy, tested in tests/integration/test_insights.py.)
NOT_CHECKED_FOR_ISOLATION: dict[str, str] = {}


def sessions_to_clip(same_app: bool) -> pd.DataFrame:
    """The subject's sessions that cross ODD's edges, as `clip_sessions` receives them (uncut)."""
    rows = [
        ("laptop", "s1" if same_app else "f1", "Code", "", at(9, 0), at(9, 10 if same_app else 15), 600.0, 100, 5),
        ("desk", "s5" if same_app else "f4", "Terminal", "", at(23, 30), at(23, 50), 1200.0, 200, 0),
    ]
    columns = ["device_id", "session_id", "app", "site", "start", "end", "active_seconds", "keystrokes", "clicks"]
    df = pd.DataFrame(rows, columns=columns).astype({"start": "datetime64[ms, UTC]", "end": "datetime64[ms, UTC]"})
    if not same_app:
        df = df.drop(columns=["app", "site"]).assign(context_switches=[1, 0], app_sessions=[2, 1])
    return df


def isolation_calls() -> dict[str, tuple[str, Callable[[object, str], pd.DataFrame]]]:
    """Each call of the check by label: the query function's name, and the call for a user. Together they take
    every function through every table it reads (rollups, raw edges, sessions, devices, rules) and its options."""
    calls: dict[str, tuple[str, Callable[[object, str], pd.DataFrame]]] = {}

    def add(label: str, name: str, *args, **kwargs) -> None:
        # Looked up at call time, so the check runs the module as it is.
        calls[f"{name}[{label}]"] = (name, lambda client, user: getattr(queries, name)(client, user, *args, **kwargs))

    laptop, desk = {"devices": ["laptop"]}, {"devices": ["desk"]}
    add("odd hours", "totals", *ODD)
    add("inside an hour", "totals", *INSIDE)
    add("two days", "totals", *TWO_DAYS)
    add("laptop", "totals", *ODD, **laptop)
    add("odd hours", "time_per_app", *ODD)
    add("inside an hour", "time_per_app", *INSIDE)
    add("desk", "time_per_app", *TWO_DAYS, **desk)
    add("odd hours", "time_per_site", *ODD)
    add("day", "time_per_site", *PERIOD)
    add("odd hours", "time_per_category", *ODD)
    add("depth 1", "time_per_category", *TWO_DAYS, depth=1)
    add("odd hours", "time_per_device", *ODD)
    add("two days", "time_per_device", *TWO_DAYS)
    add("app", "rule_matches", *ODD, field="app", pattern="o")
    add("site", "rule_matches", *ODD, field="site", pattern="github|docs")
    add("title", "rule_matches", *ODD, field="title", pattern="proj|PR|bash")
    add("odd hours", "app_timeline", *ODD)
    add("Prague", "app_timeline", *TWO_DAYS, day=date(2026, 3, 10), tz=PRAGUE)
    add("laptop", "app_timeline", *PERIOD, **laptop)
    add("odd hours", "focus_sessions", *ODD)
    add("two days", "focus_sessions", *TWO_DAYS)
    add("desk", "focus_sessions", *ODD, **desk)
    add("odd hours", "focus_breaks", *ODD)
    add("two days", "focus_breaks", *TWO_DAYS)
    add("Prague", "weekday_hour_heatmap", *ODD, tz=PRAGUE)
    add("Prague", "daily_trend", *PRAGUE_DAYS, tz=PRAGUE)
    add("Kolkata", "daily_trend", *TWO_DAYS, tz="Asia/Kolkata")
    add("odd hours", "input_intensity", *ODD)
    add("Prague", "input_intensity", *TWO_DAYS, tz=PRAGUE)
    add("top app", "top_titles", *ODD)
    add("Firefox", "top_titles", *ODD, app="Firefox", limit=1)
    add("Code", "top_titles", *TWO_DAYS, app="Code")
    add("by site", "compare_periods", *PERIOD, by="site")
    add("by category", "compare_periods", *PERIOD, by="category")
    add("by device", "compare_periods", *PERIOD, compare_to=(DAY - timedelta(days=1), DAY), by="device")
    add("odd hours", "compare_periods", *ODD)
    add("two days", "export_intervals", *TWO_DAYS)
    add("laptop", "export_intervals", *ODD, **laptop)
    add("all time", "app_order")
    add("all", "import_streams")
    add("odd hours", "time_per_source", *ODD)
    add("day", "time_per_source", *PERIOD)
    add("app sessions", "clip_sessions", sessions_to_clip(same_app=True), *ODD, same_app=True)
    add("focus sessions", "clip_sessions", sessions_to_clip(same_app=False), *ODD, same_app=False)
    return calls


ISOLATION_CALLS = isolation_calls()
# The calls whose answers depend on the user's category rules, also made for a subject with a rule on titles.
CATEGORY_CALLS = [label for label in ISOLATION_CALLS if "category" in label]


def imported(client, user: str, app: str, title: str, start: datetime, end: datetime, host: str = "laptop") -> None:
    """An imported editor stream of the user (warehouse/imports.py), named as the gateway names it, with one
    interval; the same stream id for every user, as a forged id would be."""
    stream = ImportStream(user, f"aw-editor-{host}", "laptop", host, "editor")
    register_stream(client, stream)
    device(client, user, stream.device_id, f"{host} (ActivityWatch editor)")
    row = (user, stream.device_id, "editor", str(uuid.uuid4()), 0, start, end, app, title, "", start)
    store_source_intervals(client, NO_DELETIONS, [row])


def the_other_users_day(subject_intervals: list[dict]) -> list[dict]:
    """The subject's intervals with other keys and clicks (same event ids, devices, times and names), and more in
    the subject's breaks, across the period edges, on a device of its own and earlier."""
    copies = [{**i, "keystrokes": i["keystrokes"] * 3 + 1, "clicks": i["clicks"] * 2 + 1} for i in subject_intervals]
    before = DAY - timedelta(days=1)
    return copies + [
        interval("laptop", at(9, 0), at(9, 30), "Firefox", "GitHub PR", "github.com", 3, 3),
        interval("laptop", at(9, 25), at(9, 50), "Code", "main.py — proj", keys=40, clicks=4),
        interval("laptop", at(9, 50), at(9, 58), "Firefox", "GitHub PR", "github.com", idle=True),
        interval("desk", at(8, 50), at(9, 8), "Terminal", "bash", keys=9),
        interval("desk", at(12, 0), at(12, 30), "Terminal", "bash", keys=30),
        interval("desk", at(23, 35), at(23, 45), "Firefox", "Docs", "docs.python.org", 2, 2),
        interval("phone", at(9, 10), at(9, 20), "Firefox", "GitHub PR", "github.com", 1, 9),
        interval("laptop", at(7, 0, before), at(7, 30, before), "Slack", "general", keys=11),
    ]


def the_other_users_sessions(client, user: str) -> None:
    sessions_of(client, user)  # the subject's very sessions: same ids, devices, apps, times
    before = DAY - timedelta(days=1)
    app_rows = [
        app_session(user, "laptop", "s1", "Code", "", at(9, 0), at(9, 12), 700, 120, 6, version=3),
        app_session(user, "laptop", "s6", "Code", "", at(9, 25), at(9, 50), 1500, 40, 4),
        app_session(user, "desk", "s7", "Terminal", "", at(12, 0), at(12, 30), 1800, 30, 0),
        app_session(user, "phone", "s8", "Firefox", "github.com", at(9, 10), at(9, 20), 600, 1, 9),
        app_session(user, "laptop", "s0", "Slack", "", at(7, 0, before), at(7, 30, before), 1800, 11, 0),
    ]
    store_rows(client, NO_DELETIONS, "app_sessions", APP_SESSION_COLUMNS, app_rows)
    focus_rows = [
        focus_session(user, "laptop", "f1", at(9, 0), at(9, 20), 1000, 2, 3, 130, 30, version=3),
        focus_session(user, "laptop", "f5", at(9, 25), at(9, 50), 1500, 0, 1, 40, 4),
        focus_session(user, "desk", "f6", at(12, 0), at(12, 30), 1800, 0, 1, 30, 0),
        focus_session(user, "phone", "f7", at(9, 10), at(9, 20), 600, 0, 1, 1, 9),
    ]
    store_rows(client, NO_DELETIONS, "focus_sessions", FOCUS_SESSION_COLUMNS, focus_rows)


@pytest.fixture(scope="module")
def isolation(client) -> dict[str, dict[str, pd.DataFrame]]:
    """Every call's answer for each subject before and after the other user's data arrives, and the other's.

    Subjects: `rollup` has rules on apps and sites (categories come from the rollups), `titles` also a rule on
    titles (categories come from the raw intervals), `nobody` has no data and an id that tries to be SQL."""
    mark = uuid.uuid4().hex[:8]
    subjects = {"rollup": f"iso-{mark}-a", "titles": f"iso-{mark}-t", "nobody": f"iso-{mark}-n' OR '1'='1"}
    other = f"iso-{mark}-b"

    def answers(user: str, labels=ISOLATION_CALLS) -> dict[str, pd.DataFrame]:
        return {label: ISOLATION_CALLS[label][1](client, user) for label in labels}

    results: dict[str, dict[str, pd.DataFrame]] = {label: {} for label in ISOLATION_CALLS}
    for label, df in answers(subjects["nobody"]).items():
        results[label]["nobody before"] = df
    subject_intervals = day_of() + the_day_before()
    for user in (subjects["rollup"], subjects["titles"]):
        store(client, user, subject_intervals)
        sessions_of(client, user)
        device(client, user, "laptop", "Shared laptop")
        imported(client, user, "vim", "rocket", at(9, 0), at(9, 40))
    add_rule(client, subjects["rollup"], "app", "^Code$", "Work/Programming")
    add_rule(client, subjects["rollup"], "site", r"github\.com", "Work/Review")
    add_rule(client, subjects["titles"], "title", r"^main\.py", "Work/Main")
    add_rule(client, subjects["titles"], "app", "^Code$", "Work/Programming")
    for label, df in answers(subjects["rollup"]).items():
        results[label]["rollup before"] = df
    for label, df in answers(subjects["titles"], CATEGORY_CALLS).items():
        results[label]["titles before"] = df

    store(client, other, the_other_users_day(subject_intervals))
    the_other_users_sessions(client, other)
    device(client, other, "laptop", "Shared laptop")
    device(client, other, "desk", "Desk", os="Windows")
    device(client, other, "phone", "Phone", os="Android")
    imported(client, other, "vim", "rocket", at(9, 20), at(10, 0), host="other-host")
    imported(client, other, "emacs", "rocket", at(8, 0), at(12, 0))
    add_rule(client, other, "app", ".", "Work/Programming")
    add_rule(client, other, "title", "proj", "Work/Main")
    add_rule(client, other, "site", "github", "Work/Review")

    for subject, user in subjects.items():
        for label, df in answers(user, CATEGORY_CALLS if subject == "titles" else ISOLATION_CALLS).items():
            results[label][f"{subject} after"] = df
    for label, df in answers(other).items():
        results[label]["other"] = df
    return results


def frames_differ(one: pd.DataFrame, another: pd.DataFrame) -> str:
    """Why the two frames are not exactly the same (values, order, dtypes), or '' when they are."""
    try:
        pd.testing.assert_frame_equal(one, another, check_exact=True)
    except AssertionError as difference:
        return str(difference)
    return ""


def shows_something(df: pd.DataFrame) -> bool:
    numbers = df.select_dtypes("number")
    return not df.empty and bool((numbers.fillna(0) != 0).to_numpy().any() or len(numbers.columns) < len(df.columns))


@pytest.mark.parametrize("label", sorted(ISOLATION_CALLS))
def test_a_users_answers_are_the_same_with_another_users_data_present(isolation, label):
    """Exactly equal, numbers included, in order, whatever the other user has in the same apps, hours, sessions."""
    answers = isolation[label]
    for subject in ("rollup", "titles", "nobody"):
        if f"{subject} before" not in answers:
            continue  # the titles subject only answers CATEGORY_CALLS
        before, after = answers[f"{subject} before"], answers[f"{subject} after"]
        if difference := frames_differ(before, after):
            pytest.fail(
                f"{label} for user {subject!r} changed when another user's data arrived: it reads another user's "
                f"rows.\n{difference}\nbefore:\n{before}\nafter:\n{after}"
            )
    # The check can only fail if there is something to change: the subject's answer shows its data, and the other
    # user's answer to the same call differs from it.
    assert shows_something(answers["rollup before"]), answers["rollup before"]
    assert frames_differ(answers["other"], answers["rollup before"]), f"{label}: the other user's data looks the same"
    if "titles before" in answers:  # and a rule on titles takes the categories from the raw intervals
        assert frames_differ(answers["titles before"], answers["rollup before"]), label


def test_the_isolation_check_calls_every_query_function_of_one_user():
    """A function added to the query API cannot be forgotten: every public function taking (client, user_id, ...)
    is in the registry or NOT_IN_REGISTRY, is called by the check or excused in NOT_CHECKED_FOR_ISOLATION, and
    every public function taking a client is one of those: none answers across people (warehouse/insights.py
    releases those, noisy)."""
    public = {
        name: list(inspect.signature(fn).parameters)
        for name, fn in vars(queries).items()
        if inspect.isfunction(fn) and fn.__module__ == queries.__name__ and not name.startswith("_")
    }
    of_one_user = {name for name, parameters in public.items() if parameters[:2] == ["client", "user_id"]}
    of_a_client = {name for name, parameters in public.items() if parameters[:1] == ["client"]}
    assert of_a_client == of_one_user
    assert all(fn is getattr(queries, name) for name, fn in queries.QUERY_FUNCTIONS.items())
    assert set(queries.QUERY_FUNCTIONS).isdisjoint(NOT_IN_REGISTRY)
    assert of_one_user == set(queries.QUERY_FUNCTIONS) | NOT_IN_REGISTRY | set(NOT_CHECKED_FOR_ISOLATION)
    called = {name for name, _ in ISOLATION_CALLS.values()}
    assert called == of_one_user - set(NOT_CHECKED_FOR_ISOLATION)


@pytest.mark.parametrize("name", sorted(queries.QUERY_FUNCTIONS))
def test_columns_and_dtypes_are_the_same_with_and_without_data(client, name):
    fn = queries.QUERY_FUNCTIONS[name]
    full = fn(client, "alice", *PERIOD)
    empty = fn(client, "nobody", *PERIOD)
    assert not full.empty
    assert list(empty.columns) == list(full.columns)
    assert list(empty.dtypes) == list(full.dtypes)


def test_app_order_is_the_users_apps_first_used_first_and_only_theirs(client):
    """The order the dashboard's app colours come from: every app of the user's sessions, by first use."""
    full = queries.app_order(client, "alice")
    assert list(full["app"]) == ["Code", "Firefox", "Terminal"]
    assert list(full["first_used"]) == [pd.Timestamp(t) for t in (at(9, 0), at(9, 10), at(23, 30))]
    for other in ("nobody", "alice' OR '1'='1"):
        empty = queries.app_order(client, other)
        assert empty.empty and list(empty.dtypes) == list(full.dtypes)


def test_a_user_with_no_data_gets_zero_totals_and_no_rows(client):
    assert queries.totals(client, "nobody", *PERIOD).iloc[0].sum() == 0
    assert queries.time_per_app(client, "nobody", *PERIOD).empty


# --- categories -------------------------------------------------------------------------------------------------


@pytest.fixture
def carol(client):
    """A fresh user with the fixture day and no rules."""
    user = f"carol-{uuid.uuid4().hex[:8]}"
    store(client, user, day_of())
    return user


def categories_of(client, user: str, **kwargs) -> dict[str, float]:
    return as_dict(queries.time_per_category(client, user, *PERIOD, **kwargs), "category", "seconds")


def test_without_rules_everything_is_uncategorized(client, carol):
    assert categories_of(client, carol) == {"Uncategorized": 3300.0}


def test_a_new_accounts_default_rules_compile_and_sort_the_demos_apps_and_sites_which_it_can_change(client):
    from infra.demo import HOME, WORK
    from warehouse.categories import DEFAULT_RULES, add_default_rules, delete_rule, validate_pattern

    for _, pattern, _ in DEFAULT_RULES:
        assert validate_pattern(client, pattern) == pattern  # compiled by the warehouse's own RE2
    user = f"dora-{uuid.uuid4().hex[:8]}"
    acts = [(app, site_of(url) if url else "") for app, _, url, *_ in (*WORK, *HOME)]
    store(client, user, [interval("d", at(9, n), at(9, n + 1), app, site=site) for n, (app, site) in enumerate(acts)])
    assert add_default_rules(client, user) == len(DEFAULT_RULES)
    assert add_default_rules(client, user) == 0  # never twice, and never over the account's own rules
    seconds = categories_of(client, user)
    assert seconds == {
        "Work/Programming": 360.0,  # Code at work twice and at home, Terminal, github.com, docs.python.org
        "Communication": 180.0,  # Slack, Thunderbird, Zoom
        "Leisure/Video and music": 120.0,  # youtube.com, Spotify
        "Leisure/Reading": 60.0,  # en.wikipedia.org
        "Leisure/Games": 60.0,  # Steam
        "Uncategorized": 120.0,  # a search and a map: google.com is neither work nor leisure
    }
    # They are the account's own rules: removing one relabels its time at once.
    games = next(r for r in list_rules(client, user).itertuples() if r.category == "Leisure/Games")
    delete_rule(client, user, games.rule_id)
    assert categories_of(client, user)["Uncategorized"] == 180.0


def test_the_first_matching_rule_by_position_wins(client, carol):
    add_rule(client, carol, "app", ".", "Other", position=10)
    add_rule(client, carol, "app", "^Code$", "Work/Programming", position=0)
    add_rule(client, carol, "site", r"github\.com", "Work/Review", position=0)
    assert categories_of(client, carol) == {"Other": 1800.0, "Work/Programming": 1200.0, "Work/Review": 300.0}
    assert categories_of(client, carol, depth=1) == {"Other": 1800.0, "Work": 1500.0}
    assert list(list_rules(client, carol)["category"]) in (
        ["Work/Programming", "Work/Review", "Other"],
        ["Work/Review", "Work/Programming", "Other"],
    )


def test_editing_or_deleting_a_rule_relabels_history(client, carol):
    code = add_rule(client, carol, "app", "^Code$", "Work/Programming")
    anything = add_rule(client, carol, "app", ".", "Other")
    assert categories_of(client, carol) == {"Other": 2100.0, "Work/Programming": 1200.0}
    update_rule(client, carol, code, category="Work/Coding")
    assert categories_of(client, carol) == {"Other": 2100.0, "Work/Coding": 1200.0}
    update_rule(client, carol, code, pattern="^(Code|Terminal)$")
    assert categories_of(client, carol) == {"Work/Coding": 2400.0, "Other": 900.0}
    delete_rule(client, carol, anything)
    assert categories_of(client, carol) == {"Work/Coding": 2400.0, "Uncategorized": 900.0}
    assert list(list_rules(client, carol)["rule_id"]) == [code]
    with pytest.raises(RuleNotFound):
        update_rule(client, carol, anything, category="Back")


def test_a_rule_on_titles_applies_to_the_raw_intervals(client, carol):
    add_rule(client, carol, "app", "^Code$", "Work/Programming", position=1)
    add_rule(client, carol, "title", "^main\\.py", "Work/Main", position=0)
    assert categories_of(client, carol) == {"Uncategorized": 2100.0, "Work/Main": 600.0, "Work/Programming": 600.0}


def test_one_users_rules_never_label_another_users_time(client, carol):
    # bob's catch-all rule exists in the fixture; carol has none.
    assert categories_of(client, carol) == {"Uncategorized": 3300.0}


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [("(", "missing )"), ("a(?=b)", "invalid perl operator"), (r"(\w)\1", "escape"), ("", "empty")],
)
def test_an_invalid_pattern_is_refused_with_the_reason(client, carol, pattern, problem):
    with pytest.raises(InvalidRule, match="pattern") as refused:
        add_rule(client, carol, "app", pattern, "Work")
    assert problem in str(refused.value)
    assert list_rules(client, carol).empty


@pytest.mark.parametrize(
    ("field", "category", "problem"),
    [
        ("url", "Work", "field"),
        ("app", "A/B/C/D/E/F", "levels"),
        ("app", "Work//Code", "empty level"),
        ("app", "/Work", "empty level"),
        ("app", "W" * 65, "longer than 64"),
        ("app", "Work\nCode", "non-printable"),
        ("app", "Work / Code", "space"),
    ],
)
def test_an_invalid_field_or_category_is_refused(client, carol, field, category, problem):
    with pytest.raises(InvalidRule, match=problem):
        add_rule(client, carol, field, "x", category)


def test_injection_attempts_in_patterns_and_categories_are_inert(client, carol):
    sneaky = "Work'); DROP TABLE intervals; --"
    add_rule(client, carol, "title", "x' OR '1'='1", "Never")
    add_rule(client, carol, "app", "{user:String}", "{uncategorized:String}")
    add_rule(client, carol, "app", "^Code$", sneaky)
    assert categories_of(client, carol) == {"Uncategorized": 2100.0, sneaky: 1200.0}
    assert queries.totals(client, "alice", *PERIOD).iloc[0]["active_seconds"] == 3300.0


def test_preview_shows_what_a_pattern_would_match(client, carol):
    apps = preview_rule(client, carol, "app", "^(Code|Terminal)$", *PERIOD)
    assert as_dict(apps, "value", "seconds") == {"Code": 1200.0, "Terminal": 1200.0}
    titles = preview_rule(client, carol, "title", "proj$", *PERIOD)
    assert list(titles.itertuples(index=False, name=None)) == [("main.py — proj", 600.0), ("test.py — proj", 600.0)]
    assert list(preview_rule(client, carol, "site", "github", *PERIOD)["value"]) == ["github.com"]
    with pytest.raises(InvalidRule):
        preview_rule(client, carol, "title", "(", *PERIOD)


def test_a_rule_is_appended_after_the_last_by_default(client, carol):
    first = add_rule(client, carol, "app", "a", "A")
    second = add_rule(client, carol, "app", "b", "B")
    rules = list_rules(client, carol)
    assert list(rules["rule_id"]) == [first, second]
    assert list(rules["position"]) == [0, 1]
