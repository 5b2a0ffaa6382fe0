"""Deleting a user's data: every table that holds rows of a user, physically, before returning.

"Delete means gone": mutations rewrite the parts without the rows (not just mask them), and each call
waits for them (mutations_sync) so a caller that returns has kept the promise. On a cluster the rows are in
each shard's local tables: the mutations go there, ON CLUSTER, and with mutations_sync = 2 each host waits
for all replicas of its shard before the distributed DDL reports done (a timeout raises, never returns).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client

from warehouse.cluster import local_table, on_cluster
from warehouse.migrate import warehouse_cluster

# Every table with rows of a user. A new table holding user rows must be added here; a test scans the
# warehouse's tables and fails for any table with a user_id column that is not covered.
USER_TABLES = (
    "intervals",
    "app_sessions",
    "focus_sessions",
    "usage_hourly",
    "usage_daily",
    "devices",
    "category_rules",
)
# Tables whose rows are tied to one device.
DEVICE_TABLES = ("intervals", "app_sessions", "focus_sessions", "usage_hourly", "usage_daily", "devices")

_SYNC = {"mutations_sync": 2}
# The daily rollup of the edge days is rebuilt by an INSERT that must always land: the same rows may well
# have been inserted before (an earlier rebuild of that day), and block deduplication would drop them.
# On a cluster it goes through the Distributed table and must be stored on the shard before returning.
_REBUILD = {"insert_deduplicate": 0}
_REBUILD_ON_CLUSTER = {**_REBUILD, "distributed_foreground_insert": 1}


class InvalidRange(ValueError):
    """A deletion range that cannot be honoured exactly; the message says why."""


def _target(table: str, cluster: str) -> str:
    """Where a mutation of `table` goes: the table itself, or every shard's local table."""
    return f"{local_table(table)} {on_cluster(cluster)}" if cluster else table


def delete_user_data(client: Client, user_id: str) -> None:
    """Remove every row of `user_id` from every table."""
    cluster = warehouse_cluster(client)
    for table in USER_TABLES:
        client.command(
            f"ALTER TABLE {_target(table, cluster)} DELETE WHERE user_id = {{user:String}}",
            parameters={"user": user_id},
            settings=_SYNC,
        )


def delete_device_data(client: Client, user_id: str, device_id: str) -> None:
    """Remove every row of one of `user_id`'s devices from every table."""
    cluster = warehouse_cluster(client)
    for table in DEVICE_TABLES:
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
    range's edge is removed whole. The daily rollup of the edge days is rebuilt from the hourly one.
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
    client.command(
        f"ALTER TABLE {_target('usage_hourly', cluster)} DELETE WHERE user_id = {{user:String}} "
        "AND hour >= {from:DateTime('UTC')} AND hour < {to:DateTime('UTC')}",
        parameters=span,
        settings=_SYNC,
    )
    days = {"user": user_id, "first": start.date(), "last": (end - timedelta(microseconds=1)).date()}
    client.command(
        f"ALTER TABLE {_target('usage_daily', cluster)} DELETE WHERE user_id = {{user:String}} "
        "AND day >= {first:Date} AND day <= {last:Date}",
        parameters=days,
        settings=_SYNC,
    )
    # The edge days may keep hours outside the range: rebuild their daily rows from what is left.
    client.command(
        "INSERT INTO usage_daily (user_id, day, device_id, app, site, active_ms, idle_ms, keystrokes, clicks, "
        "intervals) SELECT user_id, toDate(hour), device_id, app, site, sum(active_ms), sum(idle_ms), "
        "sum(keystrokes), sum(clicks), 0 FROM usage_hourly WHERE user_id = {user:String} "
        "AND toDate(hour) IN ({first:Date}, {last:Date}) GROUP BY user_id, toDate(hour), device_id, app, site",
        parameters=days,
        settings=_REBUILD_ON_CLUSTER if cluster else _REBUILD,
    )
