"""Sessionization: app sessions and focus sessions from one device's interval stream."""

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.contract import MAX_SESSION_MS, SESSION_SPAN_MS
from stream_jobs.sessionize import Advance, AppSession, DeviceState, FocusSession, SessionRules, advance

T0 = 1_700_000_000_000
DEVICE = "dev-1"
USER = "user-1"


def iv(seq, start_s, end_s, app="editor", site="", title="", keys=0, clicks=0, idle=False, device=DEVICE):
    """An interval as the worker hands it over; times in seconds after T0."""
    return {
        "user_id": USER,
        "device_id": device,
        "event_id": f"ev{seq}",
        "device_seq": seq,
        "start": T0 + int(start_s * 1000),
        "end": T0 + int(end_s * 1000),
        "app": app,
        "site": site,
        "title": title,
        "keystrokes": keys,
        "clicks": clicks,
        "idle": idle,
    }


def app_row(first_seq, start_s, end_s, active_s, intervals, version, closed, app="editor", site="", keys=0, clicks=0):
    return AppSession(
        f"{DEVICE}:{first_seq}", USER, DEVICE, app, site, T0 + int(start_s * 1000), T0 + int(end_s * 1000),
        int(active_s * 1000), keys, clicks, intervals, version, closed,
    )  # fmt: skip


