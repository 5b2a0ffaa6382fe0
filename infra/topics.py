"""The broker side of the stack: topics created explicitly, and waiting for workers to drain them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from plumbing.kafka_security import client_options
from plumbing.settings import Settings

DAY_MS = 24 * 3600 * 1000
# Raw intervals age out of the broker so a deleted user's events do not linger there (docs/design.md "Delete means
# gone").
DEFAULT_INTERVALS_RETENTION_DAYS = 7
# Refused records are kept long enough for someone to look at them after a holiday.
DEADLETTER_RETENTION_DAYS = 30


class TopicsRefused(Exception):
    """The broker answered and refused a topic (a bad config or too few brokers for the replication)."""


@dataclass(frozen=True)
class TopicSpec:
    partitions: int
    # Topic-level broker configs; empty means the broker's defaults.
    configs: dict[str, str] = field(default_factory=dict)


def topic_specs(
    settings: Settings, intervals_retention_days: int = DEFAULT_INTERVALS_RETENTION_DAYS
) -> dict[str, TopicSpec]:
    """Topic name -> partitions and configs. Created explicitly: brokers auto-create with their own defaults.

    Configs are for a real Kafka only: the embedded broker keeps everything in memory for the life of
    the local stack and need not accept topic configs.
    """
    kafka = settings.broker_mode == "kafka"
    return {
        settings.intervals_topic: TopicSpec(
            settings.topic_partitions,
            {"retention.ms": str(intervals_retention_days * DAY_MS)} if kafka else {},
        ),
        settings.deadletter_topic: TopicSpec(
            1, {"retention.ms": str(DEADLETTER_RETENTION_DAYS * DAY_MS)} if kafka else {}
        ),
        # The gateway keys identity events by user/device: compaction keeps the latest of each forever.
        settings.identity_topic: TopicSpec(1, {"cleanup.policy": "compact"} if kafka else {}),
    }


async def ensure_topics(
    settings: Settings,
    intervals_retention_days: int = DEFAULT_INTERVALS_RETENTION_DAYS,
    replication_factor: int = 1,
) -> list[str]:
    """Create the missing topics; returns the names created. Existing topics are left as they are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, spec.partitions, replication_factor, topic_configs=spec.configs or None)
            for name, spec in topic_specs(settings, intervals_retention_days).items()
            if name not in existing
        ]
        if missing:
            try:
                response = await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                return []  # another process created them in between: what we wanted
            if settings.broker_mode == "kafka":
                # Kafka answers per topic; a refused config or replication factor must not pass silently.
                refused = [
                    f"{name}: {error[0] if error else ''} (code {code})".strip()
                    for name, code, *error in response.topic_errors
                    if code not in (0, TopicAlreadyExistsError.errno)
                ]
                if refused:
                    raise TopicsRefused("the broker refused to create " + "; ".join(refused))
        return [t.name for t in missing]
    finally:
        await admin.close()


async def committed_offsets(settings: Settings, group: str, partitions: list[int]) -> dict[int, int]:
    """The group's committed offset per partition (0 where it has none), read without joining the group."""
    # A consumer's OffsetFetch, not the admin client's: the embedded broker answers only the former.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False, **client_options(settings)
    )
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
    embedded broker misreports (docs/design.md "Real components and how they start").
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
