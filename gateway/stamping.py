"""Turning a client's batch into broker records: decode and check against the contract, then stamp the
certificate's identity.

Identity is never read from the payload: the user and device come from the verified client
certificate, and the Kafka key is the device id so one device's intervals stay in order. The accepted
intervals of a batch travel as StampedBatch records of at most MAX_INTERVALS_PER_RECORD intervals and at
most `max_record_bytes` bytes each (a real Kafka refuses records above its `message.max.bytes`, 1 MB by
default), so the broker and the stream workers pay their per-record cost once per batch rather than once
per interval.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from schemas.codec import CodecError, decode_interval, encode_interval, encode_stamped_batch, stamp_encoded_batch
from schemas.contract import DEFAULT_WINDOW, RecordError, Window, checked_interval
from schemas.device_keys import DeviceIdentity

MAX_INTERVALS_PER_RECORD = 1000
DEFAULT_MAX_RECORD_BYTES = 1_000_000
# What a StampedBatch adds around its intervals: header, two ids, the time and the array's counts.
_RECORD_OVERHEAD_BYTES = 512


@dataclass(frozen=True)
class Valid:
    """One interval of a batch that met the contract: its index in the batch, its bytes (in normal form) and
    its fields."""

    index: int
    raw: bytes
    interval: dict


def validate_records(
    records: Sequence[bytes], received_at_ms: int, window: Window = DEFAULT_WINDOW
) -> tuple[list[Valid], list[RecordError]]:
    """The intervals of a batch that can be taken, in normal form, and a reason for every one that cannot."""
    valid: list[Valid] = []
    errors: list[RecordError] = []
    for index, raw in enumerate(records):
        try:
            interval = decode_interval(raw)
        except CodecError as exc:
            errors.append(RecordError(index, f"not a readable ActivityInterval: {exc}"))
            continue
        normal, problem = checked_interval(interval, received_at_ms, window)
        if normal is None:
            errors.append(RecordError(index, problem or "refused"))
            continue
        # Normalising changed something (or an older schema wrote it): these are the bytes that travel on.
        valid.append(Valid(index, raw if normal == interval else encode_interval(normal), normal))
    return valid, errors


def record_chunks(sizes: Sequence[int], max_bytes: int, max_count: int = MAX_INTERVALS_PER_RECORD) -> Iterator[range]:
    """Pure: consecutive index ranges of items of `sizes` bytes, each of at most `max_count` items summing to
    at most `max_bytes` less the record overhead (an item alone is always a chunk of its own)."""
    budget = max_bytes - _RECORD_OVERHEAD_BYTES
    first, total = 0, 0
    for i, size in enumerate(sizes):
        if i > first and (total + size > budget or i - first >= max_count):
            yield range(first, i)
            first, total = i, 0
        total += size
    if first < len(sizes):
        yield range(first, len(sizes))


def pack_stamped(
    identity: DeviceIdentity,
    received_at_ms: int,
    valid: Sequence[Valid],
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> list[bytes]:
    """StampedBatch records of `valid` (in the order given), each within the count and byte limits."""
    values = []
    for chunk in record_chunks([len(v.raw) for v in valid], max_record_bytes):
        items = valid[chunk.start : chunk.stop]
        value = stamp_encoded_batch(identity.user_id, identity.device_id, received_at_ms, [v.raw for v in items])
        if value is None:  # some were written with an older schema version: encode what was read
            value = encode_stamped_batch(
                {
                    "user_id": identity.user_id,
                    "device_id": identity.device_id,
                    "received_at": received_at_ms,
                    "intervals": [v.interval for v in items],
                }
            )
        values.append(value)
    return values
