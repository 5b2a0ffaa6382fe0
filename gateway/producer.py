"""The gateway's side of the broker: send a device's stamped records and wait until the broker has them."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)


class BrokerUnavailable(Exception):
    """The broker did not take the records; nothing of the batch may be acknowledged."""


class IntervalProducer:
    def __init__(self, bootstrap: str, topic: str, *, send_timeout_s: float = 15.0) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._send_timeout_s = send_timeout_s
        self._producer: AIOKafkaProducer | None = None
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
        )
        try:
            await self._producer.start()
        except KafkaError as exc:
            raise BrokerUnavailable(f"cannot reach the broker at {self._bootstrap}: {exc}") from exc

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send(self, key: bytes, values: list[bytes]) -> None:
        """Send all values under one key; return only once the broker acknowledged every one."""
        if not values:
            return
        if self._producer is None:
            raise BrokerUnavailable("the gateway's producer is not running")
        try:
            async with asyncio.timeout(self._send_timeout_s):
                pending = [await self._producer.send(self._topic, value, key=key) for value in values]
                results = await asyncio.gather(*pending)
        except (KafkaError, TimeoutError) as exc:
            raise BrokerUnavailable(f"the broker did not take the batch: {exc!r}") from exc
        for meta in results:
            if meta.offset > self.last_offsets.get(meta.partition, -1):
                self.last_offsets[meta.partition] = meta.offset
