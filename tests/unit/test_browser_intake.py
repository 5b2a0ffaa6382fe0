"""The collector's loopback intake for browser reports, over real sockets."""

from __future__ import annotations

import json
import socket
import stat
import threading
import time

import pytest

from collector.browser import (
    LEFT_GRACE_MS,
    BrowserIntake,
    BrowserUrls,
    ensure_browser_secret,
    read_intake_address,
    send_line,
)
from collector.config import CollectorHome

MAX_AGE = 15_000


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    @property
    def ms(self) -> int:
        return int(self.now * 1000)


@pytest.fixture
def home(tmp_path) -> CollectorHome:
    return CollectorHome(tmp_path / "home")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def intake(home, clock):
    with BrowserIntake(home, clock=clock) as running:
        yield running


def report(home: CollectorHome, **fields: object) -> dict:
    message: dict = {
        "secret": ensure_browser_secret(home),
        "source": "profile1",
        "browser": "chromium",
        "type": "tab",
        "url": "https://shop.example/cart?coupon=XYZ#pay",
        "title": "Cart",
        "incognito": False,
    }
    message.update(fields)
    address = read_intake_address(home)
    assert address is not None
    return send_line(address, json.dumps(message).encode() + b"\n")


def test_a_report_with_the_secret_is_accepted_and_kept_without_its_query(home, intake, clock):
    assert report(home) == {"ok": True}
    latest = intake.latest(clock.ms, MAX_AGE)
    assert latest is not None
    assert (latest.browser, latest.url, latest.title) == ("chromium", "https://shop.example/", "Cart")
    assert intake.accepted == 1
    assert intake.refused == {"bad_secret": 0, "malformed": 0, "incognito": 0}


def test_a_wrong_secret_is_refused_and_counted(home, intake, clock):
    assert report(home, secret="guessed") == {"ok": False, "refused": "bad_secret"}
    assert report(home, secret=None) == {"ok": False, "refused": "bad_secret"}
    assert intake.latest(clock.ms, MAX_AGE) is None
    assert intake.refused["bad_secret"] == 2


def test_a_private_window_is_refused_and_hides_that_browsers_earlier_tab(home, intake, clock):
    report(home)
    assert report(home, incognito=True, url="https://private.example/") == {"ok": False, "refused": "incognito"}
    assert intake.latest(clock.ms, MAX_AGE) is None
    assert intake.refused["incognito"] == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json}\n",
        b"\xff\xfe\n",
        b'{"unterminated": true}',  # no newline: cut off
        b"x" * 70_000 + b"\n",  # far larger than any report
    ],
)
def test_malformed_reports_are_refused_and_counted(home, intake, raw):
    address = read_intake_address(home)
    assert send_line(address, raw) == {"ok": False, "refused": "malformed"}
    assert intake.refused["malformed"] == 1


def test_a_report_is_used_only_while_fresh(home, intake, clock):
    report(home)
    clock.now += 10
    assert intake.latest(clock.ms, MAX_AGE) is not None
    clock.now += 6
    assert intake.latest(clock.ms, MAX_AGE) is None


def test_a_navigation_reported_while_a_sample_is_taken_is_the_url_of_that_sample(home, intake, clock):
    report(home, url="https://docs.example/a")
    clock.now += 2
    sample_ms = clock.ms  # the sample's time, taken before it asks the window system what is in front
    clock.now += 0.3  # a busy machine: the window system answers late, and meanwhile the next page is reported
    report(home, url="https://wiki.example/b")
    latest = intake.latest(sample_ms, MAX_AGE)
    assert latest is not None, "the report before was replaced, so nothing was found: the sample gets no site"
    assert latest.url == "https://wiki.example/"


