"""The image and the distributions hold every package: no engine builds the image here, so a package the
Dockerfile forgets to copy would first fail in production."""

from __future__ import annotations

import re
from pathlib import Path

from infra.collector_dist import PACKAGES as COLLECTOR_PACKAGES
from infra.collector_dist import server_project
from schemas.compat import tomllib

REPO = Path(__file__).resolve().parents[2]


def _packages() -> set[str]:
    with (REPO / "pyproject.toml").open("rb") as f:
        include = tomllib.load(f)["tool"]["setuptools"]["packages"]["find"]["include"]
    return {pattern.rstrip("*") for pattern in include}


def test_every_package_is_a_directory_of_the_checkout_and_every_top_level_package_is_listed():
    on_disk = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests", "bench", "testbed"}
    assert _packages() == on_disk


def test_the_image_copies_every_package():
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (REPO / "infra" / "docker" / "Dockerfile").read_text(), re.M))
    assert _packages() <= copied, f"the Dockerfile does not copy {sorted(_packages() - copied)}"


def test_the_collector_distribution_takes_packages_and_pins_of_the_server_project():
    assert set(COLLECTOR_PACKAGES) <= _packages()
    assert server_project()["name"] == "productimon"
