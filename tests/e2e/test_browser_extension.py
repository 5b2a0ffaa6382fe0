"""The extension in real browsers: Debian's chromium and firefox-esr, each with the packaged extension and the
native host installed by `productimon-browser`, pages served on localhost, and what reaches the collector's
intake. Headed, under Xvfb with openbox: focus events need a window manager (docs/design.md "Real components and how
they start")."""

from __future__ import annotations

import contextlib
import functools
import http.server
import itertools
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from collector.browser import BrowserIntake, BrowserReport, browser_family, browser_url
from collector.config import CollectorHome
from infra.processes import free_port
from testbed.desktop import Desktop, virtual_desktop
from tests.chromium_extension import browser_cli, install_host, launch_chromium, unpacked_extension
from tests.conftest import eventually

pytestmark = pytest.mark.e2e

MAX_AGE_MS = 15_000
PAGES = {"one.html": "Page one", "two.html": "Page two", "docs/three.html": "Page three", "private.html": "Private"}
# How a person opens a private window, and how its window title says it is one.
PRIVATE_WINDOW = {"chromium": ("ctrl+shift+n", "Incognito"), "firefox": ("ctrl+shift+p", "Private Browsing")}


@dataclass
class Site:
    base: str
    requested: list[str] = field(default_factory=list)


class ChromiumDriver:
    """Debian's chromium through Playwright, the unpacked extension loaded, the host manifest in its profile."""

    def __init__(self, desktop: Desktop, tmp: Path, collector_home: CollectorHome) -> None:
        from playwright.sync_api import sync_playwright

        extension = unpacked_extension(tmp / "dist", tmp / "extension")
        profile = tmp / "profile"
        install_host(profile, collector_home)
        self._stack = contextlib.ExitStack()
        playwright = self._stack.enter_context(sync_playwright())
        self._context = launch_chromium(playwright, profile, extension, desktop.env)
        self._stack.callback(self._context.close)
        self._first = self._context.pages[0]

    def goto(self, url: str) -> None:
        self._first.bring_to_front()
        self._first.goto(url)

    def new_tab(self, url: str) -> None:
        self._context.new_page().goto(url)

    def front_first_tab(self) -> None:
        self._first.bring_to_front()

    def close(self) -> None:
        self._stack.close()


