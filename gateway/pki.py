"""The private CA: the gateway's server certificate and short-lived device certificates naming who is calling
(the device's own side, its key and request, is schemas/device_keys.py).

A device's identity is exactly one SAN URI, `productimon://user/<user_id>/device/<device_id>`, set by the CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from plumbing.files import make_private_dir, write_atomically
from schemas.device_keys import CA_CERT_FILE, CURVE, DeviceIdentity, common_name, private_key_pem

log = logging.getLogger(__name__)

_ID = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
ID_PATTERN = re.compile(_ID)
_IDENTITY_URI = re.compile(rf"productimon://user/(?P<user>{_ID})/device/(?P<device>{_ID})")
_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"(?=.{{1,253}}\Z)(?:\*\.)?{_DNS_LABEL}(?:\.{_DNS_LABEL})*\.?")

CA_DAYS = 3650
SERVER_DAYS = 365
DEVICE_DAYS = 30
# Backdated so a device whose clock runs a little slow does not see a certificate from the future.
_CLOCK_SKEW = dt.timedelta(minutes=5)
# A server certificate this close to expiry is replaced when the stack starts.
_RENEW_SERVER_WITHIN = dt.timedelta(days=30)
DEFAULT_SERVER_NAMES = ("localhost", "127.0.0.1")

CA_KEY_FILE = "ca.key"
SERVER_CERT_FILE = "server.crt"
SERVER_KEY_FILE = "server.key"


class PkiError(ValueError):
    """A certificate, key, request or id is not acceptable; the message says which and why."""


@dataclass(frozen=True)
class StackPki:
    """The stack's CA and server certificate, as files and as the bytes read from them."""

    directory: Path
    ca_cert_path: Path
    ca_key_path: Path
    server_cert_path: Path
    server_key_path: Path
    ca_cert_pem: bytes
    ca_key_pem: bytes
    server_cert_pem: bytes
    server_key_pem: bytes


