"""After a deletion the worker's writes bring nothing back (real warehouse server, the worker's own write path):
the device's next interval does not revive the deleted part of its open session, a batch written while the
deletion ran is cut as well, a saved state written without the deletion is cut before it is used, and a replay
of every interval stores nothing deleted and counts nothing twice."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from schemas.contract import Window
from schemas.deletions import ACCOUNT, ALL_DATA, DEVICE, PERIOD, plan_deletion
from schemas.sealing import seal
from stream_jobs.batch import dead_letter_value, read_batch, write_batch
from stream_jobs.forget import delete
from stream_jobs.keyring import KeyRing, key_ids
from stream_jobs.plan import group_by_device, plan_batch
from stream_jobs.rows import interval_columns
from stream_jobs.sessionize import SessionRules
from tests.conftest import lone_warehouse
from warehouse.keys import create_key
from warehouse.rollups import insert_settings, rollup_drift
from warehouse.writes import (
    APP_SESSION_COLUMNS,
    FOCUS_SESSION_COLUMNS,
    NO_DELETIONS,
    DeletionGuard,
    load_device_states,
    store_device_states,
    store_intervals,
    store_rows,
)

RULES = SessionRules(session_gap_ms=30_000, break_after_ms=300_000)
WINDOW = Window.of_days(3650)
NOW = datetime(2026, 11, 3, 12, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
MINUTE = 60_000


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with lone_warehouse(tmp_path_factory.mktemp("deletion-writers")) as c:
        yield c


def iv(user: str, device: str, seq: int, start_ms: int, app: str = "Code", keys: int = 3) -> dict:
    """A 50-second interval, so one a minute follows the last within the session gap. Device ids are the
    user's own (the worker finds a device's state by its id, which is a UUID in real life)."""
    return {
        "user_id": user,
        "device_id": f"{user}/{device}",
        "event_id": str(uuid.uuid4()),
        "device_seq": seq,
        "start": start_ms,
        "end": start_ms + 50_000,
        "app": app,
        "title": "",
        "site": "",
        "keystrokes": keys,
        "clicks": 1,
        "idle": False,
        "received_at": start_ms + 50_000,
    }


def minutes(user: str, device: str, first_seq: int, start_ms: int, n: int) -> list[dict]:
    return [iv(user, device, first_seq + i, start_ms + i * MINUTE) for i in range(n)]


def write(client, intervals: list[dict]):
    return write_batch(client, group_by_device(intervals), RULES, insert_settings(client), WINDOW)


def forget(client, kind: str, user: str, device: str = "", period: tuple[int, int] | None = None):
    span = {} if period is None else {"start": _utc(period[0]), "end": _utc(period[1])}
    device_id = f"{user}/{device}" if device else ""
    return delete(client, plan_deletion(kind, user, NOW_MS, device_id=device_id, **span), RULES)


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def q(client, sql: str, user: str) -> list[tuple]:
    """Rows of a query of `user`'s rows, their device ids (first column) without the user's prefix."""
    rows = client.query(sql, parameters={"u": user}).result_rows
    return [(r[0].split("/", 1)[1], *r[1:]) if isinstance(r[0], str) and "/" in r[0] else r for r in rows]


def raw(client, user: str) -> list[tuple]:
    """(device, start ms) of every raw interval, in order."""
    return q(
        client,
        "SELECT device_id, toUnixTimestamp64Milli(start) FROM intervals FINAL WHERE user_id = {u:String} ORDER BY 1, 2",
        user,
    )


def sessions(client, table: str, user: str) -> list[tuple]:
    """(device, start, end, active_ms, keystrokes, closed) of each session's latest version, in order."""
    return q(
        client,
        "SELECT device_id, toUnixTimestamp64Milli(start), toUnixTimestamp64Milli(`end`), active_ms, keystrokes, "
        f"closed FROM {table} FINAL WHERE user_id = {{u:String}} ORDER BY 1, 2",
        user,
    )


def assert_exact(client, user: str) -> None:
    """Sessions and rollups are functions of the raw rows left: the same seconds and keys everywhere."""
    total = q(
        client,
        "SELECT sum(toUnixTimestamp64Milli(`end`) - toUnixTimestamp64Milli(start)), sum(keystrokes) "
        "FROM intervals FINAL WHERE user_id = {u:String} AND NOT idle",
        user,
    )[0]
    for table in ("app_sessions", "focus_sessions"):
        assert (
            q(client, f"SELECT sum(active_ms), sum(keystrokes) FROM {table} FINAL WHERE user_id = {{u:String}}", user)[
                0
            ]
            == total
        ), table
    assert rollup_drift(client, user) == []


