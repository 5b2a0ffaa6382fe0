"""The gateway's door, through real gRPC with real certificates: who gets in and what is refused."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from collector.transport import DeviceCredentials, IngestClient, channel_credentials
from gateway.pki import create_ca, new_device_id, sign_device_csr
from schemas.codec import encode_interval
from schemas.device_keys import DeviceIdentity, new_device_key_and_csr
from schemas.wire import ingest_pb2, ingest_pb2_grpc
from tests.certificates import expired_device_certificate
from tests.e2e.test_pipeline import interval
from tests.integration.test_throttling import gateway_running


def test_a_client_without_a_certificate_is_refused(stack):
    ca_pem = (stack.settings.pki_dir / "ca.crt").read_bytes()
    with grpc.secure_channel(stack.settings.gateway_address, grpc.ssl_channel_credentials(ca_pem)) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            ingest_pb2_grpc.IngestStub(channel).SendBatch(ingest_pb2.Batch(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake itself fails


def test_a_certificate_from_another_ca_is_refused(stack):
    other_ca, other_key = create_ca("Somebody else's CA")
    key_pem, csr_pem = new_device_key_and_csr("intruder")
    cert = sign_device_csr(other_ca, other_key, csr_pem, DeviceIdentity("victim", new_device_id()))
    ca_pem = (stack.settings.pki_dir / "ca.crt").read_bytes()
    with IngestClient(stack.settings.gateway_address, DeviceCredentials(ca_pem, cert, key_pem), 10) as client:
        with pytest.raises(grpc.RpcError) as refused:
            client.send_batch([encode_interval(interval(0, 0, 10, "Code"))])
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_an_oversize_batch_is_refused_with_a_clear_error(stack, enroll):
    _, creds = enroll()
    record = encode_interval(interval(0, 0, 10, "Code"))
    with IngestClient(stack.settings.gateway_address, creds) as client:
        with pytest.raises(grpc.RpcError) as refused:
            client.send_batch([record] * (stack.settings.gateway_max_batch + 1), batch_id=3)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"at most {stack.settings.gateway_max_batch}" in refused.value.details()


def test_streamed_batches_are_each_acknowledged_in_order(stack, enroll):
    _, creds = enroll()
    batches = [
        [encode_interval(interval(i * 10 + j, (i * 10 + j) * 5, 5, "Code")) for j in range(10)] for i in range(5)
    ]
    batches[2].append(b"not avro")
    with IngestClient(stack.settings.gateway_address, creds) as client:
        acks = client.upload(batches)
    assert [(a.batch_id, a.accepted, len(a.errors)) for a in acks] == [
        (0, 10, 0),
        (1, 10, 0),
        (2, 10, 1),
        (3, 10, 0),
        (4, 10, 0),
    ]
    assert acks[2].errors[0].index == 10


def list_services(channel: grpc.Channel) -> set[str]:
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    answers = reflection.ServerReflectionInfo(iter([request]), timeout=10)
    return {s.name for a in answers for s in a.list_services_response.service}


def test_health_answers_and_reflection_is_off_by_default(stack, enroll):
    _, creds = enroll()
    assert not stack.settings.gateway_reflection
    ca_pem = (stack.settings.pki_dir / "ca.crt").read_bytes()
    public = grpc.secure_channel(stack.settings.gateway_public_address, grpc.ssl_channel_credentials(ca_pem))
    with grpc.secure_channel(stack.settings.gateway_address, channel_credentials(creds)) as mtls, public:
        status = health_pb2_grpc.HealthStub(mtls).Check(
            health_pb2.HealthCheckRequest(service="productimon.ingest.v1.Ingest"), timeout=10
        )
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        for channel in (public, mtls):
            with pytest.raises(grpc.RpcError) as refused:
                list_services(channel)
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_reflection_answers_when_turned_on(tmp_path):
    with gateway_running(tmp_path, gateway_reflection=True) as stack:
        ca_pem = (stack.settings.pki_dir / "ca.crt").read_bytes()
        with grpc.secure_channel(stack.settings.gateway_public_address, grpc.ssl_channel_credentials(ca_pem)) as ch:
            assert "productimon.accounts.v1.Accounts" in list_services(ch)


def test_the_server_certificate_is_refused_as_a_device_certificate(stack):
    pki = stack.settings.pki_dir
    server_as_client = DeviceCredentials(
        (pki / "ca.crt").read_bytes(), (pki / "server.crt").read_bytes(), (pki / "server.key").read_bytes()
    )
    with IngestClient(stack.settings.gateway_address, server_as_client, 10) as client:
        with pytest.raises(grpc.RpcError) as refused:
            client.send_batch([encode_interval(interval(0, 0, 10, "Code"))])
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # no clientAuth usage: the handshake fails


def test_an_expired_device_certificate_is_refused(stack):
    pki = stack.settings.pki_dir
    key_pem, cert_pem = expired_device_certificate((pki / "ca.crt").read_bytes(), (pki / "ca.key").read_bytes())
    creds = DeviceCredentials((pki / "ca.crt").read_bytes(), cert_pem, key_pem)
    with IngestClient(stack.settings.gateway_address, creds, 10) as client:
        with pytest.raises(grpc.RpcError) as refused:
            client.send_batch([encode_interval(interval(0, 0, 10, "Code"))])
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_valid_certificate_of_an_unknown_device_is_refused(stack):
    # Signed by the CA for an identity the identity store never enrolled (e.g. made with the CA key offline).
    _, creds = offline_device(stack.settings.pki_dir)
    with IngestClient(stack.settings.gateway_address, creds, 10) as client:
        with pytest.raises(grpc.RpcError) as refused:
            client.send_batch([encode_interval(interval(0, 0, 10, "Code"))])
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def offline_device(pki_dir):
    key_pem, csr_pem = new_device_key_and_csr("offline")
    identity = DeviceIdentity("nobody", new_device_id())
    ca_pem = (pki_dir / "ca.crt").read_bytes()
    return identity, DeviceCredentials(
        ca_pem, sign_device_csr(ca_pem, (pki_dir / "ca.key").read_bytes(), csr_pem, identity), key_pem
    )
