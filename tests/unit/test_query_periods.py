"""How the query API cuts a period into rollup hours and raw edges, and what it accepts as a period or zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from warehouse.queries import _usage_parameters, _zone


def t(h: int, m: int = 0) -> datetime:
    return datetime(2026, 3, 10, h, m, tzinfo=UTC)


def pieces(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    p = _usage_parameters(start, end)
    return [(p["from"], p["edge1_to"]), (p["h_from"], p["h_to"]), (p["edge2_from"], p["to"])]


def test_whole_hours_come_from_the_rollup_and_the_edges_from_raw_intervals():
    assert pieces(t(8, 30), t(11, 15)) == [(t(8, 30), t(9)), (t(9), t(11)), (t(11), t(11, 15))]


def test_an_hour_aligned_period_is_all_rollup():
    assert pieces(t(8), t(11)) == [(t(8), t(8)), (t(8), t(11)), (t(11), t(11))]


def test_a_period_inside_one_hour_is_all_raw():
    first, rollup, second = pieces(t(9, 5), t(9, 50))
    assert first == (t(9, 5), t(9, 50))
    assert rollup[0] >= rollup[1] and second[0] >= second[1]


def test_a_period_across_one_hour_boundary_has_two_raw_edges_and_no_rollup():
    assert pieces(t(9, 5), t(10, 2)) == [(t(9, 5), t(10)), (t(10), t(10)), (t(10), t(10, 2))]


def test_the_pieces_partition_the_period_for_many_periods():
    for start_min in range(0, 300, 7):
        for length in range(1, 400, 13):
            start = t(0) + timedelta(minutes=start_min)
            end = start + timedelta(minutes=length)
            parts = [(a, b) for a, b in pieces(start, end) if a < b]
            assert parts[0][0] == start and parts[-1][1] == end
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))


def test_periods_in_other_offsets_are_converted_to_utc():
    plus_one = timezone(timedelta(hours=1))
    p = _usage_parameters(datetime(2026, 3, 10, 10, 30, tzinfo=plus_one), t(12))
    assert p["from"] == t(9, 30) and p["h_from"] == t(10)


def test_a_period_that_ends_before_it_starts_is_refused():
    with pytest.raises(ValueError, match="before it starts"):
        _usage_parameters(t(10), t(9))


@pytest.mark.parametrize("name", ["Europe/Prague", "UTC", "America/New_York", "Asia/Kolkata"])
def test_iana_zones_are_accepted(name):
    assert _zone(name).key == name


@pytest.mark.parametrize("name", ["", "Mars/Olympus", "europe/prague", "UTC'--", None, 3])
def test_anything_else_is_refused(name):
    with pytest.raises(ValueError, match="time zone"):
        _zone(name)
