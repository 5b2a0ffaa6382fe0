"""ActivityWatch history imported through the real gateway, broker, worker and warehouse (docs/activitywatch.md)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from collector.aw_import import send_as_device
from collector.transport import IngestClient
from schemas.activitywatch import plan_import, read_export
from schemas.codec import encode_interval
from tests.conftest import eventually
from warehouse.queries import time_per_app, time_per_site

pytestmark = pytest.mark.e2e

# A working morning a year and a day ago, and one of yesterday (both at 09:00 UTC).
YEAR_AGO = (datetime.now(UTC) - timedelta(days=366)).replace(hour=9, minute=0, second=0, microsecond=0)
YESTERDAY = (datetime.now(UTC) - timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)


def event(at: datetime, seconds: float, **data) -> dict:
    return {"timestamp": at.isoformat(), "duration": seconds, "data": data}


def bucket(kind: str, watcher: str, host: str, events: list[dict]) -> tuple[str, dict]:
    bucket_id = f"{watcher}_{host}"
    return bucket_id, {"id": bucket_id, "type": kind, "client": watcher, "hostname": host, "events": events}


def morning(day: datetime, host: str = "laptop") -> dict:
    """An hour: 20 min of Code, 10 min of Chrome on docs.python.org, 10 min away in Chrome, 20 min Terminal."""
    t = day
    windows = [
        event(t, 1200, app="Code", title="main.py - project"),
        event(t + timedelta(minutes=20), 1200, app="Google-chrome", title="3.12 docs"),
        event(t + timedelta(minutes=40), 1200, app="Terminal", title="bash"),
    ]
    afk = [
        event(t, 1800, status="not-afk"),
        event(t + timedelta(minutes=30), 600, status="afk"),
        event(t + timedelta(minutes=40), 1200, status="not-afk"),
    ]
    tabs = [event(t + timedelta(minutes=20), 1200, url="https://docs.python.org/3/library/", title="docs")]
    return dict(
        [
            bucket("currentwindow", "aw-watcher-window", host, windows),
            bucket("afkstatus", "aw-watcher-afk", host, afk),
            bucket("web.tab.current", "aw-watcher-web-chrome", host, tabs),
        ]
    )


def export(*days: datetime) -> bytes:
    buckets: dict = {}
    for day in days:
        for bucket_id, content in morning(day).items():
            if bucket_id in buckets:
                buckets[bucket_id]["events"] += content["events"]
            else:
                buckets[bucket_id] = content
    return json.dumps({"buckets": buckets}).encode()


def per_app(client, user_id: str, day: datetime) -> dict[str, float]:
    df = time_per_app(client, user_id, day - timedelta(hours=1), day + timedelta(hours=2))
    return dict(zip(df["app"], df["seconds"], strict=True))


def per_site(client, user_id: str, day: datetime) -> dict[str, float]:
    df = time_per_site(client, user_id, day - timedelta(hours=1), day + timedelta(hours=2))
    return dict(zip(df["site"], df["seconds"], strict=True))


MORNING_APPS = {"Code": 1200.0, "Google-chrome": 600.0, "Terminal": 1200.0}


def test_an_export_imports_once_with_its_apps_sites_and_idle_time_however_old(stack, enroll, warehouse_client):
    identity, creds = enroll()
    plan = plan_import(read_export(export(YEAR_AGO, YESTERDAY)))
    summary = send_as_device(stack.settings.gateway_address, creds, plan)
    assert summary.sent and not summary.refused and not summary.problems
    assert summary.imported == plan.intervals and summary.already == 0
    for day in (YEAR_AGO, YESTERDAY):
        assert eventually(lambda day=day: per_app(warehouse_client, identity.user_id, day) == MORNING_APPS)
        assert per_site(warehouse_client, identity.user_id, day) == {"docs.python.org": 600.0}

    again = send_as_device(stack.settings.gateway_address, creds, plan_import(read_export(export(YEAR_AGO, YESTERDAY))))
    assert (again.imported, again.already, sum(again.refused.values())) == (0, plan.intervals, 0)
    assert per_app(warehouse_client, identity.user_id, YESTERDAY) == MORNING_APPS
    stored = warehouse_client.query(
        "SELECT count() FROM intervals FINAL WHERE user_id = {u:String}", parameters={"u": identity.user_id}
    ).result_rows[0][0]
    assert stored == plan.intervals


def live(seq: int, start: datetime, seconds: float, app: str, idle: bool = False) -> bytes:
    return encode_interval(
        {
            "event_id": str(uuid.uuid4()),
            "device_seq": seq,
            "start": int(start.timestamp() * 1000),
            "end": int((start + timedelta(seconds=seconds)).timestamp() * 1000),
            "app": app,
            "title": None,
            "url": None,
            "keystrokes": 0,
            "clicks": 0,
            "idle": idle,
        }
    )


def test_time_the_device_recorded_itself_is_never_counted_twice(stack, enroll, warehouse_client):
    """The collector recorded 09:10-09:30 live; the export covers the whole hour: only what lies outside that is
    imported, so each second counts once."""
    identity, creds = enroll()
    with IngestClient(stack.settings.gateway_address, creds) as client:
        recorded = [live(n, YESTERDAY + timedelta(minutes=10 + n), 60, "Code") for n in range(20)]
        assert client.send_batch(recorded).accepted == 20
    summary = send_as_device(stack.settings.gateway_address, creds, plan_import(read_export(export(YESTERDAY))))
    # Chrome's active ten minutes (09:20-09:30) lie wholly inside the recorded time; Code's first piece is cut.
    assert summary.overlapped == 1 and not summary.refused
    assert eventually(
        lambda: per_app(warehouse_client, identity.user_id, YESTERDAY) == {"Code": 1800.0, "Terminal": 1200.0}
    )
    active = warehouse_client.query(
        "SELECT toUnixTimestamp64Milli(start), toUnixTimestamp64Milli(`end`) FROM intervals FINAL "
        "WHERE user_id = {u:String} AND NOT idle ORDER BY start",
        parameters={"u": identity.user_id},
    ).result_rows
    for (_, end), (start, _) in zip(active, active[1:], strict=False):
        assert start >= end, "two intervals cover the same moment"


def test_a_dashboard_token_imports_into_its_own_account_only(stack, enroll, warehouse_client):
    from infra.devices import new_account
    from schemas.api_client import import_activity, list_devices, log_in

    ca = (stack.settings.pki_dir / "ca.crt").read_bytes()
    public = stack.settings.gateway_public_address
    user_id, email, password = new_account(stack.settings)
    token = log_in(public, ca, email, password).token
    victim, _ = enroll()
    plan = plan_import(read_export(export(YESTERDAY)))
    with pytest.raises(Exception, match="there is no device"):
        import_activity(public, ca, token, plan, device_id=victim.device_id)
    for forged in ("", "not-a-token", token[:-4] + "AAAA"):  # no token, a made-up one, a tampered one
        with pytest.raises(Exception, match="UNAUTHENTICATED|token|authorization"):
            import_activity(public, ca, forged, plan)
    assert per_app(warehouse_client, victim.user_id, YESTERDAY) == {}

    summary = import_activity(public, ca, token, plan)
    assert summary.imported == plan.intervals
    assert eventually(lambda: per_app(warehouse_client, user_id, YESTERDAY) == MORNING_APPS)
    assert per_app(warehouse_client, victim.user_id, YESTERDAY) == {}
    assert list_devices(public, ca, token) == []  # a stream is no enrolled device
    names = warehouse_client.query(
        "SELECT name FROM devices FINAL WHERE user_id = {u:String}", parameters={"u": user_id}
    ).result_rows
    assert names == [("laptop (ActivityWatch)",)]


def test_a_device_imports_only_as_itself(stack, enroll):
    import grpc

    from collector.transport import channel_credentials
    from schemas.wire import ingest_pb2, ingest_pb2_grpc

    _, creds = enroll()
    other, _ = enroll()
    records = [live(0, YESTERDAY, 60, "Code")]
    with grpc.secure_channel(stack.settings.gateway_address, channel_credentials(creds)) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)

        def send(**fields):
            batch = ingest_pb2.ImportBatch(batch_id=1, intervals=records, **fields)
            return list(stub.Import(iter([batch]), timeout=30))

        with pytest.raises(grpc.RpcError) as refused:
            send(origin="activitywatch", host="laptop", source="window", device_id=other.device_id)
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        for fields, why in (
            ({"origin": "toggl", "host": "laptop", "source": "window"}, "unknown origin 'toggl'"),
            ({"origin": "activitywatch", "host": "laptop", "source": "keylog"}, "unknown source kind 'keylog'"),
            ({"origin": "activitywatch", "host": " ", "source": "window"}, "the host name is empty"),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                send(**fields)
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert why in refused.value.details()


def rows_of_streams(client, user_id: str) -> dict[str, int]:
    return {
        table: client.query(
            f"SELECT count() FROM {table} FINAL WHERE user_id = {{u:String}}", parameters={"u": user_id}
        ).result_rows[0][0]
        for table in ("intervals", "source_intervals", "import_streams")
    }


def test_deleting_a_device_s_data_deletes_what_was_imported_for_it(stack, warehouse_client):
    from infra.devices import enroll_device, new_account
    from schemas.api_client import delete_data, log_in

    ca = (stack.settings.pki_dir / "ca.crt").read_bytes()
    public = stack.settings.gateway_public_address
    user_id, email, password = new_account(stack.settings)
    _, creds = enroll_device(stack.settings, email, password, "laptop")
    raw = json.loads(export(YESTERDAY))
    editor = [event(YESTERDAY, 300, project="/srv/rocket", language="c")]
    raw["buckets"].update(dict([bucket("app.editor.activity", "aw-watcher-vim", "laptop", editor)]))
    summary = send_as_device(stack.settings.gateway_address, creds, plan_import(read_export(json.dumps(raw))))
    assert summary.imported and len(summary.streams) == 2
    assert eventually(lambda: all(rows_of_streams(warehouse_client, user_id).values()))
    device_id = log_in(public, ca, email, password)  # the device's id, as the dashboard lists it
    token = device_id.token
    from schemas.api_client import list_devices

    (laptop,) = list_devices(public, ca, token)
    report = delete_data(public, ca, token, "device", device_id=laptop.device_id)
    assert report.summary
    assert rows_of_streams(warehouse_client, user_id) == {"intervals": 0, "source_intervals": 0, "import_streams": 0}
    # Delete means gone: the same history sent again (a replay, or the file imported again) stays deleted, and
    # each record is refused with the deletion named.
    again = send_as_device(stack.settings.gateway_address, creds, plan_import(read_export(json.dumps(raw))))
    assert again.imported == 0 and sum(again.refused.values()) == summary.imported
    deleted = "deleted: the interval lies in data deleted by device deletion"
    assert all(reason.startswith(deleted) for reason in again.refused), again.refused
    assert rows_of_streams(warehouse_client, user_id)["intervals"] == 0


def test_hostile_records_through_import_are_refused_one_by_one_and_never_touch_live_data(
    stack, enroll, warehouse_client
):
    """Through the real gateway with a real device certificate: records from the future, longer than a day,
    with impossible counts or a live interval's event id; the valid one beside them is stored, the live one kept."""
    import grpc

    from collector.transport import channel_credentials
    from schemas.wire import ingest_pb2, ingest_pb2_grpc

    identity, creds = enroll()
    live_record = live(0, YESTERDAY, 60, "Live")
    with IngestClient(stack.settings.gateway_address, creds) as client:
        assert client.send_batch([live_record]).accepted == 1
    from schemas.codec import decode_interval

    live_id = decode_interval(live_record)["event_id"]

    def record(start: datetime, seconds: float, **fields) -> bytes:
        base = decode_interval(live(0, start, seconds, "Imported"))
        return encode_interval({**base, "event_id": str(uuid.uuid4()), **fields})

    now = datetime.now(UTC)
    records = [
        record(now + timedelta(hours=2), 60),  # from the future
        record(YEAR_AGO, 2 * 86400),  # longer than a day
        record(YEAR_AGO, 10, keystrokes=100_000),  # no hands type that
        record(YESTERDAY, 60, event_id=live_id, app="Overwrite"),  # a live interval's id: another stream's
        record(YEAR_AGO + timedelta(hours=3), 600),  # valid
        b"\x00not avro",
    ]
    with grpc.secure_channel(stack.settings.gateway_address, channel_credentials(creds)) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)
        batch = ingest_pb2.ImportBatch(batch_id=9, origin="activitywatch", host="h", source="window", intervals=records)
        (ack,) = list(stub.Import(iter([batch]), timeout=60))
    reasons = {e.index: e.reason for e in ack.errors}
    assert set(reasons) == {0, 1, 2, 5}
    assert "future" in reasons[0] and "longer than a day" in reasons[1] and "keystrokes exceed" in reasons[2]
    assert "not a readable ActivityInterval" in reasons[5]
    # The live interval's id is taken inside its own stream only: in time the device recorded, so cut away whole.
    assert (ack.accepted, ack.overlapped) == (1, 1)
    rows = warehouse_client.query(
        "SELECT app, device_id = {d:String} FROM intervals FINAL WHERE user_id = {u:String} ORDER BY app",
        parameters={"u": identity.user_id, "d": identity.device_id},
    ).result_rows
    assert rows == [("Imported", False), ("Live", True)]


