"""Least privilege on disk (issue 16): after real traffic, nothing the stack or a collector wrote is readable by
another user of the host. Every directory is 0700 and every file 0600, those of chDB, faust and the broker too."""

from __future__ import annotations

import os
import stat
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector.config import CollectorHome
from collector.transport import IngestClient
from infra.devices import new_account
from schemas.codec import encode_interval
from testbed.collector_process import collector_command, enroll_args, spool_depth, start_collector, stop_collector
from testbed.desktop import missing_programs, virtual_desktop
from tests.conftest import eventually
from warehouse.queries import export_intervals

pytestmark = pytest.mark.e2e


def open_to_others(root: Path) -> list[str]:
    """Every directory and file under `root`, the root included, that has a group or other permission bit, as
    "0755 path". Symbolic links are neither followed nor judged: a link's own mode means nothing."""
    offenders = []
    for directory, _, files in os.walk(root):  # os.walk does not follow links to directories
        for path in (Path(directory), *(Path(directory) / name for name in files)):
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o077:
                offenders.append(f"{stat.S_IMODE(mode):04o} {path}")
    return offenders


def assert_owner_only(root: Path) -> None:
    offenders = open_to_others(root)
    assert not offenders, f"{len(offenders)} readable by other users:\n" + "\n".join(offenders)


def stored_intervals(warehouse_client, user_id: str):
    now = datetime.now(UTC)
    return export_intervals(warehouse_client, user_id, now - timedelta(days=1), now + timedelta(hours=1))


def test_nothing_the_stack_wrote_is_readable_by_another_user(stack, enroll, warehouse_client):
    identity, creds = enroll()
    began = datetime.now(UTC) - timedelta(hours=1)
    batch = [
        {
            "event_id": str(uuid.uuid4()),
            "device_seq": seq,
            "start": int((began + timedelta(minutes=seq)).timestamp() * 1000),
            "end": int((began + timedelta(minutes=seq + 1)).timestamp() * 1000),
            "app": "Spreadsheet",
            "title": "Salaries 2025 - Spreadsheet",
            "url": None,
            "keystrokes": 3,
            "clicks": 1,
            "idle": False,
        }
        for seq in range(20)
    ]
    with IngestClient(stack.settings.gateway_address, creds) as client:
        assert client.send_batch([encode_interval(i) for i in batch], batch_id=1).accepted == len(batch)
    assert eventually(lambda: len(stored_intervals(warehouse_client, identity.user_id)) == len(batch))

    data_dir = stack.settings.data_dir
    written = [p for p in data_dir.rglob("*") if p.is_file()]
    # The walk means something only if it saw the part files and the logs the traffic left.
    assert any(p.suffix == ".bin" and stack.settings.warehouse_dir in p.parents for p in written), written
    assert {"broker.log", "warehouse.log", "gateway.log", "worker.log"} <= {p.name for p in written}
    assert_owner_only(data_dir)


def test_nothing_a_collector_wrote_is_readable_by_another_user(stack, warehouse_client, tmp_path):
    missing = missing_programs()
    assert not missing, f"the collector needs a desktop: {', '.join(missing)} (see infra/apt-packages.txt)"
    # The collector makes its home itself (enroll): every file in it is one the collector wrote.
    home = CollectorHome(tmp_path / "collector-home")
    user_id, email, password = new_account(stack.settings)
    collector_command(home, *enroll_args(stack.settings, "--email", email, "--password-stdin"), stdin=password + "\n")
    with virtual_desktop() as desktop:
        desktop.focus(desktop.open_xterm("Salaries 2025 - Editor"))
        collector = start_collector(home, desktop.env, tmp_path / "collector.log")
        try:
            desktop.type("hello")
            time.sleep(1.5)  # a second of activity in the editor, sampled
        finally:
            assert stop_collector(collector) == 0  # closes the interval in progress and delivers it
    assert spool_depth(home) == 0
    assert eventually(lambda: len(stored_intervals(warehouse_client, user_id)) > 0)

    assert_owner_only(home.root)


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_each_running_service_holds_only_its_own_warehouse_logins(stack, warehouse_client):
    """Read as an attacker who took over one process would: its environment holds its own warehouse login (and
    the deletion login where it deletes), never another service's or the owner's; and each login is refused
    what its service must not do, by the running warehouse server."""
    secrets = {role: password for role, (_, password) in stack.logins.items()}
    owner = stack.settings.warehouse_password
    expected = {"gateway": {"gateway", "deletion"}, "worker": {"worker", "deletion"}}
    for name, process in (("gateway", stack.gateway), ("worker", stack.workers[0])):
        assert process is not None and process.running
        values = set(_environ(process.proc.pid).values())
        assert owner not in values, f"the {name} holds the owner's warehouse password"
        held = {role for role, password in secrets.items() if password in values}
        assert held == expected[name], f"the {name} holds the warehouse logins of {sorted(held)}"
    dashboard_env = set(stack.env_for("dashboard").values())
    assert {role for role, password in secrets.items() if password in dashboard_env} == {"dashboard"}
    assert owner not in dashboard_env
    assert stat.S_IMODE((stack.settings.data_dir / "warehouse.logins").stat().st_mode) == 0o600
    # The running server enforces them: the dashboard's login reads, and cannot write or read data keys.
    from clickhouse_connect.driver.exceptions import DatabaseError

    from warehouse.client import connect

    dashboard = connect(stack.login_settings("dashboard"))
    try:
        assert dashboard.command("SELECT count() FROM intervals") >= 0
        for statement in ("SELECT * FROM data_keys", "ALTER TABLE intervals DELETE WHERE 1", "DROP TABLE devices"):
            with pytest.raises(DatabaseError, match="ACCESS_DENIED"):
                dashboard.command(statement)
    finally:
        dashboard.close()
    assert warehouse_client.command("EXISTS TABLE devices") == 1
