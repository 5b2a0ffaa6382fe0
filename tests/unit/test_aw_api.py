"""The ActivityWatch-compatible API: its pure rules (what is kept, how heartbeats merge, the wire format), its store,
and real HTTP round trips, including one by the real aw-client."""

from __future__ import annotations

import json
import stat
import threading

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.aw_api import (
    AwApi,
    BadRequest,
    format_timestamp,
    parse_event,
    parse_timestamp,
    refusal,
)
from collector.aw_store import AFK_TYPE, WEB_TYPE, WINDOW_TYPE, AwStore, Span, kept_data, merged_heartbeat
from testbed.activitywatch import ensure_aw_env, run_aw_python

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
T0_ISO = "2024-01-01T00:00:00+00:00"


class Clock:
    def __init__(self) -> None:
        self.now = T0 / 1000 + 3600

    def __call__(self) -> float:
        return self.now


def iso(ms_after_t0: int) -> str:
    return format_timestamp(T0 + ms_after_t0)


# --- kept_data ----------------------------------------------------------------------------------------------------


def test_a_window_event_keeps_app_and_title_only():
    data = {"app": "code", "title": "main.py - repo", "file": "/home/me/secret.py", "pid": 42}
    assert kept_data(WINDOW_TYPE, data) == {"app": "code", "title": "main.py - repo"}


def test_an_afk_event_keeps_its_status_only():
    assert kept_data(AFK_TYPE, {"status": "not-afk", "keys": 12}) == {"status": "not-afk"}


def test_a_web_event_keeps_the_site_never_the_query_or_fragment():
    data = {
        "url": "https://shop.example/cart/items?coupon=XYZ#pay",
        "title": "Cart",
        "audible": False,
        "incognito": False,
        "tabCount": 9,
        "favIconUrl": "https://shop.example/i.png",
    }
    kept = kept_data(WEB_TYPE, data)
    assert kept == {"url": "https://shop.example/", "title": "Cart", "audible": False, "incognito": False}


def test_a_private_window_event_is_not_stored_in_any_bucket():
    assert kept_data(WEB_TYPE, {"url": "https://a.example/", "incognito": True}) is None
    assert kept_data(WINDOW_TYPE, {"app": "firefox", "title": "x", "incognito": True}) is None


def test_another_bucket_type_keeps_names_never_paths_or_text():
    data = {
        "file": "/home/me/diary.md",
        "project": "productimon",
        "language": "python",
        "text": "dear diary",
        "url": "file:///home/me/diary.md",
        "app": 7,
    }
    assert kept_data("app.editor.activity", data) == {"project": "productimon", "language": "python", "url": "file:"}


def test_a_key_of_the_wrong_type_is_dropped():
    assert kept_data(WINDOW_TYPE, {"app": ["code"], "title": None}) == {}
    assert kept_data(WEB_TYPE, {"url": "https://a.example/", "audible": "yes"}) == {"url": "https://a.example/"}


_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=30))
_keys = st.one_of(
    st.sampled_from(["app", "title", "status", "url", "audible", "incognito", "project", "language", "file"]),
    st.text(max_size=10),
)
_urlish = st.builds(
    lambda scheme, host, path, query: f"{scheme}://{host}/{path}{query}",
    st.sampled_from(["http", "https", "file", "chrome"]),
    st.sampled_from(["a.example", "b.example:8080", "localhost"]),
    st.text(alphabet="abc/._-", max_size=20),
    st.sampled_from(["", "?q=secret", "#frag", "?a=1#b"]),
)
_data = st.dictionaries(_keys, st.one_of(_json_scalars, _urlish), max_size=8)
_types = st.sampled_from([WINDOW_TYPE, AFK_TYPE, WEB_TYPE, "app.editor.activity", "x"])
_ALLOWED = {
    WINDOW_TYPE: {"app", "title"},
    AFK_TYPE: {"status"},
    WEB_TYPE: {"url", "title", "audible", "incognito"},
}


