"""Which URL an interval gets while a browser is in front: the pure join and the reading of one report."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.browser import ARRIVED_DURING_SAMPLE_MS, BrowserReport, browser_family, browser_url, judge_report

NOW = 1_700_000_000_000
MAX_AGE = 15_000
SECRET = "s3cret-of-this-install"


def a_report(**changes: object) -> BrowserReport:
    values: dict = {"browser": "chromium", "url": "https://docs.example/guide", "title": "Guide", "received_ms": NOW}
    values.update(changes)
    return BrowserReport(**values)


@pytest.mark.parametrize(
    ("app", "family"),
    [
        # Linux: the process name (`ps -o comm`), as pywinctl reports it.
        ("chromium", "chromium"),
        ("chrome", "chromium"),
        ("msedge", "chromium"),
        ("brave", "chromium"),
        ("firefox-esr", "firefox"),
        ("firefox", "firefox"),
        ("firefox-bin", "firefox"),
        # Windows: the executable.
        ("chrome.exe", "chromium"),
        ("msedge.exe", "chromium"),
        ("firefox.exe", "firefox"),
        (r"C:\Program Files\Mozilla Firefox\firefox.exe", "firefox"),
        # macOS: the application's name.
        ("Google Chrome", "chromium"),
        ("Chromium", "chromium"),
        ("Microsoft Edge", "chromium"),
        ("Brave Browser", "chromium"),
        ("Firefox", "firefox"),
        ("Firefox Developer Edition", "firefox"),
        # Not browsers.
        ("code", None),
        ("firefoxdriver-helper", None),
        ("Terminal", None),
        ("", None),
    ],
)
def test_browsers_are_recognized_by_their_app_name_on_every_platform(app, family):
    assert browser_family(app) == family


def test_a_browser_in_front_gets_the_fresh_report_of_its_family():
    assert browser_url("chromium", "Guide - Chromium", a_report(), NOW + 3_000, MAX_AGE) == "https://docs.example/"
    assert browser_url("Google Chrome", None, a_report(browser="chrome"), NOW, MAX_AGE) == "https://docs.example/"
    assert browser_url("firefox-esr", "Guide — Mozilla Firefox", a_report(browser="firefox"), NOW, MAX_AGE) == (
        "https://docs.example/"
    )


def test_firefox_in_front_never_gets_chromiums_tab():
    assert browser_url("firefox", "Guide — Mozilla Firefox", a_report(browser="chromium"), NOW, MAX_AGE) is None
    assert browser_url("chromium", "Guide - Chromium", a_report(browser="firefox"), NOW, MAX_AGE) is None


def test_no_report_or_a_stale_one_gives_no_url():
    assert browser_url("chromium", "Guide - Chromium", None, NOW, MAX_AGE) is None
    assert browser_url("chromium", "Guide - Chromium", a_report(), NOW + MAX_AGE + 1, MAX_AGE) is None
    # A report from well in the future (the clock stepped back) is not trusted either.
    assert browser_url("chromium", "Guide - Chromium", a_report(), NOW - ARRIVED_DURING_SAMPLE_MS - 1, MAX_AGE) is None


def test_a_report_that_arrived_while_the_sample_was_taken_is_used():
    # The sample's time is taken before the window system is asked what is in front; a navigation reported in
    # between is newer than that time, and it is the report that describes the page in front.
    assert browser_url("chromium", "Guide - Chromium", a_report(), NOW - 1, MAX_AGE) == "https://docs.example/"
    assert browser_url("chromium", None, a_report(), NOW - ARRIVED_DURING_SAMPLE_MS, MAX_AGE) == (
        "https://docs.example/"
    )


def test_an_unknown_app_gets_the_url_only_when_its_title_is_the_tabs():
    report = a_report(browser="vivaldi")
    assert browser_url("vivaldi-bin", "Guide - Vivaldi", report, NOW, MAX_AGE) == "https://docs.example/"
    assert browser_url("code", "main.py - Code", report, NOW, MAX_AGE) is None
    assert browser_url("code", None, report, NOW, MAX_AGE) is None
    assert browser_url("code", "Guide - Code", a_report(title=None), NOW, MAX_AGE) is None


@given(
    app=st.sampled_from(["chromium", "firefox", "vivaldi-bin", "code", "Google Chrome"]),
    title=st.none() | st.text(max_size=40),
    url=st.text(max_size=80),
    age=st.integers(min_value=-10_000, max_value=40_000),
)
def test_whatever_a_report_says_the_joined_url_has_no_query_fragment_or_user_info(app, title, url, age):
    report = a_report(url=url, title=title)
    joined = browser_url(app, title, report, NOW + age, MAX_AGE)
    if joined is not None:
        assert not set("?#@") & set(joined)
        assert -ARRIVED_DURING_SAMPLE_MS <= age <= MAX_AGE


def line(**fields: object) -> bytes:
    message: dict = {
        "secret": SECRET,
        "source": "a1b2c3",
        "browser": "chromium",
        "type": "tab",
        "url": "https://mail.example/inbox?search=rent#msg-12",
        "title": "Inbox",
        "incognito": False,
    }
    message.update(fields)
    return json.dumps({k: v for k, v in message.items() if v is not ...}).encode() + b"\n"


def test_a_good_report_is_read_with_its_url_stripped():
    verdict = judge_report(line(), SECRET, NOW)
    assert verdict.refused is None
    assert verdict.source == "a1b2c3"
    assert verdict.report == BrowserReport("chromium", "https://mail.example/", "Inbox", NOW)


def test_none_says_nothing_reportable_is_in_front():
    verdict = judge_report(line(type="none", url=..., title=...), SECRET, NOW)
    assert verdict.refused is None and verdict.source == "a1b2c3" and verdict.report is None


def test_a_private_windows_tab_is_refused_and_hides_that_browsers_earlier_report():
    verdict = judge_report(line(incognito=True), SECRET, NOW)
    assert verdict.refused == "incognito"
    assert verdict.report is None and verdict.source == "a1b2c3"


@pytest.mark.parametrize(
    "bad",
    [
        b"not json\n",
        b"[1, 2]\n",
        line(type="cookie"),
        line(url=42),
        line(url="no scheme at all"),
        line(title=["x"]),
        line(incognito="no"),
        line(source="../../etc"),
        line(browser="Chromium; DROP"),
        line(source=...),
    ],
)
def test_malformed_reports_are_refused(bad):
    assert judge_report(bad, SECRET, NOW).refused == "malformed"


@given(st.text(max_size=60).filter(lambda s: s != SECRET) | st.none() | st.integers())
def test_any_other_secret_is_refused_before_anything_else_is_read(wrong):
    verdict = judge_report(line(secret=wrong, type="nonsense"), SECRET, NOW)
    assert verdict.refused == "bad_secret" and verdict.source is None


@given(st.binary(max_size=300))
def test_any_bytes_are_judged_without_raising(data):
    verdict = judge_report(data, SECRET, NOW)
    assert verdict.refused in {"malformed", "bad_secret"}
