"""The real collector on a real X11 desktop (Xvfb + openbox): windows focused with xdotool, keys typed and
mouse clicks made, and what reaches the warehouse through the real gateway and worker."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from testbed.collector_process import collector_command, enrolled_home, spool_depth, start_collector, stop_collector
from testbed.desktop import missing_programs, virtual_desktop
from tests.conftest import eventually
from warehouse.queries import export_intervals

pytestmark = pytest.mark.e2e

EDITOR_TITLE = "Quarterly report - Editor"
IDLE_AFTER_S = 2.0
SETTLE_S = 0.6  # three samples at 0.2 s: the collector has seen the newly focused window before input starts


@pytest.fixture(scope="module")
def desktop():
    missing = missing_programs()
    # Not a skip: this is the collector's central promise. `./dev test` installs these (infra/apt-packages.txt).
    assert not missing, f"the desktop test needs {', '.join(missing)} (Debian packages in infra/apt-packages.txt)"
    with virtual_desktop() as running:
        yield running


@pytest.fixture(scope="module")
def tracked_session(stack, desktop, warehouse_client, tmp_path_factory):
    """One scripted session: type and click in an editor, then in a calculator, go idle, come back.

    Returns the intervals the warehouse holds for the account, and the moments the script noted."""
    config = f"sample_seconds = 0.2\nidle_after_seconds = {IDLE_AFTER_S}\n"
    root = tmp_path_factory.mktemp("collector")
    home, user_id, *_ = enrolled_home(stack.settings, root / "home", config, device_name="desktop-test")
    editor = desktop.open_xterm(EDITOR_TITLE)
    calculator = desktop.open_xcalc()
    collector = start_collector(home, desktop.env, root / "collector.log")
    moments: dict[str, float] = {}
    try:
        desktop.focus(editor)
        time.sleep(SETTLE_S)
        desktop.type("hello world")  # 11 keys
        desktop.click(editor, 3)
        time.sleep(1.0)
        desktop.focus(calculator)
        time.sleep(SETTLE_S)
        moments["calculator_input"] = time.time()
        desktop.type("abcde")  # 5 keys
        desktop.click(calculator, 2)
        moments["last_input_before_idle"] = time.time()
        time.sleep(IDLE_AFTER_S + 2.0)  # no input: idle
        desktop.focus(editor)
        time.sleep(SETTLE_S)
        moments["back"] = time.time()
        desktop.type("xyz")  # 3 keys
        time.sleep(1.0)
        collector_command(home, "pause")  # closes the interval in progress
        time.sleep(1.0)
        desktop.type("paused")  # never counted: nothing is recorded while paused
        desktop.click(editor, 4)
        time.sleep(0.5)
    finally:
        assert stop_collector(collector) == 0
    # Stopped while the gateway is reachable, the collector delivered everything before it exited.
    assert spool_depth(home) == 0
    start = datetime.now(UTC) - timedelta(hours=1)
    end = datetime.now(UTC) + timedelta(minutes=5)

    def stored() -> pd.DataFrame:
        return export_intervals(warehouse_client, user_id, start, end)

    # Everything the collector spooled has been acknowledged, i.e. is in the broker; the worker writes it.
    assert eventually(lambda: stored()["keystrokes"].sum() == 19, 60)
    return stored(), moments


def test_key_and_click_counts_reach_the_warehouse_per_application_and_pause_records_nothing(tracked_session):
    intervals, _ = tracked_session
    active = intervals[~intervals["idle"]]
    per_app = active.groupby("app")[["keystrokes", "clicks"]].sum().to_dict("index")
    assert per_app["xterm"] == {"keystrokes": 14, "clicks": 3}
    assert per_app["XCalc"] == {"keystrokes": 5, "clicks": 2}
    # A terminal's title is scrubbed to the program's name (schemas/titles.py).
    assert set(active[active["app"] == "xterm"]["title"]) == {EDITOR_TITLE.split()[0]}
    assert set(active[active["app"] == "XCalc"]["title"]) == {"Calculator"}


def test_intervals_are_contiguous_and_in_order(tracked_session):
    intervals, _ = tracked_session
    ordered = intervals.sort_values("start")
    assert (ordered["end"] > ordered["start"]).all()
    assert (ordered["start"].iloc[1:].to_numpy() == ordered["end"].iloc[:-1].to_numpy()).all()


def test_going_idle_cuts_the_interval_where_input_stopped(tracked_session):
    intervals, moments = tracked_session
    # The desktop may count as idle before the script first types (nobody touched it since it started).
    after_input = datetime.fromtimestamp(moments["calculator_input"], UTC)
    idle = intervals[intervals["idle"] & (intervals["start"] > after_input)].sort_values("start")
    assert not idle.empty, "no idle interval was recorded after the input stopped"
    first_idle = idle.iloc[0]
    stopped = datetime.fromtimestamp(moments["last_input_before_idle"], UTC)
    # Cut at the last click (the X server's idle clock), not IDLE_AFTER_S later when the threshold passed.
    assert abs((first_idle["start"] - stopped).total_seconds()) < 0.5
    assert first_idle["keystrokes"] == 0 and first_idle["clicks"] == 0
    # Input came back in the editor: the keys typed there belong to active time.
    back = datetime.fromtimestamp(moments["back"], UTC)
    after = intervals[(intervals["start"] >= back - timedelta(seconds=0.5)) & ~intervals["idle"]]
    assert after["keystrokes"].sum() == 3
    assert set(after["app"]) == {"xterm"}
