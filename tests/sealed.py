"""Test helpers for sealed broker records (schemas/sealing.py): a test writing straight to the broker seals its
records under the device's data key, as the gateway does; one reading the topic opens them with that key."""

from __future__ import annotations

from plumbing.settings import Settings
from schemas.sealing import key_id_of, seal, unseal
from warehouse.client import connect
from warehouse.keys import create_key, current_key, keys_by_id


def sealed(settings: Settings, user_id: str, device_id: str, value: bytes) -> bytes:
    """`value` sealed under the device's current key, made (and stored in the warehouse) if it has none."""
    client = connect(settings)
    try:
        key_id, key = current_key(client, user_id, device_id) or create_key(client, user_id, device_id)
    finally:
        client.close()
    return seal(key_id, key, value)


def opened(settings: Settings, value: bytes) -> bytes:
    """The record inside a sealed value, opened with its key from the warehouse."""
    client = connect(settings)
    try:
        key_id = key_id_of(value)
        return unseal(keys_by_id(client, [key_id])[key_id][2], value)
    finally:
        client.close()
