"""The session D-Bus as the Wayland sources use it (`gnome.py`, `screensaver.py`): one blocking jeepney connection,
and a deadline on every call, so that a desktop service that hangs costs the collector a fraction of a second per
sample instead of the collector itself.

A call either answers, or does not answer this time (`Unanswered`: the service is not there, refused, or was too
slow; the caller returns None and tries again next time), or finds the bus itself gone (`SessionEnded`: the desktop
session is over, docs/collector.md)."""

from __future__ import annotations

from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from jeepney.wrappers import DBusErrorResponse, unwrap_msg

from collector.sampling import SessionEnded

# Long enough for a busy shell (its answers take well under 10 ms), short enough that two sources asking a hung one
# each second still leave the collector time to do its own work.
CALL_TIMEOUT_S = 0.5

Unanswered = (TimeoutError, DBusErrorResponse)

_DBUS = DBusAddress("/org/freedesktop/DBus", bus_name="org.freedesktop.DBus", interface="org.freedesktop.DBus")


class SessionBus:
    """A connection to the session bus ($DBUS_SESSION_BUS_ADDRESS). Not for use from two threads at once."""

    def __init__(self, timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        try:
            self._connection: DBusConnection = open_dbus_connection(bus="SESSION", auth_timeout=timeout_s * 4)
        except KeyError:
            raise RuntimeError("no session D-Bus ($DBUS_SESSION_BUS_ADDRESS is unset)") from None
        except (OSError, RuntimeError, ValueError) as exc:
            raise RuntimeError(f"cannot connect to the session D-Bus: {exc}") from None

    def call(
        self, destination: str, path: str, interface: str, method: str, signature: str | None = None, body: tuple = ()
    ) -> tuple:
        """The reply's values; raises one of `Unanswered`, or `SessionEnded` when the bus is gone."""
        message = new_method_call(DBusAddress(path, bus_name=destination, interface=interface), method, signature, body)
        try:
            reply = self._connection.send_and_get_reply(message, timeout=self.timeout_s)
        except TimeoutError:
            raise
        except OSError:  # reset, broken pipe, or a socket already closed
            raise SessionEnded("the session D-Bus closed: the desktop session ended") from None
        return unwrap_msg(reply)

    def owner(self, name: str) -> str | None:
        """The unique name of the connection that owns `name`, or None when nobody does."""
        try:
            return self.call(_DBUS.bus_name, _DBUS.object_path, _DBUS.interface, "GetNameOwner", "s", (name,))[0]
        except DBusErrorResponse:
            return None

    def close(self) -> None:
        self._connection.close()


def describe(exc: BaseException) -> str:
    """One short phrase for a call that was not answered."""
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, DBusErrorResponse):
        detail = exc.data[0] if exc.data and isinstance(exc.data[0], str) else ""
        return f"{exc.name}: {detail}" if detail else str(exc.name)
    return f"{type(exc).__name__}: {exc}"
