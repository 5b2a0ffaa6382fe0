"""Opt-in key and click counts on Wayland, from the kernel's input devices (/dev/input/event*).

A Wayland compositor gives no global input events to ordinary programs, so by default the collector records no
counts there (never a wrong count). A person may opt in with `count_input_devices = true` after adding their
user to the `input` group: then every keyboard and mouse of the machine can be read by that user's programs,
which is why it is off by default (docs/collector.md "Wayland"). Only counts are kept: a key press adds one to
a number and the key itself is dropped on the spot, exactly as the X11 listener does.

Each device yields fixed-size `struct input_event` records (linux/input.h: a timeval, then u16 type, u16 code,
s32 value), read here with `struct`. python-evdev (installed anyway, with pynput) would read the same records,
but it opens a device with ioctls only a kernel device answers; reading the records alone needs none, and lets
the tests feed the counter real pipes where this machine has no input device to spare.
"""

from __future__ import annotations

import glob
import logging
import os
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from collector.sampling import InputCounts
from collector.wayland.readiness import Readiness

log = logging.getLogger(__name__)

EVENT = struct.Struct("llHHi")  # struct input_event on the machine's own word size
EV_KEY, EV_REL, EV_ABS = 0x01, 0x02, 0x03
KEY_PRESS = 1  # value 0 is a release, 2 an autorepeat
BTN_MISC = 0x100  # codes below are keyboard keys
BTN_MOUSE_FIRST, BTN_MOUSE_LAST = 0x110, 0x117  # BTN_LEFT .. BTN_TASK
BTN_TOUCH = 0x14A


def counted(events: Iterable[tuple[int, int, int]]) -> tuple[int, int, bool]:
    """Pure: (keystrokes, clicks, any input) in (type, code, value) events."""
    keys = clicks = 0
    seen = False
    for kind, code, value in events:
        if kind in (EV_KEY, EV_REL, EV_ABS):
            seen = True
        if kind != EV_KEY or value != KEY_PRESS:
            continue
        if code < BTN_MISC:
            keys += 1
        elif BTN_MOUSE_FIRST <= code <= BTN_MOUSE_LAST or code == BTN_TOUCH:
            clicks += 1
    return keys, clicks, seen


def decode(data: bytes) -> list[tuple[int, int, int]]:
    """Pure: the (type, code, value) of each whole record in `data`."""
    whole = len(data) - len(data) % EVENT.size
    return [(kind, code, value) for _s, _us, kind, code, value in EVENT.iter_unpack(data[:whole])]


@dataclass
class InputDeviceCounter(InputCounts):
    """An InputSource reading every readable /dev/input/event* device (`pattern`) in a daemon thread."""

    pattern: str = "/dev/input/event*"
    _fds: list[int] = field(default_factory=list)
    _readiness: Readiness | None = None
    _thread: threading.Thread | None = None

    def start(self) -> InputDeviceCounter:
        paths = sorted(glob.glob(self.pattern))
        refused = []
        for path in paths:
            try:
                self._fds.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
            except OSError as exc:
                refused.append(f"{path}: {exc.strerror}")
        if not self._fds:
            why = "; ".join(refused[:3]) if refused else f"no device matches {self.pattern}"
            raise RuntimeError(f"no input device can be read ({why}); is this user in the `input` group?")
        self._readiness = Readiness(self._fds)
        self._thread = threading.Thread(target=self._read, name="input-devices", daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._readiness is not None
        pending: dict[int, bytes] = {}
        while self._fds:
            ready = self._readiness.wait()
            if not ready:
                return  # stopped
            for fd in ready:
                try:
                    data = pending.pop(fd, b"") + os.read(fd, EVENT.size * 64)
                except BlockingIOError:
                    continue
                except OSError:  # the device went away (unplugged)
                    data = b""
                if not data:
                    self._fds.remove(fd)
                    self._readiness.forget(fd)
                    continue
                rest = len(data) % EVENT.size
                if rest:
                    pending[fd] = data[-rest:]
                self.add(*counted(decode(data)))

    def stop(self) -> None:
        if self._readiness is not None and self._thread is not None:
            self._readiness.stop()
            self._thread.join(5)
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        if self._readiness is not None:
            self._readiness.close()
            self._readiness = None
