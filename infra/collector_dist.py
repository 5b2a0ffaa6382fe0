"""The collector alone, as its own wheel: `productimon-collector`, for the computers people track.

It holds the packages the collector imports (collector, schemas: the contract and privacy rules, plumbing) and
depends only on what they need, pinned as the server's pyproject.toml pins them: no warehouse engine, dashboard,
broker client or stream framework. It installs on Python 3.10 to 3.13 (docs/collector.md).

The wheel is built from a staged copy of those packages, so the one repository keeps one source of each file:

    ./dev collector-wheel            # -> dist/productimon_collector-<version>-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from plumbing.cli import UserFacingError, command
from schemas.compat import tomllib

REPO = Path(__file__).resolve().parents[1]
DISTRIBUTION = "productimon-collector"
PACKAGES = ("collector", "schemas", "plumbing")
# The server's own plumbing, which the collector never imports (the import contracts in pyproject.toml).
SERVER_ONLY = ("plumbing/settings.py", "plumbing/metrics.py", "plumbing/kafka_security.py")
REQUIRES_PYTHON = ">=3.10,<3.14"
# What the collector imports, by distribution name; the versions come from the server's pins.
REQUIREMENTS = (
    "grpcio",
    "h2",
    "hpack",
    "hyperframe",
    "protobuf",
    "cryptography",
    "fastavro",
    "pynput",
    "pywinctl",
    "python-xlib",
    "ewmhlib",
    "jeepney",
    "pywayland",
    "desktop-notifier",
    "tomli",
)
SCRIPTS = {"productimon-collector": "collector.cli:main", "productimon-browser": "collector.browser_cli:main"}
CLASSIFIERS = [f"Programming Language :: Python :: 3.{minor}" for minor in range(10, 14)] + [
    "Operating System :: POSIX :: Linux",
    "Operating System :: MacOS",
    "Operating System :: Microsoft :: Windows",
]


def _requirement_name(spec: str) -> str:
    return re.split(r"[\s=<>!~;\[]", spec, maxsplit=1)[0].lower()


def server_project(pyproject: Path = REPO / "pyproject.toml") -> dict:
    with pyproject.open("rb") as f:
        return tomllib.load(f)["project"]


def package_data(pyproject: Path = REPO / "pyproject.toml") -> dict[str, list[str]]:
    """The data files of the collector's packages, as the server's pyproject.toml lists them."""
    with pyproject.open("rb") as f:
        listed = tomllib.load(f)["tool"]["setuptools"]["package-data"]
    return {package: patterns for package, patterns in listed.items() if package in PACKAGES}


def collector_requirements(project: dict) -> list[str]:
    """The server's pinned requirements (markers kept) for each of REQUIREMENTS; one missing is an error."""
    pinned: dict[str, list[str]] = {}
    for spec in project["dependencies"]:
        pinned.setdefault(_requirement_name(spec), []).append(spec)
    missing = [name for name in REQUIREMENTS if name not in pinned]
    if missing:
        raise UserFacingError(f"pyproject.toml pins no version of {', '.join(missing)}, which the collector needs")
    return [spec for name in REQUIREMENTS for spec in pinned[name]]


def collector_pyproject(project: dict) -> str:
    """The staged distribution's pyproject.toml."""

    def toml_list(items) -> str:
        return "[" + ", ".join(f'"{item}"' for item in items) + "]"

    scripts = "\n".join(f'{name} = "{target}"' for name, target in SCRIPTS.items())
    data = "\n".join(f"{package} = {toml_list(patterns)}" for package, patterns in package_data().items())
    return f"""[build-system]
requires = ["setuptools>=75"]
build-backend = "setuptools.build_meta"

[project]
name = "{DISTRIBUTION}"
version = "{project["version"]}"
description = "The Productimon collector: records which application and site is in front, never what is in it"
readme = "README.md"
requires-python = "{REQUIRES_PYTHON}"
license = {{ text = "{project["license"]["text"]}" }}
classifiers = {toml_list(CLASSIFIERS)}
dependencies = {toml_list(collector_requirements(project))}

[project.scripts]
{scripts}

[tool.setuptools.packages.find]
include = {toml_list(f"{package}*" for package in PACKAGES)}

[tool.setuptools.package-data]
{data}
"""


def stage(into: Path) -> Path:
    """A source tree of the collector distribution under `into`: its packages, pyproject and README."""
    project = server_project()
    for package in PACKAGES:
        shutil.copytree(REPO / package, into / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for module in SERVER_ONLY:
        (into / module).unlink()
    (into / "pyproject.toml").write_text(collector_pyproject(project))
    shutil.copy(REPO / "docs" / "collector.md", into / "README.md")
    return into


def build_wheel(out_dir: Path, python: str = sys.executable) -> Path:
    """Build the wheel into `out_dir` with `python`'s setuptools (no download); returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="productimon-collector-dist-") as tmp:
        source = stage(Path(tmp) / "src")
        built = Path(tmp) / "wheel"
        result = subprocess.run(
            [python, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(built), str(source)],
            capture_output=True,
            text=True,
        )
        if result.returncode:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UserFacingError(f"building the collector wheel failed: {last[0]}")
        (wheel,) = built.glob("*.whl")
        target = out_dir / wheel.name
        shutil.move(wheel, target)
    return target


def install_alone(wheel: Path, venv_dir: Path) -> Path:
    """A new virtual environment holding only `wheel` and what it depends on; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", str(venv_dir)], check=True, capture_output=True)
    python = venv_dir / "bin" / "python"
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode:
        raise UserFacingError(f"installing {wheel.name} failed: {(result.stderr or result.stdout).strip()[-500:]}")
    return python


def site_packages(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


def tree_bytes(root: Path) -> int:
    return sum(path.lstat().st_size for path in root.rglob("*") if path.is_file() and not path.is_symlink())


def installed_bytes(python: Path) -> int:
    """What the distribution and its dependencies take in `python`'s site-packages, without pip and setuptools
    (which every virtual environment has)."""
    root = site_packages(python)
    tools = ("pip", "setuptools", "pkg_resources", "_distutils_hack", "distutils-precedence.pth")
    return sum(
        tree_bytes(entry) if entry.is_dir() else entry.stat().st_size
        for entry in root.iterdir()
        if not entry.name.startswith(tools)
    )


@command("collector-wheel")
def main() -> int:
    parser = argparse.ArgumentParser(prog="collector-wheel", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="where the wheel goes (default: dist/)")
    args = parser.parse_args()
    print(f"building {DISTRIBUTION} from {', '.join(PACKAGES)} ...", flush=True)
    wheel = build_wheel(args.out)
    print(f"built {wheel}")
    print(f"install it on a workstation (Python 3.10 to 3.13): pip install {wheel.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
