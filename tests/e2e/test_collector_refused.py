"""A running collector whose account is deleted (or whose device is revoked) in the dashboard: it stops by
itself, says why, keeps nothing it could never deliver, and `status` says so (issue 18, point 3)."""

from __future__ import annotations

import json

import pytest

from schemas.api_client import delete_account, log_in
from testbed.collector_process import collector_command, enrolled_home, run_collector, start_collector
from testbed.desktop import virtual_desktop
from tests.conftest import eventually

pytestmark = pytest.mark.e2e


def test_a_collector_whose_account_is_deleted_stops_says_why_and_clears_its_spool(stack, warehouse_client, tmp_path):
    # Intervals close every second, so the collector has something to send right after the deletion.
    home, user_id, email, password = enrolled_home(stack.settings, tmp_path / "home", "max_interval_seconds = 1\n")
    ca = (stack.settings.pki_dir / "ca.crt").read_bytes()
    address = stack.settings.gateway_public_address
    stored = "SELECT count() FROM intervals WHERE user_id = {u:String}"
    log = tmp_path / "collector.log"
    with virtual_desktop() as desktop:
        collector = start_collector(home, desktop.env, log)
        try:
            eventually(lambda: warehouse_client.query(stored, parameters={"u": user_id}).result_rows[0][0] > 0, 60)
            delete_account(address, ca, log_in(address, ca, email, password).token, password)
            assert collector.wait(60) == 0  # stopped by itself, and not as a failure a service manager restarts
        finally:
            if collector.poll() is None:
                collector.kill()
    said = log.read_text()
    assert "stopped for good" in said and "revoked or its account deleted" in said, said
    # Nothing it recorded can be delivered any more: nothing is kept, neither the spool nor the credentials.
    assert not home.spool_file.exists() and not home.credentials_dir.exists() and not home.identity_file.exists()
    report = run_collector(home, "status", "--json")
    assert report.returncode == 3
    retired = json.loads(report.stdout)["retired"]
    assert "revoked or its account deleted" in retired["reason"] and retired["server"] == stack.settings.gateway_address
    text = collector_command_failing(home, "status")
    assert "refused device" in text and "for good" in text and "enroll" in text
    again = run_collector(home, "run")
    assert again.returncode == 1 and "refused for good" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1 and "Traceback" not in again.stderr


def collector_command_failing(home, *args: str) -> str:
    """A command expected to exit non-zero (status of a computer not enrolled exits 3); its output."""
    done = run_collector(home, *args)
    assert done.returncode != 0, done.stdout
    return done.stdout


def test_status_names_the_address_and_time_of_the_last_failed_upload(stack, tmp_path):
    home, *_ = enrolled_home(stack.settings, tmp_path / "home", "max_interval_seconds = 1\n")
    # The gateway moved away: this collector's saved ingest address now answers nothing.
    from infra.processes import free_port

    enrollment = json.loads(home.identity_file.read_text())
    dead = f"127.0.0.1:{free_port()}"
    enrollment["server"] = dead
    home.identity_file.write_text(json.dumps(enrollment))
    with virtual_desktop() as desktop:
        collector = start_collector(home, desktop.env, tmp_path / "collector.log")
        try:
            text = eventually(lambda: (out := collector_command(home, "status")) and "\nupload:" in out and out, 60)
        finally:
            collector.terminate()
            collector.wait(60)
    line = next(line for line in text.splitlines() if line.startswith("upload:"))
    assert "failing since" in line and dead in line and "UNAVAILABLE" in line and "ago" in line, text
