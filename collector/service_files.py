"""Start-up entries that run the collector as the user's own service: pure text for each platform.

Linux: a systemd user unit tied to the graphical session (it needs the session's $DISPLAY). macOS: a launchd
agent. Windows: a command in the user's Startup folder, started hidden by pythonw.
"""

from __future__ import annotations

import plistlib
import shlex
import sys
from pathlib import Path

SERVICE_NAME = "productimon-collector"
LAUNCHD_LABEL = "org.productimon.collector"


def _systemd_escaped(text: str) -> str:
    """`%` starts a specifier in unit files; a literal one is written `%%`."""
    return text.replace("%", "%%")


def systemd_unit(python: Path, home: Path) -> str:
    command = _systemd_escaped(shlex.join([str(python), "-m", "collector", "run"]))
    # The whole assignment is quoted, as systemd expects for values with spaces.
    home_value = str(home).replace("\\", "\\\\").replace('"', '\\"')
    environment = _systemd_escaped(f'"PRODUCTIMON_COLLECTOR_HOME={home_value}"')
    return f"""[Unit]
Description=Productimon collector: counts how time is spent on this computer
# Tracking needs the desktop session ($DISPLAY); start and stop with it.
PartOf=graphical-session.target
After=graphical-session.target

[Service]
Type=simple
Environment={environment}
ExecStart={command}
Restart=on-failure
RestartSec=10
# Stopping lets the collector close the interval in progress and the uploader finish its batch.
TimeoutStopSec=45

[Install]
WantedBy=graphical-session.target
"""


def launchd_plist(python: Path, home: Path, log_dir: Path) -> bytes:
    return plistlib.dumps(
        {
            "Label": LAUNCHD_LABEL,
            "ProgramArguments": [str(python), "-m", "collector", "run"],
            "EnvironmentVariables": {"PRODUCTIMON_COLLECTOR_HOME": str(home)},
            "RunAtLoad": True,
            "KeepAlive": {"SuccessfulExit": False},
            "ProcessType": "Background",
            "StandardErrorPath": str(log_dir / "collector.log"),
        }
    )


def windows_startup_command(python: Path, home: Path) -> str:
    # pythonw.exe runs without a console window; it sits next to python.exe in every Windows install.
    pythonw = python.with_name("pythonw.exe") if python.name.lower() == "python.exe" else python
    return f'@echo off\r\nset "PRODUCTIMON_COLLECTOR_HOME={home}"\r\nstart "" "{pythonw}" -m collector run\r\n'


def service_file_location(platform: str = sys.platform, user_home: Path | None = None) -> Path:
    """Where the current platform looks for a per-user start-up entry."""
    user_home = user_home or Path.home()
    if platform == "darwin":
        return user_home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
    if platform == "win32":
        startup = Path("AppData/Roaming/Microsoft/Windows/Start Menu/Programs/Startup")
        return user_home / startup / "productimon-collector.cmd"
    return user_home / ".config" / "systemd" / "user" / f"{SERVICE_NAME}.service"


def service_file(python: Path, home: Path, platform: str = sys.platform) -> bytes:
    if platform == "darwin":
        return launchd_plist(python, home, home)
    if platform == "win32":
        return windows_startup_command(python, home).encode()
    return systemd_unit(python, home).encode()


def enable_hint(platform: str = sys.platform) -> str:
    if platform == "darwin":
        return f"launchctl load ~/Library/LaunchAgents/{LAUNCHD_LABEL}.plist"
    if platform == "win32":
        return "it starts at your next sign-in (or run the .cmd file now)"
    return f"systemctl --user daemon-reload && systemctl --user enable --now {SERVICE_NAME}"
