"""The collector's GNOME sources against a real GNOME Shell 43 (Debian 12's gnome-shell 43.9, mutter 43.8) running
headless, with the real extension put in place by `install_gnome_extension` and real GTK 4 windows to focus.

How the session is built (every piece private to the test, nothing on a fixed port or path):
- Everything runs as root: gnome-shell 43, unlike sway, starts as root, so no second user (and no cross-uid bus
  policy) is needed.
- A private bus: `dbus-daemon --session --nofork --address=unix:path=<tmp>/run/bus --print-address=1`. The shell also
  gets it as its system bus (DBUS_SYSTEM_BUS_ADDRESS): this machine has /run/systemd/seats, so the shell's login
  manager code connects to the system bus and its start-up throws when there is none; on this bus it finds no logind
  and goes on.
- XDG_RUNTIME_DIR (0700), HOME, XDG_DATA_HOME, XDG_CONFIG_HOME, XDG_CACHE_HOME: fresh temporary directories. dconf,
  the real GSettings backend, is started by the private bus on demand and keeps its database in XDG_CONFIG_HOME.
- `install_gnome_extension` copies the extension and enables it (`gnome-extensions enable`, through dconf) before the
  shell starts, as on a workstation before the next login.
- `gnome-shell --headless --wayland --no-x11 --virtual-monitor 1280x800 --wayland-display <name>`.
- A user-level org.gnome.Extensions.desktop with Hidden=true: without an Extensions app the shell does not ask
  extensions.gnome.org for updates (it would try the network at start).
- GNOME starts in the overview, where a new window does not take the focus. The test waits for it (the OverviewActive
  property of org.gnome.Shell) and leaves it by pressing Escape on a virtual keyboard (org.gnome.Mutter.RemoteDesktop:
  CreateSession, Start, NotifyKeyboardKeysym); the same virtual input shows the idle time going back to zero.
- Windows are small GTK 4 applications run by Debian's python3 (python3-gi, gir1.2-gtk-4.0): one has a .desktop file
  (its app id comes from the shell's window tracker), one has none (the extension falls back to the window's class,
  its Wayland app_id). Focus moves as it does for a user: a new window takes it, closing that window gives it back to
  the one below. Nothing can focus a window by command here: org.gnome.Shell.Eval answers (false, '') outside unsafe
  mode.
- Each program is started in a process group of its own (bus, shell, each window, the screensaver proxy); at the end
  the groups are ended and the test checks that none of their processes is left.
- The real collector (`productimon-collector run`) is run once on this session, and what it recorded is read
  back from the warehouse through the real gateway and worker (the `stack` of tests/conftest.py).

The tests share one session and run in file order; the last one ends the session on purpose. Two need no shell:
the installer's own gsettings path (real gsettings on its keyfile backend, a `gnome-shell` script that says 48.1), and
extension45.js for GNOME 45 and newer, which no Debian 12 package has: it runs in gjs on a bus of its own with
stand-ins for the shell's window tracker and Extension class, and is asked by the real GnomeShellWindows.
Debian packages: gnome-shell, gnome-settings-daemon, gjs, dbus-daemon, dconf-service, dconf-gsettings-backend,
libglib2.0-bin, python3-gi, gir1.2-gtk-4.0.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from jeepney.wrappers import unwrap_msg

from collector.sampling import SessionEnded
from collector.wayland import gnome
from collector.wayland.gnome import (
    BUS_NAME,
    EXTENSION_DIR,
    EXTENSION_UUID,
    GnomeShellWindows,
    MutterIdle,
    install_gnome_extension,
    open_gnome_idle,
)
from collector.wayland.screensaver import FreedesktopScreenSaverIdle
from collector.wayland.session_bus import CALL_TIMEOUT_S
from testbed.collector_process import (
    delivered_intervals,
    enrolled_home,
    in_use_until_seen,
    spool_depth,
    start_collector,
    status,
    stop_collector,
)
from tests.conftest import eventually

pytestmark = pytest.mark.e2e

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-gi: the venv has no GTK
ALPHA = "io.productimon.TestAlpha"  # has a .desktop file
BETA = "io.productimon.TestBeta"  # has none

# A GTK 4 window: its app id and title from argv; "title <text>" on stdin retitles it, "quit" or EOF closes it.
GTK_WINDOW = r"""
import sys
import gi
gi.require_version("Gtk", "4.0")
from gi.repository import GLib, Gtk

