"""The warehouse writer: a faust agent that turns the intervals topic into warehouse rows, in batches.

Delivery: an event is acknowledged (and its offset later committed) only after the insert that holds
it succeeded. Inserts are retried while the warehouse is away; a worker told to stop in the middle of
an unstored batch exits without committing, so the batch is delivered again. The warehouse's keys
make that second delivery a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable

import faust
from clickhouse_connect.driver.client import Client

from infra.cli import command
from infra.settings import Settings, load_settings
from stream_jobs.rows import build_rows
from warehouse.client import connect
from warehouse.migrate import apply_migrations
from warehouse.writes import store_intervals

log = logging.getLogger(__name__)

_RETRY_FIRST_S = 0.5
_RETRY_MAX_S = 10.0


def broker_options(settings: Settings) -> dict[str, object]:
    """faust broker settings; the embedded broker's workarounds apply in embedded mode only."""
    options: dict[str, object] = {}
    if settings.broker_mode == "embedded":
        options.update(
            # tansu takes about half the session timeout to complete a group join (DESIGN.md).
            broker_session_timeout=6,
            broker_heartbeat_interval=1,
            # tansu reports a partition's end as the last batch's first offset + 1; one record per
            # batch keeps end offsets (and so table recovery) right for what faust itself produces.
            producer_max_batch_size=1,
        )
    return options


def create_app(settings: Settings) -> faust.App:
    app = faust.App(
        settings.worker_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        **broker_options(settings),
    )
    intervals = app.topic(settings.intervals_topic, key_type=bytes, value_type=bytes)
    deadletter = app.topic(settings.deadletter_topic, key_type=bytes, value_type=bytes)
    warehouse: dict[str, Client] = {}

    def warehouse_client() -> Client:
        if "client" not in warehouse:
            warehouse["client"] = connect(settings)
        return warehouse["client"]

    @app.agent(intervals, name="write-intervals")
    async def write_intervals(stream):
        async for events in stream.take_events(settings.worker_batch_size, within=settings.worker_batch_seconds):
            batch = build_rows(event.value for event in events)
            for value, reason in batch.rejected:
                log.warning("dead-lettering a record of %s: %s", settings.intervals_topic, reason)
                fut = await deadletter.send(value=value, headers={"reason": reason.encode()})
                await fut
            if len(batch):
                await _store_until_done(
                    lambda columns=batch.columns: store_intervals(warehouse_client(), columns), warehouse
                )
            log.debug("stored %d intervals", len(batch))

    return app


async def _store_until_done(insert: Callable[[], int], warehouse: dict[str, Client]) -> None:
    """Run the insert until it succeeds; never return (and so never acknowledge) before it has."""
    delay = _RETRY_FIRST_S
    try:
        while True:
            try:
                await asyncio.to_thread(insert)
                return
            except Exception as exc:  # any warehouse failure: keep the batch, retry with backoff
                log.warning("warehouse insert failed (%s); retrying in %.1fs", exc, delay)
                warehouse.pop("client", None)
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
    apply_migrations(connect(settings, with_database=False), settings.warehouse_database)
    app = create_app(settings)
    log_level = os.environ.get("PRODUCTIMON_LOG_LEVEL", "info").lower()
    sys.argv = [sys.argv[0], "worker", "--loglevel", log_level, "--without-web"]
    app.main()
    return 0
