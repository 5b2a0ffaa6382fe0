"""The stream worker: a faust agent that turns the intervals topic into warehouse rows and sessions.

For each batch: decode and trim, drop what belongs to revoked devices and deleted accounts, read each
device's sessionizer state from the warehouse, cut the new intervals into sessions, then write in this
order: the raw intervals, the rollups rebuilt from raw for the hours and days they touch, the session
versions, and last the new state; only then is the batch acknowledged. Every one of those writes is a
function of the device's intervals up to its last device_seq, so doing any part again (a redelivery
after a crash, a retry after the warehouse died mid-insert, a second worker, a new consumer group)
writes the same rows, which the tables' keys collapse. A worker killed at any moment neither loses nor
double-counts a second (docs/design.md, "Delivery").
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from clickhouse_connect.driver.client import Client

from plumbing import metrics
from plumbing.cli import command, json_logging_config
from plumbing.kafka_security import client_options, faust_options
from plumbing.settings import Settings, load_settings
from schemas.codec import encode_stamped_batch
from schemas.contract import Window
from schemas.deletions import Deletion
from schemas.identity_events import BadIdentityEvent, decode_event
from schemas.privacy_rules import AccountPrivacy
from schemas.sealing import seal
from stream_jobs.failures import describe, is_permanent, short_reason
from stream_jobs.forget import apply_deletion, rules_of
from stream_jobs.isolate import write_isolating
from stream_jobs.keyring import KeyRing, key_ids, open_records
from stream_jobs.revocations import Revocations
from stream_jobs.rows import decode_intervals, interval_columns, private_interval, session_rows
from stream_jobs.sessionize import Advance, DeviceState, SessionRules, advance
from warehouse.client import connect
from warehouse.deletion import delete_intervals
from warehouse.migrate import require_current_schema
from warehouse.privacy import load_privacy
from warehouse.rollups import insert_settings, rebuild_touched
from warehouse.writes import (
    APP_SESSION_COLUMNS,
    FOCUS_SESSION_COLUMNS,
    NO_DELETIONS,
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
INTERVAL_FIELDS = ("event_id", "device_seq", "start", "end", "app", "title", "keystrokes", "clicks", "idle")

_RETRY_FIRST_S = 0.5
_RETRY_MAX_S = 10.0
_LAG_EVERY_S = 10.0


def broker_options(settings: Settings) -> dict[str, object]:
    """faust broker settings; the embedded broker's workarounds apply in embedded mode only."""
    options: dict[str, object] = {}
    if settings.broker_mode == "embedded":
        options.update(
            # tansu takes about half the session timeout to complete a group join (docs/design.md "Real components and
            # how they start").
            broker_session_timeout=6,
            broker_heartbeat_interval=1,
            # tansu reports a partition's end as the last batch's first offset + 1; one record per
            # batch keeps the end offsets of what the worker produces (dead letters) right.
            producer_max_batch_size=1,
        )
    return options


def group_by_device(intervals: list[dict]) -> dict[str, list[dict]]:
    by_device: dict[str, list[dict]] = {}
    for interval in intervals:
        by_device.setdefault(interval["device_id"], []).append(interval)
    return by_device


def sessionize_batch(
    by_device: dict[str, list[dict]], saved: Callable[[str], dict | None], rules: SessionRules
) -> tuple[dict[str, Advance], dict[str, int]]:
    """Each device's intervals (in arrival order) advanced from its saved state; also the highest device_seq
    each device had processed before this batch (-1 for none)."""
    advances, before = {}, {}
    for device_id, items in by_device.items():
        data = saved(device_id)
        state = DeviceState.from_dict(data) if data else DeviceState()
        before[device_id] = state.last_seq
        advances[device_id] = advance(state, items, rules)
    return advances, before


