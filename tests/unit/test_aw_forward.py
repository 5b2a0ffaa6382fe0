"""The forwarder of what ActivityWatch watchers report (collector/aw_forward.py): settled slices only, after the
collector's own intervals of that time are delivered; a slice done only once the gateway acknowledged it; the place
reached kept across a restart. A real store (collector/aw_store.py) and a stand-in for the gateway's Import call."""

from __future__ import annotations

import pytest

from collector.aw_forward import SETTLE_MS, SLICE_MS, Forwarder, ImportChannel
from collector.aw_store import AwStore, Span
from collector.privacy import PrivacySettings
from collector.wire import RpcError, StatusCode
from schemas.codec import decode_interval
from schemas.wire import ingest_pb2

T0 = 1_780_000_000_000  # ms


class Gateway:
    """Takes Import batches as the gateway would answer them: every record stored, or the call fails."""

    def __init__(self) -> None:
        self.batches: list[ingest_pb2.ImportBatch] = []
        self.failing = False

    def __call__(self, batch: ingest_pb2.ImportBatch) -> ingest_pb2.ImportAck:
        if self.failing:
            raise RpcError(StatusCode.UNAVAILABLE, "the gateway is away")
        self.batches.append(batch)
        return ingest_pb2.ImportAck(batch_id=batch.batch_id, accepted=len(batch.intervals))

    def seconds_per_app(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for batch in self.batches:
            for raw in batch.intervals:
                i = decode_interval(raw)
                if not i["idle"]:
                    out[i["app"]] = out.get(i["app"], 0) + (i["end"] - i["start"]) / 1000
        return out


@pytest.fixture
def clock():
    now = [T0 / 1000]
    return now


@pytest.fixture
def store(tmp_path, clock):
    with AwStore(tmp_path / "aw.sqlite3", clock=lambda: clock[0]) as s:
        s.create_bucket("aw-watcher-window_h", type="currentwindow", client="aw-watcher-window", hostname="h")
        s.create_bucket("aw-watcher-afk_h", type="afkstatus", client="aw-watcher-afk", hostname="h")
        yield s


def forwarder(store, tmp_path, clock, gateway) -> Forwarder:
    """A forwarder of a collector whose own intervals are all delivered."""
    now_ms = lambda: int(clock[0] * 1000)  # noqa: E731
    return Forwarder(store, tmp_path / "forwarded.json", gateway, PrivacySettings, now_ms, lambda: clock[0], every_s=1)


def report(store, start_ms: int, end_ms: int, app: str) -> None:
    store.insert("aw-watcher-window_h", [Span(start_ms, end_ms, {"app": app, "title": "t"})])
    store.insert("aw-watcher-afk_h", [Span(start_ms, end_ms, {"status": "not-afk"})])


def test_only_settled_time_is_forwarded_in_slices_and_each_second_once(store, tmp_path, clock):
    gateway = Gateway()
    report(store, T0 - 40 * 60_000, T0 - 20 * 60_000, "Code")
    report(store, T0 - 20 * 60_000, T0, "Terminal")  # the last 5 minutes of it are not settled yet
    f = forwarder(store, tmp_path, clock, gateway)
    while f.once():
        pass
    assert f.status.forwarded_until_ms == T0 - SETTLE_MS
    assert gateway.seconds_per_app() == {"Code": 1200.0, "Terminal": 900.0}
    assert all(len(b.intervals) for b in gateway.batches) and {b.source for b in gateway.batches} == {"window"}
    for batch in gateway.batches:  # a slice at most SLICE_MS long
        records = [decode_interval(raw) for raw in batch.intervals]
        assert max(r["end"] for r in records) - min(r["start"] for r in records) <= SLICE_MS

    clock[0] += 10 * 60  # ten minutes later the rest has settled; nothing already sent goes again
    while f.once():
        pass
    assert gateway.seconds_per_app() == {"Code": 1200.0, "Terminal": 1200.0}


def test_nothing_is_forwarded_before_the_collector_s_own_intervals_of_that_time_are_delivered(store, tmp_path, clock):
    gateway = Gateway()
    report(store, T0 - 30 * 60_000, T0 - 10 * 60_000, "Code")
    delivered = [T0 - 25 * 60_000]
    f = Forwarder(
        store, tmp_path / "f.json", gateway, PrivacySettings, lambda: delivered[0], lambda: clock[0], every_s=1
    )
    while f.once():
        pass
    assert gateway.seconds_per_app() == {"Code": 300.0}  # only up to what the collector has delivered
    delivered[0] = T0
    while f.once():
        pass
    assert gateway.seconds_per_app() == {"Code": 1200.0}


def test_a_failed_call_forwards_the_slice_again_and_a_restart_goes_on_where_it_was(store, tmp_path, clock):
    gateway = Gateway()
    report(store, T0 - 50 * 60_000, T0 - 10 * 60_000, "Code")
    f = forwarder(store, tmp_path, clock, gateway)
    assert f.once()  # the first slice
    gateway.failing = True
    with pytest.raises(RpcError):
        f.once()
    reached = f.status.forwarded_until_ms
    gateway.failing = False
    again = forwarder(store, tmp_path, clock, gateway)  # the collector restarted
    assert again.status.forwarded_until_ms == reached
    while again.once():
        pass
    assert gateway.seconds_per_app() == {"Code": 2400.0}


def test_nothing_waiting_forwards_nothing(store, tmp_path, clock):
    gateway = Gateway()
    f = forwarder(store, tmp_path, clock, gateway)
    assert not f.once()
    assert gateway.batches == []


def test_after_a_refused_call_the_next_one_opens_a_channel_with_the_credentials_as_they_are_now():
    """A renewal retires the certificate the channel was opened with: the call that fails drops the channel, and the
    next one opens a new one (the agent's opener reads the credentials again)."""
    opened: list[str] = []
    credentials = ["first certificate"]

    class Channel:
        def __init__(self, certificate: str) -> None:
            self.certificate, self.closed = certificate, False

        def call(self, method, batch, reply_type, timeout_s):
            assert method == "/productimon.ingest.v1.Ingest/Import" and not self.closed
            if self.certificate != credentials[0]:
                raise RpcError(StatusCode.UNAUTHENTICATED, "this certificate was replaced by a renewal")
            return reply_type(batch_id=batch.batch_id, accepted=len(batch.intervals))

        def close(self) -> None:
            self.closed = True

    def open_channel() -> Channel:
        opened.append(credentials[0])
        return Channel(credentials[0])

    call = ImportChannel(open_channel)
    batch = ingest_pb2.ImportBatch(batch_id=1, intervals=[b"x"])
    assert call(batch).accepted == 1 and call(batch).accepted == 1 and opened == ["first certificate"]
    credentials[0] = "renewed certificate"
    with pytest.raises(RpcError):
        call(batch)
    assert call(batch).accepted == 1
    assert opened == ["first certificate", "renewed certificate"]
