"""The pure parts of the GNOME sources and their installer (collector/wayland/gnome.py, screensaver.py), and the
extension's files as shipped: the two variants say the same, and name what the Python side calls."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from collector.wayland.gnome import (
    BUS_NAME,
    EXTENSION_DIR,
    EXTENSION_UUID,
    INTERFACE,
    OBJECT_PATH,
    extension_files,
    format_strv,
    not_running_reason,
    parse_strv,
    shell_major,
    with_item,
    without_item,
    xdg_data_home,
)
from collector.wayland.screensaver import counts_milliseconds


@pytest.mark.parametrize(
    ("printed", "items"),
    [
        ("@as []", []),
        ("[]", []),
        ("['productimon@productimon.io']", ["productimon@productimon.io"]),
        ("['a@x', 'b@y']\n", ["a@x", "b@y"]),
        ("[\"it's@x\", 'b@y']", ["it's@x", "b@y"]),  # g_variant_print quotes with " a string holding a '
        (r"['back\\slash', 'qu\'ote', 'caf\u00e9', 'tab\there']", ["back\\slash", "qu'ote", "café", "tab\there"]),
    ],
)
def test_parse_strv_reads_what_gsettings_get_prints(printed, items):
    assert parse_strv(printed) == items


@pytest.mark.parametrize("printed", ["", "true", "['a'", "['a' 'b'", "[a]", "@as", "['unterminated]"])
def test_parse_strv_refuses_what_is_not_a_string_array(printed):
    with pytest.raises(ValueError):
        parse_strv(printed)


@pytest.mark.parametrize("items", [[], ["a@x"], ["a@x", "b@y"], ["it's", "back\\slash", 'dou"ble', "café"]])
def test_format_strv_reads_back_as_the_same_items(items):
    assert parse_strv(format_strv(items)) == items


def test_format_strv_writes_the_gvariant_text_gsettings_set_takes():
    assert format_strv([]) == "@as []"
    assert format_strv(["a@x", "it's"]) == "['a@x', 'it\\'s']"


def test_the_uuid_is_added_after_what_was_enabled_and_taken_out_of_what_was_disabled():
    assert with_item("@as []", EXTENSION_UUID) == f"['{EXTENSION_UUID}']"
    assert with_item("['dash-to-dock@micxgx.gmail.com']", EXTENSION_UUID) == (
        f"['dash-to-dock@micxgx.gmail.com', '{EXTENSION_UUID}']"
    )
    assert with_item(f"['{EXTENSION_UUID}']", EXTENSION_UUID) is None  # nothing to change
    assert without_item(f"['a@x', '{EXTENSION_UUID}', 'b@y']", EXTENSION_UUID) == "['a@x', 'b@y']"
    assert without_item(f"['{EXTENSION_UUID}']", EXTENSION_UUID) == "@as []"
    assert without_item("@as []", EXTENSION_UUID) is None


@pytest.mark.parametrize(
    ("output", "major"),
    [("GNOME Shell 43.9\n", 43), ("GNOME Shell 45.rc\n", 45), ("GNOME Shell 47.2", 47), ("", None), ("bash: x", None)],
)
def test_the_shell_version_comes_from_gnome_shell_version(output, major):
    assert shell_major(output) == major


def test_43_and_44_get_the_legacy_extension_and_45_on_the_es_module():
    assert extension_files(43) == extension_files(44) == ("extension.js", "metadata.json")
    assert extension_files(45) == extension_files(47) == ("extension45.js", "metadata45.json")
    for major in (43, 44, 45, 46, 47):
        script, metadata = extension_files(major)
        declared = json.loads((EXTENSION_DIR / metadata).read_text())
        assert str(major) in declared["shell-version"]
        assert declared["uuid"] == EXTENSION_UUID
        assert ("export default class" in (EXTENSION_DIR / script).read_text()) == (major >= 45)


def _shared(script: str) -> str:
    text = (EXTENSION_DIR / script).read_text()
    found = re.search(r"// BEGIN shared.*?\n(.*)// END shared", text, re.DOTALL)
    assert found, f"{script} lost its shared block"
    return found.group(1)


def test_both_variants_share_the_code_that_answers_and_it_names_what_python_calls():
    shared = _shared("extension.js")
    assert shared == _shared("extension45.js")
    assert f"const BUS_NAME = '{BUS_NAME}';" in shared
    assert f"const OBJECT_PATH = '{OBJECT_PATH}';" in shared
    assert f'<interface name="{INTERFACE}">' in shared
    assert re.findall(r'<method name="(\w+)">', shared) == ["ActiveWindow"]  # one method, nothing else exported
    assert re.findall(r'<arg type="(\w)" name="(\w+)" direction="out"/>', shared) == [("s", "app_id"), ("s", "title")]


def test_the_reason_the_extension_does_not_answer_is_one_line_that_says_what_to_do():
    assert not_running_reason(shell_on_bus=False, installed=True) == (
        "GNOME Shell is not running on this session bus (org.gnome.Shell has no owner)"
    )
    assert not_running_reason(shell_on_bus=True, installed=False) == (
        "the Productimon GNOME Shell extension is not installed: run `productimon-collector install-desktop-support`"
        " and log in again"
    )
    assert "log out and in again" in not_running_reason(shell_on_bus=True, installed=True)
    for shell_on_bus in (True, False):
        for installed in (True, False):
            assert "\n" not in not_running_reason(shell_on_bus, installed)


def test_the_data_home_follows_the_xdg_rules():
    assert xdg_data_home({"XDG_DATA_HOME": "/data", "HOME": "/home/u"}) == Path("/data")
    assert xdg_data_home({"HOME": "/home/u"}) == Path("/home/u/.local/share")
    assert xdg_data_home({"XDG_DATA_HOME": "relative", "HOME": "/home/u"}) == Path("/home/u/.local/share")


def test_only_kde_s_screen_locker_counts_idle_time_in_milliseconds():
    assert counts_milliseconds(":1.12", ":1.12")  # org.kde.screensaver on the same connection
    assert not counts_milliseconds(":1.12", None)  # gnome-screensaver's lineage: seconds
    assert not counts_milliseconds(":1.12", ":1.40")
    assert not counts_milliseconds(None, None)
