"""Which users and devices are gone: their intervals still in flight are dropped, never stored.

The gateway publishes an identity event when a device is revoked or an account deleted; every worker
reads the whole (small) topic, so it knows about all of them whichever partitions it owns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.identity_events import USER_DELETED


@dataclass
class Revocations:
    deleted_users: set[str] = field(default_factory=set)
    revoked_devices: set[tuple[str, str]] = field(default_factory=set)

    def apply(self, event: dict) -> None:
        if event["event"] == USER_DELETED:
            self.deleted_users.add(event["user_id"])
        else:
            self.revoked_devices.add((event["user_id"], event["device_id"]))

    def drops(self, user_id: str, device_id: str) -> bool:
        return user_id in self.deleted_users or (user_id, device_id) in self.revoked_devices
