"""Interval building: samples become contiguous ActivityIntervals, cut on change, idle and max_interval."""

from __future__ import annotations

import itertools
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.intervals import IntervalBuilder, IntervalRules, Sample, event_id

T0 = 1_700_000_000_000
FIELDS = {"event_id", "device_seq", "start", "end", "app", "title", "url", "keystrokes", "clicks", "idle"}


RUN = 0x0123_4567_89AB_CDEF


def a_builder(**rules: int) -> IntervalBuilder:
    return IntervalBuilder(IntervalRules(**rules), run=RUN)


def sample(at_s: float, app: str = "editor", title: str | None = "notes", url: str | None = None, **kw) -> Sample:
    counts = {"keystrokes": 0, "clicks": 0, "idle": False} | kw
    return Sample(T0 + int(at_s * 1000), app, title, url, **counts)


def run(builder: IntervalBuilder, samples: list[Sample], flush_at_ms: int | None = None) -> list[dict]:
    out = []
    for s in samples:
        out += builder.feed(s)
    if flush_at_ms is not None:
        out += builder.flush(flush_at_ms)
    return out


def test_an_app_change_closes_the_interval_at_the_sample_that_saw_it():
    b = a_builder()
    out = run(b, [sample(0), sample(1, keystrokes=3), sample(2, app="browser", clicks=1)], T0 + 3000)
    assert [(i["app"], i["start"] - T0, i["end"] - T0) for i in out] == [("editor", 0, 2000), ("browser", 2000, 3000)]
    assert [(i["keystrokes"], i["clicks"]) for i in out] == [(3, 1), (0, 0)]
    assert all(set(i) == FIELDS for i in out)
    assert [i["device_seq"] for i in out] == [0, 1]
    assert [i["event_id"] for i in out] == [event_id(RUN, 0), event_id(RUN, 1)]


@pytest.mark.parametrize("change", [{"title": "other"}, {"url": "https://example.com/"}, {"idle": True}])
def test_a_title_url_or_idle_change_closes_the_interval(change):
    out = run(a_builder(), [sample(0), sample(1), sample(2, **change)], T0 + 3000)
    assert [i["end"] - i["start"] for i in out] == [2000, 1000]


def test_a_long_activity_becomes_consecutive_intervals_of_at_most_max_interval():
    out = run(a_builder(), [sample(t, keystrokes=1) for t in range(150)], T0 + 150_000)
    assert [(i["start"] - T0, i["end"] - T0) for i in out] == [(0, 60_000), (60_000, 120_000), (120_000, 150_000)]
    assert sum(i["keystrokes"] for i in out) == 150


def test_the_interval_that_went_idle_is_cut_when_input_stopped():
    b = a_builder()
    out = run(b, [sample(t, keystrokes=1 if t < 20 else 0) for t in range(50)])
    out += b.idle_since(T0 + 20_000)
    out += run(b, [sample(t, idle=True) for t in range(50, 70)], T0 + 70_000)
    assert [(i["start"] - T0, i["end"] - T0, i["idle"], i["keystrokes"]) for i in out] == [
        (0, 20_000, False, 20),
        (20_000, 70_000, True, 0),
    ]


def test_idle_since_never_reaches_back_into_intervals_already_emitted():
    b = a_builder()
    out = run(b, [sample(t) for t in range(100)])
    out += b.idle_since(T0 + 10_000)  # the first 60 s are already closed
    out += b.flush(T0 + 100_000)
    assert [(i["start"] - T0, i["end"] - T0, i["idle"]) for i in out] == [(0, 60_000, False), (60_000, 100_000, True)]


def test_a_gap_in_sampling_is_not_counted_as_activity():
    out = run(a_builder(max_gap_ms=10_000), [sample(0), sample(1), sample(3600, keystrokes=4)], T0 + 3_601_000)
    assert [(i["start"] - T0, i["end"] - T0, i["keystrokes"]) for i in out] == [(0, 1000, 0), (3_600_000, 3_601_000, 4)]


def test_time_running_backwards_never_makes_an_interval_end_before_it_starts():
    out = run(a_builder(), [sample(10), sample(5, app="x"), sample(11, app="y")], T0)
    assert all(i["end"] > i["start"] for i in out)


def test_zero_length_intervals_are_not_emitted_and_their_counts_carry_on():
    b = a_builder()
    assert run(b, [sample(0, keystrokes=2)], T0) == []
    out = run(b, [sample(5, keystrokes=1)], T0 + 6000)
    assert [(i["start"] - T0, i["end"] - T0, i["keystrokes"]) for i in out] == [(5000, 6000, 3)]


def test_device_seq_continues_from_where_the_last_run_stopped():
    b = IntervalBuilder(next_seq=41)
    out = run(b, [sample(0), sample(1, app="x")], T0 + 2000)
    assert [i["device_seq"] for i in out] == [41, 42] and b.next_seq == 43


