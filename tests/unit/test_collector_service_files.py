"""Start-up entries for each platform: they run `<python> -m collector run` with the collector home set."""

from __future__ import annotations

import plistlib
import shlex
from pathlib import Path, PureWindowsPath

import pytest

from collector.service_files import (
    LAUNCHD_LABEL,
    SERVICE_NAME,
    enable_hint,
    launchd_plist,
    service_file,
    service_file_location,
    systemd_unit,
    windows_startup_command,
)

PYTHON = Path("/opt/productimon/venv/bin/python")
HOME = Path("/home/alice/.local/share/productimon-collector")


def unit_settings(unit: str) -> dict[str, list[str]]:
    """Every `Key=value` of a unit, by key (a key may repeat), ignoring sections and comments."""
    settings: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def unit_sections(unit: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in unit.splitlines():
        if line.startswith("["):
            current = line
            sections[current] = []
        elif line and not line.startswith("#"):
            sections[current].append(line.partition("=")[0])
    return sections


# -- systemd


def test_the_systemd_unit_runs_the_collector_with_this_python():
    settings = unit_settings(systemd_unit(PYTHON, HOME))
    assert [shlex.split(command) for command in settings["ExecStart"]] == [[str(PYTHON), "-m", "collector", "run"]]


def test_the_systemd_unit_sets_the_collector_home():
    settings = unit_settings(systemd_unit(PYTHON, HOME))
    assert [shlex.split(value) for value in settings["Environment"]] == [[f"PRODUCTIMON_COLLECTOR_HOME={HOME}"]]


@pytest.mark.parametrize(
    ("python", "home"),
    [
        (Path("/home/al ice/my venv/bin/python"), Path("/home/al ice/collector home")),
        (Path("/opt/it's/python"), Path("/home/o'brien/collector")),
    ],
)
def test_paths_with_spaces_or_quotes_stay_one_word(python, home):
    settings = unit_settings(systemd_unit(python, home))
    assert shlex.split(settings["ExecStart"][0]) == [str(python), "-m", "collector", "run"]
    assert shlex.split(settings["Environment"][0]) == [f"PRODUCTIMON_COLLECTOR_HOME={home}"]


def test_the_systemd_unit_restarts_on_failure_and_follows_the_graphical_session():
    unit = systemd_unit(PYTHON, HOME)
    settings = unit_settings(unit)
    assert settings["Restart"] == ["on-failure"]
    assert settings["WantedBy"] == ["graphical-session.target"]
    assert settings["PartOf"] == ["graphical-session.target"]
    assert settings["After"] == ["graphical-session.target"]
    assert settings["Type"] == ["simple"]
    # Stopping must leave time to close the open interval and finish an upload (the agent joins for 35 s).
    assert int(settings["TimeoutStopSec"][0]) > 35
    sections = unit_sections(unit)
    assert "ExecStart" in sections["[Service]"] and "Restart" in sections["[Service]"]
    assert sections["[Install]"] == ["WantedBy"]
    assert "PartOf" in sections["[Unit]"]


# -- launchd


def test_the_launchd_agent_round_trips_through_plistlib():
    agent = plistlib.loads(launchd_plist(PYTHON, HOME, HOME / "logs"))
    assert agent["Label"] == LAUNCHD_LABEL
    assert agent["ProgramArguments"] == [str(PYTHON), "-m", "collector", "run"]
    assert agent["EnvironmentVariables"] == {"PRODUCTIMON_COLLECTOR_HOME": str(HOME)}
    assert agent["RunAtLoad"] is True
    assert agent["KeepAlive"] == {"SuccessfulExit": False}  # restarted only after a failure
    assert agent["StandardErrorPath"] == str(HOME / "logs" / "collector.log")


def test_launchd_arguments_are_not_split_on_spaces():
    python = Path("/Users/al ice/Library/Python venv/bin/python3")
    home = Path("/Users/al ice/Library/Application Support/Productimon Collector")
    agent = plistlib.loads(launchd_plist(python, home, home))
    assert agent["ProgramArguments"][0] == str(python)
    assert agent["EnvironmentVariables"]["PRODUCTIMON_COLLECTOR_HOME"] == str(home)


# -- Windows


def test_the_windows_command_starts_pythonw_hidden_with_the_home_set():
    python = PureWindowsPath(r"C:\Users\alice\AppData\Local\Programs\Python\Python311\python.exe")
    home = PureWindowsPath(r"C:\Users\alice\AppData\Local\Productimon\Collector")
    command = windows_startup_command(python, home)
    lines = command.split("\r\n")
    assert lines == [
        "@echo off",
        rf'set "PRODUCTIMON_COLLECTOR_HOME={home}"',
        r'start "" "C:\Users\alice\AppData\Local\Programs\Python\Python311\pythonw.exe" -m collector run',
        "",
    ]


def test_the_windows_command_has_only_crlf_line_endings():
    command = windows_startup_command(PureWindowsPath(r"C:\Python\python.exe"), PureWindowsPath(r"C:\home"))
    assert command.endswith("\r\n")
    assert command.count("\n") == command.count("\r\n") == 3
    assert "\r" not in command.replace("\r\n", "")


@pytest.mark.parametrize("name", ["python.exe", "PYTHON.EXE", "Python.exe"])
def test_python_exe_becomes_pythonw_exe_whatever_its_case(name):
    command = windows_startup_command(PureWindowsPath(rf"C:\Py\{name}"), PureWindowsPath(r"C:\h"))
    assert r'"C:\Py\pythonw.exe"' in command


def test_an_interpreter_already_without_a_console_is_kept():
    command = windows_startup_command(PureWindowsPath(r"C:\Py\pythonw.exe"), PureWindowsPath(r"C:\h"))
    assert r'"C:\Py\pythonw.exe" -m collector run' in command


def test_windows_paths_with_spaces_are_quoted():
    python = PureWindowsPath(r"C:\Program Files\Python311\python.exe")
    home = PureWindowsPath(r"C:\Users\Al Ice\AppData\Local\Productimon\Collector")
    command = windows_startup_command(python, home)
    assert r'start "" "C:\Program Files\Python311\pythonw.exe" -m collector run' in command
    assert rf'set "PRODUCTIMON_COLLECTOR_HOME={home}"' in command


# -- where each goes, and which one each platform gets


def test_service_file_location_per_platform():
    user = Path("/u")
    assert service_file_location("linux", user) == user / ".config/systemd/user" / f"{SERVICE_NAME}.service"
    assert service_file_location("darwin", user) == user / "Library/LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
    assert service_file_location("win32", user) == (
        user / "AppData/Roaming/Microsoft/Windows/Start Menu/Programs/Startup/productimon-collector.cmd"
    )
    assert service_file_location("freebsd", user) == service_file_location("linux", user)


def test_service_file_location_defaults_to_the_users_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert service_file_location("linux") == tmp_path / ".config/systemd/user" / f"{SERVICE_NAME}.service"


def test_each_platform_gets_its_own_kind_of_service_file():
    assert service_file(PYTHON, HOME, "linux") == systemd_unit(PYTHON, HOME).encode()
    agent = plistlib.loads(service_file(PYTHON, HOME, "darwin"))
    assert agent["StandardErrorPath"] == str(HOME / "collector.log")  # the log goes to the collector home
    assert service_file(PYTHON, HOME, "win32").startswith(b"@echo off\r\n")


def test_the_enable_hint_names_the_file_or_unit_it_enables():
    assert SERVICE_NAME in enable_hint("linux")
    assert "daemon-reload" in enable_hint("linux")
    assert f"{LAUNCHD_LABEL}.plist" in enable_hint("darwin")
    assert "sign-in" in enable_hint("win32")