@settings(max_examples=1000, deadline=None)
@given(_types, _data)
def test_kept_data_keeps_only_allowed_keys_and_no_query_or_fragment(bucket_type, data):
    kept = kept_data(bucket_type, data)
    if data.get("incognito") is True:
        assert kept is None
        return
    assert kept is not None
    assert set(kept) <= _ALLOWED.get(bucket_type, {"app", "title", "project", "language", "url"})
    for key, value in kept.items():
        assert isinstance(value, bool if key in ("audible", "incognito") else str)
    if "url" in kept:
        assert "?" not in kept["url"] and "#" not in kept["url"]
    assert kept_data(bucket_type, kept) == kept  # what is stored is kept as it is when read again


# --- the merge rule -----------------------------------------------------------------------------------------------

A = {"app": "a"}
B = {"app": "b"}


def test_a_heartbeat_within_the_pulse_time_extends_the_last_event():
    last = Span(T0, T0 + 5000, A)
    assert merged_heartbeat(last, Span(T0 + 9000, T0 + 9000, A), 5000) == Span(T0, T0 + 9000, A)


def test_a_heartbeat_after_the_pulse_time_starts_a_new_event():
    assert merged_heartbeat(Span(T0, T0 + 5000, A), Span(T0 + 10_001, T0 + 10_001, A), 5000) is None


def test_a_heartbeat_with_other_data_starts_a_new_event():
    assert merged_heartbeat(Span(T0, T0 + 5000, A), Span(T0 + 1000, T0 + 1000, B), 5000) is None


def test_a_heartbeat_before_the_last_event_starts_a_new_event():
    assert merged_heartbeat(Span(T0, T0 + 5000, A), Span(T0 - 1, T0 + 100, A), 5000) is None


def test_a_late_heartbeat_never_shortens_the_last_event():
    assert merged_heartbeat(Span(T0, T0 + 5000, A), Span(T0 + 1000, T0 + 2000, A), 0) == Span(T0, T0 + 5000, A)


def test_a_heartbeat_with_a_duration_extends_to_its_own_end():
    assert merged_heartbeat(Span(T0, T0 + 5000, A), Span(T0 + 6000, T0 + 8000, A), 1000) == Span(T0, T0 + 8000, A)


def test_there_is_nothing_to_merge_into_in_an_empty_bucket():
    assert merged_heartbeat(None, Span(T0, T0, A), 5000) is None


_ms = st.integers(min_value=0, max_value=10**7)


@settings(max_examples=1000, deadline=None)
@given(_ms, _ms, _ms, _ms, _ms, st.sampled_from([A, B]))
def test_the_merge_rule_holds_for_any_spans(start, length, offset, hb_length, pulse, data):
    last = Span(start, start + length, A)
    beat = Span(start + offset - 10**6, start + offset - 10**6 + hb_length, data)
    merged = merged_heartbeat(last, beat, pulse)
    within = last.start_ms <= beat.start_ms <= last.end_ms + pulse
    assert (merged is not None) == (data == A and within)
    if merged is not None:
        assert merged.start_ms == last.start_ms
        assert merged.end_ms == max(last.end_ms, beat.end_ms)
        assert merged.data == last.data


# --- the wire format ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00+00:00",
        "2024-01-01T01:00:00+01:00",
        "2023-12-31T19:00:00-0500",
        "2024-01-01T00:00:00.000000000Z",
        "2024-01-01 00:00:00",
    ],
)
def test_timestamps_are_read_as_iso_8601(text):
    assert parse_timestamp(text) == T0


def test_fractions_are_kept_to_the_millisecond():
    assert parse_timestamp("2024-01-01T00:00:00.123987654Z") == T0 + 123
    assert parse_timestamp(format_timestamp(T0 + 5)) == T0 + 5


@pytest.mark.parametrize("text", ["yesterday", "2024-13-01T00:00:00Z", "1704067200", "2024-01-01"])
def test_a_timestamp_that_is_not_iso_8601_is_refused_by_name(text):
    with pytest.raises(BadRequest, match="timestamp"):
        parse_timestamp(text)


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=-(10**12), max_value=10**14))
def test_a_formatted_timestamp_reads_back_the_same(ms):
    assert parse_timestamp(format_timestamp(ms)) == ms


