"""The benchmarks' and query tests' realistic data (testbed/realistic.py) looks as it says: a person's rhythm, a long
tail of apps, sites and titles, the collector's cuts, and nothing two devices or two intervals could not record."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pandas as pd
import pytest

from testbed.realistic import APPS, MAX_INTERVAL_MS, SITES, Person, crowd, describe, person_intervals, wire_intervals

UNTIL = datetime(2026, 11, 30, 12, tzinfo=UTC)  # a Monday


@pytest.fixture(scope="module")
def quarter() -> pd.DataFrame:
    return person_intervals(Person("someone", 3, ("laptop", "desktop")), 91, UNTIL)


def test_the_same_person_and_days_give_the_same_intervals():
    a = person_intervals(Person("p", 5), 7, UNTIL)
    b = person_intervals(Person("p", 5), 7, UNTIL)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(person_intervals(Person("p", 6), 7, UNTIL))


def test_every_interval_lies_in_the_days_asked_for_and_none_is_longer_than_the_collector_cuts(quarter):
    first = datetime(2026, 8, 31, tzinfo=UTC).timestamp() * 1000
    assert quarter["start"].min() >= first
    assert quarter["end"].max() <= datetime(2026, 11, 30, tzinfo=UTC).timestamp() * 1000 + 86_400_000
    lengths = quarter["end"] - quarter["start"]
    assert lengths.min() > 0
    assert lengths.max() <= MAX_INTERVAL_MS


def test_a_device_s_intervals_never_overlap_and_its_numbers_count_up_from_zero(quarter):
    for _device, rows in quarter.groupby("device_id"):
        rows = rows.sort_values("device_seq")
        assert rows["device_seq"].tolist() == list(range(len(rows)))
        assert (rows["start"].to_numpy()[1:] >= rows["end"].to_numpy()[:-1]).all()
    # One person is in front of one computer at a time: no two devices overlap either.
    ordered = quarter.sort_values("start")
    assert (ordered["start"].to_numpy()[1:] >= ordered["end"].to_numpy()[:-1]).all()


def test_event_ids_are_minted_as_a_collector_mints_them_a_run_a_day_per_device(quarter):
    assert quarter["event_id"].is_unique
    parsed = [uuid.UUID(e) for e in quarter["event_id"]]
    assert {p.version for p in parsed} == {8}
    assert [p.int & (2**62 - 1) for p in parsed] == quarter["device_seq"].tolist()
    runs = pd.DataFrame({"device": quarter["device_id"], "day": quarter["start"] // 86_400_000,
                         "run": [p.int >> 64 for p in parsed]})  # fmt: skip
    assert (runs.groupby(["device", "day"])["run"].nunique() == 1).all()
    assert runs["run"].nunique() == len(runs.groupby(["device", "day"]))


def test_a_person_works_about_ten_hours_a_weekday_and_little_at_weekends(quarter):
    active = quarter[~quarter["idle"]]
    day = pd.to_datetime(active["start"], unit="ms", utc=True).dt.normalize()
    hours = (active["end"] - active["start"]).groupby(day).sum() / 3.6e6
    weekdays = hours[hours.index.day_of_week < 5]
    weekends = hours[hours.index.day_of_week >= 5]
    assert len(weekdays) >= 60
    assert 8.5 <= weekdays.mean() <= 11.5
    assert weekends.sum() / max(1, len(weekends)) < 0.5 * weekdays.mean()


def test_apps_sites_and_titles_have_a_long_tail(quarter):
    shares = (quarter["end"] - quarter["start"]).groupby(quarter["app"]).sum().sort_values(ascending=False)
    shares /= shares.sum()
    assert len(shares) == len(APPS) == 40
    assert shares.iloc[:5].sum() > 0.5  # a few apps take most of the time
    assert shares.iloc[-10:].sum() < 0.1  # and many take little
    browsers = quarter[quarter["site"] != ""]
    assert 0.2 < len(browsers) / len(quarter) < 0.5  # the browsers take about a third
    assert browsers["site"].nunique() > 300  # of the 400 sites, most are seen in a quarter
    assert set(browsers["site"]) <= set(SITES)
    # Tens of thousands of distinct titles a year: a quarter has several thousand.
    assert quarter["title"].nunique() > 5_000
    assert (quarter.loc[quarter["site"] == "", "url"].isna()).all()


def test_breaks_are_idle_time_without_input_or_a_gap(quarter):
    idle = quarter[quarter["idle"]]
    assert 0.02 < len(idle) / len(quarter) < 0.2
    assert (idle["keystrokes"] == 0).all() and (idle["clicks"] == 0).all()
    active = quarter[~quarter["idle"]]
    assert active["keystrokes"].mean() > 1


def test_a_crowd_is_different_people_each_with_one_to_three_devices():
    people = crowd(6)
    assert len({p.user_id for p in people}) == 6
    assert {len(p.devices) for p in people} <= {1, 2, 3}
    assert len({p.weekday_hours for p in people}) > 1


def test_the_description_says_what_the_data_looks_like(quarter):
    shape = describe(quarter)
    assert shape["people"] == 1 and shape["devices"] == 2
    assert shape["intervals"] == len(quarter)
    assert shape["apps_per_person"] == 40
    assert shape["titles_per_person"] == quarter["title"].nunique()


def test_wire_intervals_are_what_a_collector_sends(quarter):
    sent = wire_intervals(quarter.head(50))
    from schemas.codec import decode_interval, encode_interval

    for row in sent:
        assert decode_interval(encode_interval(row))["event_id"] == row["event_id"]
    assert all(isinstance(row["start"], int) and isinstance(row["idle"], bool) for row in sent)


def test_a_person_without_devices_is_refused_by_name():
    with pytest.raises(ValueError, match="nobody: a person needs at least one device"):
        Person("nobody", 1, ())
    with pytest.raises(ValueError, match="weekday_hours"):
        Person("p", 1, weekday_hours=0)
