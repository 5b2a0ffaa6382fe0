"""mypy passes, strict, on the pure core: the contract (schemas), trimming, sessionizing, the privacy rules and the
queries. The configuration is pyproject.toml's [tool.mypy]; plain `mypy` in the repository runs the same check."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ["schemas"]
MODULES = [
    "stream_jobs.trim",
    "stream_jobs.sessionize",
    "collector.privacy",
    "warehouse.queries",
    "warehouse.goal_rules",
    "warehouse.notice_rules",
    "warehouse.insight_rules",
    "gateway.account_rules",
    "gateway.throttling",
    "gateway.one_time_codes",
]


def test_the_configuration_checks_the_core_strictly():
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    assert config["strict"] is True
    assert config["packages"] == PACKAGES
    assert config["modules"] == MODULES


def test_mypy_passes_on_the_core():
    # The default cache (.mypy_cache in the repository) makes a rerun take a second or two instead of several.
    args = [str(Path(sys.executable).parent / "mypy"), "--config-file", str(REPO / "pyproject.toml")]
    for package in PACKAGES:
        args += ["-p", package]
    for module in MODULES:
        args += ["-m", module]
    checked = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout[-6000:] + checked.stderr[-2000:]