def test_an_event_without_a_duration_or_data_is_a_moment_with_no_data():
    assert parse_event({"timestamp": T0_ISO, "id": None}) == Span(T0, T0, {})


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"duration": 1}, "has no timestamp"),
        ({"timestamp": T0_ISO, "duration": -1}, "must not be negative"),
        ({"timestamp": T0_ISO, "duration": "1"}, "duration must be a number"),
        ({"timestamp": T0_ISO, "data": [1]}, "data must be a JSON object"),
        ([], "must be a JSON object"),
    ],
)
def test_a_malformed_event_is_refused_with_what_was_wrong(event, message):
    with pytest.raises(BadRequest, match=message):
        parse_event(event)


def test_only_loopback_peers_naming_a_loopback_host_without_a_web_origin_are_answered():
    assert refusal("127.0.0.1", "127.0.0.1:5600", None, 5600) is None
    assert refusal("::ffff:127.0.0.1", "localhost", None, 5600) is None
    assert refusal("::1", "[::1]:5600", "chrome-extension://abcdef", 5600) is None
    assert refusal("127.0.0.1", "localhost:5600", "moz-extension://1234-5678", 5600) is None
    assert refusal("127.0.0.1", "localhost:5600", "http://localhost:5600", 5600) is None
    assert refusal("192.168.1.20", "127.0.0.1:5600", None, 5600) == "not_loopback"
    assert refusal("10.0.0.1", "127.0.0.1:5600", None, 5600) == "not_loopback"
    assert refusal("127.0.0.1", "evil.example:5600", None, 5600) == "foreign_host"
    assert refusal("127.0.0.1", None, None, 5600) == "foreign_host"
    assert refusal("127.0.0.1", "127.0.0.1:5600", "https://evil.example", 5600) == "foreign_origin"
    assert refusal("127.0.0.1", "127.0.0.1:5600", "null", 5600) == "foreign_origin"
    assert refusal("127.0.0.1", "127.0.0.1:5600", "http://localhost:3000", 5600) == "foreign_origin"


# --- the store ----------------------------------------------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    with AwStore(tmp_path / "home" / "activitywatch.sqlite3", clock=clock) as opened:
        yield opened


def test_the_store_is_owner_only(store):
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700


def test_the_store_keeps_its_buckets_and_device_id_across_a_reopen(tmp_path, clock):
    path = tmp_path / "aw.sqlite3"
    with AwStore(path, clock=clock) as first:
        first.create_bucket("w", type=WINDOW_TYPE, client="c", hostname="h")
        first.heartbeat("w", Span(T0, T0, A), 1000)
        device_id = first.device_id
    with AwStore(path, clock=clock) as again:
        assert again.device_id == device_id
        assert [b.id for b in again.buckets()] == ["w"]
        assert again.count("w") == 1


def test_closed_events_are_all_but_the_growing_last_one_oldest_first(store, clock):
    store.create_bucket("w", type=WINDOW_TYPE, client="c", hostname="host1")
    store.heartbeat("w", Span(T0, T0 + 1000, A), 5000)
    store.heartbeat("w", Span(T0 + 2000, T0 + 2000, B), 5000)
    store.heartbeat("w", Span(T0 + 3000, T0 + 3000, A), 5000)
    clock.now = (T0 + 10_000) / 1000
    closed = store.closed_events(older_than_ms=60_000, limit=100)
    assert [(c.bucket_id, c.bucket_type, c.hostname, c.start_ms, c.end_ms, c.data) for c in closed] == [
        ("w", WINDOW_TYPE, "host1", T0, T0 + 1000, A),
        ("w", WINDOW_TYPE, "host1", T0 + 2000, T0 + 2000, B),
    ]
    clock.now = (T0 + 3000 + 60_000) / 1000
    assert len(store.closed_events(older_than_ms=60_000, limit=100)) == 3
    assert len(store.closed_events(older_than_ms=60_000, limit=2)) == 2


