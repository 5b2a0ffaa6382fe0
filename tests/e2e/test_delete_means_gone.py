"""Delete means gone, tried as an attacker and a careless client would, on a real stack (broker, warehouse,
gateway over mTLS, worker): after each kind of deletion the device's next intervals count exactly and nothing
deleted returns; deletions racing 50,000 acknowledged intervals in flight leave no row behind; a worker of a new
consumer group replaying every topic from offset 0 brings nothing back and counts nothing twice; no byte of a
deleted account can be read anywhere in the broker or the identity store; bad requests delete nothing."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from collector.transport import IngestClient
from infra.devices import enroll_device, new_account
from infra.stack import Stack
from infra.topics import committed_offsets
from schemas.api_client import delete_account, delete_data, log_in, set_title_mode
from schemas.codec import encode_interval
from schemas.deletions import ALL_DATA, DEVICE, PERIOD
from schemas.sealing import key_id_of, partition_key
from tests.conftest import eventually, private_stack_running
from warehouse.categories import DEFAULT_RULES
from warehouse.client import connect
from warehouse.deletion import USER_TABLES
from warehouse.keys import keys_by_id
from warehouse.rollups import rollup_drift

MINUTE = 60_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # Acknowledged once the broker has a batch: so acknowledged intervals can be in flight when a deletion runs.
    with private_stack_running(tmp_path_factory.mktemp("gone"), gateway_ack_after="broker") as running:
        yield running


def now_ms() -> int:
    return int(time.time() * 1000)


def interval(seq: int, start: int, length_ms: int = 50_000, app: str = "Code", title: str = "", url=None) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "device_seq": seq,
        "start": start,
        "end": start + length_ms,
        "app": app,
        "title": title,
        "url": url,
        "keystrokes": 3,
        "clicks": 1,
        "idle": False,
    }


class Person:
    """An account with devices, signed in."""

    def __init__(self, stack: Stack, devices: int = 1) -> None:
        s = stack.settings
        self.settings = s
        self.ca = (s.pki_dir / "ca.crt").read_bytes()
        self.user_id, self.email, self.password = new_account(s)
        self.devices = [enroll_device(s, self.email, self.password, f"device-{n}") for n in range(devices)]
        self.token = log_in(s.gateway_public_address, self.ca, self.email, self.password).token
        self.next_seq = [0] * devices

    def device_id(self, n: int = 0) -> str:
        return self.devices[n][0].device_id

    def send(self, n: int, starts: list[int], batch: int = 500, **fields) -> list[int]:
        """Intervals starting at `starts` from device `n`, acknowledged; returns their device_seq."""
        seqs = list(range(self.next_seq[n], self.next_seq[n] + len(starts)))
        self.next_seq[n] += len(starts)
        items = [encode_interval(interval(seq, start, **fields)) for seq, start in zip(seqs, starts, strict=True)]
        with IngestClient(self.settings.gateway_address, self.devices[n][1], timeout_s=60) as client:
            for b in range(0, len(items), batch):
                assert client.send_batch(items[b : b + batch]).accepted == len(items[b : b + batch])
        return seqs

    def delete(self, kind: str, **options):
        return delete_data(self.settings.gateway_public_address, self.ca, self.token, kind, **options)


def q(stack: Stack, sql: str, **parameters) -> list[tuple]:
    client = connect(stack.settings)
    try:
        return client.query(sql, parameters=parameters).result_rows
    finally:
        client.close()


# Tables of the account's own choices, with no device column.
ACCOUNT_TABLES = frozenset(
    {"category_rules", "goals", "privacy_rules", "privacy_settings", "notice_switches", "notice_accounts",
     "goal_notices", "notice_weekly"}
)  # fmt: skip


def rows_everywhere(stack: Stack, user_id: str, device_id: str | None = None) -> dict[str, int]:
    """Rows of the user (or one device of theirs) in every table that holds user rows."""
    found = {}
    for table in USER_TABLES:
        where = "user_id = {u:String}" + (
            "" if device_id is None or table in ACCOUNT_TABLES else " AND device_id = {d:String}"
        )
        # A device's row is replaced on each update (ReplacingMergeTree): FINAL counts the device, not its versions.
        final = " FINAL" if table == "devices" else ""
        found[table] = q(stack, f"SELECT count() FROM {table}{final} WHERE {where}", u=user_id, d=device_id or "")[0][0]
    return found


def starts(stack: Stack, user_id: str, device_id: str) -> list[int]:
    return [
        s
        for (s,) in q(
            stack,
            "SELECT toUnixTimestamp64Milli(start) FROM intervals FINAL WHERE user_id = {u:String} "
            "AND device_id = {d:String} ORDER BY 1",
            u=user_id,
            d=device_id,
        )
    ]


def drained(stack: Stack) -> None:
    """Everything the gateway wrote so far is stored (or dropped) by the worker: the gateway is stopped for the
    offsets it wrote, the worker's group waited for, and the gateway started again."""
    assert stack.drain(stack.stop_gateway(), 180)
    stack.start_gateway()


