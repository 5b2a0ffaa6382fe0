"""What the gateway accepts: each rule refuses with its own reason, and a good interval passes."""

import pytest

from gateway.validation import (
    FUTURE_SKEW_MS,
    MAX_APP_CHARS,
    MAX_INTERVAL_MS,
    MAX_TITLE_CHARS,
    MAX_URL_CHARS,
    interval_problem,
)

NOW = 1_780_000_000_000


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


def test_a_good_interval_passes():
    assert interval_problem(good(), NOW) is None


def test_an_instant_interval_passes_and_a_small_clock_skew_is_tolerated():
    assert interval_problem(good(start=NOW, end=NOW), NOW) is None
    assert interval_problem(good(end=NOW + FUTURE_SKEW_MS), NOW) is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"event_id": "not-a-uuid"}, "event_id is not a UUID"),
        ({"device_seq": -1}, "device_seq is negative"),
        ({"end": NOW - 120_000}, "end is before start"),
        ({"start": NOW - MAX_INTERVAL_MS - 1}, "interval is longer than a day"),
        ({"start": -5000, "end": -1000}, "start is before 1970"),
        ({"start": NOW, "end": NOW + FUTURE_SKEW_MS + 1}, "interval ends in the future"),
        ({"app": "   "}, "app is empty"),
        ({"app": "x" * (MAX_APP_CHARS + 1)}, f"app is longer than {MAX_APP_CHARS} characters"),
        ({"title": "x" * (MAX_TITLE_CHARS + 1)}, f"title is longer than {MAX_TITLE_CHARS} characters"),
        ({"url": "https://a.b/" + "x" * MAX_URL_CHARS}, f"url is longer than {MAX_URL_CHARS} characters"),
        ({"keystrokes": -3}, "keystrokes is negative"),
        ({"clicks": -1}, "clicks is negative"),
    ],
)
def test_each_rule_refuses_with_its_reason(changes, reason):
    assert interval_problem(good(**changes), NOW) == reason
