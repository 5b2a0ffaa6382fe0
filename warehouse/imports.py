"""Import streams and what they hold (migration 0013, docs/activitywatch.md): the gateway's and the worker's SQL.

- `register_stream`: the gateway records a stream before it sends any record of it;
- `streams_of`: the worker learns which devices of a batch are import streams, and their source kind;
- `imported_event_ids`: the gateway leaves out what a stream already holds, so importing twice changes nothing;
- `recorded_spans`: the gateway cuts imported window time where the live device recorded, so nothing counts twice;
- `store_source_intervals`: the worker stores intervals of another source kind apart from the time in front.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from schemas.activitywatch import IN_FRONT
from warehouse.writes import DeletionGuard

STREAM_COLUMNS = ("user_id", "device_id", "live_device", "host", "source", "created_at")
SOURCE_INTERVAL_COLUMNS = (
    "user_id",
    "device_id",
    "source",
    "event_id",
    "device_seq",
    "start",
    "end",
    "app",
    "title",
    "site",
    "received_at",
)
# The stored parts of a live device's recording are merged into spans across gaps of up to this (ms): a gap of
# a second between two intervals is no time an imported interval can honestly fill.
SPAN_JOIN_MS = 1_000


@dataclass(frozen=True)
class ImportStream:
    user_id: str
    device_id: str
    live_device: str
    host: str
    source: str


def register_stream(client: Client, stream: ImportStream) -> None:
    s = stream
    client.insert(
        "import_streams",
        [(s.user_id, s.device_id, s.live_device, s.host, s.source, datetime.now(UTC))],
        column_names=STREAM_COLUMNS,
        settings={"insert_deduplicate": 0},
    )


def streams_of(client: Client, device_ids: Sequence[str]) -> dict[str, ImportStream]:
    """The import streams among `device_ids` (a device that is none is absent)."""
    if not device_ids:
        return {}
    result = client.query(
        "SELECT user_id, device_id, argMax(live_device, created_at), argMax(host, created_at), "
        "argMax(source, created_at) FROM import_streams WHERE device_id IN {ids:Array(String)} "
        "GROUP BY user_id, device_id",
        parameters={"ids": sorted(set(device_ids))},
    )
    return {row[1]: ImportStream(*row) for row in result.result_rows}


def streams_of_user(client: Client, user_id: str) -> list[ImportStream]:
    result = client.query(
        "SELECT user_id, device_id, argMax(live_device, created_at), argMax(host, created_at), "
        "argMax(source, created_at) FROM import_streams WHERE user_id = {user:String} "
        "GROUP BY user_id, device_id ORDER BY device_id",
        parameters={"user": user_id},
    )
    return [ImportStream(*row) for row in result.result_rows]


def _table_of(source: str) -> str:
    return "intervals" if source == IN_FRONT else "source_intervals"


def imported_event_ids(
    client: Client, stream: ImportStream, event_ids: Sequence[str], lo_ms: int, hi_ms: int
) -> set[str]:
    """Those of `event_ids` the stream already holds, among its intervals that started in [lo_ms, hi_ms]."""
    if not event_ids:
        return set()
    result = client.query(
        f"SELECT DISTINCT toString(event_id) FROM {_table_of(stream.source)} "
        "WHERE user_id = {user:String} AND device_id = {device:String} "
        "AND start >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC') "
        "AND start <= fromUnixTimestamp64Milli({hi:Int64}, 'UTC') AND event_id IN {ids:Array(UUID)}",
        parameters={"user": stream.user_id, "device": stream.device_id, "lo": lo_ms, "hi": hi_ms, "ids": event_ids},
    )
    return {row[0] for row in result.result_rows}


def recorded_spans(client: Client, user_id: str, device_id: str, lo_ms: int, hi_ms: int) -> list[tuple[int, int]]:
    """The times in [lo_ms, hi_ms) the device's own intervals cover (idle ones too: the collector was there),
    merged, in order, in ms."""
    result = client.query(
        "SELECT toUnixTimestamp64Milli(start), toUnixTimestamp64Milli(`end`) FROM intervals "
        "WHERE user_id = {user:String} AND device_id = {device:String} "
        "AND start < fromUnixTimestamp64Milli({hi:Int64}, 'UTC') "
        "AND start >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC') - INTERVAL 1 DAY "
        "AND `end` > fromUnixTimestamp64Milli({lo:Int64}, 'UTC') ORDER BY start",
        parameters={"user": user_id, "device": device_id, "lo": lo_ms, "hi": hi_ms},
    )
    spans: list[tuple[int, int]] = []
    for start, end in result.result_rows:
        if spans and start <= spans[-1][1] + SPAN_JOIN_MS:
            spans[-1] = (spans[-1][0], max(spans[-1][1], int(end)))
        else:
            spans.append((int(start), int(end)))
    return spans


def store_source_intervals(client: Client, guard: DeletionGuard, rows: Sequence[tuple]) -> int:
    """Insert rows in SOURCE_INTERVAL_COLUMNS order, but those `guard` covers; returns the count."""
    at = {name: n for n, name in enumerate(SOURCE_INTERVAL_COLUMNS)}
    kept = guard.keep(rows, at["user_id"], at["device_id"], at["start"], at["end"])
    if kept:
        client.insert(
            "source_intervals", kept, column_names=SOURCE_INTERVAL_COLUMNS, settings={"insert_deduplicate": 0}
        )
    return len(kept)


def _start_edge(client: Client, table: str, edge: str, user_id: str, device_id: str) -> int | None:
    """`edge` ("min" or "max") of the device's starts in `table` (ms); None when it holds none."""
    result = client.query(
        f"SELECT count(), toUnixTimestamp64Milli({edge}(start)) FROM {table} "
        "WHERE user_id = {user:String} AND device_id = {device:String}",
        parameters={"user": user_id, "device": device_id},
    )
    count, start = result.result_rows[0]
    return int(start) if count else None


def latest_start(client: Client, stream: ImportStream) -> int | None:
    """When the stream's last-starting record starts (ms); None when it holds none."""
    return _start_edge(client, _table_of(stream.source), "max", stream.user_id, stream.device_id)


def first_recorded_start(client: Client, user_id: str, device_id: str) -> int | None:
    """When the device's own first interval starts (ms); None when it recorded nothing yet."""
    return _start_edge(client, "intervals", "min", user_id, device_id)
