"""Idle time from the Wayland compositor: `ext-idle-notify-v1`, else KDE's older `org_kde_kwin_idle` (KWin, and
wlroots compositors before ext-idle-notify, such as Debian 12's sway 1.7).

Both protocols say only "no input for T" and "input again", for timers the client sets. So the source sets a
short timer and one at the collector's idle threshold: while neither has fired the user is active (0 s); once
one has, the user has been away for its T plus the time since it fired, which dates the start of an idle stretch
to the last input, as the X11 source does (collector/tracker.py cuts the interval there).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from collector.wayland.connection import WaylandConnection, WaylandUnavailable

SHORT_TIMER_S = 5.0


def idle_seconds(fired: dict[float, float], now: float) -> float:
    """Pure: how long the user has been away, given when each timer (timeout in seconds -> when it fired) fired."""
    return max((timeout + (now - at) for timeout, at in fired.items()), default=0.0)


def timers_for(idle_after_s: float) -> list[float]:
    """Pure: the timeouts to set for a collector whose idle threshold is `idle_after_s`."""
    return sorted({min(SHORT_TIMER_S, idle_after_s), idle_after_s})


class WaylandIdle:
    """An IdleSource over the compositor's idle notification; `protocol` names the one in use."""

    def __init__(
        self, connection: WaylandConnection, timeouts_s: Sequence[float], clock: Callable[[], float] = time.monotonic
    ) -> None:
        from pywayland.protocol.ext_idle_notify_v1 import ExtIdleNotifierV1
        from pywayland.protocol.wayland import WlSeat

        from collector.wayland.protocols.idle import OrgKdeKwinIdle

        self._clock = clock
        self._lock = threading.Lock()
        self._fired: dict[float, float] = {}
        seat = connection.bind(WlSeat, 1)
        notifier = connection.bind(ExtIdleNotifierV1, 1)
        kde = None if notifier is not None else connection.bind(OrgKdeKwinIdle, 1)
        if seat is None or (notifier is None and kde is None):
            raise WaylandUnavailable("the compositor offers neither ext-idle-notify-v1 nor org_kde_kwin_idle")
        self.protocol = "ext-idle-notify-v1" if notifier is not None else "org_kde_kwin_idle"
        self._timers: list[Any] = []
        for timeout in timeouts_s:
            if notifier is not None:
                timer = notifier.get_idle_notification(int(timeout * 1000), seat)
                timer.dispatcher["idled"] = self._on_idle(timeout)
            else:
                timer = kde.get_idle_timeout(seat, int(timeout * 1000))
                timer.dispatcher["idle"] = self._on_idle(timeout)
            timer.dispatcher["resumed"] = self._on_resumed(timeout)
            self._timers.append(timer)
        connection.roundtrip()

    def _on_idle(self, timeout: float) -> Callable[[Any], None]:
        def idle(_timer: Any) -> None:
            with self._lock:
                self._fired[timeout] = self._clock()

        return idle

    def _on_resumed(self, timeout: float) -> Callable[[Any], None]:
        def resumed(_timer: Any) -> None:
            with self._lock:
                self._fired.pop(timeout, None)

        return resumed

    def idle_seconds(self) -> float | None:
        with self._lock:
            return idle_seconds(self._fired, self._clock())
