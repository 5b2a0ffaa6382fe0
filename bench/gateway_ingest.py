"""Sustained intervals/s through one gateway process over real mTLS, beside a bare aiokafka producer
sending the same stamped records to the same broker in the same run (issue: gateway figures).

The gateway acknowledges after the broker here (`gateway_ack_after="broker"`): this measures its own path
(validation, sequence checks, stamping, producing). Acknowledged after storage, the gateway goes as fast
as the worker stores: `bench/overload.py` measures that."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import grpc
from aiokafka import AIOKafkaProducer

from bench._stack import bench_stack
from collector.transport import channel_credentials
from infra.devices import new_user_device
from schemas.codec import encode_interval, encode_stamped, encode_stamped_batch
from schemas.wire import ingest_pb2, ingest_pb2_grpc

BATCH = 500
DEVICES = 8
IN_FLIGHT_PER_DEVICE = 2
SECONDS = 8.0
ROUNDS = 5  # every rate is the median of this many rounds
TARGET_RATE = 50_000
TARGET_RATIO = 0.5


def _intervals(device: int, now_ms: int) -> list[dict]:
    start = now_ms - 3_600_000
    return [
        {
            "event_id": str(uuid.uuid4()),
            "device_seq": i,
            "start": start + i * 1000,
            "end": start + i * 1000 + 900,
            "app": ("Code", "Firefox", "Terminal", "Slack")[i % 4],
            "title": f"document {i % 37} — project {device}",
            "url": "https://docs.python.org/3/library/asyncio.html?highlight=x" if i % 4 == 1 else None,
            "keystrokes": i % 200,
            "clicks": i % 17,
            "idle": i % 50 == 0,
        }
        for i in range(BATCH)
    ]


async def _drive_gateway(address: str, devices: list, batches: list[list[bytes]]) -> float:
    """Each device streams batches (a few in flight) for SECONDS; returns accepted intervals/s."""
    accepted = 0
    deadline = 0.0

    async def device_loop(creds, batch: list[bytes]) -> None:
        nonlocal accepted
        async with grpc.aio.secure_channel(
            address, channel_credentials(creds), options=[("grpc.max_send_message_length", 16 << 20)]
        ) as channel:
            stub = ingest_pb2_grpc.IngestStub(channel)
            request = ingest_pb2.Batch(batch_id=1, intervals=batch)
            await stub.SendBatch(request)  # warm the connection before the clock starts

            async def lane() -> None:
                nonlocal accepted
                while time.monotonic() < deadline:
                    ack = await stub.SendBatch(request)
                    accepted += ack.accepted

            await started.wait()
            await asyncio.gather(*(lane() for _ in range(IN_FLIGHT_PER_DEVICE)))

    started = asyncio.Event()
    tasks = [asyncio.create_task(device_loop(c, b)) for c, b in zip(devices, batches, strict=True)]
    await asyncio.sleep(1.0)
    begin = time.monotonic()
    deadline = begin + SECONDS
    started.set()
    await asyncio.gather(*tasks)
    return accepted / (time.monotonic() - begin)


async def _drive_bare_producer(
    bootstrap: str, topic: str, keyed: list[tuple[bytes, list[bytes]]], per_record: int
) -> float:
    """Records sent straight from aiokafka with `send()`, same keys and concurrency; intervals/s, where each
    record holds `per_record` intervals."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2, max_batch_size=1 << 20)
    await producer.start()
    sent = 0
    deadline = time.monotonic() + SECONDS

    async def lane(key: bytes, values: list[bytes]) -> None:
        nonlocal sent
        while time.monotonic() < deadline:
            pending = [await producer.send(topic, v, key=key) for v in values]
            await asyncio.gather(*pending)
            sent += len(values) * per_record

    begin = time.monotonic()
    await asyncio.gather(*(lane(k, v) for k, v in keyed for _ in range(IN_FLIGHT_PER_DEVICE)))
    rate = sent / (time.monotonic() - begin)
    await producer.stop()
    return rate


def run(progress) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        stack = bench_stack(Path(tmp), gateway_ack_after="broker")
        settings = stack.settings
        try:
            stack.start_broker()
            # The gateway reads (and on a device's first batch makes) each device's data key in the warehouse.
            stack.start_warehouse()
            stack.start_gateway()
            now_ms = int(time.time() * 1000)
            devices, batches, per_interval, per_batch = [], [], [], []
            for d in range(DEVICES):
                identity, creds = new_user_device(settings, f"bench-device-{d}")
                intervals = _intervals(d, now_ms)
                devices.append(creds)
                batches.append([encode_interval(i) for i in intervals])
                key, who = identity.device_id.encode(), {"user_id": identity.user_id, "device_id": identity.device_id}
                per_interval.append(
                    (key, [encode_stamped({**who, "received_at": now_ms, "interval": i}) for i in intervals])
                )
                per_batch.append((key, [encode_stamped_batch({**who, "received_at": now_ms, "intervals": intervals})]))
            gateway_rates, bare_rates, bare_batch_rates = [], [], []
            bootstrap, topic = settings.kafka_bootstrap, settings.intervals_topic
            for r in range(ROUNDS):
                bare_rates.append(asyncio.run(_drive_bare_producer(bootstrap, topic, per_interval, 1)))
                progress(f"round {r + 1}: bare producer, a record per interval  {bare_rates[-1]:>9,.0f} intervals/s")
                bare_batch_rates.append(asyncio.run(_drive_bare_producer(bootstrap, topic, per_batch, BATCH)))
                progress(
                    f"round {r + 1}: bare producer, the gateway's records  {bare_batch_rates[-1]:>9,.0f} intervals/s"
                )
                gateway_rates.append(asyncio.run(_drive_gateway(settings.gateway_address, devices, batches)))
                progress(f"round {r + 1}: gateway over mTLS, 500 per batch      {gateway_rates[-1]:>9,.0f} intervals/s")
        finally:
            stack.down()
    gateway = statistics.median(gateway_rates)
    bare, bare_batched = statistics.median(bare_rates), statistics.median(bare_batch_rates)
    # The target's baseline does the same work minus the gateway: a bare producer sending the very records the
    # gateway writes (a StampedBatch per device batch) to the same broker. A record per interval is reported
    # beside it, as the plain way to put intervals into Kafka.
    ratio = gateway / bare_batched
    return {
        "data": (
            f"{DEVICES} devices, batches of {BATCH} intervals of 0.9 s an hour ago (4 apps, 37 titles, a URL with a "
            f"query every 4th, idle every 50th), {IN_FLIGHT_PER_DEVICE} batches in flight per device"
        ),
        "rounds": ROUNDS,
        "batch_size": BATCH,
        "devices": DEVICES,
        "seconds_per_measure": SECONDS,
        "gateway_intervals_per_s": round(gateway),
        "gateway_rounds_per_s": [round(x) for x in gateway_rates],
        "bare_producer_gateway_records_intervals_per_s": round(bare_batched),
        "bare_producer_gateway_records_rounds_per_s": [round(x) for x in bare_batch_rates],
        "bare_producer_record_per_interval_intervals_per_s": round(bare),
        "ratio_vs_gateway_records": round(ratio, 3),
        "ratio_vs_record_per_interval": round(gateway / bare, 3),
        "target": (
            f">= {TARGET_RATE}/s and >= {TARGET_RATIO} of a bare producer sending the same stamped records "
            f"(medians of {ROUNDS} rounds)"
        ),
        "meets_target": gateway >= TARGET_RATE and ratio >= TARGET_RATIO,
    }
