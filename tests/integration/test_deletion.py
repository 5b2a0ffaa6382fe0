"""Deleting data in the warehouse leaves no row of it in any table (through the real warehouse server)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from warehouse.client import connect
from warehouse.deletion import USER_TABLES, delete_device_data, delete_user_data
from warehouse.migrate import apply_migrations
from warehouse.server import WarehouseServer
from warehouse.writes import INTERVAL_COLUMNS, store_intervals


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from tests.conftest import stack_settings

    settings = stack_settings(tmp_path_factory.mktemp("deletion"), warehouse_password="pw")
    server = WarehouseServer(
        settings.warehouse_dir, port=settings.warehouse_port, user=settings.warehouse_user, password="pw"
    )
    server.start()
    apply_migrations(connect(settings, with_database=False), settings.warehouse_database)
    c = connect(settings)
    yield c
    c.close()
    server.shutdown()


def rows(user: str, device: str, n: int) -> list[list[object]]:
    t0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
    columns: list[list[object]] = [[] for _ in INTERVAL_COLUMNS]
    for i in range(n):
        values = [user, device, str(uuid.uuid4()), i, t0 + timedelta(minutes=i), t0 + timedelta(minutes=i, seconds=59)]
        values += ["Code", "title", "example.com", 1, 2, False, t0]
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


def user_rows_everywhere(client, user: str) -> int:
    tables = client.query(
        "SELECT DISTINCT table FROM system.columns WHERE database = currentDatabase() AND name = 'user_id'"
    ).result_rows
    return sum(
        client.query(f"SELECT count() FROM {t} WHERE user_id = {{u:String}}", parameters={"u": user}).result_rows[0][0]
        for (t,) in tables
    )


def test_every_table_with_a_user_column_is_covered_by_deletion(client):
    tables = {
        t
        for (t,) in client.query(
            "SELECT DISTINCT table FROM system.columns WHERE database = currentDatabase() AND name = 'user_id'"
        ).result_rows
    }
    assert tables == set(USER_TABLES)


def test_deleting_a_user_leaves_no_row_of_them_and_keeps_everyone_else(client):
    store_intervals(client, rows("gone", "d1", 50))
    store_intervals(client, rows("gone", "d2", 20))
    store_intervals(client, rows("stays", "d3", 30))
    delete_user_data(client, "gone")
    assert user_rows_everywhere(client, "gone") == 0
    assert user_rows_everywhere(client, "stays") == 30


def test_deleting_a_device_leaves_the_users_other_devices(client):
    store_intervals(client, rows("two-devices", "laptop", 10))
    store_intervals(client, rows("two-devices", "desktop", 15))
    delete_device_data(client, "two-devices", "laptop")
    left = client.query(
        "SELECT device_id, count() FROM intervals WHERE user_id = 'two-devices' GROUP BY device_id"
    ).result_rows
    assert left == [("desktop", 15)]


def test_a_user_id_with_quotes_deletes_only_itself(client):
    store_intervals(client, rows("o'brien", "d", 3))
    store_intervals(client, rows("o", "d", 4))
    delete_user_data(client, "o' OR 1=1 --")
    delete_user_data(client, "o'brien")
    assert user_rows_everywhere(client, "o'brien") == 0
    assert user_rows_everywhere(client, "o") == 4
