"""The pure parts of the KDE Plasma window source (collector/wayland/kde.py): which app id and title a KWin window
gets, and that the shipped KWin script calls exactly what the collector serves."""

from __future__ import annotations

import re

import pytest

from collector.wayland import kde
from collector.wayland.kde import app_id, reported_window, window_title


@pytest.mark.parametrize(
    ("desktop_file", "resource_class", "expected"),
    [
        ("org.kde.dolphin", "dolphin", "org.kde.dolphin"),  # the desktop file name wins
        ("firefox", "firefox", "firefox"),
        ("org.kde.konsole.desktop", "konsole", "org.kde.konsole"),
        ("/usr/share/applications/org.gnome.gedit.desktop", "gedit", "org.gnome.gedit"),
        ("", "xterm", "xterm"),  # an X11 window without one: its resource class
        ("  ", " xterm ", "xterm"),
        ("", "", "unknown"),
    ],
)
def test_the_app_id_is_the_desktop_file_name_else_the_resource_class(desktop_file, resource_class, expected):
    assert app_id(desktop_file, resource_class) == expected


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("Quarterly report - Editor", "Quarterly report - Editor"),
        ("Untitled <2>", "Untitled"),  # KWin's suffix for a second Wayland window with the same caption
        ("Untitled <12>\u200e", "Untitled"),  # and for an X11 window: with a left-to-right mark
        ("a <b>", "a <b>"),
        ("<2>", "<2>"),
        ("x <2> y", "x <2> y"),
        ("", None),
    ],
)
def test_the_title_is_the_windows_own(caption, expected):
    assert window_title(caption) == expected


def test_a_call_without_a_window_means_none_is_in_front():
    assert reported_window(False, "", "", "") is None
    assert reported_window(True, "org.kde.kate", "kate", "notes.txt <2>") == ("org.kde.kate", "notes.txt")
    assert reported_window(True, "", "", "") == ("unknown", None)


def test_the_script_calls_what_the_collector_serves():
    script = kde.SCRIPT.read_text()
    constants = dict(re.findall(r'^const (\w+) = "([^"]*)";', script, flags=re.MULTILINE))
    assert constants == {
        "SERVICE": kde.SERVICE,
        "PATH": kde.PATH,
        "INTERFACE": kde.INTERFACE,
        "METHOD": kde.METHOD,
    }
    # Four arguments, in the order of SIGNATURE: present, desktop file name, resource class, caption.
    calls = re.findall(r"callDBus\(SERVICE, PATH, INTERFACE, METHOD, ([^;]*)\);", script, flags=re.DOTALL)
    assert [" ".join(call.split()) for call in calls] == [
        "true, text(window.desktopFileName), text(window.resourceClass), text(window.caption)",
        'false, "", "", ""',
    ]
    assert len(kde.SIGNATURE) == 4
