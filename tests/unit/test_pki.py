"""The private CA: device identity lives in exactly one SAN URI that only the CA writes."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.pki import (
    PkiError,
    create_ca,
    ensure_stack_pki,
    identity_from_certificate,
    issue_server_certificate,
    new_device_id,
    sign_device_csr,
)
from plumbing.files import write_private_files
from schemas.device_keys import DeviceIdentity, device_bundle, new_device_key_and_csr


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return create_ca()


def load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def device_certificate(ca, identity: DeviceIdentity, **kwargs) -> bytes:
    _, csr_pem = new_device_key_and_csr("laptop")
    return sign_device_csr(*ca, csr_pem, identity, **kwargs)


def certificate_with_uris(ca, uris: list[str], *, other_names: list[x509.GeneralName] = ()) -> bytes:
    """A certificate signed by the CA whose SAN holds exactly `uris`, built without the module under test."""
    ca_cert = load(ca[0])
    ca_key = serialization.load_pem_private_key(ca[1], password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forged")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )
    alt_names = [x509.UniformResourceIdentifier(uri) for uri in uris] + list(other_names)
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


# --- identity ---


def test_identity_roundtrips_through_a_device_certificate(ca):
    identity = DeviceIdentity("alice", new_device_id())
    cert_pem = device_certificate(ca, identity)
    assert identity_from_certificate(cert_pem) == identity
    der = load(cert_pem).public_bytes(serialization.Encoding.DER)
    assert identity_from_certificate(der) == identity


@pytest.mark.parametrize("user_id", ["a", "A.b_c-d", "0" * 64, "alice.smith", "u-1"])
def test_all_valid_ids_roundtrip(ca, user_id):
    identity = DeviceIdentity(user_id, new_device_id())
    assert identity_from_certificate(device_certificate(ca, identity)) == identity


def test_new_device_ids_are_uuid4_strings():
    first, second = new_device_id(), new_device_id()
    assert first != second
    assert len(first) == 36 and first.count("-") == 4 and first[14] == "4"


def test_device_certificate_shape(ca):
    identity = DeviceIdentity("alice", new_device_id())
    cert = load(device_certificate(ca, identity))
    ext = cert.extensions
    assert ext.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier
    ) == [f"productimon://user/alice/device/{identity.device_id}"]
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    constraints = ext.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=30) <= lifetime <= dt.timedelta(days=30, minutes=10)
    cert.verify_directly_issued_by(load(ca[0]))


def test_device_certificate_lifetime_is_the_callers(ca):
    cert = load(device_certificate(ca, DeviceIdentity("alice", "d1"), days=7))
    assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < dt.timedelta(days=7, minutes=1)
    with pytest.raises(PkiError, match="lifetime"):
        device_certificate(ca, DeviceIdentity("alice", "d1"), days=0)


def test_identity_comes_from_the_caller_not_the_csr(ca):
    key = ec.generate_private_key(ec.SECP256R1())
    uri = x509.UniformResourceIdentifier("productimon://user/mallory/device/stolen")
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mallory")]))
        .add_extension(x509.SubjectAlternativeName([uri]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = sign_device_csr(*ca, csr.public_bytes(serialization.Encoding.PEM), DeviceIdentity("alice", "d1"))
    assert identity_from_certificate(cert_pem) == DeviceIdentity("alice", "d1")
    assert "mallory" not in load(cert_pem).subject.rfc4514_string()


@pytest.mark.parametrize(
    "uris",
    [
        ["productimon://user/alice/device/d1", "productimon://user/bob/device/d2"],
        ["productimon://user/alice/device/d1", "spiffe://example.org/alice"],
    ],
    ids=["two-identities", "identity-plus-another-uri"],
)
def test_refuses_certificates_with_two_san_uris(ca, uris):
    with pytest.raises(PkiError, match="SAN URI"):
        identity_from_certificate(certificate_with_uris(ca, uris))


def test_refuses_certificates_with_no_san_at_all(ca):
    with pytest.raises(PkiError, match="subjectAltName"):
        identity_from_certificate(certificate_with_uris(ca, []))


def test_refuses_certificates_with_no_san_uri(ca):
    with pytest.raises(PkiError, match="0 SAN URIs"):
        identity_from_certificate(certificate_with_uris(ca, [], other_names=[x509.DNSName("alice")]))


@pytest.mark.parametrize(
    "uri",
    [
        "https://user/alice/device/d1",
        "Productimon://user/alice/device/d1",
        "productimon://users/alice/device/d1",
        "productimon://user/alice/devices/d1",
        "productimon://user/alice/device/d1/",
        "productimon://user/alice/device/d1?x=1",
        "productimon://user//device/d1",
        "productimon://user/alice/device/",
        "productimon://user/al ice/device/d1",
        "productimon://user/-alice/device/d1",
        "productimon://user/alice/device/.d1",
        "productimon://user/alice%2Fbob/device/d1",
        "productimon://user/" + "a" * 65 + "/device/d1",
        "productimon://user/alice/device/d1\n",
        "productimon://user/alice/device/d1/device/d2",
    ],
)
def test_refuses_uris_not_in_the_exact_format(ca, uri):
    with pytest.raises(PkiError, match="SAN URI"):
        identity_from_certificate(certificate_with_uris(ca, [uri]))


def test_refuses_what_is_not_a_certificate():
    with pytest.raises(PkiError):
        identity_from_certificate(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    with pytest.raises(PkiError):
        identity_from_certificate(b"\x30\x03\x02\x01\x00")


@pytest.mark.parametrize(
    "identity",
    [
        DeviceIdentity("", "d1"),
        DeviceIdentity("alice", ""),
        DeviceIdentity("al/ice", "d1"),
        DeviceIdentity("alice", "d1/../x"),
        DeviceIdentity("_alice", "d1"),
        DeviceIdentity("a" * 65, "d1"),
        DeviceIdentity("alice\n", "d1"),
        DeviceIdentity("alicé", "d1"),
    ],
)
def test_signing_refuses_bad_ids(ca, identity):
    with pytest.raises(PkiError, match="id"):
        device_certificate(ca, identity)


# --- CSRs ---


def test_csr_with_a_bad_signature_is_refused(ca):
    _, csr_pem = new_device_key_and_csr("laptop")
    der = bytearray(x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature at the end of the request
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(PkiError, match="signature"):
        sign_device_csr(*ca, tampered, DeviceIdentity("alice", "d1"))


def test_csr_whose_key_was_swapped_is_refused(ca):
    """A CSR carrying someone else's public key but signed by another key proves nothing."""
    _, victim_csr = new_device_key_and_csr("victim")
    attacker = ec.generate_private_key(ec.SECP256R1())
    victim_der = x509.load_pem_x509_csr(victim_csr).public_bytes(serialization.Encoding.DER)
    attacker_csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "victim")]))
        .sign(attacker, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    victim_key = (
        x509.load_der_x509_csr(victim_der)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    attacker_key = attacker.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    swapped = x509.load_der_x509_csr(attacker_csr.replace(attacker_key, victim_key))
    with pytest.raises(PkiError, match="signature"):
        sign_device_csr(*ca, swapped.public_bytes(serialization.Encoding.PEM), DeviceIdentity("alice", "d1"))


def test_garbage_csr_is_refused(ca):
    with pytest.raises(PkiError, match="CSR"):
        sign_device_csr(*ca, b"not a csr", DeviceIdentity("alice", "d1"))


def test_csr_with_an_unsupported_key_type_is_refused(ca):
    key = ed25519.Ed25519PrivateKey.generate()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "laptop")]))
        .sign(key, None)
    )
    with pytest.raises(PkiError, match="key"):
        sign_device_csr(*ca, csr.public_bytes(serialization.Encoding.PEM), DeviceIdentity("alice", "d1"))


