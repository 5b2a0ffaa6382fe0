"""`productimon-browser`: package the browser extension, install its native messaging host, and be that host.

productimon-browser package [--out DIR]
productimon-browser install-host --browser chromium|chrome|edge|brave|firefox [--user-data-dir DIR]
productimon-browser host --browser NAME     (what the browser starts; not for people)
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shlex
import sys
import zipfile
from pathlib import Path

from collector.config import CollectorHome
from collector.native_host import HOST_NAME, NativeHost
from plumbing.files import private_umask

EXTENSION_DIR = Path(__file__).resolve().parent / "browser_extension"
GECKO_ID = "browser@productimon.org"
# Manifest V3 with background scripts and native messaging: Firefox 128 ESR and later.
FIREFOX_MIN_VERSION = "128.0"
BROWSERS = ("chromium", "chrome", "edge", "brave", "firefox")

# Where each browser looks for a user's native messaging host manifests.
_LINUX_DIRS = {
    "chromium": ".config/chromium/NativeMessagingHosts",
    "chrome": ".config/google-chrome/NativeMessagingHosts",
    "edge": ".config/microsoft-edge/NativeMessagingHosts",
    "brave": ".config/BraveSoftware/Brave-Browser/NativeMessagingHosts",
    "firefox": ".mozilla/native-messaging-hosts",
}
_MACOS_DIRS = {
    "chromium": "Library/Application Support/Chromium/NativeMessagingHosts",
    "chrome": "Library/Application Support/Google/Chrome/NativeMessagingHosts",
    "edge": "Library/Application Support/Microsoft Edge/NativeMessagingHosts",
    "brave": "Library/Application Support/BraveSoftware/Brave-Browser/NativeMessagingHosts",
    "firefox": "Library/Application Support/Mozilla/NativeMessagingHosts",
}
_WINDOWS_KEYS = {
    "chromium": r"HKCU\Software\Chromium\NativeMessagingHosts",
    "chrome": r"HKCU\Software\Google\Chrome\NativeMessagingHosts",
    "edge": r"HKCU\Software\Microsoft\Edge\NativeMessagingHosts",
    "brave": r"HKCU\Software\Google\Chrome\NativeMessagingHosts",  # Brave reads Chrome's key
    "firefox": r"HKCU\Software\Mozilla\NativeMessagingHosts",
}


class BrowserCliError(Exception):
    """A problem the user can fix; the message is the one line they see."""


def source_manifest() -> dict:
    return json.loads((EXTENSION_DIR / "manifest.json").read_text())


def chromium_extension_id(manifest: dict | None = None) -> str:
    """The id Chromium gives the extension: derived from the public key pinned in the manifest's `key`, so the
    unpacked extension has the same id on every machine and the host manifest can name it."""
    key = base64.b64decode((manifest or source_manifest())["key"])
    return "".join(chr(ord("a") + int(c, 16)) for c in hashlib.sha256(key).hexdigest()[:32])


def firefox_manifest(manifest: dict) -> dict:
    """Firefox's differences from the Chromium manifest: an event page instead of a service worker, the gecko id
    its host manifest names instead of the Chromium `key`."""
    firefox = {k: v for k, v in manifest.items() if k != "key"}
    firefox["background"] = {"scripts": [manifest["background"]["service_worker"]]}
    firefox["browser_specific_settings"] = {"gecko": {"id": GECKO_ID, "strict_min_version": FIREFOX_MIN_VERSION}}
    return firefox


def package(out: Path) -> list[Path]:
    """productimon-chromium.zip and productimon-firefox.xpi from the one source tree, byte-for-byte reproducible."""
    manifest = source_manifest()
    files = sorted(p for p in EXTENSION_DIR.rglob("*") if p.is_file() and p.name != "manifest.json")
    out.mkdir(parents=True, exist_ok=True)
    built = []
    for name, browser_manifest in (
        ("productimon-chromium.zip", manifest),
        ("productimon-firefox.xpi", firefox_manifest(manifest)),
    ):
        target = out / name
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            _add(archive, "manifest.json", json.dumps(browser_manifest, indent=2).encode() + b"\n")
            for path in files:
                _add(archive, path.relative_to(EXTENSION_DIR).as_posix(), path.read_bytes())
        built.append(target)
    return built


def _add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def host_manifest(browser: str, launcher: Path, extra_ids: list[str]) -> dict:
    manifest = {
        "name": HOST_NAME,
        "description": "Productimon: hands the active tab's URL to the local collector",
        "path": str(launcher),
        "type": "stdio",
    }
    if browser == "firefox":
        manifest["allowed_extensions"] = [GECKO_ID, *extra_ids]
    else:
        manifest["allowed_origins"] = [f"chrome-extension://{i}/" for i in (chromium_extension_id(), *extra_ids)]
    return manifest


def manifest_dir(browser: str, user_data_dir: Path | None) -> Path:
    if user_data_dir is not None:
        if browser == "firefox":
            raise BrowserCliError("--user-data-dir is for Chromium-based browsers; Firefox reads one place per user")
        return user_data_dir / "NativeMessagingHosts"
    if sys.platform == "darwin":
        return Path.home() / _MACOS_DIRS[browser]
    return Path.home() / _LINUX_DIRS[browser]


def install_host(browser: str, home: CollectorHome, user_data_dir: Path | None, extra_ids: list[str]) -> list[str]:
    """Write the launcher the browser runs and the host manifest that lets only our extension run it."""
    directory = None if sys.platform == "win32" else manifest_dir(browser, user_data_dir)
    home.create()
    launcher_dir = home.root / "browser-host"
    launcher_dir.mkdir(mode=0o700, exist_ok=True)
    command = [sys.executable, "-m", "collector.browser_cli", "host", "--browser", browser, "--home", str(home.root)]
    if sys.platform == "win32":
        launcher = launcher_dir / f"productimon-browser-host-{browser}.bat"
        launcher.write_text("@echo off\r\n" + " ".join(f'"{part}"' for part in command) + "\r\n")
        target = launcher_dir / f"{HOST_NAME}.{browser}.json"
        target.write_text(json.dumps(host_manifest(browser, launcher, extra_ids), indent=2) + "\n")
        key = rf"{_WINDOWS_KEYS[browser]}\{HOST_NAME}"
        return [
            f"wrote {target}",
            "now register it (once):",
            f'  reg add "{key}" /ve /t REG_SZ /d "{target}" /f',
        ]
    launcher = launcher_dir / f"productimon-browser-host-{browser}"
    launcher.write_text("#!/bin/sh\nexec " + " ".join(shlex.quote(part) for part in command) + "\n")
    os.chmod(launcher, 0o700)
    assert directory is not None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{HOST_NAME}.json"
        target.write_text(json.dumps(host_manifest(browser, launcher, extra_ids), indent=2) + "\n")
    except OSError as exc:
        raise BrowserCliError(f"cannot write the host manifest in {directory}: {exc.strerror}") from None
    return [f"wrote {target}", f"the browser will start {launcher}"]


def main(argv: list[str] | None = None) -> int:
    private_umask()  # the browser starts the host with its own umask; what the host writes stays the user's
    parser = argparse.ArgumentParser(prog="productimon-browser", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pack = commands.add_parser("package", help="build productimon-chromium.zip and productimon-firefox.xpi")
    pack.add_argument("--out", type=Path, default=Path("dist"), help="directory to write them to (default: dist)")
    install = commands.add_parser("install-host", help="let the browser start the native host for this user")
    install.add_argument("--browser", required=True, choices=BROWSERS)
    install.add_argument("--user-data-dir", type=Path, help="a Chromium profile directory of its own")
    install.add_argument(
        "--extension-id", action="append", default=[], help="also allow this extension id (e.g. a store-signed one)"
    )
    install.add_argument(
        "--home", type=Path, help="the collector home (default: $PRODUCTIMON_COLLECTOR_HOME or the OS's)"
    )
    host = commands.add_parser("host", help="the native messaging host (the browser starts it)")
    host.add_argument("--browser", required=True, choices=BROWSERS)
    host.add_argument("--home", type=Path)
    host.add_argument("origin", nargs="*", help=argparse.SUPPRESS)  # what browsers pass the host: ignored
    args = parser.parse_args(argv)
    explicit_home = getattr(args, "home", None)
    home = CollectorHome(explicit_home.expanduser().resolve()) if explicit_home else CollectorHome.default()
    try:
        if args.command == "package":
            for path in package(args.out):
                print(f"wrote {path}")
            print(f"Chromium extension id: {chromium_extension_id()}; Firefox add-on id: {GECKO_ID}")
        elif args.command == "install-host":
            for line in install_host(args.browser, home, args.user_data_dir, args.extension_id):
                print(line)
        else:
            return NativeHost(home, args.browser).run(sys.stdin.buffer)
    except BrowserCliError as exc:
        print(f"productimon-browser: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"productimon-browser: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
