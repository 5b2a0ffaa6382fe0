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
