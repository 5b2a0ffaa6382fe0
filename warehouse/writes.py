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


def store_intervals(client: Client, columns: Sequence[Sequence[object]]) -> int:
    """Insert intervals given column-wise in INTERVAL_COLUMNS order; returns the row count.

    Column-oriented data skips a transpose in the client. The table's key makes a repeated interval replace
    its copy; the rollups are rebuilt from the table afterwards (warehouse/rollups.py), so nothing depends
    on an insert happening once.
    """
    if len(columns) != len(INTERVAL_COLUMNS):
        raise ValueError(f"expected {len(INTERVAL_COLUMNS)} columns, got {len(columns)}")
    rows = len(columns[0])
    if rows:
        client.insert(
            "intervals",
            columns,
            column_names=INTERVAL_COLUMNS,
            column_oriented=True,
            settings={"insert_deduplicate": 0},
        )
    return rows


def load_device_states(client: Client, device_ids: Sequence[str]) -> dict[str, str]:
    """The latest saved sessionizer state (JSON) of each device that has one."""
    if not device_ids:
        return {}
    result = client.query(
        "SELECT device_id, argMax(state, last_seq) FROM device_state WHERE device_id IN {ids:Array(String)} "
        "GROUP BY device_id",
        parameters={"ids": list(device_ids)},
    )
    return {device_id: state for device_id, state in result.result_rows}


DEVICE_STATE_COLUMNS = ("user_id", "device_id", "last_seq", "state", "updated_at")


def store_device_states(client: Client, states: Sequence[tuple[str, str, int, str]]) -> int:
    """Save (user_id, device_id, last_seq, state JSON) rows; per device the highest last_seq wins."""
    now = datetime.now(UTC)
    rows = [(*state, now) for state in states]
    if rows:
        client.insert("device_state", rows, column_names=DEVICE_STATE_COLUMNS, settings={"insert_deduplicate": 0})
    return len(rows)


# The look-ups by start time bound their scan with the primary key: intervals that started in [lo, hi] (ms).
_STARTED_BETWEEN = (
    "AND start >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC') AND start <= fromUnixTimestamp64Milli({hi:Int64}, 'UTC')"
)


def stored_event_ids(
    client: Client, keys: Sequence[tuple[str, str, int]], first_start_ms: int, last_start_ms: int
) -> dict[tuple[str, str, int], str]:
    """(user_id, device_id, device_seq) -> event_id for those of `keys` the warehouse holds, among intervals
    that started in [first_start_ms, last_start_ms] (the bound lets the primary key narrow the scan)."""
    if not keys:
        return {}
    result = client.query(
        "SELECT user_id, device_id, device_seq, toString(any(event_id)) FROM intervals "
        "WHERE user_id IN {users:Array(String)} "
        f"{_STARTED_BETWEEN} "
        "AND (user_id, device_id, device_seq) IN {keys:Array(Tuple(String, String, UInt64))} "
        "GROUP BY user_id, device_id, device_seq",
        parameters={
            "users": sorted({k[0] for k in keys}),
            "lo": first_start_ms,
            "hi": last_start_ms,
            "keys": list(keys),
        },
    )
    return {(user, device, seq): event_id for user, device, seq, event_id in result.result_rows}


def highest_stored_seqs(client: Client, device_ids: Sequence[str]) -> dict[str, int]:
    """The highest device_seq each device's sessionizer state has processed (devices without are absent)."""
    if not device_ids:
        return {}
    result = client.query(
        "SELECT device_id, max(last_seq) FROM device_state WHERE device_id IN {ids:Array(String)} GROUP BY device_id",
        parameters={"ids": list(device_ids)},
    )
    return {device_id: seq for device_id, seq in result.result_rows}


REFUSED_COLUMNS = ("user_id", "device_id", "device_seq", "event_id", "reason", "refused_at")
# A refusal's reason is kept short: the first line of it, never a warehouse message's quoted row.
MAX_REASON_CHARS = 300


def store_refusals(client: Client, refusals: Sequence[tuple[str, str, int, str, str]]) -> int:
    """Record (user_id, device_id, device_seq, event_id, reason) of intervals the worker refused."""
    now = datetime.now(UTC)
    rows = [
        (u, d, seq, e, reason.splitlines()[0][:MAX_REASON_CHARS] if reason else "refused", now)
        for u, d, seq, e, reason in refusals
    ]
    if rows:
        client.insert("refused_intervals", rows, column_names=REFUSED_COLUMNS, settings={"insert_deduplicate": 0})
    return len(rows)


def refused_seqs(client: Client, keys: Sequence[tuple[str, str, int]]) -> dict[tuple[str, str, int], tuple[str, str]]:
    """(user_id, device_id, device_seq) -> (event_id, reason) for those of `keys` the worker refused."""
    if not keys:
        return {}
    result = client.query(
        "SELECT user_id, device_id, device_seq, argMax(event_id, refused_at), argMax(reason, refused_at) "
        "FROM refused_intervals WHERE user_id IN {users:Array(String)} "
        "AND (user_id, device_id, device_seq) IN {keys:Array(Tuple(String, String, UInt64))} "
        "GROUP BY user_id, device_id, device_seq",
        parameters={"users": sorted({k[0] for k in keys}), "keys": list(keys)},
    )
    return {(u, d, seq): (event_id, reason) for u, d, seq, event_id, reason in result.result_rows}


def first_seqs_of_event_ids(
    client: Client, keys: Sequence[tuple[str, str, str]], first_start_ms: int, last_start_ms: int
) -> dict[tuple[str, str], int]:
    """(device_id, event_id) -> the lowest device_seq stored under it, for those of the (user_id, device_id,
    event_id) `keys` the warehouse holds among intervals that started in [first_start_ms, last_start_ms].

    The event ids go as one array of UUIDs, the devices as another, and the pairs are matched here: a parameter
    of ten thousand (user, device, event) tuples costs the server four times as long to read."""
    if not keys:
        return {}
    result = client.query(
        "SELECT device_id, toString(event_id), min(device_seq) FROM intervals "
        "WHERE user_id IN {users:Array(String)} AND device_id IN {devices:Array(String)} "
        f"{_STARTED_BETWEEN} "
        "AND event_id IN {ids:Array(UUID)} "
        "GROUP BY device_id, event_id",
        parameters={
            "users": sorted({k[0] for k in keys}),
            "devices": sorted({k[1] for k in keys}),
            "lo": first_start_ms,
            "hi": last_start_ms,
            "ids": sorted({k[2] for k in keys}),
        },
    )
    wanted = {(device, event_id) for _, device, event_id in keys}
    return {(d, e): seq for d, e, seq in result.result_rows if (d, e) in wanted}


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
