"""Deleting a user's data: the SQL of it. What a deletion covers is `schemas/deletions.py`; applying one to every
table, sessions cut at its edges and the worker's saved state included, is `stream_jobs/forget.py`.

"Delete means gone": mutations rewrite the parts without the rows (not just mask them), and each call
waits for them (mutations_sync) so a caller that returns has kept the promise. On a cluster the rows are in
each shard's local tables: the mutations go there, ON CLUSTER, and with mutations_sync = 2 each host waits
for all replicas of its shard before the distributed DDL reports done (a timeout raises, never returns).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from schemas.contract import utc_from_ms
from schemas.deletions import ALL_DEVICES, OVERLAPS_SQL, Deletion
from warehouse.client import MUTATIONS_SYNC
from warehouse.cluster import local_table, on_cluster
from warehouse.migrate import warehouse_cluster
from warehouse.rollups import MAX_INTERVAL, rebuild_user_span

# Every table with rows of a user. A new table holding user rows must be added here; a test scans the
# warehouse's tables and fails for any table with a user_id column that is not covered (or kept, below).
USER_TABLES = (
    "intervals",
    "app_sessions",
    "focus_sessions",
    "usage_by_hour",
    "usage_by_title_day",
    "device_state",
    "refused_intervals",
    "devices",
    "category_rules",
    "data_keys",
    "privacy_rules",
    "privacy_settings",
    "goals",
    "notice_switches",
    "notice_accounts",
    "goal_notices",
    "notice_weekly",
    "import_streams",
    "source_intervals",
)
# The record of deletions outlives what it deleted: it is what keeps a deleted interval from being stored again.
KEPT_TABLES = ("deletions",)
# What a device *is* (its name, OS, whether revoked), not what it recorded: kept while the device exists.
_DEVICE_ITSELF = "devices"

DELETION_COLUMNS = ("deletion_id", "user_id", "device_id", "kind", "start", "end", "deleted_at")


def target(client: Client, table: str) -> str:
    """Where a mutation of `table` goes: the table itself, or every shard's local table."""
    cluster = warehouse_cluster(client)
    return f"{local_table(table)} {on_cluster(cluster)}" if cluster else table


def mutate(client: Client, table: str, where: str, parameters: dict) -> None:
    """Delete the rows of `table` matching `where`, physically, before returning."""
    client.command(
        f"ALTER TABLE {target(client, table)} DELETE WHERE {where}", parameters=parameters, settings=MUTATIONS_SYNC
    )


def count(client: Client, table: str, where: str, parameters: dict, what: str = "count()") -> int:
    return int(client.query(f"SELECT {what} FROM {table} WHERE {where}", parameters=parameters).result_rows[0][0])


def record_deletion(client: Client, deletion: Deletion) -> None:
    """Write the record first: from the moment it is stored, every writer applies it."""
    d = deletion
    row = (
        d.deletion_id,
        d.user_id,
        d.device_id,
        d.kind,
        utc_from_ms(d.start_ms),
        utc_from_ms(d.end_ms),
        utc_from_ms(d.deleted_at_ms),
    )
    settings = {"insert_deduplicate": 0}
    if warehouse_cluster(client):
        settings["distributed_foreground_insert"] = 1
    client.insert("deletions", [row], column_names=DELETION_COLUMNS, settings=settings)


def load_deletions(client: Client, user_ids: Sequence[str]) -> list[Deletion]:
    """Every deletion recorded for any of `user_ids`, oldest first."""
    if not user_ids:
        return []
    result = client.query(
        "SELECT toString(deletion_id), user_id, device_id, toUnixTimestamp64Milli(start), "
        "toUnixTimestamp64Milli(`end`), toUnixTimestamp64Milli(deleted_at), kind FROM deletions "
        "WHERE user_id IN {users:Array(String)} ORDER BY deleted_at, deletion_id",
        parameters={"users": sorted(set(user_ids))},
    )
    seen: dict[str, Deletion] = {}
    for deletion_id, user, device, start, end, at, kind in result.result_rows:
        seen.setdefault(deletion_id, Deletion(deletion_id, user, device, int(start), int(end), int(at), kind))
    return list(seen.values())


def _who(deletion: Deletion) -> tuple[str, dict]:
    """The WHERE clause and parameters naming the deletion's user and devices."""
    parameters = {"user": deletion.user_id, "device": deletion.device_id}
    where = "user_id = {user:String}"
    if deletion.device_id != ALL_DEVICES:
        where += " AND device_id = {device:String}"
    return where, parameters


