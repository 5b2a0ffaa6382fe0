"""Enrolling this device: its key pair is made here and never leaves; only the CSR goes to the gateway.

Sign-up and enrollment use the gateway's public port (server-authenticated TLS: the gateway proves
itself with a certificate of the instance's CA); renewal uses the device's own certificate.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import TYPE_CHECKING

from collector.transport import DeviceCredentials, device_channel
from schemas.wire import accounts_pb2 as pb

if TYPE_CHECKING:
    from schemas.device_keys import DeviceIdentity

# gateway.pki (and with it `cryptography`, ~10 MB resident) is imported only when a key pair is made: the running
# collector needs it once a month, at renewal, and lives within a 60 MB budget.


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    os: str = platform.system()
    os_version: str = platform.release()

    def message(self) -> pb.DeviceInfo:
        return pb.DeviceInfo(name=self.name, os=self.os, os_version=self.os_version)


def enroll(
    public_address: str,
    ca_pem: bytes,
    device: DeviceInfo,
    *,
    email: str = "",
    password: str = "",
    enrollment_code: str = "",
) -> tuple[DeviceIdentity, DeviceCredentials]:
    """Enroll with the user's credentials or a one-time code; returns the identity and the credentials."""
    from schemas.device_keys import DeviceIdentity, new_device_key_and_csr

    key_pem, csr_pem = new_device_key_and_csr(device.name)
    request = pb.EnrollRequest(
        email=email, password=password, enrollment_code=enrollment_code, csr_pem=csr_pem, device=device.message()
    )
    # grpcio, for this short-lived call at the public port (the device has no certificate yet).
    from schemas.api_client import public_channel
    from schemas.wire import accounts_pb2_grpc

    with public_channel(public_address, ca_pem) as channel:
        reply = accounts_pb2_grpc.DevicesStub(channel).Enroll(request, timeout=30)
    identity = DeviceIdentity(reply.user_id, reply.device_id)
    return identity, DeviceCredentials(reply.ca_chain_pem, reply.certificate_pem, key_pem)


# The device's own calls, over mTLS with its certificate, go through collector/wire.py (no grpcio in the running
# collector); errors are collector.wire.RpcError.
_DEVICES = "/productimon.accounts.v1.Devices/"


def _device_call(address: str, creds: DeviceCredentials, method: str, request, reply_type):
    with device_channel(address, creds) as channel:
        return channel.call(_DEVICES + method, request, reply_type, 30)


def renew(address: str, creds: DeviceCredentials) -> DeviceCredentials:
    """A fresh certificate for this device (new key pair), asked for over mTLS with the current one."""
    from schemas.device_keys import new_device_key_and_csr

    key_pem, csr_pem = new_device_key_and_csr("renewal")
    reply = _device_call(address, creds, "Renew", pb.RenewRequest(csr_pem=csr_pem), pb.Certificate)
    return DeviceCredentials(reply.ca_chain_pem, reply.certificate_pem, key_pem)


def update_info(address: str, creds: DeviceCredentials, device: DeviceInfo) -> None:
    """Tell the gateway this device's name, OS and OS version (over mTLS)."""
    _device_call(address, creds, "UpdateInfo", device.message(), pb.Empty)


def revoke_self(address: str, creds: DeviceCredentials) -> None:
    """Revoke this device at the gateway (unenroll): its certificate is refused from then on."""
    _device_call(address, creds, "Revoke", pb.DeviceRef(), pb.Empty)


def fetch_privacy(address: str, creds: DeviceCredentials) -> dict:
    """The account's privacy choices (title mode and rules) as the gateway holds them, over mTLS, as a dict
    `schemas.privacy_rules.AccountPrivacy.from_dict` reads."""
    reply = _device_call(address, creds, "GetPrivacy", pb.Empty(), pb.Privacy)
    rules = [{"on": r.on, "pattern": r.pattern, "action": r.action} for r in reply.rules]
    return {"title_mode": reply.title_mode, "rules": rules}


def take_notices(address: str, creds: DeviceCredentials) -> list[tuple[str, str]]:
    """The account's desktop notices now due (summary, body), over mTLS; the gateway hands each out once."""
    reply = _device_call(address, creds, "TakeNotices", pb.Empty(), pb.NoticeList)
    return [(n.summary, n.body) for n in reply.notices]
