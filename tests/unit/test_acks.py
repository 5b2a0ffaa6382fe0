"""The gateway's device_seq rule (gateway/acks.py): pure, so every case is checked without a server."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from gateway.acks import DeviceBook, Offered, judge_checked, mark_stored, remember_sent, sort_offered


def offered(seqs: list[int], ids: dict[int, str] | None = None) -> list[Offered]:
    ids = ids or {}
    return [Offered(i, s, ids.get(s, f"e{s}"), 1000 * s) for i, s in enumerate(seqs)]


def test_a_batch_out_of_order_within_itself_is_sent_sorted():
    out = sort_offered(DeviceBook(), offered([1, 0, 2]))
    assert [o.seq for o in out.send] == [0, 1, 2] and not out.errors and not out.check


def test_a_seq_below_what_was_sent_is_refused_as_out_of_order():
    book = DeviceBook()
    remember_sent(book, sort_offered(book, offered([5, 6, 7, 8, 9])).send)
    out = sort_offered(book, offered([2, 3, 4]))
    assert not out.send and [e.index for e in out.errors] == [0, 1, 2]
    assert all("out of order" in e.reason and "9" in e.reason for e in out.errors)


def test_a_resend_of_what_was_sent_but_not_stored_is_sent_again_and_another_event_is_refused():
    book = DeviceBook()
    remember_sent(book, offered([0, 1]))
    out = sort_offered(book, offered([0, 1], {1: "other"}))
    assert [o.seq for o in out.send] == [0]
    assert [e.index for e in out.errors] == [1] and out.errors[0].reason.startswith("reused device_seq: ")


def test_at_or_below_the_stored_mark_the_warehouse_decides():
    book = DeviceBook(stored=10)
    out = sort_offered(book, offered([3, 4, 11]))
    assert [o.seq for o in out.check] == [3, 4] and [o.seq for o in out.send] == [11]
    held, errors = judge_checked(out.check, {3: "e3", 4: "someone-else"}, 10)
    assert [h.seq for h in held] == [3] and [e.index for e in errors] == [1]
    assert errors[0].reason.startswith("reused device_seq: ")
    _, never = judge_checked(out.check, {}, 10)
    assert [e.reason.startswith("out of order: ") for e in never] == [True, True]


def test_a_seq_twice_in_one_batch_is_refused_once():
    out = sort_offered(DeviceBook(), offered([0, 0, 1]))
    assert [o.seq for o in out.send] == [0, 1] and [e.index for e in out.errors] == [1]


def test_marking_stored_moves_the_mark_and_forgets_what_it_covers():
    book = DeviceBook()
    remember_sent(book, offered([0, 1, 2, 3]))
    mark_stored(book, offered([0, 1, 2]))
    assert book.stored == 2 and set(book.sent) == {3}


@given(st.lists(st.lists(st.integers(0, 40), max_size=12), max_size=10))
def test_whatever_arrives_what_is_sent_is_strictly_increasing_per_device(batches):
    """The promise the worker relies on: the topic never gets a device_seq at or below one it already got."""
    book, topic = DeviceBook(), []
    for batch in batches:
        ids = {s: str(uuid.UUID(int=s)) for s in batch}
        out = sort_offered(book, [Offered(i, s, ids[s], 0) for i, s in enumerate(batch)])
        fresh = [o.seq for o in out.send if o.seq not in book.sent]
        topic.extend(fresh)
        remember_sent(book, out.send)
        # Every record of the batch is sent, checked or refused: none is silently dropped.
        assert len(out.send) + len(out.check) + len(out.errors) == len(batch)
    assert topic == sorted(set(topic))


def test_an_event_id_under_two_seqs_counts_once_the_lowest_seq_wins():
    out = sort_offered(DeviceBook(), offered([4, 2, 3], {2: "same", 4: "same"}))
    assert [o.seq for o in out.send] == [2, 3]
    assert [(e.index, e.reason) for e in out.errors] == [
        (0, "repeated event_id: same was already sent under device_seq 2")
    ]


def test_an_event_id_sent_but_not_yet_stored_cannot_come_back_under_a_new_seq():
    book = DeviceBook()
    remember_sent(book, offered([0, 1], {1: "x"}))
    assert [o.seq for o in sort_offered(book, offered([1], {1: "x"})).send] == [1]  # a retry of seq 1 is harmless
    out = sort_offered(book, offered([2, 3], {2: "x"}))
    assert [o.seq for o in out.send] == [3]
    assert [(e.index, e.reason) for e in out.errors] == [
        (0, "repeated event_id: x was already sent under device_seq 1")
    ]
    mark_stored(book, offered([0, 1], {1: "x"}))
    # Once stored, the gateway forgets it; the worker, which sees the warehouse, refuses a later copy.
    assert book.sent_ids == {} and book.sent == {}
