"""Desktop notices (collector/desktop_notices.py) shown by a real notification service: Debian's notification-daemon
on a private session bus, drawing on a virtual X display, with a D-Bus monitor recording what reached it
(testbed/notification_bus.py). No mocks; the programs must be installed (Debian packages dbus-daemon,
notification-daemon, and those of testbed/desktop.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from collector.desktop_notices import (
    APP_NAME,
    BODY_LIMIT,
    SUMMARY_LIMIT,
    NoticeNotShown,
    show_notice,
    show_notice_natively_on,
    why_not_natively,
)
from testbed import desktop as desktop_bed
from testbed import notification_bus
from testbed.desktop import Desktop, virtual_desktop
from testbed.notification_bus import NotificationSession, notification_session
from tests.conftest import eventually


@pytest.fixture(scope="module")
def desktop() -> Iterator[Desktop]:
    missing = desktop_bed.missing_programs() + notification_bus.missing_programs()
    assert not missing, f"missing programs (Debian packages): {missing}"
    with virtual_desktop() as running:
        yield running


@pytest.fixture
def session(desktop: Desktop, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotificationSession]:
    with notification_session(desktop.env) as running:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", running.address)
        yield running


def test_a_notice_reaches_the_desktops_notification_service(session: NotificationSession):
    notice_id = show_notice("Games: 85 % of your limit", "51 of 60 min today")
    assert isinstance(notice_id, int) and notice_id > 0
    eventually(lambda: session.shown(), timeout_s=20, interval_s=0.05)
    assert session.shown() == [("Productimon", "Games: 85 % of your limit", "51 of 60 min today")]


def test_markup_in_the_body_arrives_as_entities_and_the_summary_as_it_is(session: NotificationSession):
    second = show_notice("Limits & goals", "Video <b>over</b> & out")
    third = show_notice("Reading", "a <i>plain</i> line\x00\x07 with\nbreaks")
    assert 0 < second < third  # ids the service gave, each notice its own
    eventually(lambda: len(session.shown()) == 2, timeout_s=20, interval_s=0.05)
    assert session.shown() == [
        ("Productimon", "Limits & goals", "Video &lt;b&gt;over&lt;/b&gt; &amp; out"),
        ("Productimon", "Reading", "a &lt;i&gt;plain&lt;/i&gt; line with\nbreaks"),
    ]


def test_long_texts_are_cut(session: NotificationSession):
    show_notice("S" * 500 + "\nsecond line", "b" * 5000)
    eventually(lambda: session.shown(), timeout_s=20, interval_s=0.05)
    ((_app, summary, body),) = session.shown()
    assert summary == "S" * (SUMMARY_LIMIT - 1) + "…"
    assert body == "b" * (BODY_LIMIT - 1) + "…"


def test_without_a_session_bus_the_notice_is_not_shown_and_says_why(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    with pytest.raises(NoticeNotShown) as raised:
        show_notice("Games: 85 % of your limit", "51 of 60 min today")
    assert "session D-Bus" in str(raised.value) and "DBUS_SESSION_BUS_ADDRESS" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_without_a_notification_service_the_notice_is_not_shown_and_says_why(monkeypatch: pytest.MonkeyPatch):
    missing = notification_bus.missing_programs()
    assert not missing, f"missing programs (Debian packages): {missing}"
    with notification_session(dict(os.environ), with_daemon=False) as bare:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bare.address)
        with pytest.raises(NoticeNotShown) as raised:
            show_notice("Games: 85 % of your limit", "51 of 60 min today")
        assert "no notification service" in str(raised.value)
        assert "org.freedesktop.Notifications" in str(raised.value)
        # It was asked on the bus all the same: the monitor sees calls nobody answers.
        eventually(lambda: bare.shown(), timeout_s=20, interval_s=0.05)
        assert bare.shown() == [("Productimon", "Games: 85 % of your limit", "51 of 60 min today")]


# The Windows and macOS path (collector.desktop_notices.show_natively) goes through desktop-notifier, whose backends
# there (WinRT toasts, Notification Center) cannot run on this machine. The same calls of ours are run here through
# that library's Linux backend, against the same real notification service: the one part not run is the library's
# own platform code.


def _native(app_name: str = APP_NAME):
    from desktop_notifier import DesktopNotifierSync

    return DesktopNotifierSync(app_name=app_name, app_icon=None)


def test_the_windows_and_macos_path_shows_the_notice_through_desktop_notifier(session: NotificationSession):
    notifier = _native()
    assert why_not_natively("Notification Center", lambda: notifier) is None
    shown = show_notice_natively_on("Notification Center", notifier, "Games:\n85 % of your limit", "51 of 60\x07 min")
    assert shown
    eventually(lambda: session.shown(), timeout_s=20, interval_s=0.05)
    assert session.shown() == [("Productimon", "Games: 85 % of your limit", "51 of 60 min")]


def test_the_windows_and_macos_path_says_in_one_line_when_the_service_is_not_there(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    with notification_session(dict(os.environ), with_daemon=False) as bare:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bare.address)
        with pytest.raises(NoticeNotShown) as raised:
            show_notice_natively_on("Windows notifications", _native(), "Games: 85 % of your limit", "51 of 60 min")
    said = str(raised.value)
    assert said.startswith("Windows notifications refused the notice: ") and "\n" not in said
    assert "org.freedesktop.Notifications" in said  # the platform's own reason
    assert not [r for r in caplog.records if r.name.startswith("desktop_notifier")]  # no traceback in the log


def test_the_windows_and_macos_path_says_when_notifications_are_turned_off():
    class TurnedOff:  # a stand-in: what desktop-notifier answers where the person switched Productimon's off
        def has_authorisation(self) -> bool:
            return False

        def request_authorisation(self) -> bool:
            return False

    said = why_not_natively("Notification Center", TurnedOff)
    assert said == "notifications from Productimon are turned off in Notification Center's settings"
