"""Fuzzing the front door: an adversarial device sends schema-valid batches of hostile values through the real
gateway (real certificate, real broker, worker and warehouse) for a bounded time, while a well-behaved device
streams beside it. The well-behaved device's data must be exact in every table and fresh (stored within 2 s at
p95); everything the gateway accepted from the fuzzer must be stored, nothing else, and every refusal must
carry a reason. `PRODUCTIMON_FUZZ_SECONDS` sets the time (60 in CI); `./dev bench fuzz_soak` runs it longer.
"""

from __future__ import annotations

import os
import statistics

import pytest

from infra.devices import new_user_device
from infra.fuzzing import FuzzDevice
from infra.streams import Exactness, StreamingDevice, exactness
from plumbing import metrics
from stream_jobs.forget import rules_of
from tests.conftest import eventually, private_stack_running
from warehouse.client import connect
from warehouse.rollups import rollup_drift

pytestmark = pytest.mark.e2e

FUZZ_SECONDS = float(os.environ.get("PRODUCTIMON_FUZZ_SECONDS", "60"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with private_stack_running(tmp_path_factory.mktemp("fuzz"), topic_partitions=2) as running:
        yield running


def stored_pairs(client, user: str) -> set[tuple[int, str]]:
    rows = client.query(
        "SELECT device_seq, toString(event_id) FROM intervals FINAL WHERE user_id = {u:String}", parameters={"u": user}
    ).result_rows
    return set(rows)


def test_hostile_batches_stall_no_one_and_whatever_is_accepted_is_stored(stack):
    fuzz_identity, fuzz_creds = new_user_device(stack.settings)
    fuzzer = FuzzDevice(stack.settings.gateway_address, fuzz_creds)
    # Paced so that it streams for as long as the fuzzer runs.
    steady = StreamingDevice(
        stack.settings, 11, int(FUZZ_SECONDS * 12), deadline_s=FUZZ_SECONDS * 4, batch=10, pace_s=0.5
    )
    steady.start()
    fuzzer.run_for(FUZZ_SECONDS)
    steady.join(FUZZ_SECONDS * 4)
    assert steady.problem is None and steady.acked == len(steady.stream), steady.problem
    client = connect(stack.settings)
    rules = rules_of(stack.settings)

    def exact() -> bool:
        found = exactness(client, steady, rules)
        assert found == Exactness(0, 0, 0, 0, 0), found
        return True

    assert eventually(exact, 30)
    p95 = statistics.quantiles(steady.latencies, n=20)[-1]
    assert p95 < 2.0, f"the well-behaved device's batches took {p95:.2f}s to be stored at p95"

    # The fuzzer was exercised, and its outcome is exactly what the gateway said.
    kinds = sorted({metrics.refusal_label(reason) for reason in fuzzer.refusals})
    print(
        f"fuzzer: {fuzzer.batches} batches, {fuzzer.sent} records, {len(fuzzer.accepted)} accepted; refusals: {kinds}"
    )
    assert fuzzer.batches > 20 and fuzzer.accepted and fuzzer.refusals, (fuzzer.batches, len(fuzzer.accepted))
    assert all(reason.strip() for reason in fuzzer.refusals)
    assert stored_pairs(client, fuzz_identity.user_id) == fuzzer.accepted
    assert rollup_drift(client, fuzz_identity.user_id) == []
