"""Sending an import plan (schemas/activitywatch.py) to the gateway's `Import` call, and what came of it.

Shared by the collector's `import-activitywatch` command (with the device's certificate) and the dashboard's upload
(with the person's token): each gives the call, this sends the plan's streams in batches, a few in flight, and adds
up the acknowledgements. With "all or nothing", every record is first checked against the contract the gateway
applies (schemas/contract.py, with the import window), so the whole file is refused before any of it is stored;
otherwise the gateway's acknowledgements name what it refused.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from schemas.activitywatch import ImportPlan, StreamKey
from schemas.codec import encode_interval
from schemas.contract import IMPORT_WINDOW, checked_interval
from schemas.wire import ingest_pb2

ORIGIN = "activitywatch"
BATCH_RECORDS = 2000
# Batches sent and not yet acknowledged; the gateway stores several at once (gateway/server.py IMPORT_IN_FLIGHT).
IN_FLIGHT = 32

# The call: a stream of batches in, a stream of acknowledgements out, in order (a gRPC stub's `Import`).
ImportCall = Callable[[Iterator[ingest_pb2.ImportBatch]], Iterable[ingest_pb2.ImportAck]]


@dataclass
class ImportSummary:
    events: int  # in the file
    used: int  # events read and turned into intervals
    intervals: int  # made from them
    imported: int = 0  # stored now
    already: int = 0  # held from an earlier import: nothing changed for them
    overlapped: int = 0  # wholly inside time the device recorded itself: not stored
    refused: Counter[str] = field(default_factory=Counter)  # records refused, by reason
    problems: list[str] = field(default_factory=list)  # what of the file could not be read, one line each
    notes: list[str] = field(default_factory=list)  # worth knowing, not a refusal
    sent: bool = True  # False: all or nothing was asked, and something was refused, so nothing was sent
    streams: list[str] = field(default_factory=list)  # the streams' device ids

    @property
    def merged(self) -> int:
        """Records that changed nothing: imported before, or inside time the device recorded."""
        return self.already + self.overlapped

    def lines(self) -> list[str]:
        out = [
            f"{self.events:,} events read, {self.used:,} used: {self.intervals:,} intervals; "
            f"{self.imported:,} imported, {self.merged:,} merged ({self.already:,} imported before, "
            f"{self.overlapped:,} inside time this device recorded itself), {sum(self.refused.values()):,} refused"
        ]
        if not self.sent:
            out.append("nothing was imported: all or nothing was asked and some of the file was refused")
        out += [f"refused: {problem}" for problem in self.problems]
        out += [f"refused: {n:,} intervals: {reason}" for reason, n in self.refused.most_common()]
        out += [f"note: {note}" for note in self.notes]
        return out


def summary_of(plan: ImportPlan) -> ImportSummary:
    bad = [p for p in plan.problems if not p.note]
    return ImportSummary(
        plan.events,
        plan.used,
        plan.intervals,
        problems=[p.line() for p in bad],
        notes=[p.line() for p in plan.problems if p.note],
    )


def encoded_streams(
    plan: ImportPlan, now_ms: int, summary: ImportSummary, *, check: bool = True
) -> list[tuple[StreamKey, list[bytes]]]:
    """Each stream's records, encoded; with `check`, without those the contract refuses (counted in `summary`).
    Unchecked, the gateway refuses them with their reasons all the same."""
    out = []
    for key, records in plan.streams.items():
        kept = []
        for record in records:
            if check:
                normal, why = checked_interval(record, now_ms, IMPORT_WINDOW)
                if normal is None:
                    summary.refused[why or "refused"] += 1
                    continue
                record = normal
            kept.append(encode_interval(record))
        out.append((key, kept))
    return out


def send_import(
    call: ImportCall,
    plan: ImportPlan,
    now_ms: int,
    *,
    device_id: str = "",
    all_or_nothing: bool = False,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> ImportSummary:
    """Send the plan; `progress(records acknowledged, records to send)` after every batch."""
    summary = summary_of(plan)
    if all_or_nothing and summary.problems:
        summary.sent = False
        return summary
    # All or nothing: every record checked before any is sent. Otherwise the gateway's answer names what it refused.
    streams = encoded_streams(plan, now_ms, summary, check=all_or_nothing)
    if all_or_nothing and summary.refused:
        summary.sent = False
        return summary
    total = sum(len(records) for _, records in streams)
    progress(0, total)
    window = threading.Semaphore(IN_FLIGHT)
    sizes: dict[int, int] = {}

    def batches() -> Iterator[ingest_pb2.ImportBatch]:
        batch_id = 0
        for key, records in streams:
            for first in range(0, len(records), BATCH_RECORDS):
                part = records[first : first + BATCH_RECORDS]
                window.acquire()
                batch_id += 1
                sizes[batch_id] = len(part)
                yield ingest_pb2.ImportBatch(
                    batch_id=batch_id,
                    origin=ORIGIN,
                    host=key.host,
                    source=key.source,
                    device_id=device_id,
                    intervals=part,
                )

    done = 0
    if total:
        for ack in call(batches()):
            window.release()
            summary.imported += ack.accepted
            summary.already += ack.already_imported
            summary.overlapped += ack.overlapped
            for error in ack.errors:
                summary.refused[error.reason] += 1
            if ack.stream_id and ack.stream_id not in summary.streams:
                summary.streams.append(ack.stream_id)
            done += sizes.pop(ack.batch_id, 0)
            progress(done, total)
    return summary
