"""The running collector's own gRPC client (collector/wire.py) against the real gateway over real mTLS: what it
sends is accepted as grpcio's would be, large batches cross HTTP/2 flow control, and every way a call can fail
comes back as the status grpc would give, in words."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from collector.enrollment import DeviceInfo, revoke_self
from collector.transport import DeviceCredentials, DeviceIngest
from collector.wire import RpcError, StatusCode, frame, unframe
from infra.processes import free_port
from schemas.codec import encode_interval
from tests.certificates import self_signed_ca
from tests.e2e.test_pipeline import interval


def _records(n: int, app: str = "Code", first: int = 0) -> list[bytes]:
    """`n` intervals of one device in order, from sequence number `first`."""
    return [encode_interval(interval(i, i, 1, app)) for i in range(first, first + n)]


def test_a_batch_is_acknowledged_and_one_connection_serves_many(stack, enroll):
    _, creds = enroll()
    with DeviceIngest(stack.settings.gateway_address, creds, 30) as client:
        for round_ in range(3):
            ack = client.send_batch(_records(5, f"App{round_}", 5 * round_), batch_id=round_, spool_depth=7)
            assert (ack.accepted, list(ack.errors)) == (5, [])


def test_a_batch_larger_than_the_flow_control_window_goes_through(stack, enroll):
    _, creds = enroll()
    records = _records(3000)
    assert len(frame(b"".join(records))) > 3 * 65_535  # several flow-control windows (65,535 bytes each) of it
    with DeviceIngest(stack.settings.gateway_address, creds, 60) as client:
        assert client.send_batch(records).accepted == 3000


def test_the_credentials_need_not_be_files(stack, enroll):
    _, creds = enroll()
    in_memory = DeviceCredentials(creds.ca_pem, creds.cert_pem, creds.key_pem)
    assert in_memory.directory is None
    with DeviceIngest(stack.settings.gateway_address, in_memory, 30) as client:
        assert client.send_batch(_records(1)).accepted == 1


def test_a_revoked_device_is_refused_with_permission_denied(stack, enroll):
    _, creds = enroll()
    revoke_self(stack.settings.gateway_address, creds)
    with DeviceIngest(stack.settings.gateway_address, creds, 30) as client, pytest.raises(RpcError) as refused:
        client.send_batch(_records(1))
    assert refused.value.code() is StatusCode.PERMISSION_DENIED
    assert "revoked" in refused.value.details()


def test_a_gateway_that_is_not_the_instances_is_refused_before_anything_is_sent(stack, enroll):
    _, creds = enroll()
    stranger = DeviceCredentials(self_signed_ca("not the instance"), creds.cert_pem, creds.key_pem)
    with DeviceIngest(stack.settings.gateway_address, stranger, 30) as client, pytest.raises(RpcError) as refused:
        client.send_batch(_records(1))
    assert refused.value.code() is StatusCode.UNAVAILABLE
    assert "CERTIFICATE_VERIFY_FAILED" in refused.value.details()


def test_nothing_listening_is_unavailable_and_names_the_address(enroll):
    _, creds = enroll()
    address = f"127.0.0.1:{free_port()}"
    with DeviceIngest(address, creds, 5) as client, pytest.raises(RpcError) as refused:
        client.send_batch(_records(1))
    assert refused.value.code() is StatusCode.UNAVAILABLE
    assert address in refused.value.details()


def test_a_server_that_never_answers_is_a_deadline_exceeded_in_time(enroll):
    _, creds = enroll()
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True).start()
    began = time.monotonic()
    try:
        with DeviceIngest(f"127.0.0.1:{listener.getsockname()[1]}", creds, 1.5) as client:
            with pytest.raises(RpcError) as refused:
                client.send_batch(_records(1))
    finally:
        listener.close()
        for conn in held:
            conn.close()
    assert refused.value.code() is StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - began < 5


def test_the_renewal_and_device_info_calls_speak_the_same_wire(stack, enroll):
    from collector.enrollment import renew, update_info

    _, creds = enroll()
    update_info(stack.settings.gateway_address, creds, DeviceInfo("renamed by wire"))
    renewed = renew(stack.settings.gateway_address, creds)
    with DeviceIngest(stack.settings.gateway_address, renewed, 30) as client:
        assert client.send_batch(_records(1)).accepted == 1
    with DeviceIngest(stack.settings.gateway_address, creds, 30) as client, pytest.raises(RpcError) as old:
        client.send_batch(_records(1, first=1))
    assert old.value.code() is StatusCode.UNAUTHENTICATED


def test_a_response_body_is_exactly_one_uncompressed_message():
    assert unframe(frame(b"abc")) == b"abc"
    for body in (b"", b"\x00\x00\x00", b"\x01" + (3).to_bytes(4, "big") + b"abc", frame(b"abc") + b"x"):
        with pytest.raises(ValueError):
            unframe(body)
