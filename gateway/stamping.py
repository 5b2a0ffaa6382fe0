"""Turning a client's batch into broker records: decode, validate, stamp the certificate's identity.

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
class StampedBatch:
    key: bytes
    values: list[bytes]
    accepted: int
    errors: list[RecordError]


def stamp_batch(records: Sequence[bytes], identity: DeviceIdentity, received_at_ms: int) -> StampedBatch:
    """StampedBatch records of the valid intervals; a reason for every refused one."""
    accepted_raw: list[bytes] = []
    accepted: list[dict] = []
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
        accepted_raw.append(raw)
        accepted.append(interval)
    values = []
    for start in range(0, len(accepted), MAX_INTERVALS_PER_RECORD):
        chunk = slice(start, start + MAX_INTERVALS_PER_RECORD)
        value = stamp_encoded_batch(identity.user_id, identity.device_id, received_at_ms, accepted_raw[chunk])
        if value is None:  # some were written with an older schema version: encode what was read
            value = encode_stamped_batch(
                {
                    "user_id": identity.user_id,
                    "device_id": identity.device_id,
                    "received_at": received_at_ms,
                    "intervals": accepted[chunk],
                }
            )
        values.append(value)
    return StampedBatch(identity.device_id.encode(), values, len(accepted), errors)
