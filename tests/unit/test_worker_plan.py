"""What the worker writes for a batch (stream_jobs/plan.py plan_batch), given the devices' saved states: pure."""

from __future__ import annotations

import json

from stream_jobs.plan import intervals_to_insert, plan_batch
from stream_jobs.sessionize import SessionRules


def iv(device: str, seq: int, start_s: int, app: str = "Code") -> dict:
    return {
        "user_id": "u",
        "device_id": device,
        "event_id": f"{device}-{seq}",
        "device_seq": seq,
        "start": start_s * 1000,
        "end": (start_s + 10) * 1000,
        "app": app,
        "title": "",
        "site": "",
        "keystrokes": 1,
        "clicks": 0,
        "idle": False,
        "received_at": 0,
    }


RULES = SessionRules(session_gap_ms=30_000, break_after_ms=300_000)


def test_only_intervals_above_the_saved_state_are_written_and_each_seq_once():
    by_device = {"a": [iv("a", 0, 0), iv("a", 1, 10), iv("a", 1, 10), iv("a", 2, 20)], "b": [iv("b", 5, 0)]}
    assert [(i["device_id"], i["device_seq"]) for i in intervals_to_insert(by_device, {"a": 0})] == [
        ("a", 1),
        ("a", 2),
        ("b", 5),
    ]


def test_a_batch_the_saved_state_already_reflects_writes_nothing_but_what_is_idempotent():
    batch = {"a": [iv("a", 0, 0), iv("a", 1, 10)]}
    first = plan_batch(batch, {}, RULES)
    assert len(first.intervals) == 2 and len(first.states) == 1
    saved = {"a": first.states[0][3]}
    again = plan_batch(batch, saved, RULES)
    assert again.intervals == [] and again.states == [] and again.app_rows == [] and again.focus_rows == []


def test_a_redelivery_before_the_state_was_saved_writes_the_very_same_rows():
    batch = {"a": [iv("a", 0, 0), iv("a", 1, 10), iv("a", 2, 100, "Slack")]}
    assert plan_batch(batch, {}, RULES) == plan_batch(batch, {}, RULES)


def test_processing_in_pieces_ends_in_the_same_state_as_at_once():
    ivs = [iv("a", n, n * 15, "Code" if n % 4 else "Slack") for n in range(12)]
    whole = plan_batch({"a": ivs}, {}, RULES).states[0]
    saved: dict[str, str] = {}
    for piece in (ivs[:5], ivs[3:9], ivs[9:]):
        writes = plan_batch({"a": piece}, saved, RULES)
        for _, device, _, state in writes.states:
            saved[device] = state
    assert json.loads(saved["a"]) == json.loads(whole[3]) and whole[2] == 11


def test_a_log_that_shrank_is_noticed_and_growth_is_not():
    from stream_jobs.app import log_shrank

    seen: dict[int, int] = {}
    assert log_shrank(seen, {0: 10, 1: 5}) == []
    assert log_shrank(seen, {0: 12, 1: 5}) == []
    assert log_shrank(seen, {0: 3, 1: 7}) == [0]  # partition 0 came back shorter: the broker lost records
    assert seen == {0: 12, 1: 7}


def test_a_second_interval_under_a_used_event_id_is_refused_and_counted_nowhere():
    first, again, other = iv("a", 1, 0), iv("a", 2, 10, app="Other"), iv("a", 3, 20)
    again["event_id"] = first["event_id"]
    writes = plan_batch({"a": [first, again, other]}, {}, RULES)
    assert [i["device_seq"] for i in writes.intervals] == [1, 3]
    assert writes.refusals == [("u", "a", 2, "a-1", "repeated event_id: a-1 was already stored under device_seq 1")]
    assert "Other" not in {row[3] for row in writes.app_rows}
    # Against what is stored: the copy stored first, under seq 1, wins; a redelivery of seq 1 itself is no repeat.
    stored = plan_batch({"a": [first, again]}, {}, RULES, {("a", "a-1"): 1})
    assert [i["device_seq"] for i in stored.intervals] == [1] and len(stored.refusals) == 1
    later = iv("a", 9, 0)
    later["event_id"] = "a-1"
    assert plan_batch({"a": [later]}, {}, RULES, {("a", "a-1"): 1}).intervals == []
