"""What the collector can observe: which session it is in, what it says is missing, and input counted as counts."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.sampling import (
    NO_WAYLAND_COUNTS,
    InputCounter,
    NoIdle,
    NoInput,
    NoWindows,
    Sources,
    open_sources,
    session_kind,
    session_limits,
    wayland_desktop,
)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the session


@pytest.mark.parametrize(
    ("env", "platform", "kind"),
    [
        ({}, "win32", "windows"),
        ({"DISPLAY": ":0"}, "win32", "windows"),
        ({}, "darwin", "macos"),
        ({"DISPLAY": ":0"}, "linux", "x11"),
        ({"DISPLAY": ":0", "XDG_SESSION_TYPE": "x11"}, "linux", "x11"),
        ({"XDG_SESSION_TYPE": "wayland"}, "linux", "wayland"),
        ({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, "linux", "wayland"),
        ({"XDG_SESSION_TYPE": "wayland", "DISPLAY": ":1"}, "linux", "wayland"),
        ({}, "linux", "none"),
        ({"DISPLAY": ""}, "linux", "none"),
        ({"XDG_SESSION_TYPE": "tty"}, "linux", "none"),
        ({"XDG_SESSION_TYPE": "x11"}, "linux", "none"),  # an X11 session this process cannot reach
        ({"DISPLAY": ":0"}, "freebsd13", "x11"),
    ],
)
def test_session_kind_comes_from_the_environment_alone(env, platform, kind):
    assert session_kind(env, platform) == kind


@pytest.mark.parametrize("kind", ["x11", "windows", "macos"])
def test_a_full_desktop_session_has_no_limits(kind):
    assert session_limits(kind, {}) == []


def test_without_a_graphical_session_everything_is_said_unavailable():
    [limit] = session_limits("none", {})
    assert "$DISPLAY and $WAYLAND_DISPLAY unset" in limit
    assert all(word in limit for word in ("window", "input", "idle"))


@pytest.mark.parametrize(
    ("desktop", "family"),
    [
        ("GNOME", "gnome"),
        ("ubuntu:GNOME", "gnome"),
        ("GNOME-Classic:GNOME", "gnome"),
        ("KDE", "kde"),
        ("sway", "wlroots"),
        ("Hyprland", "wlroots"),
        ("river", "wlroots"),
        ("", "wlroots"),
    ],
)
def test_the_wayland_desktop_family_comes_from_xdg_current_desktop(desktop, family):
    assert wayland_desktop({"XDG_CURRENT_DESKTOP": desktop}) == family


def test_a_wayland_session_without_a_reachable_compositor_says_so_and_records_nothing(tmp_path):
    env = {"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": str(tmp_path / "no-such-socket"), "DISPLAY": ":0"}
    sources = open_sources(env, platform="linux")
    # Not XWayland's partial view: nothing, with the reason, rather than only X11 windows and their keys.
    assert isinstance(sources.windows, NoWindows)
    assert isinstance(sources.inputs, NoInput)
    assert sources.unavailable[0].startswith("the Wayland compositor is unreachable: ")
    assert any(line.startswith("active window tracking is unavailable: ") for line in sources.unavailable)
    assert "install-desktop-support" in " ".join(sources.unavailable)
    assert NO_WAYLAND_COUNTS in sources.unavailable
    sources.stop()


@pytest.mark.parametrize(
    "env",
    [{}, {"XDG_SESSION_TYPE": "tty"}, {"XDG_SESSION_TYPE": "x11"}],
)
def test_on_linux_without_a_display_open_sources_reports_nothing_and_says_why(env):
    sources = open_sources(env, platform="linux")
    assert isinstance(sources.windows, NoWindows)
    assert isinstance(sources.inputs, NoInput)
    assert isinstance(sources.idle, NoIdle)
    assert sources.unavailable == session_limits(session_kind(env, "linux"), env)
    assert sources.unavailable  # never silent about it
    assert sources.windows.active() is None
    assert sources.inputs.take() == (0, 0)
    sources.stop()


def test_without_a_display_the_user_never_looks_idle():
    # Unknown input must not turn a whole day into idle time.
    sources = open_sources({}, platform="linux")
    assert sources.idle_seconds() == 0.0


# -- idle time


class FixedIdle:
    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds

    def idle_seconds(self) -> float | None:
        return self.seconds


class ListenerInput(NoInput):
    def __init__(self, since: float) -> None:
        self.since = since

    def seconds_since_input(self) -> float:
        return self.since


def test_the_os_idle_time_is_used_where_it_is_known():
    sources = Sources(NoWindows(), ListenerInput(5.0), FixedIdle(42.0), [])
    assert sources.idle_seconds() == 42.0


def test_without_the_os_idle_time_the_listener_decides():
    sources = Sources(NoWindows(), ListenerInput(5.0), FixedIdle(None), [])
    assert sources.idle_seconds() == 5.0


def test_an_os_idle_time_of_zero_is_an_answer_not_a_missing_one():
    sources = Sources(NoWindows(), ListenerInput(500.0), FixedIdle(0.0), [])
    assert sources.idle_seconds() == 0.0


# -- input counts


def test_key_presses_and_clicks_are_counted_and_taken_once():
    counter = InputCounter(clock=Clock())
    for _ in range(3):
        counter._key_pressed(object())
    counter._clicked(10, 20, "left", True)
    assert counter.take() == (3, 1)
    assert counter.take() == (0, 0)


def test_a_button_release_is_not_a_second_click():
    counter = InputCounter(clock=Clock())
    counter._clicked(1, 1, "left", True)
    counter._clicked(1, 1, "left", False)
    assert counter.take() == (0, 1)


def test_every_input_resets_the_time_since_input():
    clock = Clock(1000.0)
    counter = InputCounter(clock=clock)
    assert counter.seconds_since_input() == 0.0
    clock.now = 1030.0
    assert counter.seconds_since_input() == 30.0
    counter._key_pressed(None)
    clock.now = 1031.0
    assert counter.seconds_since_input() == 1.0
    clock.now = 1040.0
    counter._clicked(0, 0, None, False)  # a release is still input
    assert counter.seconds_since_input() == 0.0
    clock.now = 1050.0
    counter._moved(5, 5)
    assert counter.seconds_since_input() == 0.0
    # Taking the counts is not input.
    clock.now = 1060.0
    counter.take()
    assert counter.seconds_since_input() == 10.0


def test_time_since_input_never_goes_negative():
    clock = Clock(1000.0)
    counter = InputCounter(clock=clock)
    clock.now = 990.0
    assert counter.seconds_since_input() == 0.0


def test_only_counts_are_kept_not_which_key_or_where():
    counter = InputCounter(clock=Clock())
    counter._key_pressed("secret-key-identity")
    counter._clicked(1234, 5678, "left", True)
    held = [v for k, v in vars(counter).items() if k not in ("clock", "_lock", "_listeners")]
    assert sorted(map(repr, held)) == sorted(map(repr, [1, 1, 1000.0]))


@given(st.lists(st.sampled_from(["key", "press", "release", "move", "take"]), max_size=200))
def test_every_key_press_and_click_is_taken_exactly_once(events):
    counter = InputCounter(clock=Clock())
    taken = [0, 0]
    for event in events:
        if event == "key":
            counter._key_pressed(None)
        elif event in ("press", "release"):
            counter._clicked(0, 0, None, event == "press")
        elif event == "move":
            counter._moved(0, 0)
        else:
            keys, clicks = counter.take()
            taken[0] += keys
            taken[1] += clicks
    keys, clicks = counter.take()
    assert (taken[0] + keys, taken[1] + clicks) == (events.count("key"), events.count("press"))


def test_counts_from_listener_threads_are_not_lost_while_taken():
    counter = InputCounter()
    presses_per_thread, threads = 5000, 4
    done = threading.Event()
    taken = [0]

    def take_until_done() -> None:
        while not done.is_set():
            taken[0] += counter.take()[0]

    def press() -> None:
        for _ in range(presses_per_thread):
            counter._key_pressed(None)

    taker = threading.Thread(target=take_until_done)
    taker.start()
    pressers = [threading.Thread(target=press) for _ in range(threads)]
    for t in pressers:
        t.start()
    for t in pressers:
        t.join()
    done.set()
    taker.join()
    assert taken[0] + counter.take()[0] == presses_per_thread * threads


def test_stop_without_start_is_harmless():
    counter = InputCounter(clock=Clock())
    counter.stop()
    assert counter.take() == (0, 0)
