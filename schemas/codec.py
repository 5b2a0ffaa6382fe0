"""The one Avro codec: single-object encoding of every schema under `schemas/`, read into the current version.

Records are plain dicts: timestamps are `int` epoch milliseconds and uuids are `str`, on encode and on decode.
"""

from __future__ import annotations

import copy
import io
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard, cast

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

if TYPE_CHECKING:
    from fastavro.types import Schema

__all__ = [
    "CodecError",
    "CorruptRecord",
    "UnknownSchema",
    "current_version",
    "decode_interval",
    "decode_stamped",
    "decode_stamped_batch",
    "decode_stamped_intervals",
    "encode_interval",
    "encode_stamped",
    "encode_stamped_batch",
    "encode_with",
    "fingerprint_of",
    "stamp_encoded_batch",
]

MARKER = b"\xc3\x01"
_HEADER_SIZE = len(MARKER) + 8
SCHEMA_DIR = Path(__file__).resolve().parent
# A schema file may name types defined in other schema files; this attribute pins which version of each it
# means, so a later ActivityInterval version never silently changes an existing StampedInterval fingerprint.
USES_ATTRIBUTE = "productimon.uses"
_FILE_NAME = re.compile(r"^v([1-9][0-9]*)\.avsc$")


class CodecError(ValueError):
    """A record could not be encoded or decoded; the message says what was wrong."""


class UnknownSchema(CodecError):
    """The writer's schema fingerprint is not one this codec knows for the record type asked for."""


class CorruptRecord(CodecError):
    """The bytes are not a well-formed single-object-encoded record."""


# A checker returns None when the value fits, else (path inside the value, what is wrong).
Problem = tuple[tuple[str, ...], str]
Checker = Callable[[Any], Problem | None]


@dataclass(frozen=True)
class SchemaVersion:
    name: str  # the folder under schemas/, e.g. "activity_interval"
    version: int
    canonical_form: str
    fingerprint: bytes
    # Logical types are stripped from the schema fastavro uses, so it neither wants nor returns datetime/UUID
    # objects; the wire format is unchanged because logical types are not part of the canonical form.
    wire_schema: Schema
    check: Checker
    ints_fit: Callable[[Any], bool]
    header: bytes

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