def test_an_import_spread_over_150_months_is_stored_and_stops_no_one(stack, enroll, warehouse_client):
    """ClickHouse refuses an insert touching more than 100 monthly partitions: a hostile import batch with one
    record in each of 150 months is split by the worker and stored whole, and another device's data goes on."""
    from schemas.codec import decode_interval

    importer, creds = enroll()
    bystander, bystander_creds = enroll()
    first = YESTERDAY.replace(day=1)
    records = []
    for month in range(150):
        at = (first - timedelta(days=31 * month)).replace(day=3)
        records.append(encode_interval({**decode_interval(live(0, at, 60, "Spread")), "event_id": str(uuid.uuid4())}))
    import grpc

    from collector.transport import channel_credentials
    from schemas.wire import ingest_pb2, ingest_pb2_grpc

    with grpc.secure_channel(stack.settings.gateway_address, channel_credentials(creds)) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)
        batch = ingest_pb2.ImportBatch(batch_id=1, origin="activitywatch", host="h", source="window", intervals=records)
        (ack,) = list(stub.Import(iter([batch]), timeout=120))
    assert (ack.accepted, list(ack.errors)) == (150, [])
    with IngestClient(stack.settings.gateway_address, bystander_creds) as client:
        assert client.send_batch([live(0, YESTERDAY, 60, "Bystander")]).accepted == 1
    months = warehouse_client.query(
        "SELECT uniqExact(toYYYYMM(start)) FROM intervals FINAL WHERE user_id = {u:String}",
        parameters={"u": importer.user_id},
    ).result_rows[0][0]
    assert months == 150
    assert per_app(warehouse_client, bystander.user_id, YESTERDAY) == {"Bystander": 60.0}
