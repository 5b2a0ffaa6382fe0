"""When the gateway may acknowledge a batch: device_seq order per device, and waiting until the warehouse holds it.

Two promises meet here (docs/design.md, "Delivery"):
- A device's intervals reach the topic in strictly increasing device_seq. The worker counts a device_seq
  at or below what it already processed as a redelivery and skips it, so a record that arrives out of order
  must be refused here, with its reason, never acknowledged and then dropped. `sort_offered` is that rule,
  pure, over a `DeviceBook`: per device the highest device_seq known stored and the ones sent but not yet
  seen stored.
- With `gateway_ack_after = "stored"` (the default) a batch is acknowledged only once the warehouse holds
  every accepted interval of it and everything derived from it (the device's saved state is past it), so
  the collector's spool, not the broker, is the durable buffer: a broker that dies and comes back empty
  loses nothing that was acknowledged. `StoreWatcher` finds out, for all the batches waiting at once, with
  two queries per tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

from clickhouse_connect.driver.client import Client

from schemas.contract import RecordError
from warehouse.writes import DeletionGuard, highest_stored_seqs, refused_seqs, stored_event_ids

log = logging.getLogger(__name__)

# Sent-but-unseen device_seqs remembered per device; older ones are checked against the warehouse instead.
MAX_REMEMBERED = 20_000


class Offered(NamedTuple):
    """One valid interval of a batch: its index in the batch and what identifies it (a tuple: the gateway
    makes one per interval, and a tuple is made several times faster than a frozen dataclass)."""

    index: int
    seq: int
    event_id: str
    start_ms: int
    end_ms: int = 0


@dataclass
class DeviceBook:
    """What the gateway knows of one device's sequence: everything at or below `stored` is in the warehouse;
    `sent` maps device_seqs given to the broker, not yet seen stored, to their event ids, and `sent_ids` the
    other way."""

    stored: int = -1
    # In the order sent, which is increasing device_seq: the oldest is first.
    sent: dict[int, str] = field(default_factory=dict)
    sent_ids: dict[str, int] = field(default_factory=dict)
    sent_high: int = -1

    @property
    def high(self) -> int:
        return max(self.stored, self.sent_high)


@dataclass(frozen=True)
class Sorted:
    """A batch's valid intervals sorted out: to send (in device_seq order), to check against the warehouse
    (at or below the stored mark: a resend of a stored interval, or a reuse), and refused with a reason."""

    send: list[Offered]
    check: list[Offered]
    errors: list[RecordError]


def sort_offered(book: DeviceBook, offered: Iterable[Offered]) -> Sorted:
    """Pure: apply the sequence rule to a batch's valid intervals, given the device's book."""
    send: list[Offered] = []
    check: list[Offered] = []
    errors: list[RecordError] = []
    seen: set[int] = set()
    seen_ids: dict[str, int] = {}
    high = book.high
    # Of two intervals under one device_seq or one event_id, the first in device_seq order is the one kept.
    for item in sorted(offered, key=lambda o: (o.seq, o.index)):
        if item.seq in seen:
            errors.append(RecordError(item.index, f"repeated device_seq: {item.seq} appears twice in this batch"))
            continue
        seen.add(item.seq)
        first_seq = seen_ids.setdefault(item.event_id, item.seq)
        if first_seq == item.seq:
            first_seq = book.sent_ids.get(item.event_id, item.seq)
        if first_seq != item.seq:
            errors.append(
                RecordError(
                    item.index, f"repeated event_id: {item.event_id} was already sent under device_seq {first_seq}"
                )
            )
            continue
        resent = book.sent.get(item.seq)
        if resent is not None:
            if resent == item.event_id:
                send.append(item)  # a retry of a batch the broker or the warehouse did not finish: harmless
            else:
                errors.append(
                    RecordError(item.index, f"reused device_seq: {item.seq} was already used by another interval")
                )
        elif item.seq <= book.stored:
            check.append(item)
        elif item.seq < high:
            errors.append(
                RecordError(
                    item.index,
                    f"out of order: device_seq {item.seq} is below {high}, which the device already sent; "
                    "a device's intervals must arrive in increasing device_seq",
                )
            )
        else:
            send.append(item)
            high = item.seq
    return Sorted(send, check, errors)


def judge_checked(check: list[Offered], stored: dict[int, str], mark: int) -> tuple[list[Offered], list[RecordError]]:
    """Pure: of the intervals at or below the stored mark `mark`, those the warehouse holds as they are (a
    resend whose acknowledgement was lost: acknowledged again), and the rest refused: out of order where the
    warehouse holds nothing under that device_seq, reused where it holds another interval."""
    held, errors = [], []
    for item in check:
        found = stored.get(item.seq)
        if found == item.event_id:
            held.append(item)
        elif found is None:
            errors.append(
                RecordError(
                    item.index,
                    f"out of order: device_seq {item.seq} is not above {mark}, the device's last stored; "
                    "a device's intervals must arrive in increasing device_seq",
                )
            )
        else:
            errors.append(
                RecordError(item.index, f"reused device_seq: {item.seq} is already stored for another interval")
            )
    return held, errors


def remember_sent(book: DeviceBook, items: Iterable[Offered]) -> None:
    for item in items:
        book.sent[item.seq] = item.event_id
        book.sent_ids[item.event_id] = item.seq
        book.sent_high = max(book.sent_high, item.seq)
    while len(book.sent) > MAX_REMEMBERED:  # forget the oldest; a resend of those is checked in the warehouse
        _forget_oldest(book)


def _forget_oldest(book: DeviceBook) -> None:
    seq = next(iter(book.sent))
    event_id = book.sent.pop(seq)
    if book.sent_ids.get(event_id) == seq:
        del book.sent_ids[event_id]


def mark_stored(book: DeviceBook, items: Iterable[Offered]) -> None:
    for item in items:
        if book.sent.pop(item.seq, None) is not None and book.sent_ids.get(item.event_id) == item.seq:
            del book.sent_ids[item.event_id]
        book.stored = max(book.stored, item.seq)
    while book.sent and next(iter(book.sent)) <= book.stored:
        _forget_oldest(book)


@dataclass
class _Waiter:
    user_id: str
    device_id: str
    items: list[Offered]
    done: asyncio.Future
    since: float = field(default_factory=time.monotonic)
    table: str = "intervals"  # where its intervals are stored (source_intervals for other source kinds)
    refusals_asked: float = 0.0  # when the worker's refusals of it were last looked up (time.monotonic)
    live: bool = True  # a device's batch; False for an import's, which never counts as the gateway's load

    @cached_property
    def high(self) -> int:
        """Its highest device_seq: asked on every tick it waits, and its items never change."""
        return max(i.seq for i in self.items)


_DELETIONS_EVERY_S = 1.0
# How often the warehouse is asked while only imports' batches wait (live devices' are asked about every tick_s).
IMPORT_TICK_S = 0.5


class StoreWatcher:
    """Waits until the warehouse holds given intervals; one query per tick for everything waiting."""

    def __init__(self, client: Callable[[], Client], tick_s: float = 0.05) -> None:
        self._client = client
        self._tick_s = tick_s
        self._waiting: list[_Waiter] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._guard: tuple[float, set[str], DeletionGuard] = (-_DELETIONS_EVERY_S, set(), DeletionGuard())

    @property
    def waiting_intervals(self) -> int:
        """Devices' intervals waiting; an import's (bounded per call, gateway/server.py IMPORT_IN_FLIGHT) are not
        the load live devices are held back for."""
        return sum(len(w.items) for w in self._waiting if w.live)

    @property
    def oldest_wait_s(self) -> float:
        """How long the device's batch waiting longest has waited (0 when none waits)."""
        return time.monotonic() - min((w.since for w in self._waiting if w.live), default=time.monotonic())

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for waiter in self._waiting:
            if not waiter.done.done():
                waiter.done.cancel()
        self._waiting.clear()

    async def wait(
        self,
        user_id: str,
        device_id: str,
        items: list[Offered],
        timeout_s: float,
        table: str = "intervals",
        live: bool = True,
    ) -> list[RecordError] | None:
        """Once the warehouse holds every one of `items` (in `table`) or the worker refused it: the worker's
        refusals (it applies the contract again, and alone knows what is already stored); None after `timeout_s`."""
        if not items:
            return []
        waiter = _Waiter(user_id, device_id, items, asyncio.get_running_loop().create_future(), table=table, live=live)
        self._waiting.append(waiter)
        self._wake.set()
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.done), timeout_s)
        except TimeoutError:
            return None
        finally:
            if waiter in self._waiting:
                self._waiting.remove(waiter)

    async def _run(self) -> None:
        while True:
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
            # Only imports waiting: they are in no hurry, and every look-up takes the warehouse from the writes.
            live = any(w.live for w in self._waiting)
            await asyncio.sleep(self._tick_s if live else IMPORT_TICK_S)
            waiting = [w for w in self._waiting if not w.done.done()]
            if not waiting:
                continue
            try:
                found = await asyncio.to_thread(self._look_up, waiting)
            except Exception as exc:  # the warehouse is away: the waiters wait on, up to their timeouts
                log.debug("could not ask the warehouse what it holds: %s", exc)
                await asyncio.sleep(0.5)
                continue
            for waiter, refused in zip(waiting, found, strict=True):
                if refused is not None and not waiter.done.done():
                    waiter.done.set_result(refused)

    def _deletions(self, client: Client, users: list[str]) -> DeletionGuard:
        """The deletions recorded for `users`, read at most once a second (a deletion is answered that much later;
        whether anything is stored never depends on this)."""
        now = time.monotonic()
        cached_at, cached_users, guard = self._guard
        fresh = now - cached_at <= _DELETIONS_EVERY_S
        if not fresh or not set(users) <= cached_users:
            wanted = set(users) | (cached_users if fresh else set())
            guard = DeletionGuard.load(client, sorted(wanted))
            self._guard = (cached_at if fresh else now, wanted, guard)
        return guard

    def _look_up(self, waiting: list[_Waiter]) -> list[list[RecordError] | None]:
        """Per waiter, None while its batch is not stored whole, else the worker's refusals of it.

        Stored whole: every interval the worker did not refuse is in the raw table under its device_seq, and
        the device's saved state is past them (the worker saves it last, after the rollups, sessions and
        refusals the batch produced; raw rows alone could be all a worker killed mid-batch left, and if the
        broker then lost the record, nothing would write the rest)."""
        client = self._client()
        marks = highest_stored_seqs(client, sorted({w.device_id for w in waiting}))
        # The worker's refusals, of the batches it has processed and, once a second, of the others (a batch
        # the worker refused the last intervals of is done before its device's state passes them): the look-up
        # of every waiting interval on every tick cost the warehouse more than the writes it waits for.
        now = time.monotonic()
        asked = [w for w in waiting if marks.get(w.device_id, -1) >= w.high or now - w.refusals_asked >= 1.0]
        for w in asked:
            w.refusals_asked = now
        refusals = refused_seqs(client, sorted({(w.user_id, w.device_id, i.seq) for w in asked for i in w.items}))
        # An interval a deletion covers is never stored: the device is told so instead (schemas/deletions.py).
        guard = self._deletions(client, sorted({w.user_id for w in waiting}))
        for w in waiting:
            for i in w.items:
                deletion = guard.covering(w.user_id, w.device_id, i.start_ms, max(i.end_ms, i.start_ms))
                if deletion is not None:
                    reason = (
                        f"deleted: the interval lies in data deleted by {deletion.kind} deletion {deletion.deletion_id}"
                    )
                    refusals[(w.user_id, w.device_id, i.seq)] = (i.event_id, reason)
        left: list[list[Offered] | None] = []
        for w in waiting:
            rest = [i for i in w.items if refusals.get((w.user_id, w.device_id, i.seq), ("",))[0] != i.event_id]
            left.append(rest if not rest or marks.get(w.device_id, -1) >= max(i.seq for i in rest) else None)
        held: dict[tuple[str, str, int], str] = {}
        for table in sorted({w.table for w in waiting}):
            pairs = [(w, rest) for w, rest in zip(waiting, left, strict=True) if w.table == table and rest]
            keys = sorted({(w.user_id, w.device_id, i.seq) for w, rest in pairs for i in rest or ()})
            if keys:
                starts = [i.start_ms for _, rest in pairs for i in rest or ()]
                held |= stored_event_ids(client, keys, min(starts), max(starts), table)
        answers: list[list[RecordError] | None] = []
        for w, rest in zip(waiting, left, strict=True):
            if rest is None or any(held.get((w.user_id, w.device_id, i.seq)) != i.event_id for i in rest):
                answers.append(None)
                continue
            kept = {i.seq for i in rest}
            answers.append(
                [
                    RecordError(i.index, refusals[(w.user_id, w.device_id, i.seq)][1])
                    for i in w.items
                    if i.seq not in kept
                ]
            )
        return answers
