"""A real wlroots desktop for the collector's Wayland tests and benchmark: sway on its headless backend with the
pixman renderer (no GPU, no input devices), foot windows to focus, and swaymsg to drive it.

sway refuses to run as root, so when the tests run as root (CI) sway and its clients run as `nobody`, in a
runtime directory of nobody's own; root can still reach their sockets, so the collector under test runs as the
test's own user with WAYLAND_DISPLAY naming the socket by its path.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from testbed.desktop import stop_children

NEEDED = ("sway", "swaymsg", "foot", "setpriv")


def missing_programs() -> list[str]:
    return [program for program in NEEDED if shutil.which(program) is None]


@dataclass
class SwayDesktop:
    runtime: Path
    env: dict[str, str]  # for a client of the compositor (the collector under test)
    _as_user: list[str]
    _children: list[subprocess.Popen] = field(default_factory=list)

    def swaymsg(self, *args: str) -> str:
        return subprocess.run(
            ["swaymsg", *args], env=self.env, check=True, capture_output=True, text=True, timeout=10
        ).stdout

    def windows(self) -> list[dict]:
        """Every window of the tree: app_id, name (title), focused."""
        found: list[dict] = []

        def walk(node: dict) -> None:
            if node.get("type") in ("con", "floating_con") and node.get("app_id") is not None:
                found.append({"app_id": node["app_id"], "title": node.get("name"), "focused": node.get("focused")})
            for child in node.get("nodes", []) + node.get("floating_nodes", []):
                walk(child)

        walk(json.loads(self.swaymsg("-t", "get_tree")))
        return found

    def open_foot(self, app_id: str, title: str) -> None:
        """A foot terminal with this app id and title that runs nothing but a sleeping shell."""
        argv = [*self._as_user, "foot", "--app-id", app_id, "--title", title, "sh", "-c", "stty -echo; sleep 3600"]
        child_env = {k: v for k, v in self.env.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
        child = subprocess.Popen(argv, env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._children.append(child)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if any(w["app_id"] == app_id for w in self.windows()):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the foot window {app_id!r} did not appear")

    def focus(self, app_id: str) -> None:
        self.swaymsg(f'[app_id="{app_id}"]', "focus")

    def touch(self) -> None:
        """Input, as far as the compositor's idle timers know: the seat's pointer moves."""
        self.swaymsg("seat", "seat0", "cursor", "move", "1", "1")

    def close_windows(self) -> None:
        stop_children(self._children)
        self._children.clear()


@contextmanager
def sway_desktop(width: int = 1280, height: int = 800) -> Iterator[SwayDesktop]:
    runtime = Path(tempfile.mkdtemp(prefix="productimon-sway-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(runtime, nobody.pw_uid, nobody.pw_gid)
        as_user = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", "--"]
    runtime.chmod(0o700)
    config = runtime / "sway.conf"
    config.write_text(f"output HEADLESS-1 resolution {width}x{height}\nfocus_follows_mouse no\n")
    config.chmod(0o644)
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(runtime),
        "XDG_RUNTIME_DIR": str(runtime),
        "LANG": "C.UTF-8",
    }
    sway_env = {**base, "WLR_BACKENDS": "headless", "WLR_RENDERER": "pixman", "WLR_LIBINPUT_NO_DEVICES": "1"}
    log = open(runtime / "sway.log", "wb")  # noqa: SIM115  (closed below)
    sway = subprocess.Popen([*as_user, "sway", "-c", str(config)], env=sway_env, stdout=log, stderr=log)
    desktop: SwayDesktop | None = None
    try:
        deadline = time.monotonic() + 30
        socket = ipc = None
        while time.monotonic() < deadline and (socket is None or ipc is None):
            if sway.poll() is not None:
                raise RuntimeError(f"sway exited with {sway.returncode}: {(runtime / 'sway.log').read_text()[-500:]}")
            sockets = sorted(p for p in runtime.glob("wayland-*") if not p.name.endswith(".lock"))
            ipcs = sorted(runtime.glob("sway-ipc.*.sock"))
            socket, ipc = (sockets[0] if sockets else None), (ipcs[0] if ipcs else None)
            time.sleep(0.05)
        if socket is None or ipc is None:
            raise RuntimeError("sway did not open its sockets within 30 s")
        env = {
            **base,
            "WAYLAND_DISPLAY": str(socket),
            "SWAYSOCK": str(ipc),
            "XDG_SESSION_TYPE": "wayland",
            "XDG_CURRENT_DESKTOP": "sway",
        }
        desktop = SwayDesktop(runtime, env, as_user)
        # Ready once it answers on its IPC socket.
        while time.monotonic() < deadline:
            with suppress(subprocess.CalledProcessError):
                desktop.swaymsg("-t", "get_version")
                break
            time.sleep(0.05)
        yield desktop
    finally:
        if desktop is not None:
            desktop.close_windows()
        stop_children([sway])
        log.close()
        shutil.rmtree(runtime, ignore_errors=True)
