"""The KDE Plasma window source (collector/wayland/kde.py) against a real KWin 5.27 (docs/collector.md "Wayland").

KWin runs headless (`kwin_wayland --virtual`) on a private session D-Bus. The windows are real: GTK 3 windows as
native Wayland clients (app id and title set by the program, the title changed while it runs) and xterm as an X11
client through KWin's Xwayland. Focus moves through KWin's own D-Bus window runner (org.kde.krunner1 on
/WindowsRunner, what KRunner uses to switch to a window by its caption).

How it runs here:
- The bus: `dbus-daemon --config-file=<tmp>/bus.conf --nofork --print-address=1`. The private config listens in a
  temporary directory, allows EXTERNAL auth only, and has no service directories, so the bus starts nothing by
  activation that could outlive the test. Everything runs as root: KWin 5.27 does not refuse root, so no second
  user is needed.
- KWin: a copy of /usr/bin/kwin_wayland made without the file capability it carries (cap_sys_resource=ep). Where
  the capability bounding set lacks CAP_SYS_RESOURCE (containers), execve of the original fails with EPERM
  ("Operation not permitted"); the copy is the same program. It runs as
  `kwin_wayland --virtual --width 1280 --height 800 --socket wayland-kde [--xwayland <sh writing $DISPLAY>]` with
  XDG_RUNTIME_DIR a private 0700 temporary directory and HOME and the XDG_* directories temporary too. KWin starts
  the trailing program once Wayland and Xwayland are up: that is how the test learns the X display KWin chose.
- Input: KWin's org_kde_kwin_fake_input Wayland protocol (the XML of Debian's plasma-wayland-protocols, bindings
  generated with pywayland's scanner into a temporary directory). KWin offers that restricted interface only to a
  program a desktop file grants it to (X-KDE-Wayland-Interfaces, matched against the client's executable), so
  the private XDG_DATA_HOME has one naming this test's own interpreter. Its pointer motion is real input to KWin:
  it resets the idle timers. A focus change through the window runner is not input: it resets none.
- foot is not used: foot 1.13.1 dies of SIGFPE on KWin's virtual output (it reports no physical size).
- Each program started is the leader of its own process group; the group is ended afterwards, and the teardown
  fails if anything of it is still running.
Debian packages: kwin-wayland (KWin 5.27, with xwayland), dbus-daemon, xterm, python3-gi, gir1.2-gtk-3.0,
plasma-wayland-protocols, libwayland-dev.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest
from jeepney import DBusAddress, message_bus, new_method_call
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from jeepney.wrappers import DBusErrorResponse, unwrap_msg

from collector.sampling import SessionEnded
from collector.wayland import kde
from collector.wayland.kde import KWinWindows
from testbed.collector_process import (
    delivered_intervals,
    enrolled_home,
    in_use_until_seen,
    spool_depth,
    start_collector,
    status,
    stop_collector,
)
from testbed.notification_bus import BUS_CONFIG  # the same private session bus

pytestmark = pytest.mark.e2e

KWIN = "/usr/bin/kwin_wayland"
NEEDED = (KWIN, "dbus-daemon", "Xwayland", "xterm", "/usr/bin/python3")
WAYLAND_XML = Path("/usr/share/wayland/wayland.xml")
FAKE_INPUT_XML = Path("/usr/share/plasma-wayland-protocols/fake-input.xml")
SOCKET = "wayland-kde"
REPO = Path(__file__).resolve().parents[2]
SCRIPTING = DBusAddress("/Scripting", bus_name="org.kde.KWin", interface="org.kde.kwin.Scripting")
RUNNER = DBusAddress("/WindowsRunner", bus_name="org.kde.KWin", interface="org.kde.krunner1")


# A GTK 3 window (Debian's python3-gi): its Wayland app id is the program name, its title is set anew for each line
# read from stdin, and it closes when stdin does.
GTK_WINDOW = """
import sys
import gi
gi.require_version("Gtk", "3.0")
from gi.repository import GLib, Gtk
GLib.set_prgname(sys.argv[1])
window = Gtk.Window(title=sys.argv[2])
window.set_default_size(320, 200)
def line(stream, condition):
    text = stream.readline()
    if not text:
        Gtk.main_quit()
        return False
    window.set_title(text.rstrip("\\n"))
    return True
