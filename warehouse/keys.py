"""The devices' data keys in the warehouse (table `data_keys`, schemas/sealing.py): made by the gateway when a
device first sends, read by the workers to open its records, deleted with the device's data or the account."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from schemas.sealing import new_key
from warehouse.migrate import warehouse_cluster

_COLUMNS = ("user_id", "device_id", "key_id", "key", "created_at")


def current_key(client: Client, user_id: str, device_id: str) -> tuple[str, bytes] | None:
    """The device's newest (key id, key), or None when it has none (new, or its data was deleted)."""
    rows = client.query(
        "SELECT toString(key_id), key FROM data_keys WHERE user_id = {user:String} AND device_id = {device:String} "
        "ORDER BY created_at DESC LIMIT 1",
        parameters={"user": user_id, "device": device_id},
        column_formats={"key": "bytes"},
    ).result_rows
    return (rows[0][0], bytes(rows[0][1])) if rows else None


def create_key(client: Client, user_id: str, device_id: str) -> tuple[str, bytes]:
    """A new key for the device, stored (on every replica that must see it) before it is returned."""
    key_id, key = new_key()
    settings = {"insert_deduplicate": 0}
    if warehouse_cluster(client):
        settings["distributed_foreground_insert"] = 1
    client.insert(
        "data_keys", [(user_id, device_id, key_id, key, datetime.now(UTC))], column_names=_COLUMNS, settings=settings
    )
    return key_id, key


def keys_by_id(client: Client, key_ids: Sequence[str]) -> dict[str, tuple[str, str, bytes]]:
    """key id -> (user_id, device_id, key) for those of `key_ids` that exist (a missing one was shredded)."""
    if not key_ids:
        return {}
    rows = client.query(
        "SELECT toString(key_id), user_id, device_id, key FROM data_keys WHERE key_id IN {ids:Array(UUID)}",
        parameters={"ids": sorted(set(key_ids))},
        column_formats={"key": "bytes"},
    ).result_rows
    return {key_id: (user, device, bytes(key)) for key_id, user, device, key in rows}
