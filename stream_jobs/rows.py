"""From stamped intervals on the topic to warehouse rows: decode, trim the URL, lay out for insert.

Pure: no broker, no warehouse. Records that cannot be read come back with a reason, so the worker can
dead-letter them without stopping.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from collector.privacy import scrub_title
from gateway.validation import interval_problem
from schemas.codec import CodecError, decode_stamped_intervals, encode_interval
from stream_jobs.sessionize import AppSession, FocusSession
from stream_jobs.trim import site_of
from warehouse.writes import INTERVAL_COLUMNS


def _utc_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def decode_intervals(values: Iterable[bytes]) -> tuple[list[dict], list[tuple[bytes, str]]]:
    """Flat interval dicts (identity, interval fields, trimmed `site`) and the (value, reason) refused: whole
    records that cannot be read, or single intervals (re-encoded) that break the gateway's rules."""
    intervals: list[dict] = []
    rejected: list[tuple[bytes, str]] = []
    for value in values:
        try:
            batch = decode_stamped_intervals(value)
        except CodecError as exc:
            rejected.append((value, f"undecodable stamped intervals: {exc}"))
            continue
        user_id, device_id, received_at = batch["user_id"], batch["device_id"], batch["received_at"]
        for interval in batch["intervals"]:
            # The gateway's rules again: the topic may hold records that did not come through it.
            problem = interval_problem(interval, received_at)
            if problem:
                rejected.append((encode_interval(interval), f"invalid interval of device {device_id}: {problem}"))
                continue
            interval["user_id"] = user_id
            interval["device_id"] = device_id
            interval["received_at"] = received_at
            # Clients are not trusted: whatever the collector removed, only the site is kept from here on.
            interval["site"] = site_of(interval.pop("url", None)) or ""
            interval["title"] = scrub_title(interval.get("title")) or ""
            intervals.append(interval)
    return intervals, rejected


def interval_columns(intervals: Sequence[dict]) -> list[list[object]]:
    """Column-oriented rows in INTERVAL_COLUMNS order."""
    as_time = {"start", "end", "received_at"}
    return [
        [_utc_ms(i[name]) for i in intervals] if name in as_time else [i[name] for i in intervals]
        for name in INTERVAL_COLUMNS
    ]


def session_rows(sessions: Iterable[AppSession | FocusSession], columns: Sequence[str]) -> list[tuple]:
    """Row-oriented session versions in `columns` order (APP_SESSION_COLUMNS or FOCUS_SESSION_COLUMNS)."""
    rows = []
    for s in sessions:
        values = {**vars(s), "start": _utc_ms(s.start), "end": _utc_ms(s.end)}
        rows.append(tuple(values[c] for c in columns))
    return rows