GLib.io_add_watch(sys.stdin, GLib.IO_IN | GLib.IO_HUP, line)
window.show_all()
Gtk.main()
"""


def _call(bus: DBusConnection, message) -> tuple:
    return unwrap_msg(bus.send_and_get_reply(message, timeout=10))


def _owner(bus: DBusConnection, name: str) -> str | None:
    try:
        return _call(bus, message_bus.GetNameOwner(name))[0]
    except DBusErrorResponse:
        return None


def _serving(bus: DBusConnection) -> bool:
    """Whether KWin answers on the bus: it takes its name before it has put up all its objects."""
    try:
        _call(bus, new_method_call(RUNNER, "Match", "s", ("-",)))
        _call(bus, new_method_call(SCRIPTING, "isScriptLoaded", "s", ("-",)))
    except DBusErrorResponse:
        return False
    return True


def _script_loaded(bus: DBusConnection) -> bool:
    return _call(bus, new_method_call(SCRIPTING, "isScriptLoaded", "s", (kde.PLUGIN,)))[0]


def _until(read: Callable[[], object], expected: object, timeout_s: float = 10.0) -> None:
    """Wait until `read()` gives `expected`; fail showing what it gave last."""
    deadline = time.monotonic() + timeout_s
    while (seen := read()) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen == expected


def _start(argv: list[str], env: dict[str, str], log: Path | None = None, **options) -> subprocess.Popen:
    output = open(log, "ab") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen(argv, env=env, stdout=output, stderr=output, start_new_session=True, **options)
    finally:
        if log:
            output.close()


def _end(children: list[subprocess.Popen]) -> list[str]:
    """End each child and whatever it started in its process group; what was still running, to fail on."""
    left: list[str] = []
    for child in reversed(children):
        if child.stdin:
            with suppress(OSError):
                child.stdin.close()
        if child.poll() is None:
            child.terminate()
        try:
            child.wait(5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        deadline = time.monotonic() + 5
        while _group_alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _group_alive(child.pid):
            left.append(" ".join(child.args))
            with suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
    children.clear()
    return left


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    path.chmod(0o700)
    return path


@contextmanager
def private_bus(directory: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """A session dbus-daemon of its own; yields its address and its process."""
    config = directory / "bus.conf"
    config.write_text(BUS_CONFIG.format(directory=_private_dir(directory / "bus")))
    children = [
        subprocess.Popen(
            ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    ]
    try:
        address = children[0].stdout.readline().strip()
        assert address.startswith("unix:"), f"dbus-daemon did not start: {address!r}"
        yield address, children[0]
    finally:
        assert not _end(children), "dbus-daemon left processes behind"


@dataclass
class Window:
    process: subprocess.Popen

    def retitle(self, title: str) -> None:
        self.process.stdin.write(title + "\n")
        self.process.stdin.flush()


@dataclass
class Plasma:
    """A running KWin on a private bus, with the programs it shows."""

    directory: Path
    env: dict[str, str]  # what clients of this KWin need (Wayland socket, X display, runtime dir, bus)
    bus: DBusConnection
    windows: list[subprocess.Popen] = field(default_factory=list)

    def gtk_window(self, app_id: str, title: str) -> Window:
        env = dict(self.env, GDK_BACKEND="wayland", NO_AT_BRIDGE="1")
        env.pop("DISPLAY", None)
        argv = ["/usr/bin/python3", "-c", GTK_WINDOW, app_id, title]
        process = _start(argv, env, self.directory / "clients.log", stdin=subprocess.PIPE, text=True)
        self.windows.append(process)
        self.wait_for_window(title)
        return Window(process)

    def xterm(self, title: str) -> Window:
        argv = ["xterm", "-T", title, "-e", "sh", "-c", "exec sleep 120"]
        process = _start(argv, self.env, self.directory / "clients.log")
        self.windows.append(process)
        self.wait_for_window(title)
        return Window(process)

    def matches(self, caption: str) -> dict[str, str]:
        """KWin's windows whose caption is `caption` (KWin's own, with its " <2>"), by their runner match id."""
        found = _call(self.bus, new_method_call(RUNNER, "Match", "s", (caption,)))[0]
        return {match_id: text for match_id, text, *_ in found if text == caption}

    def wait_for_window(self, caption: str) -> None:
        deadline = time.monotonic() + 15
        while not self.matches(caption):
            assert time.monotonic() < deadline, f"KWin shows no window {caption!r}"
            time.sleep(0.05)

    def focus(self, caption: str) -> None:
        """Activate the window with this caption the way KRunner does."""
        (match_id,) = self.matches(caption)
        _call(self.bus, new_method_call(RUNNER, "Run", "ss", (match_id, "")))


def fake_input_bindings(directory: Path) -> ModuleType:
    """pywayland bindings of org_kde_kwin_fake_input, generated from the system's XML into `directory`."""
    subprocess.run(
        [sys.executable, "-m", "pywayland.scanner", "-i", str(WAYLAND_XML), str(FAKE_INPUT_XML), "-o", str(directory)],
        check=True,
        capture_output=True,
    )
    spec = importlib.util.spec_from_file_location("kde_fake_input", directory / "fake_input.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakePointer:
    """A client of KWin's fake input: each `touch` moves the pointer, real input as far as KWin's idle timers go."""

    def __init__(self, socket: Path, bindings: ModuleType) -> None:
        from pywayland.client import Display

        self._display = Display(str(socket))
        self._display.connect()
        found: dict[str, tuple[int, int]] = {}

        def announced(_registry, name: int, interface: str, version: int) -> None:
            found.setdefault(interface, (name, version))

        registry = self._display.get_registry()
        registry.dispatcher["global"] = announced
        self._display.roundtrip()
        assert bindings.OrgKdeKwinFakeInput.name in found, "KWin does not offer org_kde_kwin_fake_input to the test"
        name, version = found[bindings.OrgKdeKwinFakeInput.name]
        self._input = registry.bind(name, bindings.OrgKdeKwinFakeInput, version)
        self._input.authenticate("Productimon tests", "input for the collector's idle test")
        self._display.roundtrip()
        self._step = 1.0

    def touch(self) -> None:
        self._step = -self._step  # back and forth: the pointer stays where it was
        self._input.pointer_motion(self._step, 0.0)
        self._display.roundtrip()  # KWin has handled it

    def close(self) -> None:
        self._display.disconnect()


def _end_one(children: list[subprocess.Popen], child: subprocess.Popen) -> None:
    children.remove(child)
    assert not _end([child]), "a window left processes behind"


@contextmanager
def running_kwin(
    directory: Path, bus_address: str, xwayland: bool = True, fake_input_for: str | None = None
) -> Iterator[Plasma]:
    """kwin_wayland --virtual on the bus at `bus_address`, ready: on the bus, its Wayland socket (and X display) up.
    `fake_input_for`: an executable KWin lets bind org_kde_kwin_fake_input (module docstring)."""
    home = _private_dir(directory / "home")
    if fake_input_for is not None:
        applications = home / ".local/share/applications"
        applications.mkdir(parents=True)
        (applications / "productimon-test-input.desktop").write_text(
            "[Desktop Entry]\nType=Application\nName=Productimon test input\nNoDisplay=true\n"
            f"Exec={fake_input_for}\nX-KDE-Wayland-Interfaces=org_kde_kwin_fake_input\n"
        )
    runtime = _private_dir(directory / "runtime")
    kwin = directory / "kwin_wayland"
    shutil.copyfile(KWIN, kwin)  # without the file capability (module docstring)
    kwin.chmod(0o755)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local/state"),
        "DBUS_SESSION_BUS_ADDRESS": bus_address,
        "DBUS_SYSTEM_BUS_ADDRESS": bus_address,  # nothing of the host's system bus either
    }
    displayed = directory / "display"
    argv = [str(kwin), "--virtual", "--width", "1280", "--height", "800", "--socket", SOCKET]
    if xwayland:
        # KWin splits each program to start into words like a shell, but runs it without one.
        new, done = shlex.quote(f"{displayed}.new"), shlex.quote(str(displayed))
        tell = f'printf "%s\\n%s\\n" "$DISPLAY" "$XAUTHORITY" > {new} && mv {new} {done}'
        argv += ["--xwayland", shlex.join(["sh", "-c", tell])]
    log = directory / "kwin.log"
    children = [_start(argv, env, log)]
    bus = open_dbus_connection(bus=bus_address)
    plasma: Plasma | None = None
    try:
        deadline = time.monotonic() + 30
        while not ((runtime / SOCKET).exists() and (displayed.exists() or not xwayland) and _serving(bus)):
            if children[0].poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"kwin_wayland did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        client_env = dict(env, WAYLAND_DISPLAY=SOCKET)
        if xwayland:
            display, xauthority = displayed.read_text().splitlines()
            client_env.update(DISPLAY=display, **({"XAUTHORITY": xauthority} if xauthority else {}))
        plasma = Plasma(directory, client_env, bus)
        yield plasma
    finally:
        left = _end(plasma.windows if plasma else []) + _end(children)
        bus.close()
        assert not left, f"still running after the test: {left}"


