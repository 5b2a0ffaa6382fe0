"""The sybil attack on Insights through the real stack: nine accounts of the attacker's own, each enrolled through
the gateway with a real device certificate, send a made-up fortnight of office hours (the gateway takes history up
to 30 days old), to make a crowd of ten with one victim. None of them counts: their days reached the gateway days
after they happened, so they prove no presence (warehouse/insights.py). The release describes the victim alone,
which the noisy count keeps from being shown and the noise keeps from being read (tests/unit/test_insight_rules.py
has the statistics).

The victim's own fortnight is written to the warehouse as the worker stores a running collector's time (received a
minute after it happened), since a test cannot wait two weeks.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from collector.transport import IngestClient
from schemas.codec import encode_interval
from tests.conftest import eventually, store_recorded
from warehouse.insight_rules import contribution, week_of
from warehouse.insights import contributions

pytestmark = pytest.mark.e2e

# Two weeks back: every day of it is over a day old, and within what the gateway accepts.
WEEK = week_of(datetime.now(UTC).date()) - timedelta(weeks=2)
FORTNIGHT = [WEEK - timedelta(days=7) + timedelta(days=n) for n in range(14)]


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def office_hours(days: list[date], hours: range) -> list[dict]:
    return [
        {
            "event_id": str(uuid.uuid4()),
            "device_seq": n,
            "start": int(at(day, hour).timestamp() * 1000),
            "end": int(at(day, hour, 50).timestamp() * 1000),
            "app": "Code",
            "title": "",
            "url": None,
            "keystrokes": 5,
            "clicks": 1,
            "idle": False,
        }
        for n, (day, hour) in enumerate((d, h) for d in days for h in hours)
    ]


def victim_recorded_live(client, hours: range) -> str:
    user = f"victim-{uuid.uuid4().hex[:8]}"
    rows = [
        {**i, "user_id": user, "device_id": "victim-laptop", "site": "", "received_at": i["end"] + 60_000}
        for i in office_hours(FORTNIGHT, hours)
    ]
    store_recorded(client, rows, [(user, "victim-laptop")])
    return user


def test_nine_sybils_enrolled_through_the_gateway_make_no_crowd_around_one_victim(stack, enroll, warehouse_client):
    sybils = []
    for _ in range(9):
        identity, creds = enroll()
        batch = office_hours(FORTNIGHT, range(8, 18))
        with IngestClient(stack.settings.gateway_address, creds) as client:
            for n in range(0, len(batch), 50):
                ack = client.send_batch([encode_interval(i) for i in batch[n : n + 50]], batch_id=n)
                assert (ack.accepted, list(ack.errors)) == (len(batch[n : n + 50]), [])
        sybils.append((identity.user_id, len(batch)))
    victim_recorded_live(warehouse_client, range(20, 24))

    def stored(user: str) -> int:
        sql = "SELECT count() FROM intervals FINAL WHERE user_id = {u:String}"
        return warehouse_client.query(sql, parameters={"u": user}).result_rows[0][0]

    for user, sent in sybils:
        eventually(lambda u=user, n=sent: stored(u) == n, 120)

    victim = {
        "weekday": contribution([1] * 7),
        "hour": contribution([1 if h >= 20 else 0 for h in range(24)]),
    }
    for min_days in (7, 1):  # even one day in the week would do: the sybils have none recorded live
        parts = contributions(warehouse_client, WEEK, min_days)
        for figure, expected in victim.items():
            assert parts[figure] == [pytest.approx(expected)], (figure, min_days)
