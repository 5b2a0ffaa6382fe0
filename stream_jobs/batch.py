"""The worker's batch step: one batch of intervals-topic records, from bytes to stored rows, in named steps.

    decode      load the data keys the records name, open each record, decode it against the event contract,
                and record the refusal of each interval that breaks it (the gateway may be waiting to tell the device)
    filter      drop what belongs to revoked devices and deleted accounts, apply each account's privacy choices
    dedupe      read the devices' saved states, the deletions and the event ids already stored; plan the writes
    insert      write the raw intervals, the rollups rebuilt from raw for the hours and days they touch, the
                session versions and the refusals of repeated event ids
    save_state  write each device's new sessionizer state, last: a state is saved only once all it reflects is
    commit      send the dead letters; the agent then lets go of the batch and faust commits its offsets

dedupe, insert and save_state run per part of the batch (`stream_jobs/isolate.py` splits off records the warehouse
refuses for good) and are retried whole while the warehouse is away. Every write is a function of the device's
intervals up to its last device_seq (`stream_jobs/plan.py`), so a process that dies after any step and reads the
batch again writes the same rows, which the tables' keys collapse: nothing is lost or counted twice
(docs/design.md, "Delivery"). `Steps` times each step and tells an observer as each one ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from clickhouse_connect.driver.client import Client

from plumbing import metrics
from plumbing.settings import Settings
from schemas.activitywatch import IN_FRONT
from schemas.codec import encode_stamped_batch
from schemas.contract import IMPORT_WINDOW, Window
from schemas.privacy_rules import AccountPrivacy
from schemas.sealing import seal
from stream_jobs.failures import describe, is_permanent, short_reason
from stream_jobs.forget import apply_deletion, rules_of
from stream_jobs.isolate import write_isolating
from stream_jobs.keyring import KeyRing, key_ids, open_records
from stream_jobs.plan import event_id_span, floors_of, group_by_device, plan_batch, stale_deletions
from stream_jobs.revocations import Revocations
from stream_jobs.rows import decode_intervals, interval_columns, private_intervals, source_rows
from stream_jobs.sessionize import SessionRules
from warehouse.client import connect
from warehouse.deletion import delete_intervals
from warehouse.imports import store_source_intervals, streams_of
from warehouse.privacy import load_privacy
from warehouse.rollups import insert_settings, rebuild_touched
from warehouse.writes import (
    APP_SESSION_COLUMNS,
    FOCUS_SESSION_COLUMNS,
    DeletionGuard,
    first_seqs_of_event_ids,
    load_device_states,
    store_device_states,
    store_intervals,
    store_refusals,
    store_rows,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

STEPS = ("decode", "filter", "dedupe", "insert", "save_state", "commit")
INTERVAL_FIELDS = ("event_id", "device_seq", "start", "end", "app", "title", "keystrokes", "clicks", "idle")

for _step in STEPS:  # every step's series exists from the start
    metrics.WORKER_STEP_SECONDS.labels(_step)

_RETRY_FIRST_S = 0.5
_RETRY_MAX_S = 10.0


class Steps:
    """Marks the steps of a batch: each is timed (productimon_worker_step_seconds{step}), and `on_done` is told
    its name as it ends without error. Steps of the write run in a worker thread, so `on_done` may be called
    from one."""

    def __init__(self, on_done: Callable[[str], None] | None = None) -> None:
        self._on_done = on_done

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        assert name in STEPS, name
        began = time.monotonic()
        yield
        metrics.WORKER_STEP_SECONDS.labels(name).observe(time.monotonic() - began)
        if self._on_done is not None:
            self._on_done(name)


NO_OBSERVER = Steps()


@dataclass(frozen=True)
class ReadBatch:
    """What a batch of topic records holds, once opened and decoded (`read_batch`)."""

    intervals: list[dict]  # flat, each with the id of the key its record was sealed under
    # (value, reason) for the dead-letter topic: a record that could not be read (as it came), or one interval
    # that breaks the contract (sealed again under its record's key). Reasons name no user or device.
    dead_letters: list[tuple[bytes, str]]
    refusals: list[tuple[str, str, int, str, str]]  # of those intervals, for the gateway to answer with
    shredded: int  # records whose key was deleted with their data
    keys: dict[str, bytes]  # key id -> key, of this batch's records


def read_batch(
    values: list[bytes], ring: KeyRing, window: Window, now_ms: int, imported: Collection[str] = ()
) -> ReadBatch:
    """Open each record with the key it names (`ring` has loaded what it could), then decode it. A record whose
    identity is not its key's owner was sealed under another device's key and is refused whole. The devices in
    `imported` are import streams, whose history may be older than the window (schemas/contract.py)."""
    opened = open_records(values, ring)
    intervals: list[dict] = []
    dead_letters = list(opened.refused)
    refusals = []
    keys = {}
    for key_id, key, plain, user_id, device_id in opened.records:
        keys[key_id] = key
        found, rejected = decode_intervals([plain], IMPORT_WINDOW if device_id in imported else window, now_ms)
        if any(i["user_id"] != user_id or i["device_id"] != device_id for i in found):
            dead_letters.append((seal(key_id, key, plain), "a record sealed under another device's key"))
            continue
        for interval in found:
            interval["key_id"] = key_id
        intervals += found
        dead_letters += [(seal(key_id, key, r.value), r.reason) for r in rejected]
        refusals += [r.refusal for r in rejected if r.refusal is not None]
    return ReadBatch(intervals, dead_letters, refusals, opened.shredded, keys)


def dead_letter_value(interval: dict) -> bytes:
    """A poison interval as a StampedBatch of one, its identity kept so it can be replayed once fixed; the URL
    is already trimmed to its site, which travels in its place."""
    fields = {k: interval[k] for k in INTERVAL_FIELDS if k != "url"}
    return encode_stamped_batch(
        {
            "user_id": interval["user_id"],
            "device_id": interval["device_id"],
            "received_at": interval["received_at"],
            "intervals": [{**fields, "title": interval["title"] or None, "url": interval["site"] or None}],
        }
    )


@dataclass(frozen=True)
class Written:
    stored: int
    refused: int  # as repeated event ids
    deleted: int = 0  # covered by a recorded deletion


# Where the device id is in a session row (APP_SESSION_COLUMNS and FOCUS_SESSION_COLUMNS alike).
_DEVICE_COLUMN = 1


def write_batch(
    client: Client,
    by_device: dict[str, list[dict]],
    rules: SessionRules,
    rollup_settings: dict,
    window: Window,
    deleter: Client | None = None,
    steps: Steps = NO_OBSERVER,
    elsewhere: Mapping[str, str] | None = None,
) -> Written:
    """The dedupe, insert and save_state steps for one part of a batch (module docstring); last, apply any
    deletion recorded while it wrote (stream_jobs/forget.py), with `deleter`, the deletion login
    (warehouse/roles.py), where one is given. `elsewhere` maps the import streams of another source kind than
    the window in front to that kind: their intervals go to `source_intervals`, with no rollup and no session
    (warehouse/imports.py); their state is saved like any device's, so redelivery and acknowledgement work alike."""
    deleter = deleter or client
    users = {d: items[0]["user_id"] for d, items in by_device.items()}
    with steps.step("dedupe"):
        guard = DeletionGuard.load(client, sorted(set(users.values())))
        saved = load_device_states(client, list(by_device))
        stale = stale_deletions(saved, users, guard)
        if stale:
            for deletion in stale:
                log.info("applying deletion %s again: a saved state was written without it", deletion.deletion_id)
                apply_deletion(deleter, deletion, rules)
            saved = load_device_states(client, list(by_device))
        floors = floors_of(saved)
        keys = sorted(
            {
                (i["user_id"], d, i["event_id"])
                for d, items in by_device.items()
                for i in items
                if i["device_seq"] > floors.get(d, -1)
            }
        )
        stored_firsts = first_seqs_of_event_ids(client, keys, *event_id_span(by_device, window)) if keys else {}
        writes = plan_batch(by_device, saved, rules, stored_firsts, guard)
    in_front, app_rows, focus_rows = writes.intervals, writes.app_rows, writes.focus_rows
    if elsewhere:
        in_front = [i for i in writes.intervals if i["device_id"] not in elsewhere]
        app_rows = [r for r in app_rows if r[_DEVICE_COLUMN] not in elsewhere]
        focus_rows = [r for r in focus_rows if r[_DEVICE_COLUMN] not in elsewhere]
    with steps.step("insert"):
        store_intervals(client, guard, interval_columns(in_front))
        if len(in_front) < len(writes.intervals):
            other = [i for i in writes.intervals if i["device_id"] in (elsewhere or {})]
            store_source_intervals(client, guard, source_rows(other, elsewhere or {}))
        rebuild_touched(client, in_front, settings=rollup_settings)
        store_rows(client, guard, "app_sessions", APP_SESSION_COLUMNS, app_rows)
        store_rows(client, guard, "focus_sessions", FOCUS_SESSION_COLUMNS, focus_rows)
        store_refusals(client, guard, writes.refusals)
    with steps.step("save_state"):
        store_device_states(client, guard, writes.states)
        # A deletion recorded since the guard was read may have run before these rows landed: apply it again.
        for deletion in guard.new_since(client, sorted(set(users.values()))):
            log.info("applying deletion %s again: it ran while a batch was written", deletion.deletion_id)
            apply_deletion(deleter, deletion, rules)
    return Written(len(writes.intervals), len(writes.refusals), writes.deleted)


