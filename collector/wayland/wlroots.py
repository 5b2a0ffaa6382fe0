"""The window in front on wlroots compositors (sway, Hyprland, river, labwc, Wayfire) through
`wlr-foreign-toplevel-management-unstable-v1`: the compositor lists every toplevel window with its app id, title
and state, and says which one is activated. Only those three are kept; nothing else of a window is asked for.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from collector.sampling import SessionEnded
from collector.wayland.connection import WaylandConnection, WaylandUnavailable

PROTOCOL = "zwlr_foreign_toplevel_manager_v1"
_ACTIVATED = 2  # zwlr_foreign_toplevel_handle_v1.state.activated


@dataclass
class _Toplevel:
    app_id: str = ""
    title: str = ""
    activated: bool = False
    # What arrived since the last `done`: the protocol applies a handle's changes together, at `done`.
    pending: dict | None = None


def is_activated(state: Any) -> bool:
    """Pure: whether a toplevel's state array (uint32 values; pywayland gives a list or bytes) holds activated."""
    if isinstance(state, bytes | bytearray | memoryview):
        data = bytes(state)
        values = [int.from_bytes(data[i : i + 4], "little") for i in range(0, len(data) - 3, 4)]
    else:
        values = list(state)
    return _ACTIVATED in values


class ForeignToplevelWindows:
    """A WindowSource: (app id, title) of the activated toplevel, or None when none is."""

    def __init__(self, connection: WaylandConnection) -> None:
        from collector.wayland.protocols.wlr_foreign_toplevel_management_unstable_v1 import (
            ZwlrForeignToplevelManagerV1,
        )

        self._connection = connection
        self._lock = threading.Lock()
        self._toplevels: dict[int, _Toplevel] = {}
        self._manager = connection.bind(ZwlrForeignToplevelManagerV1, 3)
        if self._manager is None:
            raise WaylandUnavailable(
                f"the compositor does not offer {PROTOCOL} (wlroots' foreign-toplevel protocol), so no program can "
                "see which window is in front"
            )
        self._manager.dispatcher["toplevel"] = self._opened
        connection.roundtrip()
        connection.roundtrip()  # the toplevels' first title, app_id, state and done

    def _opened(self, _manager: Any, handle: Any) -> None:
        key = id(handle)
        toplevel = _Toplevel(pending={})
        with self._lock:
            self._toplevels[key] = toplevel

        def change(field: str, value: object) -> None:
            with self._lock:
                if toplevel.pending is None:
                    toplevel.pending = {}
                toplevel.pending[field] = value

        def done(_handle: Any) -> None:
            with self._lock:
                for field, value in (toplevel.pending or {}).items():
                    setattr(toplevel, field, value)
                toplevel.pending = None

        def closed(_handle: Any) -> None:
            with self._lock:
                self._toplevels.pop(key, None)
            handle.destroy()

        handle.dispatcher["title"] = lambda _h, title: change("title", title)
        handle.dispatcher["app_id"] = lambda _h, app_id: change("app_id", app_id)
        handle.dispatcher["state"] = lambda _h, state: change("activated", is_activated(state))
        handle.dispatcher["done"] = done
        handle.dispatcher["closed"] = closed
        # Kept alive while open: pywayland would otherwise drop the proxy and its dispatcher.
        toplevel.handle = handle  # type: ignore[attr-defined]

    def active(self) -> tuple[str, str | None] | None:
        if self._connection.lost:
            raise SessionEnded("the Wayland compositor closed the connection: the desktop session ended")
        with self._lock:
            for toplevel in self._toplevels.values():
                if toplevel.activated:
                    return toplevel.app_id or "unknown", toplevel.title or None
        return None
