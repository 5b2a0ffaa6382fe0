"""The rollups `usage_by_hour` and `usage_by_title_day`, always recomputed from the raw intervals, never added to.

After every insert of intervals the writer rebuilds the hours and days those intervals touch, per device,
from what the `intervals` table holds (with FINAL, so each event once). A rebuild row's `version` is how many
of the device's raw intervals overlap that hour or day: it can only grow as intervals arrive, so of two
rebuilds the one that saw more rows wins, and rebuilding again (a redelivered batch, a retry after the
warehouse died mid-insert, a second worker, a consumer group replaying the topic) writes the same rows at the
same version. The rollups therefore equal a function of the raw rows, whatever happened on the way
(docs/design.md, "Delivery"). `rollup_drift` checks exactly that, per user and hour (and day, by title);
`rebuild_user_span` repairs it and is what deletion uses after removing raw rows.

An interval that crosses an hour (day) is split at it; its keys and clicks count in the hour (day) it started.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client

from warehouse.migrate import warehouse_cluster

HOUR_S = 3600
DAY_S = 86400
# The longest interval the gateway accepts (schemas/contract.py MAX_INTERVAL_MS): a row overlapping a span
# started at most this long before it, which bounds the scan by the primary key.
_MAX_INTERVAL_S = 24 * 3600
MAX_INTERVAL = timedelta(seconds=_MAX_INTERVAL_S)
# Per unit: the rollup table, its span column and type, and what it groups by beside user, span and device. The day's
# rollup is by title too (migration 0015): the title questions read it for whole days.
_TABLES = {
    HOUR_S: ("usage_by_hour", "hour", "DateTime('UTC')", "app, site"),
    DAY_S: ("usage_by_title_day", "day", "Date", "app, site, title"),
}
# A rebuild must always land: block deduplication would drop a repeat of an earlier rebuild's block. On a
# cluster it goes through the Distributed table and must be stored on the shard before the call returns.
_INSERT = {"insert_deduplicate": 0}
_INSERT_ON_CLUSTER = {**_INSERT, "distributed_foreground_insert": 1}


def spans_of(start_ms: int, end_ms: int, unit_s: int) -> range:
    """The starts (Unix seconds) of the hours or days, of `unit_s` seconds each, that [start, end) overlaps.

    A zero-length interval belongs to the span it starts in (it still carries keys and clicks)."""
    unit_ms = unit_s * 1000
    first = start_ms // unit_ms
    last = max(first, (max(end_ms, start_ms + 1) - 1) // unit_ms)
    return range(first * unit_s, (last + 1) * unit_s, unit_s)


def touched_spans(intervals: Iterable[dict], unit_s: int) -> set[tuple[str, str, int]]:
    """(user_id, device_id, span start) for every hour or day any of the intervals overlaps."""
    touched = set()
    for iv in intervals:
        for span in spans_of(iv["start"], iv["end"], unit_s):
            touched.add((iv["user_id"], iv["device_id"], span))
    return touched


def _split(unit_s: int, keys: str) -> str:
    """Raw rows cut at each span they overlap: columns span_start, part_ms, first_span beside the row's own.

    The same arithmetic as `spans_of`, on milliseconds since the epoch."""
    unit_ms = unit_s * 1000
    return f"""
        SELECT user_id, device_id, {keys}, idle, keystrokes, clicks,
               toUnixTimestamp64Milli(start) AS s_ms, toUnixTimestamp64Milli(`end`) AS e_ms,
               intDiv(s_ms, {unit_ms}) * {unit_s} AS first_start,
               greatest(first_start, intDiv(greatest(e_ms, s_ms + 1) - 1, {unit_ms}) * {unit_s}) AS last_start,
               arrayJoin(range(toUInt32(first_start), toUInt32(last_start) + 1, {unit_s})) AS span_start,
               toUInt64(greatest(0, least(e_ms, (span_start + {unit_s}) * 1000) - greatest(s_ms, span_start * 1000)))
                   AS part_ms,
               span_start = first_start AS first_span"""


def _totals(unit_s: int, where_raw: str, where_span: str) -> str:
    """Per user, span, device, app and site: the totals over the raw rows, and the span's version."""
    _, column, column_type, keys = _TABLES[unit_s]
    return f"""
SELECT user_id, {column}, device_id, {keys}, active_ms, idle_ms, keystrokes, clicks,
       sum(n) OVER (PARTITION BY user_id, device_id, {column}) AS version
FROM
(
    SELECT user_id, CAST(toDateTime(span_start, 'UTC') AS {column_type}) AS {column}, device_id, {keys},
           sumIf(part_ms, NOT idle) AS active_ms, sumIf(part_ms, idle) AS idle_ms,
           toUInt64(sumIf(keystrokes, first_span)) AS keystrokes, toUInt64(sumIf(clicks, first_span)) AS clicks,
           count() AS n
    FROM ({_split(unit_s, keys)}
        FROM intervals FINAL
        WHERE {where_raw})
    WHERE {where_span}
    GROUP BY user_id, {column}, device_id, {keys}
)"""


