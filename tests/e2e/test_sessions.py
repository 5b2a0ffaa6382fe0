"""Sessions through the real pipeline: the worker's output equals the pure reference, whatever happens
to the workers in between (SIGKILL at random moments, two workers sharing the partitions)."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

import pytest

from collector.transport import IngestClient
from infra.devices import enroll_device, new_account, new_user_device
from infra.stack import Stack
from infra.streams import realistic_stream, reference, stored
from schemas.codec import encode_interval
from stream_jobs.forget import rules_of
from tests.conftest import eventually, private_stack_running
from warehouse.client import connect

pytestmark = pytest.mark.e2e


@pytest.fixture
def private_stack(tmp_path):
    # Acknowledged once the broker holds a batch, so intervals wait in the topic while the worker is away.
    with private_stack_running(
        tmp_path, topic_partitions=4, worker_batch_records=3, gateway_ack_after="broker"
    ) as stack:
        yield stack


def send_streams(stack: Stack, devices: int, per_device: int, during=None) -> list[tuple]:
    until = datetime.now(UTC)
    sent = []
    for d in range(devices):
        identity, creds = new_user_device(stack.settings, f"device-{d}")
        stream = realistic_stream(d, per_device, until)
        sent.append((identity, stream))
        with IngestClient(stack.settings.gateway_address, creds) as client:
            for b in range(0, per_device, 100):
                assert client.send_batch([encode_interval(i) for i in stream[b : b + 100]]).accepted == len(
                    stream[b : b + 100]
                )
                if during:
                    during(d, b)
    return sent


def assert_matches_reference(stack: Stack, sent: list[tuple]) -> None:
    client = connect(stack.settings)
    rules = rules_of(stack.settings)
    for identity, stream in sent:
        expected = reference(stream, identity.user_id, identity.device_id, rules)
        assert eventually(
            lambda identity=identity, expected=expected: stored(client, identity.user_id) == expected, 120
        )


def test_sessions_survive_sigkill_of_the_worker_at_random_moments(private_stack):
    rng = random.Random(42)
    kill_points = set(rng.sample(range(3 * 12), 3))

    def maybe_kill(device: int, batch_start: int) -> None:
        if device * 12 + batch_start // 100 in kill_points:
            time.sleep(rng.uniform(0, 0.6))  # land anywhere: mid-batch, mid-insert, mid-commit
            private_stack.workers.pop().kill()
            private_stack.start_worker(f"worker-{len(kill_points)}-{device}-{batch_start}")

    sent = send_streams(private_stack, devices=3, per_device=1200, during=maybe_kill)
    assert_matches_reference(private_stack, sent)


def test_two_workers_in_one_group_give_the_same_sessions_as_one(private_stack):
    private_stack.start_worker("second-worker")
    sent = send_streams(private_stack, devices=4, per_device=500)
    assert_matches_reference(private_stack, sent)


def test_intervals_of_revoked_devices_and_deleted_accounts_in_flight_are_dropped(private_stack):
    import grpc

    from schemas.api_client import log_in
    from schemas.wire import accounts_pb2 as pb
    from schemas.wire import accounts_pb2_grpc

    s = private_stack.settings
    ca = (s.pki_dir / "ca.crt").read_bytes()
    private_stack.workers.pop().stop()  # everything below waits in the topic, "in flight"
    user_id, email, password = new_account(s)
    kept_device, kept_creds = enroll_device(s, email, password, "kept")
    revoked_device, revoked_creds = enroll_device(s, email, password, "revoked")
    leaving_user, leaving_email, leaving_password = new_account(s)
    _, leaving_creds = enroll_device(s, leaving_email, leaving_password, "leaving")
    until = datetime.now(UTC)
    for creds, seed in ((kept_creds, 1), (revoked_creds, 2), (leaving_creds, 3)):
        with IngestClient(s.gateway_address, creds) as client:
            assert client.send_batch([encode_interval(i) for i in realistic_stream(seed, 50, until)]).accepted == 50
    with grpc.secure_channel(s.gateway_public_address, grpc.ssl_channel_credentials(ca)) as channel:
        devices, accounts = accounts_pb2_grpc.DevicesStub(channel), accounts_pb2_grpc.AccountsStub(channel)
        token = log_in(s.gateway_public_address, ca, email, password).token
        devices.Revoke(
            pb.DeviceRef(device_id=revoked_device.device_id), metadata=(("authorization", f"Bearer {token}"),)
        )
        leaving_token = log_in(s.gateway_public_address, ca, leaving_email, leaving_password).token
        accounts.DeleteAccount(
            pb.DeleteAccountRequest(password=leaving_password), metadata=(("authorization", f"Bearer {leaving_token}"),)
        )
    private_stack.start_worker("worker-after")
    client = connect(s)
    count = "SELECT device_id, count() FROM intervals FINAL WHERE user_id = {u:String} GROUP BY device_id"
    assert eventually(
        lambda: client.query(count, parameters={"u": user_id}).result_rows == [(kept_device.device_id, 50)]
    )
    for table in ("intervals", "app_sessions", "focus_sessions"):
        for user in (leaving_user,):
            n = client.query(f"SELECT count() FROM {table} WHERE user_id = {{u:String}}", parameters={"u": user})
            assert n.result_rows[0][0] == 0
        revoked_rows = client.query(
            f"SELECT count() FROM {table} WHERE device_id = {{d:String}}", parameters={"d": revoked_device.device_id}
        )
        assert revoked_rows.result_rows[0][0] == 0