def test_bad_rules_are_refused():
    with pytest.raises(ValueError, match="max_interval_ms"):
        IntervalRules(max_interval_ms=0)


# Continuous sampling: steps of 0.5-2 s, a few apps/titles/urls, sometimes idle, sometimes an idle_since.
STEP = st.integers(500, 2000)
STATE = st.tuples(
    st.sampled_from(["editor", "browser", "term"]),
    st.sampled_from([None, "a", "b"]),
    st.sampled_from([None, "https://a.example/", "https://b.example/x"]),
    st.booleans(),
)
EVENT = st.one_of(
    st.tuples(st.just("sample"), STEP, STATE, st.integers(0, 50), st.integers(0, 10), st.integers(1, 20)),
    st.tuples(st.just("idle_since"), st.integers(0, 300_000)),
)


@settings(max_examples=300, deadline=None)
@given(events=st.lists(EVENT, max_size=200), max_interval_s=st.integers(1, 90), seq0=st.integers(0, 10**6))
def test_intervals_are_contiguous_bounded_ordered_and_conserve_counts(events, max_interval_s, seq0):
    max_ms = max_interval_s * 1000
    b = IntervalBuilder(IntervalRules(max_interval_ms=max_ms), next_seq=seq0)
    out: list[dict] = []
    now = T0
    keys = clicks = 0
    fed: list[Sample] = []
    seen_idle_since = False
    for event in events:
        if event[0] == "idle_since":
            out += b.idle_since(now - event[1])
            seen_idle_since = True
            continue
        _, step, (app, title, url, idle), k, c, repeat = event
        for _ in range(repeat):  # runs of the same state, long enough to cross max_interval
            now += step
            fed.append(Sample(now, app, title, url, k, c, idle))
            out += b.feed(fed[-1])
            keys, clicks = keys + k, clicks + c
    out += b.flush(now + 1000)

    for prev, cur in itertools.pairwise(out):
        assert cur["start"] == prev["end"]  # contiguous, never overlapping
        assert cur["device_seq"] == prev["device_seq"] + 1
    for i in out:
        assert 0 < i["end"] - i["start"] <= max_ms
        assert set(i) == FIELDS
    assert sum(i["keystrokes"] for i in out) == keys
    assert sum(i["clicks"] for i in out) == clicks
    assert b.next_seq == seq0 + len(out)
    if fed:
        assert out[0]["start"] == fed[0].at_ms and out[-1]["end"] == now + 1000
    if not seen_idle_since:
        # Each interval has one state: every sample lies in the interval that carries exactly its state.
        for f in fed:
            (covering,) = [i for i in out if i["start"] <= f.at_ms < i["end"]]
            assert (covering["app"], covering["title"], covering["url"], covering["idle"]) == (
                f.app,
                f.title,
                f.url,
                f.idle,
            )


# --- event ids ------------------------------------------------------------------------------------------------------


@given(run=st.integers(0, 2**64 - 1), seq=st.integers(0, 2**62 - 1))
def test_an_event_id_is_a_uuid_v8_holding_its_run_and_seq(run, seq):
    parsed = uuid.UUID(event_id(run, seq))
    assert parsed.version == 8 and parsed.variant == uuid.RFC_4122
    assert parsed.int & (2**62 - 1) == seq
    assert parsed.int >> 64 == (run & ~(0xF << 12)) | (0x8 << 12)
    assert str(parsed) == event_id(run, seq)  # canonical: lower case, hyphenated (schemas/contract.py)


@given(a=st.tuples(st.integers(0, 2**60 - 1), st.integers(0, 2**62 - 1)),
       b=st.tuples(st.integers(0, 2**60 - 1), st.integers(0, 2**62 - 1)))  # fmt: skip
def test_two_intervals_share_an_event_id_only_when_run_and_seq_are_the_same(a, b):
    def widened(run: int) -> int:  # the 60 bits around the version nibble
        return ((run >> 12) << 16) | (run & 0xFFF)

    assert (event_id(widened(a[0]), a[1]) == event_id(widened(b[0]), b[1])) == (a == b)


def test_two_runs_of_a_collector_give_the_same_seq_different_ids_and_a_run_ids_in_sequence():
    first, second = a_builder(), IntervalBuilder(IntervalRules())
    third = IntervalBuilder(IntervalRules())
    flushed = [run(b, [sample(0)], T0 + 1000)[0]["event_id"] for b in (first, second, third)]
    assert len(set(flushed)) == 3  # each builder drew its own run
    ids = [i["event_id"] for i in run(a_builder(), [sample(s, title=f"t{s}") for s in range(5)], T0 + 6000)]
    assert ids == [event_id(RUN, seq) for seq in range(5)]


@pytest.mark.parametrize(("run_bits", "seq"), [(-1, 0), (2**64, 0), (0, -1), (0, 2**62)])
def test_an_event_id_refuses_a_run_or_seq_out_of_its_bits(run_bits, seq):
    with pytest.raises(ValueError, match="run must be|seq must be"):
        event_id(run_bits, seq)