@pytest.fixture(scope="module")
def plasma(tmp_path_factory) -> Iterator[Plasma]:
    missing = [program for program in NEEDED if shutil.which(program) is None]
    missing += [str(xml) for xml in (WAYLAND_XML, FAKE_INPUT_XML) if not xml.is_file()]
    # Not a skip: `./dev test` installs these (infra/apt-packages.txt).
    assert not missing, f"the KDE test needs {', '.join(missing)} (Debian packages in infra/apt-packages.txt)"
    directory = tmp_path_factory.mktemp("kde")
    # The test process (this interpreter) may bind fake input; the collector, run by it too, binds nothing of it.
    trusted = os.path.realpath(sys.executable)
    with private_bus(directory) as (address, _), running_kwin(directory, address, fake_input_for=trusted) as running:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("DBUS_SESSION_BUS_ADDRESS", address)  # what KWinWindows connects to
            yield running


@pytest.fixture
def desktop(plasma: Plasma) -> Iterator[Plasma]:
    """The shared KWin, with no window left over from the test before."""
    yield plasma
    assert not _end(plasma.windows), "a window left processes behind"


@pytest.fixture
def windows(desktop: Plasma) -> Iterator[KWinWindows]:
    source = KWinWindows()
    yield source
    source.stop()


def test_follows_the_window_in_front_and_its_title(desktop: Plasma) -> None:
    editor = desktop.gtk_window("org.example.Editor", "Quarterly report - Editor")
    desktop.xterm("Build log")
    desktop.focus("Quarterly report - Editor")  # KWin answers once the window is active
    source = KWinWindows()
    try:
        # The script reports the window in front once at load.
        _until(source.active, ("org.example.Editor", "Quarterly report - Editor"))
        # An X11 window (Xwayland) has no desktop file name: its resource class is the app.
        desktop.focus("Build log")
        _until(source.active, ("xterm", "Build log"))
        desktop.focus("Quarterly report - Editor")
        _until(source.active, ("org.example.Editor", "Quarterly report - Editor"))
        editor.retitle("Quarterly report (edited) - Editor")
        _until(source.active, ("org.example.Editor", "Quarterly report (edited) - Editor"))
        # A window behind changing its title changes nothing.
        desktop.focus("Build log")
        _until(source.active, ("xterm", "Build log"))
        editor.retitle("Annual report - Editor")
        desktop.wait_for_window("Annual report - Editor")
        time.sleep(0.3)
        assert source.active() == ("xterm", "Build log")
        # No window at all: nothing is in front.
        for process in list(desktop.windows):
            _end_one(desktop.windows, process)
        _until(source.active, None)
    finally:
        source.stop()


