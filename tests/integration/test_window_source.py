"""The active-window source on a real X11 desktop (Xvfb + openbox): it keeps the window object while the same
window stays in front (bench/collector_resources.py), and still sees every switch and every change of title."""

from __future__ import annotations

import subprocess
import sys

from testbed.desktop import virtual_desktop
from tests.conftest import eventually

# In a child of its own: pywinctl binds the display it first sees, once per process.
PROBE = r"""
import sys
from collector.sampling import PyWinCtlWindows
source = PyWinCtlWindows()
for line in sys.stdin:
    front = source.active()
    print(repr(front), source._front[0] if source._front else None, flush=True)
"""


def test_switches_and_title_changes_are_seen_while_the_window_in_front_is_kept():
    with virtual_desktop() as desktop:
        child = subprocess.Popen(
            [sys.executable, "-c", PROBE], env=desktop.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        seen: list[str] = []

        def ask() -> tuple[str, str]:
            child.stdin.write("\n")
            child.stdin.flush()
            shown, handle = child.stdout.readline().rsplit(" ", 1)
            seen.append(shown)
            return shown, handle.strip()

        def shows(front: tuple[str, str]) -> bool:
            return ask()[0] == repr(front)

        try:
            editor = desktop.open_xterm("Notes - Editor")
            desktop.focus(editor)
            eventually(lambda: shows(("xterm", "Notes - Editor")), timeout_s=10)
            first = ask()[1]
            desktop.run("xdotool", "set_window", "--name", "Plans - Editor", editor)
            eventually(lambda: shows(("xterm", "Plans - Editor")), timeout_s=10)
            assert ask()[1] == first  # the same window object, its title read again
            desktop.focus(desktop.open_xcalc())
            eventually(lambda: shows(("XCalc", "Calculator")), timeout_s=10)
            assert ask()[1] != first
            desktop.focus(editor)
            eventually(lambda: shows(("xterm", "Plans - Editor")), timeout_s=10)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the source saw: {seen[-5:]}") from None
        finally:
            child.stdin.close()
            child.wait(10)
