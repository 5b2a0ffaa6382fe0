"""Writes into the warehouse tables (the stream jobs' side of the SQL that lives in `warehouse/`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from schemas.deletions import ACCOUNT, Deletion
from warehouse.deletion import load_deletions


@dataclass(frozen=True)
class DeletionGuard:
    """The deletions recorded for the users a writer is about to write for (schemas/deletions.py).

    Every store function of a user's rows takes one and leaves out what it covers, so a writer cannot store a
    deleted row by forgetting to look. A writer loads it right before it writes, and after writing asks
    `new_since` whether a deletion ran meanwhile, to apply that one too (stream_jobs/forget.py)."""

    deletions: tuple[Deletion, ...] = ()

    @classmethod
    def load(cls, client: Client, user_ids: Sequence[str]) -> DeletionGuard:
        return cls(tuple(load_deletions(client, user_ids)))

    def covering(self, user_id: str, device_id: str, start_ms: int, end_ms: int) -> Deletion | None:
        for d in self.deletions:
            if d.covers(user_id, device_id, start_ms, end_ms):
                return d
        return None

    def account_gone(self, user_id: str) -> bool:
        return any(d.kind == ACCOUNT and d.user_id == user_id for d in self.deletions)

    def new_since(self, client: Client, user_ids: Sequence[str]) -> list[Deletion]:
        """The deletions recorded for `user_ids` since this guard was loaded."""
        known = {d.deletion_id for d in self.deletions}
        return [d for d in load_deletions(client, user_ids) if d.deletion_id not in known]

    def keep(self, rows: Sequence[Sequence[object]], user: int, device: int, start: int, end: int) -> list:
        """The rows (user, device, start and end datetimes at those positions) no deletion covers."""
        if not self.deletions:
            return list(rows)
        return [
            r
            for r in rows
            if self.covering(r[user], r[device], _ms(r[start]), _ms(r[end])) is None  # type: ignore[arg-type]
        ]


# For writers with nothing to guard against: fixtures of tests and benchmarks writing into a fresh warehouse.
NO_DELETIONS = DeletionGuard()


def _ms(moment: datetime) -> int:
    # Rounded, not truncated: a datetime made from milliseconds may read back a hair below them.
    return round(moment.timestamp() * 1000)


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


def store_intervals(client: Client, guard: DeletionGuard, columns: Sequence[Sequence[object]]) -> int:
    """Insert intervals given column-wise in INTERVAL_COLUMNS order, but those `guard` covers; returns the count.

    Column-oriented data skips a transpose in the client. The table's key makes a repeated interval replace
    its copy; the rollups are rebuilt from the table afterwards (warehouse/rollups.py), so nothing depends
    on an insert happening once.
    """
    if len(columns) != len(INTERVAL_COLUMNS):
        raise ValueError(f"expected {len(INTERVAL_COLUMNS)} columns, got {len(columns)}")
    if guard.deletions:
        at = {name: n for n, name in enumerate(INTERVAL_COLUMNS)}
        kept = guard.keep(list(zip(*columns, strict=True)), at["user_id"], at["device_id"], at["start"], at["end"])
        columns = [list(column) for column in zip(*kept, strict=True)] if kept else [[] for _ in INTERVAL_COLUMNS]
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
        "SELECT device_id, argMax(state, (last_seq, updated_at)) FROM device_state "
        "WHERE device_id IN {ids:Array(String)} GROUP BY device_id",
        parameters={"ids": list(device_ids)},
    )
    return {device_id: state for device_id, state in result.result_rows}


DEVICE_STATE_COLUMNS = ("user_id", "device_id", "last_seq", "state", "updated_at")


def store_device_states(client: Client, guard: DeletionGuard, states: Sequence[tuple[str, str, int, str]]) -> int:
    """Save (user_id, device_id, last_seq, state JSON) rows (none of an account that is gone); per device the
    highest last_seq wins, then the latest saved."""
    now = datetime.now(UTC)
    rows = [(*state, now) for state in states if not guard.account_gone(state[0])]
    if rows:
        client.insert("device_state", rows, column_names=DEVICE_STATE_COLUMNS, settings={"insert_deduplicate": 0})
    return len(rows)


# The look-ups by start time bound their scan with the primary key: intervals that started in [lo, hi] (ms).
_STARTED_BETWEEN = (
    "AND start >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC') AND start <= fromUnixTimestamp64Milli({hi:Int64}, 'UTC')"
)


def stored_event_ids(
    client: Client,
    keys: Sequence[tuple[str, str, int]],
    first_start_ms: int,
    last_start_ms: int,
    table: str = "intervals",
) -> dict[tuple[str, str, int], str]:
    """(user_id, device_id, device_seq) -> event_id for those of `keys` the warehouse holds, among intervals
    that started in [first_start_ms, last_start_ms] (the bound lets the primary key narrow the scan); `table`:
    "intervals", or "source_intervals" for an import stream of another source kind (warehouse/imports.py)."""
    if not keys:
        return {}
    if table not in ("intervals", "source_intervals"):
        raise ValueError(f"intervals are not stored in {table!r}")
    result = client.query(
        f"SELECT user_id, device_id, device_seq, toString(any(event_id)) FROM {table} "
        f"WHERE {_PAIRS_IN_RANGE} {_STARTED_BETWEEN} GROUP BY user_id, device_id, device_seq",
        parameters={**_pairs_and_range(keys), "lo": first_start_ms, "hi": last_start_ms},
    )
    wanted = set(keys)
    return {
        (user, device, seq): event_id
        for user, device, seq, event_id in result.result_rows
        if (user, device, seq) in wanted
    }


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


def store_refusals(client: Client, guard: DeletionGuard, refusals: Sequence[tuple[str, str, int, str, str]]) -> int:
    """Record (user_id, device_id, device_seq, event_id, reason) of intervals the worker refused (none of an
    account that is gone: no device of it waits for an answer)."""
    now = datetime.now(UTC)
    rows = [
        (u, d, seq, e, reason.splitlines()[0][:MAX_REASON_CHARS] if reason else "refused", now)
        for u, d, seq, e, reason in refusals
        if not guard.account_gone(u)
    ]
    if rows:
        client.insert("refused_intervals", rows, column_names=REFUSED_COLUMNS, settings={"insert_deduplicate": 0})
    return len(rows)


def _pairs_and_range(keys: Sequence[tuple[str, str, int]]) -> dict[str, object]:
    """The parameters of a look-up of (user_id, device_id, device_seq) `keys` as a range scan: the (user, device)
    pairs and the lowest and highest device_seq. A range, not the keys themselves: parsing a list of thousands of
    tuples (an import's batches) cost the warehouse more than the scan; the few rows in the range not asked for
    are left out by the caller."""
    return {
        "users": sorted({k[0] for k in keys}),
        "pairs": sorted({(k[0], k[1]) for k in keys}),
        "lo_seq": min(k[2] for k in keys),
        "hi_seq": max(k[2] for k in keys),
    }


_PAIRS_IN_RANGE = (
    "user_id IN {users:Array(String)} AND (user_id, device_id) IN {pairs:Array(Tuple(String, String))} "
    "AND device_seq >= {lo_seq:UInt64} AND device_seq <= {hi_seq:UInt64}"
)


def refused_seqs(client: Client, keys: Sequence[tuple[str, str, int]]) -> dict[tuple[str, str, int], tuple[str, str]]:
    """(user_id, device_id, device_seq) -> (event_id, reason) for those of `keys` the worker refused."""
    if not keys:
        return {}
    result = client.query(
        "SELECT user_id, device_id, device_seq, argMax(event_id, refused_at), argMax(reason, refused_at) "
        f"FROM refused_intervals WHERE {_PAIRS_IN_RANGE} GROUP BY user_id, device_id, device_seq",
        parameters=_pairs_and_range(keys),
    )
    wanted = set(keys)
    return {
        (u, d, seq): (event_id, reason) for u, d, seq, event_id, reason in result.result_rows if (u, d, seq) in wanted
    }


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


def store_rows(
    client: Client, guard: DeletionGuard, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]
) -> int:
    """Insert row-oriented data into a session table, but the sessions `guard` covers; versions make a repeated
    insert a no-op."""
    rows = guard.keep(
        rows, columns.index("user_id"), columns.index("device_id"), columns.index("start"), columns.index("end")
    )
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
