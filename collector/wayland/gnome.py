"""The active window and idle time on GNOME Shell's Wayland session.

GNOME Shell tells no ordinary program which window is in front, so the collector ships a small extension of its
own (`gnome_extension/`): while enabled it owns io.productimon.Shell on the session bus and answers one method,
ActiveWindow() -> (app id, title) of the focused window, nothing else (docs/collector.md "Wayland").
`GnomeShellWindows` asks it; `MutterIdle` reads the compositor's own idle time (org.gnome.Mutter.IdleMonitor);
`install_gnome_extension` puts the extension in place and enables it, for the next login: GNOME Shell on Wayland
loads a new extension only when it starts.

The app is the shell's application id (the .desktop file's name, e.g. org.gnome.Nautilus, else the window's class);
the title is the window's whole title: the caller applies the privacy rules (collector/privacy.py), not this module.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from collector.sampling import IdleSource, SessionEnded
from collector.wayland.screensaver import FreedesktopScreenSaverIdle
from collector.wayland.session_bus import SessionBus, Unanswered, describe

log = logging.getLogger(__name__)

EXTENSION_UUID = "productimon@productimon.io"
BUS_NAME = "io.productimon.Shell"
OBJECT_PATH = "/io/productimon/Shell"
INTERFACE = "io.productimon.Shell1"
EXTENSION_DIR = Path(__file__).parent / "gnome_extension"

_MUTTER_IDLE = ("org.gnome.Mutter.IdleMonitor", "/org/gnome/Mutter/IdleMonitor/Core", "org.gnome.Mutter.IdleMonitor")
_INSTALL_HINT = "run `productimon-collector install-desktop-support` and log in again"


class GnomeShellWindows:
    """(app id, title) of the focused window, from the Productimon extension inside GNOME Shell.

    The constructor raises RuntimeError, one line saying what to do, when the extension does not answer. After
    that, a call that is not answered (the shell busy or hung past the deadline, the extension disabled, the screen
    locked: the shell disables extensions then) is logged once and gives None, and the next call tries again."""

    def __init__(self, bus: SessionBus | None = None, env: Mapping[str, str] | None = None) -> None:
        self._own_bus = bus is None
        self._bus = bus or SessionBus()
        self._failing = False
        if self._bus.owner(BUS_NAME) is None:
            env = os.environ if env is None else env
            reason = not_running_reason(self._bus.owner("org.gnome.Shell") is not None, extension_installed(env))
            self.close()
            raise RuntimeError(reason)

    def active(self) -> tuple[str, str | None] | None:
        try:
            app_id, title = self._bus.call(BUS_NAME, OBJECT_PATH, INTERFACE, "ActiveWindow")
        except SessionEnded:
            raise
        except Unanswered as exc:
            if not self._failing:
                log.info("GNOME Shell did not say which window is in front (%s); will keep trying", describe(exc))
                self._failing = True
            return None
        self._failing = False
        if not app_id and not title:
            return None
        return app_id or "unknown", title or None

    def close(self) -> None:
        if self._own_bus:
            self._bus.close()


class MutterIdle:
    """Seconds since the last input on any device, from GNOME's compositor: GetIdletime (milliseconds) on its core
    idle monitor, the clock GNOME's own screen blanking uses."""

    def __init__(self, bus: SessionBus | None = None) -> None:
        self._own_bus = bus is None
        self._bus = bus or SessionBus()
        self._failing = False
        try:
            self._ask()
        except Unanswered as exc:
            self.close()
            problem = describe(exc)
            raise RuntimeError(
                f"GNOME's idle monitor (org.gnome.Mutter.IdleMonitor) did not answer: {problem}"
            ) from None

    def _ask(self) -> float:
        (milliseconds,) = self._bus.call(*_MUTTER_IDLE, "GetIdletime")
        return milliseconds / 1000

    def idle_seconds(self) -> float | None:
        try:
            seconds = self._ask()
        except SessionEnded:
            raise
        except Unanswered as exc:
            if not self._failing:
                log.info("GNOME's idle monitor did not answer (%s); will keep trying", describe(exc))
                self._failing = True
            return None
        self._failing = False
        return seconds

    def close(self) -> None:
        if self._own_bus:
            self._bus.close()


