"""The rollups are a function of the raw intervals: rebuilt exactly, idempotently, and checked for drift
(through the real warehouse server)."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_jobs.rows import interval_columns
from tests.conftest import lone_warehouse
from warehouse.rollups import DAY_S, HOUR_S, rebuild_touched, repair_rollups, rollup_drift, spans_of
from warehouse.writes import NO_DELETIONS, store_intervals


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with lone_warehouse(tmp_path_factory.mktemp("rollups")) as c:
        yield c


T0 = int(datetime(2026, 11, 2, 22, tzinfo=UTC).timestamp() * 1000)


def intervals_of(user: str, device: str, n: int, seed: int) -> list[dict]:
    """n consecutive intervals of random lengths (some crossing hours and midnight), apps and idleness."""
    rng = random.Random(seed)
    out, t = [], T0
    for seq in range(n):
        length = rng.choice([0, 1_000, 59_000, 60_000, 30 * 60_000, 2 * 3600_000])
        out.append(
            {
                "user_id": user,
                "device_id": device,
                "event_id": str(uuid.uuid4()),
                "device_seq": seq,
                "start": t,
                "end": t + length,
                "app": rng.choice(["Code", "Firefox", "Terminal"]),
                "title": rng.choice(["", "notes.txt", "report — draft"]),
                "site": rng.choice(["", "example.com"]),
                "keystrokes": rng.randrange(100),
                "clicks": rng.randrange(10),
                "idle": rng.random() < 0.2,
                "received_at": t + length,
            }
        )
        t += length + rng.choice([0, 5_000])
    return out


def reference(intervals: list[dict], unit_s: int) -> dict[tuple, tuple[int, int, int, int]]:
    """The rollup the definition gives, computed in Python: per (span, device, app, site), and by title too for days
    (the daily rollup by title)."""
    totals: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for iv in intervals:
        for span in spans_of(iv["start"], iv["end"], unit_s):
            part = max(0, min(iv["end"], (span + unit_s) * 1000) - max(iv["start"], span * 1000))
            key = (span, iv["device_id"], iv["app"], iv["site"])
            row = totals[key + ((iv["title"],) if unit_s == DAY_S else ())]
            row[1 if iv["idle"] else 0] += part
            if span == spans_of(iv["start"], iv["end"], unit_s)[0]:
                row[2] += iv["keystrokes"]
                row[3] += iv["clicks"]
    return {k: tuple(v) for k, v in totals.items()}


def stored(client, user: str, unit_s: int) -> dict[tuple, tuple[int, int, int, int]]:
    table, column, keys = ("usage_by_hour", "hour", 4) if unit_s == HOUR_S else ("usage_by_title_day", "day", 5)
    title = ", title" if keys == 5 else ""
    rows = client.query(
        f"SELECT toUInt32(toDateTime({column}, 'UTC')), device_id, app, site{title}, active_ms, idle_ms, keystrokes, "
        f"clicks FROM {table} FINAL WHERE user_id = {{u:String}}",
        parameters={"u": user},
    ).result_rows
    return {tuple(r[:keys]): tuple(r[keys:]) for r in rows}


def write(client, intervals: list[dict]) -> None:
    store_intervals(client, NO_DELETIONS, interval_columns(intervals))
    rebuild_touched(client, intervals)


@given(st.integers(0, 10**12), st.integers(0, 3 * 86_400_000), st.sampled_from([HOUR_S, DAY_S]))
def test_spans_cover_exactly_the_units_an_interval_overlaps(start, length, unit_s):
    spans = spans_of(start, start + length, unit_s)
    assert spans[0] * 1000 <= start < (spans[0] + unit_s) * 1000
    if length:
        assert (spans[-1] * 1000) < start + length <= (spans[-1] + unit_s) * 1000
    else:
        assert len(spans) == 1
    assert all(b - a == unit_s for a, b in zip(spans, spans[1:], strict=False))


def test_rebuilt_rollups_equal_the_reference_however_often_and_in_whatever_pieces(client):
    user = f"u-{uuid.uuid4().hex[:6]}"
    laptop, desktop = intervals_of(user, "laptop", 300, 1), intervals_of(user, "desktop", 200, 2)
    # Batches of every size, some written twice (a redelivery), some in one block beside another device's.
    pieces = [laptop[:40], laptop[30:120], laptop[120:121], laptop[121:] + desktop[:50], desktop[50:], desktop[10:60]]
    for piece in pieces:
        write(client, piece)
    for unit_s in (HOUR_S, DAY_S):
        assert stored(client, user, unit_s) == reference(laptop + desktop, unit_s)
    assert rollup_drift(client, user) == []


def test_the_migration_rolls_up_by_title_the_days_stored_before_it_as_the_writer_does(client):
    """Migration 0015 fills the daily rollup by title from the raw intervals already stored; run twice (stopped
    half-way and run again), it changes nothing more."""
    from warehouse.migrate import load_migrations

    user = f"u-{uuid.uuid4().hex[:6]}"
    ivs = intervals_of(user, "laptop", 200, 5)
    store_intervals(client, NO_DELETIONS, interval_columns(ivs))  # raw only: as before the migration
    assert stored(client, user, DAY_S) == {}
    (migration,) = [m for m in load_migrations() if m.version == 15]
    (fill,) = [s for s in migration.statements if s.startswith("INSERT INTO usage_by_title_day")]
    for _ in range(2):
        client.command(fill)
    assert stored(client, user, DAY_S) == reference(ivs, DAY_S)
    assert [d for d in rollup_drift(client, user) if d.table == "usage_by_title_day"] == []


def test_one_write_spanning_devices_and_days_in_any_order_is_rolled_up_whole(client):
    user = f"u-{uuid.uuid4().hex[:6]}"
    later = [
        {**iv, "start": iv["start"] + 3 * DAY_S * 1000, "end": iv["end"] + 3 * DAY_S * 1000}
        for iv in intervals_of(user, "a-device", 30, 7)
    ]
    earlier = intervals_of(user, "b-device", 30, 8)
    write(client, later + earlier)
    for unit_s in (HOUR_S, DAY_S):
        assert stored(client, user, unit_s) == reference(later + earlier, unit_s)


def test_a_rebuild_that_saw_fewer_rows_never_overwrites_one_that_saw_more(client):
    user = f"u-{uuid.uuid4().hex[:6]}"
    ivs = intervals_of(user, "d", 50, 3)
    write(client, ivs[:10])
    versions_early = dict(
        client.query(
            "SELECT hour, max(version) FROM usage_by_hour FINAL WHERE user_id = {u:String} GROUP BY hour",
            parameters={"u": user},
        ).result_rows
    )
    write(client, ivs[10:])
    full = stored(client, user, HOUR_S)
    versions_full = dict(
        client.query(
            "SELECT hour, max(version) FROM usage_by_hour FINAL WHERE user_id = {u:String} GROUP BY hour",
            parameters={"u": user},
        ).result_rows
    )
    grown = {hour: v for hour, v in versions_early.items() if v < versions_full[hour]}
    assert grown  # later intervals overlapped hours the early rebuild had written
    # A stale rebuild (a zombie worker that read raw before the last rows arrived) lands after the full one:
    # its rows carry the smaller version it saw, whatever their values. (Where the version did not grow, the
    # stale rebuild saw the same rows and wrote the same values.)
    for hour, version in grown.items():
        client.command(
            "INSERT INTO usage_by_hour (user_id, hour, device_id, app, site, active_ms, idle_ms, keystrokes, clicks, "
            "version) SETTINGS insert_deduplicate = 0 "
            "SELECT user_id, hour, device_id, app, site, 1, 1, 1, 1, {v:UInt64} FROM usage_by_hour FINAL "
            "WHERE user_id = {u:String} AND hour = {h:DateTime('UTC')}",
            parameters={"u": user, "h": hour, "v": version},
        )
    assert stored(client, user, HOUR_S) == full == reference(ivs, HOUR_S)


def test_drift_is_found_named_and_repaired(client):
    user = f"u-{uuid.uuid4().hex[:6]}"
    ivs = intervals_of(user, "d", 60, 4)
    store_intervals(client, NO_DELETIONS, interval_columns(ivs))
    rebuild_touched(client, ivs[:30])  # the rollups of the last hours were never written
    extra = {**ivs[0], "event_id": str(uuid.uuid4()), "device_seq": 1000}
    store_intervals(client, NO_DELETIONS, interval_columns([extra]))  # raw without its rollup: the hour now drifts
    drift = rollup_drift(client, user)
    assert drift and {d.user_id for d in drift} == {user}
    assert any(d.table == "usage_by_hour" and d.stored is not None and d.from_raw is not None for d in drift)
    assert any(d.stored is None for d in drift)  # the hours never rolled up are missing rows
    assert repair_rollups(client, user) == len(drift)
    assert rollup_drift(client, user) == []
    assert stored(client, user, HOUR_S) == reference([*ivs, extra], HOUR_S)


def test_drift_of_one_user_is_not_reported_for_another(client):
    a, b = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"
    write(client, intervals_of(a, "d", 20, 5))
    store_intervals(client, NO_DELETIONS, interval_columns(intervals_of(b, "d", 20, 6)))
    assert rollup_drift(client, a) == []
    assert rollup_drift(client, b)
    assert {d.user_id for d in rollup_drift(client)} >= {b}


def test_a_period_beyond_retention_keeps_its_rollups_and_is_not_reported(client):
    # Rollups copied from before the rebuild (version 0) for hours whose raw rows are gone.
    user = f"r-{uuid.uuid4().hex[:6]}"
    hour = datetime(2025, 1, 1, 3, tzinfo=UTC)
    client.command(
        "INSERT INTO usage_by_hour (user_id, hour, device_id, app, site, active_ms, idle_ms, keystrokes, clicks, "
        "version) VALUES ({u:String}, {h:DateTime('UTC')}, 'd', 'Code', '', 60000, 0, 5, 1, 0)",
        parameters={"u": user, "h": hour},
    )
    assert rollup_drift(client, user) == []