def test_sent_events_are_not_handed_over_again_and_can_be_forgotten(store, clock):
    store.create_bucket("w", type=WINDOW_TYPE, client="c", hostname="h")
    for i, data in enumerate([A, B, A]):
        store.heartbeat("w", Span(T0 + i * 1000, T0 + i * 1000, data), 5000)
    clock.now = (T0 + 100_000) / 1000
    closed = store.closed_events(older_than_ms=60_000, limit=100)
    assert store.mark_sent([c.rowid for c in closed[:2]]) == 2
    assert store.mark_sent([closed[0].rowid]) == 0
    assert [c.rowid for c in store.closed_events(60_000, 100)] == [closed[2].rowid]
    assert store.forget_sent(before_ms=T0 + 100_000) == 2
    assert store.count("w") == 1


def test_the_last_event_of_a_bucket_survives_forget_sent(store, clock):
    store.create_bucket("w", type=WINDOW_TYPE, client="c", hostname="h")
    store.heartbeat("w", Span(T0, T0 + 1000, A), 5000)
    clock.now = (T0 + 100_000) / 1000
    store.mark_sent([c.rowid for c in store.closed_events(60_000, 10)])
    assert store.forget_sent(before_ms=T0 + 100_000) == 0


def test_a_heartbeat_extending_a_sent_event_continues_it_in_a_new_one(store, clock):
    store.create_bucket("w", type=WINDOW_TYPE, client="c", hostname="h")
    store.heartbeat("w", Span(T0, T0 + 1000, A), 120_000)
    clock.now = (T0 + 61_000) / 1000
    store.mark_sent([c.rowid for c in store.closed_events(60_000, 10)])
    continued = store.heartbeat("w", Span(T0 + 90_000, T0 + 90_000, A), 120_000)
    assert continued is not None and (continued.start_ms, continued.end_ms) == (T0 + 1000, T0 + 90_000)
    spans = [(e.start_ms, e.end_ms) for e in store.events("w")]
    assert spans == [(T0 + 1000, T0 + 90_000), (T0, T0 + 1000)]


def test_private_browsing_is_never_added_to_the_tab_before_it(store):
    store.create_bucket("web", type=WEB_TYPE, client="c", hostname="h")
    tab = {"url": "https://a.example/", "title": "A", "audible": False, "incognito": False}
    store.heartbeat("web", Span(T0, T0, tab), 60_000)
    assert store.heartbeat("web", Span(T0 + 10_000, T0 + 10_000, {**tab, "incognito": True}), 60_000) is None
    store.heartbeat("web", Span(T0 + 20_000, T0 + 20_000, tab), 60_000)
    assert [(e.start_ms, e.end_ms) for e in store.events("web")] == [(T0 + 20_000, T0 + 20_000), (T0, T0)]
    assert all(e.data["incognito"] is False for e in store.events("web"))


# --- over HTTP ----------------------------------------------------------------------------------------------------


@pytest.fixture
def api(store, clock):
    with AwApi(store, "workstation", 0, clock=clock) as running:
        yield running


def url(api: AwApi, path: str) -> str:
    return f"http://127.0.0.1:{api.port}/api/0/{path}"


def make_bucket(api: AwApi, bucket_id: str = "aw-watcher-window_h", bucket_type: str = WINDOW_TYPE):
    return requests.post(
        url(api, f"buckets/{bucket_id}"), json={"client": "aw-watcher-window", "type": bucket_type, "hostname": "h"}
    )


def beat(api: AwApi, at_ms: int, data: dict, pulsetime: float = 5, bucket_id: str = "aw-watcher-window_h"):
    return requests.post(
        url(api, f"buckets/{bucket_id}/heartbeat"),
        params={"pulsetime": pulsetime},
        json={"timestamp": iso(at_ms), "duration": 0, "data": data},
    )


def test_info_says_who_answers(api, store):
    answer = requests.get(url(api, "info"))
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    info = answer.json()
    assert info["hostname"] == "workstation"
    assert info["testing"] is False
    assert info["version"].startswith("productimon-")
    assert info["device_id"] == store.device_id