def test_titles_are_the_windows_own_when_two_are_equal(desktop: Plasma, windows: KWinWindows) -> None:
    desktop.gtk_window("org.example.Notes", "Untitled")
    desktop.gtk_window("org.example.Notes", "Untitled")
    desktop.wait_for_window("Untitled <2>")  # KWin tells them apart in its captions
    desktop.xterm("Untitled")
    desktop.wait_for_window("Untitled <2>\u200e")  # and X11 windows' with a mark after
    desktop.focus("Untitled <2>")
    _until(windows.active, ("org.example.Notes", "Untitled"))
    desktop.focus("Untitled <2>\u200e")
    _until(windows.active, ("xterm", "Untitled"))


def test_only_kwin_may_report_a_window(desktop: Plasma, windows: KWinWindows) -> None:
    desktop.gtk_window("org.example.Mail", "Inbox")
    _until(windows.active, ("org.example.Mail", "Inbox"))
    collector = DBusAddress(kde.PATH, bus_name=kde.SERVICE, interface=kde.INTERFACE)
    with pytest.raises(DBusErrorResponse) as refused:
        _call(desktop.bus, new_method_call(collector, kde.METHOD, kde.SIGNATURE, (True, "evil", "evil", "Fake")))
    assert refused.value.name == "org.freedesktop.DBus.Error.AccessDenied"
    assert windows.active() == ("org.example.Mail", "Inbox")