def focus_row(first_seq, start_s, end_s, active_s, app_sessions, version, closed, keys=0, clicks=0):
    return FocusSession(
        f"{DEVICE}:{first_seq}:focus", USER, DEVICE, T0 + int(start_s * 1000), T0 + int(end_s * 1000),
        int(active_s * 1000), app_sessions - 1, app_sessions, keys, clicks, version, closed,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# The obvious cases, row for row


def test_a_title_change_does_not_split_an_app_session():
    out = advance(None, [iv(1, 0, 60, title="a.py", keys=10), iv(2, 60, 90, title="b.py", keys=5, clicks=2)])
    assert out.app_sessions == [app_row(1, 0, 90, 90, 2, version=2, closed=False, keys=15, clicks=2)]
    assert out.focus_sessions == [focus_row(1, 0, 90, 90, 1, version=2, closed=False, keys=15, clicks=2)]


def test_a_31_second_gap_splits_the_app_session_but_not_the_focus_session():
    out = advance(None, [iv(1, 0, 60), iv(2, 91, 120)])
    assert out.app_sessions == [
        app_row(1, 0, 60, 60, 1, version=2, closed=True),
        app_row(2, 91, 120, 29, 1, version=2, closed=False),
    ]
    assert out.focus_sessions == [focus_row(1, 0, 120, 89, app_sessions=2, version=2, closed=False)]


def test_a_gap_of_exactly_session_gap_continues_the_app_session():
    out = advance(None, [iv(1, 0, 60), iv(2, 90, 120)])
    assert out.app_sessions == [app_row(1, 0, 120, 90, 2, version=2, closed=False)]


def test_six_minutes_idle_splits_the_focus_session():
    out = advance(None, [iv(1, 0, 60, keys=3), iv(2, 60, 420, idle=True), iv(3, 420, 450, clicks=1)])
    assert out.app_sessions == [
        app_row(1, 0, 60, 60, 1, version=2, closed=True, keys=3),
        app_row(3, 420, 450, 30, 1, version=3, closed=False, clicks=1),
    ]
    assert out.focus_sessions == [
        focus_row(1, 0, 60, 60, 1, version=3, closed=True, keys=3),
        focus_row(3, 420, 450, 30, 1, version=3, closed=False, clicks=1),
    ]


def test_six_minutes_without_any_data_splits_the_focus_session_too():
    out = advance(None, [iv(1, 0, 60), iv(2, 420, 450)])
    assert [f.session_id for f in out.focus_sessions] == [f"{DEVICE}:1:focus", f"{DEVICE}:2:focus"]
    assert [f.closed for f in out.focus_sessions] == [True, False]


def test_a_gap_just_under_break_after_keeps_the_focus_session_and_exactly_break_after_splits_it():
    kept = advance(None, [iv(1, 0, 60), iv(2, 60, 359.999, idle=True), iv(3, 359.999, 400)])
    assert kept.focus_sessions == [focus_row(1, 0, 400, 100.001, app_sessions=2, version=3, closed=False)]
    split = advance(None, [iv(1, 0, 60), iv(2, 360, 400)])
    assert [f.closed for f in split.focus_sessions] == [True, False]


def test_an_idle_interval_ends_the_app_session_even_within_the_session_gap():
    out = advance(None, [iv(1, 0, 60), iv(2, 60, 65, idle=True), iv(3, 65, 80)])
    assert out.app_sessions == [
        app_row(1, 0, 60, 60, 1, version=2, closed=True),
        app_row(3, 65, 80, 15, 1, version=3, closed=False),
    ]
    # The idle stretch is short, so the focus session goes on; the user came back to a new app session.
    assert out.focus_sessions == [focus_row(1, 0, 80, 75, app_sessions=2, version=3, closed=False)]


def test_an_overlapping_interval_continues_the_app_session():
    out = advance(None, [iv(1, 0, 60), iv(2, 50, 100), iv(3, 70, 80), iv(4, 125, 130)])
    # Interval 3 lies inside the session; the gap before interval 4 is measured from the session's end (100 s).
    assert out.app_sessions == [app_row(1, 0, 130, 125, 4, version=4, closed=False)]


def test_a_session_keeps_its_first_start_even_when_a_later_interval_starts_earlier():
    # The warehouse's sorting key holds `start`, so every version of a session must carry the same one.
    out = advance(None, [iv(1, 10, 60), iv(2, 5, 70)])
    assert out.app_sessions == [app_row(1, 10, 70, 115, 2, version=2, closed=False)]
    assert out.focus_sessions == [focus_row(1, 10, 70, 115, 1, version=2, closed=False)]


def test_a_duplicate_seq_is_ignored():
    stream = [iv(1, 0, 60, keys=4), iv(2, 60, 90, keys=1)]
    once = advance(None, stream)
    assert advance(None, [stream[0], stream[0], stream[1], stream[0], stream[1]]) == once
    again = advance(once.state, stream)
    assert again.app_sessions == [] and again.focus_sessions == [] and again.state == once.state


def test_another_site_in_the_same_browser_is_a_new_app_session():
    out = advance(None, [iv(1, 0, 60, app="browser", site="github.com"), iv(2, 60, 90, app="browser", site="")])
    assert [(a.site, a.closed) for a in out.app_sessions] == [("github.com", True), ("", False)]
    assert out.focus_sessions[0].context_switches == 1


def test_open_sessions_are_emitted_as_they_grow_with_rising_versions():
    first = advance(None, [iv(5, 0, 60)])
    second = advance(first.state, [iv(6, 60, 120)])
    assert first.app_sessions == [app_row(5, 0, 60, 60, 1, version=5, closed=False)]
    assert second.app_sessions == [app_row(5, 0, 120, 120, 2, version=6, closed=False)]
    assert second.focus_sessions == [focus_row(5, 0, 120, 120, 1, version=6, closed=False)]


def test_a_batch_of_only_idle_intervals_touches_no_focus_session():
    first = advance(None, [iv(1, 0, 60)])
    second = advance(first.state, [iv(2, 60, 120, idle=True), iv(3, 120, 180, idle=True)])
    assert second.app_sessions == [app_row(1, 0, 60, 60, 1, version=2, closed=True)]
    assert second.focus_sessions == []
    assert second.state.app_session is None and second.state.focus_session == first.state.focus_session


def test_keys_and_clicks_of_idle_intervals_count_nowhere():
    out = advance(None, [iv(1, 0, 60, keys=7, clicks=1), iv(2, 60, 120, idle=True, keys=2, clicks=3)])
    assert out.app_sessions[0].keystrokes == 7 and out.app_sessions[0].clicks == 1
    assert out.focus_sessions[0].keystrokes == 7 and out.focus_sessions[0].clicks == 1
    assert out.focus_sessions[0].active_ms == 60_000


def test_a_stream_that_starts_idle_opens_no_session():
    out = advance(None, [iv(1, 0, 60, idle=True)])
    assert out == Advance(DeviceState(last_seq=1), [], [])


def test_zero_length_intervals_are_intervals_like_any_other():
    out = advance(None, [iv(1, 0, 60), iv(2, 60, 60, app="launcher"), iv(3, 60, 90)])
    assert [(a.app, a.active_ms, a.intervals) for a in out.app_sessions] == [
        ("editor", 60_000, 1),
        ("launcher", 0, 1),
        ("editor", 30_000, 1),
    ]
    assert out.focus_sessions[0].context_switches == 2


def test_an_app_session_never_crosses_a_focus_break_even_when_break_after_is_shorter_than_session_gap():
    rules = SessionRules(session_gap_ms=60_000, break_after_ms=10_000)
    out = advance(None, [iv(1, 0, 60), iv(2, 80, 90)], rules)
    assert [(a.session_id, a.closed) for a in out.app_sessions] == [(f"{DEVICE}:1", True), (f"{DEVICE}:2", False)]
    assert [f.closed for f in out.focus_sessions] == [True, False]


def test_a_day_of_unbroken_activity_ends_its_sessions_and_begins_new_ones():
    """Someone (or a stuck key) active without a break for 30 hours: the focus session takes no interval starting a
    day or more after its own start, so no session spans SESSION_SPAN_MS, the bound a query scans back by."""
    stream = [iv(n + 1, n * 60, (n + 1) * 60, keys=1) for n in range(30 * 60)]
    result = advance(None, stream)
    focus = sorted(result.focus_sessions, key=lambda f: f.start)
    assert [(f.start - T0, f.end - T0) for f in focus] == [(0, MAX_SESSION_MS), (MAX_SESSION_MS, 30 * 3_600_000)]
    assert [f.closed for f in focus] == [True, False]
    apps = sorted(result.app_sessions, key=lambda a: a.start)
    assert [(a.start - T0, a.end - T0) for a in apps] == [(0, MAX_SESSION_MS), (MAX_SESSION_MS, 30 * 3_600_000)]
    assert sum(f.active_ms for f in focus) == 30 * 3_600_000  # nothing is lost at the cut
    # Even a day-long interval starting just before the cut keeps its session under the span.
    long = advance(None, [iv(1, 0, 60), iv(2, 86_399, 86_399 + 86_400)])
    assert all(f.end - f.start < SESSION_SPAN_MS for f in long.focus_sessions)


def test_advance_leaves_the_input_state_untouched():
    state = advance(None, [iv(1, 0, 60)]).state
    before = copy.deepcopy(state)
    advance(state, [iv(2, 60, 65, idle=True), iv(3, 500, 510, app="chat")])
    assert state == before


def test_the_state_is_plain_json_and_comes_back_equal():
    state = advance(None, [iv(1, 0, 60, app="browser", site="github.com", keys=3), iv(2, 61, 70)]).state
    assert DeviceState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    assert DeviceState.from_dict(DeviceState().to_dict()) == DeviceState()


def test_a_saved_state_of_an_unknown_format_is_refused():
    data = DeviceState().to_dict() | {"format": 999}
    with pytest.raises(ValueError, match="format"):
        DeviceState.from_dict(data)


def test_an_interval_of_another_device_is_refused():
    with pytest.raises(ValueError, match="device"):
        advance(None, [iv(1, 0, 60), iv(2, 60, 90, device="dev-2")])


@pytest.mark.parametrize(("gap", "brk"), [(-1, 300_000), (30_000, 0), (30_000, -5)])
def test_nonsensical_rules_are_refused(gap, brk):
    with pytest.raises(ValueError):
        SessionRules(session_gap_ms=gap, break_after_ms=brk)


# ---------------------------------------------------------------------------------------------------------------
# Properties over generated streams

_APPS = [("editor", ""), ("browser", "github.com"), ("browser", "docs.python.org"), ("browser", ""), ("chat", "")]
# Gaps before each interval, in ms after the previous interval's end: around both thresholds, overlaps, long silences.
_GAPS = st.one_of(
    st.sampled_from([-40_000, -1, 0, 1, 29_999, 30_000, 30_001, 31_000, 299_999, 300_000, 300_001, 3 * 3_600_000]),
    st.integers(-60_000, 400_000),
)
_DURATIONS = st.one_of(st.just(0), st.integers(1, 90_000))
_STEP = st.tuples(
    _GAPS,
    _DURATIONS,
    st.sampled_from([None, None, *range(len(_APPS))]),  # None: the same app and site as the interval before
    st.sampled_from(["a", "b"]),
    st.integers(0, 3) | st.integers(0, 400),
    st.integers(0, 20),
    st.sampled_from([False, False, False, True]),
    st.integers(1, 3),
    st.sampled_from([False, False, True]),  # True: the gap counts from the last activity's end, across idle ones
)


@st.composite
def streams(draw, max_size=50):
    """One device's intervals as sent: seqs strictly increasing (not necessarily by 1), times realistic."""
    steps = draw(st.lists(_STEP, min_size=0, max_size=max_size))
    out, seq, prev_end, active_end, app = [], draw(st.integers(0, 5)), T0, T0, 0
    for gap, duration, next_app, title, keys, clicks, idle, seq_step, from_activity in steps:
        start = (active_end if from_activity else prev_end) + gap
        end = start + duration
        app = app if next_app is None else next_app
        out.append({
            "user_id": USER, "device_id": DEVICE, "event_id": f"e-{seq}", "device_seq": seq, "start": start,
            "end": end, "app": _APPS[app][0], "site": _APPS[app][1], "title": title, "keystrokes": keys,
            "clicks": clicks, "idle": idle,
        })  # fmt: skip
        seq += seq_step
        prev_end = end
        if not idle:
            active_end = max(active_end, end)
    return out


@st.composite
def deliveries(draw, stream):
    """The stream as a partition may deliver it: in order, with earlier intervals delivered again in between."""
    out = []
    for i, interval in enumerate(stream):
        if i and draw(st.integers(0, 5)) == 0:
            first = draw(st.integers(0, i - 1))
            last = draw(st.integers(first, i - 1))
            out.extend(stream[first : last + 1])
        out.append(interval)
    return out


@st.composite
def splits(draw, items):
    """Any split of `items` into consecutive batches, empty batches included."""
    cuts = sorted(draw(st.lists(st.integers(0, len(items)), max_size=8)))
    bounds = [0, *cuts, len(items)]
    return [items[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


_RULES = st.sampled_from(
    [SessionRules(), SessionRules(session_gap_ms=0, break_after_ms=1), SessionRules(60_000, 20_000)]
)


def restored(state: DeviceState) -> DeviceState:
    """The state as the worker gets it back from its table."""
    return DeviceState.from_dict(json.loads(json.dumps(state.to_dict())))


def run(batches, rules, state=None):
    """Feed the batches with a save and restore between each; return every batch's result."""
    results = []
    for batch in batches:
        out = advance(state, batch, rules)
        results.append(out)
        state = restored(out.state)
    return results


def final_table(results):
    """What the warehouse holds after merging: per session id, the row with the highest version."""
    table = {}
    for out in results:
        for row in [*out.app_sessions, *out.focus_sessions]:
            if row.session_id not in table or row.version > table[row.session_id].version:
                table[row.session_id] = row
    return table


_PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_PROPERTY
@given(st.data(), _RULES)
def test_any_batching_with_saved_state_gives_the_same_sessions_as_one_batch(data, rules):
    stream = data.draw(streams())
    one = advance(None, stream, rules)
    batches = data.draw(splits(data.draw(deliveries(stream))))
    split = run(batches, rules)
    assert final_table(split) == final_table([one])
    assert split[-1].state == one.state


@_PROPERTY
@given(st.data(), _RULES)
def test_redelivered_intervals_emit_nothing_and_leave_the_state_equal(data, rules):
    stream = data.draw(streams(max_size=30))
    done = data.draw(st.integers(0, len(stream)))
    state = run(data.draw(splits(stream[:done])), rules)[-1].state
    if done:
        earlier = data.draw(st.lists(st.sampled_from(stream[:done]), max_size=20).map(lambda s: sorted(s, key=seq_of)))
        for again in (stream[:done], earlier):
            for out in run(data.draw(splits(again)), rules, state):
                assert out.app_sessions == [] and out.focus_sessions == []
                assert out.state == state


def seq_of(interval):
    return interval["device_seq"]


@_PROPERTY
@given(st.data(), _RULES)
def test_active_time_keys_and_clicks_are_conserved(data, rules):
    stream = data.draw(streams())
    table = final_table(run(data.draw(splits(data.draw(deliveries(stream)))), rules)).values()
    active = [i for i in stream if not i["idle"]]
    apps = [r for r in table if isinstance(r, AppSession)]
    focus = [r for r in table if isinstance(r, FocusSession)]
    for row_field, interval_total in [
        ("active_ms", sum(i["end"] - i["start"] for i in active)),
        ("keystrokes", sum(i["keystrokes"] for i in active)),
        ("clicks", sum(i["clicks"] for i in active)),
    ]:
        assert sum(getattr(r, row_field) for r in apps) == interval_total
        assert sum(getattr(r, row_field) for r in focus) == interval_total
    assert sum(r.intervals for r in apps) == len(active)


@_PROPERTY
@given(st.data(), _RULES)
def test_sessions_follow_the_definitions(data, rules):
    stream = data.draw(streams())
    table = final_table(run(data.draw(splits(data.draw(deliveries(stream)))), rules))
    check_definitions(stream, table, rules)


def check_definitions(stream, table, rules):
    """Recover each session's intervals from the ids (a session is named by its first interval's device_seq) and hold
    the rows to docs/design.md "Sessions": contents, maximality, nesting, closing and versions."""
    app_of, focus_of = {}, {}  # event_id -> session id
    app_members, focus_members = {}, {}
    app_sid = focus_sid = None
    for interval in stream:
        if interval["idle"]:
            app_sid = None
            continue
        sid = f"{DEVICE}:{interval['device_seq']}"
        if sid in table:
            app_sid = sid
        if f"{sid}:focus" in table:
            focus_sid = f"{sid}:focus"
        # Every non-idle interval belongs to an app session started after the last idle one, and to a focus session.
        assert app_sid is not None and focus_sid is not None
        app_of[interval["event_id"]], focus_of[interval["event_id"]] = app_sid, focus_sid
        app_members.setdefault(app_sid, []).append(interval)
        focus_members.setdefault(focus_sid, []).append(interval)
    assert set(app_members) | set(focus_members) == set(table)
    position = {i["event_id"]: n for n, i in enumerate(stream)}

    def following(members):
        n = position[members[-1]["event_id"]] + 1
        return stream[n] if n < len(stream) else None

    def aggregates_match(row, members):
        assert (row.user_id, row.device_id) == (USER, DEVICE)
        assert row.start == members[0]["start"] and row.end == max(m["end"] for m in members)
        assert row.active_ms == sum(m["end"] - m["start"] for m in members)
        assert row.keystrokes == sum(m["keystrokes"] for m in members)
        assert row.clicks == sum(m["clicks"] for m in members)

    for sid, members in app_members.items():
        row = table[sid]
        aggregates_match(row, members)
        assert row.intervals == len(members)
        assert {(m["app"], m["site"]) for m in members} == {(row.app, row.site)}
        assert len({focus_of[m["event_id"]] for m in members}) == 1  # inside exactly one focus session
        for k in range(1, len(members)):
            # Consecutive in the stream (no idle or other app between), each within the gap of the end so far.
            assert position[members[k]["event_id"]] == position[members[k - 1]["event_id"]] + 1
            assert members[k]["start"] - max(m["end"] for m in members[:k]) <= rules.session_gap_ms
        after = following(members)
        assert row.closed == (after is not None)
        assert row.version == (after or members[-1])["device_seq"]
        # Maximal: the next interval could not have continued this session.
        if after is not None and not after["idle"] and focus_of[after["event_id"]] == focus_of[members[0]["event_id"]]:
            assert (after["app"], after["site"]) != (row.app, row.site) or (
                after["start"] - row.end > rules.session_gap_ms
            )

    for sid, members in focus_members.items():
        row = table[sid]
        aggregates_match(row, members)
        for k in range(1, len(members)):
            assert members[k]["start"] - max(m["end"] for m in members[:k]) < rules.break_after_ms
        starts = [m for m in members if f"{DEVICE}:{m['device_seq']}" in table]
        assert row.app_sessions == len(starts) >= 1 and members[0] is starts[0]
        assert row.context_switches == row.app_sessions - 1
        later = [i for i in stream[position[members[-1]["event_id"]] + 1 :] if not i["idle"]]
        assert row.closed == bool(later)
        if later:
            # Closed by the next activity, which starts a new focus session at least break_after later.
            assert focus_of[later[0]["event_id"]] == f"{DEVICE}:{later[0]['device_seq']}:focus"
            assert later[0]["start"] - row.end >= rules.break_after_ms
            assert row.version == later[0]["device_seq"]
        else:
            assert row.version == members[-1]["device_seq"]


@_PROPERTY
@given(st.data(), _RULES)
def test_versions_rise_at_most_one_session_of_each_kind_is_open_and_closed_ones_never_return(data, rules):
    stream = data.draw(streams())
    latest = {}
    for out in run(data.draw(splits(data.draw(deliveries(stream)))), rules):
        rows = [*out.app_sessions, *out.focus_sessions]
        assert len({r.session_id for r in rows}) == len(rows)  # one row per touched session per batch
        for row in rows:
            before = latest.get(row.session_id)
            assert before is None or (not before.closed and row.version > before.version)
            # The warehouse's sorting key holds `start`: a later version must keep it to replace the earlier one.
            assert before is None or before.start == row.start
            latest[row.session_id] = row
        for kind, in_state in [(AppSession, out.state.app_session), (FocusSession, out.state.focus_session)]:
            still_open = [r for r in latest.values() if isinstance(r, kind) and not r.closed]
            assert len(still_open) <= 1
            # The open one the warehouse shows is the one the worker carries on with.
            assert still_open == ([] if in_state is None else [in_state])