def test_a_bucket_is_created_once_then_reported_as_not_modified(api):
    first = make_bucket(api)
    assert first.status_code == 200 and first.json() == {}
    again = make_bucket(api)
    assert again.status_code == 304 and again.content == b""
    bucket = requests.get(url(api, "buckets/aw-watcher-window_h")).json()
    assert {k: bucket[k] for k in ("id", "type", "client", "hostname")} == {
        "id": "aw-watcher-window_h",
        "type": WINDOW_TYPE,
        "client": "aw-watcher-window",
        "hostname": "h",
    }
    assert parse_timestamp(bucket["created"])
    assert set(requests.get(url(api, "buckets/")).json()) == {"aw-watcher-window_h"}
    assert set(requests.get(url(api, "buckets")).json()) == {"aw-watcher-window_h"}


def test_heartbeats_merge_within_the_pulse_time_and_split_on_a_change(api):
    make_bucket(api)
    code = {"app": "code", "title": "main.py", "file": "/home/me/main.py"}
    replies = [beat(api, ms, code).json() for ms in (0, 2000, 4000)]
    assert [r["id"] for r in replies] == [replies[0]["id"]] * 3
    assert replies[-1]["duration"] == 4.0 and replies[-1]["data"] == {"app": "code", "title": "main.py"}
    other = beat(api, 5000, {"app": "firefox", "title": "news"}).json()
    assert other["id"] != replies[0]["id"]
    gap = beat(api, 5000 + 6000, {"app": "firefox", "title": "news"}).json()  # 6 s > pulsetime 5 s
    assert gap["id"] != other["id"]

    events = requests.get(url(api, "buckets/aw-watcher-window_h/events")).json()
    assert [(parse_timestamp(e["timestamp"]) - T0, e["duration"], e["data"]["app"]) for e in events] == [
        (11_000, 0.0, "firefox"),
        (5000, 0.0, "firefox"),
        (0, 4.0, "code"),
    ]
    assert requests.get(url(api, "buckets/aw-watcher-window_h/events/count")).json() == 3
    newest = requests.get(url(api, "buckets/aw-watcher-window_h/events"), params={"limit": 1}).json()
    assert [e["id"] for e in newest] == [gap["id"]]
    cut = requests.get(
        url(api, "buckets/aw-watcher-window_h/events"), params={"start": iso(1000), "end": iso(6000)}
    ).json()
    assert [(parse_timestamp(e["timestamp"]) - T0, e["duration"]) for e in cut] == [(5000, 0.0), (1000, 3.0)]
    assert requests.get(url(api, "buckets/aw-watcher-window_h")).json()["last_updated"] == iso(11_000)


def test_events_are_inserted_as_given_one_or_many(api):
    make_bucket(api, "editor", "app.editor.activity")
    one = requests.post(
        url(api, "buckets/editor/events"),
        json={"timestamp": iso(0), "duration": 30, "data": {"file": "/secret.txt", "project": "p"}},
    )
    assert one.status_code == 200 and one.json()["data"] == {"project": "p"}
    many = requests.post(
        url(api, "buckets/editor/events"),
        json=[{"timestamp": iso(60_000), "duration": 1.5, "data": {}}, {"timestamp": iso(30_000), "data": {}}],
    )
    assert many.status_code == 200
    events = requests.get(url(api, "buckets/editor/events")).json()
    assert [(parse_timestamp(e["timestamp"]) - T0, e["duration"]) for e in events] == [
        (60_000, 1.5),
        (30_000, 0.0),
        (0, 30.0),
    ]