def test_one_collector_per_session(desktop: Plasma, windows: KWinWindows) -> None:
    with pytest.raises(RuntimeError) as second:
        KWinWindows()
    assert str(second.value) == f"another Productimon collector watches this session (it owns {kde.SERVICE})"
    assert _script_loaded(desktop.bus)  # the first one's script is left alone
    desktop.gtk_window("org.example.Mail", "Drafts")
    _until(windows.active, ("org.example.Mail", "Drafts"))


def test_stop_unloads_the_script_and_gives_up_the_name(desktop: Plasma) -> None:
    source = KWinWindows()
    assert _script_loaded(desktop.bus)
    assert _owner(desktop.bus, kde.SERVICE) is not None
    source.stop()
    assert not _script_loaded(desktop.bus)
    assert _owner(desktop.bus, kde.SERVICE) is None


def test_a_script_left_by_a_killed_collector_is_replaced(desktop: Plasma) -> None:
    code = (
        "import time\nfrom collector.wayland.kde import KWinWindows\n"
        "KWinWindows()\nprint('up', flush=True)\ntime.sleep(60)\n"
    )
    killed = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert killed.stdout.readline().strip() == "up"
    finally:
        killed.kill()
        killed.wait()
        killed.stdout.close()
    _until(lambda: _owner(desktop.bus, kde.SERVICE), None)
    assert _script_loaded(desktop.bus)  # still in KWin, calling a name nobody owns
    desktop.gtk_window("org.example.Files", "Home")
    source = KWinWindows()
    try:
        _until(source.active, ("org.example.Files", "Home"))
    finally:
        source.stop()
    assert not _script_loaded(desktop.bus)


def test_without_kwin_it_says_so_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with private_bus(tmp_path) as (address, _):
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        with pytest.raises(RuntimeError) as missing:
            KWinWindows()
        assert str(missing.value) == (
            "KWin is not on the session D-Bus (nobody owns org.kde.KWin): not a KDE Plasma session"
        )
        bus = open_dbus_connection(bus=address)
        try:
            assert _owner(bus, kde.SERVICE) is None  # the name is given back
        finally:
            bus.close()


def test_a_restarted_kwin_gets_the_script_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with private_bus(tmp_path) as (address, _):
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        source: KWinWindows | None = None
        try:
            with running_kwin(tmp_path / "first", address, xwayland=False) as first:
                first.gtk_window("org.example.Editor", "Before")
                source = KWinWindows()
                _until(source.active, ("org.example.Editor", "Before"))
            _until(source.active, None)  # KWin is gone
            with running_kwin(tmp_path / "second", address, xwayland=False) as second:
                second.gtk_window("org.example.Editor", "After")
                _until(source.active, ("org.example.Editor", "After"))  # the new KWin runs the script too
                source.stop()
                assert not _script_loaded(second.bus)
        finally:
            if source is not None:
                source.stop()


def test_the_session_bus_going_away_ends_the_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with private_bus(tmp_path) as (address, daemon):
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        with running_kwin(tmp_path, address, xwayland=False) as plasma:
            plasma.gtk_window("org.example.Editor", "Last words")
            source = KWinWindows()
            try:
                _until(source.active, ("org.example.Editor", "Last words"))
                daemon.terminate()
                daemon.wait(5)
                deadline = time.monotonic() + 10
                with pytest.raises(SessionEnded):
                    while time.monotonic() < deadline:
                        source.active()
                        time.sleep(0.05)
            finally:
                source.stop()


@pytest.fixture
def pointer(desktop: Plasma, tmp_path: Path) -> Iterator[FakePointer]:
    socket = Path(desktop.env["XDG_RUNTIME_DIR"]) / SOCKET
    bindings = fake_input_bindings(_private_dir(tmp_path / "bindings"))
    touching = FakePointer(socket, bindings)
    yield touching
    touching.close()


EDITOR = ("org.example.Editor", "Quarterly report - Editor")
CALCULATOR = ("org.example.Calculator", "Calculator")
IDLE_AFTER_S = 2.0
SETTLE_S = 0.6  # three samples at 0.2 s


