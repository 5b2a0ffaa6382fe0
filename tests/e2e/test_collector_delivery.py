"""The collector's spool and uploader against the real gateway: nothing lost while the gateway is away."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from collector.spool import Spool
from collector.transport import DeviceIngest
from collector.uploader import Backoff, run_uploader
from infra.devices import new_user_device
from schemas.codec import encode_interval
from tests.conftest import eventually, private_stack_running
from warehouse.client import connect
from warehouse.queries import time_per_app

pytestmark = pytest.mark.e2e


def test_backoff_waits_grow_exponentially_with_full_jitter():
    rng = random.Random(1)
    backoff = Backoff(first_s=1, max_s=60)
    waits = [backoff.delay(n, rng) for n in range(1, 12)]
    assert all(0 <= w <= min(60, 2**n) for n, w in zip(range(1, 12), waits, strict=True))
    assert max(waits) > 8


def test_gateway_down_for_a_while_then_up_everything_arrives(tmp_path):
    with private_stack_running(tmp_path / "stack") as stack:
        identity, creds = new_user_device(stack.settings)
        spool = Spool(tmp_path / "spool.sqlite3")
        start = datetime.now(UTC) - timedelta(hours=2)
        for seq in range(1200):
            began = start + timedelta(seconds=seq * 5)
            spool.append(
                seq,
                encode_interval(
                    {
                        "event_id": str(uuid.uuid4()),
                        "device_seq": seq,
                        "start": int(began.timestamp() * 1000),
                        "end": int(began.timestamp() * 1000) + 5000,
                        "app": "Code",
                        "title": None,
                        "url": None,
                        "keystrokes": 1,
                        "clicks": 0,
                        "idle": False,
                    }
                ),
            )
        stack.gateway.stop()  # the gateway is away while the collector tries
        stack.gateway = None
        stop = threading.Event()
        uploader = threading.Thread(
            target=run_uploader,
            args=(spool, lambda: DeviceIngest(stack.settings.gateway_address, creds, timeout_s=5), stop),
            kwargs={"backoff": Backoff(first_s=0.2, max_s=1.0), "idle_wait_s": 0.2},
        )
        uploader.start()
        try:
            stop.wait(3)
            assert spool.status().depth == 1200  # nothing deleted while nothing was acknowledged
            stack.start_gateway()
            assert eventually(lambda: spool.status().depth == 0, 60)
        finally:
            stop.set()
            uploader.join(30)
        client = connect(stack.settings)
        period = (start - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1))

        def stored() -> dict:
            per_app = time_per_app(client, identity.user_id, *period)
            return dict(zip(per_app["app"], per_app["seconds"], strict=True))

        assert eventually(lambda: stored() == {"Code": 6000.0}, 60)
        spool.close()
