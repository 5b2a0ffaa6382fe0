"""Delivery guarantees with failures injected into a private stack: nothing acknowledged is lost,
nothing delivered twice is counted twice."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from collector.transport import IngestClient
from infra.devices import new_user_device
from infra.stack import Stack
from infra.topics import committed_offsets
from schemas.codec import encode_interval
from schemas.sealing import key_id_of
from tests.conftest import eventually, private_stack_running
from tests.e2e.test_pipeline import interval, seconds_per_app
from tests.sealed import opened, sealed
from warehouse.client import connect

pytestmark = pytest.mark.e2e


@pytest.fixture
def private_stack(tmp_path):
    # Acknowledged once the broker holds a batch: the topic then holds acknowledged, unstored intervals while
    # a worker or the warehouse is away, the hardest case for the worker (ack after "stored" is tested in
    # test_faults.py).
    with private_stack_running(
        tmp_path, gateway_send_timeout_seconds=3.0, topic_partitions=2, gateway_ack_after="broker"
    ) as stack:
        yield stack


def committed_total(stack: Stack) -> int:
    partitions = list(range(stack.settings.topic_partitions))
    offsets = asyncio.run(committed_offsets(stack.settings, stack.settings.worker_id, partitions))
    return sum(offsets.values())


def test_gateway_says_unavailable_and_acknowledges_nothing_without_a_broker(private_stack):
    _, creds = new_user_device(private_stack.settings)
    private_stack.broker.stop()
    with IngestClient(private_stack.settings.gateway_address, creds, timeout_s=20) as client:
        with pytest.raises(grpc.RpcError) as refused:
            client.send_batch([encode_interval(interval(0, 0, 10, "Code"))])
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "broker" in refused.value.details()


def test_worker_commits_nothing_until_the_warehouse_stored_it(private_stack):
    identity, creds = new_user_device(private_stack.settings)
    batch = [encode_interval(interval(i, i * 30, 30, "Code")) for i in range(40)]
    with IngestClient(private_stack.settings.gateway_address, creds) as client:
        # The device's first batch since the gateway started needs the warehouse: it holds the device's data key.
        assert client.send_batch(batch[:1]).accepted == 1
        assert eventually(lambda: committed_total(private_stack) == 1, 60)
        private_stack.warehouse.stop()
        assert client.send_batch(batch[1:]).accepted == 39
    time.sleep(4)  # several batch windows and commit intervals of the worker pass with the warehouse away
    assert committed_total(private_stack) == 1

    private_stack.start_warehouse()
    client = connect(private_stack.settings)
    assert eventually(lambda: seconds_per_app(client, identity.user_id) == {"Code": 1200.0}, 90)
    # The gateway wrote the accepted batch as one record; its offset is committed now that it is stored.
    assert eventually(lambda: committed_total(private_stack) == 2, 30)


def test_worker_killed_mid_stream_loses_and_double_counts_nothing(private_stack):
    identity, creds = new_user_device(private_stack.settings)
    batches = [
        [encode_interval(interval(b * 100 + i, (b * 100 + i) * 2, 2, "Code")) for i in range(100)] for b in range(30)
    ]
    with IngestClient(private_stack.settings.gateway_address, creds) as client:
        for n, batch in enumerate(batches):
            assert client.send_batch(batch).accepted == 100
            if n == 12:
                private_stack.workers[0].kill()
    private_stack.workers.clear()
    private_stack.start_worker("worker-restarted")
    client = connect(private_stack.settings)
    assert eventually(lambda: seconds_per_app(client, identity.user_id) == {"Code": 6000.0}, 120)
    count = client.query(
        "SELECT count() FROM intervals FINAL WHERE user_id = {u:String}", parameters={"u": identity.user_id}
    ).result_rows[0][0]
    assert count == 3000


def test_unreadable_records_go_to_the_dead_letter_topic_and_the_worker_goes_on(private_stack):
    settings = private_stack.settings
    garbage = b"\xc3\x01" + b"\x00" * 8 + b"not an interval"
    identity, creds = new_user_device(settings)
    # Garbage as anyone on the network could write it, and garbage sealed under a device's real key.
    sealed_garbage = sealed(settings, identity.user_id, identity.device_id, garbage)

    async def produce_garbage() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(settings.intervals_topic, garbage, key=b"some-device")
            await producer.send_and_wait(settings.intervals_topic, sealed_garbage, key=b"some-device")
        finally:
            await producer.stop()

    asyncio.run(produce_garbage())
    with IngestClient(settings.gateway_address, creds) as client:
        assert client.send_batch([encode_interval(interval(0, 0, 42, "Code"))]).accepted == 1
    assert eventually(lambda: seconds_per_app(connect(settings), identity.user_id) == {"Code": 42.0}, 60)

    async def dead_letters() -> list:
        consumer = AIOKafkaConsumer(
            settings.deadletter_topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        found: list = []
        try:
            # One fetch may hold only the first of them: read on until both came, or nothing more comes.
            while len(found) < 2:
                batches = await consumer.getmany(timeout_ms=3000)
                if not batches:
                    break
                found.extend(r for records in batches.values() for r in records)
            batches = await consumer.getmany(timeout_ms=500)  # and nothing beyond them
            found.extend(r for records in batches.values() for r in records)
            return found
        finally:
            await consumer.stop()

    records = asyncio.run(dead_letters())
    assert len(records) == 2 and records[0].value == garbage
    # A dead letter of a sealed record stays sealed, under the same key, and holds what came.
    assert key_id_of(records[1].value) == key_id_of(sealed_garbage) and garbage not in records[1].value
    assert opened(settings, records[1].value) == garbage
    reasons = [dict(r.headers)["reason"].decode() for r in records]
    assert reasons[0].startswith("not a sealed record")
    assert "undecodable" in reasons[1] or "unknown schema" in reasons[1]
