"""Collector settings: defaults, config.toml, PRODUCTIMON_COLLECTOR_* over it, and one readable line per bad value."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.config import (
    CollectorConfigError,
    CollectorHome,
    CollectorSettings,
    default_home,
    load_collector_settings,
)
from collector.privacy import ExclusionRule, PrivacySettings


@pytest.fixture
def home(tmp_path: Path) -> CollectorHome:
    return CollectorHome(tmp_path / "home").create()


def write_config(home: CollectorHome, text: str) -> None:
    home.config_file.write_text(text)


def load(home: CollectorHome, **env: str) -> CollectorSettings:
    return load_collector_settings(home, env={f"PRODUCTIMON_COLLECTOR_{k.upper()}": v for k, v in env.items()})


def test_without_a_config_file_or_environment_the_defaults_apply(home):
    s = load(home)
    assert s == CollectorSettings()
    assert (s.sample_seconds, s.idle_after_seconds, s.max_interval_seconds) == (1.0, 180.0, 60.0)
    assert s.capture_titles is True
    assert s.exclude == ()
    assert s.device_name is None
    assert (s.spool_max_mb, s.upload_batch) == (200.0, 500)
    assert s.renew_at_remaining == pytest.approx(1 / 3)
    assert s.spool_max_bytes == 200 * 1024 * 1024
    assert s.privacy() == PrivacySettings(capture_titles=True, rules=())


def test_an_empty_config_file_is_the_defaults(home):
    write_config(home, "")
    assert load(home) == CollectorSettings()


def test_values_from_config_toml_are_used(home):
    write_config(
        home,
        """
device_name = "work laptop"
sample_seconds = 2
idle_after_seconds = 300.5
capture_titles = false
upload_batch = 100
spool_max_mb = 0.5
browser_intake_port = 8123

[[exclude]]
pattern = "bank"
on = "title"
action = "hide_title"

