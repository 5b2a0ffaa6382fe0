"""Writes into the warehouse tables (the stream jobs' side of the SQL that lives in `warehouse/`)."""

from __future__ import annotations

from collections.abc import Sequence

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


def store_intervals(client: Client, columns: Sequence[Sequence[object]]) -> int:
    """Insert intervals given column-wise in INTERVAL_COLUMNS order; returns the row count.

    Column-oriented data skips a transpose in the client. A second delivery of the same interval is a
    no-op for every query, because the table's key holds the event id (ReplacingMergeTree).
    """
    if len(columns) != len(INTERVAL_COLUMNS):
        raise ValueError(f"expected {len(INTERVAL_COLUMNS)} columns, got {len(columns)}")
    rows = len(columns[0])
    if rows:
        client.insert("intervals", columns, column_names=INTERVAL_COLUMNS, column_oriented=True)
    return rows


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