def test_signing_with_a_key_that_is_not_the_cas_is_refused(ca):
    _, other_key = create_ca()
    _, csr_pem = new_device_key_and_csr("laptop")
    with pytest.raises(PkiError, match="CA key"):
        sign_device_csr(ca[0], other_key, csr_pem, DeviceIdentity("alice", "d1"))


def test_device_key_is_pem_and_matches_the_csr():
    key_pem, csr_pem = new_device_key_and_csr("laptop")
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert key.public_key() == x509.load_pem_x509_csr(csr_pem).public_key()


# --- CA and server certificate ---


def test_ca_shape(ca):
    cert = load(ca[0])
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert cert.not_valid_after_utc - cert.not_valid_before_utc >= dt.timedelta(days=3650)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)


def test_server_certificate_shape(ca):
    cert_pem, key_pem = issue_server_certificate(*ca, ["localhost", "127.0.0.1", "gw.example.com", "::1"])
    cert = load(cert_pem)
    alt_names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt_names.get_values_for_type(x509.DNSName) == ["localhost", "gw.example.com"]
    assert alt_names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert dt.timedelta(days=365) <= cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=366)
    assert serialization.load_pem_private_key(key_pem, password=None).public_key() == cert.public_key()
    cert.verify_directly_issued_by(load(ca[0]))


