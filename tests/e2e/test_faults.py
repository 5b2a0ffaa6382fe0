"""Exactly-once in effect under faults, with batches acknowledged only once stored (the default).

Each test streams several devices through the real gateway like collectors do (a batch is sent again until
it is acknowledged), injects one kind of fault at a random moment while they stream, and then checks every
table against a reference computed from what was acknowledged: raw intervals once each, app and focus
sessions equal to the pure sessionizer's uninterrupted run, rollups equal to raw per hour and day
(`rollup_drift` finds nothing) and active time equal to the sum over the intervals.
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
import sys
import threading
import time
from datetime import UTC, datetime

import grpc
import pytest

from collector.transport import IngestClient
from infra.devices import new_user_device
from infra.processes import ManagedProcess
from infra.stack import Stack
from infra.streams import Exactness, StreamingDevice, exactness, realistic_stream
from infra.topics import committed_offsets
from schemas.codec import encode_interval
from stream_jobs.batch import STEPS
from stream_jobs.forget import rules_of
from tests.conftest import eventually, private_stack_running
from tests.crashing_worker import CRASH_EXIT
from warehouse.client import connect

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(tmp_path):
    # A short store timeout: a batch caught by a fault is sent again soon, as a collector would.
    with private_stack_running(
        tmp_path, topic_partitions=4, worker_batch_records=3, gateway_store_timeout_seconds=8.0
    ) as running:
        yield running


def stream_with_fault(
    stack: Stack, fault, devices: int = 3, per_device: int = 1500, batch: int = 100, after_share: float = 0.0
) -> list[StreamingDevice]:
    """Stream, and inject `fault` once `after_share` of all intervals are acknowledged (at once for 0), so a
    fault meant to catch batches in flight lands while the streams run, however fast they go."""
    senders = [StreamingDevice(stack.settings, seed, per_device, batch=batch) for seed in range(devices)]
    for sender in senders:
        sender.start()
    deadline = time.monotonic() + 120
    while sum(s.acked for s in senders) < after_share * devices * per_device and time.monotonic() < deadline:
        time.sleep(0.05)
    for sender in senders:
        sender.acked_before_fault = sender.acked
    fault()
    for sender in senders:
        sender.acked_after_fault = sender.acked
    for sender in senders:
        sender.join(300)
    for sender in senders:
        assert sender.problem is None, sender.problem
        assert sender.acked == per_device
    return senders


def assert_exact(stack: Stack, senders: list[StreamingDevice]) -> None:
    """Every table equals the reference for every device once the last batch is acknowledged (sessions and
    rollups are written moments after the intervals the acknowledgement waits for)."""
    client = connect(stack.settings)
    rules = rules_of(stack.settings)
    for sender in senders:

        def exact(sender=sender) -> bool:
            found = exactness(client, sender, rules)
            assert found == Exactness(0, 0, 0, 0, 0), found
            return True

        assert eventually(exact, 30)
        daily = client.query(
            "SELECT sum(active_ms) FROM usage_by_title_day FINAL WHERE user_id = {u:String}",
            parameters={"u": sender.identity.user_id},
        ).result_rows[0][0]
        assert daily == sum(i["end"] - i["start"] for i in sender.stream if not i["idle"])


def soon(low: float, high: float, seed: int) -> None:
    time.sleep(random.Random(seed).uniform(low, high))


def test_worker_killed_after_saving_state_loses_and_doubles_nothing(stack):
    def fault() -> None:
        for n in range(2):
            soon(2, 5, n)  # after the first batches are stored (state saved), at a random moment
            stack.workers.pop().kill()
            began = time.monotonic()
            stack.start_worker(f"worker-after-kill-{n}")
            # Ready in seconds: nothing to recover, the state is in the warehouse.
            assert time.monotonic() - began < 30

    assert_exact(stack, stream_with_fault(stack, fault))


def test_a_worker_dying_after_each_step_of_a_batch_loses_and_doubles_nothing(stack):
    """One worker after another dies as a step of a batch ends (stream_jobs/batch.py STEPS; tests/crashing_worker.py),
    each a batch further on, while the devices stream; the next reads what was not committed again."""
    crashed: list[str] = []

    def fault() -> None:
        for worker in stack.workers:
            worker.kill()
        stack.workers.clear()
        for step in STEPS:
            env = {**stack.env_for("worker"), "PRODUCTIMON_TEST_CRASH_AFTER": step, "PRODUCTIMON_TEST_CRASH_ON": "2"}
            worker = ManagedProcess(
                f"worker-dies-after-{step}", [sys.executable, "-m", "tests.crashing_worker"], stack.logs, env
            ).start()
            deadline = time.monotonic() + 120
            while worker.running and time.monotonic() < deadline:
                time.sleep(0.1)
            code = worker.stop(5, signal.SIGKILL)
            assert code == CRASH_EXIT, f"{worker.name} ended with {code}, not by the crash: see {worker.log_path}"
            crashed.append(re.search(r"crashing after (\w+)", worker.output()).group(1))
        stack.start_worker("worker-after-the-crashes")

    senders = stream_with_fault(stack, fault, per_device=2500, after_share=0.1)
    assert crashed == list(STEPS)
    # The crashes came while the devices streamed, not after they were done: the streams were not through when
    # the last crashed worker was replaced. (They need not advance meanwhile: a crashed worker's first batch may
    # be the one its predecessor left uncommitted.)
    assert sum(s.acked_after_fault for s in senders) < 3 * 2500
    assert_exact(stack, senders)


def test_a_second_worker_joining_and_leaving_changes_nothing(stack):
    def fault() -> None:
        soon(1, 3, 1)
        second = stack.start_worker("second-worker")
        soon(3, 6, 2)
        second.kill()  # leaves without a word, mid-rebalance or mid-batch
        stack.workers.remove(second)

    assert_exact(stack, stream_with_fault(stack, fault))


def test_warehouse_killed_during_large_inserts_loses_no_rollup(stack):
    def fault() -> None:
        for n in range(2):
            soon(1, 4, 10 + n)
            stack.warehouse.kill()
            time.sleep(1)
            stack.start_warehouse()

    # Batches of 1,000 from each device: a worker batch (3 records) inserts up to 3,000 intervals at once.
    assert_exact(stack, stream_with_fault(stack, fault, per_device=4000, batch=1000))


def test_broker_killed_and_restarted_empty_loses_nothing_acknowledged(stack):
    def fault() -> None:
        stack.recover_broker()  # kill -9, start empty, topics again, workers again

    # A third of the way: the streams ran faster than a fixed delay, which then landed after the last batch.
    senders = stream_with_fault(stack, fault, after_share=1 / 3)
    # The fault landed mid-stream: acknowledged batches were behind it (in the broker it emptied) and others still
    # to come when it was back. (Whether a batch in flight saw an error or the gateway rode the restart out within
    # its store timeout depends on timing; both must lose nothing.)
    total = sum(len(s.stream) for s in senders)
    assert 0 < sum(s.acked_before_fault for s in senders) and sum(s.acked_after_fault for s in senders) < total
    assert_exact(stack, senders)


def test_a_worker_left_running_across_a_broker_restart_carries_on(stack):
    def fault() -> None:
        soon(2, 4, 21)
        stack.broker.kill()  # only the broker: the worker stays up, its positions past the new ends
        stack.start_broker()
        # The stack's supervision goes on meanwhile (it starts again a worker that exits on finding the loss).
        for _ in range(20):
            stack.supervise()
            time.sleep(0.5)

    assert_exact(stack, stream_with_fault(stack, fault))


def test_gateway_killed_mid_upload_loses_and_doubles_nothing(stack):
    def fault() -> None:
        soon(1, 4, 30)
        stack.gateway.kill()
        stack.gateway = None
        stack.start_gateway()

    assert_exact(stack, stream_with_fault(stack, fault))


def test_a_new_consumer_group_replaying_the_topic_changes_nothing(stack):
    senders = stream_with_fault(stack, lambda: None, devices=2, per_device=800)
    assert_exact(stack, senders)
    # A worker of another group reads every record again from offset 0 and writes what it computes.
    replay_settings = stack.settings.model_copy(update={"worker_id": stack.settings.worker_id + "-replay"})
    replay = Stack(replay_settings, lambda *a, **k: None)
    worker = replay.start_worker("replay-worker")
    try:
        partitions = list(range(stack.settings.topic_partitions))
        target = asyncio.run(committed_offsets(stack.settings, stack.settings.worker_id, partitions))
        assert sum(target.values()) > 0

        def replayed() -> bool:
            done = asyncio.run(committed_offsets(replay_settings, replay_settings.worker_id, partitions))
            return all(done.get(p, 0) >= target.get(p, 0) for p in partitions)

        assert eventually(replayed, 90)
        time.sleep(2)
        assert_exact(stack, senders)
    finally:
        worker.stop(30)


def test_out_of_order_and_reused_device_seq_are_refused_never_dropped(stack):
    identity, creds = new_user_device(stack.settings)
    ivs = realistic_stream(7, 10, datetime.now(UTC))
    with IngestClient(stack.settings.gateway_address, creds) as client:
        first = client.send_batch([encode_interval(ivs[1]), encode_interval(ivs[0])])
        assert (first.accepted, list(first.errors)) == (2, [])  # reordered within a batch
        assert client.send_batch([encode_interval(i) for i in ivs[5:10]]).accepted == 5
        late = client.send_batch([encode_interval(i) for i in ivs[2:5]])
        assert late.accepted == 0
        assert [e.index for e in late.errors] == [0, 1, 2]
        assert all(e.reason.startswith("out of order: ") for e in late.errors)
        # A resend of what is stored (an acknowledgement lost on the way) is acknowledged again ...
        again = client.send_batch([encode_interval(i) for i in ivs[5:10]])
        assert (again.accepted, list(again.errors)) == (5, [])
        # ... but another interval under a stored device_seq is refused, with the reason.
        reused = client.send_batch([encode_interval({**ivs[6], "event_id": ivs[2]["event_id"]})])
        assert reused.accepted == 0 and reused.errors[0].reason.startswith("reused device_seq: ")
    c = connect(stack.settings)
    seqs = c.query(
        "SELECT device_seq FROM intervals FINAL WHERE user_id = {u:String} ORDER BY device_seq",
        parameters={"u": identity.user_id},
    ).result_rows
    # Everything acknowledged is stored, everything refused is not: no acknowledged interval was dropped.
    assert [s for (s,) in seqs] == [0, 1, 5, 6, 7, 8, 9]


def test_overload_is_pushed_back_with_a_delay_that_the_collector_waits(stack, tmp_path):
    from collector.spool import Spool
    from collector.transport import DeviceIngest, retry_after_s
    from collector.uploader import Backoff, run_uploader

    (_, first), (second_identity, second) = new_user_device(stack.settings), new_user_device(stack.settings)
    stack.workers.pop().stop()  # nothing is stored meanwhile: batches wait
    ivs = realistic_stream(9, 20, datetime.now(UTC))

    def wait_to_be_stored() -> None:  # its outcome is not what this test is about: it only has to wait
        try:
            with IngestClient(stack.settings.gateway_address, first) as client:
                client.send_batch([encode_interval(i) for i in ivs])
        except grpc.RpcError:
            pass

    waiting = threading.Thread(target=wait_to_be_stored, daemon=True)
    waiting.start()
    time.sleep(4.5)  # the first batch has waited more than half the store timeout (8 s)
    with IngestClient(stack.settings.gateway_address, second) as client:
        with pytest.raises(grpc.RpcError) as busy:
            client.send_batch([encode_interval(ivs[0])])
    assert busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    hint = retry_after_s(busy.value)
    assert hint is not None and 4.0 <= hint <= 4.0 + 2

    attempts = []

    class Counting(DeviceIngest):  # the running collector's own client (collector/wire.py)
        def send_batch(self, *args, **kwargs):
            attempts.append(time.monotonic())
            return super().send_batch(*args, **kwargs)

    spool = Spool(tmp_path / "spool.sqlite3")
    for i in ivs:
        spool.append(i["device_seq"], encode_interval(i))
    stop = threading.Event()
    uploader = threading.Thread(
        target=run_uploader,
        args=(spool, lambda: Counting(stack.settings.gateway_address, second), stop),
        kwargs={"backoff": Backoff(first_s=0.01, max_s=0.01), "idle_wait_s": 0.2},
        daemon=True,
    )
    uploader.start()
    time.sleep(2.0)
    # Pushed back at once and told to wait ~4 s: one attempt, where a backoff of 10 ms would have made hundreds.
    assert len(attempts) == 1
    stack.start_worker("worker-again")
    waiting.join(30)
    assert eventually(lambda: spool.depth == 0, 60)
    stop.set()
    uploader.join(30)
    spool.close()
    stored_seqs = (
        connect(stack.settings)
        .query(
            "SELECT count() FROM intervals FINAL WHERE user_id = {u:String}", parameters={"u": second_identity.user_id}
        )
        .result_rows[0][0]
    )
    assert stored_seqs == len(ivs)