class FirefoxDriver:
    """Debian's firefox-esr driven over WebDriver BiDi, the xpi installed as a temporary add-on, the host manifest
    in the (test's) user's ~/.mozilla."""

    def __init__(self, desktop: Desktop, tmp: Path, collector_home: CollectorHome) -> None:
        from websockets.sync.client import connect

        user_home = tmp / "user"
        user_home.mkdir()
        browser_cli(
            "install-host", "--browser", "firefox", "--home", str(collector_home.root), env={"HOME": str(user_home)}
        )
        (tmp / "firefox-profile").mkdir()
        # WebDriver's recommended prefs make Firefox believe it always has the focus (focusmanager.testmode), so
        # another app in front would go unnoticed; a pref the user set is left alone, so set it as a user would.
        (tmp / "firefox-profile" / "user.js").write_text('user_pref("focusmanager.testmode", false);\n')
        port = free_port()
        self._process = subprocess.Popen(
            [
                "firefox-esr",
                "--no-remote",
                "--profile",
                str(tmp / "firefox-profile"),
                "--remote-debugging-port",
                str(port),
            ],
            env={**desktop.env, "HOME": str(user_home)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._ids = itertools.count(1)
        self._stack = contextlib.ExitStack()
        self._stack.callback(self._stop)
        try:
            self._ws = self._stack.enter_context(_connect_when_listening(connect, f"ws://127.0.0.1:{port}/session"))
            self._call("session.new", capabilities={})
            xpi = tmp / "dist" / "productimon-firefox.xpi"
            self._call("webExtension.install", extensionData={"type": "archivePath", "path": str(xpi)})
            self._first = self._call("browsingContext.getTree")["contexts"][0]["context"]
        except BaseException:
            self._stack.close()
            raise

    def _call(self, method: str, **params: object) -> dict:
        command_id = next(self._ids)
        self._ws.send(json.dumps({"id": command_id, "method": method, "params": params}))
        while True:
            answer = json.loads(self._ws.recv(timeout=30))
            if answer.get("id") == command_id:
                assert answer["type"] == "success", answer
                return answer["result"]

    def goto(self, url: str) -> None:
        self._call("browsingContext.activate", context=self._first)
        self._call("browsingContext.navigate", context=self._first, url=url, wait="complete")

    def new_tab(self, url: str) -> None:
        tab = self._call("browsingContext.create", type="tab")["context"]
        self._call("browsingContext.activate", context=tab)
        self._call("browsingContext.navigate", context=tab, url=url, wait="complete")

    def front_first_tab(self) -> None:
        self._call("browsingContext.activate", context=self._first)

    def _stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def close(self) -> None:
        self._stack.close()


def _connect_when_listening(connect, url: str, timeout_s: float = 30):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return connect(url, open_timeout=2)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@dataclass
class Browser:
    name: str
    desktop: Desktop
    driver: ChromiumDriver | FirefoxDriver
    intake: BrowserIntake
    site: Site
    reports: list[BrowserReport]
    window: str = ""

    def latest(self) -> BrowserReport | None:
        return self.intake.latest(int(time.time() * 1000), MAX_AGE_MS)

    def wait_for(self, path: str) -> BrowserReport:
        """The report of the page at `path`, told by its title: its URL is the site alone (the path never leaves
        the browser's machine, docs/privacy-rules.md)."""
        site, title = f"{self.site.base}/", PAGES[path]
        return eventually(lambda: (r := self.latest()) is not None and (r.url, r.title) == (site, title) and r, 15)

    def show(self, path: str) -> str:
        """Put the browser in front, its first tab at `path` with a query string; the URL the collector gets."""
        if self.window:
            self.desktop.focus(self.window)
        self.driver.goto(f"{self.site.base}/{path}?from=test&token=abc#here")
        url = self.wait_for(path).url
        self.window = self.window or self.desktop.run("xdotool", "getactivewindow").strip()
        return url

    def app_in_front(self) -> str:
        """The app name of the window in front, as pywinctl reads it on Linux: the process name."""
        pid = self.desktop.run("xdotool", "getactivewindow", "getwindowpid").strip()
        return subprocess.run(["ps", "-q", pid, "-o", "comm="], capture_output=True, text=True).stdout.strip()

    def joined_url(self) -> str | None:
        """The URL the collector attaches to the window in front."""
        title = self.desktop.active_window_title()
        return browser_url(self.app_in_front(), title, self.latest(), int(time.time() * 1000), MAX_AGE_MS)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("site")
    for path, title in PAGES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(f"<!doctype html><title>{title}</title><p>{title}</p>")
    requested: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            requested.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Site(f"http://localhost:{server.server_address[1]}", requested)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module", params=["chromium", "firefox"])
def browser(request, tmp_path_factory, site) -> Iterator[Browser]:
    tmp = tmp_path_factory.mktemp(request.param)
    collector_home = CollectorHome(tmp / "collector")
    browser_cli("package", "--out", str(tmp / "dist"))  # what a user does first
    reports: list[BrowserReport] = []
    with virtual_desktop() as desktop, BrowserIntake(collector_home, on_report=reports.append) as intake:
        driver = (ChromiumDriver if request.param == "chromium" else FirefoxDriver)(desktop, tmp, collector_home)
        try:
            yield Browser(request.param, desktop, driver, intake, site, reports)
        finally:
            driver.close()


def test_visited_pages_reach_the_collector_as_urls_without_query_or_fragment(browser):
    base = browser.site.base
    browser.driver.goto(f"{base}/one.html?q=my+search&token=abc#section-2")
    report = browser.wait_for("one.html")
    assert (report.browser, report.url, report.title) == (browser.name, f"{base}/", "Page one")
    assert browser.joined_url() == f"{base}/"

    browser.driver.new_tab(f"{base}/two.html?session=s3cr3t")  # a new tab in front
    browser.wait_for("two.html")

    browser.driver.front_first_tab()  # back to the first tab
    browser.wait_for("one.html")

    browser.driver.goto(f"{base}/docs/three.html#top")  # the same tab moves on
    browser.wait_for("docs/three.html")
    assert browser.joined_url() == f"{base}/"

    assert {"Page one", "Page two", "Page three"} <= {r.title for r in browser.reports}
    # No path, query or fragment of any page reached the collector.
    seen = {r.url for r in browser.reports}
    assert seen - {"about:"} == {f"{base}/"}  # about:blank, a new tab's first page
    assert not [url for url in seen if set("?#@") & set(url)]
    assert browser.intake.refused == {"bad_secret": 0, "malformed": 0, "incognito": 0}


def test_the_browser_window_is_recognized_by_its_process_name(browser):
    browser.show("one.html")
    app = browser.app_in_front()
    assert browser_family(app) == browser.name, app


def test_a_tab_that_stays_in_front_is_reported_again_every_few_seconds(browser):
    browser.show("two.html")
    before = sum(r.title == "Page two" for r in browser.reports)
    time.sleep(11)
    assert sum(r.title == "Page two" for r in browser.reports) - before >= 2


def test_another_app_in_front_takes_the_url_away_and_the_browser_gives_it_back(browser):
    browser.show("one.html")
    terminal = browser.desktop.open_xterm(f"a terminal beside {browser.name}")
    browser.desktop.focus(terminal)
    eventually(lambda: browser.latest() is None, timeout_s=10)
    assert browser.joined_url() is None
    browser.desktop.focus(browser.window)
    browser.wait_for("one.html")


def test_a_private_window_is_never_reported(browser):
    keys, marker = PRIVATE_WINDOW[browser.name]
    browser.show("one.html")
    # What a person does: the shortcut for a private window, an address, Enter.
    browser.desktop.run("xdotool", "key", keys)
    eventually(lambda: marker in browser.desktop.active_window_title(), timeout_s=15)
    eventually(lambda: browser.latest() is None, timeout_s=10)
    browser.desktop.type(f"{browser.site.base.removeprefix('http://')}/private.html?who=me")
    browser.desktop.run("xdotool", "key", "Return")
    eventually(lambda: "/private.html?who=me" in browser.site.requested, timeout_s=15)
    eventually(lambda: browser.desktop.active_window_title().startswith("Private"), timeout_s=10)
    time.sleep(6)  # longer than the extension's repeat period
    assert browser.latest() is None
    assert browser.joined_url() is None
    assert not [r for r in browser.reports if r.title == "Private"]
