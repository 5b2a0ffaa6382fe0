"""Waiting, in a source's own thread, until one of its descriptors can be read or another thread asks it to stop.

A selector rather than select(): select() refuses descriptors above 1023, which a long-lived process can hold.
"""

from __future__ import annotations

import os
import selectors
from collections.abc import Iterable


class Readiness:
    def __init__(self, fds: Iterable[int]) -> None:
        self._wake_r, self._wake_w = os.pipe()
        self._selector = selectors.DefaultSelector()
        for fd in (*fds, self._wake_r):
            self._selector.register(fd, selectors.EVENT_READ)
        self.stopping = False

    def wait(self) -> list[int]:
        """The descriptors ready to read; none once `stop` was called."""
        ready = [key.fd for key, _ in self._selector.select()]
        return [] if self._wake_r in ready else ready

    def forget(self, fd: int) -> None:
        """Stop watching `fd` (a device that went away)."""
        self._selector.unregister(fd)

    def stop(self) -> None:
        """Wake the waiting thread for good (from any thread)."""
        self.stopping = True
        os.write(self._wake_w, b"x")

    def close(self) -> None:
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
