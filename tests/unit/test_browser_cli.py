"""`productimon-browser package` and `install-host`: what a user runs to install the extension and its host."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

from collector.browser_cli import GECKO_ID, chromium_extension_id, main

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "collector.browser_cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HOME": str(home), "PRODUCTIMON_COLLECTOR_HOME": str(home / "collector")},
        timeout=60,
    )


def manifest_of(archive: Path) -> dict:
    with zipfile.ZipFile(archive) as z:
        return json.loads(z.read("manifest.json"))


def test_one_command_packages_the_extension_for_chromium_and_firefox(tmp_path):
    done = cli("package", "--out", str(tmp_path / "dist"), home=tmp_path)
    assert done.returncode == 0, done.stderr
    chromium, firefox = tmp_path / "dist" / "productimon-chromium.zip", tmp_path / "dist" / "productimon-firefox.xpi"
    for archive in (chromium, firefox):
        with zipfile.ZipFile(archive) as z:
            assert sorted(z.namelist()) == ["background.js", "manifest.json"]
    chromium_manifest, firefox_manifest = manifest_of(chromium), manifest_of(firefox)
    assert chromium_manifest["manifest_version"] == firefox_manifest["manifest_version"] == 3
    assert chromium_manifest["background"] == {"service_worker": "background.js"}
    assert "key" in chromium_manifest
    assert firefox_manifest["background"] == {"scripts": ["background.js"]}
    assert firefox_manifest["browser_specific_settings"]["gecko"]["id"] == GECKO_ID
    assert "key" not in firefox_manifest
    for manifest in (chromium_manifest, firefox_manifest):
        assert manifest["incognito"] == "not_allowed"
        assert sorted(manifest["permissions"]) == ["alarms", "nativeMessaging", "tabs"]
        assert "host_permissions" not in manifest and "content_scripts" not in manifest
    assert chromium_extension_id() in done.stdout


def test_packaging_is_reproducible(tmp_path):
    assert main(["package", "--out", str(tmp_path / "a")]) == 0
    assert main(["package", "--out", str(tmp_path / "b")]) == 0
    for name in ("productimon-chromium.zip", "productimon-firefox.xpi"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_the_pinned_chromium_id_is_the_one_chromium_derives_from_the_key():
    # Chromium: the first 128 bits of SHA-256 of the public key, hex digits written a-p.
    assert chromium_extension_id() == "nejjgbanedekhnaccbfhfadjcblnhbkm"


def test_install_host_for_chromium_lets_only_our_extension_start_the_host(tmp_path):
    done = cli("install-host", "--browser", "chromium", "--user-data-dir", str(tmp_path / "profile"), home=tmp_path)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "profile" / "NativeMessagingHosts" / "com.productimon.browser.json").read_text())
    assert manifest["name"] == "com.productimon.browser" and manifest["type"] == "stdio"
    assert manifest["allowed_origins"] == ["chrome-extension://nejjgbanedekhnaccbfhfadjcblnhbkm/"]
    launcher = Path(manifest["path"])
    assert launcher.is_absolute() and launcher.is_relative_to(tmp_path / "collector")
    assert stat.S_IMODE(launcher.stat().st_mode) == 0o700
    text = launcher.read_text()
    assert text.startswith("#!/bin/sh\n") and sys.executable in text and "--browser chromium" in text
    assert str(tmp_path / "collector") in text  # the host reports to this collector home, whatever its env


def test_install_host_for_firefox_names_the_gecko_id_in_the_users_mozilla_directory(tmp_path):
    done = cli("install-host", "--browser", "firefox", "--extension-id", "other@example.org", home=tmp_path)
    assert done.returncode == 0, done.stderr
    manifest = json.loads(
        (tmp_path / ".mozilla" / "native-messaging-hosts" / "com.productimon.browser.json").read_text()
    )
    assert manifest["allowed_extensions"] == [GECKO_ID, "other@example.org"]
    assert "allowed_origins" not in manifest


def test_install_host_for_chrome_goes_to_chromes_own_directory(tmp_path):
    assert cli("install-host", "--browser", "chrome", home=tmp_path).returncode == 0
    assert (tmp_path / ".config" / "google-chrome" / "NativeMessagingHosts" / "com.productimon.browser.json").exists()


def test_mistakes_are_one_readable_line(tmp_path):
    done = cli("install-host", "--browser", "firefox", "--user-data-dir", str(tmp_path / "p"), home=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "--user-data-dir is for Chromium-based browsers" in done.stderr
    assert not (tmp_path / "collector").exists()  # nothing written before the mistake was found
    (tmp_path / "readonly").mkdir(mode=0o500)
    if os.geteuid() != 0:  # root writes anywhere
        done = cli(
            "install-host", "--browser", "chromium", "--user-data-dir", str(tmp_path / "readonly"), home=tmp_path
        )
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "cannot write" in done.stderr
