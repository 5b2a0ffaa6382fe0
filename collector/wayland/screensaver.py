"""Idle time from org.freedesktop.ScreenSaver's GetSessionIdleTime, where a desktop gives one.

GetSessionIdleTime is in no specification (the freedesktop idle-inhibit one has only Inhibit and UnInhibit), and the
desktops that answer it disagree on its unit:
- KDE (kscreenlocker, which owns org.freedesktop.ScreenSaver and org.kde.screensaver on one connection) returns
  KIdleTime's idle time in milliseconds on X11, and refuses with NotSupported on Wayland (seen from KWin 5.27).
- GNOME's gsd-screensaver-proxy owns the name for Inhibit only and refuses GetSessionIdleTime with NotSupported.
- gnome-screensaver's descendants (xfce4-screensaver, mate-screensaver) count whole seconds, and only from when they
  judged the session idle by their own delay.
So the value is read as milliseconds when the name's owner also owns org.kde.screensaver, else as seconds; and a
desktop that refuses the call gives no source at all (RuntimeError from the constructor).
"""

from __future__ import annotations

import logging

from collector.sampling import SessionEnded
from collector.wayland.session_bus import SessionBus, Unanswered, describe

log = logging.getLogger(__name__)

SAVER_NAME = "org.freedesktop.ScreenSaver"
KDE_SAVER_NAME = "org.kde.screensaver"
SAVER_PATHS = ("/org/freedesktop/ScreenSaver", "/ScreenSaver")


def counts_milliseconds(saver_owner: str | None, kde_saver_owner: str | None) -> bool:
    """Whether GetSessionIdleTime's value is in milliseconds: only KDE's screen locker counts in them."""
    return saver_owner is not None and saver_owner == kde_saver_owner


class FreedesktopScreenSaverIdle:
    """GetSessionIdleTime, read in the unit its implementation uses (see the module's docstring)."""

    def __init__(self, bus: SessionBus | None = None) -> None:
        self._own_bus = bus is None
        self._bus = bus or SessionBus()
        self._failing = False
        owner = self._bus.owner(SAVER_NAME)
        if owner is None:
            self.close()
            raise RuntimeError(f"no {SAVER_NAME} on the session bus")
        self._per_second = 1000 if counts_milliseconds(owner, self._bus.owner(KDE_SAVER_NAME)) else 1
        problems = []
        for path in SAVER_PATHS:
            self._path = path
            try:
                self._ask()
                return
            except Unanswered as exc:
                problems.append(describe(exc))
        self.close()
        raise RuntimeError(f"{SAVER_NAME} gives no idle time here ({problems[0]})")

    def _ask(self) -> float:
        (value,) = self._bus.call(SAVER_NAME, self._path, SAVER_NAME, "GetSessionIdleTime")
        return value / self._per_second

    def idle_seconds(self) -> float | None:
        try:
            seconds = self._ask()
        except SessionEnded:
            raise
        except Unanswered as exc:
            if not self._failing:
                log.info("%s did not give the idle time (%s); will keep trying", SAVER_NAME, describe(exc))
                self._failing = True
            return None
        self._failing = False
        return seconds

    def close(self) -> None:
        if self._own_bus:
            self._bus.close()