def assert_nothing_in(client, user: str, lo_ms: int, hi_ms: int) -> None:
    """No raw interval and no session of `user` overlaps [lo, hi)."""
    for table in ("intervals", "app_sessions", "focus_sessions"):
        overlapping = q(
            client,
            f"SELECT count() FROM {table} FINAL WHERE user_id = {{u:String}} "
            f"AND start < fromUnixTimestamp64Milli({hi_ms}) AND `end` > fromUnixTimestamp64Milli({lo_ms})",
            user,
        )[0][0]
        assert overlapping == 0, table


def test_a_period_cuts_the_open_session_at_its_edges_and_the_next_interval_continues_only_what_is_left(client):
    user, t0 = "period-user", NOW_MS - 4 * 3600_000
    write(client, minutes(user, "d", 0, t0, 180))  # one focus session, open, 3 h long
    lo, hi = t0 + 60 * MINUTE, t0 + 120 * MINUTE
    report = forget(client, PERIOD, user, period=(lo, hi))
    assert report.removed["intervals"] == 60
    assert_nothing_in(client, user, lo, hi)
    focus = sessions(client, "focus_sessions", user)
    assert [(s[1], s[5]) for s in focus] == [(t0, True), (hi, False)]  # cut at the edges; the later part still open
    write(client, [iv(user, "d", 180, t0 + 180 * MINUTE)])
    focus = sessions(client, "focus_sessions", user)
    assert [(s[1], s[2], s[5]) for s in focus] == [
        (t0, t0 + 59 * MINUTE + 50_000, True),
        (hi, t0 + 180 * MINUTE + 50_000, False),
    ]
    assert focus[1][3] == 61 * 50_000  # the deleted hour's minutes did not come back
    assert_nothing_in(client, user, lo, hi)
    assert_exact(client, user)


@pytest.mark.parametrize("kind", [DEVICE, ALL_DATA])
def test_a_devices_or_all_data_leaves_only_what_the_device_records_afterwards(client, kind):
    user, t0 = f"{kind}-user", NOW_MS - 2 * 3600_000
    write(client, minutes(user, "d1", 0, t0, 90) + minutes(user, "d2", 0, t0, 30))
    forget(client, kind, user, "d1" if kind == DEVICE else "")
    # The device goes on: its next intervals start after the deletion, and seq numbers go on too.
    write(client, minutes(user, "d1", 90, NOW_MS + MINUTE, 3))
    expected_d2 = [] if kind == ALL_DATA else [("d2", t0 + i * MINUTE) for i in range(30)]
    assert raw(client, user) == [("d1", NOW_MS + (1 + i) * MINUTE) for i in range(3)] + expected_d2
    focus = [s for s in sessions(client, "focus_sessions", user) if s[0] == "d1"]
    assert [(s[1], s[3], s[4]) for s in focus] == [(NOW_MS + MINUTE, 3 * 50_000, 9)]
    assert_exact(client, user)


def test_an_account_deletion_leaves_nothing_even_when_its_batches_arrive_afterwards(client):
    user, t0 = "account-user", NOW_MS - 3600_000
    batch = minutes(user, "d", 0, t0, 40)
    write(client, batch[:20])
    forget(client, ACCOUNT, user)
    written = write(client, batch[20:])  # in flight when the account went
    assert written.stored == 0 and written.deleted == 20
    for table in ("intervals", "app_sessions", "focus_sessions", "usage_by_hour", "device_state", "refused_intervals"):
        assert q(client, f"SELECT count() FROM {table} WHERE user_id = {{u:String}}", user) == [(0,)], table


def test_a_batch_written_while_the_deletion_ran_is_cut_after_it_landed(client, monkeypatch):
    user, t0 = "race-user", NOW_MS - 3 * 3600_000
    write(client, minutes(user, "d", 0, t0, 60))
    lo, hi = t0, t0 + 90 * MINUTE
    forget(client, PERIOD, user, period=(lo, hi))
    # A worker that read the deletions just before the record was written: its guard is empty.
    monkeypatch.setattr(DeletionGuard, "load", classmethod(lambda cls, client, users: cls(())))
    late = minutes(user, "d", 60, t0 + 60 * MINUTE, 30)  # inside the deleted period
    write(client, late)
    assert_nothing_in(client, user, lo, hi)
    assert raw(client, user) == []
    assert_exact(client, user)


