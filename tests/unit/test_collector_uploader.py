"""The uploader's health record for `status`, and its stop when the gateway refuses the device for good
(collector/uploader.py); against a spool on disk and a stand-in for the gateway (the real one is in
tests/e2e/test_collector_refused.py)."""

from __future__ import annotations

import threading

from collector.spool import Spool
from collector.uploader import Backoff, UploadHealth, run_uploader
from collector.wire import RpcError as Refusal
from collector.wire import StatusCode


class Gateway:
    """Answers each batch from a script of refusals, then acknowledges."""

    def __init__(self, refusals: list[Refusal], stop: threading.Event) -> None:
        self.refusals, self.stop, self.acked = refusals, stop, 0

    def send_batch(self, records, batch_id=0, spool_depth=None):
        if self.refusals:
            raise self.refusals.pop(0)
        self.acked += len(records)
        self.stop.set()

        class Ack:
            accepted, errors = len(records), []

        return Ack()

    def close(self) -> None:
        pass


def _spool(tmp_path, n: int = 3) -> Spool:
    spool = Spool(tmp_path / "spool.sqlite3")
    for seq in range(n):
        assert spool.append(seq, b"x")
    return spool


def test_a_failure_is_recorded_with_its_reason_until_a_batch_goes_through(tmp_path):
    stop, health, seen = threading.Event(), UploadHealth("gw:7443"), []
    gateway = Gateway([Refusal(StatusCode.UNAVAILABLE, "failed to connect to all addresses\nmore")], stop)

    def connect():
        seen.append((health.last_error, health.last_error_ms is not None))
        return gateway

    with _spool(tmp_path) as spool:
        run_uploader(spool, connect, stop, Backoff(first_s=0.01, max_s=0.01), health=health, on_gone=seen.append)
        assert spool.depth == 0
    assert seen[1] == ("UNAVAILABLE: failed to connect to all addresses", True)  # one line, when it happened
    assert health.last_error is None and health.gone is None and gateway.acked == 3


def test_a_device_refused_for_good_stops_the_uploader_once_and_keeps_the_spool_for_the_agent_to_clear(tmp_path):
    stop, health, gone = threading.Event(), UploadHealth("gw:7443"), []
    gateway = Gateway([Refusal(StatusCode.PERMISSION_DENIED, "this device has been revoked")], stop)
    with _spool(tmp_path) as spool:
        run_uploader(spool, lambda: gateway, stop, Backoff(first_s=0.01), health=health, on_gone=gone.append)
        assert spool.depth == 3  # nothing acknowledged, nothing lost by the uploader itself
    assert gone == ["this device has been revoked"] and health.gone == gone[0] and not stop.is_set()
