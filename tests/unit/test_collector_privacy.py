"""Privacy controls on the device: titles off, exclusion rules, URLs without query, fragment or user info."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.intervals import Sample
from collector.privacy import (
    PRIVATE_APP,
    ExclusionRule,
    PrivacySettings,
    apply_privacy,
    strip_url,
)
from schemas.privacy_rules import AccountPrivacy, PrivacyRule

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def an_interval(**changes: object) -> dict:
    interval = {
        "event_id": "6f1c9a4e-3b2d-4c8e-9f0a-1b2c3d4e5f60",
        "device_seq": 7,
        "start": 1_700_000_000_000,
        "end": 1_700_000_060_000,
        "app": "firefox",
        "title": "Statement — My Bank",
        "url": "https://bank.example/accounts?id=123#top",
        "keystrokes": 12,
        "clicks": 3,
        "idle": False,
    }
    return interval | changes


@pytest.mark.parametrize(
    ("url", "stripped"),
    [
        ("https://www.example.com/search?q=secret#results", "https://www.example.com/"),
        # The shared allow-list keeps a listed first segment (schemas/multi_app_sites.toml), never more.
        ("https://www.google.com/maps/place/Home+Street+1?q=me", "https://www.google.com/maps"),
        ("https://github.com/alice/secret-repo/pull/12", "https://github.com/"),
        ("http://user:pass@example.com:8080/a/b", "http://example.com:8080/"),
        ("HTTPS://Example.COM", "https://example.com/"),
        ("https://medium.com/@alice/post", "https://medium.com/"),
        ("https://a.com\\@b.com/x", "https://a.com/"),
        ("http://[::1]:3000/app?x=1", "http://[::1]:3000/"),
        ("file:///home/alice/diary.txt", "file:"),
        ("chrome://settings/passwords", "chrome:"),
        ("about:blank", "about:"),
        ("data:text/html,<b>hi</b>", "data:"),
        ("/home/alice/diary.txt", None),
        ("https:///nohost", None),
        ("http://example.com:notaport/", None),
        ("", None),
        (None, None),
    ],
)
def test_strip_url_keeps_only_what_may_touch_disk(url, stripped):
    assert strip_url(url) == stripped


@settings(max_examples=1000)
@given(st.one_of(st.text(), st.from_regex(r"\A(https?|file|ftp)://[^\s]*\Z"), st.from_regex(r"\Ahttps?:.*")))
def test_strip_url_never_keeps_query_fragment_or_user_info(url):
    stripped = strip_url(url)
    assert stripped is None or not any(c in stripped for c in "?#@")
    if stripped is not None and not stripped.startswith(("http://", "https://")):
        assert stripped.endswith(":") and "/" not in stripped  # a scheme, never a local path


HOST = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z]{2,6}){1,2}\Z")
SEGMENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~", min_size=1, max_size=10)
TAIL = st.text(alphabet=st.characters(codec="ascii", exclude_characters="\t\r\n"), max_size=20)


@given(
    scheme=st.sampled_from(["http", "https"]),
    userinfo=st.sampled_from(["", "alice@", "alice:hunter2@"]),
    host=HOST,
    path=st.lists(SEGMENT, max_size=4).map(lambda segments: "".join("/" + s for s in segments)),
    query=st.one_of(st.just(""), TAIL.map(lambda t: "?" + t)),
    fragment=st.one_of(st.just(""), TAIL.map(lambda t: "#" + t)),
)
def test_web_urls_keep_scheme_and_host_never_the_path(scheme, userinfo, host, path, query, fragment):
    # Generated hosts are on no allow-list: nothing of the path survives.
    assert strip_url(f"{scheme}://{userinfo}{host}{path}{query}{fragment}") == f"{scheme}://{host}/"


def test_titles_are_not_kept_when_title_capture_is_off():
    private = apply_privacy(an_interval(), PrivacySettings(capture_titles=False))
    assert private["title"] is None
    assert private["app"] == "firefox" and private["url"] == "https://bank.example/"


def test_a_hide_title_rule_on_the_app_hides_only_the_title():
    rules = (ExclusionRule(r"^(firefox|chromium)$", on="app", action="hide_title"),)
    private = apply_privacy(an_interval(), PrivacySettings(rules=rules))
    assert (private["app"], private["title"], private["url"]) == ("firefox", None, "https://bank.example/")
    untouched = apply_privacy(an_interval(app="firefox-esr"), PrivacySettings(rules=rules))
    assert untouched["title"] == "My Bank"  # scrubbed: a browser keeps the site's own label


def test_a_drop_details_rule_on_the_title_keeps_only_the_time_and_counts():
    rules = (ExclusionRule("bank", on="title", action="drop_details"),)  # matches "Bank": case-insensitive
    interval = an_interval()
    private = apply_privacy(interval, PrivacySettings(rules=rules))
    assert (private["app"], private["title"], private["url"]) == (PRIVATE_APP, None, None)
    assert {k: private[k] for k in ("start", "end", "keystrokes", "clicks", "idle", "device_seq", "event_id")} == {
        k: interval[k] for k in ("start", "end", "keystrokes", "clicks", "idle", "device_seq", "event_id")
    }
    assert interval["app"] == "firefox"  # the input is not changed


def test_title_rules_apply_even_when_titles_are_not_captured():
    rules = (ExclusionRule("bank", on="title", action="drop_details"),)
    private = apply_privacy(an_interval(), PrivacySettings(capture_titles=False, rules=rules))
    assert (private["app"], private["title"], private["url"]) == (PRIVATE_APP, None, None)


def test_rules_do_not_match_a_missing_title():
    rules = (ExclusionRule(".*", on="title", action="drop_details"),)
    private = apply_privacy(an_interval(title=None, url=None), PrivacySettings(rules=rules))
    assert private["app"] == "firefox"


def test_a_bad_regex_is_refused_at_load_naming_it():
    with pytest.raises(ValueError, match=r"\(unclosed"):
        ExclusionRule("(unclosed", on="title", action="hide_title")


@pytest.mark.parametrize("changes", [{"on": "url"}, {"action": "delete"}])
def test_an_unknown_rule_target_or_action_is_refused(changes):
    with pytest.raises(ValueError, match="exclusion rule"):
        ExclusionRule(**({"pattern": "x", "on": "app", "action": "hide_title"} | changes))


def test_keystroke_content_has_nowhere_to_go():
    # A sample carries counts only: the one text fields are what was in front, never what was typed.
    fields = {f.name: f.type for f in dataclasses.fields(Sample)}
    assert fields == {
        "at_ms": "int",
        "app": "str",
        "title": "str | None",
        "url": "str | None",
        "keystrokes": "int",
        "clicks": "int",
        "idle": "bool",
        "last_input_ms": "int | None",  # a moment, not what the input was
    }
    record = json.loads((SCHEMAS / "activity_interval" / "v2.avsc").read_text())
    texts = {f["name"] for f in record["fields"] if "string" in json.dumps(f["type"])}
    assert texts == {"event_id", "app", "title", "url"}


def test_the_title_is_scrubbed_before_it_is_kept():
    private = apply_privacy({"app": "chromium", "title": "x.org/a?secret=1 - Chromium", "url": None}, PrivacySettings())
    assert private["title"] == "x.org"  # the address's host only (schemas/titles.py; its corpus has the rest)


def _account(mode: str = "scrubbed", *rules: tuple[str, str, str]) -> AccountPrivacy:
    return AccountPrivacy(mode, tuple(PrivacyRule(*rule) for rule in rules))


def test_the_accounts_site_rule_covers_every_subdomain_and_keeps_only_the_time():
    settings = PrivacySettings(account=_account("scrubbed", ("site", "bank.example", "drop_details")))
    private = apply_privacy(an_interval(url="https://online.BANK.example/login?u=1"), settings)
    assert (private["app"], private["title"], private["url"]) == (PRIVATE_APP, None, None)
    other = apply_privacy(an_interval(url="https://notbank.example/"), settings)
    assert other["app"] == "firefox"


def test_the_accounts_title_modes_and_the_devices_own_off_switch_wins():
    terminal = {"app": "gnome-terminal-server", "title": "mysql -u root -pS3cret!", "url": None}
    assert apply_privacy(terminal, PrivacySettings(account=_account("full")))["title"] == terminal["title"]
    assert apply_privacy(terminal, PrivacySettings(account=_account("scrubbed")))["title"] == "mysql"
    assert apply_privacy(terminal, PrivacySettings(account=_account("off")))["title"] is None
    # config.toml's capture_titles = false is stricter than the account's "full": the stricter wins.
    assert apply_privacy(terminal, PrivacySettings(capture_titles=False, account=_account("full")))["title"] is None


def test_the_accounts_title_rule_and_the_devices_rules_both_apply():
    settings = PrivacySettings(
        rules=(ExclusionRule("^keepass", on="app", action="drop_details"),),
        account=_account("full", ("title", "salary", "hide_title")),
    )
    assert apply_privacy(an_interval(title="Salary review — Docs"), settings)["title"] is None
    assert apply_privacy(an_interval(app="KeePassXC"), settings)["app"] == PRIVATE_APP
    assert apply_privacy(an_interval(title="Weather"), settings)["title"] == "Weather"
