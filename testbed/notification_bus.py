"""A private session D-Bus with a real notification service on it, for the collector's desktop notices
(collector/desktop_notices.py): dbus-daemon listening in a temporary directory of its own, Debian's notification-daemon
(GNOME's reference server of the freedesktop spec; it draws its bubbles on the X display it is given, so the caller
passes the env of `testbed.desktop.virtual_desktop()`), and a D-Bus monitor recording every Notify call on the bus.

The bus takes the session bus's policy, but with no service directories: nothing of this machine's is activated on
it, so without notification-daemon the name `org.freedesktop.Notifications` really has no owner."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from jeepney import DBusAddress, HeaderFields, MessageType, new_method_call
from jeepney.bus_messages import MatchRule, Monitoring
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from jeepney.wrappers import unwrap_msg

from testbed.desktop import stop_children

NOTIFICATION_DAEMON = "/usr/lib/notification-daemon/notification-daemon"
NEEDED = ("dbus-daemon", NOTIFICATION_DAEMON)
SERVICE = "org.freedesktop.Notifications"
WAIT_S = 20  # the machine may be busy: how long the bus, the daemon and the monitor get to be ready

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={directory}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

_DBUS = DBusAddress("/org/freedesktop/DBus", bus_name="org.freedesktop.DBus", interface="org.freedesktop.DBus")


def missing_programs() -> list[str]:
    return [program for program in NEEDED if shutil.which(program) is None]


class NotificationSession:
    def __init__(self, address: str, env: dict[str, str], monitor: _NotifyMonitor) -> None:
        self.address = address  # the private bus
        self.env = env  # the caller's env, with DBUS_SESSION_BUS_ADDRESS naming the private bus
        self._monitor = monitor

    def shown(self) -> list[tuple[str, str, str]]:
        """(app_name, summary, body) of every Notify call seen on the bus so far, in order."""
        return self._monitor.seen()


@contextmanager
def notification_session(env: dict[str, str], with_daemon: bool = True) -> Iterator[NotificationSession]:
    """A fresh private bus, notification-daemon owning `org.freedesktop.Notifications` on it (unless `with_daemon`
    is False: then nobody does), and the monitor; all stopped, and their directory removed, on exit."""
    directory = Path(tempfile.mkdtemp(prefix="productimon-notices-"))
    children: list[subprocess.Popen] = []
    try:
        with ExitStack() as stack:
            address = _start_bus(directory, children)
            if with_daemon:
                _start_daemon(directory, env, address, children)
            monitor = _NotifyMonitor(address)
            stack.callback(monitor.close)
            yield NotificationSession(address, {**env, "DBUS_SESSION_BUS_ADDRESS": address}, monitor)
    finally:
        stop_children(children)
        shutil.rmtree(directory, ignore_errors=True)


def _start_bus(directory: Path, children: list[subprocess.Popen]) -> str:
    (directory / "bus").mkdir(mode=0o700)
    config = directory / "bus.conf"
    config.write_text(BUS_CONFIG.format(directory=directory / "bus"))
    log = open(directory / "dbus-daemon.log", "wb")  # noqa: SIM115  (the child keeps its own copy)
    with log:
        bus = subprocess.Popen(
            ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    children.append(bus)
    assert bus.stdout is not None
    address = bus.stdout.readline().strip()  # printed once it listens; an empty line if it exits instead
    bus.stdout.close()
    if not address.startswith("unix:"):
        bus.wait(WAIT_S)
        raise RuntimeError(f"dbus-daemon did not start: {_tail(directory / 'dbus-daemon.log')}")
    return address


def _start_daemon(directory: Path, env: dict[str, str], address: str, children: list[subprocess.Popen]) -> None:
    """notification-daemon on the bus, its GTK kept off the machine's own files and services; waits for its name."""
    home = directory / "home"
    for sub in ("runtime", "cache", "config", "data"):
        (home / sub).mkdir(parents=True, mode=0o700)
    daemon_env = {
        **env,
        "DBUS_SESSION_BUS_ADDRESS": address,
        "GDK_BACKEND": "x11",
        "NO_AT_BRIDGE": "1",  # no accessibility bus to look for
        "GSETTINGS_BACKEND": "memory",  # no dconf writes
        "XDG_RUNTIME_DIR": str(home / "runtime"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
    }
    log = open(directory / "notification-daemon.log", "wb")  # noqa: SIM115  (the child keeps its own copy)
    with log:
        daemon = subprocess.Popen(
            [NOTIFICATION_DAEMON], env=daemon_env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    children.append(daemon)
    connection = open_dbus_connection(address, auth_timeout=WAIT_S)
    try:
        deadline = time.monotonic() + WAIT_S
        while not _owned(connection, SERVICE):
            if daemon.poll() is not None:
                raise RuntimeError(
                    f"notification-daemon exited with {daemon.returncode} before owning {SERVICE}: "
                    f"{_tail(directory / 'notification-daemon.log')}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"notification-daemon did not own {SERVICE} within {WAIT_S} s: "
                    f"{_tail(directory / 'notification-daemon.log')}"
                )
            time.sleep(0.05)
    finally:
        connection.close()


def _owned(connection: DBusConnection, name: str) -> bool:
    reply = connection.send_and_get_reply(new_method_call(_DBUS, "NameHasOwner", "s", (name,)), timeout=WAIT_S)
    return bool(unwrap_msg(reply)[0])


class _NotifyMonitor:
    """A monitor connection (org.freedesktop.DBus.Monitoring) that a thread reads; it sees each Notify call as the
    bus routes it, whoever sends it. It is a monitor once BecomeMonitor has answered, before any notice is sent."""

    def __init__(self, address: str) -> None:
        self._connection = open_dbus_connection(address, auth_timeout=WAIT_S)
        rule = MatchRule(type="method_call", interface=SERVICE, member="Notify").serialise()
        try:
            unwrap_msg(self._connection.send_and_get_reply(Monitoring().BecomeMonitor([rule]), timeout=WAIT_S))
        except BaseException:
            self._connection.close()
            raise
        self._seen: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="notify-monitor", daemon=True)
        self._thread.start()

    def seen(self) -> list[tuple[str, str, str]]:
        with self._lock:
            return list(self._seen)

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._connection.receive(timeout=0.1)
            except TimeoutError:
                continue
            except (OSError, ValueError):  # the bus went away, or the connection was closed under us
                return
            fields = message.header.fields
            if (
                message.header.message_type == MessageType.method_call
                and fields.get(HeaderFields.interface) == SERVICE
                and fields.get(HeaderFields.member) == "Notify"
            ):
                app_name, _replaces, _icon, summary, body = message.body[:5]
                with self._lock:
                    self._seen.append((app_name, summary, body))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(WAIT_S)
        self._connection.close()


def _tail(log: Path) -> str:
    try:
        text = log.read_text(errors="replace").strip().replace("\n", " ")
    except OSError:
        return "no output"
    return text[-500:] or "no output"