def _insert_into(table: str, column: str, keys: str) -> str:
    return (
        f"INSERT INTO {table} (user_id, {column}, device_id, {keys}, active_ms, idle_ms, keystrokes, clicks, version)"
    )


def insert_settings(client: Client) -> dict:
    """The settings every rebuild insert needs on this warehouse's layout (one server or a cluster)."""
    return _INSERT_ON_CLUSTER if warehouse_cluster(client) else _INSERT


def rebuild_touched(client: Client, intervals: Iterable[dict], *, settings: dict | None = None) -> None:
    """Recompute both rollups for every (device, hour) and (device, day) the intervals overlap.

    Call it after the intervals are stored. `settings` are the insert settings (`insert_settings(client)`),
    passed in by a caller that rebuilds often, to spare a look-up of the warehouse layout per call."""
    intervals = list(intervals)
    if not intervals:
        return
    settings = insert_settings(client) if settings is None else settings
    pairs = sorted({(iv["user_id"], iv["device_id"]) for iv in intervals})
    for unit_s, (table, column, _, keys) in _TABLES.items():
        touched = sorted(touched_spans(intervals, unit_s))
        spans = [span for _, _, span in touched]
        first = datetime.fromtimestamp(min(spans), UTC) - MAX_INTERVAL
        after = datetime.fromtimestamp(max(spans) + unit_s, UTC)
        where_raw = (
            "(user_id, device_id) IN {pairs:Array(Tuple(String, String))} "
            "AND start >= {first:DateTime64(3, 'UTC')} AND start < {after:DateTime64(3, 'UTC')}"
        )
        where_span = "(user_id, device_id, span_start) IN {touched:Array(Tuple(String, String, UInt32))}"
        client.command(
            f"{_insert_into(table, column, keys)} {_totals(unit_s, where_raw, where_span)}",
            parameters={"pairs": pairs, "touched": touched, "first": first, "after": after},
            settings=settings,
        )


def _span_params(user_id: str, first: datetime, after: datetime) -> dict:
    return {
        "user": user_id,
        "first": first,
        "after": after,
        "scan_from": first - timedelta(seconds=_MAX_INTERVAL_S),
        "first_s": int(first.timestamp()),
        "after_s": int(after.timestamp()),
    }


