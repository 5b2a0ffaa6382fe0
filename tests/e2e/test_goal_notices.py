"""Goal notices end to end: the real collector on a real X11 desktop (Xvfb + openbox) records a terminal in front,
its intervals go through the real gateway, broker and worker into the warehouse, the gateway finds the limit
crossed, and the collector fetches the notice over mTLS and shows it with a real notification service
(notification-daemon on a private session D-Bus), once; a goal whose notice is off shows nothing."""

from __future__ import annotations

import time

import pytest

from schemas.api_client import add_goal, log_in, set_goal_notice, set_notice_pause
from testbed import notification_bus
from testbed.collector_process import enrolled_home, start_collector, stop_collector
from testbed.desktop import missing_programs, virtual_desktop
from tests.conftest import eventually
from warehouse.goals import goal_report, list_goals
from warehouse.notices import notice_history

pytestmark = pytest.mark.e2e

POLL_S = 1.0
LIMIT = "at most 1 min a day of all activity"


def typing(desktop) -> bool:
    """A key in the terminal: someone at work (a quiet stretch keeps its interval open until it is known whether
    it becomes idle, collector/intervals.py)."""
    desktop.type("x")
    return True


def test_a_crossed_limit_is_shown_on_the_desktop_once_and_a_goal_switched_off_never(stack, warehouse_client, tmp_path):
    missing = missing_programs() + notification_bus.missing_programs()
    assert not missing, f"the notices test needs {', '.join(missing)} (Debian packages in infra/apt-packages.txt)"
    config = (
        f"sample_seconds = 0.2\nmax_interval_seconds = 3\nidle_after_seconds = 600\nnotices_every_seconds = {POLL_S}\n"
    )
    home, user_id, email, password = enrolled_home(stack.settings, tmp_path / "home", config, "notices-test")
    address, ca = stack.settings.gateway_public_address, (stack.settings.pki_dir / "ca.crt").read_bytes()
    token = log_in(address, ca, email, password).token
    on = add_goal(address, ca, token, kind="all", target="", direction="at_most", period="day", minutes=1)
    off = add_goal(address, ca, token, kind="app", target="xterm", direction="at_most", period="day", minutes=1)
    set_notice_pause(address, ca, token, paused=False, tz="UTC")
    set_goal_notice(address, ca, token, on, "desktop", True)
    with virtual_desktop() as desktop, notification_bus.notification_session(desktop.env) as notices:
        desktop.focus(desktop.open_xterm("notes - terminal"))
        collector = start_collector(home, notices.env, tmp_path / "collector.log")
        try:
            # A minute of the terminal in front crosses 85 % (51 s), then 100 %, of the limit on all activity.
            try:
                limit_shown = lambda: any(s.startswith("Limit reached") for _, s, _ in notices.shown())  # noqa: E731
                eventually(lambda: typing(desktop) and limit_shown(), 150, interval_s=1.0)
            except AssertionError:
                log = (tmp_path / "collector.log").read_text()[-3000:]
                history = [(n.threshold, n.state) for n in notice_history(warehouse_client, user_id)]
                raise AssertionError(f"shown {notices.shown()}, notices {history}; the collector said: {log}") from None
            for _ in range(5):  # more polls, more activity: nothing is shown again
                typing(desktop)
                time.sleep(POLL_S)
            shown = notices.shown()
        finally:
            assert stop_collector(collector) == 0
    summaries = [summary for _, summary, _ in shown]
    assert {app for app, _, _ in shown} == {"Productimon"}
    assert len(summaries) == len(set(summaries)), summaries  # each notice once
    assert set(summaries) <= {f"85 % of your limit: {LIMIT}", f"Limit reached: {LIMIT}"}, summaries
    assert summaries[-1] == f"Limit reached: {LIMIT}"
    assert all(body.endswith("of 1 min today.") for _, _, body in shown)
    # The terminal's own goal crossed its limit too, but its notice is off: nothing of it was ever made or shown.
    (terminal_goal,) = [g for g in list_goals(warehouse_client, user_id) if g.goal_id == off]
    assert goal_report(warehouse_client, user_id, terminal_goal, "UTC").now.crossed == (0.85, 1.0)
    history = notice_history(warehouse_client, user_id)
    assert {n.goal_id for n in history} == {on}
    assert off not in {n.goal_id for n in history}
    assert [n.state for n in history if n.state == "pending"] == []
