"""mTLS with the stack's CA through a real grpc.aio server: only the CA's device certificates get in; and through
the real gateway, only a device's latest certificate."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from collector.enrollment import DeviceInfo, renew, update_info
from collector.enrollment import enroll as enroll_device
from collector.transport import IngestClient
from collector.wire import RpcError, StatusCode
from gateway.pki import (
    PkiError,
    StackPki,
    create_ca,
    ensure_stack_pki,
    identity_from_certificate,
    issue_server_certificate,
    new_device_id,
    sign_device_csr,
)
from infra.devices import new_account
from schemas.codec import encode_interval
from schemas.device_keys import DeviceIdentity, new_device_key_and_csr
from tests.certificates import expired_device_certificate
from tests.e2e.test_pipeline import interval

METHOD = "/productimon.test.Echo/WhoAmI"


@pytest.fixture(scope="module")
def stack_pki(tmp_path_factory) -> StackPki:
    return ensure_stack_pki(tmp_path_factory.mktemp("pki"), ["localhost", "127.0.0.1"])


async def who_am_i(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    """Answer with the identity the verified peer certificate names, as the gateway will."""
    certs = context.auth_context().get("x509_pem_cert")
    if not certs:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "no client certificate")
    try:
        identity = identity_from_certificate(certs[0])
    except PkiError as exc:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
    return f"{identity.user_id}/{identity.device_id}".encode()


async def start_server(server_cert_pem: bytes, server_key_pem: bytes, ca_pem: bytes) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "productimon.test.Echo", {"WhoAmI": grpc.unary_unary_rpc_method_handler(who_am_i)}
    )
    server.add_generic_rpc_handlers((handler,))
    credentials = grpc.ssl_server_credentials(
        [(server_key_pem, server_cert_pem)], root_certificates=ca_pem, require_client_auth=True
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, port


@pytest.fixture(scope="module")
async def gateway_port(stack_pki) -> AsyncIterator[int]:
    server, port = await start_server(stack_pki.server_cert_pem, stack_pki.server_key_pem, stack_pki.ca_cert_pem)
    yield port
    await server.stop(None)


async def call(port: int, ca_pem: bytes, key_pem: bytes | None = None, cert_pem: bytes | None = None) -> bytes:
    credentials = grpc.ssl_channel_credentials(ca_pem, key_pem, cert_pem)
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        return await channel.unary_unary(METHOD)(b"", timeout=10)


def enroll(ca_cert_pem: bytes, ca_key_pem: bytes, identity: DeviceIdentity) -> tuple[bytes, bytes]:
    key_pem, csr_pem = new_device_key_and_csr("test-device")
    return key_pem, sign_device_csr(ca_cert_pem, ca_key_pem, csr_pem, identity)


async def test_a_device_of_the_ca_gets_in_and_the_server_sees_its_identity(stack_pki, gateway_port):
    identity = DeviceIdentity("alice", new_device_id())
    key_pem, cert_pem = enroll(stack_pki.ca_cert_pem, stack_pki.ca_key_pem, identity)
    answer = await call(gateway_port, stack_pki.ca_cert_pem, key_pem, cert_pem)
    assert answer == f"alice/{identity.device_id}".encode()


async def test_two_devices_are_told_apart(stack_pki, gateway_port):
    first, second = DeviceIdentity("alice", new_device_id()), DeviceIdentity("bob", new_device_id())
    for identity in (first, second):
        key_pem, cert_pem = enroll(stack_pki.ca_cert_pem, stack_pki.ca_key_pem, identity)
        answer = await call(gateway_port, stack_pki.ca_cert_pem, key_pem, cert_pem)
        assert answer == f"{identity.user_id}/{identity.device_id}".encode()


async def test_a_device_certificate_from_another_ca_is_refused(stack_pki, gateway_port):
    other_ca_cert, other_ca_key = create_ca("Someone else's CA")
    key_pem, cert_pem = enroll(other_ca_cert, other_ca_key, DeviceIdentity("alice", new_device_id()))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(gateway_port, stack_pki.ca_cert_pem, key_pem, cert_pem)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_client_without_a_certificate_is_refused(stack_pki, gateway_port):
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(gateway_port, stack_pki.ca_cert_pem)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_the_server_certificate_does_not_work_as_a_client_certificate(stack_pki, gateway_port):
    # Signed by the right CA but for serverAuth only: the clientAuth EKU is what makes a device certificate.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(gateway_port, stack_pki.ca_cert_pem, stack_pki.server_key_pem, stack_pki.server_cert_pem)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_an_expired_device_certificate_is_refused(stack_pki, gateway_port):
    key_pem, cert_pem = expired_device_certificate(stack_pki.ca_cert_pem, stack_pki.ca_key_pem)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(gateway_port, stack_pki.ca_cert_pem, key_pem, cert_pem)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_device_refuses_a_gateway_whose_certificate_is_not_from_the_ca(stack_pki):
    impostor_ca_cert, impostor_ca_key = create_ca("Impostor CA")
    cert_pem, key_pem = issue_server_certificate(impostor_ca_cert, impostor_ca_key, ["localhost", "127.0.0.1"])
    impostor, port = await start_server(cert_pem, key_pem, stack_pki.ca_cert_pem)
    try:
        device_key, device_cert = enroll(stack_pki.ca_cert_pem, stack_pki.ca_key_pem, DeviceIdentity("alice", "d1"))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(port, stack_pki.ca_cert_pem, device_key, device_cert)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await impostor.stop(None)


def test_a_renewal_retires_the_old_certificate_from_the_next_call(stack):
    settings = stack.settings
    ca = (settings.pki_dir / "ca.crt").read_bytes()
    _, email, password = new_account(settings)
    _, old = enroll_device(settings.gateway_public_address, ca, DeviceInfo("renewing"), email=email, password=password)
    # A connection opened with the old certificate before the renewal is refused on its next call.
    with IngestClient(settings.gateway_address, old, 10) as before:
        assert before.send_batch([encode_interval(interval(0, 0, 10, "Code"))]).accepted == 1
        new = renew(settings.gateway_address, old)
        with pytest.raises(grpc.RpcError) as ingest:
            before.send_batch([encode_interval(interval(1, 10, 10, "Code"))])
    assert ingest.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert ingest.value.details() == "this certificate was replaced by a renewal"
    for old_call in (
        lambda: update_info(settings.gateway_address, old, DeviceInfo("renewing")),
        lambda: renew(settings.gateway_address, old),
    ):
        with pytest.raises(RpcError) as refused:  # the device's own calls: collector/wire.py
            old_call()
        assert refused.value.code() is StatusCode.UNAUTHENTICATED
    with IngestClient(settings.gateway_address, new, 10) as after:
        assert after.send_batch([encode_interval(interval(1, 10, 10, "Code"))]).accepted == 1
    update_info(settings.gateway_address, new, DeviceInfo("renewed"))
