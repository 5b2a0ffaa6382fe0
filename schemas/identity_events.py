"""Identity events: the gateway's notice to the stream workers that a device was revoked or an account
deleted (topic `identity.events`). JSON, because the topic is tiny and operators read it by hand."""

from __future__ import annotations

import json

DEVICE_REVOKED = "device_revoked"
USER_DELETED = "user_deleted"


class BadIdentityEvent(ValueError):
    """An identity event that cannot be read; the message says why."""


def encode_event(kind: str, user_id: str, device_id: str = "", at_ms: int = 0) -> bytes:
    if kind not in (DEVICE_REVOKED, USER_DELETED):
        raise ValueError(f"unknown identity event kind {kind!r}")
    return json.dumps({"event": kind, "user_id": user_id, "device_id": device_id, "at": at_ms}).encode()


def decode_event(raw: bytes) -> dict:
    try:
        event = json.loads(raw)
    except ValueError as exc:
        raise BadIdentityEvent(f"not JSON: {exc}") from None
    if not isinstance(event, dict) or event.get("event") not in (DEVICE_REVOKED, USER_DELETED):
        raise BadIdentityEvent(f"not an identity event: {raw[:80]!r}")
    if not isinstance(event.get("user_id"), str) or not event["user_id"]:
        raise BadIdentityEvent("an identity event without a user_id")
    if event["event"] == DEVICE_REVOKED and not event.get("device_id"):
        raise BadIdentityEvent("a device_revoked event without a device_id")
    return event


def event_key(user_id: str, device_id: str = "") -> bytes:
    """The Kafka key of an identity event. The topic is compacted in production, which keeps the latest
    record per key: one key per user (and device), so no revocation ever compacts another away."""
    return f"{user_id}/{device_id}".encode()
