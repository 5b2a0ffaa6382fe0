"""The tracker: observations become private, bounded intervals in the spool, cut where idle time really began."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.intervals import IntervalRules
from collector.privacy import PRIVATE_APP, ExclusionRule, PrivacySettings
from collector.spool import Spool
from collector.tracker import NO_WINDOW, Observation, Tracker, bounded, run_tracking
from schemas.codec import decode_interval
from schemas.contract import MAX_APP_CHARS, MAX_TITLE_CHARS, MAX_URL_CHARS, checked_interval
from schemas.privacy_rules import AccountPrivacy

T0 = 1_700_000_000_000


def seen(
    at_s: float,
    app: str = "editor",
    title: str | None = "notes.txt",
    url: str | None = None,
    keystrokes: int = 0,
    clicks: int = 0,
    idle_seconds: float = 0.0,
) -> Observation:
    return Observation(T0 + int(at_s * 1000), app, title, url, keystrokes, clicks, idle_seconds)


def spooled(spool: Spool) -> list[dict]:
    """What is on disk, decoded as the gateway would decode it, in device_seq order."""
    return [decode_interval(record.payload) for record in spool.next_batch(max_records=10_000)]


def summary(intervals: list[dict]) -> list[tuple]:
    return [(i["start"] - T0, i["end"] - T0, i["idle"], i["keystrokes"], i["clicks"]) for i in intervals]


@pytest.fixture
def spool(tmp_path: Path):
    with Spool(tmp_path / "spool.sqlite3") as s:
        yield s


def a_tracker(spool: Spool, privacy: PrivacySettings | None = None, **kw) -> Tracker:
    return Tracker(spool, privacy or PrivacySettings(), **kw)


# -- idle


def test_going_idle_ends_the_active_interval_when_input_stopped_not_when_the_threshold_passed(spool):
    tracker = a_tracker(spool, idle_after_s=5)
    for t in range(10):
        tracker.observe(seen(t, keystrokes=1 if t <= 3 else 0, idle_seconds=max(0, t - 3)))
    # t=8: idle for 5 s, so input stopped at t=3.
    tracker.pause(T0 + 10_000)
    assert summary(spooled(spool)) == [(0, 3_000, False, 4, 0), (3_000, 10_000, True, 0, 0)]


def test_with_default_settings_a_break_is_idle_from_the_moment_input_stopped(spool):
    # idle_after (180 s) is longer than max_interval (60 s): the quiet stretch is held open rather than written
    # as 60 s active pieces, so the cut can still go back to when input stopped (t=70).
    tracker = a_tracker(spool)
    for t in range(0, 400):
        typing = t <= 70
        tracker.observe(seen(t, keystrokes=1 if typing else 0, idle_seconds=0 if typing else t - 70))
    tracker.pause(T0 + 400_000)
    assert summary(spooled(spool)) == [
        (0, 60_000, False, 61, 0),
        (60_000, 70_000, False, 10, 0),
        (70_000, 130_000, True, 0, 0),
        (130_000, 190_000, True, 0, 0),
        (190_000, 250_000, True, 0, 0),
        (250_000, 310_000, True, 0, 0),
        (310_000, 370_000, True, 0, 0),
        (370_000, 400_000, True, 0, 0),
    ]


def test_quiet_reading_shorter_than_idle_after_stays_active_in_max_interval_pieces(spool):
    tracker = a_tracker(spool)
    for t in range(0, 200):
        # Input until t=10, then 150 s of reading without input, then typing again.
        quiet = 10 < t < 160
        tracker.observe(seen(t, keystrokes=0 if quiet else 1, idle_seconds=t - 10 if quiet else 0))
    tracker.pause(T0 + 200_000)
    intervals = spooled(spool)
    assert not any(i["idle"] for i in intervals)
    assert all(i["end"] - i["start"] <= 60_000 for i in intervals)
    assert [i["start"] - T0 for i in intervals] == [0, 60_000, 120_000, 180_000]
    assert sum(i["keystrokes"] for i in intervals) == 11 + 40


def test_keys_typed_when_coming_back_from_idle_count_in_the_new_active_interval(spool):
    tracker = a_tracker(spool, idle_after_s=5)
    tracker.observe(seen(0))
    tracker.observe(seen(1))
    tracker.observe(seen(6, idle_seconds=5))  # idle since t=1
    tracker.observe(seen(7, idle_seconds=6))
    tracker.observe(seen(8, keystrokes=7, clicks=2, idle_seconds=0.2))  # back
    tracker.observe(seen(9, keystrokes=1))
    tracker.pause(T0 + 10_000)
    assert summary(spooled(spool)) == [
        (0, 1_000, False, 0, 0),
        (1_000, 8_000, True, 0, 0),
        (8_000, 10_000, False, 8, 2),
    ]


def test_an_idle_stretch_keeps_the_window_that_was_in_front(spool):
    tracker = a_tracker(spool, idle_after_s=5)
    tracker.observe(seen(0, app="browser", title="docs"))
    tracker.observe(seen(1, app="browser", title="docs"))
    tracker.observe(seen(6, app="browser", title="docs", idle_seconds=5))
    tracker.pause(T0 + 7_000)
    assert [(i["app"], i["title"], i["idle"]) for i in spooled(spool)] == [
        ("browser", "docs", False),
        ("browser", "docs", True),
    ]


def test_idle_below_the_threshold_is_activity(spool):
    tracker = a_tracker(spool, idle_after_s=180)
    for t in range(5):
        tracker.observe(seen(t, idle_seconds=179.9))
    tracker.pause(T0 + 5_000)
    assert summary(spooled(spool)) == [(0, 5_000, False, 0, 0)]


def test_an_observation_at_exactly_idle_after_is_idle(spool):
    tracker = a_tracker(spool, idle_after_s=5)
    tracker.observe(seen(0))
    tracker.observe(seen(1))
    tracker.observe(seen(6, idle_seconds=5.0))
    tracker.pause(T0 + 7_000)
    assert [(i["end"] - T0, i["idle"]) for i in spooled(spool)] == [(1_000, False), (7_000, True)]


# -- privacy before the spool


def test_titles_are_not_spooled_when_title_capture_is_off(spool):
    tracker = a_tracker(spool, PrivacySettings(capture_titles=False))
    tracker.observe(seen(0, title="Salary review.xlsx"))
    tracker.pause(T0 + 1_000)
    [interval] = spooled(spool)
    assert interval["title"] is None
    assert interval["app"] == "editor"
    assert b"Salary" not in spool.next_batch()[0].payload


def test_a_hide_title_rule_hides_the_title_on_disk(spool):
    rule = ExclusionRule("bank", on="title", action="hide_title")
    tracker = a_tracker(spool, PrivacySettings(rules=(rule,)))
    tracker.observe(seen(0, title="My BANK statement"))
    tracker.observe(seen(1, title="recipes"))
    tracker.pause(T0 + 2_000)
    assert [i["title"] for i in spooled(spool)] == [None, "recipes"]


def test_a_drop_details_rule_keeps_only_time_and_counts(spool):
    rule = ExclusionRule("^keepass", on="app", action="drop_details")
    tracker = a_tracker(spool, PrivacySettings(rules=(rule,)))
    tracker.observe(seen(0, app="keepassxc", title="Passwords.kdbx", url="https://vault.example/x", keystrokes=3))
    tracker.observe(seen(1, app="keepassxc", title="Passwords.kdbx", url="https://vault.example/x", keystrokes=4))
    tracker.pause(T0 + 2_000)
    [interval] = spooled(spool)
    assert (interval["app"], interval["title"], interval["url"]) == (PRIVATE_APP, None, None)
    assert (interval["keystrokes"], interval["end"] - interval["start"]) == (7, 2_000)
    assert b"keepass" not in spool.next_batch()[0].payload.lower()


def test_url_query_fragment_and_user_info_never_reach_the_spool(spool):
    tracker = a_tracker(spool)
    tracker.observe(seen(0, app="firefox", url="https://user:pw@search.example/find?q=diagnosis#top"))
    tracker.pause(T0 + 1_000)
    [interval] = spooled(spool)
    assert interval["url"] == "https://search.example/"
    payload = spool.next_batch()[0].payload
    for secret in (b"diagnosis", b"pw", b"top", b"?", b"#"):
        assert secret not in payload


def test_urls_that_differ_only_in_query_share_one_interval(spool):
    tracker = a_tracker(spool)
    tracker.observe(seen(0, app="firefox", url="https://a.example/p?page=1"))
    tracker.observe(seen(1, app="firefox", url="https://a.example/p?page=2"))
    tracker.pause(T0 + 2_000)
    assert [(i["url"], i["end"] - i["start"]) for i in spooled(spool)] == [("https://a.example/", 2_000)]


@pytest.mark.parametrize("action", ["hide_title", "drop_details"])
def test_a_title_rule_applies_to_the_whole_title_even_when_it_is_too_long_to_keep(spool, action):
    rule = ExclusionRule("MyBank", on="title", action=action)
    tracker = a_tracker(spool, PrivacySettings(rules=(rule,)))
    title = "Statement for account 12-3456-789 " + "." * MAX_TITLE_CHARS + " - MyBank"
    tracker.observe(seen(0, app="firefox", title=title))
    tracker.pause(T0 + 1_000)
    [interval] = spooled(spool)
    assert interval["title"] is None


# -- bounds the gateway sets


def test_a_title_longer_than_the_gateway_accepts_is_cut_not_refused(spool):
    tracker = a_tracker(spool, PrivacySettings(account=AccountPrivacy("full")))  # kept whole: the account chose so
    tracker.observe(seen(0, title="t" * (MAX_TITLE_CHARS + 500)))
    tracker.pause(T0 + 1_000)
    [interval] = spooled(spool)
    assert len(interval["title"]) == MAX_TITLE_CHARS
    assert interval["title"] == "t" * (MAX_TITLE_CHARS - 1) + "…"
    assert checked_interval(interval, T0 + 1_000)[1] is None


def test_a_title_of_exactly_the_limit_is_kept_whole():
    title = "x" * MAX_TITLE_CHARS
    assert bounded(title, MAX_TITLE_CHARS) == title
    assert bounded(None, MAX_TITLE_CHARS) is None


@given(st.text(max_size=300), st.integers(min_value=1, max_value=200))
def test_bounded_text_fits_and_keeps_its_beginning(text, limit):
    cut = bounded(text, limit)
    assert len(cut) <= limit
    if len(text) <= limit:
        assert cut == text
    else:
        assert cut.endswith("…")
        assert text.startswith(cut[:-1])


def test_an_app_name_longer_than_the_gateway_accepts_is_cut(spool):
    tracker = a_tracker(spool)
    tracker.observe(seen(0, app="a" * (MAX_APP_CHARS * 2)))
    tracker.pause(T0 + 1_000)
    [interval] = spooled(spool)
    assert len(interval["app"]) == MAX_APP_CHARS


def test_a_url_longer_than_the_gateway_accepts_loses_its_path_and_the_interval_is_kept(spool):
    tracker = a_tracker(spool)
    tracker.observe(seen(0, app="firefox", url="https://a.example/" + "p" * MAX_URL_CHARS, keystrokes=2))
    tracker.pause(T0 + 1_000)
    [interval] = spooled(spool)
    assert interval["url"] == "https://a.example/"  # the path never reaches the spool (schemas/sites.py)
    assert (interval["app"], interval["keystrokes"]) == ("firefox", 2)


@pytest.mark.parametrize("app", ["", None])
def test_time_without_a_window_is_recorded_as_no_window(spool, app):
    tracker = a_tracker(spool)
    tracker.observe(seen(0, app=app, title=None))
    tracker.pause(T0 + 1_000)
    assert [i["app"] for i in spooled(spool)] == [NO_WINDOW]


def test_a_url_that_grows_when_stripped_is_still_within_what_the_gateway_accepts(spool):
    tracker = a_tracker(spool)
    url = "https://a.example/" + "@" * 2000  # 2018 characters; 6018 once '@' is percent-encoded
    tracker.observe(seen(0, app="firefox", url=url))
    tracker.pause(T0 + 1_000)
    [interval] = spooled(spool)
    assert checked_interval(interval, T0 + 1_000)[1] is None


def test_a_blank_app_name_is_spooled_as_an_app_the_gateway_accepts(spool):
    tracker = a_tracker(spool)
    tracker.observe(seen(0, app="   "))
    tracker.pause(T0 + 1_000)
    [interval] = spooled(spool)
    assert checked_interval(interval, T0 + 1_000)[1] is None


@pytest.mark.parametrize("changes", [{"title": "Inbox \ud83d"}, {"app": "firefox", "url": "https://a.example/\udc80"}])
def test_text_that_cannot_be_encoded_does_not_stop_tracking(spool, changes):
    tracker = a_tracker(spool)
    tracker.observe(seen(0, **changes))
    tracker.observe(seen(1, app="editor", title="after"))
    tracker.pause(T0 + 2_000)
    assert [i["end"] - i["start"] for i in spooled(spool)] == [1_000, 1_000]


# Any text at all, blank app names, '@' in paths, lone surrogates, URLs far past the gateway's limits.
_apps = st.one_of(st.none(), st.just(""), st.just("   "), st.text(max_size=400))
_urls = st.one_of(
    st.none(),
    st.text(max_size=50),
    st.builds(
        lambda host, path, query: f"https://{host}/{path}?{query}",
        st.from_regex(r"\A[a-z]{1,10}\.example\Z"),
        st.text(st.characters(blacklist_characters="?#"), max_size=5000),
        st.text(max_size=50),
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    observations=st.lists(
        st.tuples(_apps, st.one_of(st.none(), st.text(max_size=1500)), _urls, st.integers(0, 50), st.floats(0, 400)),
        min_size=1,
        max_size=8,
    )
)
def test_everything_spooled_is_an_interval_the_gateway_accepts(tmp_path_factory, observations):
    path = tmp_path_factory.mktemp("spool") / "spool.sqlite3"
    with Spool(path) as spool:
        tracker = a_tracker(spool, idle_after_s=180)
        for t, (app, title, url, keys, idle) in enumerate(observations):
            tracker.observe(seen(t, app=app, title=title, url=url, keystrokes=keys, idle_seconds=idle))
        tracker.pause(T0 + len(observations) * 1000)
        intervals = spooled(spool)
        assert tracker.not_spooled == 0
        assert tracker.spooled == len(intervals)
        for interval in intervals:
            assert checked_interval(interval, T0 + len(observations) * 1000)[1] is None
            assert interval["url"] is None or not any(c in interval["url"] for c in "?#@")
        assert [i["device_seq"] for i in intervals] == list(range(len(intervals)))
        assert all(a["end"] == b["start"] for a, b in zip(intervals, intervals[1:], strict=False))


# -- pause, restart, a full spool


def test_pause_closes_the_open_interval_at_the_pause(spool):
    tracker = a_tracker(spool)
    tracker.observe(seen(0, keystrokes=1))
    tracker.observe(seen(1, keystrokes=2))
    assert spooled(spool) == []  # still open
    tracker.pause(T0 + 1_500)
    assert summary(spooled(spool)) == [(0, 1_500, False, 3, 0)]
    assert tracker.spooled == 1


def test_after_a_pause_tracking_starts_afresh_at_the_next_observation(spool):
    tracker = a_tracker(spool)
    tracker.observe(seen(0))
    tracker.pause(T0 + 1_000)
    tracker.observe(seen(600))
    tracker.pause(T0 + 601_000)
    assert [(i["start"] - T0, i["end"] - T0) for i in spooled(spool)] == [(0, 1_000), (600_000, 601_000)]


def test_pause_clears_idle_so_the_next_idle_stretch_is_cut_again(spool):
    tracker = a_tracker(spool, idle_after_s=5)
    tracker.observe(seen(0))
    tracker.observe(seen(5, idle_seconds=5))
    tracker.pause(T0 + 6_000)
    tracker.observe(seen(100))
    tracker.observe(seen(101))
    tracker.observe(seen(106, idle_seconds=5))
    tracker.pause(T0 + 107_000)
    # The first stretch went idle at its very start, so it is idle throughout.
    assert [(i["start"] - T0, i["end"] - T0, i["idle"]) for i in spooled(spool)] == [
        (0, 6_000, True),
        (100_000, 101_000, False),
        (101_000, 107_000, True),
    ]


def test_pausing_with_nothing_open_spools_nothing(spool):
    tracker = a_tracker(spool)
    tracker.pause(T0)
    assert spooled(spool) == []
    assert (tracker.spooled, tracker.not_spooled) == (0, 0)


def test_device_seq_continues_from_the_spool_after_a_restart(tmp_path):
    path = tmp_path / "spool.sqlite3"
    with Spool(path) as spool:
        tracker = a_tracker(spool)
        for t in range(3):
            tracker.observe(seen(t, app=f"app{t}"))
        tracker.pause(T0 + 3_000)
        spool.acknowledge([0, 1, 2])  # delivered: the rows go, the sequence must not restart
    with Spool(path) as spool:
        tracker = a_tracker(spool)
        tracker.observe(seen(10))
        tracker.observe(seen(11, app="other"))
        tracker.pause(T0 + 12_000)
        assert [i["device_seq"] for i in spooled(spool)] == [3, 4]


def test_a_full_spool_counts_what_it_refused_and_keeps_what_it_holds(tmp_path):
    path = tmp_path / "spool.sqlite3"
    with Spool(path) as roomy:
        tracker = a_tracker(roomy)
        tracker.observe(seen(0, app="app0", title="probe"))
        tracker.pause(T0 + 1_000)
        one = len(roomy.next_batch()[0].payload)
    path.unlink()

    with Spool(path, max_bytes=2 * one + 10) as spool:
        tracker = a_tracker(spool)
        for t in range(6):
            tracker.observe(seen(t, app=f"app{t % 2}", title="probe"))
        tracker.pause(T0 + 6_000)
        held = spooled(spool)
        assert (tracker.spooled, tracker.not_spooled) == (2, 4)
        assert [(i["app"], i["device_seq"]) for i in held] == [("app0", 0), ("app1", 1)]
        assert spool.status().refused_when_full == 4


def test_intervals_are_spooled_as_they_close_not_only_at_pause(spool):
    tracker = a_tracker(spool, rules=IntervalRules(max_interval_ms=10_000))
    for t in range(25):
        tracker.observe(seen(t, keystrokes=1))
    assert [(i["start"] - T0, i["end"] - T0) for i in spooled(spool)] == [(0, 10_000), (10_000, 20_000)]
    assert tracker.spooled == 2


# -- the tracking loop, with sources that report what a script says


class ScriptedSources:
    """One entry per tick: (window or None, keystrokes, clicks, idle seconds)."""

    def __init__(self, ticks: list[tuple[tuple[str, str | None] | None, int, int, float]]) -> None:
        self.ticks = ticks
        self.tick = 0
        self.stopped = False
        self.windows = self
        self.inputs = self

    def active(self) -> tuple[str, str | None] | None:
        return self.ticks[self.tick][0]

    def take(self) -> tuple[int, int]:
        return self.ticks[self.tick][1], self.ticks[self.tick][2]

    def idle_seconds(self) -> float:
        return self.ticks[self.tick][3]


def run_script(
    spool: Spool,
    ticks: list,
    paused_ticks: frozenset[int] = frozenset(),
    urls=None,
    idle_after_s: float = 180,
) -> list[bool]:
    """Run the loop one tick per scripted second (no real waiting), then stop; returns on_tick's paused flags."""
    sources = ScriptedSources(ticks)
    stop = threading.Event()
    reported: list[bool] = []

    def on_tick(paused: bool) -> None:
        reported.append(paused)
        sources.tick += 1
        if sources.tick == len(ticks):
            stop.set()

    run_tracking(
        a_tracker(spool, idle_after_s=idle_after_s),
        sources,  # type: ignore[arg-type]
        stop,
        sample_s=0,
        paused=lambda: sources.tick in paused_ticks,
        urls=urls,
        clock=lambda: (T0 + sources.tick * 1000) / 1000,
        on_tick=on_tick,
    )
    return reported