def settled(stack: Stack, user_id: str) -> None:
    """The worker saves a device's state last, after the sessions and rollups of a batch: once every device's
    state is past its newest stored interval, all of it is written."""
    sql = (
        "SELECT count() FROM (SELECT device_id, max(device_seq) AS top FROM intervals FINAL "
        "WHERE user_id = {u:String} GROUP BY device_id) AS i LEFT JOIN (SELECT device_id, max(last_seq) AS seen "
        "FROM device_state WHERE user_id = {u:String} GROUP BY device_id) AS s USING device_id WHERE seen < top"
    )
    assert eventually(lambda: q(stack, sql, u=user_id) == [(0,)], 60)


def exact(stack: Stack, user_id: str) -> None:
    """Sessions and rollups agree with the raw rows left, second for second."""
    raw = q(
        stack,
        "SELECT sum(toUnixTimestamp64Milli(`end`) - toUnixTimestamp64Milli(start)) FROM intervals FINAL "
        "WHERE user_id = {u:String} AND NOT idle",
        u=user_id,
    )[0][0]
    for table in ("app_sessions", "focus_sessions"):
        assert (
            q(stack, f"SELECT sum(active_ms) FROM {table} FINAL WHERE user_id = {{u:String}}", u=user_id)[0][0] == raw
        )
    client = connect(stack.settings)
    try:
        assert rollup_drift(client, user_id) == []
    finally:
        client.close()


# --- each kind, then the device goes on ------------------------------------------------------------------------


def test_after_each_kind_of_deletion_the_devices_next_intervals_count_and_nothing_deleted_returns(stack):
    person = Person(stack, devices=2)
    t0 = now_ms() - 6 * 3600_000
    person.send(0, [t0 + n * MINUTE for n in range(240)])  # one long session, open at its end
    person.send(1, [t0 + n * MINUTE for n in range(60)])
    assert eventually(lambda: len(starts(stack, person.user_id, person.device_id(0))) == 240, 60)

    # A period in the middle of the open session: the session is cut at its edges.
    lo, hi = t0 + 60 * MINUTE, t0 + 120 * MINUTE
    report = person.delete(
        PERIOD, period=(datetime.fromtimestamp(lo / 1000, UTC), datetime.fromtimestamp(hi / 1000, UTC))
    )
    assert report.removed["intervals"] == 60 and report.seconds < 60 and "60 intervals" in report.summary
    person.send(0, [t0 + 240 * MINUTE])  # the device's next interval continues what is left of its session
    # Nothing was in flight when it ran (all 300 were stored): what arrives now is the next interval alone.
    assert eventually(lambda: len(starts(stack, person.user_id, person.device_id(0))) == 181, 60)
    settled(stack, person.user_id)
    left = starts(stack, person.user_id, person.device_id(0))
    assert not [s for s in left if lo <= s < hi]
    overlapping = q(
        stack,
        "SELECT count() FROM focus_sessions FINAL WHERE user_id = {u:String} "
        "AND start < fromUnixTimestamp64Milli({hi:Int64}) AND `end` > fromUnixTimestamp64Milli({lo:Int64})",
        u=person.user_id,
        lo=lo,
        hi=hi,
    )
    assert overlapping == [(0,)]
    exact(stack, person.user_id)

    # One device's data: the device's own next intervals count, the other device keeps everything.
    person.delete(DEVICE, device_id=person.device_id(0))
    after = now_ms() + 1000
    person.send(0, [after + n * 1000 for n in range(3)], length_ms=900)
    assert eventually(
        lambda: starts(stack, person.user_id, person.device_id(0)) == [after + n * 1000 for n in range(3)], 60
    )
    settled(stack, person.user_id)
    assert len(starts(stack, person.user_id, person.device_id(1))) == 60
    exact(stack, person.user_id)

    # All data: both devices go on from nothing.
    while now_ms() < after + 3000:  # everything sent so far has begun
        time.sleep(0.1)
    person.delete(ALL_DATA)
    later = now_ms() + 1000
    person.send(1, [later])
    assert eventually(lambda: starts(stack, person.user_id, person.device_id(1)) == [later], 60)
    settled(stack, person.user_id)
    assert starts(stack, person.user_id, person.device_id(0)) == []
    exact(stack, person.user_id)


