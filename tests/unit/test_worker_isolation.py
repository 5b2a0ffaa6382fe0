"""A permanent write failure is isolated to the records at fault; a transient one is retried whole (pure)."""

from __future__ import annotations

from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError
from hypothesis import given
from hypothesis import strategies as st

from stream_jobs.failures import is_permanent, short_reason
from stream_jobs.isolate import halves, write_isolating


def ch_error(code: int, text: str) -> DatabaseError:
    return DatabaseError(
        f"Received ClickHouse exception, code: {code}, server response: Code: {code}. DB::Exception: {text}. (X)",
        code=code,
    )


def test_the_warehouse_being_away_or_busy_is_transient():
    assert not is_permanent(OperationalError("Error HTTPConnectionPool(host='127.0.0.1', port=1): refused"))
    assert not is_permanent(ConnectionRefusedError())
    assert not is_permanent(TimeoutError())
    assert not is_permanent(ch_error(241, "Memory limit (total) exceeded"))
    assert not is_permanent(ch_error(252, "Too many parts (300). Merges are processing significantly slower"))
    assert not is_permanent(ch_error(60, "Table productimon.intervals does not exist"))
    assert not is_permanent(DatabaseError("HTTP driver received HTTP status 502"))
    # A bug in the worker's own code stops it where it is seen; it must not dead-letter every record.
    assert not is_permanent(TypeError("string indices must be integers")) and not is_permanent(KeyError("x"))


def test_the_data_itself_failing_is_permanent():
    assert is_permanent(ch_error(252, "Too many partitions for single INSERT block (more than 100)"))
    assert is_permanent(ch_error(376, "Cannot parse uuid {6f1c9a4e-3b2d-4c8e-9f0a-1b2c3d4e5f60}"))
    assert is_permanent(ch_error(469, "Constraint `poison` for table intervals is violated"))
    assert is_permanent(ValueError("badly formed hexadecimal UUID string"))
    assert is_permanent(DataError("cannot convert"))


def test_a_reason_is_one_short_line_without_the_quoted_row():
    reason = short_reason(ch_error(469, "Constraint `poison` for table intervals is violated at row 1: while x\nrow"))
    assert reason == "the warehouse refused it (code 469: Constraint `poison` for table intervals is violated at row 1)"
    assert "\n" not in short_reason(ValueError("a\nb")) and len(short_reason(ValueError("x" * 1000))) <= 300


def iv(device: str, seq: int, poison: bool = False) -> dict:
    return {"device_id": device, "device_seq": seq, "poison": poison}


POISON = ch_error(469, "Constraint violated")


def writer(log: list):
    def write(part):
        items = [i for items in part.values() for i in items]
        if any(i["poison"] for i in items):
            raise POISON
        log.append([(i["device_id"], i["device_seq"]) for i in items])
        return len(items)

    return write


@given(
    st.dictionaries(
        st.sampled_from("abcdef"),
        st.lists(st.booleans(), min_size=1, max_size=20),
        min_size=1,
    )
)
def test_everything_but_the_poison_is_written_once_and_each_device_in_order(layout):
    batch = {d: [iv(d, seq, bad) for seq, bad in enumerate(flags)] for d, flags in layout.items()}
    log: list = []
    out = write_isolating(writer(log), batch, is_permanent)
    written = [pair for part in log for pair in part]
    good = [(d, i["device_seq"]) for d, items in batch.items() for i in items if not i["poison"]]
    assert sorted(written) == sorted(good) and len(written) == len(set(written))
    for d in batch:  # a device's intervals are written in their order
        seqs = [s for dev, s in written if dev == d]
        assert seqs == sorted(seqs)
    assert sorted((i["device_id"], i["device_seq"]) for i, _ in out.poison) == sorted(
        (d, i["device_seq"]) for d, items in batch.items() for i in items if i["poison"]
    )
    assert all(exc is POISON for _, exc in out.poison) and sum(out.results) == len(good)


def test_a_clean_batch_is_one_write_and_a_transient_failure_is_raised_whole():
    log: list = []
    write_isolating(writer(log), {"a": [iv("a", 0), iv("a", 1)], "b": [iv("b", 0)]}, is_permanent)
    assert len(log) == 1

    def away(part):
        raise OperationalError("connection refused")

    try:
        write_isolating(away, {"a": [iv("a", 0), iv("a", 1)]}, is_permanent)
    except OperationalError:
        pass
    else:
        raise AssertionError("a transient failure must reach the retry loop")


def test_halves_split_devices_first_then_a_devices_intervals_in_order():
    first, second = halves({"a": [1], "b": [2], "c": [3]})
    assert (list(first), list(second)) == (["a"], ["b", "c"])
    assert halves({"a": [1, 2, 3]}) == ({"a": [1]}, {"a": [2, 3]})
