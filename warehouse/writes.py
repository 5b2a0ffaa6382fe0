"""Writes into the warehouse tables (the stream jobs' side of the SQL that lives in `warehouse/`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

INTERVAL_COLUMNS = (
    "user_id",
    "device_id",
    "event_id",
    "device_seq",
    "start",
    "end",
    "app",
    "title",
    "site",
    "keystrokes",
    "clicks",
    "idle",
    "received_at",
)


def store_intervals(client: Client, columns: Sequence[Sequence[object]], dedup_token: str = "") -> int:
    """Insert intervals given column-wise in INTERVAL_COLUMNS order; returns the row count.

    Column-oriented data skips a transpose in the client. With a deduplication token, a repeated insert
    of the same block (a retry after a timeout that had in fact succeeded) is a no-op for the table and
    for the rollups its materialized views keep, which, unlike the table, could not undo a duplicate.
    """
    if len(columns) != len(INTERVAL_COLUMNS):
        raise ValueError(f"expected {len(INTERVAL_COLUMNS)} columns, got {len(columns)}")
    rows = len(columns[0])
    if rows:
        settings = (
            {"insert_deduplication_token": dedup_token, "deduplicate_blocks_in_dependent_materialized_views": 1}
            if dedup_token
            else None
        )
        client.insert("intervals", columns, column_names=INTERVAL_COLUMNS, column_oriented=True, settings=settings)
    return rows


def stored_device_seqs(client: Client, device_ids: Sequence[str]) -> dict[str, int]:
    """The highest device_seq the warehouse holds per device (devices without rows are absent)."""
    if not device_ids:
        return {}
    result = client.query(
        "SELECT device_id, max(device_seq) FROM intervals WHERE device_id IN {ids:Array(String)} GROUP BY device_id",
        parameters={"ids": list(device_ids)},
    )
    return {device_id: seq for device_id, seq in result.result_rows}


APP_SESSION_COLUMNS = (
    "user_id",
    "device_id",
    "session_id",
    "app",
    "site",
    "start",
    "end",
    "active_ms",
    "keystrokes",
    "clicks",
    "intervals",
    "closed",
    "version",
)
FOCUS_SESSION_COLUMNS = (
    "user_id",
    "device_id",
    "session_id",
    "start",
    "end",
    "active_ms",
    "context_switches",
    "app_sessions",
    "keystrokes",
    "clicks",
    "closed",
    "version",
)


def store_rows(client: Client, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> int:
    """Insert row-oriented data into a session table; versions make a repeated insert a no-op."""
    if rows:
        client.insert(table, rows, column_names=columns)
    return len(rows)


DEVICE_COLUMNS = ("user_id", "device_id", "name", "os", "os_version", "revoked", "updated_at")


def upsert_devices(client: Client, devices: Sequence[Sequence[object]]) -> int:
    """Write devices as (user_id, device_id, name, os, os_version, revoked); the latest write wins."""
    now = datetime.now(UTC)
    rows = [(*device, now) for device in devices]
    if rows:
        client.insert("devices", rows, column_names=DEVICE_COLUMNS)
    return len(rows)
