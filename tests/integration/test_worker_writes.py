"""The worker's writes against the real warehouse: a repeated event id counts once everywhere, and records the
warehouse itself refuses are isolated (the rest stored at once), refused with a reason, and leave no trace."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from schemas.contract import Window
from stream_jobs.batch import settle_poison, write_batch
from stream_jobs.failures import is_permanent
from stream_jobs.isolate import write_isolating
from stream_jobs.plan import group_by_device
from stream_jobs.sessionize import SessionRules
from tests.conftest import lone_warehouse
from warehouse.rollups import insert_settings, rollup_drift

RULES = SessionRules(session_gap_ms=30_000, break_after_ms=300_000)
T0 = int(datetime(2026, 11, 30, 9, tzinfo=UTC).timestamp() * 1000)
WINDOW = Window()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with lone_warehouse(tmp_path_factory.mktemp("worker-writes")) as c:
        c.command("ALTER TABLE intervals ADD CONSTRAINT no_raw_poison CHECK app != 'poison-raw'")
        c.command("ALTER TABLE app_sessions ADD CONSTRAINT no_session_poison CHECK app != 'poison-session'")
        yield c


def iv(user: str, device: str, seq: int, app: str = "Code", event_id: str | None = None, keys: int = 5) -> dict:
    start = T0 + seq * 60_000
    return {
        "user_id": user,
        "device_id": device,
        "event_id": event_id or str(uuid.uuid4()),
        "device_seq": seq,
        "start": start,
        "end": start + 60_000,
        "app": app,
        "title": "",
        "site": "",
        "keystrokes": keys,
        "clicks": 1,
        "idle": False,
        "received_at": start + 60_000,
    }


def write(client, intervals):
    return write_batch(client, group_by_device(intervals), RULES, insert_settings(client), WINDOW)


def counts(client, user: str) -> dict[str, object]:
    one = {"u": user}
    return {
        "raw": client.query(
            "SELECT count(), sum(keystrokes) FROM intervals FINAL WHERE user_id={u:String}", parameters=one
        ).result_rows[0],
        "hour": client.query(
            "SELECT sum(active_ms), sum(keystrokes) FROM usage_by_hour FINAL WHERE user_id={u:String}", parameters=one
        ).result_rows[0],
        "sessions": client.query(
            "SELECT sum(active_ms), sum(keystrokes) FROM app_sessions FINAL WHERE user_id={u:String}", parameters=one
        ).result_rows[0],
        "apps": sorted(
            r[0]
            for r in client.query(
                "SELECT DISTINCT app FROM app_sessions WHERE user_id={u:String}", parameters=one
            ).result_rows
        ),
        "refused": client.query(
            "SELECT device_seq, reason FROM refused_intervals FINAL WHERE user_id={u:String} ORDER BY device_seq",
            parameters=one,
        ).result_rows,
        "state_seq": client.query(
            "SELECT max(last_seq) FROM device_state WHERE user_id={u:String}", parameters=one
        ).result_rows[0][0],
    }


def test_a_second_interval_under_a_stored_event_id_counts_nowhere_and_is_refused_with_the_first_seq(client):
    user = f"u-{uuid.uuid4().hex[:6]}"
    first = iv(user, "d", 0, keys=5)
    write(client, [first, iv(user, "d", 1, keys=5)])
    # Another batch: the same event id again under a new seq, with other content and another start.
    again = iv(user, "d", 2, app="Other", event_id=first["event_id"], keys=500)
    assert write(client, [again, iv(user, "d", 3, keys=5)]).refused == 1
    got = counts(client, user)
    assert got["raw"] == (3, 15)
    assert got["hour"] == (180_000, 15) and got["sessions"] == (180_000, 15)
    assert "Other" not in got["apps"]
    assert got["refused"] == [(2, f"repeated event_id: {first['event_id']} was already stored under device_seq 0")]
    assert got["state_seq"] == 3
    # Redelivered whole (a worker restarted before committing), nothing changes.
    write(client, [again, iv(user, "d", 3, keys=5)])
    assert counts(client, user) == got
    assert rollup_drift(client, user) == []


@pytest.mark.parametrize("poison_app", ["poison-raw", "poison-session"])
def test_a_record_the_warehouse_refuses_is_isolated_and_everything_beside_it_stored(client, poison_app):
    user, other = f"u-{uuid.uuid4().hex[:6]}", f"o-{uuid.uuid4().hex[:6]}"
    # Device ids are unique across accounts (the worker keys a device's state by its id alone).
    mine_device, their_device = f"d-{uuid.uuid4().hex[:6]}", f"e-{uuid.uuid4().hex[:6]}"
    batch = [iv(user, mine_device, s) for s in range(5)] + [iv(other, their_device, s) for s in range(4)]
    batch[2] = iv(user, mine_device, 2, app=poison_app)

    settings = insert_settings(client)
    outcome = write_isolating(
        lambda part: write_batch(client, part, RULES, settings, WINDOW), group_by_device(batch), is_permanent
    )
    settled = settle_poison(client, outcome.poison)

    assert [(i["device_seq"], i["app"]) for i, _ in settled] == [(2, poison_app)]
    assert settled[0][1].startswith("the warehouse refused it (code 469: ")
    mine, theirs = counts(client, user), counts(client, other)
    assert mine["raw"] == (4, 20) and theirs["raw"] == (4, 20)
    # The poison left no trace, not even a raw row its failed session write had left behind.
    assert mine["hour"] == (240_000, 20) and mine["sessions"] == (240_000, 20)
    assert [seq for seq, _ in mine["refused"]] == [2] and mine["state_seq"] == 4
    assert rollup_drift(client, user) == [] and rollup_drift(client, other) == []
    state = json.loads(
        client.query(
            "SELECT argMax(state, last_seq) FROM device_state WHERE user_id={u:String}", parameters={"u": user}
        ).result_rows[0][0]
    )
    assert state["last_seq"] == 4