EDITOR = ("editor", "notes.txt")


def test_the_loop_closes_the_open_interval_when_stopped(spool):
    run_script(spool, [(EDITOR, 1, 0, 0)] * 5)
    assert summary(spooled(spool)) == [(0, 5_000, False, 5, 0)]


def test_input_while_paused_is_never_counted(spool):
    ticks = [(EDITOR, 1, 0, 0)] * 3 + [(EDITOR, 100, 50, 0)] * 3 + [(EDITOR, 2, 1, 0)] * 3
    reported = run_script(spool, ticks, paused_ticks=frozenset({3, 4, 5}))
    assert reported == [False] * 3 + [True] * 3 + [False] * 3
    # Paused from t=3 to t=6: that time is not recorded, and neither is what was typed in it.
    assert summary(spooled(spool)) == [(0, 3_000, False, 3, 0), (6_000, 9_000, False, 6, 3)]


def test_no_window_in_front_is_recorded_as_no_window(spool):
    run_script(spool, [(None, 0, 0, 0)] * 2)
    assert [(i["app"], i["title"]) for i in spooled(spool)] == [(NO_WINDOW, None)]


def test_the_moment_without_a_window_during_a_focus_change_is_not_recorded(spool):
    other = ("terminal", "bash")
    run_script(spool, [(EDITOR, 0, 0, 0)] * 3 + [(None, 0, 0, 0)] * 2 + [(other, 0, 0, 0)] * 3)
    assert [(i["app"], i["end"] - i["start"]) for i in spooled(spool)] == [("editor", 5_000), ("terminal", 3_000)]