[[exclude]]
pattern = "^keepass"
on = "app"
action = "drop_details"
""",
    )
    s = load(home)
    assert s.device_name == "work laptop"
    assert s.sample_seconds == 2.0 and isinstance(s.sample_seconds, float)
    assert s.idle_after_seconds == 300.5
    assert s.capture_titles is False
    assert s.upload_batch == 100 and isinstance(s.upload_batch, int)
    assert s.spool_max_bytes == 512 * 1024
    assert s.browser_intake_port == 8123
    assert s.exclude == (
        ExclusionRule("bank", "title", "hide_title"),
        ExclusionRule("^keepass", "app", "drop_details"),
    )
    assert s.privacy() == PrivacySettings(capture_titles=False, rules=s.exclude)
    assert s.max_interval_seconds == 60.0  # not in the file: the default


def test_an_exclusion_rule_defaults_to_hiding_the_title(home):
    write_config(home, '[[exclude]]\npattern = "diary"\n')
    assert load(home).exclude == (ExclusionRule("diary", "title", "hide_title"),)


def test_the_environment_overrides_the_config_file(home):
    write_config(home, "idle_after_seconds = 300\ncapture_titles = true\ndevice_name = 'from file'\n")
    s = load(home, idle_after_seconds="60", capture_titles="no", device_name="  from env  ")
    assert (s.idle_after_seconds, s.capture_titles, s.device_name) == (60.0, False, "from env")


def test_environment_variables_without_the_collector_prefix_are_ignored(home):
    s = load_collector_settings(home, env={"IDLE_AFTER_SECONDS": "5", "PRODUCTIMON_IDLE_AFTER_SECONDS": "5"})
    assert s.idle_after_seconds == 180.0


def test_exclusion_rules_come_from_the_config_file(home):
    write_config(home, '[[exclude]]\npattern = "bank"\n')
    s = load(home)
    assert s.exclude == (ExclusionRule("bank", "title", "hide_title"),)


def test_the_process_environment_is_read_when_none_is_given(home, monkeypatch):
    monkeypatch.setenv("PRODUCTIMON_COLLECTOR_UPLOAD_BATCH", "42")
    assert load_collector_settings(home).upload_batch == 42


@pytest.mark.parametrize("text", ["1", "true", "TRUE", " yes ", "on"])
def test_true_in_the_environment(home, text):
    assert load(home, capture_titles=text).capture_titles is True


@pytest.mark.parametrize("text", ["0", "false", "False", "no", "off "])
def test_false_in_the_environment(home, text):
    assert load(home, capture_titles=text).capture_titles is False


def test_numbers_in_the_environment_become_ints_and_floats_by_setting(home):
    s = load(home, upload_batch=" 250 ", sample_seconds="0.5", spool_max_mb="10", browser_intake_port="0")
    assert s.upload_batch == 250 and type(s.upload_batch) is int
    assert s.sample_seconds == 0.5 and type(s.sample_seconds) is float
    assert s.spool_max_mb == 10.0 and type(s.spool_max_mb) is float
    assert s.browser_intake_port == 0


@pytest.mark.parametrize(
    ("name", "raw", "says"),
    [
        ("upload_batch", "2.5", "must be a whole number"),
        ("upload_batch", "many", "must be a whole number"),
        ("upload_batch", "0", "must be at least 1 and at most 5000"),
        ("upload_batch", "5001", "at most 5000"),
        ("sample_seconds", "0", "must be more than 0 and at most 60"),
        ("sample_seconds", "-1", "more than 0"),
        ("sample_seconds", "61", "at most 60"),
        ("sample_seconds", "fast", "must be a number"),
        ("sample_seconds", "inf", "finite"),
        ("idle_after_seconds", "", "must be a number"),
        ("renew_at_remaining", "1", "at most 0.99"),
        ("renew_at_remaining", "0", "more than 0"),
        ("browser_intake_port", "65536", "at most 65535"),
        ("browser_intake_port", "-1", "at least 0"),
        ("capture_titles", "maybe", "must be true or false"),
        ("device_name", "   ", "must not be empty"),
    ],
)
def test_a_bad_environment_value_is_refused_naming_the_setting_and_the_variable(home, name, raw, says):
    with pytest.raises(CollectorConfigError) as caught:
        load(home, **{name: raw})
    message = str(caught.value)
    assert f"'{name}'" in message
    assert f"PRODUCTIMON_COLLECTOR_{name.upper()}" in message
    assert says in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("line", "name", "says"),
    [
        ("upload_batch = 2.5", "upload_batch", "must be a whole number"),
        ("upload_batch = true", "upload_batch", "must be a whole number"),
        ("sample_seconds = true", "sample_seconds", "must be a number"),
        ("sample_seconds = 0", "sample_seconds", "more than 0"),
        ("max_interval_seconds = 3601", "max_interval_seconds", "at most 3600"),
        ("spool_max_mb = -5", "spool_max_mb", "more than 0"),
        ("browser_report_max_age_seconds = 601", "browser_report_max_age_seconds", "at most 600"),
        ("capture_titles = 'sometimes'", "capture_titles", "must be true or false"),
        ("device_name = ''", "device_name", "must not be empty"),
        ("exclude = 'bank'", "exclude", "must be a list of tables"),
        ("exclude = ['bank']", "exclude", "must be a list of tables"),
        ("[[exclude]]\non = 'title'", "exclude", "each rule needs pattern"),
        ("[[exclude]]\npattern = 'a'\ntarget = 'title'", "exclude", "each rule needs pattern"),
        ("[[exclude]]\npattern = 'a'\non = 'url'", "exclude", "'on' must be 'app' or 'title'"),
        ("[[exclude]]\npattern = 'a'\naction = 'delete'", "exclude", "'action' must be"),
    ],
)
def test_a_bad_config_file_value_is_refused_naming_the_setting_and_the_file(home, line, name, says):
    write_config(home, line + "\n")
    with pytest.raises(CollectorConfigError) as caught:
        load(home)
    message = str(caught.value)
    assert f"'{name}'" in message
    assert str(home.config_file) in message
    assert says in message


def test_an_invalid_regular_expression_in_an_exclusion_rule_is_refused_naming_the_pattern(home):
    write_config(home, "[[exclude]]\npattern = 'bank(('\n")
    with pytest.raises(CollectorConfigError) as caught:
        load(home)
    message = str(caught.value)
    assert "'bank(('" in message
    assert "not a valid regular expression" in message
    assert "'exclude'" in message and str(home.config_file) in message


def test_an_unknown_setting_in_the_config_file_is_refused_by_name(home):
    write_config(home, "idle_after = 60\n")
    with pytest.raises(CollectorConfigError, match="unknown setting 'idle_after'") as caught:
        load(home)
    assert str(home.config_file) in str(caught.value)


def test_a_config_file_that_is_not_toml_is_refused_naming_the_file(home):
    write_config(home, "sample_seconds = = 1\n")
    with pytest.raises(CollectorConfigError, match="cannot read") as caught:
        load(home)
    assert str(home.config_file) in str(caught.value)


def test_a_bad_environment_value_is_refused_even_when_the_file_is_fine(home):
    write_config(home, "upload_batch = 100\n")
    with pytest.raises(CollectorConfigError, match="PRODUCTIMON_COLLECTOR_UPLOAD_BATCH"):
        load(home, upload_batch="lots")


def test_a_good_environment_value_replaces_a_bad_file_value(home):
    # The environment wins before the file's value is even looked at.
    write_config(home, "upload_batch = 0\n")
    assert load(home, upload_batch="10").upload_batch == 10


@given(st.integers(min_value=1, max_value=5000))
def test_every_whole_upload_batch_in_range_is_accepted(tmp_path_factory, batch):
    home = CollectorHome(tmp_path_factory.mktemp("home"))
    assert load(home, upload_batch=str(batch)).upload_batch == batch


@given(st.floats(min_value=0, max_value=60, exclude_min=True))
def test_every_sample_period_in_range_is_accepted(tmp_path_factory, seconds):
    home = CollectorHome(tmp_path_factory.mktemp("home"))
    assert load(home, sample_seconds=repr(seconds)).sample_seconds == seconds


@pytest.mark.parametrize("name", ["sample_seconds", "idle_after_seconds", "spool_max_mb", "renew_at_remaining"])
def test_not_a_number_is_refused(home, name):
    with pytest.raises(CollectorConfigError, match=name):
        load(home, **{name: "nan"})


def test_not_a_number_in_the_config_file_is_refused(home):
    write_config(home, "idle_after_seconds = nan\n")
    with pytest.raises(CollectorConfigError, match="idle_after_seconds"):
        load(home)


# -- the collector home


def test_create_makes_an_owner_only_home_even_when_it_existed_open(tmp_path):
    root = tmp_path / "existing"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    CollectorHome(root).create()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_create_makes_missing_parents(tmp_path):
    home = CollectorHome(tmp_path / "a" / "b" / "collector").create()
    assert home.root.is_dir()
    assert stat.S_IMODE(home.root.stat().st_mode) == 0o700


def test_every_file_of_the_home_lives_inside_it(tmp_path):
    home = CollectorHome(tmp_path)
    files = [
        home.config_file,
        home.credentials_dir,
        home.identity_file,
        home.spool_file,
        home.paused_file,
        home.status_file,
        home.lock_file,
        home.browser_secret_file,
        home.browser_intake_file,
    ]
    assert all(f.parent == tmp_path for f in files)
    assert len(set(files)) == len(files)
    assert home.config_file.name == "config.toml"


def test_the_home_comes_from_productimon_collector_home_when_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRODUCTIMON_COLLECTOR_HOME", "relative/home")
    assert default_home() == tmp_path.resolve() / "relative" / "home"
    assert CollectorHome.default().root == default_home()


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="the Linux layout")
def test_on_linux_the_home_follows_xdg_data_home(tmp_path, monkeypatch):
    monkeypatch.delenv("PRODUCTIMON_COLLECTOR_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_home() == tmp_path / "data" / "productimon-collector"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    assert default_home() == tmp_path / "me" / ".local" / "share" / "productimon-collector"


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        ("darwin", Path("Library/Application Support/Productimon Collector")),
        ("win32", Path("AppData/Local/Productimon/Collector")),
    ],
)
def test_other_platforms_use_their_per_user_data_directory(tmp_path, monkeypatch, platform, expected):
    monkeypatch.delenv("PRODUCTIMON_COLLECTOR_HOME", raising=False)
    monkeypatch.delenv("LOCALAPPDATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(sys, "platform", platform)
    assert default_home() == tmp_path / expected


@pytest.mark.parametrize("variable", ["PRODUCTIMON_COLLECTOR_IDLE_AFTER", "PRODUCTIMON_COLLECTOR_EXCLUDE"])
def test_an_unknown_or_misplaced_environment_setting_is_refused_naming_it(home, variable):
    with pytest.raises(CollectorConfigError, match=variable):
        load_collector_settings(home, {variable: "60"})
