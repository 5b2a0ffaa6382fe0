"""The whole pipeline through the real services: mTLS gateway -> broker -> faust worker -> warehouse."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from collector.transport import IngestClient
from schemas.codec import encode_interval
from tests.conftest import eventually
from warehouse.queries import time_per_app

pytestmark = pytest.mark.e2e

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
PERIOD = (T0 - timedelta(hours=1), T0 + timedelta(hours=2))


def interval(seq: int, start_s: float, seconds: float, app: str, *, url=None, idle=False, keys=0, clicks=0) -> dict:
    start = T0 + timedelta(seconds=start_s)
    return {
        "event_id": str(uuid.uuid4()),
        "device_seq": seq,
        "start": int(start.timestamp() * 1000),
        "end": int((start + timedelta(seconds=seconds)).timestamp() * 1000),
        "app": app,
        "title": f"{app} window",
        "url": url,
        "keystrokes": keys,
        "clicks": clicks,
        "idle": idle,
    }


def seconds_per_app(client, user_id: str) -> dict[str, float]:
    df = time_per_app(client, user_id, *PERIOD)
    return dict(zip(df["app"], df["seconds"], strict=True))


def test_intervals_arrive_in_the_warehouse_with_exact_seconds_per_app(stack, enroll, warehouse_client):
    identity, creds = enroll()
    batch = [
        interval(0, 0, 60, "Code", keys=120, clicks=3),
        interval(1, 60, 30.5, "Code", keys=40),
        interval(2, 90.5, 45, "Firefox", url="https://www.example.com/account/settings?session=SECRET#top"),
        interval(3, 135.5, 300, "Firefox", url="https://www.example.com/account", idle=True),
        interval(4, 435.5, 12.25, "Terminal", keys=30),
    ]
    with IngestClient(stack.settings.gateway_address, creds) as client:
        ack = client.send_batch([encode_interval(i) for i in batch], batch_id=7)
    assert (ack.batch_id, ack.accepted, list(ack.errors)) == (7, 5, [])

    expected = {"Code": 90.5, "Firefox": 45.0, "Terminal": 12.25}
    assert eventually(lambda: seconds_per_app(warehouse_client, identity.user_id) == expected)

    rows = warehouse_client.query(
        "SELECT site, device_id, user_id FROM intervals WHERE user_id = {u:String} AND app = 'Firefox'",
        parameters={"u": identity.user_id},
    ).result_rows
    assert rows == [("example.com", identity.device_id, identity.user_id)] * 2


def test_query_string_never_reaches_the_warehouse(stack, enroll, warehouse_client):
    identity, creds = enroll()
    secret = f"token-{uuid.uuid4().hex}"
    urls = [
        f"https://mail.example.org/inbox?auth={secret}",
        f"https://alice:{secret}@intranet.example.org:8443/wiki/{secret}#{secret}",
        f"https://www.google.com/search?q={secret}",
        f"file:///home/alice/{secret}.txt",
    ]
    with IngestClient(stack.settings.gateway_address, creds) as client:
        ack = client.send_batch(
            [encode_interval(interval(i, i * 10, 10, "Firefox", url=u)) for i, u in enumerate(urls)]
        )
    assert ack.accepted == 4

    def stored_sites() -> list[str]:
        return [
            r[0]
            for r in warehouse_client.query(
                "SELECT site FROM intervals FINAL WHERE user_id = {u:String} ORDER BY start",
                parameters={"u": identity.user_id},
            ).result_rows
        ]

    assert eventually(lambda: len(stored_sites()) == 4)
    assert stored_sites() == ["mail.example.org", "intranet.example.org", "google.com/search", "(local file)"]
    leaked = warehouse_client.query(
        "SELECT count() FROM intervals WHERE user_id = {u:String} AND "
        "(position(site, {s:String}) > 0 OR position(title, {s:String}) > 0)",
        parameters={"u": identity.user_id, "s": secret},
    ).result_rows[0][0]
    assert leaked == 0


def test_sending_the_same_batch_twice_changes_no_total(stack, enroll, warehouse_client):
    identity, creds = enroll()
    batch = [encode_interval(interval(i, i * 60, 60, "Code" if i % 2 else "Slack")) for i in range(10)]
    sentinel = [encode_interval(interval(99, 3600, 1, "Sentinel"))]
    with IngestClient(stack.settings.gateway_address, creds) as client:
        assert client.send_batch(batch).accepted == 10
        expected = {"Code": 300.0, "Slack": 300.0}
        assert eventually(lambda: seconds_per_app(warehouse_client, identity.user_id) == expected)
        assert client.send_batch(batch).accepted == 10
        # One device's intervals stay in order on one partition: once the sentinel sent after the
        # duplicate is stored, the duplicate has been through the worker too.
        assert client.send_batch(sentinel).accepted == 1
    assert eventually(lambda: "Sentinel" in seconds_per_app(warehouse_client, identity.user_id))
    assert seconds_per_app(warehouse_client, identity.user_id) == {**expected, "Sentinel": 1.0}


def test_a_batch_with_bad_records_stores_the_rest_and_names_each_problem(stack, enroll, warehouse_client):
    identity, creds = enroll()
    good = interval(0, 0, 20, "Code")
    backwards = interval(1, 100, 10, "Code") | {"end": int(T0.timestamp() * 1000)}
    tomorrow = int((datetime.now(UTC) + timedelta(days=1)).timestamp() * 1000)
    future = interval(2, 0, 10, "Code") | {"start": tomorrow, "end": tomorrow + 10_000}
    records = [encode_interval(good), b"\xc3\x01garbage", encode_interval(backwards), encode_interval(future)]
    records.append(encode_interval(interval(3, 30, 5, "Terminal")))
    with IngestClient(stack.settings.gateway_address, creds) as client:
        ack = client.send_batch(records)
    assert ack.accepted == 2
    reasons = {e.index: e.reason for e in ack.errors}
    assert set(reasons) == {1, 2, 3}
    assert "ActivityInterval" in reasons[1]
    assert reasons[2] == "end is before start"
    assert reasons[3] == "interval ends in the future"
    assert eventually(lambda: seconds_per_app(warehouse_client, identity.user_id) == {"Code": 20.0, "Terminal": 5.0})


def test_identity_comes_from_the_certificate_and_users_see_only_their_own(stack, enroll, warehouse_client):
    alice, alice_creds = enroll()
    bob, bob_creds = enroll()
    with IngestClient(stack.settings.gateway_address, alice_creds) as client:
        client.send_batch([encode_interval(interval(0, 0, 40, "AliceApp"))])
    with IngestClient(stack.settings.gateway_address, bob_creds) as client:
        client.send_batch([encode_interval(interval(0, 0, 25, "BobApp"))])
    assert eventually(lambda: seconds_per_app(warehouse_client, alice.user_id) == {"AliceApp": 40.0})
    assert eventually(lambda: seconds_per_app(warehouse_client, bob.user_id) == {"BobApp": 25.0})
    devices = warehouse_client.query(
        "SELECT DISTINCT device_id FROM intervals WHERE user_id = {u:String}", parameters={"u": bob.user_id}
    ).result_rows
    assert devices == [(bob.device_id,)]
