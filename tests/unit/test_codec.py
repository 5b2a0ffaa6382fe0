"""The event contract: single-object-encoded Avro, every known version readable as the current one."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import (
    CodecError,
    CorruptRecord,
    UnknownSchema,
    current_version,
    decode_interval,
    decode_stamped,
    decode_stamped_batch,
    decode_stamped_intervals,
    encode_interval,
    encode_stamped,
    encode_stamped_batch,
    encode_with,
    fingerprint_of,
    stamp_encoded_batch,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)


def an_interval(**changes: object) -> dict:
    interval = {
        "event_id": "6f1c9a4e-3b2d-4c8e-9f0a-1b2c3d4e5f60",
        "device_seq": 42,
        "start": 1_700_000_000_000,
        "end": 1_700_000_060_000,
        "app": "firefox",
        "title": "Inbox — Mail",
        "url": "https://mail.example.com/",
        "keystrokes": 120,
        "clicks": 7,
        "idle": False,
    }
    interval.update(changes)
    return interval


def a_stamped(**changes: object) -> dict:
    stamped = {
        "user_id": "alice",
        "device_id": "0d4e4b8a-8f53-4c31-9c1e-1f4f0a2b3c4d",
        "received_at": 1_700_000_061_234,
        "interval": an_interval(),
    }
    stamped.update(changes)
    return stamped


intervals = st.fixed_dictionaries(
    {
        "event_id": st.uuids().map(str),
        "device_seq": INT64,
        "start": INT64,
        "end": INT64,
        "app": st.text(),
        "title": st.none() | st.text(),
        "url": st.none() | st.text(),
        "keystrokes": INT32,
        "clicks": INT32,
        "idle": st.booleans(),
    }
)


def test_interval_roundtrips_unchanged():
    assert decode_interval(encode_interval(an_interval())) == an_interval()


def test_decoded_timestamps_are_int_milliseconds_and_event_id_is_str():
    decoded = decode_interval(encode_interval(an_interval()))
    assert type(decoded["start"]) is int and type(decoded["end"]) is int
    assert type(decoded["event_id"]) is str


@given(intervals)
@settings(max_examples=300)
def test_any_valid_interval_roundtrips(interval):
    assert decode_interval(encode_interval(interval)) == interval


def test_title_and_url_may_be_omitted_and_decode_as_none():
    interval = an_interval()
    del interval["title"], interval["url"]
    assert decode_interval(encode_interval(interval)) == an_interval(title=None, url=None)


def test_encoding_is_single_object_with_the_current_fingerprint():
    data = encode_interval(an_interval())
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == fingerprint_of("activity_interval", current_version("activity_interval"))


def test_a_v1_record_reads_as_current_with_url_none():
    old = an_interval()
    del old["url"]
    data = encode_with("activity_interval", 1, old)
    assert data[2:10] == fingerprint_of("activity_interval", 1)
    assert data[2:10] != fingerprint_of("activity_interval", 2)
    assert decode_interval(data) == an_interval(url=None)


def test_v1_has_no_url_to_write():
    with pytest.raises(CodecError, match="url"):
        encode_with("activity_interval", 1, an_interval())


def test_current_versions():
    assert current_version("activity_interval") == 2
    assert current_version("stamped_interval") == 1


def test_stamped_roundtrips_with_nested_interval():
    assert decode_stamped(encode_stamped(a_stamped())) == a_stamped()


@given(intervals, st.text(), st.text(), INT64)
@settings(max_examples=100)
def test_any_stamped_roundtrips(interval, user_id, device_id, received_at):
    stamped = {"user_id": user_id, "device_id": device_id, "received_at": received_at, "interval": interval}
    assert decode_stamped(encode_stamped(stamped)) == stamped


def test_stamped_bytes_are_not_an_interval():
    with pytest.raises(UnknownSchema, match="stamped_interval v1"):
        decode_interval(encode_stamped(a_stamped()))
    with pytest.raises(UnknownSchema, match="activity_interval v2"):
        decode_stamped(encode_interval(an_interval()))


def test_unknown_fingerprint_is_unknown_schema_showing_the_fingerprint():
    unknown = bytes.fromhex("0123456789abcdef")
    body = encode_interval(an_interval())[10:]
    with pytest.raises(UnknownSchema, match="0123456789abcdef"):
        decode_interval(b"\xc3\x01" + unknown + body)


def test_unknown_schema_version_is_refused():
    with pytest.raises(UnknownSchema, match="activity_interval v9"):
        encode_with("activity_interval", 9, an_interval())
    with pytest.raises(UnknownSchema):
        fingerprint_of("no_such_record", 1)


# --- fingerprints, checked without going through the codec's registry ---


@pytest.mark.parametrize(
    ("schema", "crc64"),
    [
        ('"int"', 8247732601305521295),
        ('"long"', -3434872931120570953),
        ('{"fields":[], "type":"record", "name":"foo"}', -4824392279771201922),
    ],
)
def test_fastavro_crc64_matches_the_avro_specification_test_vectors(schema, crc64):
    # Avro's share/test/data/schema-tests.txt gives CRC-64-AVRO fingerprints as signed longs; single-object
    # encoding writes them little-endian.
    canonical = to_parsing_canonical_form(parse_schema(json.loads(schema)))
    assert bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")) == crc64.to_bytes(8, "little", signed=True)


@pytest.mark.parametrize("version", [1, 2])
def test_interval_fingerprint_is_crc64_of_the_canonical_form(version):
    definition = json.loads((SCHEMAS / "activity_interval" / f"v{version}.avsc").read_text())
    canonical = to_parsing_canonical_form(parse_schema(definition))
    assert fingerprint_of("activity_interval", version) == bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


def test_canonical_form_of_v1_drops_docs_defaults_and_logical_types():
    canonical = (
        '{"name":"io.productimon.ActivityInterval","type":"record","fields":['
        '{"name":"event_id","type":"string"},{"name":"device_seq","type":"long"},'
        '{"name":"start","type":"long"},{"name":"end","type":"long"},{"name":"app","type":"string"},'
        '{"name":"title","type":["null","string"]},{"name":"keystrokes","type":"int"},'
        '{"name":"clicks","type":"int"},{"name":"idle","type":"boolean"}]}'
    )
    assert fingerprint_of("activity_interval", 1) == bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


def test_stamped_fingerprint_covers_the_whole_nested_interval_definition():
    stamped = json.loads((SCHEMAS / "stamped_interval" / "v1.avsc").read_text())
    interval = json.loads((SCHEMAS / "activity_interval" / "v2.avsc").read_text())
    [field] = [f for f in stamped["fields"] if f["name"] == "interval"]
    assert field["type"] == "io.productimon.ActivityInterval"  # one definition, referenced by name
    field["type"] = interval
    canonical = to_parsing_canonical_form(parse_schema(stamped))
    assert '"name":"keystrokes"' in canonical
    assert fingerprint_of("stamped_interval", 1) == bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


def test_every_field_is_documented():
    for path in SCHEMAS.glob("*/*.avsc"):
        definition = json.loads(path.read_text())
        assert definition.get("doc"), path
        assert all(field.get("doc") for field in definition["fields"]), path


# --- records that must not be encoded ---


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"keystrokes": "5"}, "keystrokes"),
        ({"keystrokes": True}, "keystrokes"),
        ({"keystrokes": 2**31}, "keystrokes"),
        ({"clicks": -(2**31) - 1}, "clicks"),
        ({"clicks": 1.0}, "clicks"),
        ({"idle": 1}, "idle"),
        ({"idle": None}, "idle"),
        ({"start": 1.5}, "start"),
        ({"start": 2**63}, "start"),
        ({"end": "2023-11-14T22:14:20Z"}, "end"),
        ({"device_seq": None}, "device_seq"),
        ({"title": 5}, "title"),
        ({"url": b"https://example.com/"}, "url"),
        ({"app": None}, "app"),
        ({"event_id": uuid.UUID("6f1c9a4e-3b2d-4c8e-9f0a-1b2c3d4e5f60")}, "event_id"),
        ({"app": "\udc00"}, "app"),
        ({"user_id": "alice"}, "user_id"),
    ],
)
def test_wrong_values_are_refused_naming_the_field(change, field):
    with pytest.raises(CodecError, match=field):
        encode_interval(an_interval(**change))


@pytest.mark.parametrize("field", ["event_id", "device_seq", "start", "end", "app", "keystrokes", "clicks", "idle"])
def test_a_missing_required_field_is_refused_by_name(field):
    interval = an_interval()
    del interval[field]
    with pytest.raises(CodecError, match=field):
        encode_interval(interval)


def test_nested_problems_name_the_path():
    with pytest.raises(CodecError, match="interval.keystrokes"):
        encode_stamped(a_stamped(interval=an_interval(keystrokes=-(2**40))))
    with pytest.raises(CodecError, match="received_at"):
        encode_stamped(a_stamped(received_at=None))


def test_non_mappings_are_refused():
    with pytest.raises(CodecError):
        encode_interval(None)  # type: ignore[arg-type]
    with pytest.raises(CodecError):
        encode_stamped(a_stamped(interval=[1, 2]))


# --- bytes that must not be decoded ---


def test_every_truncation_is_corrupt():
    data = encode_interval(an_interval())
    for length in range(len(data)):
        with pytest.raises(CorruptRecord):
            decode_interval(data[:length])


def test_wrong_marker_is_corrupt():
    data = encode_interval(an_interval())
    with pytest.raises(CorruptRecord, match="marker"):
        decode_interval(b"\xc3\x02" + data[2:])
    with pytest.raises(CorruptRecord, match="marker"):
        decode_interval(b"Obj\x01" + data[4:])  # an Avro container file is not a single object


def test_trailing_bytes_are_corrupt():
    with pytest.raises(CorruptRecord, match="trailing"):
        decode_interval(encode_interval(an_interval()) + b"\x00")
    with pytest.raises(CorruptRecord, match="trailing"):
        decode_stamped(encode_stamped(a_stamped()) + b"\x02")


def test_invalid_utf8_in_a_string_is_corrupt():
    data = encode_interval(an_interval(app="abc"))
    bad = data.replace(b"\x06abc", b"\x06ab\xff")
    with pytest.raises(CorruptRecord):
        decode_interval(bad)


def test_an_int_wider_than_32_bits_on_the_wire_is_corrupt():
    data = encode_interval(an_interval(keystrokes=3, clicks=4, idle=False))
    assert data.endswith(b"\x06\x08\x00")  # zigzag varints: keystrokes 3, clicks 4, idle false
    wide = data[:-3] + b"\xfe\xff\xff\xff\xff\x01" + b"\x08\x00"  # keystrokes 2**35 - 1
    with pytest.raises(CorruptRecord, match="keystrokes"):
        decode_interval(wide)
    stamped = encode_stamped(a_stamped(interval=an_interval(keystrokes=3, clicks=4, idle=False)))
    with pytest.raises(CorruptRecord, match="interval.keystrokes"):
        decode_stamped(stamped[:-3] + b"\xfe\xff\xff\xff\xff\x01" + b"\x08\x00")


def test_bytes_like_input_is_accepted_and_other_types_are_corrupt():
    data = encode_interval(an_interval())
    assert decode_interval(bytearray(data)) == decode_interval(memoryview(data)) == an_interval()
    with pytest.raises(CorruptRecord):
        decode_interval("not bytes")  # type: ignore[arg-type]


def _decode_both(data: bytes) -> None:
    for decode in (decode_interval, decode_stamped):
        try:
            decode(data)
        except CodecError:
            pass


@given(st.binary(max_size=200))
@settings(max_examples=1000)
def test_random_bytes_raise_nothing_but_codec_errors(data):
    _decode_both(data)


@given(st.sampled_from([("activity_interval", 1), ("activity_interval", 2), ("stamped_interval", 1)]), st.binary())
@settings(max_examples=1000)
def test_random_bodies_behind_a_known_fingerprint_raise_nothing_but_codec_errors(schema, body):
    _decode_both(b"\xc3\x01" + fingerprint_of(*schema) + body)


@given(intervals, st.data())
@settings(max_examples=500)
def test_damaged_records_raise_nothing_but_codec_errors(interval, data):
    encoded = bytearray(encode_interval(interval))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(encoded) - 1))
        encoded[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    _decode_both(bytes(encoded[:cut]) + data.draw(st.binary(max_size=8)))


# --- the loader, on schema folders made for the test ---


def write_schema(root: Path, name: str, version: int, definition: dict) -> None:
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / f"v{version}.avsc").write_text(json.dumps(definition))


def test_a_named_type_used_twice_is_defined_once_in_the_canonical_form(tmp_path):
    from schemas.codec import _load

    inner = {"type": "record", "name": "Inner", "fields": [{"name": "n", "type": "int"}]}
    write_schema(
        tmp_path,
        "thing",
        1,
        {
            "type": "record",
            "name": "Thing",
            "namespace": "t",
            "fields": [{"name": "first", "type": inner}, {"name": "second", "type": "Inner"}],
        },
    )
    [version] = _load(tmp_path).values()
    assert version.canonical_form == (
        '{"name":"t.Thing","type":"record","fields":[{"name":"first","type":{"name":"t.Inner","type":"record",'
        '"fields":[{"name":"n","type":"int"}]}},{"name":"second","type":"t.Inner"}]}'
    )
    problem = version.check({"first": {"n": 1}, "second": {"n": True}})
    assert problem == (("second", "n"), "expected an int, got bool True")


def test_two_versions_with_one_canonical_form_are_refused(tmp_path):
    from schemas.codec import _load

    definition = {"type": "record", "name": "Thing", "fields": [{"name": "n", "type": "int"}]}
    write_schema(tmp_path, "thing", 1, definition)
    write_schema(tmp_path, "thing", 2, {**definition, "doc": "only the docs changed"})
    with pytest.raises(CodecError, match="same canonical form"):
        _load(tmp_path)


# -- stamping by concatenation ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.lists(intervals, min_size=1, max_size=8),
    st.text(min_size=1, max_size=64),
    st.text(min_size=1, max_size=64),
    st.integers(0, 2**62),
)
def test_stamping_by_concatenation_equals_encoding_the_batch(batch, user_id, device_id, received_at):
    stamped = stamp_encoded_batch(user_id, device_id, received_at, [encode_interval(i) for i in batch])
    expected = encode_stamped_batch(
        {"user_id": user_id, "device_id": device_id, "received_at": received_at, "intervals": batch}
    )
    assert stamped == expected
    decoded = decode_stamped_batch(stamped)
    assert decoded["intervals"] == [decode_interval(encode_interval(i)) for i in batch]


def test_an_empty_batch_is_left_to_the_encoder():
    assert stamp_encoded_batch("u", "d", 1, []) is None
    empty = {"user_id": "u", "device_id": "d", "received_at": 1, "intervals": []}
    assert decode_stamped_batch(encode_stamped_batch(empty)) == empty


def test_stamping_an_older_version_falls_back_to_encoding():
    old = encode_with("activity_interval", 1, {k: v for k, v in an_interval().items() if k != "url"})
    assert stamp_encoded_batch("u", "d", 1, [encode_interval(an_interval()), old]) is None


def test_topic_records_of_either_stamped_schema_read_as_a_batch():
    single = decode_stamped_intervals(encode_stamped(a_stamped()))
    assert single["intervals"] == [an_interval()] and single["user_id"] == a_stamped()["user_id"]
    batch = {"user_id": "u", "device_id": "d", "received_at": 3, "intervals": [an_interval(), an_interval()]}
    assert decode_stamped_intervals(encode_stamped_batch(batch)) == batch
    with pytest.raises(CorruptRecord):
        decode_stamped_intervals(b"\xc3\x01")