@pytest.mark.parametrize(
    ("path", "params", "body", "message"),
    [
        ("heartbeat", {"pulsetime": 5}, b"{not json", "not valid JSON"),
        ("heartbeat", {}, {"timestamp": T0_ISO, "data": {}}, "pulsetime"),
        ("heartbeat", {"pulsetime": "soon"}, {"timestamp": T0_ISO, "data": {}}, "pulsetime must be a number"),
        ("heartbeat", {"pulsetime": 5}, {"duration": 0, "data": {}}, "heartbeat has no timestamp"),
        ("heartbeat", {"pulsetime": 5}, {"timestamp": T0_ISO, "duration": -2}, "must not be negative"),
        ("heartbeat", {"pulsetime": 5}, {"timestamp": "last tuesday"}, "not an ISO 8601 timestamp"),
        ("heartbeat", {"pulsetime": 5}, b'{"timestamp": "2024-01-01T00:00:00Z", "duration": NaN}', "NaN"),
        ("events", {}, [{"timestamp": T0_ISO}, {"timestamp": 5}], "event 1 timestamp must be an ISO 8601 string"),
        ("events", {}, b"", "no JSON body"),
        ("events?limit=many", {}, None, "limit must be an integer"),
        ("events?start=noon", {}, None, "start is not an ISO 8601 timestamp"),
    ],
)
def test_a_bad_request_is_answered_400_with_what_was_wrong(api, path, params, body, message):
    make_bucket(api)
    target = url(api, f"buckets/aw-watcher-window_h/{path}")
    if body is None:
        answer = requests.get(target, params=params)
    elif isinstance(body, bytes):
        answer = requests.post(target, params=params, data=body, headers={"Content-Type": "application/json"})
    else:
        answer = requests.post(target, params=params, json=body)
    assert answer.status_code == 400
    assert answer.headers["Content-Type"] == "application/json"
    assert message in answer.json()["message"]


def test_a_bucket_needs_client_type_and_hostname(api):
    answer = requests.post(url(api, "buckets/b"), json={"client": "c", "hostname": "h"})
    assert answer.status_code == 400
    assert answer.json() == {"message": "a new bucket needs type (a string)"}


def test_unknown_buckets_and_endpoints_are_404_json(api):
    for answer in (
        requests.get(url(api, "buckets/nope")),
        requests.get(url(api, "buckets/nope/events")),
        beat(api, 0, A, bucket_id="nope"),
        requests.get(url(api, "query/")),
        requests.get(f"http://127.0.0.1:{api.port}/"),
        requests.put(url(api, "buckets/nope"), json={}),
        requests.request("PROPFIND", url(api, "buckets/")),
    ):
        assert answer.status_code == 404
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.json()["message"]
    assert requests.get(url(api, "buckets/nope")).json() == {"message": "there is no bucket named 'nope'"}


def test_a_bucket_is_deleted_only_when_forced(api):
    make_bucket(api)
    beat(api, 0, A)
    assert requests.delete(url(api, "buckets/aw-watcher-window_h")).status_code == 401
    assert requests.delete(url(api, "buckets/aw-watcher-window_h?force=1"), json={}).status_code == 200
    assert requests.get(url(api, "buckets/")).json() == {}
    assert requests.delete(url(api, "buckets/aw-watcher-window_h?force=1")).status_code == 404


def test_web_pages_and_rebound_names_are_refused(api):
    make_bucket(api)
    page = beat_with_headers(api, {"Origin": "https://evil.example"})
    assert page.status_code == 403 and page.json()["message"] == "requests from web pages are refused"
    rebound = beat_with_headers(api, {"Host": f"evil.example:{api.port}"})
    assert rebound.status_code == 403
    extension = beat_with_headers(api, {"Origin": "chrome-extension://abcdefghijklmnop"})
    assert extension.status_code == 200
    assert api.refused["foreign_origin"] == 1 and api.refused["foreign_host"] == 1


def beat_with_headers(api: AwApi, headers: dict) -> requests.Response:
    return requests.post(
        url(api, "buckets/aw-watcher-window_h/heartbeat?pulsetime=5"),
        data=json.dumps({"timestamp": T0_ISO, "data": A}),
        headers={"Content-Type": "application/json", **headers},
    )


def test_the_api_listens_on_loopback_only(api):
    assert api._server is not None and api._server.server_address[0] == "127.0.0.1"


