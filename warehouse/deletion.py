"""Deleting a user's data: every table that holds rows of a user, physically, before returning.

"Delete means gone": mutations rewrite the parts without the rows (not just mask them), and the call
waits for them (mutations_sync) so a caller that returns has kept the promise.
"""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

# Every table with rows of a user. A new table holding user rows must be added here; a test scans the
# warehouse's tables and fails for any user column not covered.
USER_TABLES = ("intervals", "app_sessions", "focus_sessions")

_SYNC = {"mutations_sync": 2}


def delete_user_data(client: Client, user_id: str) -> None:
    """Remove every row of `user_id` from every table."""
    for table in USER_TABLES:
        client.command(
            f"ALTER TABLE {table} DELETE WHERE user_id = {{user:String}}", parameters={"user": user_id}, settings=_SYNC
        )


def delete_device_data(client: Client, user_id: str, device_id: str) -> None:
    """Remove every row of one of `user_id`'s devices from every table."""
    for table in USER_TABLES:
        client.command(
            f"ALTER TABLE {table} DELETE WHERE user_id = {{user:String}} AND device_id = {{device:String}}",
            parameters={"user": user_id, "device": device_id},
            settings=_SYNC,
        )