def intervals_to_insert(by_device: dict[str, list[dict]], floors: dict[str, int]) -> list[dict]:
    """The intervals the saved state has not processed yet: per device, those above its floor, first of each seq.

    A device's floor is the highest device_seq its saved state reflects. The state is saved after the
    intervals, rollups and sessions it produced, so everything at or below the floor is stored; above it,
    some may be stored already (a worker died before saving the state), and storing them again is harmless.
    """
    fresh = []
    for device_id, items in by_device.items():
        floor = floors.get(device_id, -1)
        for interval in items:
            if interval["device_seq"] > floor:
                fresh.append(interval)
                floor = interval["device_seq"]
    return fresh


def drop_repeated_event_ids(
    by_device: dict[str, list[dict]], floors: dict[str, int], stored_firsts: dict[tuple[str, str], int]
) -> tuple[dict[str, list[dict]], list[tuple[str, str, int, str, str]]]:
    """Pure: the batch without any interval under an event_id its device already used for a lower device_seq
    (stored, as `stored_firsts` maps (device_id, event_id) to the lowest device_seq stored under it, or earlier
    in this batch), and a refusal (user_id, device_id, device_seq, event_id, reason) for each one dropped.

    One event_id names one interval of a device: the first, in device_seq order, is the one that counts
    (docs/design.md, "Delivery"). Intervals at or below the device's floor are redeliveries and left alone."""
    kept: dict[str, list[dict]] = {}
    refusals = []
    for device_id, items in by_device.items():
        floor = floors.get(device_id, -1)
        firsts: dict[str, int] = {}
        kept[device_id] = []
        for interval in items:
            seq, event_id = interval["device_seq"], interval["event_id"]
            if seq > floor:
                first = min(firsts.get(event_id, seq), stored_firsts.get((device_id, event_id), seq))
                if first != seq:
                    reason = f"repeated event_id: {event_id} was already stored under device_seq {first}"
                    refusals.append((interval["user_id"], device_id, seq, event_id, reason))
                    continue
                firsts.setdefault(event_id, seq)
            kept[device_id].append(interval)
    return {d: items for d, items in kept.items() if items}, refusals


def drop_deleted(by_device: dict[str, list[dict]], guard: DeletionGuard) -> dict[str, list[dict]]:
    """Pure: the batch without the intervals a recorded deletion covers. They leave no row at all, not even a
    refusal: a device waiting to hear of them is told by the gateway, which reads the same record."""
    if not guard.deletions:
        return by_device
    kept: dict[str, list[dict]] = {}
    for device_id, items in by_device.items():
        for interval in items:
            if guard.covering(interval["user_id"], device_id, interval["start"], interval["end"]) is None:
                kept.setdefault(device_id, []).append(interval)
    return kept


def stale_deletions(saved: dict[str, str], users: dict[str, str], guard: DeletionGuard) -> list[Deletion]:
    """Pure: the recorded deletions that some saved state (device_id -> JSON; `users` maps device_id to user_id)
    has not been cut by: a deletion ran while the state's writer was writing it. They are applied again first."""
    stale: dict[str, Deletion] = {}
    for device_id, data in saved.items():
        applied = set(DeviceState.from_dict(json.loads(data)).applied)
        for d in guard.deletions:
            if d.names(users[device_id], device_id) and d.deletion_id not in applied:
                stale.setdefault(d.deletion_id, d)
    return list(stale.values())


@dataclass(frozen=True)
class BatchWrites:
    """Everything one batch writes to the warehouse, in the order it must be written."""

    intervals: list[dict]
    app_rows: list[tuple]
    focus_rows: list[tuple]
    # (user_id, device_id, device_seq, event_id, reason) of intervals refused as repeated event ids.
    refusals: list[tuple[str, str, int, str, str]]
    # (user_id, device_id, last_seq, state JSON) of every device whose state moved.
    states: list[tuple[str, str, int, str]]
    # How many intervals a recorded deletion covered (dropped without a trace).
    deleted: int = 0


def floors_of(saved: dict[str, str]) -> dict[str, int]:
    """The highest device_seq each device's saved state (JSON, as `load_device_states` returns) reflects."""
    return {device_id: DeviceState.from_dict(json.loads(data)).last_seq for device_id, data in saved.items()}


