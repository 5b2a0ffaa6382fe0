"""A Wayland desktop the collector has no source for (weston, headless: it offers neither wlroots' foreign-toplevel
protocol nor an idle protocol) gets one readable line per missing part, naming what is missing and which desktops
are supported, and the collector records nothing it cannot see (docs/collector.md "Wayland")."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from collector.sampling import NO_WAYLAND_COUNTS, NoIdle, NoWindows, open_sources
from testbed.desktop import stop_children

pytestmark = pytest.mark.e2e


@pytest.fixture
def weston():
    assert shutil.which("weston"), "the test needs weston (a Debian package in infra/apt-packages.txt)"
    runtime = Path(tempfile.mkdtemp(prefix="productimon-weston-"))
    runtime.chmod(0o700)
    env = {"PATH": os.environ.get("PATH", ""), "XDG_RUNTIME_DIR": str(runtime), "HOME": str(runtime)}
    argv = ["weston", "--backend=headless-backend.so", "--socket=wayland-test", "--shell=desktop-shell.so"]
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        socket = runtime / "wayland-test"
        deadline = time.monotonic() + 20
        while not socket.exists():
            assert child.poll() is None, f"weston exited with {child.returncode}"
            assert time.monotonic() < deadline, "weston did not open its socket"
            time.sleep(0.05)
        yield {"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": str(socket), "XDG_CURRENT_DESKTOP": "weston"}
    finally:
        stop_children([child])
        shutil.rmtree(runtime, ignore_errors=True)


def test_each_missing_part_is_one_line_naming_it_and_the_supported_desktops(weston):
    sources = open_sources(weston, platform="linux")
    try:
        assert sources.used == ["session: Wayland (wlroots)"]
        assert isinstance(sources.windows, NoWindows) and isinstance(sources.idle, NoIdle)
        windows, idle, counts = sources.unavailable
        assert windows.startswith("active window tracking is unavailable: the compositor does not offer ")
        assert "zwlr_foreign_toplevel_manager_v1" in windows
        assert "GNOME Shell after `productimon-collector install-desktop-support`" in windows
        assert idle.startswith("idle time is unavailable: ")
        assert counts == NO_WAYLAND_COUNTS
        assert all("\n" not in line for line in sources.unavailable)
        # Nothing it cannot see: no window, and never idle for want of knowing.
        assert sources.windows.active() is None
        assert sources.idle_seconds() == 0.0
    finally:
        sources.stop()