def test_a_desktop_without_windows_for_a_while_is_recorded_as_no_window(spool):
    run_script(spool, [(EDITOR, 0, 0, 0)] * 2 + [(None, 0, 0, 0)] * 5 + [(EDITOR, 0, 0, 0)] * 2)
    # The first two window-less samples still count as the editor: a focus change looks like that.
    assert [(i["app"], i["end"] - i["start"]) for i in spooled(spool)] == [
        ("editor", 4_000),
        (NO_WINDOW, 3_000),
        ("editor", 2_000),
    ]


def test_the_url_comes_from_the_url_source_for_the_window_in_front(spool):
    asked = []

    class Urls:
        def url_for(self, app: str, title: str | None, now_ms: int) -> str | None:
            asked.append((app, title, now_ms - T0))
            return "https://docs.example/page?token=secret" if app == "firefox" else None

    run_script(spool, [(("firefox", "Docs"), 0, 0, 0), (EDITOR, 0, 0, 0)], urls=Urls())
    assert asked == [("firefox", "Docs", 0), ("editor", "notes.txt", 1_000)]
    assert [(i["app"], i["url"]) for i in spooled(spool)] == [
        ("firefox", "https://docs.example/"),
        ("editor", None),
    ]


def test_the_loop_cuts_idle_where_the_os_says_input_stopped(spool):
    ticks = [(EDITOR, 1, 0, 0)] * 3 + [(EDITOR, 0, 0, s) for s in (1, 2, 3, 4, 5, 6)]
    run_script(spool, ticks, idle_after_s=5)
    # t=7 reports 5 s idle: input stopped at t=2.
    assert summary(spooled(spool)) == [(0, 2_000, False, 3, 0), (2_000, 9_000, True, 0, 0)]