def plan_batch(
    by_device: dict[str, list[dict]],
    saved: dict[str, str],
    rules: SessionRules,
    stored_firsts: dict[tuple[str, str], int] | None = None,
    guard: DeletionGuard = NO_DELETIONS,
) -> BatchWrites:
    """Pure: what a batch writes, given each device's saved state (JSON, as `load_device_states` returns), the
    lowest device_seq stored under each of its event ids (`drop_repeated_event_ids`) and the deletions recorded
    for its users (`drop_deleted`); every state it saves records those deletions as applied."""
    arrived = sum(len(items) for items in by_device.values())
    by_device = drop_deleted(by_device, guard)
    covered = arrived - sum(len(items) for items in by_device.values())
    by_device, refusals = drop_repeated_event_ids(by_device, floors_of(saved), stored_firsts or {})
    advances, floors = sessionize_batch(
        by_device, lambda device_id: json.loads(saved[device_id]) if device_id in saved else None, rules
    )
    states = []
    for device_id, adv in advances.items():
        if adv.state.last_seq > floors[device_id]:
            user_id = by_device[device_id][0]["user_id"]
            applied = dict.fromkeys(adv.state.applied)
            applied.update(dict.fromkeys(d.deletion_id for d in guard.deletions if d.names(user_id, device_id)))
            state = DeviceState(adv.state.last_seq, adv.state.app_session, adv.state.focus_session, tuple(applied))
            states.append((user_id, device_id, state.last_seq, json.dumps(state.to_dict())))
    return BatchWrites(
        intervals=intervals_to_insert(by_device, floors),
        app_rows=session_rows((s for a in advances.values() for s in a.app_sessions), APP_SESSION_COLUMNS),
        focus_rows=session_rows((s for a in advances.values() for s in a.focus_sessions), FOCUS_SESSION_COLUMNS),
        refusals=refusals,
        states=states,
        deleted=covered,
    )


def event_id_span(by_device: dict[str, list[dict]], window: Window) -> tuple[int, int]:
    """The start times among which a batch's repeated event ids are looked for: the acceptance window before
    the earliest receipt to the latest possible end."""
    received = [i["received_at"] for items in by_device.values() for i in items]
    return min(received) - window.max_age_ms, max(received) + window.future_skew_ms


@dataclass(frozen=True)
class Written:
    stored: int
    refused: int  # as repeated event ids
    deleted: int = 0  # covered by a recorded deletion


def write_batch(
    client: Client,
    by_device: dict[str, list[dict]],
    rules: SessionRules,
    rollup_settings: dict,
    window: Window,
    deleter: Client | None = None,
) -> Written:
    """Read the deletions, the devices' states and stored event ids, then write the batch in order (module
    docstring); last, apply any deletion recorded while it wrote (stream_jobs/forget.py), with `deleter`, the
    deletion login (warehouse/roles.py), where one is given."""
    deleter = deleter or client
    users = {d: items[0]["user_id"] for d, items in by_device.items()}
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
    store_intervals(client, guard, interval_columns(writes.intervals))
    rebuild_touched(client, writes.intervals, settings=rollup_settings)
    store_rows(client, guard, "app_sessions", APP_SESSION_COLUMNS, writes.app_rows)
    store_rows(client, guard, "focus_sessions", FOCUS_SESSION_COLUMNS, writes.focus_rows)
    store_refusals(client, guard, writes.refusals)
    # Last: a state is saved only once everything it reflects is stored.
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


def read_batch(values: list[bytes], ring: KeyRing, window: Window, now_ms: int) -> ReadBatch:
    """Open each record with the key it names (`ring` has loaded what it could), then decode it. A record whose
    identity is not its key's owner was sealed under another device's key and is refused whole."""
    opened = open_records(values, ring)
    intervals: list[dict] = []
    dead_letters = list(opened.refused)
    refusals = []
    keys = {}
    for key_id, key, plain, user_id, device_id in opened.records:
        keys[key_id] = key
        found, rejected = decode_intervals([plain], window, now_ms)
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


