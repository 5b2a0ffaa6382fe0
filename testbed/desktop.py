"""A real X11 desktop for the collector's tests and benchmark: Xvfb with the openbox window manager, xterm and xcalc
windows to focus, and xdotool to type and click (docs/design.md "Real components and how they start": pywinctl needs
EWMH from a window manager)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

NEEDED = ("Xvfb", "openbox", "xdotool", "xrandr", "xprop", "xterm", "xcalc")


def missing_programs() -> list[str]:
    return [program for program in NEEDED if shutil.which(program) is None]


@dataclass
class Desktop:
    display: str
    env: dict[str, str]
    _children: list[subprocess.Popen] = field(default_factory=list)

    def run(self, *argv: str, timeout: float = 10) -> str:
        return subprocess.run(argv, env=self.env, check=True, capture_output=True, text=True, timeout=timeout).stdout

    def open_window(self, argv: list[str], title: str) -> str:
        """Start a program and wait for its window titled `title`; returns the X window id."""
        child = subprocess.Popen(argv, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._children.append(child)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            found = subprocess.run(
                ["xdotool", "search", "--onlyvisible", "--name", f"^{title}$"],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=15,
            )
            if found.returncode == 0 and found.stdout.split():
                return found.stdout.split()[0]
            time.sleep(0.1)
        raise RuntimeError(f"the window {title!r} of {argv[0]} did not appear")

    def open_xterm(self, title: str) -> str:
        """An xterm running a shell that swallows what is typed."""
        return self.open_window(["xterm", "-T", title, "-e", "sh", "-c", "stty -echo; cat > /dev/null"], title)

    def open_xcalc(self) -> str:
        """A second application; letters typed into it do nothing, a click at its top left hits the display."""
        return self.open_window(["xcalc"], "Calculator")

    def focus(self, window: str) -> None:
        self.run("xdotool", "windowactivate", "--sync", window)

    def type(self, text: str) -> None:
        self.run("xdotool", "type", "--delay", "20", text)

    def click(self, window: str, times: int) -> None:
        """Left clicks inside the window (a click elsewhere could reach the window manager's menus)."""
        self.run("xdotool", "mousemove", "--window", window, "20", "20")
        self.run("xdotool", "click", "--repeat", str(times), "--delay", "50", "1")

    def active_window_title(self) -> str:
        return self.run("xdotool", "getactivewindow", "getwindowname").strip()

    def close_windows(self) -> None:
        stop_children(self._children)
        self._children.clear()


@contextmanager
def virtual_desktop(width: int = 1280, height: int = 800) -> Iterator[Desktop]:
    """Start Xvfb on a display it picks itself (-displayfd: no clash with another run) and openbox on it.

    Start-up is serialized across processes (two xdist workers starting desktops at once once left openbox dead with
    no output), and a failed start is tried again on a fresh display before the error is raised."""
    problem = ""
    for _attempt in range(3):
        with _startup_lock():
            children, env, problem = _start(width, height)
        if children:
            break
    else:
        raise RuntimeError(problem)
    desktop = Desktop(env["DISPLAY"], env)
    try:
        yield desktop
    finally:
        desktop.close_windows()
        stop_children(children)


@contextmanager
def _startup_lock() -> Iterator[None]:
    with open(os.path.join(tempfile.gettempdir(), "productimon-desktop.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _start(width: int, height: int) -> tuple[list[subprocess.Popen], dict[str, str], str]:
    """Xvfb and a ready openbox, or no children and the reason they are not running."""
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    children: list[subprocess.Popen] = [xvfb]
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    if not number:
        stop_children(children)
        return [], {}, "Xvfb did not start"
    env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "XDG_SESSION_TYPE")}
    env["DISPLAY"] = f":{number}"
    openbox = subprocess.Popen(
        ["openbox", "--sm-disable"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    children.append(openbox)
    deadline = time.monotonic() + 30
    # openbox is ready once it has claimed the EWMH supporting-window property on the root window.
    while "_NET_SUPPORTING_WM_CHECK(WINDOW)" not in _root_properties(env):
        if openbox.poll() is not None or time.monotonic() > deadline:
            openbox.kill()
            output = openbox.communicate()[1].strip().replace("\n", " ")
            stop_children(children)
            return [], env, f"openbox did not start on display {env['DISPLAY']}: {output or 'no output'}"
        time.sleep(0.05)
    return children, env, ""


def stop_children(children: list[subprocess.Popen]) -> None:
    """Ask each child to end (the last started first), and kill any that has not within 5 s."""
    for child in reversed(children):
        if child.poll() is None:
            child.terminate()
    for child in reversed(children):
        try:
            child.wait(5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _root_properties(env: dict[str, str]) -> str:
    try:
        return subprocess.run(["xprop", "-root"], env=env, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