app_id, title = sys.argv[1], sys.argv[2]
app = Gtk.Application(application_id=app_id)

def on_line(channel, _condition, window):
    line = channel.readline()
    if not line or line.strip() == "quit":
        window.close()
        return False
    command, _, argument = line.rstrip("\n").partition(" ")
    if command == "title":
        window.set_title(argument)
    return True

def activate(app):
    window = Gtk.ApplicationWindow(application=app, title=title)
    window.set_default_size(400, 300)
    window.present()
    channel = GLib.IOChannel.unix_new(sys.stdin.fileno())
    GLib.io_add_watch(channel, GLib.PRIORITY_DEFAULT, GLib.IOCondition.IN | GLib.IOCondition.HUP, on_line, window)

app.connect("activate", activate)
app.run([])
"""


def _call(connection: DBusConnection, destination: str, path: str, interface: str, method: str, signature=None,
          body=()) -> tuple:  # fmt: skip
    message = new_method_call(DBusAddress(path, bus_name=destination, interface=interface), method, signature, body)
    return unwrap_msg(connection.send_and_get_reply(message, timeout=5))


def _has_owner(connection: DBusConnection, name: str) -> bool:
    dbus = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")
    return bool(_call(connection, *dbus, "NameHasOwner", "s", (name,))[0])


def _until_shows(windows: GnomeShellWindows, expected: tuple[str, str | None] | None, timeout_s: float) -> None:
    """Wait until the source reports `expected`; fail with what it reported last."""

    def check() -> bool:
        seen = windows.active()
        assert seen == expected, f"the source reports {seen!r}, not {expected!r}"
        return True

    eventually(check, timeout_s=timeout_s, interval_s=0.1)


def _group_members(group: int) -> list[int]:
    """The live processes whose process group is `group` (not zombies: those have ended, only not been reaped)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) == group:
                members.append(int(entry))
    return members


def _end_group(group: int) -> None:
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while _group_members(group) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _group_members(group):
            return


class VirtualInput:
    """A keyboard and pointer of Mutter's remote desktop API: input as the compositor sees a user's."""

    SESSION = "org.gnome.Mutter.RemoteDesktop.Session"

    def __init__(self, bus_address: str) -> None:
        self._connection = open_dbus_connection(bus=bus_address)
        (self._path,) = _call(
            self._connection,
            "org.gnome.Mutter.RemoteDesktop",
            "/org/gnome/Mutter/RemoteDesktop",
            "org.gnome.Mutter.RemoteDesktop",
            "CreateSession",
        )
        self._session("Start")

    def _session(self, method: str, signature=None, body=()) -> None:
        _call(self._connection, "org.gnome.Mutter.RemoteDesktop", self._path, self.SESSION, method, signature, body)

    def press(self, keysym: int) -> None:
        self._session("NotifyKeyboardKeysym", "ub", (keysym, True))
        self._session("NotifyKeyboardKeysym", "ub", (keysym, False))

    def nudge_pointer(self) -> None:
        self._session("NotifyPointerMotionRelative", "dd", (3.0, 2.0))

    def close(self) -> None:
        with suppress(Exception):  # the shell may be gone already
            self._session("Stop")
        self._connection.close()


@dataclass
class Window:
    process: subprocess.Popen

    def retitle(self, title: str) -> None:
        self.process.stdin.write(f"title {title}\n")
        self.process.stdin.flush()

    def close(self) -> None:
        self.process.stdin.write("quit\n")
        self.process.stdin.flush()
        self.process.wait(10)