def _show(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _is_int(value: object) -> TypeGuard[int]:
    return type(value) is int or (isinstance(value, int) and not isinstance(value, bool))


def _int_checker(bits: int) -> Checker:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    kind = "int" if bits == 32 else "long"
    expected = "expected an int" if bits == 32 else "expected a long"

    def check(value: object) -> Problem | None:
        if not _is_int(value):
            return (), f"{expected}, got {_show(value)}"
        if not low <= value <= high:
            return (), f"{value} does not fit in a {bits}-bit {kind}"
        return None

    return check


def _type_checker(expected: type | tuple[type, ...], what: str) -> Checker:
    def check(value: object) -> Problem | None:
        if isinstance(value, expected) and not isinstance(value, bool):
            return None
        return (), f"expected {what}, got {_show(value)}"

    return check


def _check_null(value: object) -> Problem | None:
    return None if value is None else ((), f"expected null, got {_show(value)}")


def _check_boolean(value: object) -> Problem | None:
    return None if type(value) is bool else ((), f"expected a boolean, got {_show(value)}")


def _check_string(value: object) -> Problem | None:
    if not isinstance(value, str):
        return (), f"expected a string, got {_show(value)}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return (), "is not valid Unicode text (it has a lone surrogate)"
    return None


_PRIMITIVE_CHECKERS: dict[str, Checker] = {
    "null": _check_null,
    "boolean": _check_boolean,
    "int": _int_checker(32),
    "long": _int_checker(64),
    "float": _type_checker((int, float), "a number"),
    "double": _type_checker((int, float), "a number"),
    "string": _check_string,
    "bytes": _type_checker((bytes, bytearray, memoryview), "bytes"),
}


def _compile_checker(schema: Any, named: dict[str, Checker]) -> Checker:
    """Build the full check of values against one schema as `_plain` gives it.

    fastavro's writer quietly accepts some wrong values (True or 2**40 for an int, 1 for a boolean), and its
    validator ignores unknown fields and names the field less plainly, so the codec has its own check.
    """
    if isinstance(schema, str):
        if schema in _PRIMITIVE_CHECKERS:
            return _PRIMITIVE_CHECKERS[schema]
        if schema in named:
            return named[schema]
        raise CodecError(f"the codec cannot check values of Avro type {schema!r}")
    if isinstance(schema, list):
        return _union_checker(schema, named)
    kind = schema["type"]
    if kind == "record":
        return _record_checker(schema, named)
    if kind == "array":
        return _array_checker(_compile_checker(schema["items"], named))
    if kind == "map":
        return _map_checker(_compile_checker(schema["values"], named))
    if kind == "enum":
        symbols = frozenset(schema["symbols"])

        def check_enum(value: object) -> Problem | None:
            if value in symbols:
                return None
            return (), f"expected one of {sorted(symbols)}, got {_show(value)}"

        named[schema["name"]] = check_enum
        return check_enum
    if kind == "fixed":
        size = schema["size"]

        def check_fixed(value: object) -> Problem | None:
            if isinstance(value, bytes) and len(value) == size:
                return None
            return (), f"expected {size} bytes, got {_show(value)}"

        named[schema["name"]] = check_fixed
        return check_fixed
    return _compile_checker(kind, named)


def _union_checker(branches: list[Any], named: dict[str, Checker]) -> Checker:
    checkers = [_compile_checker(branch, named) for branch in branches]
    names = ", ".join(b if isinstance(b, str) else b.get("name", b["type"]) for b in branches)

    def check(value: object) -> Problem | None:
        for branch_check in checkers:
            if branch_check(value) is None:
                return None
        return (), f"expected one of ({names}), got {_show(value)}"

    return check


def _record_checker(schema: dict[str, Any], named: dict[str, Checker]) -> Checker:
    record_name = schema["name"]
    fields: list[tuple[str, Checker, bool]] = []
    known: frozenset[str] = frozenset()

    def check(value: object) -> Problem | None:
        if not isinstance(value, Mapping):
            return (), f"expected a {record_name} record (a mapping), got {_show(value)}"
        present = 0
        for name, field_check, has_default in fields:
            if name in value:
                present += 1
                problem = field_check(value[name])
                if problem is not None:
                    return (name, *problem[0]), problem[1]
            elif not has_default:
                return (name,), "required but missing"
        if present != len(value):
            unknown = sorted(str(key) for key in value if key not in known)
            return (), f"fields {', '.join(unknown)} are not in {record_name}"
        return None

    # Registered before its fields are compiled, so a field may refer back to this record by name.
    named[record_name] = check
    for field in schema["fields"]:
        fields.append((field["name"], _compile_checker(field["type"], named), "default" in field))
    known = frozenset(name for name, _, _ in fields)
    return check


def _array_checker(item_check: Checker) -> Checker:
    def check(value: object) -> Problem | None:
        if not isinstance(value, list | tuple):
            return (), f"expected an array, got {_show(value)}"
        for index, item in enumerate(value):
            problem = item_check(item)
            if problem is not None:
                return (str(index), *problem[0]), problem[1]
        return None

    return check


def _map_checker(value_check: Checker) -> Checker:
    def check(value: object) -> Problem | None:
        if not isinstance(value, Mapping):
            return (), f"expected a map, got {_show(value)}"
        for key, item in value.items():
            if type(key) is not str:
                return (), f"map keys must be strings, got {_show(key)}"
            problem = value_check(item)
            if problem is not None:
                return (key, *problem[0]), problem[1]
        return None

    return check


_EXACT_TYPES: dict[str, tuple[type, ...]] = {
    "null": (type(None),),
    "boolean": (bool,),
    "int": (int,),
    "long": (int,),
    "float": (float, int),
    "double": (float, int),
    "string": (str,),
    "bytes": (bytes,),
}
_INT_RANGE = (-(2**31), 2**31 - 1)


def _tuple_getter(names: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    if len(names) == 1:
        name = names[0]
        return lambda record: (record[name],)
    return itemgetter(*names)


def _compile_int_check(schema: Any) -> Callable[[Any], bool] | None:
    """For decoded records: True when every Avro int fits in 32 bits. Kept for speed: decoding is the gateway's
    and the worker's hot path, and this is faster than the full checker it stands in for (bench/codec.py).

    fastavro reads an over-long varint for an "int" as a bigger Python int instead of failing, so a corrupt
    body could otherwise decode with keystrokes = 2**40. Every other decoded type is already exact. None when
    an int may hide where this does not look (a union, array, map or named reference): use the full check.
    """

    def may_hold_int(value: Any) -> bool:
        if isinstance(value, list):
            return any(may_hold_int(item) for item in value)
        if isinstance(value, dict):
            return any(may_hold_int(value[key]) for key in ("type", "items", "values", "fields") if key in value)
        return value == "int" or (isinstance(value, str) and value not in _EXACT_TYPES and value != "record")

    direct: list[str] = []
    nested: list[tuple[str, Callable[[Any], bool]]] = []
    for field in schema["fields"]:
        field_type = field["type"]
        if isinstance(field_type, dict) and field_type.get("type") in _EXACT_TYPES and len(field_type) == 1:
            field_type = field_type["type"]
        if field_type == "int":
            direct.append(field["name"])
        elif isinstance(field_type, dict) and field_type.get("type") == "record":
            inner = _compile_int_check(field_type)
            if inner is None:
                return None
            nested.append((field["name"], inner))
        elif may_hold_int(field_type):
            return None
    direct_values = _tuple_getter(direct) if direct else None
    low, high = _INT_RANGE

    def ints_fit(record: Any) -> bool:
        if direct_values is not None:
            numbers = direct_values(record)
            if min(numbers) < low or max(numbers) > high:
                return False
        for name, inner in nested:
            if not inner(record[name]):
                return False
        return True

    return ints_fit


_NOT_ON_THE_WIRE = frozenset({"logicalType", USES_ATTRIBUTE, "__fastavro_parsed", "__named_schemas"})


def _plain(schema: Any) -> Any:
    """A parsed schema as plain JSON: no fastavro bookkeeping, our attributes or logical types."""
    if isinstance(schema, list):
        return [_plain(item) for item in schema]
    if isinstance(schema, dict):
        return {key: _plain(value) for key, value in schema.items() if key not in _NOT_ON_THE_WIRE}
    return schema


def _inline_first_definitions(schema: Any, named: dict[str, Any]) -> Any:
    """The parsed schema with each named type written out at its first occurrence and referenced by name after.

    That is the form the Avro spec's canonical form needs, and it lets a schema name a type another file
    defines. fastavro alone gives neither: its canonical form of an unexpanded schema keeps the bare
    reference (a wrong fingerprint), and expand=True writes the type out at every occurrence, which
    fastavro then refuses to parse again.
    """
    defined: set[str] = set()

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            if node in named and node not in defined:
                return walk(copy.deepcopy(named[node]))
            return node
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        if node.get("type") in ("record", "error", "enum", "fixed"):
            defined.add(node["name"])  # before the fields, which may refer back to it
        result = dict(node)
        for key in ("type", "items", "values"):
            if key in node:
                result[key] = walk(node[key])
        if "fields" in node:
            result["fields"] = [{**field, "type": walk(field["type"])} for field in node["fields"]]
        return result

    return walk(schema)


def _fits(check: Checker, record: Any) -> bool:
    return check(record) is None


def _read_definition(path: Path) -> dict[str, Any]:
    try:
        definition = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CodecError(f"cannot read schema {path}: {exc}") from None
    if not isinstance(definition, dict):
        raise CodecError(f"schema {path} is not a JSON object (a record schema)")
    return definition


def _load(schema_dir: Path) -> dict[tuple[str, int], SchemaVersion]:
    files: dict[tuple[str, int], Path] = {}
    for path in sorted(schema_dir.glob("*/*.avsc")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise CodecError(f"schema file {path} is not named v<N>.avsc")
        files[(path.parent.name, int(match.group(1)))] = path

    loaded: dict[tuple[str, int], SchemaVersion] = {}

    def definition_with_uses(
        key: tuple[str, int], named: dict[str, Any], seen: tuple[tuple[str, int], ...]
    ) -> dict[str, Any]:
        if key in seen:
            raise CodecError(f"schema {key[0]} v{key[1]} uses itself through {USES_ATTRIBUTE}")
        definition = _read_definition(files[key])
        for used in definition.get(USES_ATTRIBUTE, []):
            used_name, _, used_version = used.partition("/v")
            used_key = (used_name, int(used_version)) if used_version.isdigit() else None
            if used_key not in files:
                raise CodecError(f"{files[key]}: {USES_ATTRIBUTE} names {used!r}, which is not a schema file")
            parse_schema(definition_with_uses(used_key, named, (*seen, key)), named)
        return definition

    for key, path in files.items():
        named: dict[str, Any] = {}
        try:
            definition = definition_with_uses(key, named, ())
            full = _inline_first_definitions(parse_schema(definition, named), named)
            canonical = to_parsing_canonical_form(full)
            plain = _plain(full)
            wire = parse_schema(plain)
        except CodecError:
            raise
        except Exception as exc:
            raise CodecError(f"schema {path} is not a valid Avro schema: {exc}") from None
        # fastavro gives CRC-64-AVRO as the hex of its little-endian bytes, the order single-object encoding uses.
        schema_fingerprint = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
        for other in loaded.values():
            if other.fingerprint == schema_fingerprint:
                # Readers could not tell the two apart; a change of docs or defaults alone needs no new version.
                raise CodecError(f"{path} has the same canonical form as {other.label}")
        check = _compile_checker(plain, {})
        loaded[key] = SchemaVersion(
            name=key[0],
            version=key[1],
            canonical_form=canonical,
            fingerprint=schema_fingerprint,
            wire_schema=wire,
            check=check,
            ints_fit=_compile_int_check(plain) or partial(_fits, check),
            header=MARKER + schema_fingerprint,
        )
    return loaded


@dataclass(frozen=True)
class _Reader:
    writer: SchemaVersion
    target: SchemaVersion  # the current version, whose shape the decoded record has
    # None when the writer is the current version: fastavro then skips schema resolution, which is 2x faster.
    reader_schema: Schema | None


def _readers_by_fingerprint(
    versions: dict[tuple[str, int], SchemaVersion],
) -> dict[str, dict[bytes, _Reader]]:
    current: dict[str, SchemaVersion] = {}
    for version in versions.values():
        if version.name not in current or version.version > current[version.name].version:
            current[version.name] = version
    readers: dict[str, dict[bytes, _Reader]] = {name: {} for name in current}
    for version in versions.values():
        target = current[version.name]
        readers[version.name][version.fingerprint] = _Reader(
            version, target, None if version is target else target.wire_schema
        )
    return readers


_VERSIONS = _load(SCHEMA_DIR)
_READERS = _readers_by_fingerprint(_VERSIONS)
_CURRENT = {name: max(v for n, v in _VERSIONS if n == name) for name in _READERS}
_BY_FINGERPRINT = {version.fingerprint: version for version in _VERSIONS.values()}
_INTERVAL = _VERSIONS[("activity_interval", _CURRENT["activity_interval"])]
_STAMPED = _VERSIONS[("stamped_interval", _CURRENT["stamped_interval"])]
_INTERVAL_READERS = _READERS["activity_interval"]
_STAMPED_READERS = _READERS["stamped_interval"]
_BATCH = _VERSIONS[("stamped_batch", _CURRENT["stamped_batch"])]
_BATCH_READERS = _READERS["stamped_batch"]


def _encode(version: SchemaVersion, record: object) -> bytes:
    problem = version.check(record)
    if problem is not None:
        raise CodecError(f"cannot encode {version.label}: {_describe(problem)}")
    buffer = io.BytesIO()
    buffer.write(version.header)
    try:
        schemaless_writer(buffer, version.wire_schema, record)
    except Exception as exc:  # e.g. a long beyond 64 bits, a string with a lone surrogate
        problem = version.check(record)
        if problem is not None:
            raise CodecError(f"cannot encode {version.label}: {_describe(problem)}") from None
        raise CodecError(f"cannot encode {version.label}: {type(exc).__name__}: {exc}") from None
    return buffer.getvalue()


def _describe(problem: Problem) -> str:
    path, what = problem
    return f"field {'.'.join(path)!r}: {what}" if path else f"record: {what}"


def _decode(readers: dict[bytes, _Reader], kind: str, data: bytes) -> dict[str, Any]:
    if type(data) is not bytes:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise CorruptRecord(f"expected bytes holding {kind}, got {type(data).__name__}")
        data = bytes(data)
    if len(data) < _HEADER_SIZE:
        raise CorruptRecord(f"{len(data)} bytes are too few for a single-object-encoded {kind}")
    if data[:2] != MARKER:
        raise CorruptRecord(f"bad marker {data[:2].hex()}, expected c301 (single-object encoding)")
    schema_fingerprint = data[2:_HEADER_SIZE]
    reader = readers.get(schema_fingerprint)
    if reader is None:
        known = _BY_FINGERPRINT.get(schema_fingerprint)
        if known is not None:
            raise UnknownSchema(f"fingerprint {schema_fingerprint.hex()} is {known.label}, expected {kind}")
        raise UnknownSchema(f"unknown schema fingerprint {schema_fingerprint.hex()} for {kind}")
    buffer = io.BytesIO(data)
    buffer.seek(_HEADER_SIZE)
    try:
        record = schemaless_reader(buffer, reader.writer.wire_schema, reader.reader_schema)
    except Exception as exc:  # fastavro raises EOFError, IndexError, UnicodeDecodeError, ... on bad bodies
        raise CorruptRecord(f"undecodable {reader.writer.label} body: {type(exc).__name__}: {exc}") from None
    if buffer.tell() != len(data):
        extra = len(data) - buffer.tell()
        raise CorruptRecord(f"{extra} trailing bytes after the {reader.writer.label} record")
    if not reader.target.ints_fit(record):
        problem = reader.target.check(record) or ((), "an int does not fit in 32 bits")
        raise CorruptRecord(f"undecodable {reader.writer.label} body: {_describe(problem)}")
    # The reader's schema (and the writer's) is a record schema, which fastavro reads into a dict.
    return cast(dict[str, Any], record)


def encode_interval(interval: Mapping[str, Any]) -> bytes:
    """Encode an ActivityInterval dict with the current schema; `title` and `url` may be omitted (None)."""
    return _encode(_INTERVAL, interval)


def decode_interval(data: bytes) -> dict[str, Any]:
    """Decode an ActivityInterval written with any known version, in the current version's shape."""
    return _decode(_INTERVAL_READERS, "ActivityInterval", data)


def encode_stamped(stamped: Mapping[str, Any]) -> bytes:
    """Encode a StampedInterval dict (`user_id`, `device_id`, `received_at`, `interval`), current schema."""
    return _encode(_STAMPED, stamped)


def decode_stamped(data: bytes) -> dict[str, Any]:
    """Decode a StampedInterval written with any known version, in the current version's shape."""
    return _decode(_STAMPED_READERS, "StampedInterval", data)


def encode_stamped_batch(batch: Mapping[str, Any]) -> bytes:
    """Encode a StampedBatch dict (`user_id`, `device_id`, `received_at`, `intervals`), current schema."""
    return _encode(_BATCH, batch)


def decode_stamped_batch(data: bytes) -> dict[str, Any]:
    """Decode a StampedBatch written with any known version, in the current version's shape."""
    return _decode(_BATCH_READERS, "StampedBatch", data)


def decode_stamped_intervals(data: bytes) -> dict[str, Any]:
    """What a record of the intervals topic holds, as a StampedBatch dict, whichever stamped schema wrote it:
    a StampedBatch, or a single StampedInterval (the first gateway's records) as a batch of one."""
    if data[2:_HEADER_SIZE] in _STAMPED_READERS:
        stamped = decode_stamped(data)
        return {
            "user_id": stamped["user_id"],
            "device_id": stamped["device_id"],
            "received_at": stamped["received_at"],
            "intervals": [stamped["interval"]],
        }
    return decode_stamped_batch(data)


def _version(schema_name: str, version: int) -> SchemaVersion:
    try:
        return _VERSIONS[(schema_name, version)]
    except KeyError:
        known = ", ".join(f"{name} v{number}" for name, number in sorted(_VERSIONS))
        raise UnknownSchema(f"no schema {schema_name} v{version}; known: {known}") from None


def encode_with(schema_name: str, version: int, record: Mapping[str, Any]) -> bytes:
    """Encode with a named historical version, e.g. `("activity_interval", 1)`, as an older client would."""
    return _encode(_version(schema_name, version), record)


def fingerprint_of(schema_name: str, version: int) -> bytes:
    """The 8-byte CRC-64-AVRO fingerprint (little-endian, as on the wire) of one schema version."""
    return _version(schema_name, version).fingerprint


def current_version(schema_name: str) -> int:
    """The version that readers of `schema_name` decode into and `encode_*` write."""
    if schema_name not in _CURRENT:
        raise UnknownSchema(f"no schema named {schema_name!r}; known: {', '.join(sorted(_CURRENT))}")
    return _CURRENT[schema_name]


# -- Stamping without re-encoding --------------------------------------------------------------------
# The gateway stamps every interval it takes. StampedBatch is (user_id, device_id, received_at, intervals:
# array<ActivityInterval>); Avro writes a record as the concatenation of its fields and an array as a block
# count, the items and a 0 count. So when the intervals arrived written with the very ActivityInterval
# version a StampedBatch nests, the stamped bytes are the identity and count followed by the intervals'
# bodies unchanged: no decoding into and encoding out of Python objects, half the gateway's cost.
_BATCH_PREFIX_FIELDS = parse_schema(
    {
        "type": "record",
        "name": "StampedBatchPrefix",
        "fields": [
            {"name": "user_id", "type": "string"},
            {"name": "device_id", "type": "string"},
            {"name": "received_at", "type": "long"},
            {"name": "count", "type": "long"},
        ],
    }
)
_END_OF_ARRAY = b"\x00"


def _batch_by_concatenation(identity: Mapping[str, Any], encoded_intervals: list[bytes]) -> bytes:
    buffer = io.BytesIO()
    buffer.write(_BATCH.header)
    schemaless_writer(buffer, _BATCH_PREFIX_FIELDS, {**identity, "count": len(encoded_intervals)})
    for encoded in encoded_intervals:
        buffer.write(memoryview(encoded)[_HEADER_SIZE:])
    buffer.write(_END_OF_ARRAY)
    return buffer.getvalue()


def _batch_nests_current_interval() -> bool:
    """Whether StampedBatch nests exactly the current ActivityInterval (checked once, by example)."""
    sample = {
        "event_id": "00000000-0000-4000-8000-000000000000",
        "device_seq": 1,
        "start": 1,
        "end": 2,
        "app": "a",
        "title": None,
        "url": "u",
        "keystrokes": 3,
        "clicks": 4,
        "idle": True,
    }
    identity = {"user_id": "u", "device_id": "d", "received_at": 5}
    encoded = [encode_interval(sample), encode_interval(sample)]
    return encode_stamped_batch({**identity, "intervals": [sample, sample]}) == _batch_by_concatenation(
        identity, encoded
    )


_BATCH_BY_CONCATENATION = _batch_nests_current_interval()


def stamp_encoded_batch(user_id: str, device_id: str, received_at: int, encoded_intervals: list[bytes]) -> bytes | None:
    """StampedBatch bytes made from intervals as they arrived, when every one was written with the version
    the batch nests; None otherwise (the caller then encodes the decoded records).

    Every interval must already have been decoded successfully (so none has trailing bytes).
    """
    # An empty array is a lone 0 count, not a block of 0 items: leave that rare case to the encoder.
    if not _BATCH_BY_CONCATENATION or not encoded_intervals:
        return None
    header = _INTERVAL.header
    if any(encoded[:_HEADER_SIZE] != header for encoded in encoded_intervals):
        return None
    identity = {"user_id": user_id, "device_id": device_id, "received_at": received_at}
    return _batch_by_concatenation(identity, encoded_intervals)