def rebuild_user_span(client: Client, user_id: str, first: datetime, after: datetime) -> None:
    """Make both rollups of `user_id` exact from raw for every hour and day in [first, after).

    `first` and `after` are taken out to whole days. Rollup rows of those spans are deleted first, so a
    group whose raw rows are all gone (a deletion) leaves no row behind; then the spans are rebuilt."""
    from warehouse.cluster import local_table, on_cluster

    first = datetime.combine(first.astimezone(UTC).date(), datetime.min.time(), tzinfo=UTC)
    after_day = after.astimezone(UTC)
    after = datetime.combine(after_day.date(), datetime.min.time(), tzinfo=UTC)
    if after < after_day:
        after += timedelta(days=1)
    cluster = warehouse_cluster(client)
    params = _span_params(user_id, first, after)
    for unit_s, (table, column, column_type, keys) in _TABLES.items():
        target = f"{local_table(table)} {on_cluster(cluster)}" if cluster else table
        client.command(
            f"ALTER TABLE {target} DELETE WHERE user_id = {{user:String}} "
            f"AND {column} >= CAST({{first_s:UInt32}} AS {column_type}) "
            f"AND {column} < CAST({{after_s:UInt32}} AS {column_type})",
            parameters=params,
            settings={"mutations_sync": 2},
        )
        where_raw = (
            "user_id = {user:String} AND start >= {scan_from:DateTime64(3, 'UTC')} "
            "AND start < {after:DateTime64(3, 'UTC')}"
        )
        where_span = "span_start >= {first_s:UInt32} AND span_start < {after_s:UInt32}"
        client.command(
            f"{_insert_into(table, column, keys)} {_totals(unit_s, where_raw, where_span)}",
            parameters=params,
            settings=_INSERT_ON_CLUSTER if cluster else _INSERT,
        )


@dataclass(frozen=True)
class Drift:
    """One rollup row that differs from what the raw intervals give (None: the row is missing there)."""

    table: str
    user_id: str
    span: datetime
    device_id: str
    app: str
    site: str
    stored: tuple[int, int, int, int] | None
    from_raw: tuple[int, int, int, int] | None
    title: str = ""  # in the daily rollup by title


def rollup_drift(client: Client, user_id: str | None = None) -> list[Drift]:
    """Every rollup row (of one user, or of all) that disagrees with the raw intervals: active and idle
    milliseconds, keys and clicks per hour and device, app and site, and per day and device, app, site and
    title. Empty when the rollups are exact.

    Only spans that raw intervals still cover are compared: with raw retention on, older rollups outlive
    the rows they were made from, by design."""
    drift: list[Drift] = []
    for unit_s, (table, column, _, keys) in _TABLES.items():
        who = "user_id = {user:String}" if user_id is not None else "1"
        raw = _totals(unit_s, who, "1")
        query = f"""
WITH raw AS ({raw}),
     covered AS (SELECT DISTINCT user_id, {column} FROM raw)
SELECT user_id, {column}, device_id, {keys},
       s.active_ms, s.idle_ms, s.keystrokes, s.clicks, s.present,
       r.active_ms, r.idle_ms, r.keystrokes, r.clicks, r.present
FROM (SELECT *, 1 AS present FROM {table} FINAL
      WHERE {who} AND (user_id, {column}) GLOBAL IN (SELECT user_id, {column} FROM covered)) AS s
FULL OUTER JOIN (SELECT *, 1 AS present FROM raw) AS r USING (user_id, {column}, device_id, {keys})
WHERE (s.active_ms, s.idle_ms, s.keystrokes, s.clicks, s.present)
   != (r.active_ms, r.idle_ms, r.keystrokes, r.clicks, r.present)
ORDER BY user_id, {column}, device_id, {keys}
LIMIT 1000
"""
        rows = client.query(query, parameters={"user": user_id} if user_id is not None else None).result_rows
        for row in rows:
            width = len(keys.split(","))
            user, span, device, app, site = row[:5]
            title = row[5] if width == 3 else ""
            values = row[3 + width :]
            stored = tuple(values[0:4]) if values[4] else None
            from_raw = tuple(values[5:9]) if values[9] else None
            if isinstance(span, datetime):
                span = span.replace(tzinfo=UTC) if span.tzinfo is None else span
            else:
                span = datetime.combine(span, datetime.min.time(), tzinfo=UTC)
            drift.append(Drift(table, user, span, device, app, site, stored, from_raw, title))
    return drift


def repair_rollups(client: Client, user_id: str) -> int:
    """Rebuild every span of `user_id`'s rollups that drifted from raw; returns how many rows drifted."""
    drift = rollup_drift(client, user_id)
    if drift:
        first = min(d.span for d in drift)
        after = max(d.span for d in drift) + timedelta(days=1)
        rebuild_user_span(client, user_id, first, after)
    return len(drift)
