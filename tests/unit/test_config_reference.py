"""docs/configuration.md is the settings class, every field of it, said as the class's comments say it."""

from __future__ import annotations

from pathlib import Path

from infra.config_reference import PREFIX, render, undocumented
from plumbing.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_the_configuration_reference_is_what_the_settings_class_generates():
    assert (REPO / "docs" / "configuration.md").read_text() == render(), (
        "docs/configuration.md is stale: .venv/bin/python -m infra.config_reference > docs/configuration.md"
    )


def test_every_setting_is_in_the_reference_and_says_what_it_means():
    reference = render()
    assert all(f"`{PREFIX}{name.upper()}`" in reference for name in Settings.model_fields)
    assert undocumented() == []