def test_a_browser_going_to_the_background_does_not_hide_the_one_in_front(home, intake, clock):
    report(home, source="firefox1", browser="firefox", url="https://news.example/")
    clock.now += 1
    report(home, source="chromium1", url="https://docs.example/a")
    # Firefox says it lost the focus after Chromium said it has it: Chromium's tab still stands.
    report(home, source="firefox1", browser="firefox", type="none")
    assert intake.latest(clock.ms, MAX_AGE).url == "https://docs.example/"
    report(home, source="chromium1", type="none")
    clock.now += LEFT_GRACE_MS / 1000 + 0.01
    assert intake.latest(clock.ms, MAX_AGE) is None


def test_a_browser_that_said_it_lost_the_focus_keeps_its_tab_until_the_window_manager_catches_up(home, intake, clock):
    report(home, source="chromium1", url="https://docs.example/a")
    clock.now += 3
    report(home, source="chromium1", type="none")
    # The samples taken before the window manager names the window now in front still see the browser.
    clock.now += LEFT_GRACE_MS / 1000 - 0.1
    assert intake.latest(clock.ms, MAX_AGE).url == "https://docs.example/"
    # A second `none` (the extension never repeats one, a restarted one may) does not move the moment it left.
    report(home, source="chromium1", type="none")
    clock.now += 0.2
    assert intake.latest(clock.ms, MAX_AGE) is None
    # Back in front: its new tab is used at once, and for as long as any report.
    report(home, source="chromium1", url="https://mail.example/inbox")
    clock.now += 10
    assert intake.latest(clock.ms, MAX_AGE).url == "https://mail.example/"


def test_a_silent_connection_blocks_nobody(home, intake, clock):
    address = read_intake_address(home)
    with socket.create_connection(address) as silent:
        silent.sendall(b'{"secret": ')  # and then nothing
        started = time.monotonic()
        assert report(home) == {"ok": True}
        assert time.monotonic() - started < 1.0
        assert intake.latest(clock.ms, MAX_AGE) is not None


def test_many_reporters_at_once_are_all_answered(home, intake):
    answers: list[dict] = []
    threads = [threading.Thread(target=lambda i=i: answers.append(report(home, source=f"p{i}"))) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert answers == [{"ok": True}] * 20
    assert intake.accepted == 20


def test_the_intake_listens_on_loopback_and_its_files_are_owner_only(home, intake):
    host, port = intake.address
    assert host == "127.0.0.1"
    assert read_intake_address(home) == (host, port)
    for path in (home.browser_intake_file, home.browser_secret_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.root.stat().st_mode) == 0o700


def test_stopping_removes_the_address_but_not_a_newer_collectors(home, clock):
    first = BrowserIntake(home, clock=clock).start()
    first.stop()
    assert not home.browser_intake_file.exists()
    older, newer = BrowserIntake(home, clock=clock).start(), BrowserIntake(home, clock=clock).start()
    older.stop()
    assert read_intake_address(home) == newer.address
    newer.stop()
    assert read_intake_address(home) is None


def test_a_busy_port_is_one_readable_error(home, clock):
    with BrowserIntake(home, clock=clock) as running:
        _, port = running.address
        with pytest.raises(OSError, match=f"browser intake cannot listen on 127.0.0.1:{port}"):
            BrowserIntake(home, port=port, clock=clock).start()


def test_everyone_who_needs_the_secret_first_gets_the_same_one(home):
    secrets: list[str] = []
    threads = [threading.Thread(target=lambda: secrets.append(ensure_browser_secret(home))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(secrets)) == 1 and len(secrets[0]) >= 40
    assert [p.name for p in home.root.iterdir()] == ["browser-secret"]


def test_the_trackers_url_source_joins_the_freshest_report_with_the_window_in_front(home, intake, clock):
    urls = BrowserUrls(intake, max_age_ms=MAX_AGE)
    report(home)
    assert urls.url_for("chromium", "Cart - Chromium", clock.ms) == "https://shop.example/"
    assert urls.url_for("firefox", "Cart — Mozilla Firefox", clock.ms) is None
    assert urls.url_for("code", "main.py - Code", clock.ms) is None
    assert urls.url_for("chromium", "Cart - Chromium", clock.ms + MAX_AGE + 1) is None