def settle_poison(
    client: Client, poison: list[tuple[dict, BaseException]], deleter: Client | None = None
) -> list[tuple[dict, str]]:
    """For intervals no write could store: remove whatever part of them was stored (with `deleter`, the deletion
    login, where one is given), record the refusal (the gateway answers the device with it), and return each with
    its reason for the dead-letter topic."""
    settled = [(interval, short_reason(exc)) for interval, exc in poison]
    if settled:
        delete_intervals(deleter or client, [interval for interval, _ in settled])
        store_refusals(
            client,
            DeletionGuard.load(client, sorted({i["user_id"] for i, _ in settled})),
            [(i["user_id"], i["device_id"], i["device_seq"], i["event_id"], reason) for i, reason in settled],
        )
    return settled


class PrivacyChoices:
    """Each account's privacy choices (warehouse/privacy.py), read again once they are `ttl_s` old: an edit in the
    dashboard applies to what this worker stores within that time."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s, self._clock = ttl_s, clock
        self._known: dict[str, tuple[float, AccountPrivacy]] = {}

    def get(self, client: Client, user_ids: Sequence[str]) -> dict[str, AccountPrivacy]:
        now = self._clock()
        stale = [u for u in user_ids if u not in self._known or now - self._known[u][0] >= self._ttl_s]
        if stale:
            for user, choice in load_privacy(client, stale).items():
                self._known[user] = (now, choice)
        return {u: self._known[u][1] for u in user_ids}


class WarehouseLogins:
    """The worker's two warehouse connections, made when first needed and dropped after a failure: its own login,
    and the deletion login (warehouse/roles.py) for a deletion that raced a batch and for poison's remains."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._clients: dict[str, Client] = {}
        self._rollup_settings: dict | None = None

    def client(self) -> Client:
        if "client" not in self._clients:
            self._clients["client"] = connect(self._settings, timeout_s=self._settings.worker_write_timeout_seconds)
            self._rollup_settings = insert_settings(self._clients["client"])
        return self._clients["client"]

    def deleter(self) -> Client:
        if "deleter" not in self._clients:
            self._clients["deleter"] = connect(
                self._settings, timeout_s=self._settings.worker_write_timeout_seconds, deletion=True
            )
        return self._clients["deleter"]

    def rollup_settings(self) -> dict:
        self.client()
        assert self._rollup_settings is not None
        return self._rollup_settings

    def drop(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch came to, for the commit step and the worker's counters."""

    intervals: int  # decoded from the records
    kept: int  # after the filter
    devices: int
    written: list[Written] = field(default_factory=list)
    dead_letters: list[tuple[bytes, str]] = field(default_factory=list)  # (value, reason), unreadable and poison
    poison: int = 0
    insert_seconds: float | None = None  # None: nothing needed the warehouse


class BatchStep:
    """The worker's batch step (module docstring). The faust agent only wires it: `run` each batch of record
    values, then `commit` with a way to send a dead letter, then let go of the batch so faust commits it."""

    def __init__(
        self,
        settings: Settings,
        revocations: Revocations,
        revocations_known: asyncio.Event | None = None,
        steps: Steps = NO_OBSERVER,
    ) -> None:
        self.rules = rules_of(settings)
        self.window = Window.of_days(settings.interval_max_age_days)
        self.revocations = revocations
        self.revocations_known = revocations_known
        self.ring = KeyRing()
        self.privacy = PrivacyChoices(settings.privacy_reload_seconds)
        self.warehouse = WarehouseLogins(settings)
        # Per device seen: its import stream's source kind, or None for a collector (warehouse/imports.py).
        self.streams: dict[str, str | None] = {}
        self.steps = steps

    async def run(self, values: list[bytes]) -> BatchOutcome:
        with self.steps.step("decode"):
            read = await self.decode(values)
        with self.steps.step("filter"):
            by_device = await self.filter(read.intervals)
        kept = sum(len(items) for items in by_device.values())
        outcome = BatchOutcome(len(read.intervals), kept, len(by_device), dead_letters=list(read.dead_letters))
        if not by_device:
            return outcome  # nothing to store: what could not be read is dead-lettered at once
        written, poison, seconds = await self.until_stored(lambda: self.store(by_device))
        poison_letters = [
            (seal(i["key_id"], read.keys[i["key_id"]], dead_letter_value(i)), f"device_seq {i['device_seq']}: {why}")
            for i, why in poison
        ]
        return BatchOutcome(
            outcome.intervals,
            kept,
            len(by_device),
            written,
            outcome.dead_letters + poison_letters,
            len(poison),
            seconds,
        )

    async def decode(self, values: list[bytes]) -> ReadBatch:
        ids = key_ids(values)
        missing = self.ring.missing(ids)
        if missing:
            await self.until_stored(lambda: self.ring.load(self.warehouse.client(), missing))
        devices = sorted({owner[1] for owner in map(self.ring.owner, ids) if owner is not None})
        unknown = [d for d in devices if d not in self.streams]
        if unknown:
            found = await self.until_stored(lambda: streams_of(self.warehouse.client(), unknown))
            # A stream's row is written before any record of it is sent: a device without one is a collector.
            self.streams.update({d: found[d].source if d in found else None for d in unknown})
        imported = {d for d in devices if self.streams[d] is not None}
        read = read_batch(values, self.ring, self.window, int(time.time() * 1000), imported)
        if read.refusals:
            refusals = read.refusals
            await self.until_stored(lambda: store_refusals(self.warehouse.client(), self.guard(refusals), refusals))
        if read.shredded:
            log.info("dropped %d records whose data key was deleted with their data", read.shredded)
            metrics.WORKER_DROPPED.labels("shredded").inc(read.shredded)
        return read

    async def filter(self, intervals: list[dict]) -> dict[str, list[dict]]:
        # What was revoked before this batch must be known before it is stored.
        if self.revocations_known is not None:
            await self.revocations_known.wait()
        kept = [i for i in intervals if not self.revocations.drops(i["user_id"], i["device_id"])]
        if len(kept) < len(intervals):
            log.info("dropped %d intervals of revoked devices or deleted accounts", len(intervals) - len(kept))
            metrics.WORKER_DROPPED.labels("revoked").inc(len(intervals) - len(kept))
        if kept:
            # The account's privacy choices, again (clients are not trusted), before anything is stored.
            users = sorted({i["user_id"] for i in kept})
            choices = await self.until_stored(lambda: self.privacy.get(self.warehouse.client(), users))
            kept = private_intervals(kept, choices)
        return group_by_device(kept)

    def guard(self, refusals: list[tuple[str, str, int, str, str]]) -> DeletionGuard:
        return DeletionGuard.load(self.warehouse.client(), sorted({r[0] for r in refusals}))

    def store(self, by_device: dict[str, list[dict]]) -> tuple[list[Written], list[tuple[dict, str]], float]:
        """dedupe, insert and save_state, in a worker thread, for each part of the batch the warehouse takes
        (`stream_jobs/isolate.py`); then what is left of the poison the warehouse refused."""
        client = self.warehouse.client()
        began = time.monotonic()
        isolated = write_isolating(
            lambda part: write_batch(
                client,
                part,
                self.rules,
                self.warehouse.rollup_settings(),
                self.window,
                self.warehouse.deleter(),
                self.steps,
                {d: kind for d in part if (kind := self.streams.get(d)) not in (None, IN_FRONT)},
            ),
            by_device,
            is_permanent,
        )
        poison = settle_poison(client, isolated.poison, self.warehouse.deleter())
        return [w for w in isolated.results if isinstance(w, Written)], poison, time.monotonic() - began

    async def commit(self, outcome: BatchOutcome, send_dead_letter: Callable[[bytes, str], Awaitable[None]]) -> None:
        """Send the batch's dead letters and count it; the caller then lets go of the batch, which faust commits."""
        with self.steps.step("commit"):
            for value, reason in outcome.dead_letters:
                await send_dead_letter(value, reason)
            metrics.WORKER_BATCHES.inc()
            metrics.WORKER_DEAD_LETTERS.inc(len(outcome.dead_letters))
            stored = sum(w.stored for w in outcome.written)
            repeated = sum(w.refused for w in outcome.written)
            deleted = sum(w.deleted for w in outcome.written)
            metrics.WORKER_STORED.inc(stored)
            metrics.WORKER_DROPPED.labels("repeated_event_id").inc(repeated)
            metrics.WORKER_DROPPED.labels("deleted").inc(deleted)
            metrics.WORKER_DROPPED.labels("duplicate").inc(
                max(outcome.kept - stored - repeated - deleted - outcome.poison, 0)
            )
            if outcome.insert_seconds is not None:
                metrics.WORKER_INSERT_SECONDS.observe(outcome.insert_seconds)

    async def until_stored(self, work: Callable[[], T]) -> T:
        """Run `work` (in a thread) until it succeeds; never return (and so never let the batch be acknowledged)
        before it has. A failure reaching here is transient (permanent ones are isolated inside `store`): retried
        with backoff, each attempt bounded by the warehouse client's timeout, counted in
        productimon_worker_retries."""
        delay = _RETRY_FIRST_S
        failing_since: float | None = None
        try:
            while True:
                try:
                    result = await asyncio.to_thread(work)
                    metrics.WORKER_RETRYING_SECONDS.set(0)
                    return result
                except Exception as exc:  # the warehouse is away or busy: keep the batch, retry with backoff
                    failing_since = failing_since or time.monotonic()
                    metrics.WORKER_RETRIES.inc()
                    metrics.WORKER_RETRYING_SECONDS.set(time.monotonic() - failing_since)
                    log.warning("warehouse write failed (%s); retrying in %.1fs", describe(exc), delay)
                    self.warehouse.drop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
        except asyncio.CancelledError:
            # faust acknowledges a take() batch when the agent lets go of it, even on cancellation.
            # Exiting at once, without the shutdown commit, keeps the unstored batch uncommitted.
            log.error("stopped while a batch was not yet stored: exiting without committing it")
            logging.shutdown()
            os._exit(75)
