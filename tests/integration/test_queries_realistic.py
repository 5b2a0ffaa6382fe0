"""The query API on realistic data (testbed/realistic.py, the benchmarks' generator): two people's fortnights, every
answer held against the same figure worked out from the generated intervals with pandas, for periods that cut
intervals, hours and days anywhere. The hand-made days of tests/integration/test_queries.py show each rule; this
shows the rules hold on data shaped as people make it (hundreds of sites, thousands of titles, idle breaks, several
devices)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from testbed.realistic import Person, people_intervals, store
from tests.conftest import lone_warehouse
from warehouse import queries

UNTIL = datetime(2026, 11, 30, tzinfo=UTC)
SUBJECT = Person("subject", 11, ("laptop", "desktop"))
OTHER = Person("other", 12, ("laptop", "desktop"), weekday_hours=8)  # the same device names, another person
PERIODS = {
    "a week": (UNTIL - timedelta(days=7), UNTIL),
    "hours and minutes cut anywhere": (
        UNTIL - timedelta(days=5, hours=3, minutes=17, seconds=5),
        UNTIL - timedelta(days=1, hours=13, minutes=41),
    ),  # fmt: skip
    "inside one hour": (
        UNTIL - timedelta(days=3, hours=14, minutes=50),
        UNTIL - timedelta(days=3, hours=14, minutes=5),
    ),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    frame = people_intervals([SUBJECT, OTHER], 14, UNTIL)
    with lone_warehouse(tmp_path_factory.mktemp("realistic")) as client:
        store(client, frame)
        yield client, frame[frame["user_id"] == SUBJECT.user_id]


def clipped(frame: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    """Each interval's seconds inside [start, end); keys and clicks count where their interval started."""
    a, b = start.timestamp() * 1000, end.timestamp() * 1000
    seconds = (np.minimum(frame["end"], b) - np.maximum(frame["start"], a)).clip(lower=0) / 1000
    began_inside = (frame["start"] >= a) & (frame["start"] < b)
    return frame.assign(seconds=seconds, began_inside=began_inside)[(seconds > 0) | began_inside]


def by(df: pd.DataFrame, key: str, value: str = "seconds") -> dict:
    return {k: round(float(v), 3) for k, v in zip(df[key], df[value], strict=True) if v}


@pytest.mark.parametrize("period", PERIODS, ids=list(PERIODS))
def test_time_per_app_and_site_are_exact_to_the_millisecond(data, period):
    client, mine = data
    start, end = PERIODS[period]
    expected = clipped(mine[~mine["idle"]], start, end)
    want_apps = expected.groupby("app")["seconds"].sum()
    got_apps = by(queries.time_per_app(client, SUBJECT.user_id, start, end), "app")
    assert got_apps == {k: round(float(v), 3) for k, v in want_apps.items() if v}
    with_site = expected[expected["site"] != ""]
    got_sites = by(queries.time_per_site(client, SUBJECT.user_id, start, end), "site")
    assert got_sites == {k: round(float(v), 3) for k, v in with_site.groupby("site")["seconds"].sum().items() if v}
    assert len(got_apps) > 3 and (period == "inside one hour" or len(got_sites) > 20)


@pytest.mark.parametrize("period", PERIODS, ids=list(PERIODS))
def test_totals_are_exact_active_and_idle_keys_and_clicks(data, period):
    client, mine = data
    start, end = PERIODS[period]
    inside = clipped(mine, start, end)
    row = queries.totals(client, SUBJECT.user_id, start, end).iloc[0]
    assert round(row["active_seconds"], 3) == round(inside.loc[~inside["idle"], "seconds"].sum(), 3)
    assert round(row["idle_seconds"], 3) == round(inside.loc[inside["idle"], "seconds"].sum(), 3)
    began = inside[inside["began_inside"]]
    assert (row["keystrokes"], row["clicks"]) == (began["keystrokes"].sum(), began["clicks"].sum())
    assert row["active_seconds"] > 0


@pytest.mark.parametrize("period", PERIODS, ids=list(PERIODS))
def test_top_titles_of_an_app_are_its_titles_by_active_time(data, period):
    client, mine = data
    start, end = PERIODS[period]
    got = queries.top_titles(client, SUBJECT.user_id, start, end, app="Code", limit=1000)
    expected = clipped(mine[(~mine["idle"]) & (mine["app"] == "Code")], start, end)
    want = expected.groupby("title")["seconds"].sum()
    assert by(got, "title") == {k: round(float(v), 3) for k, v in want.items() if v}
    began = expected[expected["began_inside"]]
    assert got["keystrokes"].sum() == began["keystrokes"].sum()
    assert len(got) > (3 if period == "inside one hour" else 50)  # a week has many documents open in an editor


@pytest.mark.parametrize("period", PERIODS, ids=list(PERIODS))
def test_a_category_rule_on_titles_counts_exactly_the_time_of_the_titles_it_matches(data, period):
    client, mine = data
    start, end = PERIODS[period]
    from warehouse.categories import add_rule, delete_rule, list_rules

    rule = add_rule(client, SUBJECT.user_id, "title", "document [0-9]$", "Work/Documents", position=0)
    try:
        got = by(queries.time_per_category(client, SUBJECT.user_id, start, end), "category")
    finally:
        delete_rule(client, SUBJECT.user_id, rule)
    expected = clipped(mine[~mine["idle"]], start, end)
    matched = expected["title"].str.contains(r"document [0-9]$", regex=True)
    assert got["Work/Documents"] == round(float(expected.loc[matched, "seconds"].sum()), 3) > 0
    assert round(sum(got.values()), 3) == round(float(expected["seconds"].sum()), 3)
    assert list_rules(client, SUBJECT.user_id).empty


def test_time_per_device_splits_the_person_s_time_between_their_devices(data):
    client, mine = data
    start, end = PERIODS["a week"]
    expected = clipped(mine[~mine["idle"]], start, end).groupby("device_id")["seconds"].sum()
    got = queries.time_per_device(client, SUBJECT.user_id, start, end)
    assert by(got, "device_id") == {k: round(float(v), 3) for k, v in expected.items() if v}


@pytest.mark.parametrize("period", PERIODS, ids=list(PERIODS))
def test_sessions_cut_at_a_period_s_edges_hold_exactly_its_active_time_keys_and_clicks(data, period):
    """Focus sessions cover every active interval, so cut at the period's edges (clip_sessions) they add up to the
    period's active time, keys and clicks; app sessions of the timeline's day likewise."""
    client, mine = data
    start, end = PERIODS[period]
    inside = clipped(mine[~mine["idle"]], start, end)
    began = inside[inside["began_inside"]]
    focus = queries.focus_sessions(client, SUBJECT.user_id, start, end)
    assert round(focus["active_seconds"].sum(), 3) == round(float(inside["seconds"].sum()), 3) > 0
    assert (focus["keystrokes"].sum(), focus["clicks"].sum()) == (began["keystrokes"].sum(), began["clicks"].sum())
    assert (focus["start"] >= pd.Timestamp(start)).all() and (focus["end"] <= pd.Timestamp(end)).all()
    day = (end - timedelta(microseconds=1)).date()
    timeline = queries.app_timeline(client, SUBJECT.user_id, start, end, day=day)
    day_start = max(start, datetime.combine(day, datetime.min.time(), UTC))
    on_day = clipped(mine[~mine["idle"]], day_start, end)
    assert round(timeline["active_seconds"].sum(), 3) == round(float(on_day["seconds"].sum()), 3)
