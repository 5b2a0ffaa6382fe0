"""The real collector on a real native Wayland desktop of the wlroots family: sway on its headless backend
(testbed/sway.py), foot windows focused with swaymsg, idle from the compositor's own idle protocol, and what
reaches the warehouse through the real gateway and worker. No X display exists: nothing comes through XWayland.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from testbed.collector_process import (
    delivered_intervals,
    enrolled_home,
    in_use_until_seen,
    spool_depth,
    start_collector,
    status,
    stop_collector,
)
from testbed.sway import missing_programs, sway_desktop

pytestmark = pytest.mark.e2e

EDITOR = ("org.example.Editor", "Quarterly report - Editor")
CALCULATOR = ("org.example.Calculator", "Calculator")
IDLE_AFTER_S = 2.0
SETTLE_S = 0.6  # three samples at 0.2 s


@pytest.fixture(scope="module")
def desktop():
    missing = missing_programs()
    # Not a skip: `./dev test` installs these (infra/apt-packages.txt).
    assert not missing, f"the Wayland test needs {', '.join(missing)} (Debian packages in infra/apt-packages.txt)"
    with sway_desktop() as running:
        yield running


@pytest.fixture(scope="module")
def tracked_session(stack, desktop, warehouse_client, tmp_path_factory):
    """One scripted session: the editor in front, then the calculator, no input until idle, the editor again."""
    config = f"sample_seconds = 0.2\nidle_after_seconds = {IDLE_AFTER_S}\n"
    root = tmp_path_factory.mktemp("collector")
    home, user_id, *_ = enrolled_home(stack.settings, root / "home", config, device_name="sway-test")
    desktop.open_foot(*EDITOR)
    desktop.open_foot(*CALCULATOR)
    collector = start_collector(home, desktop.env, root / "collector.log")
    moments: dict[str, float] = {}
    try:
        desktop.focus(EDITOR[0])
        desktop.touch()
        time.sleep(SETTLE_S + 1.0)
        switching = time.time()
        desktop.focus(CALCULATOR[0])
        in_use_until_seen(desktop.touch, warehouse_client, user_id, switching)
        desktop.touch()
        moments["last_input_before_idle"] = time.time()
        time.sleep(IDLE_AFTER_S + 2.5)  # no input: idle
        moments["reported"] = status(home)
        desktop.focus(EDITOR[0])
        desktop.touch()
        moments["back"] = time.time()
        time.sleep(SETTLE_S + 1.0)
    finally:
        assert stop_collector(collector) == 0
    assert spool_depth(home) == 0
    return delivered_intervals(warehouse_client, user_id, moments["back"]), moments


def test_the_window_in_front_is_recorded_by_app_id_and_title(tracked_session):
    intervals, _ = tracked_session
    active = intervals[~intervals["idle"]]
    assert set(active["app"]) == {EDITOR[0], CALCULATOR[0]}
    assert set(active[active["app"] == EDITOR[0]]["title"]) == {EDITOR[1]}
    assert set(active[active["app"] == CALCULATOR[0]]["title"]) == {CALCULATOR[1]}
    # No key or click is counted on Wayland unless opted in: never a wrong count.
    assert intervals["keystrokes"].sum() == 0 and intervals["clicks"].sum() == 0


def test_the_order_of_the_windows_in_front_is_kept(tracked_session):
    intervals, _ = tracked_session
    ordered = intervals.sort_values("start")
    assert (ordered["start"].iloc[1:].to_numpy() == ordered["end"].iloc[:-1].to_numpy()).all()
    runs = [app for i, app in enumerate(ordered["app"]) if i == 0 or app != ordered["app"].iloc[i - 1]]
    assert runs[-3:] == [EDITOR[0], CALCULATOR[0], EDITOR[0]]


def test_going_idle_cuts_the_interval_where_input_stopped(tracked_session):
    intervals, moments = tracked_session
    stopped = datetime.fromtimestamp(moments["last_input_before_idle"], UTC)
    idle = intervals[intervals["idle"] & (intervals["start"] >= stopped - timedelta(seconds=1))].sort_values("start")
    assert not idle.empty, "no idle interval was recorded after the input stopped"
    first_idle = idle.iloc[0]
    # Cut at the last input (the compositor's idle timer), not IDLE_AFTER_S later when the threshold passed.
    assert abs((first_idle["start"] - stopped).total_seconds()) < 0.5
    back = datetime.fromtimestamp(moments["back"], UTC)
    assert abs((idle.iloc[-1]["end"] - back).total_seconds()) < 0.5
    assert set(intervals[intervals["start"] >= back]["app"]) == {EDITOR[0]}


def test_status_names_the_wayland_sources_and_says_counts_are_off(tracked_session):
    _, moments = tracked_session
    reported = moments["reported"]
    assert reported["sources"] == [
        "session: Wayland (wlroots)",
        "windows: zwlr_foreign_toplevel_manager_v1",
        "idle: org_kde_kwin_idle",
    ]
    assert any(line.startswith("key and click counts are not recorded: Wayland") for line in reported["unavailable"])