def covered_where(deletion: Deletion) -> tuple[str, dict]:
    """The WHERE clause, on a table with `start` and `end`, of the rows the deletion covers."""
    where, parameters = _who(deletion)
    return f"{where} AND {OVERLAPS_SQL}", {**parameters, "from": deletion.start_ms, "to": deletion.end_ms}


def delete_covered_intervals(client: Client, deletion: Deletion) -> tuple[int, int]:
    """Remove the raw intervals the deletion covers; returns how many there were and their active seconds."""
    where, parameters = covered_where(deletion)
    found = client.query(
        f"SELECT count(), intDiv(sumIf(toUnixTimestamp64Milli(`end`) - toUnixTimestamp64Milli(start), NOT idle), "
        f"1000) FROM intervals FINAL WHERE {where}",
        parameters=parameters,
    ).result_rows[0]
    if found[0]:
        mutate(client, "intervals", where, parameters)
    return int(found[0]), int(found[1] or 0)


def delete_covered(client: Client, table: str, deletion: Deletion) -> int:
    """Remove the rows of `table` (one with `start` and `end`) the deletion covers; returns how many there were."""
    where, parameters = covered_where(deletion)
    found = count(client, table, where, parameters)
    if found:
        mutate(client, table, where, parameters)
    return found


def focus_spans(client: Client, deletion: Deletion) -> dict[str, tuple[int, int]]:
    """Per device, from the first start to the last end (ms) of the focus sessions the deletion overlaps.

    The focus sessions of a device follow one another, so those overlapping one range are consecutive and this
    span holds exactly them (and the app sessions inside them)."""
    where, parameters = covered_where(deletion)
    who, _ = _who(deletion)
    result = client.query(
        "SELECT device_id, toUnixTimestamp64Milli(min(start)), toUnixTimestamp64Milli(max(`end`)) "
        f"FROM focus_sessions WHERE {who} AND session_id IN (SELECT session_id FROM focus_sessions WHERE {where}) "
        "GROUP BY device_id",
        parameters=parameters,
    )
    return {device: (int(lo), int(hi)) for device, lo, hi in result.result_rows}


def _in_spans(spans: dict[str, tuple[int, int]]) -> tuple[str, dict]:
    clauses, parameters = [], {}
    for n, (device, (lo, hi)) in enumerate(sorted(spans.items())):
        clauses.append(
            f"(device_id = {{d{n}:String}} AND start >= fromUnixTimestamp64Milli({{lo{n}:Int64}}, 'UTC') "
            f"AND start <= fromUnixTimestamp64Milli({{hi{n}:Int64}}, 'UTC'))"
        )
        parameters.update({f"d{n}": device, f"lo{n}": lo, f"hi{n}": hi})
    return "(" + " OR ".join(clauses) + ")", parameters


def delete_sessions_in(client: Client, user_id: str, spans: dict[str, tuple[int, int]]) -> dict[str, int]:
    """Remove every version of every session that starts inside a device's span; returns sessions per table."""
    removed = {"app_sessions": 0, "focus_sessions": 0}
    if not spans:
        return removed
    where, parameters = _in_spans(spans)
    where, parameters = f"user_id = {{user:String}} AND {where}", {**parameters, "user": user_id}
    for table in removed:
        removed[table] = count(client, table, where, parameters, "uniqExact(session_id)")
        if removed[table]:
            mutate(client, table, where, parameters)
    return removed


_INTERVAL_READ = (
    "user_id, device_id, toString(event_id), device_seq, toUnixTimestamp64Milli(start), "
    "toUnixTimestamp64Milli(`end`), app, site, title, keystrokes, clicks, idle"
)
_INTERVAL_KEYS = ("user_id", "device_id", "event_id", "device_seq", "start", "end", "app", "site", "title",
                  "keystrokes", "clicks", "idle")  # fmt: skip


def intervals_in(client: Client, user_id: str, spans: dict[str, tuple[int, int]]) -> dict[str, list[dict]]:
    """The raw intervals stored inside each device's span, per device in device_seq order, as flat dicts."""
    if not spans:
        return {}
    where, parameters = _in_spans(spans)
    result = client.query(
        f"SELECT {_INTERVAL_READ} FROM intervals FINAL WHERE user_id = {{user:String}} AND {where} "
        "ORDER BY device_id, device_seq",
        parameters={**parameters, "user": user_id},
    )
    by_device: dict[str, list[dict]] = {}
    for row in result.result_rows:
        interval = dict(zip(_INTERVAL_KEYS, row, strict=True))
        interval["start"], interval["end"] = int(interval["start"]), int(interval["end"])
        by_device.setdefault(interval["device_id"], []).append(interval)
    return by_device


_LATEST_STATES = "SELECT device_id, argMax(state, (last_seq, updated_at)) FROM device_state WHERE {} GROUP BY device_id"


