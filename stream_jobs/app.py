"""The stream worker: a faust app whose agent feeds the intervals topic, batch by batch, to the batch step
(stream_jobs/batch.py: decode, filter, dedupe, insert, save state, commit), beside two tasks: following the
identity topic for revocations, and watching the broker for lost data. A worker killed at any moment neither
loses nor double-counts a second (docs/design.md, "Delivery").
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition

from plumbing import metrics
from plumbing.cli import command, json_logging_config
from plumbing.kafka_security import client_options, faust_options
from plumbing.settings import Settings, load_settings
from schemas.identity_events import BadIdentityEvent, decode_event
from stream_jobs.batch import NO_OBSERVER, BatchStep, Steps
from stream_jobs.revocations import Revocations
from warehouse.client import connect
from warehouse.migrate import require_current_schema

log = logging.getLogger(__name__)

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


def create_app(settings: Settings, *, logging_config: dict | None = None, steps: Steps = NO_OBSERVER) -> faust.App:
    """The worker's faust app; `logging_config` (a dictConfig) replaces faust's own log handler when given; `steps`
    is told as each step of a batch ends (stream_jobs/batch.py)."""
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
        # (BatchStep.until_stored exits without the commit), and storing it again elsewhere is harmless.
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
    revocations = Revocations()
    identity_caught_up = asyncio.Event()
    batch_step = BatchStep(settings, revocations, identity_caught_up, steps)

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
        # Wiring only: the batch step (stream_jobs/batch.py) does the work; letting go of the batch acks it.
        async def send_dead_letter(value: bytes, reason: str) -> None:
            log.warning("dead-lettering a record of %s: %s", settings.intervals_topic, reason)
            await (await deadletter.send(value=value, headers={"reason": reason.encode()}))

        waited_since = time.monotonic()
        async for events in stream.take_events(settings.worker_batch_records, within=settings.worker_batch_seconds):
            began = time.monotonic()
            outcome = await batch_step.run([e.value for e in events])
            await batch_step.commit(outcome, send_dead_letter)
            done = time.monotonic()
            log.debug(
                "%d records, %d intervals of %d devices: waited %.3fs, stored in %.3fs",
                len(events),
                outcome.intervals,
                outcome.devices,
                began - waited_since,
                done - began,
            )
            waited_since = done

    return app


@command("productimon-worker")
def main() -> int:
    return run_worker()


def run_worker(steps: Steps = NO_OBSERVER) -> int:
    """The worker until it stops; `steps` is told as each step of a batch ends (stream_jobs/batch.py)."""
    settings = load_settings()
    # The worker's login may not change the schema (warehouse/roles.py): productimon-migrate has done it.
    require_current_schema(connect(settings))
    logging_config = json_logging_config("productimon-worker")
    app = create_app(settings, logging_config=logging_config, steps=steps)
    metrics.serve_metrics(settings.metrics_host, settings.worker_metrics_port)
    log_level = os.environ.get("PRODUCTIMON_LOG_LEVEL", "info").lower()
    # --quiet silences faust's start-up banner, which is printed rather than logged, so JSON lines stay JSON.
    quiet = ["--quiet"] if logging_config is not None else []
    sys.argv = [sys.argv[0], *quiet, "worker", "--loglevel", log_level, "--without-web"]
    app.main()
    return 0
