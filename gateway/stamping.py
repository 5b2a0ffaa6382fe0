"""Turning a client's batch into broker records: decode and validate, then stamp the certificate's identity.

Identity is never read from the payload: the user and device come from the verified client
certificate, and the Kafka key is the device id so one device's intervals stay in order. The accepted
intervals of a batch travel as StampedBatch records (at most MAX_INTERVALS_PER_RECORD each), so the
broker and the stream workers pay their per-record cost once per batch rather than once per interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.pki import DeviceIdentity
from gateway.validation import RecordError, interval_problem
from schemas.codec import CodecError, decode_interval, encode_stamped_batch, stamp_encoded_batch

# Keeps a record well under Kafka's default 1 MB message limit even with long titles and URLs.
MAX_INTERVALS_PER_RECORD = 1000


@dataclass(frozen=True)
class Valid:
    """One interval of a batch that passed validation: its index in the batch, its bytes and its fields."""

    index: int
    raw: bytes
    interval: dict


def validate_records(records: Sequence[bytes], received_at_ms: int) -> tuple[list[Valid], list[RecordError]]:
    """The intervals of a batch that can be taken, and a reason for every one that cannot."""
    valid: list[Valid] = []
    errors: list[RecordError] = []
    for index, raw in enumerate(records):
        try:
            interval = decode_interval(raw)
        except CodecError as exc:
            errors.append(RecordError(index, f"not a readable ActivityInterval: {exc}"))
            continue
        problem = interval_problem(interval, received_at_ms)
        if problem:
            errors.append(RecordError(index, problem))
            continue
        valid.append(Valid(index, raw, interval))
    return valid, errors


def pack_stamped(identity: DeviceIdentity, received_at_ms: int, valid: Sequence[Valid]) -> list[bytes]:
    """StampedBatch records of `valid` (in the order given), at most MAX_INTERVALS_PER_RECORD intervals each."""
    values = []
    for start in range(0, len(valid), MAX_INTERVALS_PER_RECORD):
        chunk = valid[start : start + MAX_INTERVALS_PER_RECORD]
        value = stamp_encoded_batch(identity.user_id, identity.device_id, received_at_ms, [v.raw for v in chunk])
        if value is None:  # some were written with an older schema version: encode what was read
            value = encode_stamped_batch(
                {
                    "user_id": identity.user_id,
                    "device_id": identity.device_id,
                    "received_at": received_at_ms,
                    "intervals": [v.interval for v in chunk],
                }
            )
        values.append(value)
    return values
