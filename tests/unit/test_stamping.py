"""Packing a batch into broker records: within the count and the byte limit, every interval once, in order."""

import uuid

from hypothesis import given
from hypothesis import strategies as st

from gateway.stamping import MAX_INTERVALS_PER_RECORD, pack_stamped, record_chunks, validate_records
from schemas.codec import decode_stamped_intervals, encode_interval
from schemas.device_keys import DeviceIdentity

NOW = 1_780_000_000_000


@given(st.lists(st.integers(1, 30_000), max_size=300), st.integers(65_536, 300_000), st.integers(1, 50))
def test_chunks_cover_every_item_once_in_order_within_both_limits(sizes, max_bytes, max_count):
    chunks = list(record_chunks(sizes, max_bytes, max_count))
    assert [i for c in chunks for i in c] == list(range(len(sizes)))
    for c in chunks:
        assert 1 <= len(c) <= max_count
        assert len(c) == 1 or sum(sizes[i] for i in c) <= max_bytes - 512


def interval(seq: int, title: str) -> bytes:
    return encode_interval(
        {
            "event_id": str(uuid.uuid4()),
            "device_seq": seq,
            "start": NOW - 60_000,
            "end": NOW - 1_000,
            "app": "Firefox",
            "title": title,
            "url": "https://example.com/" + "p" * 3000,
            "keystrokes": 1,
            "clicks": 1,
            "idle": False,
        }
    )


def test_a_batch_of_long_titles_becomes_records_no_larger_than_the_limit():
    # 1,000 intervals of ~4 KB each: about 4 MB, which a real Kafka would refuse as one record.
    valid, errors = validate_records([interval(s, "é" * 1000) for s in range(1000)], NOW)
    assert not errors
    identity = DeviceIdentity(user_id=str(uuid.uuid4()), device_id=str(uuid.uuid4()))
    values = pack_stamped(identity, NOW, valid, 1_000_000)
    assert len(values) >= 4 and all(len(v) <= 1_000_000 for v in values)
    seqs = [i["device_seq"] for v in values for i in decode_stamped_intervals(v)["intervals"]]
    assert seqs == list(range(1000))
    small = pack_stamped(identity, NOW, valid[:10], 1_000_000)
    assert (
        len(small) == 1 and len(pack_stamped(identity, NOW, valid * 2, 10**8)) == 2 * 1000 // MAX_INTERVALS_PER_RECORD
    )


def test_normalised_intervals_travel_in_normal_form():
    raw = encode_interval(
        {
            "event_id": "{" + str(uuid.UUID(int=7)) + "}",
            "device_seq": 1,
            "start": NOW - 1000,
            "end": NOW,
            "app": "Fire\x00fox\u202e",
            "title": None,
            "url": None,
            "keystrokes": 1,
            "clicks": 0,
            "idle": False,
        }
    )
    valid, _ = validate_records([raw], NOW)
    identity = DeviceIdentity(user_id="u", device_id="d")
    (value,) = pack_stamped(identity, NOW, valid)
    (sent,) = decode_stamped_intervals(value)["intervals"]
    assert (sent["event_id"], sent["app"]) == (str(uuid.UUID(int=7)), "Firefox")
