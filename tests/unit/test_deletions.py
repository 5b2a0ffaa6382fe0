"""What a deletion covers (schemas/deletions.py), how a batch is cut by it (stream_jobs/plan.py), how sessions and
saved states are made again around it (stream_jobs/forget.py `recut`), and the records' seals and pseudonyms."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.deletions import ACCOUNT, ALL_DATA, DEVICE, FOREVER_MS, PERIOD, InvalidDeletion, plan_deletion
from schemas.identity_events import DEVICE_REVOKED, USER_DELETED, decode_event, encode_event, event_key, pseudonym
from schemas.sealing import Unsealable, key_id_of, new_key, partition_key, seal, unseal
from stream_jobs.forget import recut
from stream_jobs.keyring import KeyRing, open_records
from stream_jobs.plan import plan_batch, stale_deletions
from stream_jobs.revocations import Revocations
from stream_jobs.sessionize import DeviceState, SessionRules, advance
from warehouse.writes import DeletionGuard

NOW = datetime(2026, 11, 3, 12, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
RULES = SessionRules(session_gap_ms=30_000, break_after_ms=300_000)


def iv(seq: int, start_ms: int, length_ms: int = 50_000, device: str = "d", user: str = "u") -> dict:
    return {
        "user_id": user,
        "device_id": device,
        "event_id": str(uuid.UUID(int=seq + 1)),
        "device_seq": seq,
        "start": start_ms,
        "end": start_ms + length_ms,
        "app": "Code",
        "site": "",
        "keystrokes": 2,
        "clicks": 1,
        "idle": False,
    }


# --- the record ------------------------------------------------------------------------------------------------


def test_a_period_is_cut_at_the_moment_of_the_deletion_and_every_other_kind_covers_all_before_it():
    period = plan_deletion(PERIOD, "u", NOW_MS, start=NOW - timedelta(hours=2), end=NOW + timedelta(days=1))
    assert (period.start_ms, period.end_ms) == (NOW_MS - 7_200_000, NOW_MS)
    for kind, device in ((DEVICE, "d"), (ALL_DATA, "")):
        d = plan_deletion(kind, "u", NOW_MS, device_id=device)
        assert (d.start_ms, d.end_ms, d.device_id) == (0, NOW_MS, device)
    assert plan_deletion(ACCOUNT, "u", NOW_MS).end_ms == FOREVER_MS


@pytest.mark.parametrize(
    ("kind", "options", "says"),
    [
        (PERIOD, {"start": NOW, "end": NOW - timedelta(hours=1)}, "ends (2026-11-03T11:00:00+00:00) before it starts"),
        (PERIOD, {"start": NOW + timedelta(hours=1), "end": NOW + timedelta(hours=2)}, "starts in the future"),
        (PERIOD, {"start": datetime(2026, 1, 1), "end": NOW}, "must carry a time zone"),
        (PERIOD, {}, "needs its start and its end"),
        (DEVICE, {}, "needs the device's id"),
        (ALL_DATA, {"device_id": "d"}, "takes no device id"),
        (ACCOUNT, {"start": NOW, "end": NOW}, "takes no period"),
        ("everything", {}, "unknown deletion kind 'everything'"),
    ],
)
def test_a_deletion_that_cannot_be_honoured_is_refused_naming_what_is_wrong(kind, options, says):
    with pytest.raises(InvalidDeletion, match=says.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        plan_deletion(kind, "u", NOW_MS, **options)


@given(st.integers(0, 10_000), st.integers(0, 5_000), st.integers(0, 10_000), st.integers(1, 5_000))
def test_an_interval_is_covered_exactly_when_it_overlaps_the_range(start, length, lo, width):
    d = plan_deletion(PERIOD, "u", 10**9, start=datetime.fromtimestamp(lo / 1000, UTC),
                      end=datetime.fromtimestamp((lo + width) / 1000, UTC))  # fmt: skip
    overlaps = start < lo + width and (start + length > lo or start >= lo)
    assert d.covers("u", "any", start, start + length) == overlaps
    assert not d.covers("someone else", "any", start, start + length)


def test_a_device_deletion_covers_that_device_only_and_an_all_data_one_every_device():
    device = plan_deletion(DEVICE, "u", NOW_MS, device_id="d1")
    everything = plan_deletion(ALL_DATA, "u", NOW_MS)
    assert device.covers("u", "d1", 0, 1) and not device.covers("u", "d2", 0, 1)
    assert everything.covers("u", "d2", 0, 1) and not everything.covers("u", "d2", NOW_MS, NOW_MS + 1)


# --- the worker's batch ----------------------------------------------------------------------------------------


def test_a_batch_loses_what_a_deletion_covers_without_a_trace_and_its_states_record_the_deletion():
    period = plan_deletion(PERIOD, "u", NOW_MS, start=NOW - timedelta(hours=1), end=NOW)
    gone = plan_deletion(ACCOUNT, "gone", NOW_MS)
    batch = {
        "d": [iv(0, NOW_MS - 7_200_000), iv(1, NOW_MS - 1_800_000), iv(2, NOW_MS + 1000)],
        "g": [iv(0, NOW_MS - 100, device="g", user="gone")],
    }
    plan = plan_batch(batch, {}, RULES, guard=DeletionGuard((period, gone)))
    assert [i["device_seq"] for i in plan.intervals] == [0, 2]
    assert plan.deleted == 2 and plan.refusals == []  # not even a refusal row: the gateway tells the device
    # The saved state records the deletions it was cut by.
    assert [json.loads(s[3])["applied"] for s in plan.states] == [[period.deletion_id]]


def test_a_saved_state_without_a_deletion_of_its_device_is_stale():
    mine = plan_deletion(DEVICE, "u", NOW_MS, device_id="d")
    other = plan_deletion(DEVICE, "u", NOW_MS, device_id="e")
    cut = json.dumps(DeviceState(last_seq=3, applied=(mine.deletion_id,)).to_dict())
    uncut = json.dumps(DeviceState(last_seq=3).to_dict())
    guard = DeletionGuard((mine, other))
    assert stale_deletions({"d": cut}, {"d": "u"}, guard) == []
    assert stale_deletions({"d": uncut}, {"d": "u"}, guard) == [mine]


# --- sessions made again ---------------------------------------------------------------------------------------


def test_recut_leaves_sessions_on_both_sides_of_a_period_and_keeps_the_open_one_open():
    t0 = NOW_MS - 10_800_000
    stream = [iv(n, t0 + n * 60_000) for n in range(180)]
    state = advance(DeviceState(), stream, RULES).state
    d = plan_deletion(PERIOD, "u", NOW_MS, start=datetime.fromtimestamp((t0 + 3_600_000) / 1000, UTC),
                      end=datetime.fromtimestamp((t0 + 7_200_000) / 1000, UTC))  # fmt: skip
    left = [i for i in stream if not d.covers("u", "d", i["start"], i["end"])]
    made = recut(d, {"d": (t0, FOREVER_MS)}, {"d": left}, {"d": json.dumps(state.to_dict())}, RULES)
    assert [(f.start, f.closed, f.active_ms) for f in made.focus_sessions] == [
        (t0, True, 60 * 50_000),
        (t0 + 7_200_000, False, 60 * 50_000),
    ]
    last_seq, data = made.states["d"]
    cut = DeviceState.from_dict(json.loads(data))
    assert last_seq == 179 and cut.applied == (d.deletion_id,)
    assert cut.focus_session == made.focus_sessions[-1] and cut.app_session == made.app_sessions[-1]


def test_recut_takes_only_what_the_saved_state_reflects():
    t0 = NOW_MS - 3_600_000
    stream = [iv(n, t0 + n * 60_000) for n in range(10)]
    state = advance(DeviceState(), stream[:5], RULES).state  # 5..9 stored, their state not yet saved
    d = plan_deletion(PERIOD, "u", NOW_MS, start=datetime.fromtimestamp(t0 / 1000, UTC),
                      end=datetime.fromtimestamp((t0 + 120_000) / 1000, UTC))  # fmt: skip
    made = recut(d, {"d": (t0, FOREVER_MS)}, {"d": stream}, {"d": json.dumps(state.to_dict())}, RULES)
    assert [f.active_ms for f in made.focus_sessions] == [3 * 50_000]  # seqs 2, 3 and 4 only


# --- seals, keys and pseudonyms --------------------------------------------------------------------------------


def test_a_sealed_record_opens_only_under_its_key_and_unchanged():
    key_id, key = new_key()
    value = seal(key_id, key, b"a record with a title")
    assert b"title" not in value and key_id_of(value) == key_id and unseal(key, value) == b"a record with a title"
    with pytest.raises(Unsealable, match="changed or forged"):
        unseal(new_key()[1], value)
    with pytest.raises(Unsealable, match="changed or forged"):
        unseal(key, value[:-1] + bytes([value[-1] ^ 1]))
    with pytest.raises(Unsealable, match="not a sealed record"):
        key_id_of(b"plain avro")
    assert partition_key("device") == partition_key("device") != partition_key("other")
    assert b"device" not in partition_key("device")


def test_records_whose_key_is_gone_are_shredded_and_unsealed_ones_refused():
    ring = KeyRing()
    key_id, key = new_key()
    ring._keys[key_id] = (ring.clock(), ("u", "d", key))
    shredded_id, shredded_key = new_key()
    opened = open_records([seal(key_id, key, b"mine"), seal(shredded_id, shredded_key, b"gone"), b"plain"], ring)
    assert opened.records == [(key_id, key, b"mine", "u", "d")]
    assert opened.shredded == 1 and [reason for _, reason in opened.refused] == [
        "not a sealed record (written by something other than the gateway)"
    ]


def test_keys_are_not_kept_in_memory_longer_than_allowed():
    clock = [0.0]
    ring = KeyRing(keep_s=10, clock=lambda: clock[0])
    ring._keys["k"] = (0.0, ("u", "d", b"x" * 32))
    assert ring.missing(["k"]) == []
    clock[0] = 11
    assert ring.missing(["k"]) == ["k"] and ring.owner("k") is None


def test_identity_events_name_users_and_devices_by_pseudonym_only():
    user, device = str(uuid.uuid4()), str(uuid.uuid4())
    raw = encode_event(DEVICE_REVOKED, user, device, 5) + event_key(user, device)
    assert user.encode() not in raw and device.encode() not in raw
    revocations = Revocations()
    revocations.apply(decode_event(encode_event(DEVICE_REVOKED, user, device, 5)))
    assert revocations.drops(user, device) and not revocations.drops(user, "other")
    # An event of the earlier form, with the ids themselves, still counts.
    earlier = json.dumps({"event": USER_DELETED, "user_id": "old", "device_id": "", "at": 1}).encode()
    assert decode_event(earlier)["user"] == pseudonym("old")
    revocations.apply(decode_event(earlier))
    assert revocations.drops("old", "any")
