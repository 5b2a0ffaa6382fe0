"""Synthetic device streams, their reference sessions, and a device that sends like a collector.

For the fault tests and the delivery benchmark: a stream of realistic intervals (activities of a few
intervals, short and long gaps, idle stretches), what the pure sessionizer makes of it in one uninterrupted
run, what the warehouse holds, and a thread that sends a stream in batches through the real gateway, each
batch again until it is acknowledged, as the collector's uploader does.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc

from collector.transport import IngestClient
from infra.devices import new_user_device
from plumbing.settings import Settings
from schemas.codec import encode_interval
from stream_jobs.sessionize import advance
from stream_jobs.trim import site_of

_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
BATCH = 100

APPS = [
    ("Code", None),
    ("Firefox", "https://github.com/org/repo?tab=1"),
    ("Firefox", "https://docs.python.org/3/"),
    ("Slack", None),
    ("Terminal", None),
]


def realistic_stream(seed: int, n: int, until: datetime) -> list[dict]:
    """n intervals of one device ending before `until`: activities of a few intervals, gaps, idle stretches."""
    rng = random.Random(seed)
    t = int((until - timedelta(days=7)).timestamp() * 1000)
    out, seq = [], 0
    while len(out) < n:
        app, url = rng.choice(APPS)
        idle = rng.random() < 0.08
        for _ in range(rng.randint(1, 6)):
            length = rng.randint(1_000, 60_000)
            out.append(
                {
                    "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "device_seq": seq,
                    "start": t,
                    "end": t + length,
                    "app": app,
                    "title": f"{app} {seq % 3}",
                    "url": url,
                    "keystrokes": 0 if idle else rng.randint(0, 90),
                    "clicks": 0 if idle else rng.randint(0, 9),
                    "idle": idle,
                }
            )
            seq += 1
            t += length + rng.choice([0, 0, 500, 5_000, 29_000, 31_000, 120_000, 400_000])
    out = out[:n]
    # A long stream would run past `until`: move it back whole, so it ends before.
    overshoot = max(0, out[-1]["end"] - int(until.timestamp() * 1000)) if out else 0
    for interval in out:
        interval["start"] -= overshoot
        interval["end"] -= overshoot
    return out


def reference(stream: list[dict], user_id: str, device_id: str, rules) -> tuple[dict, dict]:
    """The uninterrupted run: the pure sessionizer over the whole stream at once."""
    intervals = [
        {**i, "user_id": user_id, "device_id": device_id, "site": site_of(i["url"]) or "", "title": i["title"] or ""}
        for i in stream
    ]
    result = advance(None, intervals, rules)
    app = {
        s.session_id: (s.app, s.site, s.start, s.end, s.active_ms, s.keystrokes, s.clicks, s.intervals)
        for s in result.app_sessions
    }
    focus = {
        s.session_id: (s.start, s.end, s.active_ms, s.context_switches, s.keystrokes, s.clicks)
        for s in result.focus_sessions
    }
    return app, focus


def stored(client, user_id: str) -> tuple[dict, dict]:
    ms = "toUnixTimestamp64Milli"
    app = client.query(
        f"SELECT session_id, app, site, {ms}(start), {ms}(`end`), active_ms, keystrokes, clicks, intervals "
        "FROM app_sessions FINAL WHERE user_id = {u:String}",
        parameters={"u": user_id},
    ).result_rows
    focus = client.query(
        f"SELECT session_id, {ms}(start), {ms}(`end`), active_ms, context_switches, keystrokes, clicks "
        "FROM focus_sessions FINAL WHERE user_id = {u:String}",
        parameters={"u": user_id},
    ).result_rows
    return {r[0]: tuple(r[1:]) for r in app}, {r[0]: tuple(r[1:]) for r in focus}


class StreamingDevice(threading.Thread):
    """One device sending its stream in batches, each again until acknowledged; bounded in time."""

    def __init__(
        self, settings: Settings, seed: int, n: int, deadline_s: float = 240, batch: int = BATCH, pace_s: float = 0
    ) -> None:
        super().__init__(daemon=True)
        self.batch = batch
        self.pace_s = pace_s  # a pause between batches: a device streaming as it works, not a backlog
        self.identity, self.creds = new_user_device(settings)
        self.address = settings.gateway_address
        self.stream = realistic_stream(seed, n, datetime.now(UTC))
        self.deadline = time.monotonic() + deadline_s
        self.acked = 0
        self.retries = 0
        # Seconds from a batch's first send to its acknowledgement (when it was stored, by default), per batch.
        self.latencies: list[float] = []
        self.problem: str | None = None

    def run(self) -> None:
        client = None
        try:
            for start in range(0, len(self.stream), self.batch):
                batch = [encode_interval(i) for i in self.stream[start : start + self.batch]]
                if start and self.pace_s:
                    time.sleep(self.pace_s)
                first_sent = time.monotonic()
                while True:
                    if time.monotonic() > self.deadline:
                        self.problem = f"batch at {start} not acknowledged before the deadline"
                        return
                    try:
                        client = client or IngestClient(self.address, self.creds, timeout_s=15)
                        ack = client.send_batch(batch, batch_id=start)
                    except grpc.RpcError as exc:
                        if exc.code() not in _RETRYABLE:
                            self.problem = f"refused: {exc.code().name} {exc.details()}"
                            return
                        self.retries += 1
                        client.close()
                        client = None
                        time.sleep(0.3)
                        continue
                    if ack.accepted != len(batch) or ack.errors:
                        self.problem = f"batch at {start}: {ack.accepted} accepted, errors {list(ack.errors)[:3]}"
                        return
                    self.acked += len(batch)
                    self.latencies.append(time.monotonic() - first_sent)
                    break
        finally:
            if client is not None:
                client.close()


@dataclass(frozen=True)
class Exactness:
    """How one device's stored data differs from what it sent: all zero when exactly-once held."""

    lost: int  # sent intervals (device_seqs) the warehouse does not hold
    doubled: int  # raw rows beyond one per sent interval
    session_mismatches: int  # app and focus sessions that differ from the uninterrupted reference
    rollup_drift: int  # rollup rows that differ from raw (warehouse.rollups.rollup_drift)
    active_drift_ms: int  # hourly rollup's active time minus the sent intervals' active time

    @property
    def exact(self) -> bool:
        return not (self.lost or self.doubled or self.session_mismatches or self.rollup_drift or self.active_drift_ms)


