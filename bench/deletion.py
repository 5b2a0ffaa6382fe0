"""How long a deletion takes, and what it removes, on the embedded engine: an account with a year of data (a realistic
year of testbed/realistic.py on two devices, with its sessions, rollups, saved states and data keys) among other
people's years; then a day, and one device's data, of a second such account. The baseline, measured in the
same run on the same parts just before, is the least any physical deletion must do: one mutation removing as
many raw rows of a third account alone.
Target (issue 15): an account's deletion under 5 s."""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench._stack import bench_stack
from schemas.deletions import ACCOUNT, DEVICE, PERIOD, plan_deletion
from stream_jobs.forget import delete
from stream_jobs.sessionize import SessionRules
from testbed.realistic import Person, crowd, people_intervals, person_intervals, store, warehouse_rows
from warehouse.client import connect
from warehouse.keys import create_key

OTHER_PEOPLE = 8
TARGET_S = 5.0
RULES = SessionRules()


def _load_person(client, person: Person, end: datetime, progress) -> int:
    """A year of one person's activity on two devices (testbed/realistic.py), stored as the worker stores it, with
    each device's saved sessionizer state and data key."""
    year = person_intervals(person, 365, end)
    store(client, year)
    for device_id in year["device_id"].unique():
        create_key(client, person.user_id, str(device_id))
    progress(f"loaded {len(year):,} intervals of {person.user_id} with sessions, rollups, states and keys")
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
            others = people_intervals(crowd(OTHER_PEOPLE, seed=300), 365, end)
            store(client, others)
            progress(f"loaded the years of {OTHER_PEOPLE} other people")
            leaving = _load_person(client, Person("leaving", 41), end, progress)
            _load_person(client, Person("staying", 42), end, progress)
            baseline = warehouse_rows(person_intervals(Person("baseline", 41), 365, end))
            for part in range(0, len(baseline), 250_000):
                client.insert_df("intervals", baseline.iloc[part : part + 250_000])

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
            device = delete(client, plan_deletion(DEVICE, "staying", now_ms, device_id="staying-desktop"), RULES)
            progress(f"one device of the second account: {device.summary()}")

            client.close()
        finally:
            stack.down()
    return {
        "account_intervals": leaving,
        "other_intervals": len(others),
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
            f"testbed/realistic.py: two people's years ({leaving:,} intervals on two devices, with sessions, rollups, "
            f"states and keys) among the years of {OTHER_PEOPLE} other people ({len(others):,} intervals)"
        ),
        "target": f"an account with a year of data deleted in < {TARGET_S:g} s",
        "meets_target": account.seconds < TARGET_S,
    }
