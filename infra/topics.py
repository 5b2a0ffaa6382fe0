"""The broker side of the stack: topics created explicitly, and waiting for workers to drain them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from infra.settings import Settings


def topic_specs(settings: Settings) -> dict[str, int]:
    """Topic name -> partition count. Created explicitly: brokers auto-create with their own defaults."""
    return {
        settings.intervals_topic: settings.topic_partitions,
        settings.deadletter_topic: 1,
        settings.identity_topic: 1,
    }


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the missing topics; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, n, 1) for name, n in topic_specs(settings).items() if name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another process created it in between: what we wanted
        return [t.name for t in missing]
    finally:
        await admin.close()


async def committed_offsets(settings: Settings, group: str, partitions: list[int]) -> dict[int, int]:
    """The group's committed offset per partition (0 where it has none), read without joining the group."""
    # A consumer's OffsetFetch, not the admin client's: the embedded broker answers only the former.
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(settings.intervals_topic, p)) or 0 for p in partitions}
    finally:
        await consumer.stop()


def remaining(last_offsets: dict[int, int], committed: dict[int, int]) -> int:
    """Records written but not yet committed by the group; a committed offset is the next to read."""
    return sum(max(0, last + 1 - committed.get(p, 0)) for p, last in last_offsets.items())


async def wait_until_drained(
    settings: Settings,
    group: str,
    last_offsets: dict[int, int],
    timeout_s: float,
    progress: Callable[[int], None] = lambda n: None,
) -> bool:
    """Wait until `group` has committed past every offset the gateway wrote; False on timeout.

    The gateway's own record of what it wrote is used instead of the broker's end offsets, which the
    embedded broker misreports (DESIGN.md).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        left = remaining(last_offsets, await committed_offsets(settings, group, list(last_offsets)))
        progress(left)
        if left == 0:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.5)
