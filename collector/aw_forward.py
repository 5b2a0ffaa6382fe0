"""What ActivityWatch watchers report to the collector's compatible API (collector/aw_api.py), forwarded to the
gateway's `Import` as this device's history (docs/activitywatch.md, "Watchers").

Time is forwarded in slices: every slice ends `SETTLE_MS` in the past, when no heartbeat extends it any more and
the collector's own intervals of it are delivered (the gateway then cuts the watchers' window time where the
collector recorded, so a window is never counted twice). Every bucket's events in the slice are planned together
(schemas/activitywatch.py), as an export would be, with this device's privacy choices applied. A slice is done
only once the gateway acknowledged it; the store keeps the rest, so a collector stopped or offline forwards it
later. The running collector has no grpcio: the call goes over collector/wire.py, one batch per call.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.aw_import import private_plan
from collector.aw_store import AwStore
from collector.privacy import PrivacySettings
from collector.wire import RpcError, rpc_reason
from plumbing.files import write_atomically
from schemas.activitywatch import Bucket, Event, Export, plan_import
from schemas.codec import encode_interval
from schemas.contract import IMPORT_WINDOW, checked_interval
from schemas.import_sender import ORIGIN
from schemas.wire import ingest_pb2

log = logging.getLogger(__name__)

METHOD = "/productimon.ingest.v1.Ingest/Import"
# A slice ends this far in the past: past any watcher's pulse and the collector's longest open interval (one
# held through a quiet stretch until the idle cut, 3 min, plus its 1 min maximum), so it no longer changes.
SETTLE_MS = 5 * 60_000
# At most this much time per slice, so catching up after a day offline sends bounded batches.
SLICE_MS = 15 * 60_000
# Sent events are kept this long, then forgotten (the store keeps each bucket's last one regardless).
KEEP_SENT_MS = 24 * 3600_000


@dataclass
class ForwardStatus:
    forwarded_until_ms: int | None = None
    intervals: int = 0  # stored by the gateway since start
    merged: int = 0  # already held, or inside time the collector recorded
    refused: int = 0
    last_error: str | None = None


def slice_export(store: AwStore, start_ms: int, end_ms: int) -> Export:
    """Every bucket's events overlapping [start_ms, end_ms), cut to it, as an export of that slice."""
    buckets = []
    for bucket in store.buckets():
        events = [
            Event(e.start_ms, e.end_ms, e.data)
            for e in reversed(store.events(bucket.id, start_ms=start_ms, end_ms=end_ms))
            if e.end_ms > e.start_ms and e.start_ms < end_ms
        ]
        if events:
            buckets.append(Bucket(bucket.id, bucket.type, bucket.client, bucket.hostname, tuple(events)))
    return Export(buckets, [], sum(len(b.events) for b in buckets))


class ImportChannel:
    """The forwarder's `Import` call over collector/wire.py, one batch per call. The channel is opened with the
    device's credentials as they are when it is needed, and dropped after a failure: a certificate renewed since
    (the gateway refuses the one before at once) is then used for the next call."""

    def __init__(self, open_channel: Callable[[], Any], timeout_s: float = 60.0) -> None:
        self._open, self._timeout_s = open_channel, timeout_s
        self._channel: Any = None

    def __call__(self, batch: ingest_pb2.ImportBatch) -> ingest_pb2.ImportAck:
        if self._channel is None:
            self._channel = self._open()
        try:
            return self._channel.call(METHOD, batch, ingest_pb2.ImportAck, self._timeout_s)
        except RpcError:
            self.close()
            raise

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None


class Forwarder:
    def __init__(
        self,
        store: AwStore,
        state_file: Path,
        call: Callable[[ingest_pb2.ImportBatch], ingest_pb2.ImportAck],
        privacy: Callable[[], PrivacySettings],
        delivered_until: Callable[[], int | None],
        clock: Callable[[], float] = time.time,
        every_s: float = 30.0,
    ) -> None:
        """`call` sends one batch; `delivered_until()` is the time before which every interval the collector
        recorded is delivered (None: unknown, wait)."""
        self._store, self._state_file, self._call = store, state_file, call
        self._privacy, self._delivered_until, self._clock = privacy, delivered_until, clock
        self._every_s = every_s
        self.status = ForwardStatus(self._saved())

    def _saved(self) -> int | None:
        try:
            return int(json.loads(self._state_file.read_text())["forwarded_until_ms"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def once(self) -> bool:
        """Forward the next settled slice; True when one was forwarded (more may wait)."""
        now = int(self._clock() * 1000)
        settled = now - SETTLE_MS
        delivered = self._delivered_until()
        if delivered is None:
            return False
        until = min(settled, delivered)
        start = self.status.forwarded_until_ms
        if start is None:
            first = self._store.closed_events(0, 1)
            start = first[0].start_ms if first else until
        if until <= start:
            return False
        end = min(until, start + SLICE_MS)
        plan = private_plan(plan_import(slice_export(self._store, start, end)), self._privacy())
        for key, records in plan.streams.items():
            good = []
            for record in records:
                normal, why = checked_interval(record, now, IMPORT_WINDOW)
                if normal is None:
                    self.status.refused += 1
                    log.warning("an ActivityWatch watcher's interval is refused: %s", why)
                else:
                    good.append(encode_interval(normal))
            if not good:
                continue
            batch = ingest_pb2.ImportBatch(
                batch_id=end, origin=ORIGIN, host=key.host, source=key.source, intervals=good
            )
            ack = self._call(batch)
            self.status.intervals += ack.accepted
            self.status.merged += ack.already_imported + ack.overlapped
            self.status.refused += len(ack.errors)
        self._store.mark_sent(e.rowid for e in self._store.closed_events(0, 1_000_000) if e.end_ms <= end)
        self._store.forget_sent(end - KEEP_SENT_MS)
        write_atomically(self._state_file, json.dumps({"forwarded_until_ms": end}).encode())
        self.status.forwarded_until_ms = end
        return True

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                while self.once() and not stop.is_set():
                    pass
                self.status.last_error = None
            except RpcError as exc:
                self.status.last_error = rpc_reason(exc)
                log.warning("could not forward ActivityWatch watchers' events (%s); will retry", rpc_reason(exc))
            except Exception as exc:  # never the end of the collector: the store keeps the events
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("could not forward ActivityWatch watchers' events (%s: %s)", type(exc).__name__, exc)
            stop.wait(self._every_s)
