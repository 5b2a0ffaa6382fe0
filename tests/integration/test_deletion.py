"""Deleting data in the warehouse leaves no row of it in any table (through the real warehouse server), and the
worker's next write brings none of it back: not the device's next interval, not a batch written while the
deletion ran, not a replay of everything (stream_jobs/forget.py, docs/design.md "Delete means gone")."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from schemas.deletions import ACCOUNT, ALL_DATA, DEVICE, PERIOD, plan_deletion
from stream_jobs.forget import delete
from stream_jobs.rows import interval_columns
from stream_jobs.sessionize import SessionRules
from tests.conftest import lone_warehouse
from warehouse.deletion import KEPT_TABLES, USER_TABLES
from warehouse.goals import add_goal, list_goals
from warehouse.migrate import apply_retention
from warehouse.notices import find_due, set_account, set_goal_channel, set_weekly_summary
from warehouse.rollups import rebuild_touched, rollup_drift
from warehouse.writes import INTERVAL_COLUMNS, NO_DELETIONS, store_intervals, upsert_devices

RULES = SessionRules()
NOW = datetime(2026, 11, 3, tzinfo=UTC)


def forget(client, kind: str, user: str, device: str = "", start=None, end=None, now: datetime = NOW):
    """Delete as the gateway does: the record first, then every table."""
    deletion = plan_deletion(
        kind, user, int(now.timestamp() * 1000), device_id=device, **({"start": start, "end": end} if start else {})
    )
    return delete(client, deletion, RULES)


def delete_user_data(client, user: str, *, account: bool = False):
    return forget(client, ACCOUNT if account else ALL_DATA, user)


def delete_device_data(client, user: str, device: str):
    return forget(client, DEVICE, user, device)


def delete_time_range(client, user: str, start: datetime, end: datetime):
    return forget(client, PERIOD, user, "", start, end)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with lone_warehouse(tmp_path_factory.mktemp("deletion")) as c:
        yield c


def store(client, user: str, device: str, n: int) -> None:
    """n one-minute intervals (59 s active each) from 2026-11-02 09:00 UTC, stored and rolled up as the worker does."""
    t0 = int(datetime(2026, 11, 2, 9, tzinfo=UTC).timestamp() * 1000)
    intervals = []
    for i in range(n):
        start = t0 + i * 60_000
        values = [user, device, str(uuid.uuid4()), i, start, start + 59_000, "Code", "title", "example.com", 1, 2]
        intervals.append(dict(zip(INTERVAL_COLUMNS, [*values, False, t0], strict=True)))
    store_intervals(client, NO_DELETIONS, interval_columns(intervals))
    rebuild_touched(client, intervals)


# Tables (not views, which store nothing) with a user_id column: where a user's rows can be.
_USER_TABLES_QUERY = (
    "SELECT DISTINCT c.table FROM system.columns AS c JOIN system.tables AS t "
    "ON t.database = c.database AND t.name = c.table "
    "WHERE c.database = currentDatabase() AND c.name = 'user_id' AND t.engine NOT IN ('MaterializedView', 'View')"
)


def user_rows_everywhere(client, user: str) -> dict[str, int]:
    """Rows of `user` per table, over every table with a user_id column."""
    return {
        t: client.query(f"SELECT count() FROM {t} WHERE user_id = {{u:String}}", parameters={"u": user}).result_rows[0][
            0
        ]
        for (t,) in client.query(_USER_TABLES_QUERY).result_rows
    }


def test_every_table_with_a_user_column_is_covered_by_deletion(client):
    assert {t for (t,) in client.query(_USER_TABLES_QUERY).result_rows} == set(USER_TABLES) | set(KEPT_TABLES)


def test_deleting_a_user_leaves_no_row_of_them_and_keeps_everyone_else(client):
    store(client, "gone", "d1", 50)
    store(client, "gone", "d2", 20)
    store(client, "stays", "d3", 30)
    for user in ("gone", "stays"):
        goal = add_goal(client, user, kind="app", target="Code", direction="at_most", period="day", minutes=1)
        set_goal_channel(client, user, goal, "desktop", True)
        set_account(client, user, paused=False, tz="Europe/Prague")
        set_weekly_summary(client, user, True, available=("desktop", "email"))
        assert find_due(client, user, datetime(2026, 11, 2, 12, tzinfo=UTC)), user  # 30 min and more against 1
    before = user_rows_everywhere(client, "stays")
    gone = user_rows_everywhere(client, "gone")
    kept = ("goals", "notice_switches", "notice_accounts", "goal_notices", "notice_weekly")
    assert tuple(gone[table] for table in kept) == (1, 1, 1, 2, 1)
    report = delete_user_data(client, "gone", account=True)
    assert report.removed["intervals"] == 70 and "70 intervals" in report.summary()
    left = user_rows_everywhere(client, "gone")
    assert left.pop("deletions") == 1 and sum(left.values()) == 0  # the goal and its notices with the rest
    assert list_goals(client, "gone") == [] and len(list_goals(client, "stays")) == 1
    assert user_rows_everywhere(client, "stays") == before and before["intervals"] == 30


def test_deleting_all_data_of_a_living_account_or_one_device_keeps_the_device_names(client):
    store(client, "keeps", "d1", 5)
    store(client, "keeps", "d2", 5)
    upsert_devices(
        client, [("keeps", "d1", "Laptop", "Linux", "6.1", False), ("keeps", "d2", "Desk", "Linux", "6.1", False)]
    )
    delete_device_data(client, "keeps", "d1")
    names = "SELECT device_id, name FROM devices FINAL WHERE user_id = 'keeps' ORDER BY 1"
    assert client.query(names).result_rows == [("d1", "Laptop"), ("d2", "Desk")]
    assert client.query("SELECT count() FROM intervals WHERE user_id = 'keeps' AND device_id = 'd1'").result_rows == [
        (0,)
    ]
    delete_user_data(client, "keeps")
    left = user_rows_everywhere(client, "keeps")
    assert left.pop("devices") == 2 and left.pop("deletions") == 2 and sum(left.values()) == 0


def test_deleting_a_device_leaves_the_users_other_devices(client):
    store(client, "two-devices", "laptop", 10)
    store(client, "two-devices", "desktop", 15)
    delete_device_data(client, "two-devices", "laptop")
    left = client.query(
        "SELECT device_id, count() FROM intervals WHERE user_id = 'two-devices' GROUP BY device_id"
    ).result_rows
    assert left == [("desktop", 15)]


def test_a_user_id_with_quotes_deletes_only_itself(client):
    store(client, "o'brien", "d", 3)
    store(client, "o", "d", 4)
    before = user_rows_everywhere(client, "o")
    delete_user_data(client, "o' OR 1=1 --", account=True)
    delete_user_data(client, "o'brien", account=True)
    left = user_rows_everywhere(client, "o'brien")
    assert left.pop("deletions") == 1 and sum(left.values()) == 0
    assert user_rows_everywhere(client, "o") == before and before["intervals"] == 4


def test_deleting_a_time_range_removes_its_intervals_and_rollups_and_keeps_the_rest(client):
    # store(): one-minute intervals from 2026-11-02 09:00 UTC; 180 of them run to 12:00.
    store(client, "ranged", "d", 180)
    hour = datetime(2026, 11, 2, 10, tzinfo=UTC)
    delete_time_range(client, "ranged", hour, hour + timedelta(hours=1))
    u = {"u": "ranged"}
    left = client.query(
        "SELECT toHour(start), count() FROM intervals WHERE user_id = {u:String} GROUP BY 1 ORDER BY 1", parameters=u
    ).result_rows
    assert left == [(9, 60), (11, 60)]
    hourly = client.query(
        "SELECT toHour(hour), sum(active_ms) FROM usage_by_hour FINAL WHERE user_id = {u:String} GROUP BY 1 ORDER BY 1",
        parameters=u,
    ).result_rows
    assert hourly == [(9, 60 * 59_000), (11, 60 * 59_000)]
    daily = client.query("SELECT sum(active_ms) FROM usage_by_title_day FINAL WHERE user_id = {u:String}", parameters=u)
    assert daily.result_rows[0][0] == 120 * 59_000
    assert rollup_drift(client, "ranged") == []


def test_deleting_a_range_rebuilds_the_hour_an_edge_crossing_interval_reached_outside_it(client):
    # One interval from 09:59:30 to 10:00:30 is removed whole by deleting [10:00, 11:00); its 30 s in the
    # 09:00 hour must leave that hour's rollup too.
    t = int(datetime(2026, 11, 2, 9, 59, 30, tzinfo=UTC).timestamp() * 1000)
    crossing = dict(
        zip(
            INTERVAL_COLUMNS,
            ["edge", "d", str(uuid.uuid4()), 0, t, t + 60_000, "Code", "", "", 0, 0, False, t],
            strict=True,
        )
    )
    store_intervals(client, NO_DELETIONS, interval_columns([crossing]))
    rebuild_touched(client, [crossing])
    hour = datetime(2026, 11, 2, 10, tzinfo=UTC)
    delete_time_range(client, "edge", hour, hour + timedelta(hours=1))
    left = client.query("SELECT count() FROM usage_by_hour FINAL WHERE user_id = 'edge'").result_rows[0][0]
    assert left == 0
    assert rollup_drift(client, "edge") == []


def test_a_range_inside_hours_leaves_the_rollups_equal_to_the_raw_rows_left(client):
    store(client, "minutes", "d", 60)
    start = datetime(2026, 11, 2, 9, 10, 30, tzinfo=UTC)
    delete_time_range(client, "minutes", start, start + timedelta(minutes=20))
    # Intervals 09:10 (crossing the start) to 09:30 (crossing the end) are removed whole: 21 of them.
    left = client.query("SELECT count() FROM intervals FINAL WHERE user_id = 'minutes'").result_rows[0][0]
    assert left == 60 - 21
    assert rollup_drift(client, "minutes") == []


def test_raw_retention_sets_and_removes_the_ttl_of_the_raw_rows_and_of_the_titles_rolled_up_from_them(client):
    def ttl(table: str) -> str:
        return client.query(
            "SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
            parameters={"t": table},
        ).result_rows[0][0]

    apply_retention(client, 30)
    assert "TTL toDateTime(start) + toIntervalDay(30)" in ttl("intervals")
    assert "TTL toDateTime(day) + toIntervalDay(30)" in ttl("usage_by_title_day")
    assert " TTL " not in ttl("usage_by_hour")  # no title there: kept regardless
    apply_retention(client, 0)
    assert " TTL " not in ttl("intervals") and " TTL " not in ttl("usage_by_title_day")
