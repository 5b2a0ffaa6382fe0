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
    scrub_title,
    strip_url,
)

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
        ("https://www.example.com/search?q=secret#results", "https://www.example.com/search"),
        ("http://user:pass@example.com:8080/a/b", "http://example.com:8080/a/b"),
        ("HTTPS://Example.COM", "https://example.com"),
        ("https://medium.com/@alice/post", "https://medium.com/%40alice/post"),
        ("https://a.com\\@b.com/x", "https://a.com/%40b.com/x"),
        ("http://[::1]:3000/app?x=1", "http://[::1]:3000/app"),
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
def test_web_urls_keep_scheme_host_and_path(scheme, userinfo, host, path, query, fragment):
    assert strip_url(f"{scheme}://{userinfo}{host}{path}{query}{fragment}") == f"{scheme}://{host}{path}"


def test_titles_are_not_kept_when_title_capture_is_off():
    private = apply_privacy(an_interval(), PrivacySettings(capture_titles=False))
    assert private["title"] is None
    assert private["app"] == "firefox" and private["url"] == "https://bank.example/accounts"


def test_a_hide_title_rule_on_the_app_hides_only_the_title():
    rules = (ExclusionRule(r"^(firefox|chromium)$", on="app", action="hide_title"),)
    private = apply_privacy(an_interval(), PrivacySettings(rules=rules))
    assert (private["app"], private["title"], private["url"]) == ("firefox", None, "https://bank.example/accounts")
    untouched = apply_privacy(an_interval(app="firefox-esr"), PrivacySettings(rules=rules))
    assert untouched["title"] == "Statement — My Bank"


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


@pytest.mark.parametrize(
    ("title", "scrubbed"),
    [
        # Chromium titles a page without <title> with its address.
        ("localhost:8000/wiki/raw.html?q=find+me&token=t#part - Chromium", "localhost:8000/wiki/raw.html - Chromium"),
        ("curl https://bob:pw@api.example.com/v1?key=abc — bash", "curl https://api.example.com/v1 — bash"),
        ("Docs - https://a.example/c#section x", "Docs - https://a.example/c x"),
        # Words that are not addresses keep their punctuation.
        ("What? Really?", "What? Really?"),
        ("C# in depth", "C# in depth"),
        ("me@example.com - Inbox", "me@example.com - Inbox"),
        (None, None),
    ],
)
def test_addresses_in_titles_lose_query_fragment_and_user_info(title, scrubbed):
    assert scrub_title(title) == scrubbed


@given(st.text(), st.from_regex(r"\A[a-z]{1,8}\.[a-z]{2,3}(/[a-z0-9]{0,8}){0,3}\Z"), st.text(min_size=1))
def test_no_address_in_a_title_keeps_a_query(before, address, query):
    title = f"{before} {address}?{query.replace(' ', '_')} end"
    scrubbed = scrub_title(title)
    assert f"{address}?" not in scrubbed
    assert scrubbed.endswith(" end")


def test_the_title_is_scrubbed_before_it_is_kept():
    private = apply_privacy({"app": "chromium", "title": "x.org/a?secret=1 - Chromium", "url": None}, PrivacySettings())
    assert private["title"] == "x.org/a - Chromium"
