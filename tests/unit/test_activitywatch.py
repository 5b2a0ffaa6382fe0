"""ActivityWatch exports read and planned (schemas/activitywatch.py), and the gateway's cut of recorded time
(gateway/imports.py): pure, so tested on their own, with properties over any events."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.imports import cut_where_recorded, numbered
from schemas.activitywatch import (
    MAX_PIECE_MS,
    Event,
    NotAnExport,
    StreamKey,
    flat,
    flooded,
    plan_import,
    read_export,
)

T = 1_700_000_000_000  # ms


def stamp(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def ev(at_s: float, seconds: float, **data) -> dict:
    return {"timestamp": stamp(T + int(at_s * 1000)), "duration": seconds, "data": data}


def export(**buckets: tuple[str, list[dict]]) -> str:
    return json.dumps(
        {
            "buckets": {
                name: {"id": name, "type": kind, "client": name.split("_")[0], "hostname": "h", "events": events}
                for name, (kind, events) in buckets.items()
            }
        }
    )


def totals(records: list[dict], *, idle: bool = False) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in records:
        if r["idle"] == idle:
            out[r["app"]] = out.get(r["app"], 0) + (r["end"] - r["start"]) / 1000
    return out


# -- reading ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"\xff\xfe not text", "not UTF-8 text"),
        ("<html>login</html>", "not JSON"),
        ('{"buckets": {"aw-watcher-window_h": {"events": [{"timestamp": "2024', "cut short"),
        ("[1, 2, 3]", "no 'buckets' object"),
        ('{"bucket": {}}', "no 'buckets' object"),
    ],
)
def test_a_file_that_is_no_export_gets_one_line_saying_what_it_is(raw, says):
    with pytest.raises(NotAnExport, match=says) as refused:
        read_export(raw)
    assert "\n" not in str(refused.value)


def test_each_bad_event_and_unknown_bucket_is_named_and_the_rest_is_read():
    read = read_export(
        export(
            **{
                "aw-watcher-window_h": (
                    "currentwindow",
                    [
                        ev(0, 10, app="A"),
                        ev(10, -5, app="B"),
                        {"timestamp": "yesterday", "duration": 1, "data": {}},
                        ev(20, float("inf"), app="C") | {"duration": "long"},
                        ev(30, 10, app="D"),
                        "not an event",
                    ],
                ),
                "aw-watcher-keys_h": ("os.keylogger", [ev(0, 1)]),
            }
        )
    )
    lines = [p.line() for p in read.problems]
    assert lines == [
        "bucket 'aw-watcher-window_h', event 1: has a negative duration (-5 s)",
        "bucket 'aw-watcher-window_h', event 2: has the timestamp 'yesterday', which is not ISO 8601",
        "bucket 'aw-watcher-window_h', event 3: has the duration 'long', which is not a number of seconds",
        "bucket 'aw-watcher-window_h', event 5: is not an object",
        "bucket 'aw-watcher-keys_h': has the unknown type 'os.keylogger'; its 1 events are not imported",
    ]
    assert read.events == 7
    assert [[e.data["app"] for e in b.events] for b in read.buckets] == [["A", "D"]]


# -- laying flat and flooding ---------------------------------------------------------------------------------


def test_where_events_overlap_the_later_one_is_in_front_and_the_earlier_resumes_after_it():
    spans = flat([Event(0, 100, {"a": 1}), Event(10, 20, {"b": 1}), Event(90, 120, {"c": 1})])
    assert [(s.start, s.end, s.data) for s in spans] == [
        (0, 10, {"a": 1}),
        (10, 20, {"b": 1}),
        (20, 90, {"a": 1}),
        (90, 120, {"c": 1}),
    ]


def test_short_gaps_are_filled_equal_data_merging_other_data_meeting_halfway():
    spans = flooded(flat([Event(0, 10, {"a": 1}), Event(13, 20, {"a": 1}), Event(24, 30, {"b": 1})]))
    assert [(s.start, s.end) for s in spans] == [(0, 22), (22, 30)]
    long_gap = flooded(flat([Event(0, 10, {"a": 1}), Event(6_000, 7_000, {"a": 1})]))
    assert [(s.start, s.end) for s in long_gap] == [(0, 10), (6_000, 7_000)]


EVENTS = st.lists(
    st.builds(
        lambda start, length, key: Event(start, start + length, {"k": key}),
        st.integers(0, 100_000),
        st.integers(0, 20_000),
        st.sampled_from("abc"),
    ),
    max_size=60,
)


def covered(spans) -> set[int]:
    return {t for s in spans for t in range(s.start // 100, s.end // 100)}


@given(EVENTS)
def test_laid_flat_nothing_overlaps_and_exactly_the_events_time_is_covered(events):
    events = [Event(e.start_ms // 100 * 100, e.end_ms // 100 * 100, e.data) for e in events]
    spans = flat(events)
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:], strict=False))
    assert all(s.start < s.end for s in spans)
    assert covered(spans) == covered(type("S", (), {"start": e.start_ms, "end": e.end_ms}) for e in events)


# -- planning ---------------------------------------------------------------------------------------------------


def test_window_time_is_active_where_present_idle_where_away_and_sites_come_from_the_browser_s_tabs():
    plan = plan_import(
        read_export(
            export(
                **{
                    "aw-watcher-window_h": (
                        "currentwindow",
                        [ev(0, 600, app="Code", title="a.py"), ev(600, 600, app="Firefox", title="Docs")],
                    ),
                    "aw-watcher-afk_h": ("afkstatus", [ev(0, 900, status="not-afk"), ev(900, 300, status="afk")]),
                    "aw-watcher-web-firefox_h": (
                        "web.tab.current",
                        [ev(700, 100, url="https://docs.python.org/3/", title="x", incognito=False)],
                    ),
                    "aw-watcher-web-chrome_h": ("web.tab.current", [ev(0, 1200, url="https://chrome.example/")]),
                }
            )
        )
    )
    assert list(plan.streams) == [StreamKey("h")]
    records = plan.streams[StreamKey("h")]
    assert totals(records) == {"Code": 600.0, "Firefox": 300.0}
    assert totals(records, idle=True) == {"Firefox": 300.0}
    sites = {r["url"]: (r["end"] - r["start"]) / 1000 for r in records if r["url"]}
    assert sites == {"https://docs.python.org/3/": 100.0}  # Chrome's tabs were never in front
    assert [r["start"] for r in records] == sorted(r["start"] for r in records)
    assert all(r["end"] - r["start"] <= MAX_PIECE_MS for r in records)


def test_without_an_afk_bucket_all_window_time_is_active_and_a_note_says_so():
    plan = plan_import(read_export(export(**{"aw-watcher-window_h": ("currentwindow", [ev(0, 7200, app="Code")])})))
    records = plan.streams[StreamKey("h")]
    assert totals(records) == {"Code": 7200.0} and len(records) == 2  # cut in pieces of at most an hour
    assert [(p.note, p.reason) for p in plan.problems] == [
        (True, "host 'h' has no AFK bucket: all its window time counts as active")
    ]


def test_an_editor_bucket_becomes_a_stream_of_its_own_with_the_project_s_name_not_its_path():
    plan = plan_import(
        read_export(
            export(
                **{
                    "aw-watcher-window_h": ("currentwindow", [ev(0, 60, app="Code")]),
                    "aw-watcher-vim_h": (
                        "app.editor.activity",
                        [ev(0, 30, file="/home/ann/secret/plan.txt", project="/home/ann/work/rocket", language="c")],
                    ),
                }
            )
        )
    )
    [editor] = plan.streams[StreamKey("h", "editor")]
    assert (editor["app"], editor["title"], editor["url"]) == ("aw-watcher-vim", "rocket", None)
    assert "secret" not in json.dumps(plan.streams[StreamKey("h", "editor")])


def test_the_same_export_always_gives_the_same_event_ids():
    raw = export(**{"aw-watcher-window_h": ("currentwindow", [ev(0, 5000, app="Code"), ev(5000, 10, app="X")])})
    ids = [[r["event_id"] for r in plan_import(read_export(raw)).streams[StreamKey("h")]] for _ in range(2)]
    assert ids[0] == ids[1] and len(set(ids[0])) == len(ids[0]) == 3


# -- the gateway's cut where the device recorded itself ------------------------------------------------------


def record(start: int, end: int, event_id: str = "6f0d2b1e-5a57-4c1e-9a0e-5f1f3c7a9b21") -> dict:
    return {"event_id": event_id, "start": start, "end": end, "app": "A", "device_seq": 0}


def test_recorded_time_is_cut_out_and_a_record_wholly_inside_it_is_counted():
    kept, covered_count = cut_where_recorded(
        [record(0, 100), record(100, 200, "1b4e28ba-2fa1-11d2-883f-0016d3cca427"), record(200, 300)],
        [(20, 40), (60, 250)],
    )
    assert [(r["start"], r["end"]) for r in kept] == [(0, 20), (40, 60), (250, 300)]
    assert covered_count == 1
    assert kept[0]["event_id"] == record(0, 0)["event_id"]  # the part where the record began keeps its id
    assert len({r["event_id"] for r in kept}) == 3
    again, _ = cut_where_recorded([record(0, 100), record(200, 300)], [(20, 40), (60, 250)])
    assert [r["event_id"] for r in again] == [r["event_id"] for r in kept]


SPANS = st.lists(st.tuples(st.integers(0, 1000), st.integers(1, 100)), max_size=15)


@given(SPANS, SPANS)
def test_after_the_cut_no_imported_moment_is_a_recorded_one_and_no_other_moment_is_lost(imported, recorded):
    records, at = [], 0
    for gap, length in imported:  # a stream's records follow one another
        at += gap % 50
        records.append(record(at, at + length))
        at += length
    merged: list[tuple[int, int]] = []
    for start, length in sorted(recorded):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], start + length))
        else:
            merged.append((start, start + length))
    kept, _ = cut_where_recorded(records, merged)
    moments = {t for r in kept for t in range(r["start"], r["end"])}
    taken = {t for a, b in merged for t in range(a, b)}
    assert not moments & taken
    assert moments | ({t for r in records for t in range(r["start"], r["end"])} & taken) == {
        t for r in records for t in range(r["start"], r["end"])
    }


def test_an_import_is_numbered_after_what_its_stream_holds():
    assert [r["device_seq"] for r in numbered([record(0, 1), record(1, 2)], after=41)] == [42, 43]


def test_timestamps_as_other_servers_and_watchers_write_them_are_read():
    raw = json.dumps(
        {
            "buckets": {
                "w": {
                    "type": "currentwindow",
                    "hostname": "h",
                    "events": [
                        {"timestamp": "2024-05-01T09:00:00Z", "duration": 1, "data": {"app": "A"}},
                        {"timestamp": "2024-05-01T09:00:01.123456789+00:00", "duration": 1, "data": {"app": "B"}},
                        {"timestamp": "2024-05-01T11:00:02+02:00", "duration": 1, "data": {"app": "C"}},
                    ],
                }
            }
        }
    )
    read = read_export(raw)
    assert not read.problems
    starts = [e.start_ms for e in read.buckets[0].events]
    assert [s - starts[0] for s in starts] == [0, 1123, 2000]
