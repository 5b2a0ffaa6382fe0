"""A privacy rule applied to past data (stream_jobs/history.py): what it rewrites, what the preview counts, and
that sessions made again span by span are exactly the sessions of the rewritten raw rows made from scratch."""

from __future__ import annotations

import json
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.deletions import FOREVER_MS
from schemas.privacy_rules import PRIVATE_APP, PrivacyRule
from stream_jobs.forget import remake
from stream_jobs.history import effect_of, rewritten, spans_to_remake
from stream_jobs.sessionize import DeviceState, SessionRules, advance

RULES = SessionRules(session_gap_ms=30_000, break_after_ms=300_000)
T0 = 1_790_000_000_000


def test_a_rule_rewrites_what_it_matches_and_leaves_what_it_already_did():
    hide = PrivacyRule("title", "salary", "hide_title")
    assert rewritten(hide, "libreoffice-calc", "", "Salary 2026.ods") == ("libreoffice-calc", "", "")
    assert rewritten(hide, "libreoffice-calc", "", "budget.ods") is None
    drop = PrivacyRule("site", "bank.example", "drop_details")
    assert rewritten(drop, "firefox", "online.bank.example", "Statement") == (PRIVATE_APP, "", "")
    assert rewritten(drop, "firefox", "bank.example.org", "Statement") is None  # another site
    assert rewritten(PrivacyRule("app", "slack", "drop_details"), PRIVATE_APP, "", "") is None
    assert rewritten(PrivacyRule("app", "code", "hide_title"), "code", "", "") is None  # no title left to hide


def test_the_preview_counts_intervals_active_time_and_devices_of_what_would_change():
    groups = [
        ("laptop", "Slack", "", "channel", 10, 600_000),
        ("desk", "Slack", "", "direct message", 5, 300_000),
        ("laptop", "Code", "", "main.py", 7, 420_000),
        ("laptop", PRIVATE_APP, "", "", 3, 180_000),
    ]
    matched, effect = effect_of(PrivacyRule("app", "slack", "drop_details"), groups)
    assert matched == [("Slack", "", "channel"), ("Slack", "", "direct message")]
    assert (effect.intervals, effect.active_seconds, effect.devices) == (15, 900, 2)
    assert effect_of(PrivacyRule("app", "vim", "drop_details"), groups)[1].intervals == 0


def test_spans_hold_whole_focus_sessions_touched_and_run_on_when_the_open_one_is():
    sessions = [(0, 100), (500, 600), (1000, 1100), (5000, 5100)]
    assert spans_to_remake(sessions, [(550, 560)], max_span_ms=10_000) == [(500, 600)]
    # Two touched sessions close together are one span; far apart, two; the session between is made again too.
    assert spans_to_remake(sessions, [(10, 20), (1050, 1060)], max_span_ms=10_000) == [(0, 1100)]
    assert spans_to_remake(sessions, [(10, 20), (1050, 1060)], max_span_ms=500) == [(0, 100), (1000, 1100)]
    assert spans_to_remake(sessions, [(5050, 5060)], open_from=5000) == [(5000, FOREVER_MS)]
    assert spans_to_remake(sessions, [(700, 800)]) == []  # between sessions (idle): no session holds it
    assert spans_to_remake([], [(700, 800)], open_from=650) == [(650, FOREVER_MS)]


APPS = ("Code", "Slack", "firefox")


@st.composite
def streams(draw) -> list[dict]:
    """One device's intervals: apps, gaps inside a session, beyond a session gap and beyond a break."""
    out, t = [], T0
    for seq in range(draw(st.integers(1, 60))):
        t += draw(st.sampled_from([0, 5_000, 40_000, 400_000]))
        length = draw(st.sampled_from([1_000, 20_000, 60_000]))
        app = draw(st.sampled_from(APPS))
        out.append(
            {"user_id": "u", "device_id": "d", "event_id": str(uuid.UUID(int=seq + 1)), "device_seq": seq,
             "start": t, "end": t + length, "app": app, "site": "", "keystrokes": 1, "clicks": 1,
             "idle": draw(st.booleans()) and draw(st.booleans())}
        )  # fmt: skip
        t += length
    return out


def _shape(sessions) -> list[tuple]:
    return sorted((getattr(s, "app", ""), s.start, s.end, s.active_ms, s.closed) for s in sessions)


@settings(max_examples=300, deadline=None)
@given(streams(), st.sampled_from(APPS), st.sampled_from([60_000, 600_000, 10**9]))
def test_sessions_made_again_span_by_span_are_those_of_the_rewritten_rows_made_from_scratch(stream, app, max_span):
    """The path of stream_jobs/history.py `apply_rule` on a pure model of the tables: what the worker made,
    the rows rewritten, the touched spans' sessions removed and made again, the saved state cut."""
    rule = PrivacyRule("app", app, "drop_details")
    before = advance(DeviceState(), stream, RULES)
    rows = [dict(i, app=PRIVATE_APP) if rule.matches(i["app"], None, None) else i for i in stream]
    truth = advance(DeviceState(), rows, RULES)

    hits = [(i["start"], i["end"]) for i in stream if rule.matches(i["app"], None, None)]
    open_session = before.state.focus_session
    spans = spans_to_remake(
        [(f.start, f.end) for f in before.focus_sessions],
        hits,
        open_session.start if open_session is not None else None,
        max_span,
    )
    app_sessions, focus_sessions, state = list(before.app_sessions), list(before.focus_sessions), before.state
    for n, (lo, hi) in enumerate(spans):
        app_sessions = [s for s in app_sessions if not lo <= s.start <= hi]
        focus_sessions = [s for s in focus_sessions if not lo <= s.start <= hi]
        saved = {"d": json.dumps(state.to_dict())} if n == len(spans) - 1 and hi == FOREVER_MS else {}
        made = remake({"d": (lo, hi)}, {"d": [i for i in rows if lo <= i["start"] <= hi]}, saved, RULES)
        app_sessions += made.app_sessions
        focus_sessions += made.focus_sessions
        if "d" in made.states:
            state = DeviceState.from_dict(json.loads(made.states["d"][1]))

    assert _shape(app_sessions) == _shape(truth.app_sessions)
    assert _shape(focus_sessions) == _shape(truth.focus_sessions)
    assert _shape([s for s in (state.app_session, state.focus_session) if s]) == _shape(
        [s for s in (truth.state.app_session, truth.state.focus_session) if s]
    )
    assert state.last_seq == truth.state.last_seq
