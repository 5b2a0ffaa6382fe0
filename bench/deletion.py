"""How long a deletion takes, and what it removes, on the embedded engine: an account with a year of data (about a
million intervals on two devices, with their sessions, rollups, saved states and data keys) among millions of
other users' rows; then a day, and one device's data, of a second such account. The baseline, measured in the
same run on the same parts just before, is the least any physical deletion must do: one mutation removing as
many raw rows of a third account alone.
Target (issue 15): an account's deletion under 5 s."""

from __future__ import annotations

import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench._stack import bench_stack
from bench.warehouse_queries import _heavy_year
from schemas.deletions import ACCOUNT, DEVICE, PERIOD, plan_deletion
from stream_jobs.forget import delete
from stream_jobs.rows import session_rows
from stream_jobs.sessionize import SessionRules, advance
from warehouse.client import connect
from warehouse.keys import create_key
from warehouse.rollups import rebuild_user_span
from warehouse.writes import APP_SESSION_COLUMNS, FOCUS_SESSION_COLUMNS, NO_DELETIONS, store_device_states, store_rows

OTHER_ROWS = 5_000_000
OTHER_USERS = 100
TARGET_S = 5.0
RULES = SessionRules()


def _load_person(client, user: str, end: datetime, progress) -> int:
    """A year of one person's activity on two devices, stored as the worker stores it."""
    year = _heavy_year(end)
    year["user_id"] = user
    year["device_id"] = user + "-" + year["device_id"]
    for part in range(0, len(year), 200_000):
        client.insert_df("intervals", year.iloc[part : part + 200_000])
    for device_id, rows in year.groupby("device_id", sort=False):
        records = rows.assign(
            start=rows["start"].dt.as_unit("ms").astype("int64"), end=rows["end"].dt.as_unit("ms").astype("int64")
        ).to_dict("records")
        made = advance(None, records, RULES)
        store_rows(client, NO_DELETIONS, "app_sessions", APP_SESSION_COLUMNS,
                   session_rows(made.app_sessions, APP_SESSION_COLUMNS))  # fmt: skip
        store_rows(client, NO_DELETIONS, "focus_sessions", FOCUS_SESSION_COLUMNS,
                   session_rows(made.focus_sessions, FOCUS_SESSION_COLUMNS))  # fmt: skip
        state = made.state
        store_device_states(client, NO_DELETIONS, [(user, device_id, state.last_seq, json.dumps(state.to_dict()))])
        create_key(client, user, device_id)
    rebuild_user_span(client, user, end - timedelta(days=366), end + timedelta(days=1))
    progress(f"loaded {len(year):,} intervals of {user} with sessions, rollups, states and keys")
    return len(year)


def _rows(client, user: str) -> int:
    return client.query("SELECT count() FROM intervals WHERE user_id = {u:String}", parameters={"u": user}).result_rows[
        0
    ][0]


def run(progress) -> dict:
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    now_ms = int(end.timestamp() * 1000)
    with tempfile.TemporaryDirectory(prefix="bench-deletion-") as tmp:
        stack = bench_stack(Path(tmp))
        try:
            stack.start_warehouse()
            client = connect(stack.settings)
            first = end - timedelta(days=365)
            client.command(
                "INSERT INTO intervals SELECT concat('user-', toString(number % {users:UInt32})), "
                "concat('device-', toString(number % {users:UInt32})), generateUUIDv4(number), number, "
                "toDateTime64({first:DateTime('UTC')}, 3, 'UTC') + toIntervalMillisecond(number * 6000), "
                "toDateTime64({first:DateTime('UTC')}, 3, 'UTC') + toIntervalMillisecond(number * 6000 + 20000), "
                "['Code','Firefox','Terminal','Slack'][number % 4 + 1], concat('title ', toString(number % 50)), "
                "['', 'github.com', 'example.org'][number % 3 + 1], number % 100, number % 10, number % 23 = 0, "
                "toDateTime64({first:DateTime('UTC')}, 3, 'UTC') FROM numbers({n:UInt64})",
                parameters={"users": OTHER_USERS, "first": first, "n": OTHER_ROWS},
                settings={"max_insert_block_size": 1_000_000},
            )
            progress(f"loaded {OTHER_ROWS:,} intervals of {OTHER_USERS} other users")
            leaving = _load_person(client, "leaving", end, progress)
            _load_person(client, "staying", end, progress)
            baseline = _heavy_year(end).assign(user_id="baseline")
            for part in range(0, len(baseline), 200_000):
                client.insert_df("intervals", baseline.iloc[part : part + 200_000])

            # The baseline, on the parts as they are now: one mutation removing as many raw rows alone.
            began = time.monotonic()
            client.command("ALTER TABLE intervals DELETE WHERE user_id = 'baseline'", settings={"mutations_sync": 2})
            bare_s = time.monotonic() - began
            progress(f"baseline, one mutation of {len(baseline):,} raw rows alone: {bare_s:.2f} s")

            account = delete(client, plan_deletion(ACCOUNT, "leaving", now_ms), RULES)
            progress(f"account of {leaving:,} intervals: {account.summary()}")
            assert _rows(client, "leaving") == 0

            day = end - timedelta(days=100)
            period = delete(client, plan_deletion(PERIOD, "staying", now_ms, start=day, end=day + timedelta(days=1)),
                            RULES)  # fmt: skip
            progress(f"a day of the second account: {period.summary()}")
            device = delete(client, plan_deletion(DEVICE, "staying", now_ms, device_id="staying-heavy-desktop"), RULES)
            progress(f"one device of the second account: {device.summary()}")

            client.close()
        finally:
            stack.down()
    return {
        "account_intervals": leaving,
        "other_intervals": OTHER_ROWS,
        "account_deletion_s": round(account.seconds, 2),
        "account_removed": account.removed,
        "period_day_deletion_s": round(period.seconds, 2),
        "period_removed": period.removed,
        "device_deletion_s": round(device.seconds, 2),
        "device_removed": device.removed,
        "baseline_intervals": len(baseline),
        "baseline_bare_mutation_s": round(bare_s, 2),
        "ratio_account_to_baseline": round(account.seconds / bare_s, 2),
        "data": (
            f"two accounts of a year each (~1M intervals on two devices, with sessions, rollups, states and keys) "
            f"among {OTHER_ROWS:,} rows of {OTHER_USERS} other users"
        ),
        "target": f"an account with a year of data (~1M intervals) deleted in < {TARGET_S:g} s",
        "meets_target": account.seconds < TARGET_S,
    }
