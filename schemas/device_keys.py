"""The device's side of the private CA: the identity a device certificate names, the key and request a device
makes (its private key never leaves it), and the files it keeps them in.

Pure: nothing here touches a disk.

The collector needs only this; signing and checking certificates is the gateway's (gateway/pki.py).
A device's identity is exactly one SAN URI, `productimon://user/<user_id>/device/<device_id>`, set by the CA.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# ECDSA P-256: gRPC's BoringSSL accepts it for server and client certificates over TLS 1.3 (tried with
# grpc.aio and require_client_auth), while Ed25519 certificates fail with NO_COMMON_SIGNATURE_ALGORITHMS.
CURVE = ec.SECP256R1()

CA_CERT_FILE = "ca.crt"
DEVICE_CERT_FILE = "device.crt"
DEVICE_KEY_FILE = "device.key"


@dataclass(frozen=True)
class DeviceIdentity:
    user_id: str
    device_id: str

    @property
    def uri(self) -> str:
        return f"productimon://user/{self.user_id}/device/{self.device_id}"


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # Unencrypted: the files holding these keys are mode 0600, and services must start unattended.
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def common_name(name: str) -> x509.Name:
    """A subject of one common name; ValueError names what is wrong with it."""
    try:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    except ValueError as exc:
        raise ValueError(f"common name {name!r} is not usable: {exc}") from None


def new_device_key_and_csr(device_name: str) -> tuple[bytes, bytes]:
    """Made on the device: a new private key, which never leaves it, and a CSR to send: (key, csr) PEM.

    `device_name` is only a label for people; the CA ignores the CSR's subject.
    """
    key = ec.generate_private_key(CURVE)
    csr = x509.CertificateSigningRequestBuilder().subject_name(common_name(device_name)).sign(key, hashes.SHA256())
    return private_key_pem(key), csr.public_bytes(serialization.Encoding.PEM)


def device_bundle(key_pem: bytes, cert_pem: bytes, ca_pem: bytes) -> dict[str, bytes]:
    """What a collector needs to call the gateway, by file name: device.key, device.crt and ca.crt (written
    owner-only with plumbing.files.write_private_files)."""
    return {DEVICE_KEY_FILE: key_pem, DEVICE_CERT_FILE: cert_pem, CA_CERT_FILE: ca_pem}