def test_the_status_counts_what_was_accepted_and_refused(api, clock):
    make_bucket(api)
    beat(api, 0, A)
    requests.get(url(api, "nothing"))
    beat(api, 0, A, pulsetime=-1)
    status = api.status()
    assert status.accepted == 2
    assert status.refused["not_found"] == 1 and status.refused["bad_request"] == 1
    assert status.last_accepted_ms == int(clock.now * 1000)


def test_concurrent_watchers_extend_one_event_never_two(api, store):
    """Eight connections at once, in any order: every heartbeat lies within the pulse time of the first one's
    event, so one event grows (a lost update would end it early; a race, split it in two)."""
    make_bucket(api)
    first = requests.post(
        url(api, "buckets/aw-watcher-window_h/heartbeat?pulsetime=60"),
        json={"timestamp": iso(0), "duration": 0, "data": A},
    )
    assert first.status_code == 200
    errors: list[BaseException] = []

    def report(thread: int) -> None:
        try:
            with requests.Session() as session:
                for i in range(10):
                    at = (i * 8 + thread) * 100
                    answer = session.post(
                        url(api, "buckets/aw-watcher-window_h/heartbeat?pulsetime=60"),
                        json={"timestamp": iso(at), "duration": 0, "data": A},
                    )
                    assert answer.status_code == 200
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=report, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    events = store.events("aw-watcher-window_h")
    assert len(events) == 1
    assert (events[0].start_ms, events[0].end_ms) == (T0, T0 + 7900)


def test_closed_events_reach_the_uploader_and_are_marked_sent(api, store, clock):
    make_bucket(api)
    for ms, data in ((0, A), (1000, A), (2000, B)):
        beat(api, ms, {**data, "title": "t"})
    clock.now = (T0 + 2500) / 1000
    closed = store.closed_events(older_than_ms=60_000, limit=10)
    assert [(c.start_ms - T0, c.end_ms - T0, c.data) for c in closed] == [(0, 1000, {"app": "a", "title": "t"})]
    assert store.mark_sent([c.rowid for c in closed]) == 1
    assert store.closed_events(older_than_ms=60_000, limit=10) == []


# --- the real aw-client -------------------------------------------------------------------------------------------

_AW_CLIENT_SCRIPT = """
import sys
from datetime import datetime, timedelta, timezone
from aw_client import ActivityWatchClient
from aw_core.models import Event

client = ActivityWatchClient("test-client", testing=False, host="127.0.0.1", port=int(sys.argv[1]))
info = client.get_info()
assert info["hostname"] == "workstation" and info["testing"] is False, info
client.create_bucket("aw-watcher-window_test", "currentwindow")
client.create_bucket("aw-watcher-window_test", "currentwindow")  # a restarted watcher: 304, no error
t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
editor = {"app": "code", "title": "main.py", "file": "/home/me/main.py"}
for seconds in (0, 1, 2):
    client.heartbeat("aw-watcher-window_test", Event(timestamp=t0 + timedelta(seconds=seconds), data=editor), 2.0)
client.heartbeat("aw-watcher-window_test", Event(timestamp=t0 + timedelta(seconds=3), data={"app": "firefox"}), 2.0)
events = client.get_events("aw-watcher-window_test")
print(len(events), client.get_eventcount("aw-watcher-window_test"), sorted(client.get_buckets()))
"""


def test_the_real_aw_client_reports_into_the_store(api, store):
    # The real aw-client from PyPI, in its own venv, with its config, queue and lock files in a temporary home.
    ensure_aw_env()
    ran = run_aw_python(_AW_CLIENT_SCRIPT, str(api.port), timeout_s=120)
    assert ran.split() == ["2", "2", "['aw-watcher-window_test']"]
    events = store.events("aw-watcher-window_test")
    assert [(e.start_ms - T0, e.end_ms - T0, dict(e.data)) for e in events] == [
        (3000, 3000, {"app": "firefox"}),
        (0, 2000, {"app": "code", "title": "main.py"}),
    ]
    bucket = store.bucket("aw-watcher-window_test")
    assert bucket is not None and bucket.client == "test-client" and bucket.type == WINDOW_TYPE
    assert api.refused == dict.fromkeys(api.refused, 0)
