"""The worker's batch step (stream_jobs/batch.py) against the real warehouse, without faust: its steps run in
their order, and a process that dies as any step ends, then reads its uncommitted records again as a new
process, ends with every table exactly as one uninterrupted run leaves it.

A death is an exception no code catches (a BaseException raised by the step observer, in the worker thread or
the event loop, wherever the step runs); the new process is a new BatchStep (empty key ring, privacy cache and
connections) that starts at the last committed batch, as a worker restarted by faust would. The same crashes
with real processes, a real broker and SIGKILL-like exits are in tests/e2e/test_faults.py.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from infra.streams import Exactness, exactness, realistic_stream
from schemas.codec import encode_stamped_batch
from stream_jobs.batch import STEPS, BatchStep, Steps
from stream_jobs.forget import rules_of
from stream_jobs.revocations import Revocations
from tests.conftest import lone_warehouse_settings
from tests.sealed import sealed
from warehouse.client import connect

RECORD = 15  # intervals per topic record (one gateway batch)
BATCH = 3  # records per worker batch
PER_DEVICE = 150


class Died(BaseException):
    """The process ends here: nothing after this point runs."""


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    with lone_warehouse_settings(tmp_path_factory.mktemp("batch-step")) as s:
        yield s


def devices_and_batches(settings, devices: int = 2) -> tuple[list[SimpleNamespace], list[list[bytes]]]:
    """Devices of new users, each with a stream, and the worker batches their records arrive in: each device's
    records in order, devices interleaved, BATCH records per batch."""
    now = datetime.now(UTC)
    made, records = [], []
    for n in range(devices):
        identity = SimpleNamespace(user_id=str(uuid.uuid4()), device_id=str(uuid.uuid4()))
        stream = realistic_stream(seed=n + 7, n=PER_DEVICE, until=now)
        made.append(SimpleNamespace(identity=identity, stream=stream))
        for at in range(0, PER_DEVICE, RECORD):
            value = encode_stamped_batch(
                {
                    "user_id": identity.user_id,
                    "device_id": identity.device_id,
                    "received_at": int(time.time() * 1000),
                    "intervals": stream[at : at + RECORD],
                }
            )
            records.append((at, n, sealed(settings, identity.user_id, identity.device_id, value)))
    ordered = [value for _, _, value in sorted(records, key=lambda r: (r[0], r[1]))]
    return made, [ordered[i : i + BATCH] for i in range(0, len(ordered), BATCH)]


def run_worker(settings, batches: list[list[bytes]], committed: int, steps: Steps) -> int:
    """One worker process from the committed batch on; returns how many batches are committed when it stops."""
    step = BatchStep(settings, Revocations(), steps=steps)

    async def go() -> int:
        done = committed
        letters: list[tuple[bytes, str]] = []

        async def send(value: bytes, reason: str) -> None:
            letters.append((value, reason))

        try:
            for values in batches[committed:]:
                outcome = await step.run(values)
                await step.commit(outcome, send)
                done += 1  # faust commits what the agent let go of
        except Died:
            pass
        finally:
            step.warehouse.drop()
        assert letters == [], letters  # every record here is valid
        return done

    return asyncio.run(go())


def dies_after(step: str, occurrence: int) -> Steps:
    seen = {"n": 0}

    def on_done(name: str) -> None:
        if name == step:
            seen["n"] += 1
            if seen["n"] == occurrence:
                raise Died(f"after {step} #{occurrence}")

    return Steps(on_done)


def test_the_steps_run_in_their_order(settings):
    order: list[str] = []
    _, batches = devices_and_batches(settings)
    assert run_worker(settings, batches[:2], 0, Steps(order.append)) == 2
    assert order == list(STEPS) * 2
    assert STEPS == ("decode", "filter", "dedupe", "insert", "save_state", "commit")


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("occurrence", [1, 4])
def test_a_process_that_dies_after_any_step_and_replays_loses_and_doubles_nothing(settings, step, occurrence):
    devices, batches = devices_and_batches(settings)
    committed = run_worker(settings, batches, 0, dies_after(step, occurrence))
    assert committed < len(batches), "the process was to die before the end"
    # The replay: a new process from what was committed (commit itself may have run or not: a batch whose
    # commit step ended is committed; one that died before is read again).
    assert run_worker(settings, batches, committed, Steps()) == len(batches)
    client = connect(settings)
    rules = rules_of(settings)
    for device in devices:
        assert exactness(client, device, rules) == Exactness(0, 0, 0, 0, 0), (step, occurrence)
    client.close()


def test_a_whole_topic_read_again_by_a_second_group_changes_nothing(settings):
    devices, batches = devices_and_batches(settings)
    assert run_worker(settings, batches, 0, Steps()) == len(batches)
    assert run_worker(settings, batches, 0, Steps()) == len(batches)
    client = connect(settings)
    rules = rules_of(settings)
    for device in devices:
        assert exactness(client, device, rules) == Exactness(0, 0, 0, 0, 0)
    client.close()
