"""From stamped intervals on the topic to warehouse rows: decode, trim the URL, lay out by column.

Pure: no broker, no warehouse. Records that cannot be read are returned with a reason so the worker
can dead-letter them without stopping.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from schemas.codec import CodecError, decode_stamped
from stream_jobs.trim import site_of
from warehouse.writes import INTERVAL_COLUMNS


@dataclass
class RowBatch:
    columns: list[list[object]] = field(default_factory=lambda: [[] for _ in INTERVAL_COLUMNS])
    rejected: list[tuple[bytes, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.columns[0])


def _utc_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def build_rows(values: Iterable[bytes]) -> RowBatch:
    """Decode each StampedInterval, trim its URL to the site, and append it as a warehouse row."""
    batch = RowBatch()
    cols = batch.columns
    (user, device, event, seq, start, end, app, title, site, keys, clicks, idle, received) = cols
    for value in values:
        try:
            stamped = decode_stamped(value)
        except CodecError as exc:
            batch.rejected.append((value, f"undecodable StampedInterval: {exc}"))
            continue
        interval = stamped["interval"]
        user.append(stamped["user_id"])
        device.append(stamped["device_id"])
        event.append(interval["event_id"])
        seq.append(interval["device_seq"])
        start.append(_utc_ms(interval["start"]))
        end.append(_utc_ms(interval["end"]))
        app.append(interval["app"])
        title.append(interval.get("title") or "")
        site.append(site_of(interval.get("url")) or "")
        keys.append(interval["keystrokes"])
        clicks.append(interval["clicks"])
        idle.append(interval["idle"])
        received.append(_utc_ms(stamped["received_at"]))
    return batch