def open_gnome_idle(bus: SessionBus | None = None) -> IdleSource:
    """Mutter's idle monitor, else org.freedesktop.ScreenSaver where that gives an idle time; RuntimeError with
    both reasons when neither does."""
    try:
        return MutterIdle(bus)
    except RuntimeError as mutter:
        try:
            return FreedesktopScreenSaverIdle(bus)
        except RuntimeError as saver:
            raise RuntimeError(f"{mutter}; {saver}") from None


def not_running_reason(shell_on_bus: bool, installed: bool) -> str:
    """Why the extension does not answer, in one line that says what to do."""
    if not shell_on_bus:
        return "GNOME Shell is not running on this session bus (org.gnome.Shell has no owner)"
    if not installed:
        return f"the Productimon GNOME Shell extension is not installed: {_INSTALL_HINT}"
    return (
        "the Productimon GNOME Shell extension is not running: log out and in again (GNOME loads a new extension "
        "only at login), and check that Productimon is switched on in the Extensions app"
    )


def xdg_data_home(env: Mapping[str, str]) -> Path:
    """$XDG_DATA_HOME, or ~/.local/share where it is unset or not absolute (the XDG base directory rules)."""
    configured = env.get("XDG_DATA_HOME", "")
    if configured and os.path.isabs(configured):
        return Path(configured)
    return Path(env.get("HOME") or Path.home()) / ".local" / "share"