def device_states(client: Client, deletion: Deletion) -> dict[str, str]:
    """The latest saved sessionizer state (JSON) of each device the deletion names."""
    who, parameters = _who(deletion)
    return dict(client.query(_LATEST_STATES.format(who), parameters=parameters).result_rows)


def states_of(client: Client, user_id: str, device_ids: Sequence[str]) -> dict[str, str]:
    """The latest saved sessionizer state (JSON) of each of these devices of `user_id` that has one."""
    who = "user_id = {user:String} AND device_id IN {devices:Array(String)}"
    parameters = {"user": user_id, "devices": sorted(device_ids)}
    return dict(client.query(_LATEST_STATES.format(who), parameters=parameters).result_rows)


def replace_device_states(client: Client, user_id: str, states: dict[str, tuple[int, str]]) -> None:
    """Save each device's (last_seq, state JSON) in place of every earlier row of that device's state (which may
    hold what was deleted): the new row first, newer than any before it, then the older rows removed."""
    if not states:
        return
    now = datetime.now(UTC)
    rows = [(user_id, device, seq, state, now) for device, (seq, state) in sorted(states.items())]
    client.insert(
        "device_state",
        rows,
        column_names=("user_id", "device_id", "last_seq", "state", "updated_at"),
        settings={"insert_deduplicate": 0},
    )
    mutate(
        client,
        "device_state",
        "user_id = {user:String} AND device_id IN {devices:Array(String)} AND updated_at < {now:DateTime64(3, 'UTC')}",
        {"user": user_id, "devices": sorted(states), "now": now},
    )


def delete_device_states(client: Client, user_id: str, device_ids: Sequence[str]) -> None:
    """Remove every saved state of these devices of `user_id` (one mutation for all of them)."""
    if device_ids:
        mutate(
            client,
            "device_state",
            "user_id = {user:String} AND device_id IN {devices:Array(String)}",
            {"user": user_id, "devices": list(device_ids)},
        )


def delete_rows_of(client: Client, deletion: Deletion, tables: Sequence[str]) -> dict[str, int]:
    """Remove every row of the deletion's user (and device) from `tables`; returns the rows removed per table."""
    where, parameters = _who(deletion)
    removed = {}
    for table in tables:
        removed[table] = count(client, table, where, parameters)
        if removed[table]:
            mutate(client, table, where, parameters)
    return removed


def rebuild_rollups_around(client: Client, deletion: Deletion) -> None:
    """Make the rollups exact again from the raw rows left, wherever a removed interval could have counted."""
    if deletion.start_ms == 0:
        # Everything before the deletion's end is gone: the rollups of the user (or device) go with it, and the
        # last days are rebuilt from whatever raw rows are left (an interval begun after the deletion).
        delete_rows_of(client, deletion, ("usage_by_hour", "usage_by_title_day"))
        start = utc_from_ms(deletion.end_ms)
    else:
        start = utc_from_ms(deletion.start_ms)
    rebuild_user_span(client, deletion.user_id, start - MAX_INTERVAL, utc_from_ms(deletion.end_ms) + MAX_INTERVAL)


def delete_intervals(client: Client, intervals: list[dict]) -> int:
    """Remove these intervals' raw rows (flat dicts with user_id, device_id, device_seq, event_id and start in ms),
    where stored, and make the rollups of the days they touched exact again; returns how many were stored.

    For intervals the worker could store only in part: a raw row kept while its sessions failed would be
    counted by the rollups alone. Rare, so one look-up first; a mutation only for rows that exist, and only of
    their month's partition (a mutation of the whole table rewrites every part of it)."""
    removed = 0
    for iv in intervals:
        key = {
            "user": iv["user_id"],
            "device": iv["device_id"],
            "seq": iv["device_seq"],
            "event": iv["event_id"],
            "start": utc_from_ms(iv["start"]),
        }
        where = (
            "user_id = {user:String} AND device_id = {device:String} AND device_seq = {seq:UInt64} "
            "AND event_id = {event:UUID} AND start = {start:DateTime64(3, 'UTC')}"
        )
        if not client.query(f"SELECT count() FROM intervals WHERE {where}", parameters=key).result_rows[0][0]:
            continue
        client.command(
            f"ALTER TABLE {target(client, 'intervals')} DELETE IN PARTITION {{month:UInt32}} WHERE {where}",
            parameters={**key, "month": int(key["start"].strftime("%Y%m"))},
            settings=MUTATIONS_SYNC,
        )
        rebuild_user_span(client, iv["user_id"], key["start"] - MAX_INTERVAL, key["start"] + 2 * MAX_INTERVAL)
        removed += 1
    return removed
