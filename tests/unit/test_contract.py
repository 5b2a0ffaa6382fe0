"""The contract of what the warehouse can store: each rule refuses with its own reason, everything accepted comes
back in normal form, and normal form is what the warehouse columns can hold."""

import unicodedata
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.codec import decode_interval, encode_interval
from schemas.contract import (
    DAY_MS,
    DEFAULT_WINDOW,
    FUTURE_SKEW_MS,
    MAX_APP_CHARS,
    MAX_CLICKS_PER_SECOND,
    MAX_INTERVAL_MS,
    MAX_KEYSTROKES_PER_SECOND,
    MAX_TITLE_CHARS,
    MAX_URL_CHARS,
    SPOOL_MAX_AGE_DAYS,
    Window,
    canonical_uuid,
    checked_interval,
    count_limit,
    normal_text,
    within_limits,
)

NOW = 1_780_000_000_000
BIDI_AND_CONTROLS = "\x00\x07\x1b\x7f\x9b\u202e\u202d\u2066\u2069\u200f\u061c"


def good(**changes) -> dict:
    interval = {
        "event_id": "6f1c9a4e-3b2d-4c8e-9f0a-1b2c3d4e5f60",
        "device_seq": 3,
        "start": NOW - 60_000,
        "end": NOW,
        "app": "Code",
        "title": "main.py",
        "url": None,
        "keystrokes": 10,
        "clicks": 2,
        "idle": False,
    }
    return interval | changes


def problem(interval, now=NOW, window=DEFAULT_WINDOW):
    return checked_interval(interval, now, window)[1]


def test_a_good_interval_passes_unchanged():
    assert checked_interval(good(), NOW) == (good(), None)


def test_an_instant_interval_passes_and_a_small_clock_skew_is_tolerated():
    assert problem(good(start=NOW, end=NOW, keystrokes=MAX_KEYSTROKES_PER_SECOND)) is None
    assert problem(good(end=NOW + FUTURE_SKEW_MS)) is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"event_id": "not-a-uuid"}, "event_id is not a UUID"),
        ({"event_id": "6f1c9a4e-3b2d-4c8e-9f0a-1b2c3d4e5fzz"}, "event_id is not a UUID"),
        ({"device_seq": -1}, "device_seq is negative"),
        ({"end": NOW - 120_000}, "end is before start"),
        ({"start": NOW - MAX_INTERVAL_MS - 1}, "interval is longer than a day"),
        ({"start": NOW, "end": NOW + FUTURE_SKEW_MS + 1}, "interval ends in the future"),
        ({"start": 0, "end": 1000}, "interval is too old: it began more than 30 days before it arrived"),
        ({"app": "   "}, "app is empty"),
        ({"app": "\u202e\x00\u2066"}, "app is empty"),
        ({"keystrokes": -3}, "keystrokes is negative"),
        ({"clicks": -1}, "clicks is negative"),
        ({"keystrokes": 1_000_000, "start": NOW - 1000}, "keystrokes exceed 100 a second: 1000000 in 1 s"),
        ({"clicks": 2**31 - 1}, "clicks exceed 50 a second: 2147483647 in 60 s"),
    ],
)
def test_each_rule_refuses_with_its_reason(changes, reason):
    assert problem(good(**changes)) == reason


def test_the_window_is_the_spool_age_by_default_and_configurable():
    oldest = good(start=NOW - SPOOL_MAX_AGE_DAYS * DAY_MS, end=NOW - SPOOL_MAX_AGE_DAYS * DAY_MS + 1000)
    assert problem(oldest) is None
    assert problem(oldest | {"start": oldest["start"] - 1}) is not None
    assert problem(oldest, window=Window.of_days(7)) is not None
    assert problem(good(start=NOW - 400 * DAY_MS, end=NOW - 400 * DAY_MS), window=Window.of_days(365)) is not None


