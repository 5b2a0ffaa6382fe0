"""What a deletion covers: the one record every writer applies, so nothing deleted is ever stored again.

Pure. A deletion is a user, one device of theirs or all of them, and a time range: it covers every interval of
those devices that overlaps the range, whenever and however often that interval arrives (in flight when the
deletion ran, redelivered, replayed by a new consumer group, re-driven from the dead letters). The four kinds
a person can ask for are all such records (docs/design.md, "Delete means gone"):

- a period: the range asked for, cut at the moment of the deletion (time not yet recorded is not deleted);
- one device's data, or all data: everything that began before the moment of the deletion;
- the account: everything, for ever.

An interval crossing a range's edge is covered whole, as the warehouse removes it whole.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

# The end of a range that has none (an account's deletion): later than any interval can be.
FOREVER_MS = 253402300799999  # 9999-12-31T23:59:59.999Z, the last moment DateTime64(3) holds
ALL_DEVICES = ""

PERIOD = "period"
DEVICE = "device"
ALL_DATA = "all"
ACCOUNT = "account"
KINDS = (PERIOD, DEVICE, ALL_DATA, ACCOUNT)


class InvalidDeletion(ValueError):
    """A deletion that cannot be honoured as asked; the message says what was wrong. Nothing was deleted."""


@dataclass(frozen=True)
class Deletion:
    deletion_id: str
    user_id: str
    device_id: str  # ALL_DEVICES for every device of the user
    start_ms: int
    end_ms: int
    deleted_at_ms: int
    kind: str

    def names(self, user_id: str, device_id: str) -> bool:
        """Whether this deletion is of `user_id`'s `device_id` (of it alone, or of all the user's devices)."""
        return user_id == self.user_id and self.device_id in (ALL_DEVICES, device_id)

    def covers(self, user_id: str, device_id: str, start_ms: int, end_ms: int) -> bool:
        """Whether an interval of `user_id`'s `device_id` over [start_ms, end_ms) overlaps this deletion.

        A zero-length interval overlaps the range it lies in; the SQL twin is `OVERLAPS_SQL`."""
        return (
            self.names(user_id, device_id)
            and start_ms < self.end_ms
            and (end_ms > self.start_ms or start_ms >= self.start_ms)
        )

    def covers_span(self, user_id: str, device_id: str, start_ms: int, end_ms: int) -> bool:
        """Whether a session of `device_id` spanning [start_ms, end_ms] overlaps this deletion."""
        return self.covers(user_id, device_id, start_ms, max(end_ms, start_ms + 1))


# `Deletion.covers` in SQL, on a table's `start` and `end` columns, for parameters {from:Int64} and {to:Int64}.
_FROM, _TO = "fromUnixTimestamp64Milli({from:Int64}, 'UTC')", "fromUnixTimestamp64Milli({to:Int64}, 'UTC')"
OVERLAPS_SQL = f"start < {_TO} AND (`end` > {_FROM} OR start >= {_FROM})"


def _ms(moment: datetime, what: str) -> int:
    if moment.tzinfo is None:
        raise InvalidDeletion(f"the {what} of the period must carry a time zone")
    return round(moment.astimezone(timezone.utc).timestamp() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="seconds")


def plan_deletion(
    kind: str,
    user_id: str,
    now_ms: int,
    *,
    device_id: str = ALL_DEVICES,
    start: datetime | None = None,
    end: datetime | None = None,
    deletion_id: str | None = None,
) -> Deletion:
    """The record of what a deletion asked at `now_ms` covers, or InvalidDeletion naming what was wrong."""
    if kind not in KINDS:
        raise InvalidDeletion(f"unknown deletion kind {kind!r}; expected one of {', '.join(KINDS)}")
    if not user_id:
        raise InvalidDeletion("a deletion must name its user")
    if kind == DEVICE and not device_id:
        raise InvalidDeletion("deleting a device's data needs the device's id")
    if kind != DEVICE and kind != PERIOD and device_id:
        raise InvalidDeletion(f"a deletion of kind {kind!r} covers every device; it takes no device id")
    deletion_id = deletion_id or str(uuid.uuid4())
    if kind == PERIOD:
        if start is None or end is None:
            raise InvalidDeletion("deleting a period needs its start and its end")
        start_ms, end_ms = _ms(start, "start"), _ms(end, "end")
        if end_ms <= start_ms:
            raise InvalidDeletion(f"the period ends ({_iso(end_ms)}) before it starts ({_iso(start_ms)})")
        if start_ms >= now_ms:
            raise InvalidDeletion(f"the period starts in the future ({_iso(start_ms)}); there is nothing to delete")
        # Time not yet recorded is not deleted: what the devices record from now on counts.
        return Deletion(deletion_id, user_id, device_id, start_ms, min(end_ms, now_ms), now_ms, kind)
    if start is not None or end is not None:
        raise InvalidDeletion(f"a deletion of kind {kind!r} takes no period")
    end_ms = FOREVER_MS if kind == ACCOUNT else now_ms
    return Deletion(deletion_id, user_id, device_id, 0, end_ms, now_ms, kind)
