"""Demo data: a week of realistic activity for a demo user with two devices, sent through the real gateway.

The generator is pure and seeded, so tests know exactly what was sent; sending goes through the same
mTLS gRPC path a collector uses, with device certificates from the stack's CA.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from collector.transport import IngestClient
from infra.devices import enroll_device, new_account
from plumbing.settings import Settings
from schemas.codec import encode_interval

DEMO_EMAIL = "demo@productimon.local"
MAX_INTERVAL_S = 60  # docs/design.md "Event contract": a long activity becomes consecutive intervals of at most
# max_interval

# (app, title, url, keys per minute, clicks per minute, weight)
Activity = tuple[str, str, str | None, int, int, int]
WORK: list[Activity] = [
    ("Code", "app.py — productimon", None, 120, 6, 30),
    ("Code", "test_pipeline.py — productimon", None, 100, 5, 12),
    ("Terminal", "pytest -q", None, 60, 2, 10),
    (
        "Firefox",
        "Pull request #42 · productimon",
        "https://github.com/productimon/productimon/pull/42?diff=split",
        15,
        12,
        8,
    ),
    ("Firefox", "asyncio — Python docs", "https://docs.python.org/3/library/asyncio-task.html#timeouts", 5, 8, 6),
    ("Firefox", "faust take_events - Google Search", "https://www.google.com/search?q=faust+take_events", 10, 10, 4),
    ("Slack", "#engineering", None, 70, 8, 10),
    ("Thunderbird", "Inbox", None, 40, 10, 6),
    ("Zoom", "Team stand-up", None, 5, 1, 4),
]
HOME: list[Activity] = [
    ("Firefox", "YouTube", "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=42", 2, 3, 20),
    ("Firefox", "Kafka (novelist) - Wikipedia", "https://en.wikipedia.org/wiki/Franz_Kafka#Life", 3, 6, 10),
    ("Firefox", "Google Maps", "https://www.google.com/maps/place/Prague", 4, 15, 5),
    ("Spotify", "Spotify Premium", None, 1, 4, 8),
    ("Steam", "Factorio", None, 90, 60, 10),
    ("Code", "garden-planner — main.py", None, 90, 5, 8),
]


@dataclass(frozen=True)
class DemoDevice:
    name: str
    activities: list[Activity]
    # Per day of week (Monday = 0): the (start hour, end hour) windows in which the device is used.
    windows: Callable[[int], list[tuple[float, float]]]


def _work_windows(weekday: int) -> list[tuple[float, float]]:
    return [(9.0, 12.0), (13.0, 17.5)] if weekday < 5 else []


def _home_windows(weekday: int) -> list[tuple[float, float]]:
    return [(19.5, 22.0)] if weekday < 5 else [(10.0, 12.5), (15.0, 18.0), (20.0, 23.0)]


DEVICES = (DemoDevice("work-laptop", WORK, _work_windows), DemoDevice("home-desktop", HOME, _home_windows))


def _interval(rng: random.Random, seq: int, start: datetime, end: datetime, act: Activity, idle: bool) -> dict:
    minutes = (end - start).total_seconds() / 60
    app, title, url, keys, clicks, _ = act
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "device_seq": seq,
        "start": int(start.timestamp() * 1000),
        "end": int(end.timestamp() * 1000),
        "app": app,
        "title": title,
        "url": url,
        "keystrokes": 0 if idle else int(rng.uniform(0.6, 1.4) * keys * minutes),
        "clicks": 0 if idle else int(rng.uniform(0.6, 1.4) * clicks * minutes),
        "idle": idle,
    }


def demo_intervals(device: DemoDevice, until: datetime, days: int = 7, seed: int = 7) -> Iterator[dict]:
    """A device's intervals over the `days` before `until`: activities of 1-25 min, cut every 60 s,
    with the occasional idle stretch (coffee, a call away from the desk)."""
    rng = random.Random(f"{seed}:{device.name}")
    weights = [a[5] for a in device.activities]
    seq = 0
    first_day = (until - timedelta(days=days)).date()
    for day_offset in range(days + 1):
        day = first_day + timedelta(days=day_offset)
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        for start_h, end_h in device.windows(day.weekday()):
            t = midnight + timedelta(hours=start_h + rng.uniform(0, 0.25))
            window_end = min(midnight + timedelta(hours=end_h + rng.uniform(-0.25, 0.25)), until)
            while t < window_end:
                idle = rng.random() < 0.07
                act = rng.choices(device.activities, weights)[0]
                block_end = min(t + timedelta(minutes=rng.uniform(3, 15) if idle else rng.uniform(1, 25)), window_end)
                while t < block_end:
                    end = min(t + timedelta(seconds=MAX_INTERVAL_S), block_end)
                    yield _interval(rng, seq, t, end, act, idle)
                    seq += 1
                    t = end


@dataclass(frozen=True)
class DemoAccount:
    user_id: str
    email: str
    password: str


def demo_account(settings: Settings) -> DemoAccount | None:
    path = settings.data_dir / "demo" / "account.json"
    return DemoAccount(**json.loads(path.read_text())) if path.exists() else None


def _create_demo_account(settings: Settings) -> DemoAccount:
    """Sign the demo user up through the gateway once; the password is kept (0600) for signing in."""
    user_id, email, password = new_account(settings, DEMO_EMAIL)
    account = DemoAccount(user_id, email, password)
    path = settings.data_dir / "demo" / "account.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(account), f)
    return account


def send_demo_week(
    settings: Settings,
    until: datetime,
    progress: Callable[[str], None] = print,
    batch_size: int = 500,
) -> tuple[DemoAccount, dict[str, int]]:
    """Sign up the demo user, enroll both devices and send their week through the gateway, as collectors
    would; returns the account and the intervals accepted per device."""
    account = demo_account(settings) or _create_demo_account(settings)
    accepted: dict[str, int] = {}
    for device in DEVICES:
        _, creds = enroll_device(settings, account.email, account.password, device.name)
        records = [encode_interval(i) for i in demo_intervals(device, until)]
        batches = [records[i : i + batch_size] for i in range(0, len(records), batch_size)]
        with IngestClient(settings.gateway_address, creds) as client:
            acks = client.upload(batches)
        refused = [e.reason for ack in acks for e in ack.errors]
        if refused:
            raise RuntimeError(f"the gateway refused {len(refused)} demo intervals, first: {refused[0]}")
        accepted[device.name] = sum(ack.accepted for ack in acks)
        progress(f"  demo: sent {accepted[device.name]} intervals of {account.email} on {device.name}")
    return account, accepted