@dataclass
class GnomeSession:
    root: Path
    env: dict[str, str]
    bus_address: str
    bus: subprocess.Popen
    install_lines: list[str] = field(default_factory=list)
    shell: subprocess.Popen | None = None
    input: VirtualInput | None = None
    groups: list[int] = field(default_factory=list)
    children: list[subprocess.Popen] = field(default_factory=list)

    @property
    def data_home(self) -> Path:
        return Path(self.env["XDG_DATA_HOME"])

    def start(self, argv: list[str], log_name: str, **kwargs) -> subprocess.Popen:
        """A program in a process group of its own, its output in log_name under the session's directory."""
        with open(self.root / log_name, "ab") as log_file:
            child = subprocess.Popen(
                argv, env=self.env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
            )
        self.groups.append(child.pid)
        self.children.append(child)
        return child

    def open_window(self, app_id: str, title: str) -> Window:
        process = self.start(
            [SYSTEM_PYTHON, "-c", GTK_WINDOW, app_id, title], f"{app_id}.log", stdin=subprocess.PIPE, text=True
        )
        return Window(process)

    def shell_log(self) -> str:
        return (self.root / "gnome-shell.log").read_text(errors="replace")[-3000:]

    def gsettings(self, *args: str) -> str:
        return subprocess.run(
            ["gsettings", *args], env=self.env, check=True, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    def stop(self) -> None:
        if self.input is not None:
            self.input.close()
        for group in reversed(self.groups):
            _end_group(group)
        for child in self.children:
            child.wait(5)
            for pipe in (child.stdin, child.stdout):
                if pipe is not None:
                    pipe.close()
        left = {group: _group_members(group) for group in self.groups}
        assert not any(left.values()), f"processes left running: {left}"


def _private_session(root: Path) -> GnomeSession:
    for name in ("run", "home", "data", "config", "cache"):
        (root / name).mkdir()
    (root / "run").chmod(0o700)
    applications = root / "data" / "applications"
    applications.mkdir()
    (applications / f"{ALPHA}.desktop").write_text("[Desktop Entry]\nType=Application\nName=Alpha\nExec=true\n")
    (applications / "org.gnome.Extensions.desktop").write_text(
        "[Desktop Entry]\nType=Application\nName=Extensions\nHidden=true\n"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DBUS_", "XDG_", "WAYLAND_", "GNOME_", "GSETTINGS_")) and key != "DISPLAY"
    }
    env.update(
        XDG_RUNTIME_DIR=str(root / "run"),
        HOME=str(root / "home"),
        XDG_DATA_HOME=str(root / "data"),
        XDG_CONFIG_HOME=str(root / "config"),
        XDG_CACHE_HOME=str(root / "cache"),
        NO_AT_BRIDGE="1",
        GSK_RENDERER="cairo",
    )
    bus = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", f"--address=unix:path={root / 'run' / 'bus'}", "--print-address=1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    address = bus.stdout.readline().strip()
    assert address.startswith("unix:path="), "dbus-daemon did not start"
    env.update(DBUS_SESSION_BUS_ADDRESS=address, DBUS_SYSTEM_BUS_ADDRESS=address)
    session = GnomeSession(root, env, address, bus, groups=[bus.pid], children=[bus])
    return session


def _start_shell(session: GnomeSession) -> None:
    display = "wayland-productimon"
    session.shell = session.start(
        [
            "gnome-shell",
            "--headless",
            "--wayland",
            "--no-x11",
            "--virtual-monitor",
            "1280x800",
            "--wayland-display",
            display,
        ],
        "gnome-shell.log",
    )
    session.env.update(WAYLAND_DISPLAY=display, GDK_BACKEND="wayland", XDG_SESSION_TYPE="wayland")
    with open_dbus_connection(bus=session.bus_address) as connection:
        deadline = time.monotonic() + 60
        while not _has_owner(connection, BUS_NAME):
            assert session.shell.poll() is None, f"gnome-shell exited: {session.shell_log()}"
            assert time.monotonic() < deadline, f"the extension did not come up: {session.shell_log()}"
            time.sleep(0.1)
        session.input = VirtualInput(session.bus_address)
        # The shell opens the overview once its first frame is drawn: wait for it, then leave it as a user does.
        eventually(lambda: _overview_shown(connection), timeout_s=30, interval_s=0.05)
        session.input.press(0xFF1B)  # Escape
        eventually(lambda: not _overview_shown(connection), timeout_s=10, interval_s=0.05)


def _overview_shown(connection: DBusConnection) -> bool:
    properties = ("org.gnome.Shell", "/org/gnome/Shell", "org.freedesktop.DBus.Properties")
    ((_signature, shown),) = _call(connection, *properties, "Get", "ss", ("org.gnome.Shell", "OverviewActive"))
    return shown


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Iterator[GnomeSession]:
    missing = [p for p in ("gnome-shell", "dbus-daemon", "gsettings", "gjs", SYSTEM_PYTHON) if not shutil.which(p)]
    assert not missing, f"the GNOME test needs {missing} (Debian packages: see this module's docstring)"
    running = _private_session(tmp_path_factory.mktemp("gnome"))
    try:
        with pytest.MonkeyPatch.context() as patch:
            # The code under test finds the session as a collector does: from its environment.
            patch.setenv("DBUS_SESSION_BUS_ADDRESS", running.bus_address)
            patch.setenv("XDG_DATA_HOME", running.env["XDG_DATA_HOME"])
            running.install_lines = install_gnome_extension(running.data_home, env=running.env)
            _start_shell(running)
            yield running
    finally:
        running.stop()


@pytest.fixture
def opened() -> Iterator:
    """Wraps each source a test opens, and closes their bus connections after it."""
    sources = []

    def keep(source):
        sources.append(source)
        return source

    yield keep
    for source in sources:
        source.close()


def test_the_installer_copies_the_extension_for_gnome_43_and_enables_it(session):
    installed = session.data_home / "gnome-shell" / "extensions" / EXTENSION_UUID
    assert (installed / "extension.js").read_text() == (EXTENSION_DIR / "extension.js").read_text()
    assert (installed / "metadata.json").read_text() == (EXTENSION_DIR / "metadata.json").read_text()
    assert session.gsettings("get", "org.gnome.shell", "enabled-extensions") == f"['{EXTENSION_UUID}']"
    assert session.install_lines == [
        f"installed the Productimon GNOME Shell extension (for GNOME Shell 43, 44) in {installed}",
        "enabled it (gnome-extensions enable)",
        "log out and in again: GNOME Shell on Wayland loads a new extension only at login",
    ]


def test_without_gnome_extensions_the_installer_changes_the_setting_itself_and_picks_the_45_variant(tmp_path):
    """The real gsettings (its keyfile backend, in a directory of this test); `gnome-shell` is a script that says
    48.1, since no GNOME 45 or newer is packaged here; no `gnome-extensions` on the PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gsettings").symlink_to(shutil.which("gsettings"))
    (bin_dir / "gnome-shell").write_text("#!/bin/sh\necho 'GNOME Shell 48.1'\n")
    (bin_dir / "gnome-shell").chmod(0o755)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "GSETTINGS_BACKEND": "keyfile"}  # fmt: skip

    def gsettings(*args: str) -> str:
        return subprocess.run(
            ["gsettings", *args], env=env, check=True, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    gsettings("set", "org.gnome.shell", "enabled-extensions", "['dash-to-dock@micxgx.gmail.com']")
    gsettings("set", "org.gnome.shell", "disabled-extensions", f"['{EXTENSION_UUID}']")
    data_home = tmp_path / "data"
    lines = install_gnome_extension(data_home, env=env)
    installed = data_home / "gnome-shell" / "extensions" / EXTENSION_UUID
    assert (installed / "extension.js").read_text() == (EXTENSION_DIR / "extension45.js").read_text()
    assert (installed / "metadata.json").read_text() == (EXTENSION_DIR / "metadata45.json").read_text()
    assert sorted(p.name for p in installed.iterdir()) == ["extension.js", "metadata.json"]
    assert gsettings("get", "org.gnome.shell", "enabled-extensions") == (
        f"['dash-to-dock@micxgx.gmail.com', '{EXTENSION_UUID}']"
    )
    assert gsettings("get", "org.gnome.shell", "disabled-extensions") == "@as []"
    assert lines[0] == f"installed the Productimon GNOME Shell extension (for GNOME Shell 45, 46, 47) in {installed}"
    assert lines[1].startswith("GNOME Shell 48 is newer than the versions the extension names")
    assert lines[2:] == [
        "enabled it (org.gnome.shell enabled-extensions)",
        "log out and in again: GNOME Shell on Wayland loads a new extension only at login",
    ]


def test_the_window_in_front_follows_each_window_opened_retitled_and_closed(session, opened):
    windows = opened(GnomeShellWindows())
    assert windows.active() is None  # the overview is closed and no window is open: nothing has the focus
    alpha = session.open_window(ALPHA, "Alpha report draft")
    _until_shows(windows, (ALPHA, "Alpha report draft"), timeout_s=15)
    alpha.retitle("Alpha report final")
    _until_shows(windows, (ALPHA, "Alpha report final"), timeout_s=5)
    beta = session.open_window(BETA, "Beta notes")  # no .desktop file: the app is the window's class
    _until_shows(windows, (BETA, "Beta notes"), timeout_s=15)
    beta.close()
    _until_shows(windows, (ALPHA, "Alpha report final"), timeout_s=5)
    alpha.close()
    _until_shows(windows, None, timeout_s=5)


def _once_reset(idle: MutterIdle) -> float:
    """The idle time as soon as input has reset it below 1 s, within 3 s."""
    seen: list[float | None] = []

    def reset() -> bool:
        seen.append(idle.idle_seconds())
        return seen[-1] is not None and seen[-1] < 1.0

    eventually(reset, timeout_s=3, interval_s=0.05)
    return float(seen[-1])


def test_idle_time_grows_while_nothing_happens_and_resets_on_input(session, opened):
    idle = opened(MutterIdle())
    assert type(opened(open_gnome_idle())) is MutterIdle
    # RemoteDesktop's calls return once Mutter has the event queued; its idle monitor resets when the event is
    # handled, a moment later on a busy machine. Idle time that never resets grows past 1 s and fails these.
    session.input.nudge_pointer()
    start = _once_reset(idle)
    time.sleep(1.5)
    later = idle.idle_seconds()
    assert later is not None and later - start >= 1.4
    session.input.press(0xFFE1)  # Shift
    _once_reset(idle)


def test_a_hung_shell_costs_a_deadline_not_the_collector(session, opened, caplog):
    windows, idle = opened(GnomeShellWindows()), opened(MutterIdle())
    notes = session.open_window(ALPHA, "Notes")
    _until_shows(windows, (ALPHA, "Notes"), timeout_s=15)
    os.kill(session.shell.pid, signal.SIGSTOP)
    try:
        with caplog.at_level(logging.INFO, logger=gnome.__name__):
            started = time.monotonic()
            assert windows.active() is None
            assert windows.active() is None
            assert idle.idle_seconds() is None
            took = time.monotonic() - started
    finally:
        os.kill(session.shell.pid, signal.SIGCONT)
    assert 3 * CALL_TIMEOUT_S <= took < 3 * CALL_TIMEOUT_S + 1.5  # three calls, each given up at its deadline
    told = [r.getMessage() for r in caplog.records if r.name == gnome.__name__]
    assert told == [
        "GNOME Shell did not say which window is in front (no answer in time); will keep trying",
        "GNOME's idle monitor did not answer (no answer in time); will keep trying",
    ]  # once each, however many calls failed
    _until_shows(windows, (ALPHA, "Notes"), timeout_s=5)
    assert idle.idle_seconds() is not None
    notes.close()


def test_a_disabled_extension_is_said_in_one_line_and_enabling_it_again_is_seen(session, opened):
    windows = opened(GnomeShellWindows())
    todo = session.open_window(BETA, "Todo")
    _until_shows(windows, (BETA, "Todo"), timeout_s=15)
    subprocess.run(["gnome-extensions", "disable", EXTENSION_UUID], env=session.env, check=True, timeout=10)
    _until_shows(windows, None, timeout_s=5)
    with pytest.raises(RuntimeError) as refused:
        GnomeShellWindows()
    assert str(refused.value) == gnome.not_running_reason(shell_on_bus=True, installed=True)
    assert "\n" not in str(refused.value)
    subprocess.run(["gnome-extensions", "enable", EXTENSION_UUID], env=session.env, check=True, timeout=10)
    _until_shows(windows, (BETA, "Todo"), timeout_s=5)  # the same source
    todo.close()


def test_gnome_s_own_screensaver_name_gives_no_idle_time_so_mutter_s_is_used(session, opened):
    proxy = session.start(["/usr/libexec/gsd-screensaver-proxy"], "gsd-screensaver-proxy.log")
    with open_dbus_connection(bus=session.bus_address) as connection:
        eventually(lambda: _has_owner(connection, "org.freedesktop.ScreenSaver"), timeout_s=10, interval_s=0.1)
    with pytest.raises(RuntimeError, match=r"gives no idle time here \(org.freedesktop.DBus.Error.NotSupported"):
        FreedesktopScreenSaverIdle()
    assert type(opened(open_gnome_idle())) is MutterIdle
    _end_group(proxy.pid)
    proxy.wait(5)


# GNOME 45 and newer are not packaged here: extension45.js runs in gjs (the shell's own JavaScript engine) with
# stand-ins for the two things only a running shell has, its window tracker and its Extension base class, and the
# focused window set from the test.
SHELL_STUB = "export default {WindowTracker: {get_default: () => ({get_window_app: win => win.app})}};\n"
EXTENSION_BASE_STUB = "export class Extension { constructor(metadata) { this.metadata = metadata; } }\n"
GJS_DRIVER = r"""
import GLib from 'gi://GLib';
import Gio from 'gi://Gio';
import ProductimonExtension from './extension.js';

let focused = null;
globalThis.global = {display: {get_focus_window: () => focused}};
const out = new Gio.UnixOutputStream({fd: 1});
const say = text => out.write_all(new TextEncoder().encode(`${text}\n`), null);

function fakeWindow({desktop_id, wm_class, gtk_id, title}) {
    const app = desktop_id
        ? {is_window_backed: () => false, get_id: () => desktop_id}
        : {is_window_backed: () => true, get_id: () => 'window:7'};
    return {app, get_wm_class: () => wm_class, get_gtk_application_id: () => gtk_id, get_title: () => title};
}

const extension = new ProductimonExtension({uuid: 'productimon@productimon.io'});
extension.enable();
const input = new Gio.DataInputStream({base_stream: new Gio.UnixInputStream({fd: 0})});
const loop = new GLib.MainLoop(null, false);
function next() {
    input.read_line_async(GLib.PRIORITY_DEFAULT, null, (stream, result) => {
        const [line] = stream.read_line_finish_utf8(result);
        if (line === null) {
            loop.quit();
            return;
        }
        const command = JSON.parse(line);
        if (command === 'disable')
            extension.disable();
        else
            focused = command === null ? null : fakeWindow(command);
        say('ok');
        next();
    });
}
next();
say('started');
loop.run();
"""


def test_the_gnome_45_variant_answers_the_same_from_gjs(tmp_path, opened, monkeypatch):
    source = (EXTENSION_DIR / "extension45.js").read_text()
    for module, stub in (("gi://Shell", "./shell_stub.js"),
                         ("resource:///org/gnome/shell/extensions/extension.js", "./extension_stub.js")):  # fmt: skip
        assert source.count(f"'{module}'") == 1, f"extension45.js no longer imports {module} once"
        source = source.replace(f"'{module}'", f"'{stub}'")
    (tmp_path / "extension.js").write_text(source)
    (tmp_path / "shell_stub.js").write_text(SHELL_STUB)
    (tmp_path / "extension_stub.js").write_text(EXTENSION_BASE_STUB)
    (tmp_path / "driver.js").write_text(GJS_DRIVER)
    bus = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", f"--address=unix:path={tmp_path / 'bus'}", "--print-address=1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )  # fmt: skip
    address = bus.stdout.readline().strip()
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
    env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": address}
    gjs = subprocess.Popen(
        ["gjs", "-m", str(tmp_path / "driver.js")], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert gjs.stdout.readline() == "started\n"
        with open_dbus_connection(bus=address) as connection:
            eventually(lambda: _has_owner(connection, BUS_NAME), timeout_s=10, interval_s=0.05)
        windows = opened(GnomeShellWindows())

        def focus(window: object) -> tuple[str, str | None] | None:
            gjs.stdin.write(json.dumps(window) + "\n")
            gjs.stdin.flush()
            assert gjs.stdout.readline() == "ok\n"
            return windows.active()

        files = {"desktop_id": "org.gnome.Nautilus.desktop", "wm_class": "org.gnome.Nautilus", "title": "Home"}
        assert focus(files) == ("org.gnome.Nautilus", "Home")
        terminal = {"desktop_id": None, "wm_class": "foot", "gtk_id": None, "title": "vim notes.txt"}
        assert focus(terminal) == ("foot", "vim notes.txt")  # matched to no .desktop file: the window's class
        untitled = {"desktop_id": None, "wm_class": None, "gtk_id": "org.example.Tool", "title": None}
        assert focus(untitled) == ("org.example.Tool", None)
        assert focus(None) is None
        assert focus("disable") is None  # the name is released: not answered
        with pytest.raises(RuntimeError):
            GnomeShellWindows()
    finally:
        gjs.stdin.close()
        gjs.wait(10)
        _end_group(bus.pid)
        bus.wait(5)
        gjs.stdout.close()
        bus.stdout.close()
    assert not _group_members(gjs.pid) and not _group_members(bus.pid)


IDLE_AFTER_S = 2.0
SETTLE_S = 0.6  # three samples at 0.2 s


def _mutter_idle_ms(connection: DBusConnection) -> int:
    """Mutter's idle time asked directly, not through the code under test."""
    (milliseconds,) = _call(connection, "org.gnome.Mutter.IdleMonitor", "/org/gnome/Mutter/IdleMonitor/Core",
                            "org.gnome.Mutter.IdleMonitor", "GetIdletime")  # fmt: skip
    return milliseconds


def _touch(session: GnomeSession, connection: DBusConnection) -> float:
    """A key and a pointer nudge on the virtual devices; returns the moment Mutter counts its idle time from, once it
    has them: the first answer of GetIdletime shorter than the time since they were sent (so the input it counts
    from is this one), taken back from the middle of that call. Not the moment the answer came: on a loaded machine
    the polling can notice the input well after Mutter had it, and the collector reads Mutter's moment, not ours.
    Mutter takes them a few milliseconds after the calls return, the first time up to ~0.2 s."""
    sent = time.time()
    session.input.nudge_pointer()
    session.input.press(0xFFE1)  # Shift

    def arrived() -> float | None:
        asked = time.time()
        idle_s = _mutter_idle_ms(connection) / 1000
        answered = time.time()
        return (asked + answered) / 2 - idle_s if idle_s <= asked - sent else None

    return eventually(arrived, timeout_s=5, interval_s=0.01)


@pytest.fixture
def collector_home(stack, tmp_path):
    config = f"sample_seconds = 0.2\nidle_after_seconds = {IDLE_AFTER_S}\n"
    home, user_id, *_ = enrolled_home(stack.settings, tmp_path / "home", config, device_name="gnome-test")
    return home, user_id


def test_the_real_collector_records_windows_and_idle_from_gnome_through_the_gateway(
    session, opened, collector_home, warehouse_client, tmp_path
):
    """`productimon-collector run` on this GNOME session, as on a workstation: Alpha in front, then Beta, no input
    until idle, input again and Beta closed so Alpha is in front again; what reaches the warehouse through the real
    gateway and worker."""
    home, user_id = collector_home
    env = {**session.env, "XDG_CURRENT_DESKTOP": "GNOME"}
    assert env["XDG_SESSION_TYPE"] == "wayland" and "DISPLAY" not in env
    env["WAYLAND_DISPLAY"] = str(Path(env["XDG_RUNTIME_DIR"]) / env["WAYLAND_DISPLAY"])
    windows = opened(GnomeShellWindows())
    alpha_title, beta_title = "Alpha quarterly report", "Beta notes"
    alpha = session.open_window(ALPHA, alpha_title)
    _until_shows(windows, (ALPHA, alpha_title), timeout_s=15)
    moments: dict = {}
    with open_dbus_connection(bus=session.bus_address) as connection:
        _touch(session, connection)  # the session is in use when the collector starts
        collector = start_collector(home, env, tmp_path / "collector.log")
        try:
            _touch(session, connection)
            time.sleep(SETTLE_S + 1.0)
            opening = time.time()
            beta = session.open_window(BETA, beta_title)
            _until_shows(windows, (BETA, beta_title), timeout_s=15)
            in_use_until_seen(lambda: _touch(session, connection), warehouse_client, user_id, opening)
            moments["last_input_before_idle"] = _touch(session, connection)
            time.sleep(IDLE_AFTER_S + 2.5)  # no input: idle
            moments["reported"] = status(home)
            moments["back"] = _touch(session, connection)
            beta.close()  # the window below takes the focus back
            _until_shows(windows, (ALPHA, alpha_title), timeout_s=5)
            time.sleep(SETTLE_S + 1.0)
        finally:
            assert stop_collector(collector) == 0
    alpha.close()
    assert spool_depth(home) == 0
    back = datetime.fromtimestamp(moments["back"], UTC)
    intervals = delivered_intervals(warehouse_client, user_id, moments["back"])

    active = intervals[~intervals["idle"]]
    assert set(active["app"]) == {ALPHA, BETA}
    assert set(active[active["app"] == ALPHA]["title"]) == {alpha_title}
    assert set(active[active["app"] == BETA]["title"]) == {beta_title}
    # No key or click is counted on Wayland unless opted in: never a wrong count.
    assert intervals["keystrokes"].sum() == 0 and intervals["clicks"].sum() == 0

    assert (intervals["start"].iloc[1:].to_numpy() == intervals["end"].iloc[:-1].to_numpy()).all()
    apps = list(intervals["app"])
    runs = [app for i, app in enumerate(apps) if i == 0 or app != apps[i - 1]]
    assert runs[-3:] == [ALPHA, BETA, ALPHA]

    stopped = datetime.fromtimestamp(moments["last_input_before_idle"], UTC)
    idle = intervals[intervals["idle"] & (intervals["start"] >= stopped - timedelta(seconds=1))]
    assert not idle.empty, "no idle interval was recorded after the input stopped"
    # Cut at the last input (Mutter's idle time), not IDLE_AFTER_S later when the threshold passed.
    assert abs((idle.iloc[0]["start"] - stopped).total_seconds()) < 0.5
    assert abs((idle.iloc[-1]["end"] - back).total_seconds()) < 0.5

    reported = moments["reported"]
    assert reported["sources"] == [
        "session: Wayland (gnome)",
        "windows: the Productimon GNOME Shell extension (session D-Bus)",
        "idle: org.gnome.Mutter.IdleMonitor",
    ]
    assert any(line.startswith("key and click counts are not recorded: Wayland") for line in reported["unavailable"])


def test_without_the_shell_or_its_bus_the_sources_say_why(session, opened):
    """Last: ends the session. A shell that is gone is not answering; a bus that is gone is the session's end."""
    windows, idle = opened(GnomeShellWindows()), opened(MutterIdle())
    session.input.close()
    session.input = None
    _end_group(session.shell.pid)
    session.shell.wait(5)
    assert windows.active() is None
    assert idle.idle_seconds() is None
    with pytest.raises(RuntimeError) as refused:
        GnomeShellWindows()
    assert str(refused.value) == "GNOME Shell is not running on this session bus (org.gnome.Shell has no owner)"
    with pytest.raises(RuntimeError, match="org.gnome.Mutter.IdleMonitor"):
        open_gnome_idle()
    _end_group(session.bus.pid)
    session.bus.wait(5)
    with pytest.raises(SessionEnded):
        windows.active()
    with pytest.raises(SessionEnded):
        idle.idle_seconds()
