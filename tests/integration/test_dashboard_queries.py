"""The query API's parts the dashboard added: the device filter on every per-user function, and the export of
a period's intervals, against the real embedded warehouse with the fixture day of tests/integration/test_queries."""

from __future__ import annotations

import inspect

import pytest

from tests.integration import test_queries
from tests.integration.test_queries import PERIOD, PRAGUE
from warehouse import queries

client = test_queries.client  # the fixture day's warehouse, shared with the query API's own tests

FILTERABLE = sorted(
    name for name, fn in queries.QUERY_FUNCTIONS.items() if "devices" in inspect.signature(fn).parameters
)


def test_every_per_user_query_takes_the_device_filter():
    assert FILTERABLE == sorted(queries.QUERY_FUNCTIONS)


@pytest.mark.parametrize("name", FILTERABLE)
def test_the_device_filter_keeps_only_the_chosen_devices(client, name):
    fn = queries.QUERY_FUNCTIONS[name]
    everything = fn(client, "alice", *PERIOD)
    only_laptop = fn(client, "alice", *PERIOD, devices=["laptop"])
    nothing = fn(client, "alice", *PERIOD, devices=["no-such-device"])
    assert list(only_laptop.columns) == list(everything.columns)
    if "device_id" in only_laptop.columns:
        assert set(only_laptop["device_id"]) <= {"laptop"}
    assert fn(client, "alice", *PERIOD, devices=[]).equals(everything)
    numbers = nothing.select_dtypes("number").drop(columns=["weekday", "hour"], errors="ignore")
    assert numbers.empty or (numbers.fillna(0) == 0).all().all()


def test_device_totals_add_up_to_all_devices(client):
    both = queries.totals(client, "alice", *PERIOD)
    laptop = queries.totals(client, "alice", *PERIOD, devices=["laptop"])
    desk = queries.totals(client, "alice", *PERIOD, devices=["desk"])
    for column in ("active_seconds", "idle_seconds", "keystrokes", "clicks", "app_sessions", "focus_sessions"):
        assert laptop[column].iloc[0] + desk[column].iloc[0] == both[column].iloc[0], column
    assert laptop["active_seconds"].iloc[0] == 1500.0 and desk["active_seconds"].iloc[0] == 1800.0
    days = queries.daily_trend(client, "alice", *PERIOD, tz=PRAGUE, devices=["desk"])
    assert days["active_seconds"].sum() == 1800.0


def test_a_device_filter_cannot_widen_a_query_to_another_user(client):
    df = queries.time_per_app(client, "alice", *PERIOD, devices=["laptop", "desk"])
    assert not any("bob" in app for app in df["app"])
    with pytest.raises(ValueError, match="sequence of device ids"):
        queries.time_per_app(client, "alice", *PERIOD, devices="laptop")


def test_the_export_is_every_interval_of_the_period_and_only_the_users(client):
    df = queries.export_intervals(client, "alice", *PERIOD)
    assert len(df) == 6
    assert list(df.columns) == [
        "start", "end", "device_id", "app", "title", "site", "idle", "keystrokes", "clicks", "event_id"
    ]  # fmt: skip
    assert df["start"].is_monotonic_increasing
    assert not any("bob" in str(v) for column in df.columns for v in df[column])
    assert set(queries.export_intervals(client, "alice", *PERIOD, devices=["desk"])["device_id"]) == {"desk"}
    assert list(df.dtypes.astype(str)) == list(queries.export_intervals(client, "nobody", *PERIOD).dtypes.astype(str))
