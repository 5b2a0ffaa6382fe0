"""Turning a client's batch into broker records: decode, validate, stamp the certificate's identity.

Identity is never read from the payload: the user and device come from the verified client
certificate, and the Kafka key is the device id so one device's intervals stay in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.pki import DeviceIdentity
from gateway.validation import RecordError, interval_problem
from schemas.codec import CodecError, decode_interval, encode_stamped, stamp_encoded_interval, stamped_prefix


@dataclass(frozen=True)
class StampedBatch:
    key: bytes
    values: list[bytes]
    errors: list[RecordError]


def stamp_batch(records: Sequence[bytes], identity: DeviceIdentity, received_at_ms: int) -> StampedBatch:
    """Encode each valid record as a StampedInterval; list a reason for every refused one."""
    values: list[bytes] = []
    errors: list[RecordError] = []
    prefix = stamped_prefix(identity.user_id, identity.device_id, received_at_ms)
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
        value = stamp_encoded_interval(prefix, raw)
        if value is None:  # an older schema version: re-encode what was read into the current one
            stamped = {
                "user_id": identity.user_id,
                "device_id": identity.device_id,
                "received_at": received_at_ms,
                "interval": interval,
            }
            try:
                value = encode_stamped(stamped)
            except CodecError as exc:
                errors.append(RecordError(index, f"cannot be stamped: {exc}"))
                continue
        values.append(value)
    return StampedBatch(identity.device_id.encode(), values, errors)