def check_id(kind: str, value: object) -> str:
    """Return `value` if it is a valid user or device id, else raise PkiError naming `kind`."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise PkiError(
            f"{kind} {value!r} is not valid: use 1 to 64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return value


def new_device_id() -> str:
    return str(uuid.uuid4())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _load_certificate(data: bytes, what: str) -> x509.Certificate:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except (TypeError, ValueError) as exc:
        raise PkiError(f"{what} is not a readable X.509 certificate: {exc}") from None


def _load_private_key(data: bytes, what: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (TypeError, ValueError) as exc:
        raise PkiError(f"{what} is not a readable unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{what} is a {type(key).__name__}, expected an ECDSA key")
    return key


def _load_ca(ca_cert_pem: bytes, ca_key_pem: bytes) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert = _load_certificate(ca_cert_pem, "the CA certificate")
    ca_key = _load_private_key(ca_key_pem, "the CA key")
    if ca_key.public_key() != ca_cert.public_key():
        raise PkiError("the CA key does not belong to the CA certificate")
    try:
        constraints = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise PkiError("the CA certificate is not a CA (BasicConstraints CA=true is missing)")
    return ca_cert, ca_key


def create_ca(common_name: str = "Productimon CA") -> tuple[bytes, bytes]:
    """A new self-signed CA valid for 10 years that may sign only end-entity certificates: (cert, key) PEM."""
    key = ec.generate_private_key(CURVE)
    name = _name(common_name)
    now = _now()
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), private_key_pem(key)


def _name(name: str) -> x509.Name:
    try:
        return common_name(name)
    except ValueError as exc:
        raise PkiError(str(exc)) from None


def _end_entity_key_usage() -> x509.KeyUsage:
    # digitalSignature alone: with ECDSA keys TLS 1.2 and 1.3 only ever sign the handshake.
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _end_entity_builder(
    ca_cert: x509.Certificate,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    subject: x509.Name,
    days: int,
    usage: x509.ObjectIdentifier,
    alt_names: list[x509.GeneralName],
) -> x509.CertificateBuilder:
    now = _now()
    # Never outlive the CA: a chain with an expired CA fails anyway, and the error is clearer here.
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    if not_after <= now:
        raise PkiError("the CA certificate has expired; create a new CA")
    try:
        ca_key_id = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        authority_key_id = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_id)
    except x509.ExtensionNotFound:
        authority_key_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_end_entity_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(authority_key_id, critical=False)
    )


def _server_alt_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    if not _DNS_NAME.fullmatch(name):
        raise PkiError(f"server name {name!r} is neither a DNS name nor an IP address")
    return x509.DNSName(name.rstrip(".").lower())


def issue_server_certificate(ca_cert_pem: bytes, ca_key_pem: bytes, names: list[str]) -> tuple[bytes, bytes]:
    """A new key and a 1-year serverAuth certificate for `names` (DNS names or IP literals): (cert, key) PEM."""
    if not names:
        raise PkiError("a server certificate needs at least one DNS name or IP address")
    alt_names = list(dict.fromkeys(_server_alt_name(name) for name in names))
    ca_cert, ca_key = _load_ca(ca_cert_pem, ca_key_pem)
    key = ec.generate_private_key(CURVE)
    subject = _name(names[0][:64])
    cert = _end_entity_builder(
        ca_cert, key.public_key(), subject, SERVER_DAYS, ExtendedKeyUsageOID.SERVER_AUTH, alt_names
    ).sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), private_key_pem(key)


def _acceptable_device_key(public_key: object) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    if isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(public_key.curve, ec.SECP256R1 | ec.SECP384R1):
        return public_key
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size >= 2048:
        return public_key
    raise PkiError(
        f"the CSR's key ({type(public_key).__name__}) is not accepted: use ECDSA P-256 or P-384, or RSA >= 2048"
    )


def sign_device_csr(
    ca_cert_pem: bytes, ca_key_pem: bytes, csr_pem: bytes, identity: DeviceIdentity, days: int = DEVICE_DAYS
) -> bytes:
    """Certify the CSR's key as `identity` for `days`: a clientAuth certificate, PEM.

    Only the CSR's public key is used, after its self-signature proves the requester holds the private key;
    the identity comes from the caller (the authenticated account), never from anything in the CSR.
    """
    check_id("user id", identity.user_id)
    check_id("device id", identity.device_id)
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 366:
        raise PkiError(f"device certificate lifetime {days!r} days is not between 1 and 366")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except (TypeError, ValueError) as exc:
        raise PkiError(f"the certificate signing request is not a readable PEM CSR: {exc}") from None
    try:
        signature_valid = csr.is_signature_valid
    except (InvalidSignature, ValueError, TypeError):
        signature_valid = False
    if not signature_valid:
        raise PkiError("the certificate signing request's signature is not valid")
    public_key = _acceptable_device_key(csr.public_key())
    ca_cert, ca_key = _load_ca(ca_cert_pem, ca_key_pem)
    cert = _end_entity_builder(
        ca_cert,
        public_key,
        _name(identity.device_id),
        days,
        ExtendedKeyUsageOID.CLIENT_AUTH,
        [x509.UniformResourceIdentifier(identity.uri)],
    ).sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)


def identity_from_certificate(cert_pem_or_der: bytes) -> DeviceIdentity:
    """The identity a device certificate names: its one SAN URI, in exactly the productimon:// format.

    This reads the certificate; it does not verify it. Call it only on a certificate the TLS layer has
    already verified against the CA, such as the peer certificate of an mTLS connection.
    """
    cert = _load_certificate(cert_pem_or_der, "the client certificate")
    try:
        alt_names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise PkiError("the client certificate has no subjectAltName, so it names no device") from None
    except ValueError as exc:
        raise PkiError(f"the client certificate's extensions are malformed: {exc}") from None
    uris = alt_names.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise PkiError(f"the client certificate has {len(uris)} SAN URIs; a device certificate has exactly one")
    match = _IDENTITY_URI.fullmatch(uris[0])
    if not match:
        raise PkiError(
            f"the client certificate's SAN URI {uris[0]!r} is not productimon://user/<user_id>/device/<device_id>"
        )
    return DeviceIdentity(match["user"], match["device"])


def _server_cert_usable(cert_pem: bytes, key_pem: bytes, ca_cert: x509.Certificate, names: list[str]) -> bool:
    try:
        cert = _load_certificate(cert_pem, "the server certificate")
        key = _load_private_key(key_pem, "the server key")
        cert.verify_directly_issued_by(ca_cert)
    except (PkiError, ValueError, TypeError, InvalidSignature):
        return False
    if key.public_key() != cert.public_key():
        return False
    if cert.not_valid_after_utc - _now() < _RENEW_SERVER_WITHIN:
        return False
    try:
        present = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return False
    return all(_server_alt_name(name) in present for name in names)


def _server_names_of(cert_pem: bytes) -> list[str]:
    try:
        alt_names = _load_certificate(cert_pem, "the server certificate").extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except (PkiError, x509.ExtensionNotFound):
        return []
    return [str(value) for value in alt_names.value.get_values_for_type(x509.DNSName)] + [
        str(value) for value in alt_names.value.get_values_for_type(x509.IPAddress)
    ]


def ensure_stack_pki(pki_dir: Path, server_names: list[str]) -> StackPki:
    """The stack's CA and server certificate: created on first use, loaded on every later one.

    The CA is never replaced (that would orphan every device certificate). The server certificate is
    reissued only when it does not cover `server_names`, is not from this CA, or expires within 30 days;
    the new one keeps the names the old one had.
    """
    import fcntl  # here, not at the top: devices on Windows import this module only to make CSRs

    pki_dir = Path(pki_dir)
    make_private_dir(pki_dir)
    paths = {name: pki_dir / name for name in (CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE)}
    # The gateway and the stack runner may both start at once; only one of them may create the CA.
    with open(os.open(pki_dir / ".lock", os.O_WRONLY | os.O_CREAT, 0o600), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ca_cert_path, ca_key_path = paths[CA_CERT_FILE], paths[CA_KEY_FILE]
        if ca_cert_path.exists() != ca_key_path.exists():
            raise PkiError(
                f"{pki_dir} has only one of {CA_CERT_FILE} and {CA_KEY_FILE}; restore the other or remove both"
            )
        if not ca_cert_path.exists():
            ca_cert_pem, ca_key_pem = create_ca()
            write_atomically(ca_key_path, ca_key_pem)
            write_atomically(ca_cert_path, ca_cert_pem)
            log.info("created a new CA in %s", pki_dir)
        ca_cert_pem, ca_key_pem = ca_cert_path.read_bytes(), ca_key_path.read_bytes()
        _warn_if_readable_by_others(ca_key_path)
        ca_cert, _ = _load_ca(ca_cert_pem, ca_key_pem)

        server_cert_path, server_key_path = paths[SERVER_CERT_FILE], paths[SERVER_KEY_FILE]
        _ensure_server_files(server_cert_path, server_key_path, ca_cert_pem, ca_key_pem, list(server_names))
        return StackPki(
            directory=pki_dir,
            ca_cert_path=ca_cert_path,
            ca_key_path=ca_key_path,
            server_cert_path=server_cert_path,
            server_key_path=server_key_path,
            ca_cert_pem=ca_cert_pem,
            ca_key_pem=ca_key_pem,
            server_cert_pem=server_cert_path.read_bytes(),
            server_key_pem=server_key_path.read_bytes(),
        )


def _ensure_server_files(
    cert_path: Path, key_path: Path, ca_cert_pem: bytes, ca_key_pem: bytes, names: list[str]
) -> bool:
    """Keep a server certificate and key for `names` at these paths; True if it (re)issued them. Reissued only
    when missing, not from this CA, not covering `names`, or expiring within 30 days; the new one keeps the old
    one's names too. The caller holds the directory's lock."""
    ca_cert, _ = _load_ca(ca_cert_pem, ca_key_pem)
    existing_cert = cert_path.read_bytes() if cert_path.exists() else b""
    existing_key = key_path.read_bytes() if key_path.exists() else b""
    issued = False
    if not _server_cert_usable(existing_cert, existing_key, ca_cert, names):
        all_names = list(dict.fromkeys([*names, *_server_names_of(existing_cert)]))
        cert_pem, key_pem = issue_server_certificate(ca_cert_pem, ca_key_pem, all_names)
        write_atomically(key_path, key_pem)
        write_atomically(cert_path, cert_pem)
        log.info("issued a server certificate for %s in %s", ", ".join(all_names), cert_path.parent)
        issued = True
    _warn_if_readable_by_others(key_path)
    return issued


def ensure_server_bundle(out_dir: Path, ca_cert_pem: bytes, ca_key_pem: bytes, names: list[str]) -> bool:
    """Another server's TLS files, signed by the stack's CA, in a directory of their own: server.crt, server.key
    and ca.crt beside them (for the server's own health checks and peers), never the CA key. Idempotent: the
    certificate is reissued only as `_ensure_server_files` says, ca.crt rewritten only if it differs. True if the
    certificate was (re)issued."""
    import fcntl  # here, not at the top: devices on Windows import this module only to make CSRs

    out_dir = Path(out_dir)
    make_private_dir(out_dir)
    with open(os.open(out_dir / ".lock", os.O_WRONLY | os.O_CREAT, 0o600), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        issued = _ensure_server_files(
            out_dir / SERVER_CERT_FILE, out_dir / SERVER_KEY_FILE, ca_cert_pem, ca_key_pem, names
        )
        ca_path = out_dir / CA_CERT_FILE
        if not ca_path.exists() or ca_path.read_bytes() != ca_cert_pem:
            write_atomically(ca_path, ca_cert_pem)
        return issued


def _warn_if_readable_by_others(path: Path) -> None:
    if path.stat().st_mode & 0o077:
        log.warning("%s can be read by other users; it should be mode 0600", path)
