"""The enrolled device's files: identity, credentials swapped whole and recovered after a crash, renewal timing."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import stat
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from collector.config import CollectorHome
from collector.enrolled import (
    VALIDITY_FILE,
    Enrollment,
    NotEnrolled,
    Validity,
    certificate_validity,
    forget_device,
    load_credentials,
    load_enrollment,
    renewal_due,
    save_credentials,
    save_enrollment,
)
from collector.enrollment import DeviceInfo
from collector.transport import DeviceCredentials
from gateway.pki import create_ca, sign_device_csr
from schemas.device_keys import DeviceIdentity, new_device_key_and_csr

ENROLLMENT = Enrollment(
    user_id="alice",
    device_id="d-1",
    server="gw.example:7443",
    public_server="gw.example:7444",
    device_name="work laptop",
    os="Linux",
    os_version="6.8",
)


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return create_ca("Test CA")


def credentials(ca: tuple[bytes, bytes], days: int = 30, device_id: str = "d-1") -> DeviceCredentials:
    ca_cert, ca_key = ca
    key_pem, csr_pem = new_device_key_and_csr("laptop")
    cert_pem = sign_device_csr(ca_cert, ca_key, csr_pem, DeviceIdentity("alice", device_id), days=days)
    return DeviceCredentials(ca_pem=ca_cert, cert_pem=cert_pem, key_pem=key_pem)


def not_after(creds: DeviceCredentials) -> dt.datetime:
    return x509.load_pem_x509_certificate(creds.cert_pem).not_valid_after_utc


@pytest.fixture
def home(tmp_path: Path) -> CollectorHome:
    return CollectorHome(tmp_path / "home").create()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- identity


def test_an_enrollment_saved_is_the_enrollment_loaded(home):
    save_enrollment(home, ENROLLMENT)
    loaded = load_enrollment(home)
    assert loaded == ENROLLMENT
    assert loaded.device_info == DeviceInfo("work laptop", "Linux", "6.8")


def test_saving_an_enrollment_again_replaces_it(home):
    save_enrollment(home, ENROLLMENT)
    renamed = Enrollment(**{**json.loads(home.identity_file.read_text()), "device_name": "desk"})
    save_enrollment(home, renamed)
    assert load_enrollment(home).device_name == "desk"
    assert [p.name for p in home.root.iterdir()] == ["identity.json"]  # no temporary file left behind


def test_the_identity_file_is_owner_only(home):
    save_enrollment(home, ENROLLMENT)
    assert mode(home.identity_file) == 0o600


def test_a_missing_identity_says_the_computer_is_not_enrolled_and_what_to_run(home):
    with pytest.raises(NotEnrolled) as caught:
        load_enrollment(home)
    message = str(caught.value)
    assert "not enrolled" in message
    assert str(home.identity_file) in message
    assert "productimon-collector enroll" in message


@pytest.mark.parametrize(
    "content",
    ["{not json", "[]", "null", json.dumps({"user_id": "alice"}), json.dumps({**vars(ENROLLMENT), "extra": 1})],
)
def test_an_unreadable_identity_says_which_file_and_to_enroll_again(home, content):
    home.identity_file.write_text(content)
    with pytest.raises(NotEnrolled) as caught:
        load_enrollment(home)
    assert str(home.identity_file) in str(caught.value)
    assert "enroll again" in str(caught.value)


# -- credentials


def test_credentials_saved_are_the_credentials_loaded(home, ca):
    creds = credentials(ca)
    save_credentials(home, creds)
    assert load_credentials(home) == creds
    bundle = sorted(p.name for p in home.credentials_dir.iterdir())
    assert bundle == ["ca.crt", "device.crt", "device.key", VALIDITY_FILE]
    assert sorted(p.name for p in home.root.iterdir()) == ["credentials"]


def test_the_device_key_and_its_directory_are_owner_only(home, ca):
    save_credentials(home, credentials(ca))
    assert mode(home.root) == 0o700
    assert mode(home.credentials_dir) == 0o700
    assert mode(home.credentials_dir / "device.key") == 0o600
    assert mode(home.credentials_dir / VALIDITY_FILE) & 0o077 == 0


def test_saving_new_credentials_replaces_the_whole_bundle(home, ca):
    save_credentials(home, credentials(ca, days=30))
    renewed = credentials(ca, days=60)
    save_credentials(home, renewed)
    assert load_credentials(home) == renewed
    assert certificate_validity(home).not_after == not_after(renewed)
    assert sorted(p.name for p in home.root.iterdir()) == ["credentials"]


def test_missing_credentials_say_to_enroll_again(home):
    with pytest.raises(NotEnrolled, match="enroll again"):
        load_credentials(home)


def test_a_bundle_missing_a_file_says_to_enroll_again(home, ca):
    save_credentials(home, credentials(ca))
    (home.credentials_dir / "device.key").unlink()
    with pytest.raises(NotEnrolled, match="device.key"):
        load_credentials(home)


def install_by_hand(directory: Path, creds: DeviceCredentials) -> None:
    """A complete bundle written where a crash may have left it."""
    directory.mkdir(mode=0o700)
    (directory / "ca.crt").write_bytes(creds.ca_pem)
    (directory / "device.crt").write_bytes(creds.cert_pem)
    (directory / "device.key").write_bytes(creds.key_pem)


def test_a_crash_between_the_two_renames_is_finished_on_load(home, ca):
    # save_credentials renamed credentials -> credentials.old, then died before credentials.new -> credentials.
    old, new = credentials(ca, days=30), credentials(ca, days=60)
    install_by_hand(home.root / "credentials.old", old)
    install_by_hand(home.root / "credentials.new", new)
    assert load_credentials(home) == new
    assert sorted(p.name for p in home.root.iterdir()) == ["credentials"]


def test_a_crash_that_left_only_the_new_bundle_installs_it(home, ca):
    new = credentials(ca)
    install_by_hand(home.root / "credentials.new", new)
    assert load_credentials(home) == new
    assert not (home.root / "credentials.new").exists()
    assert home.credentials_dir.is_dir()


def test_a_crash_after_the_swap_keeps_the_current_bundle_and_removes_the_old_one(home, ca):
    current, old = credentials(ca, days=60), credentials(ca, days=30)
    save_credentials(home, current)
    install_by_hand(home.root / "credentials.old", old)
    assert load_credentials(home) == current
    assert not (home.root / "credentials.old").exists()


def test_a_crash_while_writing_a_renewal_keeps_the_current_bundle(home, ca):
    current = credentials(ca)
    save_credentials(home, current)
    half = home.root / "credentials.new"
    half.mkdir()
    (half / "device.key").write_bytes(b"half a renewal")
    assert load_credentials(home) == current
    # The next save starts the new bundle afresh.
    renewed = credentials(ca, days=60)
    save_credentials(home, renewed)
    assert load_credentials(home) == renewed
    assert sorted(p.name for p in home.root.iterdir()) == ["credentials"]


def test_certificate_validity_is_read_from_the_note_saved_with_it(home, ca):
    creds = credentials(ca, days=30)
    save_credentials(home, creds)
    cert = x509.load_pem_x509_certificate(creds.cert_pem)
    validity = certificate_validity(home)
    assert validity == Validity(cert.not_valid_before_utc, cert.not_valid_after_utc)
    assert validity.not_after.tzinfo is not None
    # It is the note that is read: change it and the answer follows.
    note = home.credentials_dir / VALIDITY_FILE
    data = json.loads(note.read_text())
    data["not_after"] = "2030-01-01T00:00:00+00:00"
    note.write_text(json.dumps(data))
    assert certificate_validity(home).not_after == dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize("damage", ["missing", "not json", "no not_after", "not a date"])
def test_without_a_usable_note_the_validity_comes_from_the_certificate(home, ca, damage):
    creds = credentials(ca, days=7)
    save_credentials(home, creds)
    note = home.credentials_dir / VALIDITY_FILE
    if damage == "missing":
        note.unlink()
    elif damage == "not json":
        note.write_text("{")
    elif damage == "no not_after":
        note.write_text(json.dumps({"not_before": "2020-01-01T00:00:00+00:00"}))
    else:
        note.write_text(json.dumps({"not_before": "yesterday", "not_after": "tomorrow"}))
    assert certificate_validity(home).not_after == not_after(creds)


def test_certificate_validity_without_credentials_says_not_enrolled(home):
    with pytest.raises(NotEnrolled):
        certificate_validity(home)


def test_forget_device_removes_identity_and_every_bundle(home, ca):
    save_enrollment(home, ENROLLMENT)
    save_credentials(home, credentials(ca))
    install_by_hand(home.root / "credentials.old", credentials(ca))
    install_by_hand(home.root / "credentials.new", credentials(ca))
    home.spool_file.write_bytes(b"kept")
    forget_device(home)
    assert sorted(p.name for p in home.root.iterdir()) == ["spool.sqlite3"]
    forget_device(home)  # forgetting twice is harmless


# -- renewal timing

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_a_thirty_day_certificate_is_renewed_in_its_last_ten_days():
    validity = Validity(START, START + dt.timedelta(days=30))
    assert not renewal_due(validity, START, 1 / 3)
    assert not renewal_due(validity, START + dt.timedelta(days=19, hours=23), 1 / 3)
    assert renewal_due(validity, START + dt.timedelta(days=20, seconds=1), 1 / 3)
    assert renewal_due(validity, START + dt.timedelta(days=30), 1 / 3)
    assert renewal_due(validity, START + dt.timedelta(days=45), 1 / 3)  # expired: still try


def test_at_exactly_the_share_left_renewal_is_due():
    # The docstring says "less than"; at the very boundary the code already renews. One instant either way.
    validity = Validity(START, START + dt.timedelta(days=10))
    assert renewal_due(validity, START + dt.timedelta(days=5), 0.5)


@given(
    lifetime_s=st.integers(min_value=1, max_value=400 * 86400),
    share=st.floats(min_value=0.001, max_value=0.99),
    offset_s=st.integers(min_value=-10 * 86400, max_value=500 * 86400),
)
def test_renewal_is_due_exactly_when_less_than_the_share_of_the_lifetime_is_left(lifetime_s, share, offset_s):
    lifetime = dt.timedelta(seconds=lifetime_s)
    validity = Validity(START, START + lifetime)
    now = START + dt.timedelta(seconds=offset_s)
    remaining = validity.not_after - now
    threshold = lifetime * share
    if remaining != threshold:  # the boundary instant itself: see the test above
        assert renewal_due(validity, now, share) == (remaining < threshold)


@given(share=st.floats(min_value=0.001, max_value=0.99))
def test_a_fresh_certificate_is_never_due_and_an_expired_one_always_is(share):
    validity = Validity(START, START + dt.timedelta(days=30))
    assert not renewal_due(validity, START, share)
    assert renewal_due(validity, validity.not_after, share)


def test_a_copied_home_keeps_working(tmp_path, ca):
    # Moving the collector home (a new user profile path) must not break the credentials.
    home = CollectorHome(tmp_path / "a").create()
    creds = credentials(ca)
    save_credentials(home, creds)
    save_enrollment(home, ENROLLMENT)
    moved = CollectorHome(tmp_path / "b")
    shutil.copytree(home.root, moved.root)
    assert load_credentials(moved) == creds
    assert load_enrollment(moved) == ENROLLMENT


def test_a_crash_while_writing_the_first_bundle_says_enroll_again_and_enrolling_again_works(home, ca):
    half = home.root / "credentials.new"
    half.mkdir()
    (half / "device.key").write_bytes(b"only the key was written")
    with pytest.raises(NotEnrolled, match="enroll again"):
        load_credentials(home)
    creds = credentials(ca)
    save_credentials(home, creds)
    assert load_credentials(home) == creds
    assert sorted(p.name for p in home.root.iterdir()) == ["credentials"]
