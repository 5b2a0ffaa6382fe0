"""The gateway's data keys: each device's current key, from the warehouse or made on its first batch, kept in
memory while in use and forgotten the moment a deletion shreds it (schemas/sealing.py, warehouse/keys.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from clickhouse_connect.driver.client import Client

from warehouse.keys import create_key, current_key


class KeyBook:
    def __init__(self, warehouse: Callable[[], Client]) -> None:
        self._warehouse = warehouse
        self._keys: dict[tuple[str, str], tuple[str, bytes]] = {}
        self._lock = threading.Lock()

    def cached(self, user_id: str, device_id: str) -> tuple[str, bytes] | None:
        return self._keys.get((user_id, device_id))

    def key_for(self, user_id: str, device_id: str) -> tuple[str, bytes]:
        """The device's current (key id, key): cached, else the warehouse's newest, else a new one stored first.
        Blocking (warehouse I/O); callers hold the device's lock, so one device never gets two keys at once."""
        found = self.cached(user_id, device_id)
        if found is None:
            client = self._warehouse()
            found = current_key(client, user_id, device_id) or create_key(client, user_id, device_id)
            with self._lock:
                self._keys[(user_id, device_id)] = found
        return found

    def forget(self, user_id: str) -> None:
        """Drop every key of `user_id` held in memory (its keys were just deleted)."""
        with self._lock:
            for pair in [pair for pair in self._keys if pair[0] == user_id]:
                del self._keys[pair]