@pytest.mark.parametrize("name", ["bad name", "", "a..b", "-x.example.com", "http://x"])
def test_server_certificate_refuses_names_that_are_neither_dns_nor_ip(ca, name):
    with pytest.raises(PkiError, match="server name|at least one"):
        issue_server_certificate(*ca, [name] if name else [])


def test_ensure_stack_pki_creates_once_and_then_only_loads(tmp_path):
    pki_dir = tmp_path / "pki"
    first = ensure_stack_pki(pki_dir, ["localhost", "127.0.0.1"])
    files = ["ca.crt", "ca.key", "server.crt", "server.key"]
    before = {name: ((pki_dir / name).read_bytes(), (pki_dir / name).stat().st_mtime_ns) for name in files}
    second = ensure_stack_pki(pki_dir, ["localhost", "127.0.0.1"])
    after = {name: ((pki_dir / name).read_bytes(), (pki_dir / name).stat().st_mtime_ns) for name in files}
    assert before == after
    assert first == second
    assert second.ca_cert_pem == (pki_dir / "ca.crt").read_bytes()
    assert second.server_key_pem == (pki_dir / "server.key").read_bytes()
    assert second.server_cert_path == pki_dir / "server.crt"


def test_stack_pki_files_are_readable_by_their_owner_only(tmp_path):
    pki = ensure_stack_pki(tmp_path / "pki", ["localhost"])
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in pki.directory.iterdir()}
    assert modes == {".lock": 0o600, "ca.crt": 0o600, "ca.key": 0o600, "server.crt": 0o600, "server.key": 0o600}
    assert stat.S_IMODE(pki.directory.stat().st_mode) == 0o700


def test_a_new_server_name_reissues_the_server_certificate_but_keeps_the_ca(tmp_path):
    first = ensure_stack_pki(tmp_path / "pki", ["localhost", "127.0.0.1"])
    second = ensure_stack_pki(tmp_path / "pki", ["gw.example.com"])
    assert second.ca_cert_pem == first.ca_cert_pem and second.ca_key_pem == first.ca_key_pem
    assert second.server_cert_pem != first.server_cert_pem
    alt_names = load(second.server_cert_pem).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert set(alt_names.value.get_values_for_type(x509.DNSName)) == {"localhost", "gw.example.com"}


def test_half_a_ca_is_an_error_not_a_new_ca(tmp_path):
    pki = ensure_stack_pki(tmp_path / "pki", ["localhost"])
    pki.ca_key_path.unlink()
    with pytest.raises(PkiError, match="ca.key"):
        ensure_stack_pki(tmp_path / "pki", ["localhost"])


def test_device_bundle_files_and_modes(tmp_path, ca):
    key_pem, csr_pem = new_device_key_and_csr("laptop")
    cert_pem = sign_device_csr(*ca, csr_pem, DeviceIdentity("alice", "d1"))
    out = tmp_path / "bundle" / "laptop"
    write_private_files(out, device_bundle(key_pem, cert_pem, ca[0]))
    assert (out / "device.key").read_bytes() == key_pem
    assert (out / "device.crt").read_bytes() == cert_pem
    assert (out / "ca.crt").read_bytes() == ca[0]
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {
        "ca.crt": 0o600,
        "device.crt": 0o600,
        "device.key": 0o600,
    }
