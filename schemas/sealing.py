"""Sealed records: what the gateway writes to the broker is encrypted under its device's data key, so deleting
the key (crypto-shredding) makes every copy unreadable at once: the topic, its replicas, its backups, a dead
letter, a replay by a new consumer group (docs/design.md, "Delete means gone").

A sealed value is `MAGIC`, the 16-byte key id, a 12-byte nonce, then AES-256-GCM (the `cryptography` library's
AEAD) of the record, with the magic and key id as associated data: a value cannot be moved under another key,
and any change to it is refused when it is opened. The key id is random and names nothing; which device a key
belongs to is known only where the key is kept (the warehouse's `data_keys`, `warehouse/keys.py`).
"""

from __future__ import annotations

import hashlib
import os
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"PSEAL1"
_KEY_ID_BYTES = 16
_NONCE_BYTES = 12
_HEADER = len(MAGIC) + _KEY_ID_BYTES
KEY_BYTES = 32


class Unsealable(ValueError):
    """A value that is not a sealed record, or that does not open under its key; the message says which."""


def new_key() -> tuple[str, bytes]:
    """A fresh (key id, 256-bit key)."""
    return str(uuid.uuid4()), AESGCM.generate_key(bit_length=256)


def seal(key_id: str, key: bytes, plaintext: bytes) -> bytes:
    header = MAGIC + uuid.UUID(key_id).bytes
    nonce = os.urandom(_NONCE_BYTES)
    return header + nonce + AESGCM(key).encrypt(nonce, plaintext, header)


def key_id_of(value: bytes) -> str:
    """The id of the key a sealed value was sealed under; Unsealable when it is not a sealed value."""
    if len(value) < _HEADER + _NONCE_BYTES + 16 or not value.startswith(MAGIC):
        raise Unsealable("not a sealed record (written by something other than the gateway)")
    return str(uuid.UUID(bytes=bytes(value[len(MAGIC) : _HEADER])))


def unseal(key: bytes, value: bytes) -> bytes:
    """The record inside a sealed value; Unsealable when it was changed or sealed under another key."""
    key_id_of(value)
    header, nonce, body = value[:_HEADER], value[_HEADER : _HEADER + _NONCE_BYTES], value[_HEADER + _NONCE_BYTES :]
    try:
        return AESGCM(key).decrypt(nonce, body, header)
    except InvalidTag:
        raise Unsealable("the sealed record does not open under its key: it was changed or forged") from None


def partition_key(device_id: str) -> bytes:
    """The broker key of a device's records: one partition per device, so its records stay in order, without
    naming the device (a one-way hash of its id; the id itself is inside the sealed value)."""
    return hashlib.sha256(b"productimon-device:" + device_id.encode()).digest()[:16]
