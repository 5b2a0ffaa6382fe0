"""No input can stop, stall or skew the pipeline: hostile batches through the real gateway with a real device
certificate, and hostile records written straight to the broker (which is not trusted either), while other
users' data goes on being stored.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from collector.transport import IngestClient
from infra.devices import new_user_device
from infra.processes import free_port
from infra.streams import StreamingDevice
from schemas.codec import decode_stamped_intervals, encode_interval, encode_stamped_batch
from schemas.sealing import partition_key
from stream_jobs.trim import INVALID_URL
from tests.conftest import eventually, private_stack_running
from tests.integration.test_metrics import scrape
from tests.sealed import opened, sealed
from warehouse.client import connect
from warehouse.rollups import rollup_drift

pytestmark = pytest.mark.e2e

RECORD_LIMIT = 65_536


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # A ten-year window, so a batch spanning more months than the warehouse takes in one insert block can be
    # valid; a small record limit, so splitting by size shows with batches of a test's size.
    with private_stack_running(
        tmp_path_factory.mktemp("hostile"),
        topic_partitions=2,
        worker_batch_records=5,
        interval_max_age_days=3650,
        gateway_max_record_bytes=RECORD_LIMIT,
        gateway_store_timeout_seconds=20.0,
        worker_metrics_port=free_port(),
        worker_write_timeout_seconds=8.0,
    ) as running:
        yield running


def now_ms() -> int:
    return int(time.time() * 1000)


def interval(seq: int, start: int, length_ms: int = 60_000, **changes) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "device_seq": seq,
        "start": start,
        "end": start + length_ms,
        "app": "Code",
        "title": "main.py",
        "url": None,
        "keystrokes": 10,
        "clicks": 1,
        "idle": False,
    } | changes


def rows(client, sql: str, user: str) -> list[tuple]:
    return client.query(sql, parameters={"u": user}).result_rows


def bystander(stack, seed: int, n: int = 60) -> StreamingDevice:
    """A well-behaved device streaming beside the attack."""
    device = StreamingDevice(stack.settings, seed, n, batch=10, pace_s=0.1)
    device.start()
    return device


def assert_bystander_exact(stack, device: StreamingDevice) -> None:
    device.join(120)
    assert device.problem is None and device.acked == len(device.stream)
    client = connect(stack.settings)
    stored = rows(
        client,
        "SELECT count(), sum(keystrokes) FROM intervals FINAL WHERE user_id = {u:String}",
        device.identity.user_id,
    )
    assert stored == [(len(device.stream), sum(i["keystrokes"] for i in device.stream))]
    assert rollup_drift(client, device.identity.user_id) == []


def test_hostile_values_through_the_gateway_are_refused_with_a_reason_or_stored_in_normal_form(stack):
    identity, creds = new_user_device(stack.settings)
    watching = bystander(stack, 1)
    t = now_ms() - 3_600_000
    since_1970 = [
        interval(i, int(datetime(1970 + i // 12, i % 12 + 1, 3, tzinfo=UTC).timestamp() * 1000)) for i in range(150)
    ]
    braces = str(uuid.uuid4())
    kept = [
        interval(200, t, event_id="{" + braces + "}"),
        interval(201, t + 60_000, app="Fire\x00fox\u202e\u2066", title="inbox\x07\r\nline", url="notes.txt"),
        interval(202, t + 120_000, url="a sentence, not an address"),
        interval(203, t + 180_000, keystrokes=6000, clicks=3000),  # at the physical limit for a minute
    ]
    refused = [
        interval(204, t + 240_000, length_ms=1000, keystrokes=1_000_000),
        interval(205, t + 300_000, clicks=2**31 - 1),
        interval(206, t + 360_000, app="\u202e\x00 "),
        interval(207, now_ms() + 3_600_000),
    ]
    batch = since_1970 + kept + refused
    with IngestClient(stack.settings.gateway_address, creds, timeout_s=60) as client:
        ack = client.send_batch([encode_interval(i) for i in batch])
    reasons = {e.index: e.reason for e in ack.errors}
    assert ack.accepted == len(kept)
    # Every refusal names its cause; nothing accepted is among them.
    assert set(reasons) == set(range(150)) | set(range(154, 158))
    assert all(reasons[i].startswith("interval is too old") for i in range(150))
    assert reasons[154].startswith("keystrokes exceed") and reasons[155].startswith("clicks exceed")
    assert reasons[156] == "app is empty" and reasons[157] == "interval ends in the future"
    c = connect(stack.settings)
    stored = rows(
        c,
        "SELECT device_seq, toString(event_id), app, title, site FROM intervals FINAL WHERE user_id = {u:String} "
        "ORDER BY device_seq",
        identity.user_id,
    )
    assert stored == [
        (200, braces, "Code", "main.py", ""),
        # A browser's one-part title is the page's content: scrubbed away (schemas/titles.py).
        (201, kept[1]["event_id"], "Firefox", "", INVALID_URL),
        (202, kept[2]["event_id"], "Code", "main.py", INVALID_URL),
        (203, kept[3]["event_id"], "Code", "main.py", ""),
    ]
    assert_bystander_exact(stack, watching)


def test_a_batch_spanning_more_months_than_one_insert_takes_is_stored_whole_and_stalls_no_one(stack):
    identity, creds = new_user_device(stack.settings)
    watching = bystander(stack, 2)
    first = datetime.now(UTC) - timedelta(days=3600)
    # 115 intervals, one in each month: more partitions than ClickHouse takes in one insert block (100).
    months = [interval(i, int((first + timedelta(days=31 * i)).timestamp() * 1000)) for i in range(115)]
    with IngestClient(stack.settings.gateway_address, creds, timeout_s=60) as client:
        ack = client.send_batch([encode_interval(i) for i in months])
    assert (ack.accepted, list(ack.errors)) == (115, [])
    c = connect(stack.settings)
    assert rows(c, "SELECT count() FROM intervals FINAL WHERE user_id = {u:String}", identity.user_id) == [(115,)]
    assert rollup_drift(c, identity.user_id) == []
    assert_bystander_exact(stack, watching)


def test_a_repeated_event_id_counts_once_and_the_device_hears_why(stack):
    identity, creds = new_user_device(stack.settings)
    t = now_ms() - 600_000
    first = [interval(s, t + s * 60_000) for s in range(5)]
    # Later, in its own batch (so only the warehouse knows): seq 5 reuses seq 2's event id with other content.
    again = interval(5, t + 5 * 60_000, event_id=first[2]["event_id"], app="Other", keystrokes=999)
    with IngestClient(stack.settings.gateway_address, creds, timeout_s=60) as client:
        assert client.send_batch([encode_interval(i) for i in first]).accepted == 5
        ack = client.send_batch([encode_interval(again), encode_interval(interval(6, t + 6 * 60_000))])
        # In one batch, the gateway sees it itself.
        same_batch = client.send_batch(
            [encode_interval(interval(7, t + 7 * 60_000, event_id=first[0]["event_id"]))]
            + [encode_interval(interval(8, t + 8 * 60_000))]
        )
    assert ack.accepted == 1
    assert [(e.index, e.reason) for e in ack.errors] == [
        (0, f"repeated event_id: {first[2]['event_id']} was already stored under device_seq 2")
    ]
    assert same_batch.accepted == 1 and same_batch.errors[0].reason.startswith("repeated event_id: ")
    c = connect(stack.settings)
    user = identity.user_id

    def settled():
        assert rows(c, "SELECT count(), sum(keystrokes) FROM intervals FINAL WHERE user_id = {u:String}", user) == [
            (7, 70)
        ]
        assert rows(c, "SELECT sum(keystrokes) FROM usage_by_hour FINAL WHERE user_id = {u:String}", user) == [(70,)]
        assert rows(c, "SELECT sum(keystrokes) FROM app_sessions FINAL WHERE user_id = {u:String}", user) == [(70,)]
        assert rows(c, "SELECT count() FROM app_sessions WHERE app = 'Other' AND user_id = {u:String}", user) == [(0,)]
        return True

    assert eventually(settled, 30)


def test_no_broker_record_exceeds_the_byte_limit_and_everything_is_stored(stack):
    identity, creds = new_user_device(stack.settings)
    t = now_ms() - 3_600_000
    long = [
        interval(s, t + s * 1000, length_ms=1000, title="é" * 1024, url="https://example.com/" + "p" * 4000)
        for s in range(300)
    ]
    with IngestClient(stack.settings.gateway_address, creds, timeout_s=60) as client:
        assert client.send_batch([encode_interval(i) for i in long]).accepted == 300

    async def records_of_device() -> list[bytes]:
        consumer = AIOKafkaConsumer(
            stack.settings.intervals_topic,
            bootstrap_servers=stack.settings.kafka_bootstrap,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            found: list[bytes] = []
            while batches := await consumer.getmany(timeout_ms=3000, max_records=10_000):
                for records in batches.values():
                    found += [r.value for r in records if r.key == partition_key(identity.device_id)]
            return found
        finally:
            await consumer.stop()

    values = asyncio.run(records_of_device())
    assert len(values) >= 300 * 6000 // RECORD_LIMIT
    assert all(len(v) <= RECORD_LIMIT for v in values)
    inside = [opened(stack.settings, v) for v in values]
    assert sorted(i["device_seq"] for v in inside for i in decode_stamped_intervals(v)["intervals"]) == list(range(300))
    c = connect(stack.settings)
    assert rows(c, "SELECT count() FROM intervals FINAL WHERE user_id = {u:String}", identity.user_id) == [(300,)]


def dead_letters(settings) -> list[tuple[bytes, str]]:
    async def read() -> list[tuple[bytes, str]]:
        consumer = AIOKafkaConsumer(
            settings.deadletter_topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            found = []
            while batches := await consumer.getmany(timeout_ms=3000, max_records=10_000):
                for records in batches.values():
                    found += [(r.value, dict(r.headers)["reason"].decode()) for r in records]
            return found
        finally:
            await consumer.stop()

    return asyncio.run(read())


def test_poison_written_straight_to_the_broker_is_dead_lettered_alone_and_the_rest_stored_at_once(stack):
    settings = stack.settings
    c = connect(settings)
    c.command("ALTER TABLE intervals ADD CONSTRAINT test_poison CHECK app != 'poison'")
    try:
        user, device = str(uuid.uuid4()), str(uuid.uuid4())
        other_user, other_device = str(uuid.uuid4()), str(uuid.uuid4())
        received = now_ms()
        t = received - 600_000
        braces = str(uuid.uuid4())
        mine = [
            interval(0, t),
            interval(1, t + 60_000, app="poison"),  # the warehouse refuses this one: permanent, the data's fault
            interval(2, t + 120_000, keystrokes=10**6),  # breaks the contract: the worker applies it too
            interval(3, t + 180_000, event_id="{" + braces + "}"),  # stored, in canonical form
        ]
        theirs = [interval(s, t + s * 60_000) for s in range(3)]

        def stamped(u, d, items) -> bytes:
            value = encode_stamped_batch({"user_id": u, "device_id": d, "received_at": received, "intervals": items})
            return sealed(settings, u, d, value)

        garbage = b"\xc3\x01" + b"\x00" * 8 + b"not a batch"

        async def produce() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
            await producer.start()
            try:
                for key, value in (
                    (device, stamped(user, device, mine)),
                    ("x", garbage),
                    (other_device, stamped(other_user, other_device, theirs)),
                ):
                    await producer.send_and_wait(settings.intervals_topic, value, key=key.encode())
            finally:
                await producer.stop()

        asyncio.run(produce())

        def stored() -> bool:
            assert rows(c, "SELECT device_seq FROM intervals FINAL WHERE user_id = {u:String} ORDER BY 1", user) == [
                (0,),
                (3,),
            ]
            assert rows(c, "SELECT count() FROM intervals FINAL WHERE user_id = {u:String}", other_user) == [(3,)]
            return True

        assert eventually(stored, 60)
        assert rows(
            c, "SELECT toString(event_id) FROM intervals FINAL WHERE user_id = {u:String} AND device_seq = 3", user
        ) == [(braces,)]

        def refusals() -> list[tuple]:
            sql = "SELECT device_seq, reason FROM refused_intervals FINAL WHERE user_id = {u:String} ORDER BY 1"
            return rows(c, sql, user)

        # The poison is settled once the rest of its batch is stored.
        assert eventually(lambda: [seq for seq, _ in refusals()] == [1, 2], 30)
        refusals = refusals()
        assert refusals[0][1].startswith("the warehouse refused it (code 469") and refusals[1][1].startswith(
            "keystrokes exceed"
        )
        letters = dead_letters(settings)
        assert any(value == garbage and "not a sealed record" in reason for value, reason in letters)
        poisoned = [decode_stamped_intervals(opened(settings, v)) for v, reason in letters if "code 469" in reason]
        assert [(b["user_id"], [i["device_seq"] for i in b["intervals"]]) for b in poisoned] == [(user, [1])]
        assert any(reason.endswith("keystrokes exceed 100 a second: 1000000 in 60 s") for _, reason in letters)
        assert rollup_drift(c, user) == [] and rollup_drift(c, other_user) == []
    finally:
        c.command("ALTER TABLE intervals DROP CONSTRAINT test_poison")


def test_a_worker_retrying_a_warehouse_that_is_away_stops_within_seconds_and_loses_nothing(stack):
    identity, creds = new_user_device(stack.settings)
    value = sealed(
        stack.settings,
        identity.user_id,
        identity.device_id,
        encode_stamped_batch(
            {
                "user_id": identity.user_id,
                "device_id": identity.device_id,
                "received_at": now_ms(),
                "intervals": [interval(0, now_ms() - 120_000)],
            }
        ),
    )
    stack.warehouse.kill()
    try:
        # Acknowledged after the broker only: with ack after "stored" nothing could be taken while it is away.
        async def produce() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap)
            await producer.start()
            try:
                await producer.send_and_wait(stack.settings.intervals_topic, value, key=identity.device_id.encode())
            finally:
                await producer.stop()

        asyncio.run(produce())
        worker = stack.workers[0]
        worker.wait_for_output(r"warehouse write failed .*; retrying", 60)

        def retrying() -> bool:
            found = scrape(stack.settings.worker_metrics_port)
            return (
                found[("productimon_worker_retries_total", ())] >= 1
                and found[("productimon_worker_retrying_seconds", ())] > 0
            )

        assert eventually(retrying, 30)
        began = time.monotonic()
        worker.stop(30)
        assert time.monotonic() - began < 5, "the worker took more than 5 s to honour SIGTERM while retrying"
        stack.workers.remove(worker)
    finally:
        stack.start_warehouse()
    stack.start_worker()
    c = connect(stack.settings)
    assert eventually(
        lambda: rows(c, "SELECT count() FROM intervals FINAL WHERE user_id = {u:String}", identity.user_id) == [(1,)],
        60,
    )


def test_a_write_to_a_warehouse_that_hangs_is_given_up_in_bounded_time_and_retried(stack):
    identity, _ = new_user_device(stack.settings)
    value = encode_stamped_batch(
        {
            "user_id": identity.user_id,
            "device_id": identity.device_id,
            "received_at": now_ms(),
            "intervals": [interval(0, now_ms() - 120_000)],
        }
    )
    value = sealed(stack.settings, identity.user_id, identity.device_id, value)
    before = scrape(stack.settings.worker_metrics_port)[("productimon_worker_retries_total", ())]
    worker = stack.workers[0]
    seen = len(worker.output())
    stack.warehouse.send_signal(signal.SIGSTOP)  # up, but answering nothing
    try:

        async def produce() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap)
            await producer.start()
            try:
                await producer.send_and_wait(stack.settings.intervals_topic, value, key=identity.device_id.encode())
            finally:
                await producer.stop()

        asyncio.run(produce())
        # The attempt hangs until the write timeout (8 s here), fails, and is retried.
        began = time.monotonic()
        assert eventually(lambda: "warehouse write failed" in worker.output()[seen:], 40)
        assert time.monotonic() - began < 30
        assert scrape(stack.settings.worker_metrics_port)[("productimon_worker_retries_total", ())] > before
    finally:
        stack.warehouse.send_signal(signal.SIGCONT)
    c = connect(stack.settings)
    assert eventually(
        lambda: rows(c, "SELECT count() FROM intervals FINAL WHERE user_id = {u:String}", identity.user_id) == [(1,)],
        60,
    )
