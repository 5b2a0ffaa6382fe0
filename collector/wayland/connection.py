"""One connection to the Wayland compositor, its events dispatched in a daemon thread.

Sources bind the globals they need (`bind`) before `start`; from then on only the thread reads the socket and
runs their event handlers, which keep what they learn under their own locks for the sampling loop to read.
Nothing is ever drawn: the connection has no surface.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from collector.wayland.readiness import Readiness

log = logging.getLogger(__name__)


class WaylandUnavailable(RuntimeError):
    """No compositor could be reached, or it lacks what a source needs (the message says which)."""


class WaylandConnection:
    def __init__(self, name: str | None = None) -> None:
        from pywayland.client import Display

        self._display = Display(name)
        try:
            self._display.connect()
        except Exception as exc:  # pywayland raises ValueError or RuntimeError when no socket answers
            raise WaylandUnavailable(f"cannot connect to the Wayland compositor ({exc})") from None
        self._registry = self._display.get_registry()
        self.globals: dict[str, tuple[int, int]] = {}  # interface name -> (global name, version)
        self._registry.dispatcher["global"] = self._announced
        self._display.roundtrip()
        self._readiness = Readiness([self._display.get_fd()])
        self._thread: threading.Thread | None = None
        self.lost = False  # the compositor closed the connection: the session ended

    def _announced(self, _registry: Any, name: int, interface: str, version: int) -> None:
        self.globals.setdefault(interface, (name, version))

    def bind(self, interface: Any, max_version: int) -> Any | None:
        """The compositor's global of `interface` (a pywayland Interface class), or None when it offers none."""
        found = self.globals.get(interface.name)
        if found is None:
            return None
        name, version = found
        return self._registry.bind(name, interface, min(version, max_version))

    def roundtrip(self) -> None:
        """Wait until the compositor has answered everything asked so far (before `start` only)."""
        self._display.roundtrip()

    def start(self) -> WaylandConnection:
        self._thread = threading.Thread(target=self._dispatch, name="wayland", daemon=True)
        self._thread.start()
        return self

    def _dispatch(self) -> None:
        try:
            while True:
                self._display.dispatch(block=False)
                self._display.flush()
                if not self._readiness.wait():
                    return
                self._display.read()
                self._display.dispatch(block=False)
        except Exception as exc:  # the compositor went away
            log.info("the Wayland connection closed: %s", exc)
            self.lost = True

    def stop(self) -> None:
        if self._thread is not None:
            self._readiness.stop()
            self._thread.join(5)
            self._thread = None
        self._display.disconnect()
        self._readiness.close()
