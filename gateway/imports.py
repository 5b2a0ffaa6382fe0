"""Imported history, the pure part of the gateway's `Import` (docs/activitywatch.md).

An import is a stream of its own (warehouse/imports.py): `stream_id` names it, and the gateway numbers its records
itself (`numbered`), so an import never takes a collector's device_seq and importing again continues the stream.
What the stream already holds is left out by event id; imported window time is cut where the device itself
recorded (`cut_where_recorded`), so an hour is never counted twice, whichever came first.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.activitywatch import IN_FRONT, SOURCE_KINDS
from schemas.contract import MAX_APP_CHARS, normal_text

ORIGINS = ("activitywatch",)
SOURCES = (IN_FRONT, *SOURCE_KINDS.values())
# Device ids of import streams are UUIDv5 in this namespace: the same account, device, host and source always
# name the same stream, so a second import of the same history continues it.
STREAM_NAMESPACE = uuid.UUID("c1f7a4d2-93b8-4e55-8d0c-2a6b4f1e7c30")


class InvalidImport(ValueError):
    """An import batch that cannot be taken at all; the message says why."""


@dataclass(frozen=True)
class ImportTarget:
    origin: str
    host: str
    source: str


def checked_target(origin: str, host: str, source: str) -> ImportTarget:
    if origin not in ORIGINS:
        raise InvalidImport(f"unknown origin {origin!r}; known: {', '.join(ORIGINS)}")
    if source not in SOURCES:
        raise InvalidImport(f"unknown source kind {source!r}; known: {', '.join(SOURCES)}")
    name = normal_text(host, MAX_APP_CHARS)
    if not name:
        raise InvalidImport("the host name is empty")
    return ImportTarget(origin, name, source)


def stream_id(user_id: str, live_device: str, target: ImportTarget) -> str:
    name = "\x00".join((user_id, live_device, target.origin, target.host, target.source))
    return str(uuid.uuid5(STREAM_NAMESPACE, name))


def stream_name(live_name: str | None, target: ImportTarget) -> str:
    """How the dashboard names the stream: the device (or host) and where the data came from."""
    kind = "" if target.source == IN_FRONT else f" {target.source}"
    return f"{live_name or target.host} (ActivityWatch{kind})"


def cut_where_recorded(records: Sequence[dict], spans: Sequence[tuple[int, int]]) -> tuple[list[dict], int]:
    """The parts of `records` outside the (ordered, merged) `spans`, and how many records lay wholly inside.

    A part keeps its record's fields; the part that begins where the record began keeps its event id, any other
    part gets one derived from the record's and where the part begins, so cutting again gives the same parts."""
    kept: list[dict] = []
    covered = 0
    first = 0
    for record in records:
        start, end = record["start"], record["end"]
        while first < len(spans) and spans[first][1] <= start:
            first += 1
        parts: list[tuple[int, int]] = []
        at = start
        n = first
        while at < end and n < len(spans) and spans[n][0] < end:
            lo, hi = spans[n]
            if lo > at:
                parts.append((at, lo))
            at = max(at, hi)
            n += 1
        if at < end:
            parts.append((at, end))
        if not parts and end > start:
            covered += 1
            continue
        if not parts:  # zero-length: nothing to count twice
            parts = [(start, end)]
        for lo, hi in parts:
            event_id = record["event_id"] if lo == start else str(uuid.uuid5(uuid.UUID(record["event_id"]), str(lo)))
            kept.append({**record, "event_id": event_id, "start": lo, "end": hi})
    return kept, covered


def numbered(records: Sequence[dict], after: int) -> list[dict]:
    """The records with device_seq from `after` + 1 on, in order."""
    return [{**record, "device_seq": after + n} for n, record in enumerate(records, start=1)]
