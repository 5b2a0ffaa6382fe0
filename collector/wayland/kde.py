"""The window in front on KDE Plasma (KWin, Wayland) through a KWin script shipped with the collector
(`kwin_script/main.js`, docs/collector.md "Wayland").

KWin lets no ordinary Wayland client see other programs' windows, but it runs scripts, and a script may call D-Bus.
So the collector owns `io.productimon.Collector` on the session bus, loads its script into KWin through KWin's
scripting API (org.kde.KWin /Scripting), and the script calls the collector's ActiveWindow method with the active
window's desktop file name, resource class and caption: at load, and whenever one of them changes. Only calls from
KWin's own bus connection are accepted. Title rules and privacy choices are the caller's, not applied here.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path

from jeepney import (
    DBusAddress,
    HeaderFields,
    MatchRule,
    Message,
    MessageFlag,
    MessageType,
    message_bus,
    new_error,
    new_method_call,
    new_method_return,
)
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from jeepney.wrappers import DBusErrorResponse, unwrap_msg

from collector.sampling import SessionEnded
from collector.wayland.readiness import Readiness

log = logging.getLogger(__name__)

# What the script calls; the same names are written in kwin_script/main.js. Fixed rather than one per process: one
# collector per session can own the name, and a script a crashed collector left in KWin is replaced by name.
SERVICE = "io.productimon.Collector"
PATH = "/io/productimon/Collector"
INTERFACE = "io.productimon.Collector.KWin"
METHOD = "ActiveWindow"
SIGNATURE = "bsss"  # present, desktop file name, resource class, caption
PLUGIN = "productimon-collector"  # the script's name in KWin
SCRIPT = Path(__file__).with_name("kwin_script") / "main.js"

KWIN = "org.kde.KWin"
_SCRIPTING = DBusAddress("/Scripting", bus_name=KWIN, interface="org.kde.kwin.Scripting")
_CALL_TIMEOUT_S = 5.0
_NOT_YET_THERE = ("org.freedesktop.DBus.Error.UnknownObject", "org.freedesktop.DBus.Error.UnknownMethod")
# KWin tells windows with equal captions apart by appending " <2>", " <3>"... (and U+200E to X11 windows' captions).
_KWIN_SUFFIX = re.compile(r" <\d+>\u200e?$")


def app_id(desktop_file: str, resource_class: str) -> str:
    """Pure: a KWin window's stable application id: its desktop file name (a Wayland window's app id; without a
    path or ".desktop"), else its resource class (an X11 window's WM_CLASS), else "unknown"."""
    name = desktop_file.strip().rsplit("/", 1)[-1]
    if name.endswith(".desktop"):
        name = name[: -len(".desktop")]
    return name or resource_class.strip() or "unknown"


def window_title(caption: str) -> str | None:
    """Pure: the title the window set: KWin's caption without the " <2>" KWin appends to tell equal ones apart."""
    return _KWIN_SUFFIX.sub("", caption) or None


def reported_window(
    present: bool, desktop_file: str, resource_class: str, caption: str
) -> tuple[str, str | None] | None:
    """Pure: (app id, title) of what one call of the script says is in front, or None for no window."""
    if not present:
        return None
    return app_id(desktop_file, resource_class), window_title(caption)


class KWinWindows:
    """A WindowSource: (app id, title) of KWin's active window, or None when none is.

    Two connections to the session bus: one owns SERVICE and is read only by a daemon thread, which answers the
    script's calls and follows who owns org.kde.KWin; the other (under `_control`) loads and unloads the script.
    A KWin that comes back under a new bus name (restarted) gets the script again."""

    def __init__(self) -> None:
        self._state = threading.Lock()
        self._front: tuple[str, str | None] | None = None
        self._kwin: str | None = None  # KWin's unique name on the bus: the only caller accepted
        self._control = threading.Lock()
        self._serve_bus: DBusConnection | None = None
        self._control_bus: DBusConnection | None = None
        self._thread: threading.Thread | None = None
        self._readiness: Readiness | None = None
        self._owns_name = False
        self._stopping = False
        self._lost = False  # the bus closed the connection: the session ended
        step = "connecting to the session D-Bus"
        try:
            if not SCRIPT.is_file():
                raise RuntimeError(f"the collector's KWin script is missing from this installation ({SCRIPT})")
            self._serve_bus = open_dbus_connection(bus="SESSION")
            self._control_bus = open_dbus_connection(bus="SESSION")
            step = f"taking the name {SERVICE} on the session D-Bus"
            (result,) = _call(self._serve_bus, message_bus.RequestName(SERVICE, 4))  # 4: do not queue
            if result != 1:  # 1: primary owner
                raise RuntimeError(f"another Productimon collector watches this session (it owns {SERVICE})")
            self._owns_name = True
            step = "finding KWin on the session D-Bus"
            rule = MatchRule(
                type="signal", sender="org.freedesktop.DBus", interface="org.freedesktop.DBus",
                member="NameOwnerChanged", path="/org/freedesktop/DBus",
            )  # fmt: skip
            rule.add_arg_condition(0, KWIN)
            _call(self._serve_bus, message_bus.AddMatch(rule))  # the last call on this connection: the thread's now
            self._kwin = self._owner_of_kwin()
            if self._kwin is None:
                raise RuntimeError(f"KWin is not on the session D-Bus (nobody owns {KWIN}): not a KDE Plasma session")
            self._readiness = Readiness([self._serve_bus.sock.fileno()])
            self._thread = threading.Thread(target=self._serve, name="kwin-script", daemon=True)
            self._thread.start()
            step = "loading the collector's script into KWin"
            self._load(attempts=20)  # a KWin just started has its name before its scripting object
        except Exception as exc:
            self.stop()
            if isinstance(exc, RuntimeError):
                raise
            if isinstance(exc, KeyError) and not self._owns_name:  # jeepney's lookup of the bus address
                raise RuntimeError(f"{step} failed: ${exc.args[0]} is not set") from None
            raise RuntimeError(f"{step} failed: {_one_line(exc)}") from None

    def active(self) -> tuple[str, str | None] | None:
        if self._lost:
            raise SessionEnded("the session D-Bus closed the collector's connection: the desktop session ended")
        with self._state:
            return self._front

    def stop(self) -> None:
        """Unload the script from KWin, then give up the bus name and close both connections."""
        if self._stopping:
            return
        self._stopping = True
        if self._owns_name and self._control_bus is not None:
            with self._control:
                try:
                    _call(self._control_bus, new_method_call(_SCRIPTING, "unloadScript", "s", (PLUGIN,)))
                except Exception as exc:  # KWin may be gone already
                    log.debug("unloading the KWin script failed: %s", _one_line(exc))
        if self._thread is not None and self._readiness is not None:
            self._readiness.stop()
            self._thread.join(5)
        if self._owns_name and self._serve_bus is not None and not self._lost:
            try:
                _call(self._serve_bus, message_bus.ReleaseName(SERVICE))
            except Exception as exc:  # closing the connection gives the name up as well
                log.debug("releasing %s failed: %s", SERVICE, _one_line(exc))
        for bus in (self._serve_bus, self._control_bus):
            if bus is not None:
                bus.close()
        if self._readiness is not None:
            self._readiness.close()

    def _owner_of_kwin(self) -> str | None:
        assert self._control_bus is not None
        with self._control:
            try:
                (owner,) = _call(self._control_bus, message_bus.GetNameOwner(KWIN))
            except DBusErrorResponse as exc:
                if exc.name == "org.freedesktop.DBus.Error.NameHasNoOwner":
                    return None
                raise
        return owner

    def _load(self, attempts: int = 1) -> None:
        """Put the script into KWin and run it, replacing one that a collector which did not stop left behind.

        A KWin that has just taken its bus name may not have its scripting object yet: `attempts` waits for it."""
        assert self._control_bus is not None
        bus = self._control_bus
        for attempt in range(attempts):
            try:
                with self._control:
                    if self._stopping:  # stop() unloads under this lock: nothing may be loaded after it
                        return
                    (loaded,) = _call(bus, new_method_call(_SCRIPTING, "isScriptLoaded", "s", (PLUGIN,)))
                    if loaded:
                        _call(bus, new_method_call(_SCRIPTING, "unloadScript", "s", (PLUGIN,)))
                    body = (str(SCRIPT), PLUGIN)
                    (script_id,) = _call(bus, new_method_call(_SCRIPTING, "loadScript", "ss", body))
                    if script_id < 0:
                        raise RuntimeError(f"KWin refused the collector's script {SCRIPT} (loadScript: {script_id})")
                    _run_script(bus, script_id)
                return
            except DBusErrorResponse as exc:
                if exc.name not in _NOT_YET_THERE or attempt + 1 >= attempts or self._stopping:
                    raise
                log.debug("KWin's scripting is not up yet (%s): trying again", _one_line(exc))
            time.sleep(0.25)

    def _serve(self) -> None:
        bus = self._serve_bus
        assert bus is not None and self._readiness is not None
        try:
            while True:
                try:
                    message = bus.receive(timeout=0)
                except TimeoutError:  # nothing buffered: wait for the socket, or for stop()
                    if not self._readiness.wait():
                        return
                    continue
                reply = self._handle(message)
                if reply is not None and not message.header.flags & MessageFlag.no_reply_expected:
                    bus.send(reply)
        except Exception as exc:  # the bus daemon went away
            if not self._stopping:
                log.info("the session D-Bus connection closed: %s", _one_line(exc))
                self._lost = True

    def _handle(self, message: Message) -> Message | None:
        """The reply to a method call, None for anything else; follows KWin's bus name from the bus's signals."""
        header = message.header
        fields = header.fields
        if header.message_type == MessageType.signal:
            # Only the bus daemon may say who owns a name (anyone may send a signal straight to this connection).
            from_bus = fields.get(HeaderFields.sender) == "org.freedesktop.DBus"
            if from_bus and fields.get(HeaderFields.member) == "NameOwnerChanged" and message.body[0] == KWIN:
                self._kwin_changed(message.body[2] or None)
            return None
        if header.message_type != MessageType.method_call:
            return None
        called = (
            fields.get(HeaderFields.path),
            fields.get(HeaderFields.interface, INTERFACE),
            fields.get(HeaderFields.member),
        )
        if called != (PATH, INTERFACE, METHOD):
            return _refusal(message, "UnknownMethod", f"{SERVICE} serves only {INTERFACE}.{METHOD} at {PATH}")
        with self._state:
            from_kwin = self._kwin is not None and fields.get(HeaderFields.sender) == self._kwin
        if not from_kwin:
            return _refusal(message, "AccessDenied", "only KWin may report the active window")
        if fields.get(HeaderFields.signature) != SIGNATURE:
            return _refusal(message, "InvalidArgs", f"{METHOD} takes ({SIGNATURE})")
        window = reported_window(*message.body)
        with self._state:
            self._front = window
        return new_method_return(message)

    def _kwin_changed(self, owner: str | None) -> None:
        with self._state:
            self._kwin = owner
            self._front = None
        if owner is None:
            log.info("KWin left the session D-Bus: no window is in front until it is back")
            return
        log.info("KWin is back on the session D-Bus: loading the collector's script into it again")
        try:
            self._load(attempts=20)
        except Exception as exc:
            if not self._stopping:
                log.warning("KWin did not take the collector's script again: %s", _one_line(exc))


def _run_script(bus: DBusConnection, script_id: int) -> None:
    """Start a loaded script: KWin 6 serves it at /Scripting/Script<id>, KWin 5 at /<id>."""
    for path in (f"/Scripting/Script{script_id}", f"/{script_id}"):
        script = DBusAddress(path, bus_name=KWIN, interface="org.kde.kwin.Script")
        try:
            _call(bus, new_method_call(script, "run"))
            return
        except DBusErrorResponse as exc:
            if exc.name != "org.freedesktop.DBus.Error.UnknownObject":
                raise
    raise RuntimeError(f"KWin loaded the collector's script but offers no object to run it (script {script_id})")


def _refusal(call: Message, error: str, text: str) -> Message:
    return new_error(call, f"org.freedesktop.DBus.Error.{error}", "s", (text,))


def _call(bus: DBusConnection, message: Message) -> tuple:
    """The body of the reply; DBusErrorResponse for an error reply, TimeoutError when none comes."""
    return unwrap_msg(bus.send_and_get_reply(message, timeout=_CALL_TIMEOUT_S))


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, DBusErrorResponse):
        detail = exc.data[0] if exc.data and isinstance(exc.data[0], str) else ""
        text = f"{exc.name}: {detail}" if detail else str(exc.name)
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())