async def follow_identity_events(settings: Settings, revocations: Revocations, caught_up: asyncio.Event) -> None:
    """Read the whole identity topic, then follow it; `caught_up` is set once everything present is read."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, **client_options(settings)
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.identity_topic, p) for p in await _partitions(consumer, settings)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        # The gateway sends identity events one record per batch, so the embedded broker's end offsets
        # are right for this topic.
        ends = await consumer.end_offsets(partitions)
        while True:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    try:
                        revocations.apply(decode_event(record.value))
                    except BadIdentityEvent as exc:
                        log.warning("ignoring identity event at offset %d: %s", record.offset, exc)
            if not caught_up.is_set() and all([await consumer.position(tp) >= ends[tp] for tp in partitions]):
                caught_up.set()
    finally:
        await consumer.stop()


def log_shrank(seen: dict[int, int], ends: dict[int, int]) -> list[int]:
    """Pure: the partitions whose end offset is below one seen before (a log only ever grows at its end;
    retention moves its start), after remembering the new ends in `seen`."""
    shrank = [p for p, end in ends.items() if end < seen.get(p, 0)]
    for p, end in ends.items():
        seen[p] = max(seen.get(p, 0), end)
    return shrank


async def watch_for_data_loss(settings: Settings, every_s: float = 5.0) -> None:
    """Exit (code 75, to be restarted) when the broker lost the intervals topic or part of its log.

    A broker that lost part of a log while the consumer group lived on can leave this worker's fetch
    positions past the new ends. (A broker that comes back empty, as the embedded one does, forgets the group
    too: the worker rejoins and starts from the beginning by itself.) Restarted, the worker reads from where
    its group's committed offsets (or the start) say; nothing acknowledged depends on the lost records with
    ack after "stored", as the collectors send them again (docs/design.md, "Delivery")."""
    seen: dict[int, int] = {}
    first = True
    while True:
        if not first:
            await asyncio.sleep(every_s)
        first = False
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, **client_options(settings)
        )
        try:
            await consumer.start()
            partitions = consumer.partitions_for_topic(settings.intervals_topic)
            if not partitions:
                await consumer.topics()
                partitions = consumer.partitions_for_topic(settings.intervals_topic)
            if not partitions:
                problem = f"the topic {settings.intervals_topic} is gone"
            else:
                tps = [TopicPartition(settings.intervals_topic, p) for p in sorted(partitions)]
                ends = {tp.partition: end for tp, end in (await consumer.end_offsets(tps)).items()}
                shrank = log_shrank(seen, ends)
                problem = f"partitions {shrank} of {settings.intervals_topic} lost records" if shrank else ""
        except Exception as exc:  # the broker is away: nothing to conclude yet
            log.debug("could not read the end offsets: %s", exc)
            continue
        finally:
            await consumer.stop()
        if problem:
            log.error("the broker lost data (%s): exiting to start again from the committed offsets", problem)
            logging.shutdown()
            os._exit(75)


async def _partitions(consumer: AIOKafkaConsumer, settings: Settings) -> list[int]:
    for _ in range(100):
        found = consumer.partitions_for_topic(settings.identity_topic)
        if found:
            return sorted(found)
        await consumer.topics()  # refreshes the cluster metadata
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topic {settings.identity_topic} does not exist; create the stack's topics first")


def create_app(settings: Settings, *, logging_config: dict | None = None) -> faust.App:
    """The worker's faust app; `logging_config` (a dictConfig) replaces faust's own log handler when given."""
    logging_options: dict[str, object] = {} if logging_config is None else {"logging_config": logging_config}
    app = faust.App(
        settings.worker_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        # On a stop or a rebalance, do not wait for the batch in hand: a batch retrying against a warehouse that
        # is away would hold a stop request for ever. Letting go is safe: the batch is not committed
        # (_store_until_done exits without the commit), and storing it again elsewhere is harmless.
        stream_wait_empty=False,
        # faust keeps a data directory of its own; by default in the working directory, which may be a checkout.
        datadir=str(settings.data_dir / "faust"),
        **broker_options(settings),
        # TLS and the worker's own SCRAM login for every connection faust makes (docs/transport-security.md).
        **faust_options(settings),
        **logging_options,
    )
    intervals_topic = app.topic(settings.intervals_topic, key_type=bytes, value_type=bytes)
    deadletter = app.topic(settings.deadletter_topic, key_type=bytes, value_type=bytes)
    rules = rules_of(settings)
    revocations = Revocations()
    ring = KeyRing()
    privacy_choices = PrivacyChoices(settings.privacy_reload_seconds)
    identity_caught_up = asyncio.Event()
    warehouse: dict[str, Client] = {}
    window = Window.of_days(settings.interval_max_age_days)

    def warehouse_client() -> Client:
        if "client" not in warehouse:
            warehouse["client"] = connect(settings, timeout_s=settings.worker_write_timeout_seconds)
            warehouse["rollup_settings"] = insert_settings(warehouse["client"])
        return warehouse["client"]

    def deletion_client() -> Client:
        # The deletion login (warehouse/roles.py): for a deletion that raced a batch, and for poison's remains.
        if "deleter" not in warehouse:
            warehouse["deleter"] = connect(settings, timeout_s=settings.worker_write_timeout_seconds, deletion=True)
        return warehouse["deleter"]

    @app.task
    async def identity_events() -> None:
        await follow_identity_events(settings, revocations, identity_caught_up)

    @app.task
    async def data_loss() -> None:
        await watch_for_data_loss(settings)

    if settings.worker_metrics_port:

        @app.timer(_LAG_EVERY_S)
        async def measure_consumer_lag() -> None:
            # Approximate: the embedded broker misreports highwater (see broker_options), and the position is
            # what was fetched, which runs ahead of what was stored.
            lags = {}
            try:
                for tp in app.consumer.assignment():
                    if tp.topic == settings.intervals_topic:
                        highwater, position = app.consumer.highwater(tp), await app.consumer.position(tp)
                        if highwater is not None and position is not None:
                            lags[tp.partition] = max(highwater - position, 0)
            except Exception as exc:  # a rebalance under way; the next tick measures again
                log.debug("consumer lag not measured: %s", exc)
                return
            metrics.WORKER_CONSUMER_LAG.clear()
            for partition, lag in lags.items():
                metrics.WORKER_CONSUMER_LAG.labels(str(partition)).set(lag)

    @app.agent(intervals_topic, name="write-intervals")
    async def write_intervals(stream):
        waited_since = time.monotonic()
        async for events in stream.take_events(settings.worker_batch_records, within=settings.worker_batch_seconds):
            began = time.monotonic()
            # What was revoked before this batch must be known before it is stored.
            await identity_caught_up.wait()
            values = [e.value for e in events]
            missing = ring.missing(key_ids(values))
            if missing:
                await _store_until_done(lambda missing=missing: ring.load(warehouse_client(), missing), warehouse)
            read = read_batch(values, ring, window, int(time.time() * 1000))
            intervals, rejected = read.intervals, read.dead_letters
            if read.shredded:
                log.info("dropped %d records whose data key was deleted with their data", read.shredded)
                metrics.WORKER_DROPPED.labels("shredded").inc(read.shredded)
            metrics.WORKER_BATCHES.inc()
            kept = [i for i in intervals if not revocations.drops(i["user_id"], i["device_id"])]
            if len(kept) < len(intervals):
                log.info("dropped %d intervals of revoked devices or deleted accounts", len(intervals) - len(kept))
                metrics.WORKER_DROPPED.labels("revoked").inc(len(intervals) - len(kept))
            if kept:
                # The account's privacy choices, again (clients are not trusted), before anything is stored.
                users = sorted({i["user_id"] for i in kept})
                choices = await _store_until_done(
                    lambda users=users: privacy_choices.get(warehouse_client(), users), warehouse
                )
                kept = [private_interval(i, choices[i["user_id"]]) for i in kept]
            by_device = group_by_device(kept)
            refusals = read.refusals

            def store(by_device=by_device, refusals=refusals) -> tuple[list[Written], list[tuple[dict, str]], float]:
                client = warehouse_client()
                insert_began = time.monotonic()
                # The contract's refusals first: the gateway may be waiting to tell the device.
                store_refusals(client, DeletionGuard.load(client, sorted({r[0] for r in refusals})), refusals)
                isolated = write_isolating(
                    lambda part: write_batch(
                        client, part, rules, warehouse["rollup_settings"], window, deletion_client()
                    ),
                    by_device,
                    is_permanent,
                )
                poison = settle_poison(client, isolated.poison, deletion_client())
                return isolated.results, poison, time.monotonic() - insert_began

            # A batch of nothing but unreadable records needs no warehouse: it is dead-lettered at once.
            written, poison, seconds = await _store_until_done(store, warehouse) if kept or refusals else ([], [], 0.0)
            for value, reason in rejected + [
                (
                    seal(i["key_id"], read.keys[i["key_id"]], dead_letter_value(i)),
                    f"device_seq {i['device_seq']}: {why}",
                )
                for i, why in poison
            ]:
                log.warning("dead-lettering a record of %s: %s", settings.intervals_topic, reason)
                await (await deadletter.send(value=value, headers={"reason": reason.encode()}))
            metrics.WORKER_DEAD_LETTERS.inc(len(rejected) + len(poison))
            stored = sum(w.stored for w in written)
            repeated = sum(w.refused for w in written)
            deleted = sum(w.deleted for w in written)
            metrics.WORKER_STORED.inc(stored)
            metrics.WORKER_DROPPED.labels("repeated_event_id").inc(repeated)
            metrics.WORKER_DROPPED.labels("deleted").inc(deleted)
            metrics.WORKER_DROPPED.labels("duplicate").inc(
                max(len(kept) - stored - repeated - deleted - len(poison), 0)
            )
            if kept:
                metrics.WORKER_INSERT_SECONDS.observe(seconds)
            done = time.monotonic()
            log.debug(
                "%d records, %d intervals of %d devices: waited %.3fs, stored in %.3fs",
                len(events),
                len(intervals),
                len(by_device),
                began - waited_since,
                done - began,
            )
            waited_since = done

    return app


async def _store_until_done(store: Callable[[], T], warehouse: dict[str, Client]) -> T:
    """Run `store` until it succeeds; never return (and so never acknowledge) before it has. A failure reaching
    here is transient (permanent ones are isolated inside `store`): retried with backoff, each attempt bounded by
    the warehouse client's timeout, and counted in productimon_worker_retries."""
    delay = _RETRY_FIRST_S
    failing_since: float | None = None
    try:
        while True:
            try:
                result = await asyncio.to_thread(store)
                metrics.WORKER_RETRYING_SECONDS.set(0)
                return result
            except Exception as exc:  # the warehouse is away or busy: keep the batch, retry with backoff
                failing_since = failing_since or time.monotonic()
                metrics.WORKER_RETRIES.inc()
                metrics.WORKER_RETRYING_SECONDS.set(time.monotonic() - failing_since)
                log.warning("warehouse write failed (%s); retrying in %.1fs", describe(exc), delay)
                for name in ("client", "deleter"):
                    if name in warehouse:
                        warehouse.pop(name).close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_S)
    except asyncio.CancelledError:
        # faust acknowledges a take() batch when the agent lets go of it, even on cancellation.
        # Exiting at once, without the shutdown commit, keeps the unstored batch uncommitted.
        log.error("stopped while a batch was not yet stored: exiting without committing it")
        logging.shutdown()
        os._exit(75)


@command("productimon-worker")
def main() -> int:
    settings = load_settings()
    # The worker's login may not change the schema (warehouse/roles.py): productimon-migrate has done it.
    require_current_schema(connect(settings))
    logging_config = json_logging_config("productimon-worker")
    app = create_app(settings, logging_config=logging_config)
    metrics.serve_metrics(settings.metrics_host, settings.worker_metrics_port)
    log_level = os.environ.get("PRODUCTIMON_LOG_LEVEL", "info").lower()
    # --quiet silences faust's start-up banner, which is printed rather than logged, so JSON lines stay JSON.
    quiet = ["--quiet"] if logging_config is not None else []
    sys.argv = [sys.argv[0], *quiet, "worker", "--loglevel", log_level, "--without-web"]
    app.main()
    return 0
