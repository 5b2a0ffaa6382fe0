"""The enrolled device's files in the collector home: who it is, where its gateway is, and its credentials.

Credentials are replaced as a whole directory (write the new bundle beside, then swap by renames), so a crash
during renewal never leaves a key that does not match its certificate.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from collector.config import CollectorHome
from collector.enrollment import DeviceInfo
from collector.transport import DeviceCredentials
from plumbing.files import write_atomically

# Beside ca.crt, device.crt and device.key: the certificate's validity period, written when it is installed.
VALIDITY_FILE = "validity.json"


class NotEnrolled(Exception):
    """This collector home holds no enrolled device; the message says what to run."""


@dataclass(frozen=True)
class Enrollment:
    user_id: str
    device_id: str
    server: str  # mTLS ingest and renewal
    public_server: str  # sign-up, login and enrollment
    # The device info the gateway last accepted; a difference from the current one is sent at start.
    device_name: str
    os: str
    os_version: str

    @property
    def device_info(self) -> DeviceInfo:
        return DeviceInfo(self.device_name, self.os, self.os_version)


def save_enrollment(home: CollectorHome, enrollment: Enrollment) -> None:
    write_atomically(home.identity_file, json.dumps(asdict(enrollment), indent=2).encode())


def load_enrollment(home: CollectorHome) -> Enrollment:
    try:
        data = json.loads(home.identity_file.read_text())
        return Enrollment(**data)
    except FileNotFoundError:
        raise NotEnrolled(
            f"this computer is not enrolled (no {home.identity_file}); run `productimon-collector enroll`"
        ) from None
    except (OSError, ValueError, TypeError) as exc:
        raise NotEnrolled(f"cannot read {home.identity_file}: {exc}; enroll again") from None


def _recover_credentials(home: CollectorHome) -> None:
    """Finish a swap a crash interrupted: the new bundle is complete once its directory has its final name."""
    current, new, old = home.credentials_dir, _beside(home, "new"), _beside(home, "old")
    if not current.exists() and new.exists():
        new.rename(current)
    if current.exists():
        shutil.rmtree(old, ignore_errors=True)


def _beside(home: CollectorHome, suffix: str) -> Path:
    return home.credentials_dir.with_name(f"{home.credentials_dir.name}.{suffix}")


def save_credentials(home: CollectorHome, creds: DeviceCredentials) -> None:
    """Install a complete bundle in place of the current one, with its validity period beside it."""
    from plumbing.files import write_private_files
    from schemas.device_keys import device_bundle

    _recover_credentials(home)
    new, old = _beside(home, "new"), _beside(home, "old")
    shutil.rmtree(new, ignore_errors=True)
    write_private_files(new, device_bundle(creds.key_pem, creds.cert_pem, creds.ca_pem))
    validity = _parse_validity(creds.cert_pem)
    note = {"not_before": validity.not_before.isoformat(), "not_after": validity.not_after.isoformat()}
    write_atomically(new / VALIDITY_FILE, json.dumps(note).encode())
    if home.credentials_dir.exists():
        home.credentials_dir.rename(old)
    new.rename(home.credentials_dir)
    shutil.rmtree(old, ignore_errors=True)


def load_credentials(home: CollectorHome) -> DeviceCredentials:
    _recover_credentials(home)
    try:
        return DeviceCredentials.from_dir(home.credentials_dir)
    except OSError as exc:
        raise NotEnrolled(f"the device credentials are missing ({exc}); enroll again") from None


def forget_device(home: CollectorHome) -> None:
    """Remove the identity and the credentials (unenroll)."""
    for directory in (home.credentials_dir, _beside(home, "new"), _beside(home, "old")):
        shutil.rmtree(directory, ignore_errors=True)
    home.identity_file.unlink(missing_ok=True)


def forget_recording(home: CollectorHome) -> None:
    """Remove the spool (with SQLite's side files), the running collector's status and a pause."""
    for path in (home.spool_file, home.status_file, home.paused_file):
        for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            leftover.unlink(missing_ok=True)


@dataclass(frozen=True)
class Validity:
    not_before: dt.datetime
    not_after: dt.datetime


def _parse_validity(cert_pem: bytes) -> Validity:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_pem)
    return Validity(cert.not_valid_before_utc, cert.not_valid_after_utc)


def certificate_validity(home: CollectorHome) -> Validity:
    """The installed certificate's validity, from the note saved with it (no X.509 parser needed at run time)."""
    _recover_credentials(home)
    try:
        data = json.loads((home.credentials_dir / VALIDITY_FILE).read_text())
        return Validity(dt.datetime.fromisoformat(data["not_before"]), dt.datetime.fromisoformat(data["not_after"]))
    except (OSError, ValueError, KeyError):
        return _parse_validity(load_credentials(home).cert_pem)


def renewal_due(validity: Validity, now: dt.datetime, renew_at_remaining: float) -> bool:
    """Renew once no more than `renew_at_remaining` of the certificate's lifetime is left: early enough that a
    collector offline for a while still renews before expiry, late enough not to renew at every start."""
    lifetime = validity.not_after - validity.not_before
    return now >= validity.not_after - lifetime * renew_at_remaining
