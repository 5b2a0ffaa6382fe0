"""`productimon-collector`'s pure parts: gateway addresses from --server, and what `status` reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collector.agent import RunLock
from collector.cli import INGEST_PORT, PUBLIC_PORT, gateway_addresses, status_report
from collector.config import CollectorHome
from collector.enrolled import Enrollment, NotEnrolled, certificate_validity, save_credentials, save_enrollment
from collector.spool import Spool
from collector.transport import DeviceCredentials
from gateway.pki import create_ca, sign_device_csr
from plumbing.cli import UserFacingError
from schemas.device_keys import DeviceIdentity, new_device_key_and_csr

NOW = 1_800_000_000.0  # seconds, as time.time() gives it
ENROLLMENT = Enrollment("alice", "d-1", "gw.example:7443", "gw.example:7444", "work laptop", "Linux", "6.8")

# -- gateway addresses


@pytest.mark.parametrize(
    ("server", "public", "expected"),
    [
        ("gw.example", None, ("gw.example:7443", "gw.example:7444")),
        ("gw.example:9000", None, ("gw.example:9000", "gw.example:7444")),
        ("gw.example:9000", "login.example:443", ("gw.example:9000", "login.example:443")),
        ("10.0.0.5", None, ("10.0.0.5:7443", "10.0.0.5:7444")),
        ("[::1]", None, ("[::1]:7443", "[::1]:7444")),
        ("[::1]:9000", None, ("[::1]:9000", "[::1]:7444")),
        ("gw.example", "", ("gw.example:7443", "gw.example:7444")),
    ],
)
def test_gateway_addresses_fill_in_the_default_ports(server, public, expected):
    assert gateway_addresses(server, public) == expected
    assert (INGEST_PORT, PUBLIC_PORT) == (7443, 7444)


@pytest.mark.parametrize("server", [":7443", ""])
def test_a_server_without_a_host_is_refused_naming_it(server):
    with pytest.raises(UserFacingError, match="names no host") as caught:
        gateway_addresses(server, None)
    assert repr(server) in str(caught.value)


@pytest.mark.parametrize("server", ["::1", "fe80::1"])
def test_a_bare_ipv6_address_is_bracketed_or_refused(server):
    try:
        addresses = gateway_addresses(server, None)
    except UserFacingError:
        return
    assert addresses == (f"[{server}]:7443", f"[{server}]:7444")


@pytest.mark.parametrize("server", ["gw.example:", "gw.example:https"])
def test_a_port_that_is_not_a_number_is_refused(server):
    with pytest.raises(UserFacingError):
        gateway_addresses(server, None)


# -- status


@pytest.fixture
def home(tmp_path: Path) -> CollectorHome:
    return CollectorHome(tmp_path / "home").create()


@pytest.fixture(scope="module")
def creds() -> DeviceCredentials:
    ca_cert, ca_key = create_ca("Test CA")
    key_pem, csr_pem = new_device_key_and_csr("laptop")
    cert_pem = sign_device_csr(ca_cert, ca_key, csr_pem, DeviceIdentity("alice", "d-1"), days=30)
    return DeviceCredentials(ca_cert, cert_pem, key_pem)


def test_status_of_a_home_with_no_enrollment(home):
    assert status_report(home, NOW) == {
        "home": str(home.root),
        "enrolled": False,
        "running": False,
        "paused": False,
        "paused_until_ms": None,
    }


def test_status_of_a_home_that_does_not_exist_creates_nothing(tmp_path):
    home = CollectorHome(tmp_path / "nowhere")
    assert status_report(home, NOW)["enrolled"] is False
    assert not home.root.exists()


def test_status_of_an_enrolled_idle_collector(home, creds):
    save_enrollment(home, ENROLLMENT)
    save_credentials(home, creds)
    report = status_report(home, NOW)
    assert report["enrolled"] is True
    assert (report["device_id"], report["device_name"], report["user_id"], report["server"]) == (
        "d-1",
        "work laptop",
        "alice",
        "gw.example:7443",
    )
    assert report["certificate_valid_until"] == certificate_validity(home).not_after.isoformat(timespec="seconds")
    assert (report["running"], report["paused"]) == (False, False)
    assert "spool" not in report
    assert "certificate_problem" not in report
    json.dumps(report)  # `status --json` prints it as it is


def test_status_says_when_the_credentials_are_missing(home):
    save_enrollment(home, ENROLLMENT)
    report = status_report(home, NOW)
    assert "certificate_valid_until" not in report
    assert "enroll again" in report["certificate_problem"]


def test_status_reports_the_spool(home, creds):
    save_enrollment(home, ENROLLMENT)
    save_credentials(home, creds)
    with Spool(home.spool_file, clock=lambda: NOW - 60) as spool:
        for seq in range(3):
            spool.append(seq, b"x" * 10)
    with Spool(home.spool_file, max_bytes=30, clock=lambda: NOW - 5) as spool:
        spool.append(3, b"y")  # refused: full
        spool.acknowledge([0])
    assert status_report(home, NOW)["spool"] == {
        "depth": 2,
        "bytes": 20,
        "oldest_ms": int((NOW - 60) * 1000),
        "refused_when_full": 1,
        "expired": 0,
        "last_upload_ms": int((NOW - 5) * 1000),
    }


@pytest.mark.parametrize(
    ("content", "paused", "until"),
    [
        ("0", True, None),  # until `resume`
        ("", True, None),
        ("not a time", True, None),
        (str(int(NOW * 1000) + 60_000), True, int(NOW * 1000) + 60_000),
        (str(int(NOW * 1000) - 60_000), False, int(NOW * 1000) - 60_000),  # over; the collector resumes
    ],
)
def test_status_reports_a_pause(home, content, paused, until):
    home.paused_file.write_text(content)
    report = status_report(home, NOW)
    assert (report["paused"], report["paused_until_ms"]) == (paused, until)


def test_status_does_not_end_a_pause_that_is_over(home):
    # Only the running collector resumes; `status` only looks.
    home.paused_file.write_text(str(int(NOW * 1000) - 1))
    status_report(home, NOW)
    assert home.paused_file.exists()


def test_a_running_collectors_own_report_is_shown(home, creds):
    save_enrollment(home, ENROLLMENT)
    save_credentials(home, creds)
    home.status_file.write_text(json.dumps({"unavailable": ["no idle time"], "updated_ms": 123}))
    lock = RunLock(home.lock_file)
    try:
        report = status_report(home, NOW)
    finally:
        lock.release()
    assert report["running"] is True
    assert (report["unavailable"], report["last_report_ms"]) == (["no idle time"], 123)


def test_a_stopped_collectors_old_report_is_not_shown(home, creds):
    save_enrollment(home, ENROLLMENT)
    home.status_file.write_text(json.dumps({"unavailable": ["stale"], "updated_ms": 123}))
    RunLock(home.lock_file).release()  # a lock file left by a collector that stopped
    report = status_report(home, NOW)
    assert report["running"] is False
    assert "unavailable" not in report and "last_report_ms" not in report


def test_an_unreadable_status_file_is_ignored(home):
    home.status_file.write_text("{half")
    lock = RunLock(home.lock_file)
    try:
        report = status_report(home, NOW)
    finally:
        lock.release()
    assert report["running"] is True
    assert "unavailable" not in report


def test_status_of_a_home_with_a_damaged_identity_says_to_enroll_again(home):
    home.identity_file.write_text("{")
    with pytest.raises(NotEnrolled, match="enroll again"):
        status_report(home, NOW)