def test_a_saved_state_written_without_the_deletion_is_cut_before_the_next_batch_uses_it(client):
    user, t0 = "stale-user", NOW_MS - 3 * 3600_000
    device = f"{user}/d"
    write(client, minutes(user, "d", 0, t0, 60))
    stale = load_device_states(client, [device])
    # A worker read the state and the (empty) deletions, then the deletion ran, then the worker wrote its batch
    # and was killed before it could check again: its rows and its state were built without the deletion.
    forget(client, PERIOD, user, period=(t0, t0 + 30 * MINUTE))
    late = iv(user, "d", 60, t0 + 60 * MINUTE)
    plan = plan_batch({device: [late]}, stale, RULES)
    store_intervals(client, NO_DELETIONS, interval_columns(plan.intervals))
    store_rows(client, NO_DELETIONS, "app_sessions", APP_SESSION_COLUMNS, plan.app_rows)
    store_rows(client, NO_DELETIONS, "focus_sessions", FOCUS_SESSION_COLUMNS, plan.focus_rows)
    store_device_states(client, NO_DELETIONS, plan.states)
    assert not json.loads(load_device_states(client, [device])[device])["applied"]
    # The next batch finds the state uncut, applies the deletion again first, then goes on.
    write(client, [iv(user, "d", 61, t0 + 61 * MINUTE)])
    assert_nothing_in(client, user, t0, t0 + 30 * MINUTE)
    focus = sessions(client, "focus_sessions", user)
    assert [(s[1], s[3]) for s in focus] == [(t0 + 30 * MINUTE, 32 * 50_000)]
    assert_exact(client, user)


def test_replaying_every_interval_after_deletions_stores_nothing_deleted_and_counts_nothing_twice(client):
    user, t0 = "replay-user", NOW_MS - 5 * 3600_000
    everything = minutes(user, "d1", 0, t0, 120) + minutes(user, "d2", 0, t0, 60) + minutes(user, "d3", 0, t0, 10)
    for n in range(0, len(everything), 50):
        write(client, everything[n : n + 50])
    forget(client, PERIOD, user, period=(t0 + 30 * MINUTE, t0 + 60 * MINUTE))
    forget(client, DEVICE, user, "d2")
    after = minutes(user, "d3", 10, NOW_MS + MINUTE, 5)
    write(client, after)
    before = (raw(client, user), sessions(client, "app_sessions", user), sessions(client, "focus_sessions", user))
    # A new consumer group reads the topic from offset 0: every batch again, in order.
    for n in range(0, len(everything), 50):
        write(client, everything[n : n + 50])
    write(client, after)
    assert (
        raw(client, user),
        sessions(client, "app_sessions", user),
        sessions(client, "focus_sessions", user),
    ) == before
    assert [d for d, _ in before[0]].count("d2") == 0
    assert_nothing_in(client, user, t0 + 30 * MINUTE, t0 + 60 * MINUTE)
    assert_exact(client, user)


def test_a_dead_letter_of_deleted_data_re_driven_into_the_topic_stores_nothing(client):
    user, t0 = "redrive-user", NOW_MS - 2 * 3600_000
    device = f"{user}/d"
    batch = minutes(user, "d", 0, t0, 10)
    write(client, batch[:5])
    # The sixth interval was dead-lettered (say the warehouse refused it), sealed under the device's key.
    key_id, key = create_key(client, user, device)
    letter = seal(key_id, key, dead_letter_value({**batch[5], "site": ""}))
    forget(client, PERIOD, user, period=(t0, t0 + 30 * MINUTE))
    # Someone re-drives it once the cause is fixed: it reads as any record of the topic would.
    ring = KeyRing()
    ring.load(client, ring.missing(key_ids([letter])))
    read = read_batch([letter], ring, WINDOW, NOW_MS)
    assert [i["device_seq"] for i in read.intervals] == [5]
    written = write(client, read.intervals)
    assert written.stored == 0 and written.deleted == 1
    assert raw(client, user) == []
