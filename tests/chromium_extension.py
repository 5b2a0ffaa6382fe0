"""Debian's chromium with the Productimon extension set up as a user does it: `productimon-browser package`, the
chromium zip loaded unpacked, the native host installed for a collector home into the browser's own profile
(docs/design.md "Real components and how they start": the full chromium loads unpacked extensions,
chromium-headless-shell does not)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from collector.config import CollectorHome

REPO = Path(__file__).resolve().parent.parent


def browser_cli(*args: str, env: dict[str, str] | None = None) -> str:
    """Run `productimon-browser` to completion; returns its output, fails the test with its stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "collector.browser_cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def unpacked_extension(dist: Path, into: Path) -> Path:
    """The packaged chromium extension (`productimon-browser package --out dist`) unpacked into `into`."""
    with zipfile.ZipFile(dist / "productimon-chromium.zip") as archive:
        archive.extractall(into)
    return into


def install_host(profile: Path, collector_home: CollectorHome) -> None:
    """The native host manifest in the chromium profile, its launcher reporting to this collector home."""
    browser_cli(
        "install-host", "--browser", "chromium", "--user-data-dir", str(profile), "--home", str(collector_home.root)
    )


def launch_chromium(playwright, profile: Path, extension: Path, env: dict[str, str]):
    """Headed chromium on the display in `env`, the unpacked extension its only extension; a BrowserContext."""
    return playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path="/usr/bin/chromium",
        headless=False,
        env=env,
        args=[f"--load-extension={extension}", f"--disable-extensions-except={extension}"],
    )


@contextmanager
def chromium_with_extension(tmp: Path, collector_home: CollectorHome, env: dict[str, str]) -> Iterator:
    """Package, unpack and load the extension, install its host for `collector_home`, and run chromium; yields the
    BrowserContext and closes the browser after."""
    from playwright.sync_api import sync_playwright

    browser_cli("package", "--out", str(tmp / "dist"))
    extension = unpacked_extension(tmp / "dist", tmp / "extension")
    install_host(tmp / "profile", collector_home)
    with sync_playwright() as playwright:
        context = launch_chromium(playwright, tmp / "profile", extension, env)
        try:
            yield context
        finally:
            context.close()
