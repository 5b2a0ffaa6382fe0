"""The gateway's side of the broker: send a device's stamped records and wait until the broker has them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

log = logging.getLogger(__name__)


class BrokerUnavailable(Exception):
    """The broker did not take the records; nothing of the batch may be acknowledged."""


class IntervalProducer:
    def __init__(
        self, bootstrap: str, topic: str, *, send_timeout_s: float = 15.0, options: dict[str, Any] | None = None
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        # How to connect: TLS and the gateway's own SCRAM login in production (plumbing.kafka_security.client_options).
        self._options = dict(options or {})
        self._send_timeout_s = send_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._partitioner = DefaultPartitioner()
        # Highest offset written per partition: at shutdown the stack waits until the workers have
        # committed past these, because the embedded broker misreports a partition's end offset.
        self.last_offsets: dict[int, int] = {}

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            linger_ms=2,
            max_batch_size=1024 * 1024,
            max_request_size=8 * 1024 * 1024,
            request_timeout_ms=int(self._send_timeout_s * 1000),
            **self._options,
        )
        try:
            await self._producer.start()
        except KafkaError as exc:
            raise BrokerUnavailable(f"cannot reach the broker at {self._bootstrap}: {exc}") from exc

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        """One record, waited for: identity events must be on the broker before the caller goes on."""
        if self._producer is None:
            raise BrokerUnavailable("the gateway's producer is not running")
        try:
            async with asyncio.timeout(self._send_timeout_s):
                await self._producer.send_and_wait(topic, value, key=key)
        except (KafkaError, TimeoutError) as exc:
            raise BrokerUnavailable(f"the broker did not take the event: {exc!r}") from exc

    async def _partition_of(self, key: bytes) -> int:
        # The client's own default partitioner (murmur2, as Java's), so keys land where any producer puts them.
        partitions = sorted(await self._producer.partitions_for(self._topic))
        return self._partitioner(key, partitions, partitions)

    async def send(self, key: bytes, values: list[bytes]) -> None:
        """Send all values under one key; return only once the broker acknowledged every one."""
        await (await self.enqueue(key, values))

    async def enqueue(self, key: bytes, values: list[bytes]) -> Awaitable[None]:
        """Put all values under one key in line for the broker, in order, and return what to await for the
        broker's acknowledgement of every one. Values enqueued one call after another reach the partition in
        that order, so a caller holding a per-key lock only while enqueuing keeps the key's order.

        One device's batch goes to one partition, so it is built as record batches directly rather
        than message by message: the per-message path costs more than everything else the gateway does.
        """
        if not values:
            return _done()
        if self._producer is None:
            raise BrokerUnavailable("the gateway's producer is not running")
        try:
            async with asyncio.timeout(self._send_timeout_s):
                partition = await self._partition_of(key)
                pending = []
                batch = self._producer.create_batch()
                for value in values:
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        pending.append(
                            (
                                await self._producer.send_batch(batch, self._topic, partition=partition),
                                batch.record_count(),
                            )
                        )
                        batch = self._producer.create_batch()
                        batch.append(key=key, value=value, timestamp=None)
                pending.append(
                    (await self._producer.send_batch(batch, self._topic, partition=partition), batch.record_count())
                )
        except (KafkaError, TimeoutError) as exc:
            raise BrokerUnavailable(f"the broker did not take the batch: {exc!r}") from exc
        return self._confirm(partition, pending)

    async def _confirm(self, partition: int, pending: list) -> None:
        try:
            async with asyncio.timeout(self._send_timeout_s):
                results = await asyncio.gather(*(fut for fut, _ in pending))
        except (KafkaError, TimeoutError) as exc:
            raise BrokerUnavailable(f"the broker did not take the batch: {exc!r}") from exc
        last = results[-1].offset + pending[-1][1] - 1
        if last > self.last_offsets.get(partition, -1):
            self.last_offsets[partition] = last


async def _done() -> None:
    return None
