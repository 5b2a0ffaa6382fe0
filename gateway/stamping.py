"""Turning a client's batch into broker records: decode, validate, stamp the certificate's identity.

Identity is never read from the payload: the user and device come from the verified client
certificate, and the Kafka key is the device id so one device's intervals stay in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.pki import DeviceIdentity
from gateway.validation import RecordError, interval_problem
from schemas.codec import CodecError, decode_interval, encode_stamped


@dataclass(frozen=True)
class StampedBatch:
    key: bytes
    values: list[bytes]
    errors: list[RecordError]


def stamp_batch(records: Sequence[bytes], identity: DeviceIdentity, received_at_ms: int) -> StampedBatch:
    """Encode each valid record as a StampedInterval; list a reason for every refused one."""
    values: list[bytes] = []
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
        stamped = {
            "user_id": identity.user_id,
            "device_id": identity.device_id,
            "received_at": received_at_ms,
            "interval": interval,
        }
        try:
            values.append(encode_stamped(stamped))
        except CodecError as exc:
            errors.append(RecordError(index, f"cannot be stamped: {exc}"))
    return StampedBatch(identity.device_id.encode(), values, errors)
