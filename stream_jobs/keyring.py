"""The worker's side of sealed records (schemas/sealing.py): which key opens a record, looked up in the warehouse
once and kept in memory a few minutes, and the records opened, refused (not sealed, or forged) or shredded (their
key was deleted with the device's data or the account: they are gone, and dropped without a trace)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client

from schemas.sealing import Unsealable, key_id_of, unseal
from warehouse.keys import keys_by_id

# Keys are kept in memory no longer than this: a deletion shreds a key in the warehouse, and the copy a worker
# held is dropped soon after even if the worker never sees that device again.
KEEP_KEYS_S = 300.0


@dataclass
class KeyRing:
    keep_s: float = KEEP_KEYS_S
    clock: Callable[[], float] = time.monotonic
    _keys: dict[str, tuple[float, tuple[str, str, bytes]]] = field(default_factory=dict)

    def missing(self, key_ids: Iterable[str]) -> list[str]:
        """Those of `key_ids` not in memory (or kept too long), after dropping every key kept too long."""
        now = self.clock()
        for key_id in [k for k, (at, _) in self._keys.items() if now - at > self.keep_s]:
            del self._keys[key_id]
        return sorted({k for k in key_ids if k not in self._keys})

    def load(self, client: Client, key_ids: list[str]) -> None:
        """Read these keys from the warehouse; those it does not hold were shredded."""
        now = self.clock()
        for key_id, owner in keys_by_id(client, key_ids).items():
            self._keys[key_id] = (now, owner)

    def owner(self, key_id: str) -> tuple[str, str, bytes] | None:
        """(user_id, device_id, key) of a key in memory."""
        found = self._keys.get(key_id)
        return None if found is None else found[1]


def key_ids(values: Iterable[bytes]) -> set[str]:
    """The key ids the sealed ones among `values` name."""
    found = set()
    for value in values:
        try:
            found.add(key_id_of(value))
        except Unsealable:
            continue
    return found


@dataclass(frozen=True)
class Opened:
    # (key id, key, the record inside, the owner's user_id and device_id) of each record that opened.
    records: list[tuple[str, bytes, bytes, str, str]]
    # (the value as it came, why it cannot be read) of each record refused: for the dead-letter topic.
    refused: list[tuple[bytes, str]]
    shredded: int


def open_records(values: Iterable[bytes], ring: KeyRing) -> Opened:
    """Each value opened with the key it names, once `ring` has loaded the keys it could (`missing`, `load`)."""
    records, refused, shredded = [], [], 0
    for value in values:
        try:
            key_id = key_id_of(value)
        except Unsealable as exc:
            refused.append((value, str(exc)))
            continue
        owner = ring.owner(key_id)
        if owner is None:
            shredded += 1  # its key was deleted with its data: nothing of it may be read or kept
            continue
        try:
            records.append((key_id, owner[2], unseal(owner[2], value), owner[0], owner[1]))
        except Unsealable as exc:
            refused.append((value, str(exc)))
    return Opened(records, refused, shredded)
