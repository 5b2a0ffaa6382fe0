"""What the collector can observe on this desktop: the active window, input COUNTS, and the OS's idle time.

Each source is a small object behind a narrow interface so the tracking loop never touches a platform API, and
each degrades rather than crashes: a source that cannot work here is replaced by one that reports nothing, and
`open_sources` says in one line per missing part what is unavailable and why.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

log = logging.getLogger(__name__)

SessionKind = Literal["x11", "wayland", "windows", "macos", "none"]


def session_kind(env: Mapping[str, str], platform: str) -> SessionKind:
    """Which kind of desktop session this process runs in, from its environment alone."""
    if platform == "win32":
        return "windows"
    if platform == "darwin":
        return "macos"
    if env.get("XDG_SESSION_TYPE") == "wayland" or env.get("WAYLAND_DISPLAY"):
        return "wayland"
    if env.get("DISPLAY"):
        return "x11"
    return "none"


def session_limits(kind: SessionKind, env: Mapping[str, str]) -> list[str]:
    """What this kind of session keeps from the collector, said before anything is tried."""
    if kind == "wayland":
        limits = [
            "Wayland session: the compositor does not tell other programs which window is in front or what is "
            "typed, so only X11 (XWayland) windows are seen and only their keys and clicks are counted"
        ]
        if not env.get("DISPLAY"):
            limits.append("no XWayland display ($DISPLAY unset): window, input and idle tracking are unavailable")
        return limits
    if kind == "none":
        return ["no graphical session ($DISPLAY unset): window, input and idle tracking are unavailable"]
    return []


class SessionEnded(Exception):
    """The desktop session this collector observed is gone; the collector stops (its service restarts it with
    the next session)."""


class WindowSource(Protocol):
    def active(self) -> tuple[str, str | None] | None:
        """(application name, window title) of the window in front, or None when there is none."""


class InputSource(Protocol):
    def take(self) -> tuple[int, int]:
        """Keystrokes and clicks counted since the previous call."""

    def seconds_since_input(self) -> float:
        """How long ago the last key, click, scroll or pointer movement was seen."""

    def stop(self) -> None: ...


class IdleSource(Protocol):
    def idle_seconds(self) -> float | None:
        """How long the user has been away from keyboard and pointer, or None when unknown."""


class NoWindows:
    def active(self) -> tuple[str, str | None] | None:
        return None


class NoInput:
    def take(self) -> tuple[int, int]:
        return 0, 0

    def seconds_since_input(self) -> float:
        return 0.0  # unknown input must not make the user look idle

    def stop(self) -> None:
        pass


class NoIdle:
    def idle_seconds(self) -> float | None:
        return None


class PyWinCtlWindows:
    """The active window through pywinctl (X11 with EWMH, Windows, macOS).

    On X11 the window object and its program name are kept while the same window stays in front: each second
    then costs one property read for the active window and one for its title, where pywinctl's
    getActiveWindow would build a new window object (and look its program up again) every time."""

    def __init__(self) -> None:
        try:
            import pywinctl
        except SystemExit as exc:
            # pywinctl exits the process when `xrandr` is missing (docs/design.md "Real components and how they
            # start"); that must not end the collector.
            raise RuntimeError(f"pywinctl could not start (is xrandr installed?): exit {exc.code}") from None
        self._pywinctl = pywinctl
        self._root = None
        if sys.platform == "linux" and os.environ.get("XDG_SESSION_TYPE", "").lower() != "wayland":
            from ewmhlib import defaultEwmhRoot  # pywinctl's own root window of the default display

            self._root = defaultEwmhRoot
        self._front: tuple[int, object, str] | None = None  # window id, pywinctl window, program name
        self._failing = False

    def _in_front(self) -> tuple[object, str] | None:
        if self._root is None:
            window = self._pywinctl.getActiveWindow()
            if window is None:
                return None
            return window, (linux_app_name(window) if sys.platform == "linux" else window.getAppName()) or "unknown"
        handle = self._root.getActiveWindow()
        if not handle:
            self._front = None
            return None
        if self._front is None or self._front[0] != handle:
            window = self._pywinctl.Window(handle)
            self._front = (handle, window, linux_app_name(window) or "unknown")
        return self._front[1], self._front[2]

    def active(self) -> tuple[str, str | None] | None:
        try:
            front = self._in_front()
            if front is None:
                return None
            window, app = front
            title = window.title or None
        except SessionEnded:
            raise
        except Exception as exc:  # the window can close between the two calls; X errors come as many types
            self._front = None
            if _connection_lost(exc):
                raise SessionEnded("the X display closed: the desktop session ended") from None
            if not self._failing:
                log.info("cannot read the active window (%s: %s); will keep trying", type(exc).__name__, exc)
                self._failing = True
            return None
        self._failing = False
        return app, title


def linux_app_name(window: object) -> str | None:
    """The window's program name from /proc, as `ps -o comm=` reports it.

    pywinctl's own getAppName runs `ps` through a shell for every call: a process every second costs more CPU
    than the rest of the collector together. Windows without _NET_WM_PID fall back to their WM_CLASS class."""
    pid = window._win.getPid()  # type: ignore[attr-defined]  # pywinctl 0.4.1's EWMH window (pinned)
    if pid:
        try:
            with open(f"/proc/{int(pid)}/comm") as comm:
                return comm.read().strip() or None
        except (OSError, ValueError):
            pass
    wm_class = window._xWin.get_wm_class()  # type: ignore[attr-defined]
    return wm_class[1] if wm_class else None


def _connection_lost(exc: BaseException) -> bool:
    return type(exc).__name__ in ("ConnectionClosedError", "DisplayConnectionError") or isinstance(exc, BrokenPipeError)


@dataclass
class InputCounter:
    """Counts key presses and mouse clicks through pynput listeners.

    Only the number of events is kept: the callbacks receive the key and the pointer position from pynput and
    drop them at once; nothing but two integers and a timestamp ever leaves a callback (docs/collector.md, "What it
    records")."""

    clock: Callable[[], float] = time.monotonic
    _keys: int = 0
    _clicks: int = 0
    _last_input: float = field(default=0.0)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _listeners: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self._last_input = self.clock()

    def start(self) -> InputCounter:
        from pynput import keyboard, mouse  # raises ImportError without a display (docs/design.md)

        self._listeners = [
            keyboard.Listener(on_press=self._key_pressed),
            mouse.Listener(on_click=self._clicked, on_scroll=self._moved, on_move=self._moved),
        ]
        for listener in self._listeners:
            listener.daemon = True
            listener.start()
        for listener in self._listeners:
            listener.wait()
        return self

    def _key_pressed(self, _key: object) -> None:
        with self._lock:
            self._keys += 1
            self._last_input = self.clock()

    def _clicked(self, _x: int, _y: int, _button: object, pressed: bool) -> None:
        with self._lock:
            if pressed:
                self._clicks += 1
            self._last_input = self.clock()

    def _moved(self, *_: object) -> None:
        self._last_input = self.clock()

    def take(self) -> tuple[int, int]:
        with self._lock:
            counts = self._keys, self._clicks
            self._keys = self._clicks = 0
        return counts

    def seconds_since_input(self) -> float:
        return max(0.0, self.clock() - self._last_input)

    def stop(self) -> None:
        for listener in self._listeners:
            listener.stop()
        self._listeners = []


class X11Idle:
    """The X server's own idle time (MIT-SCREEN-SAVER extension): every input device counts, not only the
    ones a listener sees."""

    def __init__(self) -> None:
        from Xlib import display
        from Xlib.ext import screensaver  # noqa: F401 (registers the extension's request methods)

        self._display = display.Display()
        if not self._display.has_extension("MIT-SCREEN-SAVER"):
            self._display.close()
            raise RuntimeError("the X server has no MIT-SCREEN-SAVER extension")
        self._root = self._display.screen().root

    def idle_seconds(self) -> float | None:
        try:
            return self._root.screensaver_query_info().idle / 1000
        except Exception as exc:
            if _connection_lost(exc):
                raise SessionEnded("the X display closed: the desktop session ended") from None
            log.debug("cannot read the X server's idle time: %s", exc)
            return None


class WindowsIdle:
    """GetLastInputInfo: milliseconds since the session's last input. Not exercised here: no Windows desktop."""

    def __init__(self) -> None:
        class LastInputInfo(ctypes.Structure):
            _fields_ = [("cbSize", ctypes.c_uint), ("dwTime", ctypes.c_uint)]

        self._info = LastInputInfo()
        self._info.cbSize = ctypes.sizeof(LastInputInfo)
        self._user32 = ctypes.windll.user32  # type: ignore[attr-defined]
        self._kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]

    def idle_seconds(self) -> float | None:
        if not self._user32.GetLastInputInfo(ctypes.byref(self._info)):
            return None
        return ((self._kernel32.GetTickCount() - self._info.dwTime) & 0xFFFFFFFF) / 1000