def extension_installed(env: Mapping[str, str]) -> bool:
    """Whether the extension is in the user's extensions or a system-wide one ($XDG_DATA_DIRS)."""
    system = [Path(d) for d in (env.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share").split(":") if d]
    return any(
        (data / "gnome-shell" / "extensions" / EXTENSION_UUID / "metadata.json").is_file()
        for data in [xdg_data_home(env), *system]
    )


# --- Installing the extension -------------------------------------------------------------------------------------


def shell_major(version_output: str) -> int | None:
    """43 from `gnome-shell --version`'s "GNOME Shell 43.9"; None when the text says no version."""
    found = re.search(r"GNOME Shell (\d+)", version_output)
    return int(found.group(1)) if found else None


def extension_files(major: int) -> tuple[str, str]:
    """The (script, metadata) pair in gnome_extension/ for this shell: 45 and newer load extensions as ES modules."""
    return ("extension.js", "metadata.json") if major < 45 else ("extension45.js", "metadata45.json")


def parse_strv(text: str) -> list[str]:
    """The strings of a GVariant string array as `gsettings get` prints it: "@as []" or "['a', 'b']"."""
    text = text.strip()
    if text.startswith("@as"):
        text = text[3:].strip()
    if not (text.startswith("[") and text.endswith("]")):
        raise ValueError(f"not a string array: {text!r}")
    items: list[str] = []
    body, i = text[1:-1], 0
    while True:
        while i < len(body) and body[i] in " ,":
            i += 1
        if i == len(body):
            return items
        quote = body[i]
        if quote not in "'\"":
            raise ValueError(f"not a string array: {text!r}")
        i += 1
        chars: list[str] = []
        while True:
            if i >= len(body):
                raise ValueError(f"unterminated string in {text!r}")
            char = body[i]
            if char == quote:
                i += 1
                break
            if char == "\\":
                escaped, i = _unescape(body, i + 1)
                chars.append(escaped)
                continue
            chars.append(char)
            i += 1
        items.append("".join(chars))


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "a": "\a"}


def _unescape(body: str, i: int) -> tuple[str, int]:
    char = body[i]
    if char in ("u", "U"):
        width = 4 if char == "u" else 8
        return chr(int(body[i + 1 : i + 1 + width], 16)), i + 1 + width
    return _ESCAPES.get(char, char), i + 1


def format_strv(items: list[str]) -> str:
    """A GVariant string array `gsettings set` reads back as `items`."""
    if not items:
        return "@as []"
    quoted = ("'" + item.replace("\\", "\\\\").replace("'", "\\'") + "'" for item in items)
    return "[" + ", ".join(quoted) + "]"


def with_item(current: str, item: str) -> str | None:
    """The array `current` with `item` added at the end, or None when it is there already."""
    items = parse_strv(current)
    return None if item in items else format_strv([*items, item])


def without_item(current: str, item: str) -> str | None:
    """The array `current` without `item`, or None when it was not there."""
    items = parse_strv(current)
    return format_strv([i for i in items if i != item]) if item in items else None


def install_gnome_extension(data_home: Path, env: Mapping[str, str] | None = None) -> list[str]:
    """Copy the extension for this machine's GNOME Shell into data_home/gnome-shell/extensions/<uuid>/ and enable
    it for the next login. Returns what it did and what the user must do next, one line each."""
    env = dict(os.environ if env is None else env)
    version = _output(["gnome-shell", "--version"], env)
    major = shell_major(version or "")
    if major is None:
        return ["GNOME Shell is not installed here (`gnome-shell --version` gave no version): nothing installed"]
    if major < 43:
        return [f"GNOME Shell {major} is too old for the Productimon extension (it needs 43 or later): not installed"]
    script, metadata = extension_files(major)
    versions = json.loads((EXTENSION_DIR / metadata).read_text())["shell-version"]
    target = data_home / "gnome-shell" / "extensions" / EXTENSION_UUID
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(EXTENSION_DIR / script, target / "extension.js")
    shutil.copyfile(EXTENSION_DIR / metadata, target / "metadata.json")
    lines = [f"installed the Productimon GNOME Shell extension (for GNOME Shell {', '.join(versions)}) in {target}"]
    if str(major) not in versions:
        lines.append(
            f"GNOME Shell {major} is newer than the versions the extension names: the shell will call it outdated "
            "and not load it unless extension version checks are off (org.gnome.shell "
            "disable-extension-version-validation)"
        )
    lines.append(_enable(env))
    if (_output(["gsettings", "get", "org.gnome.shell", "disable-user-extensions"], env) or "").strip() == "true":
        lines.append("user extensions are switched off in this session: switch them on in the Extensions app")
    lines.append("log out and in again: GNOME Shell on Wayland loads a new extension only at login")
    return lines


def _enable(env: dict[str, str]) -> str:
    """Enable the extension: `gnome-extensions enable`, else (missing, or refused by a running shell that has not
    loaded the extension yet, as GNOME 45 and newer do) the org.gnome.shell settings themselves."""
    if _output(["gnome-extensions", "enable", EXTENSION_UUID], env) is not None:
        return "enabled it (gnome-extensions enable)"
    enabled = _output(["gsettings", "get", "org.gnome.shell", "enabled-extensions"], env)
    disabled = _output(["gsettings", "get", "org.gnome.shell", "disabled-extensions"], env)
    if enabled is None or disabled is None:
        return "could not enable it (no gsettings or no org.gnome.shell schema): switch it on in the Extensions app"
    try:
        changes = [
            ("enabled-extensions", with_item(enabled, EXTENSION_UUID)),
            ("disabled-extensions", without_item(disabled, EXTENSION_UUID)),
        ]
    except ValueError as exc:
        return f"could not enable it ({exc}): switch it on in the Extensions app"
    for key, value in changes:
        if value is not None and _output(["gsettings", "set", "org.gnome.shell", key, value], env) is None:
            return f"could not change org.gnome.shell {key}: switch the extension on in the Extensions app"
    return "enabled it (org.gnome.shell enabled-extensions)"


def _output(argv: list[str], env: dict[str, str]) -> str | None:
    """What the command printed, or None when it is missing, failed, or took more than 10 s."""
    if shutil.which(argv[0], path=env.get("PATH")) is None:
        return None
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None