def test_counts_at_the_physical_limit_pass_and_the_collector_cuts_to_it():
    minute = good(start=NOW - 60_000, end=NOW)
    at_limit = minute | {"keystrokes": 60 * MAX_KEYSTROKES_PER_SECOND, "clicks": 60 * MAX_CLICKS_PER_SECOND}
    assert problem(at_limit) is None
    assert problem(at_limit | {"clicks": at_limit["clicks"] + 1}) is not None
    cut = within_limits(minute | {"keystrokes": 10**9, "clicks": 10**9})
    assert (cut["keystrokes"], cut["clicks"]) == (at_limit["keystrokes"], at_limit["clicks"])
    assert problem(cut) is None
    assert count_limit(100, NOW, NOW) == count_limit(100, NOW, NOW + 1000) == 100


def test_strings_are_normalised_not_refused():
    normal, reason = checked_interval(
        good(
            app="Fire\x00fox\u202e",
            title="Cafe\u0301\tmenu\nline \u2066x\u2069",
            url="https://example.com/\x07" + "p" * MAX_URL_CHARS,
        ),
        NOW,
    )
    assert reason is None
    assert normal["app"] == "Firefox"
    assert normal["title"] == "Café menu line x"
    assert len(normal["url"]) == MAX_URL_CHARS and "\x07" not in normal["url"]
    long = checked_interval(good(app="a" * 1000, title="t" * 5000), NOW)[0]
    assert (len(long["app"]), len(long["title"])) == (MAX_APP_CHARS, MAX_TITLE_CHARS)
    assert checked_interval(good(title="\u200f\x00 "), NOW)[0]["title"] is None


@pytest.mark.parametrize(
    "form", [str.upper, lambda s: "{" + s + "}", lambda s: s.replace("-", ""), "urn:uuid:{}".format]
)
def test_event_ids_come_back_canonical(form):
    value = str(uuid.uuid4())
    assert checked_interval(good(event_id=form(value)), NOW)[0]["event_id"] == value


@given(st.uuids())
def test_every_written_form_of_an_id_is_made_canonical(value):
    for written in (str(value), str(value).upper(), "{" + str(value) + "}", value.hex, f"urn:uuid:{value}"):
        assert canonical_uuid(written) == str(value)


@given(st.text(), st.integers(min_value=1, max_value=2000))
def test_normal_text_holds_no_control_or_bidi_character_is_nfc_within_its_cap_and_stable(text, limit):
    normal = normal_text(text, limit)
    assert len(normal) <= limit
    assert not any(unicodedata.category(c) == "Cc" or c in BIDI_AND_CONTROLS for c in normal)
    assert unicodedata.is_normalized("NFC", normal)
    assert normal == normal.strip()
    assert normal_text(normal, limit) == normal


def an_interval():
    times = st.integers(min_value=-(2**62), max_value=2**62)
    return st.fixed_dictionaries(
        {
            "event_id": st.one_of(st.uuids().map(str), st.uuids().map(lambda u: f"{{{u}}}"), st.text(max_size=40)),
            "device_seq": st.integers(min_value=-(2**63), max_value=2**63 - 1),
            "start": times,
            "end": times,
            "app": st.text(),
            "title": st.none() | st.text(),
            "url": st.none() | st.text(),
            "keystrokes": st.integers(min_value=-(2**31), max_value=2**31 - 1),
            "clicks": st.integers(min_value=-(2**31), max_value=2**31 - 1),
            "idle": st.booleans(),
        }
    )


@given(an_interval(), st.integers(min_value=0, max_value=2**45))
def test_what_the_contract_accepts_is_storable_and_accepted_again_unchanged(interval, received):
    normal, reason = checked_interval(interval, received)
    if normal is None:
        assert reason
        return
    assert reason is None
    assert str(uuid.UUID(normal["event_id"])) == normal["event_id"]
    assert 0 <= normal["device_seq"] < 2**64
    assert received - Window().max_age_ms <= normal["start"] <= normal["end"] <= received + FUTURE_SKEW_MS
    assert 0 < len(normal["app"]) <= MAX_APP_CHARS
    assert 0 <= normal["keystrokes"] < 2**32 and 0 <= normal["clicks"] < 2**32
    # Normal form is a fixed point, and it survives the wire.
    assert checked_interval(normal, received) == (normal, None)
    assert decode_interval(encode_interval(normal)) == normal
