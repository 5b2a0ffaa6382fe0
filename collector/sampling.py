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
    if kind == "none":
        return ["no graphical session ($DISPLAY and $WAYLAND_DISPLAY unset): window, input and idle tracking are "
                "unavailable"]  # fmt: skip
    return []


WaylandDesktop = Literal["gnome", "kde", "wlroots"]


def wayland_desktop(env: Mapping[str, str]) -> WaylandDesktop:
    """Pure: which family of Wayland desktop this is, from XDG_CURRENT_DESKTOP (a colon-separated list such as
    "ubuntu:GNOME" or "KDE"); anything else is tried as a wlroots compositor (sway, Hyprland, river, labwc)."""
    names = {name.strip().lower() for name in env.get("XDG_CURRENT_DESKTOP", "").split(":")}
    if names & {"gnome", "gnome-classic", "gnome-flashback"}:
        return "gnome"
    if "kde" in names:
        return "kde"
    return "wlroots"


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
class InputCounts:
    """Two counters and the time of the last input, shared by the listeners that feed them and the sampling loop
    that takes them: nothing else of an input event is ever kept."""

    clock: Callable[[], float] = time.monotonic
    _keys: int = 0
    _clicks: int = 0
    _last_input: float = field(default=0.0)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._last_input = self.clock()

    def add(self, keys: int, clicks: int, input_seen: bool = True) -> None:
        with self._lock:
            self._keys += keys
            self._clicks += clicks
            if input_seen:
                self._last_input = self.clock()

    def take(self) -> tuple[int, int]:
        with self._lock:
            counts = self._keys, self._clicks
            self._keys = self._clicks = 0
        return counts

    def seconds_since_input(self) -> float:
        with self._lock:
            return max(0.0, self.clock() - self._last_input)


@dataclass
class InputCounter(InputCounts):
    """Counts key presses and mouse clicks through pynput listeners.

    Only the number of events is kept: the callbacks receive the key and the pointer position from pynput and
    drop them at once; nothing but two integers and a timestamp ever leaves a callback (docs/collector.md, "What it
    records")."""

    _listeners: list = field(default_factory=list)

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
        self.add(1, 0)

    def _clicked(self, _x: int, _y: int, _button: object, pressed: bool) -> None:
        self.add(0, 1 if pressed else 0)

    def _moved(self, *_: object) -> None:
        self.add(0, 0)

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
    # One line per part that works, naming where it comes from (e.g. "idle: ext-idle-notify-v1"), for `status`.
    used: list[str] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def idle_seconds(self) -> float:
        """The OS's idle time where it is available, else the time since the listeners last saw input."""
        seconds = self.idle.idle_seconds()
        return self.inputs.seconds_since_input() if seconds is None else seconds

    def stop(self) -> None:
        self.inputs.stop()
        for close in self.closers:
            try:
                close()
            except Exception as exc:  # stopping must go on: the rest still need closing
                log.debug("closing a source failed: %s", exc)


def open_sources(
    env: Mapping[str, str] | None = None,
    platform: str = sys.platform,
    idle_after_s: float = 180.0,
    count_input_devices: bool = False,
) -> Sources:
    """Every source that works in this session; a stand-in that reports nothing for each that does not."""
    env = os.environ if env is None else env
    kind = session_kind(env, platform)
    if kind == "wayland":
        return _open_wayland(env, idle_after_s, count_input_devices)
    unavailable = session_limits(kind, env)
    can_try = kind in ("windows", "macos", "x11")

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
    return Sources(windows, inputs, idle, unavailable)


_WAYLAND_SUPPORT = (
    "supported are wlroots compositors (sway, Hyprland, river, labwc), GNOME Shell after "
    '`productimon-collector install-desktop-support`, and KDE Plasma (docs/collector.md "Wayland")'
)
NO_WAYLAND_COUNTS = (
    "key and click counts are not recorded: Wayland gives no global input events to ordinary programs; "
    'to count them from the input devices, set count_input_devices = true (docs/collector.md "Wayland")'
)


