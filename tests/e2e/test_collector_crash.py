"""The collector killed with SIGKILL in the middle of uploading, then restarted: every interval arrives in the
warehouse exactly once."""

from __future__ import annotations

import os
import signal
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from collector.spool import Spool
from schemas.codec import encode_interval
from testbed.collector_process import enrolled_home, spool_depth, start_collector, stop_collector
from testbed.desktop import virtual_desktop
from tests.conftest import eventually
from warehouse.queries import export_intervals, time_per_app

pytestmark = pytest.mark.e2e

WAITING = 8_000  # intervals spooled while "offline": 80 batches of 100, each acknowledged once stored (~0.75 s)


def test_kill_9_during_upload_then_restart_loses_nothing_and_duplicates_nothing(stack, warehouse_client, tmp_path):
    home, user_id, *_ = enrolled_home(stack.settings, tmp_path / "home", "upload_batch = 100\n")
    began = datetime.now(UTC) - timedelta(hours=6)
    with Spool(home.spool_file) as spool:  # days offline: the spool holds what was tracked meanwhile
        for seq in range(WAITING):
            start = int((began + timedelta(seconds=seq)).timestamp() * 1000)
            record = {
                "event_id": str(uuid.uuid4()),
                "device_seq": seq,
                "start": start,
                "end": start + 1000,
                "app": "Offline work",
                "title": None,
                "url": None,
                "keystrokes": 2,
                "clicks": 1,
                "idle": False,
            }
            assert spool.append(seq, encode_interval(record))

    with virtual_desktop() as desktop:
        collector = start_collector(home, desktop.env, tmp_path / "collector.log")
        try:
            assert eventually(lambda: spool_depth(home) < WAITING, 30, interval_s=0.01), "upload never started"
            os.kill(collector.pid, signal.SIGKILL)
            assert collector.wait(10) == -signal.SIGKILL
            left = spool_depth(home)
            assert 0 < left < WAITING, f"the kill did not land during the upload ({left} left)"
        finally:
            if collector.poll() is None:
                collector.kill()

        collector = start_collector(home, desktop.env, tmp_path / "collector.log")
        try:
            assert eventually(lambda: spool_depth(home) == 0, 120)
        finally:
            assert stop_collector(collector) == 0
        assert spool_depth(home) == 0  # the interval closed at stop was delivered too

    period = (began - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1))

    def offline_seconds() -> float:
        per_app = time_per_app(warehouse_client, user_id, *period)
        return float(per_app.loc[per_app["app"] == "Offline work", "seconds"].sum())

    # Whole hours come from the rollups, which count every insert: a duplicate would show as extra time.
    assert eventually(lambda: offline_seconds() == WAITING, 120), offline_seconds()
    stored = export_intervals(warehouse_client, user_id, *period)
    offline = stored[stored["app"] == "Offline work"]
    assert len(offline) == WAITING
    assert offline["event_id"].is_unique
    assert offline["keystrokes"].sum() == 2 * WAITING

    def tracked_after_restart():
        rows = export_intervals(warehouse_client, user_id, *period)
        return rows[rows["app"] != "Offline work"]

    # The restarted collector went on after the spooled device_seq values rather than reusing them (the
    # worker would drop a reused one as already stored).
    assert eventually(lambda: not tracked_after_restart().empty, 60)
    assert (tracked_after_restart()["start"] > datetime.now(UTC) - timedelta(minutes=10)).all()
