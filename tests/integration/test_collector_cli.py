"""`productimon-collector` against the real gateway: enroll (password or one-time code), status, unenroll,
certificate renewal and device info updates by the running collector's upkeep."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
import uuid

import grpc
import pytest
from cryptography import x509

from collector.agent import Upkeep
from collector.config import CollectorHome, load_collector_settings
from collector.enrolled import certificate_validity, load_credentials, load_enrollment
from collector.transport import IngestClient
from infra.devices import new_account
from schemas.api_client import create_enrollment_code, list_devices, log_in
from testbed.collector_process import REPO, collector_command, enroll_args, enrolled_home, run_collector


def _token(settings, email: str, password: str) -> str:
    return log_in(settings.gateway_public_address, (settings.pki_dir / "ca.crt").read_bytes(), email, password).token


def test_enroll_with_password_then_status_reports_the_device(stack, tmp_path):
    home, user_id, *_ = enrolled_home(stack.settings, tmp_path / "home", device_name="Ada's laptop")
    report = json.loads(collector_command(home, "status", "--json"))
    assert report["enrolled"] is True
    assert report["user_id"] == user_id
    assert report["device_name"] == "Ada's laptop"
    assert report["running"] is False
    until = dt.datetime.fromisoformat(report["certificate_valid_until"])
    days = (until - dt.datetime.now(dt.UTC)).days
    assert stack.settings.device_cert_days - 2 <= days <= stack.settings.device_cert_days
    # The device key never left this computer and only its owner can read it.
    key = home.credentials_dir / "device.key"
    assert key.stat().st_mode & 0o077 == 0
    assert home.root.stat().st_mode & 0o077 == 0
    assert "certificate:  valid until" in collector_command(home, "status")


def test_enroll_with_a_one_time_code(stack, tmp_path):
    _, email, password = new_account(stack.settings)
    ca = (stack.settings.pki_dir / "ca.crt").read_bytes()
    code = create_enrollment_code(stack.settings.gateway_public_address, ca, _token(stack.settings, email, password))
    home = CollectorHome(tmp_path / "home")
    done = run_collector(home, *enroll_args(stack.settings, "--code", code.code, "--device-name", "desk"))
    assert done.returncode == 0, done.stderr
    token = _token(stack.settings, email, password)
    names = [d.name for d in list_devices(stack.settings.gateway_public_address, ca, token)]
    assert names == ["desk"]
    # A code works once.
    again = run_collector(CollectorHome(tmp_path / "other"), *enroll_args(stack.settings, "--code", code.code))
    assert again.returncode == 1
    assert "enrollment" in again.stderr and "Traceback" not in again.stderr


def _signup(stack, home: CollectorHome, email: str, *more: str, password: str = "a long new passphrase 42"):
    args = enroll_args(stack.settings, "--email", email, "--password-stdin", *more)
    return run_collector(home, "signup", *args[1:], stdin=f"{password}\n")


def test_a_newcomer_signs_up_with_the_collector_in_each_sign_up_mode_and_then_enrolls(stack, tmp_path):
    from gateway.identity_store import IdentityStore

    home = CollectorHome(tmp_path / "home")
    email = f"newcomer-{uuid.uuid4().hex[:8]}@example.org"
    store = IdentityStore(stack.settings.identity_store_path)
    try:
        store.set_signup_mode("closed")
        closed = _signup(stack, home, email)
        assert closed.returncode == 1 and "sign-up is closed" in closed.stderr
        assert len(closed.stderr.strip().splitlines()) == 1 and "Traceback" not in closed.stderr
        store.set_signup_mode("invite")
        uninvited = _signup(stack, home, email)
        assert uninvited.returncode == 1 and "--invite-code" in uninvited.stderr
        wrong = _signup(stack, home, email, "--invite-code", "not-a-code")
        assert wrong.returncode == 1 and "invite" in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1
        with pytest.raises(grpc.RpcError):
            _token(stack.settings, email, "a long new passphrase 42")  # nothing was created by the refusals
        done = _signup(stack, home, email, "--invite-code", store.create_invite())
        assert done.returncode == 0, done.stderr
    finally:
        store.set_signup_mode("open")
        store.close()
    # What it printed next is the command that enrolls this computer, and it works as printed.
    next_step = done.stdout.strip().splitlines()[-1].split(": ", 1)[1]
    assert next_step.startswith("productimon-collector enroll ") and f"--email {email}" in next_step
    enrolled = run_collector(home, *next_step.split()[1:], "--password-stdin", stdin="a long new passphrase 42\n")
    assert enrolled.returncode == 0, enrolled.stderr
    assert json.loads(collector_command(home, "status", "--json"))["enrolled"] is True
    # The same email again: one line, and the first account keeps its password.
    again = _signup(stack, CollectorHome(tmp_path / "again"), email, password="another passphrase 43")
    assert again.returncode == 1 and "already exists" in again.stderr
    assert _token(stack.settings, email, "a long new passphrase 42")


def test_enroll_proves_both_gateway_ports_before_saving_anything_and_names_the_one_that_failed(stack, tmp_path):
    from infra.processes import free_port

    _, email, password = new_account(stack.settings)
    ca_file = str(stack.settings.pki_dir / "ca.crt")
    public = stack.settings.gateway_public_address

    def enroll_at(server: str):
        home = CollectorHome(tmp_path / uuid.uuid4().hex[:6])
        args = ["enroll", "--server", server, "--public-server", public, "--ca", ca_file, "--email", email]
        return home, run_collector(home, *args, "--password-stdin", stdin=password + "\n")

    def devices() -> list:
        ca = (stack.settings.pki_dir / "ca.crt").read_bytes()
        return [d for d in list_devices(public, ca, _token(stack.settings, email, password)) if not d.revoked]

    # Nothing listens there: refused before the gateway is asked anything.
    dead = f"127.0.0.1:{free_port()}"
    home, done = enroll_at(dead)
    assert done.returncode == 1 and dead in done.stderr and "cannot be reached" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not home.identity_file.exists()
    # Something listens, but it does not take uploads (the public port given as the ingest one): the enrollment
    # is undone at the gateway, and nothing is saved here.
    home, done = enroll_at(public)
    assert done.returncode == 1 and f"ingest address {public}" in done.stderr and "revoked again" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    assert not home.identity_file.exists() and not home.credentials_dir.exists()
    assert devices() == []
    home, done = enroll_at(stack.settings.gateway_address)
    assert done.returncode == 0, done.stderr
    assert len(devices()) == 1


def test_a_wrong_ca_file_is_one_line_saying_what_to_do_without_tls_library_noise(stack, tmp_path):
    from tests.certificates import self_signed_ca

    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_bytes(self_signed_ca("someone else's CA"))
    not_a_certificate = tmp_path / "notes.txt"
    not_a_certificate.write_text("this is not a certificate\n")
    _, email, password = new_account(stack.settings)
    for ca, says in ((other_ca, "does not prove"), (not_a_certificate, "not a PEM certificate")):
        args = enroll_args(stack.settings, "--email", email, "--password-stdin")
        args[args.index("--ca") + 1] = str(ca)
        done = run_collector(CollectorHome(tmp_path / ca.stem), *args, stdin=password + "\n")
        assert done.returncode == 1 and says in done.stderr and str(ca) in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # no gRPC C-core log line beside it
        assert "Traceback" not in done.stderr and "ssl_transport_security" not in done.stderr, done.stderr


def test_status_piped_into_a_reader_that_stops_early_is_not_an_error(stack, tmp_path):
    home, *_ = enrolled_home(stack.settings, tmp_path / "home")
    # `true` reads nothing and is gone before the collector writes: every write meets a closed pipe.
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{sys.executable} -m collector --home {home.root} status | true"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_a_wrong_password_is_one_line_and_leaves_nothing_behind(stack, tmp_path):
    _, email, _ = new_account(stack.settings)
    home = CollectorHome(tmp_path / "home")
    done = run_collector(
        home, *enroll_args(stack.settings, "--email", email, "--password-stdin"), stdin="wrong password\n"
    )
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1
    assert "productimon-collector: error: enrollment" in done.stderr
    assert not home.identity_file.exists() and not home.credentials_dir.exists()


def test_enrolling_twice_is_refused(stack, tmp_path):
    home = enrolled_home(stack.settings, tmp_path / "home").home
    _, email, password = new_account(stack.settings)
    done = run_collector(
        home, *enroll_args(stack.settings, "--email", email, "--password-stdin"), stdin=password + "\n"
    )
    assert done.returncode == 1
    assert "already enrolled" in done.stderr


def test_status_of_a_computer_not_enrolled(tmp_path):
    done = run_collector(CollectorHome(tmp_path / "nothing"), "status")
    assert done.returncode == 3
    assert "enrolled:     no" in done.stdout


def test_unenroll_revokes_the_device_and_forgets_its_keys(stack, tmp_path):
    home = enrolled_home(stack.settings, tmp_path / "home").home
    enrollment = load_enrollment(home)
    creds = load_credentials(home)
    with IngestClient(enrollment.server, creds) as client:
        assert client.send_batch([]).accepted == 0  # the device is accepted before
    assert "unenrolled device" in collector_command(home, "unenroll")
    assert not home.identity_file.exists() and not home.credentials_dir.exists()
    with IngestClient(enrollment.server, creds) as client, pytest.raises(grpc.RpcError) as refused:
        client.send_batch([])
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert run_collector(home, "status").returncode == 3


def test_upkeep_renews_the_certificate_when_due_and_the_new_one_works(stack, tmp_path):
    home = enrolled_home(stack.settings, tmp_path / "home").home
    before = load_credentials(home)
    reconnect = threading.Event()
    settings = load_collector_settings(home)
    now = dt.datetime.now(dt.UTC)
    assert Upkeep(home, settings, reconnect, clock=lambda: now).once() is True
    assert load_credentials(home) == before  # a fresh certificate is left alone
    # Two thirds of its lifetime later less than a third is left: renewal is due.
    later = now + dt.timedelta(days=stack.settings.device_cert_days * 2 / 3 + 1)
    assert Upkeep(home, settings, reconnect, clock=lambda: later).once() is True
    after = load_credentials(home)
    assert after.cert_pem != before.cert_pem and after.key_pem != before.key_pem
    assert reconnect.is_set()  # the uploader switches to the new certificate
    # The validity note `status` and upkeep read describes the new certificate.
    installed = x509.load_pem_x509_certificate(after.cert_pem)
    assert certificate_validity(home).not_after == installed.not_valid_after_utc
    with IngestClient(load_enrollment(home).server, after) as client:
        assert client.send_batch([]).accepted == 0


def test_upkeep_sends_a_changed_device_name_to_the_gateway(stack, tmp_path):
    home, _, email, password = enrolled_home(stack.settings, tmp_path / "home", device_name="old name")
    home.config_file.write_text('device_name = "new name"\n')
    assert Upkeep(home, load_collector_settings(home), threading.Event()).once() is True
    assert load_enrollment(home).device_name == "new name"
    ca = (stack.settings.pki_dir / "ca.crt").read_bytes()
    devices = list_devices(stack.settings.gateway_public_address, ca, _token(stack.settings, email, password))
    assert [d.name for d in devices] == ["new name"]
    report = json.loads(collector_command(home, "status", "--json"))
    assert report["device_name"] == "new name"
