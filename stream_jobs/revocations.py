"""Which users and devices are gone: their intervals still in flight are dropped, never stored.

The gateway publishes an identity event when a device is revoked or an account deleted; every worker
reads the whole (small) topic, so it knows about all of them whichever partitions it owns. Events name users
and devices by pseudonym (schemas/identity_events.py), so the ids of a record are compared as pseudonyms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.identity_events import USER_DELETED, pseudonym


@dataclass
class Revocations:
    deleted_users: set[str] = field(default_factory=set)
    revoked_devices: set[tuple[str, str]] = field(default_factory=set)

    def apply(self, event: dict) -> None:
        if event["event"] == USER_DELETED:
            self.deleted_users.add(event["user"])
        else:
            self.revoked_devices.add((event["user"], event["device"]))

    def drops(self, user_id: str, device_id: str) -> bool:
        if not self.deleted_users and not self.revoked_devices:
            return False
        user = pseudonym(user_id)
        return user in self.deleted_users or (user, pseudonym(device_id)) in self.revoked_devices
