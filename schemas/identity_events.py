"""Identity events: the gateway's notice to the stream workers that a device was revoked or an account
deleted (topic `identity.events`). JSON, because the topic is tiny and operators read it by hand.

The topic is kept for good (compacted), so its events name users and devices by a one-way pseudonym of their
ids, never the ids themselves: an account deleted years ago leaves no id of it readable in the broker
(docs/design.md, "Delete means gone"). A worker compares pseudonyms of the ids it reads in a record.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

DEVICE_REVOKED = "device_revoked"
USER_DELETED = "user_deleted"


class BadIdentityEvent(ValueError):
    """An identity event that cannot be read; the message says why."""


@lru_cache(maxsize=65536)
def pseudonym(identifier: str) -> str:
    """A one-way name of a user or device id (SHA-256; ids are random UUIDs, so it cannot be guessed back)."""
    return hashlib.sha256(b"productimon-identity:" + identifier.encode()).hexdigest()[:32]


def encode_event(kind: str, user_id: str, device_id: str = "", at_ms: int = 0) -> bytes:
    if kind not in (DEVICE_REVOKED, USER_DELETED):
        raise ValueError(f"unknown identity event kind {kind!r}")
    device = pseudonym(device_id) if device_id else ""
    return json.dumps({"event": kind, "user": pseudonym(user_id), "device": device, "at": at_ms}).encode()


def decode_event(raw: bytes) -> dict[str, Any]:
    """The event with `user` and `device` as pseudonyms (events written before pseudonyms carry the ids)."""
    try:
        event = json.loads(raw)
    except ValueError as exc:
        raise BadIdentityEvent(f"not JSON: {exc}") from None
    if not isinstance(event, dict) or event.get("event") not in (DEVICE_REVOKED, USER_DELETED):
        raise BadIdentityEvent(f"not an identity event: {raw[:80]!r}")
    if "user_id" in event:  # the earlier form, with the ids themselves
        event["user"] = pseudonym(event["user_id"]) if isinstance(event["user_id"], str) and event["user_id"] else ""
        device_id = event.get("device_id")
        event["device"] = pseudonym(device_id) if isinstance(device_id, str) and device_id else ""
    if not isinstance(event.get("user"), str) or not event["user"]:
        raise BadIdentityEvent("an identity event without a user")
    if event["event"] == DEVICE_REVOKED and not event.get("device"):
        raise BadIdentityEvent("a device_revoked event without a device")
    return event


def event_key(user_id: str, device_id: str = "") -> bytes:
    """The Kafka key of an identity event. The topic is compacted in production, which keeps the latest
    record per key: one key per user (and device), so no revocation ever compacts another away."""
    return f"{pseudonym(user_id)}/{pseudonym(device_id) if device_id else ''}".encode()