class MacIdle:
    """CGEventSourceSecondsSinceLastEventType over all input events. Not exercised here: no macOS desktop."""

    _HID_SYSTEM_STATE = 1
    _ANY_INPUT_EVENT = 0xFFFFFFFF

    def __init__(self) -> None:
        quartz = ctypes.cdll.LoadLibrary("/System/Library/Frameworks/ApplicationServices.framework/ApplicationServices")
        self._seconds = quartz.CGEventSourceSecondsSinceLastEventType
        self._seconds.restype = ctypes.c_double
        self._seconds.argtypes = [ctypes.c_int, ctypes.c_uint32]

    def idle_seconds(self) -> float | None:
        return float(self._seconds(self._HID_SYSTEM_STATE, self._ANY_INPUT_EVENT))


@dataclass
class Sources:
    windows: WindowSource
    inputs: InputSource
    idle: IdleSource
    # One line per part that is unavailable here, for the log at start and for `status`.
    unavailable: list[str]

    def idle_seconds(self) -> float:
        """The OS's idle time where it is available, else the time since the listeners last saw input."""
        seconds = self.idle.idle_seconds()
        return self.inputs.seconds_since_input() if seconds is None else seconds

    def stop(self) -> None:
        self.inputs.stop()


def open_sources(env: Mapping[str, str] | None = None, platform: str = sys.platform) -> Sources:
    """Every source that works in this session; a stand-in that reports nothing for each that does not."""
    env = os.environ if env is None else env
    kind = session_kind(env, platform)
    unavailable = session_limits(kind, env)
    can_try = kind in ("windows", "macos", "x11") or (kind == "wayland" and env.get("DISPLAY"))

    windows: WindowSource = NoWindows()
    inputs: InputSource = NoInput()
    idle: IdleSource = NoIdle()
    if can_try:
        try:
            windows = PyWinCtlWindows()
        except Exception as exc:
            unavailable.append(f"active window tracking is unavailable: {exc}")
        try:
            inputs = InputCounter().start()
        except Exception as exc:
            unavailable.append(f"key and click counting is unavailable: {exc}")
        opener: Callable[[], IdleSource] | None = {"x11": X11Idle, "windows": WindowsIdle, "macos": MacIdle}.get(kind)
        if opener is not None:
            try:
                idle = opener()
            except Exception as exc:
                unavailable.append(f"the OS idle time is unavailable ({exc}); idle comes from the input listener")
        elif kind == "wayland":
            unavailable.append("idle time comes from the XWayland input listener only")
    return Sources(windows, inputs, idle, unavailable)
