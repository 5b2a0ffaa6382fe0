"""The gateway: the only door into the system. mTLS gRPC in, identity-stamped intervals out to Kafka.

Every record is checked against the contract (schemas/contract.py) and sent in normal form. A batch is
acknowledged only once the warehouse holds every accepted record of it (or the broker does, with
gateway_ack_after = "broker"); refused records get a reason each, also those the worker refuses later, and do
not hold back the rest. When the broker or the warehouse is away, the answer is UNAVAILABLE and nothing is
acknowledged, so the collector keeps its spool.

Collectors may report how many intervals wait in their spool in the gRPC request metadata header
`x-productimon-spool-depth` (a non-negative integer, with each SendBatch call or once per Upload
stream); it feeds the `productimon_collector_spool_depth` histogram and is otherwise ignored, as is
any value that is not such an integer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from clickhouse_connect.driver.client import Client
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway import insights_releaser
from gateway.accounts_service import AccountsService, Authority, DevicesService, device_identity
from gateway.acks import (
    DeviceBook,
    Offered,
    StoreWatcher,
    judge_checked,
    mark_stored,
    remember_sent,
    sort_offered,
)
from gateway.identity_store import IdentityStore, UnknownUser
from gateway.imports import (
    ImportTarget,
    InvalidImport,
    checked_target,
    cut_where_recorded,
    numbered,
    stream_id,
    stream_name,
)
from gateway.keybook import KeyBook
from gateway.mailer import Mailer
from gateway.pki import StackPki, ensure_stack_pki
from gateway.producer import BrokerUnavailable, IntervalProducer
from gateway.stamping import Valid, pack_stamped, validate_records
from gateway.tokens import ensure_signing_key
from gateway.unsubscribe_page import UnsubscribePage
from plumbing import metrics
from plumbing.cli import command
from plumbing.kafka_security import client_options
from plumbing.settings import Settings, load_settings
from schemas.activitywatch import IN_FRONT
from schemas.codec import encode_interval
from schemas.contract import IMPORT_WINDOW, RecordError, Window
from schemas.device_keys import DeviceIdentity
from schemas.sealing import partition_key, seal
from schemas.wire import accounts_pb2, accounts_pb2_grpc, ingest_pb2, ingest_pb2_grpc
from stream_jobs.forget import rules_of
from warehouse import notices
from warehouse.client import connect
from warehouse.imports import (
    ImportStream,
    first_recorded_start,
    imported_event_ids,
    latest_start,
    recorded_spans,
    register_stream,
)
from warehouse.writes import highest_stored_seqs, stored_event_ids, upsert_devices

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
SPOOL_DEPTH_HEADER = "x-productimon-spool-depth"

# How a refused call is counted in productimon_gateway_batches_total{outcome}.
_OUTCOME_OF_STATUS = {
    grpc.StatusCode.UNAVAILABLE: "unavailable",
    grpc.StatusCode.INVALID_ARGUMENT: "invalid",
    grpc.StatusCode.UNAUTHENTICATED: "unauthenticated",
    grpc.StatusCode.PERMISSION_DENIED: "revoked",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "busy",
}


def observe_spool_depth(context: grpc.aio.ServicerContext) -> None:
    """Record the spool depth a collector reported in the request metadata, if it sent a usable one."""
    for key, value in context.invocation_metadata() or ():
        if key == SPOOL_DEPTH_HEADER:
            try:
                depth = int(value)
            except (TypeError, ValueError):
                return
            if depth >= 0:
                metrics.COLLECTOR_SPOOL_DEPTH.observe(depth)
            return


# Trailing metadata of a RESOURCE_EXHAUSTED answer: milliseconds the device should wait (collector/transport.py).
RETRY_AFTER_HEADER = "x-productimon-retry-after-ms"


# Import batches handed to the broker and waiting, at once, to be stored (one call's).
IMPORT_IN_FLIGHT = 24
# An import's batches wait behind one another (and behind live data) in the worker: the last of a full window may
# wait that long. Nothing of a device waits on them.
IMPORT_STORE_TIMEOUT_S = 120.0


@dataclass
class _ImportSent:
    """One import batch handed to the broker, waiting to be stored and acknowledged."""

    batch: ingest_pb2.ImportBatch
    identity: DeviceIdentity
    book: DeviceBook
    delivered: asyncio.Future
    values: list[bytes]
    sending: float
    sent: list[Offered]
    errors: list[RecordError]
    already: int
    overlapped: int


# How long the start of a device's own recording is taken as known, for the cut of imported time.
RECORDED_EVERY_S = 10.0


# The key an import's record carries its batch position under while it is cut and numbered; never encoded.
_AT = "_batch_index"


class IngestService(ingest_pb2_grpc.IngestServicer):
    def __init__(
        self,
        producer: IntervalProducer,
        store: IdentityStore,
        settings: Settings,
        warehouse: Callable[[], Client],
        watcher: StoreWatcher,
        keys: KeyBook | None = None,
        authority: Authority | None = None,
    ) -> None:
        self._producer = producer
        # Signs in a dashboard's imports on the public port (`Import`); None: only devices may import.
        self._authority = authority
        # Per import stream: the latest start it holds (stored, or sent from here); None: nothing yet.
        self._held_until: dict[str, int | None] = {}
        self._recorded: dict[str, tuple[float, int | None]] = {}  # per device: (read at, its first interval's start)
        self._store = store
        # Every record is sealed under its device's data key (schemas/sealing.py).
        self._keys = keys or KeyBook(warehouse)
        self._max_batch = settings.gateway_max_batch
        self._window = Window.of_days(settings.interval_max_age_days)
        self._max_record_bytes = settings.gateway_max_record_bytes
        self._ack_after_stored = settings.gateway_ack_after == "stored"
        self._store_timeout_s = settings.gateway_store_timeout_seconds
        self._max_waiting = settings.gateway_max_waiting_intervals
        self._warehouse = warehouse
        self._watcher = watcher
        self._books: dict[str, DeviceBook] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def _broker_unavailable(self, batch, identity: DeviceIdentity, exc: Exception, context) -> None:
        log.warning("batch %s from device %s not taken: %s", batch.batch_id, identity.device_id, exc)
        await context.abort(grpc.StatusCode.UNAVAILABLE, "the broker is unavailable; retry later")

    def _overloaded(self, arriving: int) -> bool:
        """Too much waits to be stored: more intervals than allowed, or a batch waiting half its timeout."""
        watcher = self._watcher
        return (
            watcher.waiting_intervals + arriving > self._max_waiting
            or watcher.oldest_wait_s > self._store_timeout_s / 2
        )

    async def _identity(self, context: grpc.aio.ServicerContext) -> DeviceIdentity:
        # Checked on every batch: a device revoked or renewed a moment ago is refused from its next batch on.
        identity, _ = await device_identity(context, self._store)
        return identity

    async def _book(self, device_id: str, context: grpc.aio.ServicerContext) -> DeviceBook:
        """The device's sequence book; on first sight since start, its stored mark comes from the warehouse."""
        book = self._books.get(device_id)
        if book is None:
            try:
                marks = await asyncio.to_thread(highest_stored_seqs, self._warehouse(), [device_id])
            except Exception as exc:
                log.warning("cannot read device %s's stored device_seq: %s", device_id, exc)
                if self._ack_after_stored:  # nothing could be acknowledged anyway
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "the warehouse is unavailable; retry later")
                # Acknowledging after the broker, ingest goes on while the warehouse is away; order is then
                # checked against what this gateway sent since it started (docs/design.md, "Delivery").
                marks = {}
            book = self._books[device_id] = DeviceBook(stored=marks.get(device_id, -1))
        return book

    async def _key(self, identity: DeviceIdentity, context: grpc.aio.ServicerContext) -> tuple[str, bytes]:
        """The device's data key: from memory, or (on its first batch since start or since a deletion) the
        warehouse, which must hold a key before anything sealed under it is sent."""
        found = self._keys.cached(identity.user_id, identity.device_id)
        if found is not None:
            return found
        try:
            return await asyncio.to_thread(self._keys.key_for, identity.user_id, identity.device_id)
        except Exception as exc:
            log.warning("cannot read or make the data key of device %s: %s", identity.device_id, exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the warehouse is unavailable; retry later")
            raise  # not reached: abort raises

    async def _held(self, identity: DeviceIdentity, check: list[Offered], mark: int, context) -> tuple[list, list]:
        if not check:
            return [], []
        keys = [(identity.user_id, identity.device_id, item.seq) for item in check]
        starts = [item.start_ms for item in check]
        try:
            found = await asyncio.to_thread(stored_event_ids, self._warehouse(), keys, min(starts), max(starts))
        except Exception as exc:
            log.warning("cannot check resent intervals of device %s: %s", identity.device_id, exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the warehouse is unavailable; retry later")
        return judge_checked(check, {seq: event_id for (_, _, seq), event_id in found.items()}, mark)

    async def _ingest(
        self, batch: ingest_pb2.Batch, identity: DeviceIdentity, context: grpc.aio.ServicerContext
    ) -> ingest_pb2.BatchAck:
        if len(batch.intervals) > self._max_batch:
            size, limit = len(batch.intervals), self._max_batch
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"batch {batch.batch_id} has {size} records; at most {limit} are allowed per batch",
            )
        received_at = int(time.time() * 1000)
        valid, errors = validate_records(batch.intervals, received_at, self._window)
        if self._ack_after_stored and self._overloaded(len(valid)):
            # Overload: the warehouse is behind. Refusing now, with a delay, keeps every batch taken within the
            # store timeout instead of letting a backlog grow; the collector's spool holds what waits.
            metrics.GATEWAY_PUSHBACKS.inc()
            # Come back in about the time the longest waiting batch has waited so far: the backlog's age.
            wait_s = min(max(self._watcher.oldest_wait_s, 0.25), self._store_timeout_s / 2)
            context.set_trailing_metadata(((RETRY_AFTER_HEADER, str(int(wait_s * 1000))),))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "the gateway is busy storing; retry later")
        by_index = {v.index: v for v in valid}
        lock = self._locks.setdefault(identity.device_id, asyncio.Lock())
        async with lock:
            book = await self._book(identity.device_id, context)
            offered = [
                # In normal form: the event id is canonical, as the warehouse answers with it.
                Offered(
                    v.index, v.interval["device_seq"], v.interval["event_id"], v.interval["start"], v.interval["end"]
                )
                for v in valid
            ]
            sorted_out = sort_offered(book, offered)
            held, refused = await self._held(identity, sorted_out.check, book.stored, context)
            errors += sorted_out.errors + refused
            sending_valid = [by_index[item.index] for item in sorted_out.send]
            delivered, values, sending = await self._send(identity, received_at, sending_valid, batch, context)
            remember_sent(book, sorted_out.send)
        refused_later = await self._settle(identity, batch, delivered, values, sending, sorted_out.send, context)
        if self._ack_after_stored:
            mark_stored(book, sorted_out.send)
        errors += refused_later
        errors.sort(key=lambda e: e.index)
        accepted = len(sorted_out.send) - len(refused_later) + len(held)
        if errors:
            log.info(
                "device %s batch %s: %d records refused, first: %s",
                identity.device_id,
                batch.batch_id,
                len(errors),
                errors[0].reason,
            )
            refused_by: dict[str, int] = {}
            for error in errors:
                label = metrics.refusal_label(error.reason)
                refused_by[label] = refused_by.get(label, 0) + 1
            for label, count in refused_by.items():
                metrics.GATEWAY_REFUSED.labels(label).inc(count)
        metrics.GATEWAY_ACCEPTED.inc(accepted)
        metrics.GATEWAY_BATCHES.labels("acked").inc()
        return ingest_pb2.BatchAck(
            batch_id=batch.batch_id,
            accepted=accepted,
            errors=[ingest_pb2.RecordError(index=e.index, reason=e.reason) for e in errors],
        )

    async def _send(
        self, identity: DeviceIdentity, received_at: int, valid: list[Valid], batch, context
    ) -> tuple[asyncio.Future, list[bytes], float]:
        """Stamp, seal and hand `valid` to the producer, in line (under the device's lock, so its batches reach the
        partition in the order checked); the broker's acknowledgement is awaited outside it, with `_settle`."""
        values = pack_stamped(identity, received_at, valid, self._max_record_bytes)
        if values:
            key_id, key = await self._key(identity, context)
            values = [seal(key_id, key, value) for value in values]
        sending = time.monotonic()
        try:
            delivered = await self._producer.enqueue(partition_key(identity.device_id), values)
        except BrokerUnavailable as exc:
            await self._broker_unavailable(batch, identity, exc, context)
        return delivered, values, sending

    async def _settle(
        self,
        identity: DeviceIdentity,
        batch,
        delivered: asyncio.Future,
        values: list[bytes],
        sending: float,
        sent: list[Offered],
        context,
        table: str = "intervals",
        timeout_s: float | None = None,
    ) -> list[RecordError]:
        """Wait for the broker, then (acknowledging after stored) for the warehouse, `timeout_s` at most (the
        store timeout by default; an import's is IMPORT_STORE_TIMEOUT_S); the records refused later."""
        live = timeout_s is None
        timeout_s = self._store_timeout_s if timeout_s is None else timeout_s
        try:
            await delivered
        except BrokerUnavailable as exc:
            await self._broker_unavailable(batch, identity, exc, context)
        if values:
            metrics.GATEWAY_BROKER_SEND_SECONDS.observe(time.monotonic() - sending)
        if not self._ack_after_stored:
            return []
        with metrics.GATEWAY_STORE_WAIT_SECONDS.time():
            refused_later = await self._watcher.wait(identity.user_id, identity.device_id, sent, timeout_s, table, live)
        if refused_later is None:
            log.warning("batch %s from device %s not stored in %.0fs", batch.batch_id, identity.device_id, timeout_s)
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"the batch was not stored within {timeout_s:g}s; nothing is acknowledged, retry later",
            )
        return refused_later

    async def _import_identity(
        self, batch: ingest_pb2.ImportBatch, context: grpc.aio.ServicerContext
    ) -> tuple[str, str, str | None]:
        """(user, the device the records describe or "", its name): a device certificate's own device, or a
        dashboard token's account and, when named, one device of it."""
        if context.auth_context().get("x509_pem_cert"):
            identity = await self._identity(context)
            if batch.device_id and batch.device_id != identity.device_id:
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED, "a device imports only its own history; leave device_id empty"
                )
            device = self._store.get_device(identity.user_id, identity.device_id)
            return identity.user_id, identity.device_id, device.name
        if self._authority is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a device certificate is required")
        claims = await self._authority.signed_in(context)
        if not batch.device_id:
            return claims.user_id, "", None
        devices = {d.id: d for d in self._store.list_devices(claims.user_id)}
        if batch.device_id not in devices:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"there is no device {batch.device_id!r} in this account")
        return claims.user_id, batch.device_id, devices[batch.device_id].name

    async def _stream(
        self, user_id: str, live: str, live_name: str | None, target: ImportTarget, registered: set[str]
    ) -> ImportStream:
        """The import's stream, recorded (with its name, for the dashboard) before any record of it is sent: once
        per call (`registered`), as a deletion of the stream's data between two calls removes its row."""
        stream = ImportStream(user_id, stream_id(user_id, live, target), live, target.host, target.source)
        if stream.device_id not in registered:
            client = self._warehouse()
            await asyncio.to_thread(register_stream, client, stream)
            row = (user_id, stream.device_id, stream_name(live_name, target), "ActivityWatch import", "", False)
            await asyncio.to_thread(upsert_devices, client, [row])
            registered.add(stream.device_id)
        return stream

    async def _stream_held_until(self, stream: ImportStream) -> int | None:
        if stream.device_id not in self._held_until:
            self._held_until[stream.device_id] = await asyncio.to_thread(latest_start, self._warehouse(), stream)
        return self._held_until[stream.device_id]

    async def _first_recorded(self, user_id: str, device_id: str) -> int | None:
        """When the device's own recording begins, read again every RECORDED_EVERY_S (a collector back online may
        deliver older intervals than it had)."""
        known = self._recorded.get(device_id)
        if known is None or time.monotonic() - known[0] > RECORDED_EVERY_S:
            first = await asyncio.to_thread(first_recorded_start, self._warehouse(), user_id, device_id)
            known = self._recorded[device_id] = (time.monotonic(), first)
        return known[1]

    async def _import_send(
        self, batch: ingest_pb2.ImportBatch, context: grpc.aio.ServicerContext, registered: set[str]
    ) -> _ImportSent:
        if len(batch.intervals) > self._max_batch:
            size, limit = len(batch.intervals), self._max_batch
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"batch {batch.batch_id} has {size} records; at most {limit} are allowed per batch",
            )
        try:
            target = checked_target(batch.origin, batch.host, batch.source)
        except InvalidImport as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"nothing was imported: {exc}")
        user_id, live, live_name = await self._import_identity(batch, context)
        received_at = int(time.time() * 1000)
        valid, errors = validate_records(batch.intervals, received_at, IMPORT_WINDOW)
        try:
            stream = await self._stream(user_id, live, live_name, target, registered)
        except Exception as exc:
            log.warning("cannot record the import stream of %s: %s", user_id, exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the warehouse is unavailable; retry later")
        identity = DeviceIdentity(user_id, stream.device_id)
        # One record per event id: the first counts (schemas/activitywatch.py gives each piece its own).
        records, seen = [], set()
        for v in sorted(valid, key=lambda v: (v.interval["start"], v.index)):
            if v.interval["event_id"] not in seen:
                seen.add(v.interval["event_id"])
                records.append({**v.interval, _AT: v.index})  # where it was in the batch, kept through cuts
        already = len(valid) - len(records)
        lock = self._locks.setdefault(stream.device_id, asyncio.Lock())
        async with lock:
            try:
                held_until = await self._stream_held_until(stream)
                overlapped = 0
                if records and live and target.source == IN_FRONT:
                    lo, hi = records[0]["start"], max(r["end"] for r in records)
                    first = await self._first_recorded(user_id, live)
                    if first is not None and hi > first:
                        spans = await asyncio.to_thread(recorded_spans, self._warehouse(), user_id, live, lo, hi)
                        records, overlapped = cut_where_recorded(records, spans)
                # Imported in time order, a stream's next batch begins after all it holds: nothing to look for.
                if records and held_until is not None and min(r["start"] for r in records) <= held_until:
                    held = await asyncio.to_thread(
                        imported_event_ids,
                        self._warehouse(),
                        stream,
                        [r["event_id"] for r in records],
                        min(r["start"] for r in records),
                        max(r["start"] for r in records),
                    )
                    before = len(records)
                    records = [r for r in records if r["event_id"] not in held]
                    already += before - len(records)
            except Exception as exc:
                log.warning("cannot check the import of %s against the warehouse: %s", user_id, exc)
                await context.abort(grpc.StatusCode.UNAVAILABLE, "the warehouse is unavailable; retry later")
            book = await self._book(stream.device_id, context)
            records = numbered(records, book.high)
            if records:
                latest = max(r["start"] for r in records)
                self._held_until[stream.device_id] = latest if held_until is None else max(held_until, latest)
            sending_valid = []
            for record in records:
                at = record.pop(_AT)
                sending_valid.append(Valid(at, encode_interval(record), record))
            sent = [
                Offered(v.index, v.interval["device_seq"], v.interval["event_id"], v.interval["start"])
                for v in sending_valid
            ]
            delivered, values, sending = await self._send(identity, received_at, sending_valid, batch, context)
            remember_sent(book, sent)
        return _ImportSent(batch, identity, book, delivered, values, sending, sent, errors, already, overlapped)

    async def _import_settle(self, s: _ImportSent, context: grpc.aio.ServicerContext) -> ingest_pb2.ImportAck:
        table = "intervals" if s.batch.source == IN_FRONT else "source_intervals"
        refused_later = await self._settle(
            s.identity, s.batch, s.delivered, s.values, s.sending, s.sent, context, table, IMPORT_STORE_TIMEOUT_S
        )
        if self._ack_after_stored:
            mark_stored(s.book, s.sent)
        errors = sorted(s.errors + refused_later, key=lambda e: e.index)
        accepted = len(s.sent) - len(refused_later)
        log.info(
            "import %s of %s: %d stored, %d already imported, %d inside recorded time, %d refused",
            s.identity.device_id,
            s.identity.user_id,
            accepted,
            s.already,
            s.overlapped,
            len(errors),
        )
        metrics.GATEWAY_ACCEPTED.inc(accepted)
        return ingest_pb2.ImportAck(
            batch_id=s.batch.batch_id,
            accepted=accepted,
            already_imported=s.already,
            overlapped=s.overlapped,
            errors=[ingest_pb2.RecordError(index=e.index, reason=e.reason) for e in errors],
            stream_id=s.identity.device_id,
        )

    async def Import(self, request_iterator, context) -> AsyncIterator[ingest_pb2.ImportAck]:  # noqa: N802
        """Batches are checked, cut, numbered and handed to the broker one after the other, in the order sent
        (a stream's records reach its partition in start order); up to IMPORT_IN_FLIGHT of them then wait to be
        stored at once, and are acknowledged in order."""
        waiting: asyncio.Queue[asyncio.Future | None] = asyncio.Queue()
        room = asyncio.Semaphore(IMPORT_IN_FLIGHT)
        registered: set[str] = set()  # the streams this call recorded

        async def read() -> None:
            try:
                async for batch in request_iterator:
                    await room.acquire()
                    sent = await self._import_send(batch, context, registered)
                    await waiting.put(asyncio.ensure_future(self._import_settle(sent, context)))
            except BaseException as exc:  # the call's end: the answer stream ends with it, in order
                failed = asyncio.get_running_loop().create_future()
                failed.set_exception(exc)
                await waiting.put(failed)
                return
            await waiting.put(None)

        reader = asyncio.create_task(read())
        try:
            while (task := await waiting.get()) is not None:
                ack = await task
                room.release()
                yield ack
        finally:
            reader.cancel()
            while not waiting.empty():
                leftover = waiting.get_nowait()
                if leftover is not None:
                    leftover.cancel()

    async def _counted(self, batch: ingest_pb2.Batch, context: grpc.aio.ServicerContext) -> ingest_pb2.BatchAck:
        try:
            identity = await self._identity(context)
            return await self._ingest(batch, identity, context)
        except grpc.aio.AbortError:
            metrics.GATEWAY_BATCHES.labels(_OUTCOME_OF_STATUS.get(context.code(), "invalid")).inc()
            raise

    async def SendBatch(self, request, context):  # noqa: N802 (gRPC method name)
        observe_spool_depth(context)
        return await self._counted(request, context)

    async def Upload(self, request_iterator, context) -> AsyncIterator[ingest_pb2.BatchAck]:  # noqa: N802
        observe_spool_depth(context)
        async for batch in request_iterator:
            yield await self._counted(batch, context)


class Gateway:
    """The gateway server, its producer and identity store, started and stopped together."""

    def __init__(self, settings: Settings, *, store: IdentityStore | None = None) -> None:
        self.settings = settings
        self.producer = IntervalProducer(
            settings.kafka_bootstrap,
            settings.intervals_topic,
            send_timeout_s=settings.gateway_send_timeout_seconds,
            options=client_options(settings),
        )
        self.store = store or IdentityStore(settings.identity_store_path)
        self.server: grpc.aio.Server | None = None
        self._warehouse: Client | None = None
        self._deleter: Client | None = None
        self._ingest_clients = threading.local()
        self.keys = KeyBook(self._ingest_client)
        self.watcher: StoreWatcher | None = None
        self._metrics = None
        self._clients: dict[str, Client] = {}  # the e-mail side's and the insights release's own connections
        self._stop_rounds = asyncio.Event()
        self._mailing: asyncio.Task[None] | None = None
        self._releasing: asyncio.Task[None] | None = None
        self._unsubscribe: UnsubscribePage | None = None

    def _warehouse_client(self) -> Client:
        if self._warehouse is None:
            self._warehouse = connect(self.settings)
        return self._warehouse

    def _deletion_client(self) -> Client:
        """The warehouse with the deletion login, for the deletions people ask for (warehouse/roles.py)."""
        if self._deleter is None:
            self._deleter = connect(self.settings, deletion=True)
        return self._deleter

    def _ingest_client(self) -> Client:
        """A warehouse connection per thread for the ingest checks (a client runs one query at a time)."""
        client = getattr(self._ingest_clients, "client", None)
        if client is None:
            client = self._ingest_clients.client = connect(self.settings)
        return client

    async def start(self) -> None:
        s = self.settings
        pki = ensure_stack_pki(s.pki_dir, ["localhost", "127.0.0.1", s.gateway_host])
        await self.producer.start()
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ]
        )
        authority = Authority(
            self.store,
            pki,
            ensure_signing_key(s.keys_dir, s.public_dir),
            s.token_ttl_seconds,
            s.device_cert_days,
            self._warehouse_client,
            lambda key, event: self.producer.publish(s.identity_topic, key, event),
            s.trusted_proxy_networks,
            rules_of(s),
            self.keys,
            self._deletion_client,
            # A worker reads the choices again once this old, and finishes a batch begun before within a few.
            s.privacy_reload_seconds + 2 * s.worker_batch_seconds + 2,
            ("desktop", "email") if s.email_notices else notices.DESKTOP_ONLY,
        )
        # Its own warehouse connection: the watcher asks from a thread while accounts calls use the other one.
        self.watcher = StoreWatcher(self._ingest_client)
        self.watcher.start()
        ingest_pb2_grpc.add_IngestServicer_to_server(
            IngestService(self.producer, self.store, s, self._ingest_client, self.watcher, self.keys, authority),
            server,
        )
        accounts_pb2_grpc.add_AccountsServicer_to_server(AccountsService(authority), server)
        accounts_pb2_grpc.add_DevicesServicer_to_server(DevicesService(authority), server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        services = (
            ingest_pb2.DESCRIPTOR.services_by_name["Ingest"].full_name,
            accounts_pb2.DESCRIPTOR.services_by_name["Accounts"].full_name,
            accounts_pb2.DESCRIPTOR.services_by_name["Devices"].full_name,
        )
        if s.gateway_reflection:
            reflection.enable_server_reflection(
                (*services, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
            )
        # Two doors: the mTLS port demands a device certificate; the public one serves clients that have
        # none yet (sign-up, login, enrollment). Each method checks what it needs, whichever port it came in on.
        key_pair = [(pki.server_key_pem, pki.server_cert_pem)]
        mtls = grpc.ssl_server_credentials(key_pair, root_certificates=pki.ca_cert_pem, require_client_auth=True)
        public = grpc.ssl_server_credentials(key_pair)
        for port, creds in ((s.gateway_port, mtls), (s.gateway_public_port, public)):
            if not server.add_secure_port(f"{s.gateway_host}:{port}", creds):
                raise OSError(f"cannot listen on {s.gateway_host}:{port}")
        await server.start()
        self._metrics = metrics.serve_metrics(s.metrics_host, s.gateway_metrics_port)
        self._mirror = asyncio.create_task(self._mirror_all_devices())
        if s.email_notices:
            self._start_email(authority, pki)
        if s.dashboard_aggregates:
            self._releasing = asyncio.create_task(
                insights_releaser.run(lambda: self._own_client("insights"), s, self._stop_rounds)
            )
        for name in (*services, ""):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.server = server

    def _start_email(self, authority: Authority, pki: StackPki) -> None:
        """E-mail notices and the unsubscribe page their links lead to (gateway/mailer.py, unsubscribe_page.py),
        each with a warehouse connection of its own."""
        s = self.settings
        self._unsubscribe = UnsubscribePage(
            s.gateway_host,
            s.unsubscribe_port,
            str(pki.server_cert_path),
            str(pki.server_key_path),
            authority.public_key,
            lambda: self._own_client("page"),
        )
        self._unsubscribe.start()
        mailer = Mailer(s, lambda: self._own_client("mailer"), self._address_of, authority.private_key,
                        authority.notice_lock)  # fmt: skip
        self._mailing = asyncio.create_task(mailer.run(self._stop_rounds))
        log.info("e-mail notices through %s; unsubscribe links lead to %s", mailer.server.name, s.unsubscribe_link_base)

    def _own_client(self, name: str) -> Client:
        if name not in self._clients:
            self._clients[name] = connect(self.settings)
        return self._clients[name]

    def _address_of(self, user_id: str) -> str | None:
        """Where an account's e-mail goes: None once it is deleted or disabled."""
        try:
            user = self.store.get_user(user_id)
        except UnknownUser:
            return None
        return None if user.disabled else user.email

    async def _mirror_all_devices(self) -> None:
        """Copy every device to the warehouse once at start: repairs copies missed while it was away."""
        rows = [
            (user.id, d.id, d.name, d.os, d.os_version, d.revoked)
            for user in self.store.list_users()
            for d in self.store.list_devices(user.id)
        ]
        try:
            await asyncio.to_thread(upsert_devices, self._warehouse_client(), rows)
        except Exception as exc:  # best effort, like every copy of a device to the warehouse
            log.warning("could not copy the devices to the warehouse: %s", exc)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Finish in-flight batches, then let the producer flush."""
        if self.server is not None:
            await self.server.stop(grace_s)
            self.server = None
        metrics.stop_metrics(self._metrics)
        self._metrics = None
        self._stop_rounds.set()
        for task in (self._mailing, self._releasing):
            if task is not None:
                await task
        self._mailing = self._releasing = None
        if self._unsubscribe is not None:
            self._unsubscribe.stop()
            self._unsubscribe = None
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        if self.watcher is not None:
            await self.watcher.stop()
        await self.producer.stop()
        if self._warehouse is not None:
            self._warehouse.close()
        self.store.close()

    def write_offsets(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps({"topic": self.settings.intervals_topic, "last_offsets": self.producer.last_offsets})
        )


async def serve(settings: Settings, offsets_file: Path | None) -> None:
    gateway = Gateway(settings)
    await gateway.start()
    print(
        f"gateway listening on {settings.gateway_address} (mTLS) and {settings.gateway_public_address} (TLS)",
        flush=True,
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("stopping: finishing in-flight batches")
    await gateway.stop()
    if offsets_file is not None:
        gateway.write_offsets(offsets_file)


@command("productimon-gateway")
def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="productimon-gateway", description="Run the ingest gateway.")
    parser.add_argument(
        "--offsets-file", type=Path, help="on a clean stop, write the last offset written per partition here"
    )
    args = parser.parse_args()
    settings = load_settings()
    try:
        asyncio.run(serve(settings, args.offsets_file))
    except BrokerUnavailable as exc:
        raise SystemExit(f"productimon-gateway: error: {exc}") from None
    return 0
