"""Deleting a user's data: every table that holds rows of a user, physically, before returning.

"Delete means gone": mutations rewrite the parts without the rows (not just mask them), and each call
waits for them (mutations_sync) so a caller that returns has kept the promise. On a cluster the rows are in
each shard's local tables: the mutations go there, ON CLUSTER, and with mutations_sync = 2 each host waits
for all replicas of its shard before the distributed DDL reports done (a timeout raises, never returns).
"""

from __future__ import annotations

from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from warehouse.cluster import local_table, on_cluster
from warehouse.migrate import warehouse_cluster
from warehouse.rollups import MAX_INTERVAL, rebuild_user_span

# Every table with rows of a user. A new table holding user rows must be added here; a test scans the
# warehouse's tables and fails for any table with a user_id column that is not covered.
USER_TABLES = (
    "intervals",
    "app_sessions",
    "focus_sessions",
    "usage_by_hour",
    "usage_by_day",
    "device_state",
    "refused_intervals",
    "devices",
    "category_rules",
)
# Tables whose rows are tied to one device: all of them but the per-user category rules.
DEVICE_TABLES = tuple(t for t in USER_TABLES if t != "category_rules")
# What a device *is* (its name, OS, whether revoked), not what it recorded: kept while the device exists.
_DEVICE_ITSELF = "devices"

_SYNC = {"mutations_sync": 2}


class InvalidRange(ValueError):
    """A deletion range that cannot be honoured exactly; the message says why."""


def _target(table: str, cluster: str) -> str:
    """Where a mutation of `table` goes: the table itself, or every shard's local table."""
    return f"{local_table(table)} {on_cluster(cluster)}" if cluster else table


def delete_user_data(client: Client, user_id: str, *, account: bool = False) -> None:
    """Remove every row of `user_id`'s data from every table; with `account`, the account is gone too, and so
    are the rows naming its devices (while it lives, its devices still exist and keep their names)."""
    cluster = warehouse_cluster(client)
    for table in USER_TABLES if account else [t for t in USER_TABLES if t != _DEVICE_ITSELF]:
        client.command(
            f"ALTER TABLE {_target(table, cluster)} DELETE WHERE user_id = {{user:String}}",
            parameters={"user": user_id},
            settings=_SYNC,
        )


def delete_device_data(client: Client, user_id: str, device_id: str) -> None:
    """Remove every row of what one of `user_id`'s devices recorded from every table (the device keeps its name)."""
    cluster = warehouse_cluster(client)
    for table in (t for t in DEVICE_TABLES if t != _DEVICE_ITSELF):
        client.command(
            f"ALTER TABLE {_target(table, cluster)} DELETE "
            "WHERE user_id = {user:String} AND device_id = {device:String}",
            parameters={"user": user_id, "device": device_id},
            settings=_SYNC,
        )


def _whole_hour(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None:
        raise InvalidRange(f"the {what} of the range must carry a time zone")
    moment = moment.astimezone(UTC)
    if moment.minute or moment.second or moment.microsecond:
        raise InvalidRange(f"the {what} of the range ({moment.isoformat()}) is not on a whole hour")
    return moment


def delete_time_range(client: Client, user_id: str, start: datetime, end: datetime) -> None:
    """Remove `user_id`'s activity in [start, end): intervals and sessions that overlap it, and the rollups.

    The hourly rollup cannot be cut inside an hour, so the range must run from a whole hour to a whole hour
    (any time zone's days do, but for the few with half-hour offsets). An interval or session crossing the
    range's edge is removed whole. The rollups around the range are rebuilt from the raw rows left.
    """
    start, end = _whole_hour(start, "start"), _whole_hour(end, "end")
    if end <= start:
        raise InvalidRange(f"the range ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    span = {"user": user_id, "from": start, "to": end}
    cluster = warehouse_cluster(client)
    for table in ("intervals", "app_sessions", "focus_sessions"):
        client.command(
            f"ALTER TABLE {_target(table, cluster)} DELETE WHERE user_id = {{user:String}} "
            "AND start < {to:DateTime64(3, 'UTC')} AND `end` > {from:DateTime64(3, 'UTC')}",
            parameters=span,
            settings=_SYNC,
        )
    # Intervals crossing the range's edge were removed whole, so the hours and days around it changed too:
    # rebuild the rollups of every day a removed interval could have touched from what is left.
    rebuild_user_span(client, user_id, start - MAX_INTERVAL, end + MAX_INTERVAL)


def delete_intervals(client: Client, intervals: list[dict]) -> int:
    """Remove these intervals' raw rows (flat dicts with user_id, device_id, device_seq, event_id and start in ms),
    where stored, and make the rollups of the days they touched exact again; returns how many were stored.

    For intervals the worker could store only in part: a raw row kept while its sessions failed would be
    counted by the rollups alone. Rare, so one look-up first; a mutation only for rows that exist, and only of
    their month's partition (a mutation of the whole table rewrites every part of it)."""
    cluster = warehouse_cluster(client)
    removed = 0
    for iv in intervals:
        key = {
            "user": iv["user_id"],
            "device": iv["device_id"],
            "seq": iv["device_seq"],
            "event": iv["event_id"],
            "start": datetime.fromtimestamp(iv["start"] / 1000, UTC),
        }
        where = (
            "user_id = {user:String} AND device_id = {device:String} AND device_seq = {seq:UInt64} "
            "AND event_id = {event:UUID} AND start = {start:DateTime64(3, 'UTC')}"
        )
        if not client.query(f"SELECT count() FROM intervals WHERE {where}", parameters=key).result_rows[0][0]:
            continue
        client.command(
            f"ALTER TABLE {_target('intervals', cluster)} DELETE IN PARTITION {{month:UInt32}} WHERE {where}",
            parameters={**key, "month": int(key["start"].strftime("%Y%m"))},
            settings=_SYNC,
        )
        rebuild_user_span(client, iv["user_id"], key["start"] - MAX_INTERVAL, key["start"] + 2 * MAX_INTERVAL)
        removed += 1
    return removed