# --- the race --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("trial", range(3))
def test_a_deletion_at_a_random_moment_of_50000_acknowledged_intervals_in_flight_leaves_no_row(stack, trial):
    rng = random.Random(trial)
    kind = "account" if trial != 1 else DEVICE
    person = Person(stack, devices=2)
    t0 = now_ms() - 40 * 3600_000
    stack.workers.pop().kill()  # idle: everything sent now waits in the topic, acknowledged, in flight
    person.send(0, [t0 + n * 2000 for n in range(50_000)])
    person.send(1, [t0 + n * 2000 for n in range(100)])
    stack.start_worker(f"worker-race-{trial}")
    time.sleep(rng.uniform(0.5, 4.0))  # the worker is storing what was in flight
    if kind == "account":
        report = delete_account(stack.settings.gateway_public_address, person.ca, person.token, person.password)
    else:
        report = person.delete(DEVICE, device_id=person.device_id(0))
    assert report.deletion_id
    drained(stack)
    if kind == "account":
        assert rows_everywhere(stack, person.user_id) == dict.fromkeys(USER_TABLES, 0)
    else:
        gone = rows_everywhere(stack, person.user_id, person.device_id(0))
        assert gone.pop("devices") == 1  # the device keeps its name
        assert gone.pop("category_rules") == len(DEFAULT_RULES)  # the account's rules are not the device's
        assert gone == dict.fromkeys(gone, 0)
        assert len(starts(stack, person.user_id, person.device_id(1))) == 100
        exact(stack, person.user_id)


# --- replay ----------------------------------------------------------------------------------------------------


def test_a_worker_of_a_new_group_replaying_every_topic_brings_nothing_deleted_back_and_counts_nothing_twice(stack):
    keeps, leaves = Person(stack, devices=2), Person(stack)
    t0 = now_ms() - 8 * 3600_000
    keeps.send(0, [t0 + n * MINUTE for n in range(120)])
    keeps.send(1, [t0 + n * MINUTE for n in range(30)])
    leaves.send(0, [t0 + n * MINUTE for n in range(30)])
    for person, device, n in ((keeps, 0, 120), (keeps, 1, 30), (leaves, 0, 30)):
        assert eventually(lambda p=person, d=device, n=n: len(starts(stack, p.user_id, p.device_id(d))) == n, 60)
        settled(stack, person.user_id)
    keeps.delete(PERIOD, period=(datetime.fromtimestamp((t0 + 30 * MINUTE) / 1000, UTC),
                                 datetime.fromtimestamp((t0 + 60 * MINUTE) / 1000, UTC)))  # fmt: skip
    keeps.delete(DEVICE, device_id=keeps.device_id(1))
    delete_account(stack.settings.gateway_public_address, leaves.ca, leaves.token, leaves.password)

    def snapshot() -> dict:
        return {
            table: q(
                stack,
                f"SELECT * EXCEPT (version) FROM {table} FINAL WHERE user_id = {{u:String}} ORDER BY ALL",
                u=keeps.user_id,
            )  # fmt: skip
            for table in ("intervals", "app_sessions", "focus_sessions", "usage_by_hour", "usage_by_title_day")
        }

    before = snapshot()
    assert len(before["intervals"]) == 90
    replay_settings = stack.settings.model_copy(update={"worker_id": stack.settings.worker_id + "-replay"})
    replay = Stack(replay_settings, lambda *a, **k: None)
    worker = replay.start_worker("replay-worker")
    try:
        partitions = list(range(stack.settings.topic_partitions))
        target = asyncio.run(committed_offsets(stack.settings, stack.settings.worker_id, partitions))

        def replayed() -> bool:
            done = asyncio.run(committed_offsets(replay_settings, replay_settings.worker_id, partitions))
            return all(done.get(p, 0) >= target.get(p, 0) for p in partitions)

        assert eventually(replayed, 120)
    finally:
        worker.stop(30)
    assert snapshot() == before
    assert rows_everywhere(stack, leaves.user_id) == dict.fromkeys(USER_TABLES, 0)
    assert starts(stack, keeps.user_id, keeps.device_id(1)) == []
    exact(stack, keeps.user_id)


# --- no copy anywhere ------------------------------------------------------------------------------------------