def exactness(client, device: StreamingDevice, rules) -> Exactness:
    """Compare everything the warehouse holds of `device` with the reference computed from its stream."""
    from warehouse.rollups import rollup_drift

    user, device_id = device.identity.user_id, device.identity.device_id
    rows, distinct = client.query(
        "SELECT count(), uniqExact(device_seq) FROM intervals FINAL WHERE user_id = {u:String}",
        parameters={"u": user},
    ).result_rows[0]
    expected_app, expected_focus = reference(device.stream, user, device_id, rules)
    got_app, got_focus = stored(client, user)
    mismatches = sum(
        1
        for expected, got in ((expected_app, got_app), (expected_focus, got_focus))
        for key in set(expected) | set(got)
        if expected.get(key) != got.get(key)
    )
    active = sum(i["end"] - i["start"] for i in device.stream if not i["idle"])
    rolled = client.query(
        "SELECT sum(active_ms) FROM usage_by_hour FINAL WHERE user_id = {u:String}", parameters={"u": user}
    ).result_rows[0][0]
    return Exactness(
        lost=len(device.stream) - distinct,
        doubled=rows - distinct,
        session_mismatches=mismatches,
        rollup_drift=len(rollup_drift(client, user)),
        active_drift_ms=int(rolled) - active,
    )