def _open_wayland(env: Mapping[str, str], idle_after_s: float, count_input_devices: bool) -> Sources:
    """The sources of a native Wayland session: the desktop's own way to see the window in front and the idle
    time (collector/wayland/); input counts only when opted in. XWayland is not used: it would see only X11
    windows and count only their keys, which would be wrong counts rather than none."""
    desktop = wayland_desktop(env)
    sources = Sources(NoWindows(), NoInput(), NoIdle(), [], [f"session: Wayland ({desktop})"])
    connection = _wayland_connection(env, sources)
    opened = _open_wayland_windows(desktop, connection, sources)
    if opened is not None:
        sources.windows, described = opened
        sources.used.append(f"windows: {described}")
    idle = _open_wayland_idle(desktop, connection, idle_after_s, sources)
    if idle is not None:
        sources.idle, described = idle
        sources.used.append(f"idle: {described}")
    else:
        sources.unavailable.append(
            "idle time is unavailable: the desktop offers no idle interface this collector reads"
        )
    if connection is not None:
        connection.start()
        sources.closers.append(connection.stop)
    if count_input_devices:
        from collector.wayland.input_devices import InputDeviceCounter

        try:
            sources.inputs = InputDeviceCounter().start()
            sources.used.append("input counts: the input devices (/dev/input), opted in")
        except Exception as exc:
            sources.unavailable.append(f"key and click counting is unavailable: {exc}")
    else:
        sources.unavailable.append(NO_WAYLAND_COUNTS)
    return sources


def _wayland_connection(env: Mapping[str, str], sources: Sources):  # -> WaylandConnection | None
    from collector.wayland.connection import WaylandConnection

    try:
        return WaylandConnection(env.get("WAYLAND_DISPLAY") or None)
    except Exception as exc:
        sources.unavailable.append(f"the Wayland compositor is unreachable: {exc}")
        return None


def _open_wayland_windows(desktop: WaylandDesktop, connection, sources: Sources) -> tuple[WindowSource, str] | None:
    try:
        if desktop == "gnome":
            from collector.wayland.gnome import GnomeShellWindows

            shell = GnomeShellWindows()
            sources.closers.append(shell.close)
            return shell, "the Productimon GNOME Shell extension (session D-Bus)"
        if desktop == "kde":
            from collector.wayland.kde import KWinWindows

            kwin = KWinWindows()
            sources.closers.append(kwin.stop)
            return kwin, "the Productimon KWin script (session D-Bus)"
        if connection is None:
            raise RuntimeError("no Wayland connection")
        from collector.wayland.wlroots import PROTOCOL, ForeignToplevelWindows

        return ForeignToplevelWindows(connection), PROTOCOL
    except Exception as exc:
        sources.unavailable.append(f"active window tracking is unavailable: {exc}; {_WAYLAND_SUPPORT}")
        return None


def _open_wayland_idle(
    desktop: WaylandDesktop, connection, idle_after_s: float, sources: Sources
) -> tuple[IdleSource, str] | None:
    """The desktop's own idle time: Mutter's idle monitor on GNOME, the compositor's idle protocol elsewhere, and
    org.freedesktop.ScreenSaver where neither answers."""
    tried: list[str] = []
    if desktop == "gnome":
        try:
            from collector.wayland.gnome import MutterIdle

            mutter = MutterIdle()
            sources.closers.append(mutter.close)
            return mutter, "org.gnome.Mutter.IdleMonitor"
        except Exception as exc:
            tried.append(str(exc))
    elif connection is not None:
        try:
            from collector.wayland.idle import WaylandIdle, timers_for

            wayland_idle = WaylandIdle(connection, timers_for(idle_after_s))
            return wayland_idle, wayland_idle.protocol
        except Exception as exc:
            tried.append(str(exc))
    try:
        from collector.wayland.screensaver import FreedesktopScreenSaverIdle

        saver = FreedesktopScreenSaverIdle()
        sources.closers.append(saver.close)
        return saver, "org.freedesktop.ScreenSaver"
    except Exception as exc:
        tried.append(str(exc))
    log.debug("no idle source: %s", "; ".join(tried))
    return None