def test_the_collector_records_kde_windows_and_idle_through_the_warehouse(
    stack, warehouse_client, desktop: Plasma, pointer: FakePointer, tmp_path: Path
) -> None:
    """The real collector on this KWin: the editor in front, then the calculator, no input until idle, the editor
    again; what reaches the warehouse through the real gateway and worker."""
    config = f"sample_seconds = 0.2\nidle_after_seconds = {IDLE_AFTER_S}\n"
    home, user_id, *_ = enrolled_home(stack.settings, tmp_path / "home", config, device_name="kde-test")
    desktop.gtk_window(*EDITOR)
    desktop.gtk_window(*CALCULATOR)
    # A native Wayland session of KDE's: no X display, so nothing comes through Xwayland.
    env = dict(
        desktop.env,
        WAYLAND_DISPLAY=str(Path(desktop.env["XDG_RUNTIME_DIR"]) / SOCKET),
        XDG_SESSION_TYPE="wayland",
        XDG_CURRENT_DESKTOP="KDE",
    )
    env.pop("DISPLAY", None)
    env.pop("XAUTHORITY", None)
    collector = start_collector(home, env, tmp_path / "collector.log")
    moments: dict[str, float] = {}
    try:
        desktop.focus(EDITOR[1])
        pointer.touch()
        time.sleep(SETTLE_S + 1.0)
        switching = time.time()
        desktop.focus(CALCULATOR[1])
        in_use_until_seen(pointer.touch, warehouse_client, user_id, switching)
        pointer.touch()  # the calculator in front, in use, before the user goes
        moments["last_input_before_idle"] = time.time()
        time.sleep(IDLE_AFTER_S + 2.5)  # no input: idle
        reported = status(home)
        desktop.focus(EDITOR[1])  # not input to KWin: the user is still away
        pointer.touch()
        moments["back"] = time.time()
        time.sleep(SETTLE_S + 1.0)
    finally:
        assert stop_collector(collector) == 0
    assert spool_depth(home) == 0
    intervals = delivered_intervals(warehouse_client, user_id, moments["back"])

    assert reported["sources"] == [
        "session: Wayland (kde)",
        "windows: the Productimon KWin script (session D-Bus)",
        "idle: ext-idle-notify-v1",
    ]
    assert any(line.startswith("key and click counts are not recorded: Wayland") for line in reported["unavailable"])

    active = intervals[~intervals["idle"]]
    assert set(active["app"]) == {EDITOR[0], CALCULATOR[0]}
    assert set(active[active["app"] == EDITOR[0]]["title"]) == {EDITOR[1]}
    assert set(active[active["app"] == CALCULATOR[0]]["title"]) == {CALCULATOR[1]}
    # No key or click is counted on Wayland unless opted in: never a wrong count.
    assert intervals["keystrokes"].sum() == 0 and intervals["clicks"].sum() == 0

    assert (intervals["start"].iloc[1:].to_numpy() == intervals["end"].iloc[:-1].to_numpy()).all()
    runs = [app for i, app in enumerate(intervals["app"]) if i == 0 or app != intervals["app"].iloc[i - 1]]
    assert runs[-3:] == [EDITOR[0], CALCULATOR[0], EDITOR[0]]
    in_use = [(app, idle) for app, idle in zip(intervals["app"], intervals["idle"], strict=True)]
    in_use = [run for i, run in enumerate(in_use) if i == 0 or run != in_use[i - 1]]
    # The editor comes to the front while the user is still away (a focus change is no input to KWin): a sample
    # taken before the input that follows sees it in front and idle, which is what happened.
    went = [(EDITOR[0], False), (CALCULATOR[0], False), (CALCULATOR[0], True)]
    assert in_use[-4:] == [*went, (EDITOR[0], False)] or in_use[-5:] == [*went, (EDITOR[0], True), (EDITOR[0], False)]

    stopped = datetime.fromtimestamp(moments["last_input_before_idle"], UTC)
    idle = intervals[intervals["idle"] & (intervals["start"] >= stopped - timedelta(seconds=1))]
    assert not idle.empty, "no idle interval was recorded after the input stopped"
    # Cut at the last input (KWin's idle timer), not IDLE_AFTER_S later when the threshold passed.
    assert abs((idle.iloc[0]["start"] - stopped).total_seconds()) < 0.5
    # Input again ends it (the focus change just before is no input to KWin).
    back = datetime.fromtimestamp(moments["back"], UTC)
    assert abs((idle.iloc[-1]["end"] - back).total_seconds()) < 0.5
    assert set(intervals[intervals["start"] >= back]["app"]) == {EDITOR[0]}
    away_in_editor = intervals[intervals["idle"] & (intervals["app"] == EDITOR[0])]
    assert (away_in_editor["start"] >= back - timedelta(seconds=1)).all()  # only between the focus and the input