async def every_record(settings) -> list[tuple[str, bytes, bytes]]:
    """(topic, key, every byte of the record: key, value and headers) of every record of every topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if not t.startswith("__")]
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found = []
    try:
        while batches := await consumer.getmany(timeout_ms=3000, max_records=20_000):
            for tp, records in batches.items():
                for r in records:
                    headers = b"".join(k.encode() + v for k, v in r.headers)
                    found.append((tp.topic, r.key or b"", (r.key or b"") + (r.value or b"") + headers))
    finally:
        await consumer.stop()
    return found


def test_after_an_account_is_deleted_no_byte_of_it_can_be_read_in_any_topic_or_the_identity_store(stack):
    person = Person(stack)
    # Whole titles, so the marker is stored in the clear (scrubbed, a 32-digit hex run would be cut as a secret).
    set_title_mode(stack.settings.gateway_public_address, person.ca, person.token, "full")
    marker = uuid.uuid4().hex
    t0 = now_ms() - 3600_000
    person.send(
        0,
        [t0 + n * MINUTE for n in range(20)],
        app=f"MarkerApp{marker}",
        title=f"Secret title {marker}",
        url=f"https://site{marker}.example.com/path/{marker}",
    )
    assert eventually(lambda: len(starts(stack, person.user_id, person.device_id())) == 20, 60)
    stored = q(
        stack, "SELECT app, title, site FROM intervals FINAL WHERE user_id = {u:String} LIMIT 1", u=person.user_id
    )
    assert all(marker in field for field in stored[0])  # it was there, in the clear, where it belongs

    device_id = person.device_id()
    records = asyncio.run(every_record(stack.settings))
    sealed_before = [raw[len(key) :] for _, key, raw in records if key == partition_key(device_id)]
    assert sealed_before and all(v.startswith(b"PSEAL1") and marker.encode() not in v for v in sealed_before)

    delete_account(stack.settings.gateway_public_address, person.ca, person.token, person.password)
    markers = [marker, person.user_id, device_id, person.email]
    for topic, _, raw in asyncio.run(every_record(stack.settings)):
        for m in markers:
            assert m.encode() not in raw, f"{m} readable in topic {topic}"
    # The records are still in the topic until retention, but their key is gone: no one can open them.
    client = connect(stack.settings)
    try:
        ids = {key_id_of(v) for v in sealed_before}
        assert ids and keys_by_id(client, sorted(ids)) == {}
    finally:
        client.close()
    store = stack.settings.identity_store_path
    identity_files = sorted(store.parent.glob(store.name + "*"))  # the database, its write-ahead log, its index
    assert store in identity_files
    for path in identity_files:
        data = path.read_bytes()
        for m in (person.user_id, person.email, device_id):
            assert m.encode() not in data, f"{m} in {path.name}"


# --- bad requests ----------------------------------------------------------------------------------------------


def test_a_bad_deletion_request_gets_one_clear_error_and_deletes_nothing(stack):
    person = Person(stack)
    t0 = now_ms() - 3600_000
    person.send(0, [t0 + n * MINUTE for n in range(10)])
    assert eventually(lambda: len(starts(stack, person.user_id, person.device_id())) == 10, 60)
    # The sessions are written after the intervals: everything stored first, then the snapshot to compare with.
    before = eventually(lambda: (rows := rows_everywhere(stack, person.user_id))["app_sessions"] == 1
                        and rows["focus_sessions"] == 1 and rows, 60)  # fmt: skip
    now = datetime.now(UTC)
    cases = [
        ({"kind": DEVICE, "device_id": str(uuid.uuid4())}, grpc.StatusCode.NOT_FOUND, "there is no device"),
        (
            {"kind": PERIOD, "period": (now, now - timedelta(hours=1))},
            grpc.StatusCode.INVALID_ARGUMENT,
            "before it starts",
        ),
        (
            {"kind": PERIOD, "period": (now + timedelta(days=1), now + timedelta(days=2))},
            grpc.StatusCode.INVALID_ARGUMENT,
            "starts in the future",
        ),  # fmt: skip
        ({"kind": "everything"}, grpc.StatusCode.INVALID_ARGUMENT, "unknown deletion kind"),
    ]
    for options, code, says in cases:
        kind = options.pop("kind")
        with pytest.raises(grpc.RpcError) as refused:
            person.delete(kind, **options)
        assert refused.value.code() == code and says in refused.value.details(), refused.value.details()
        assert "\n" not in refused.value.details()
    assert rows_everywhere(stack, person.user_id) == before
    assert q(stack, "SELECT count() FROM deletions WHERE user_id = {u:String}", u=person.user_id) == [(0,)]
