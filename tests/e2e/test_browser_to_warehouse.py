"""A browsing session end to end (issue 5): Debian's chromium with the unpacked extension on an Xvfb desktop with
openbox, the real `productimon-collector run`, pages of two local sites visited with secrets in their query strings
and fragments, a terminal in front for a while, and what reaches the warehouse through the gateway and worker:
the sites, never the URLs."""

from __future__ import annotations

import functools
import http.server
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from collector.config import CollectorHome
from schemas.codec import decode_interval
from testbed.collector_process import collector_command, enrolled_home, spool_depth, start_collector, stop_collector
from testbed.desktop import missing_programs, virtual_desktop
from tests.chromium_extension import chromium_with_extension
from tests.conftest import eventually
from warehouse.queries import export_intervals, time_per_site

pytestmark = pytest.mark.e2e

# In every query string and fragment the browser sees; nothing stored may ever contain it.
SECRET = f"s3cr3t{uuid.uuid4().hex[:12]}"
PAGES: dict[str, str | None] = {
    "reports/q3.html": "Quarterly figures",
    "reports/q4.html": "Forecast",
    "wiki/start.html": "Team wiki",
    # No <title>: the browser titles its window with the page's address, query and fragment included.
    "wiki/raw.html": None,
}
TERMINAL_TITLE = "notes - terminal"
DWELL_S = 2.5  # on each page and in the terminal: many samples at 0.2 s, well over the 1 s the checks ask for


class SpoolWatcher:
    """Reads the spool beside the running collector (SQLite WAL allows it) every few milliseconds and decodes every
    interval it finds there before the uploader deletes it."""

    def __init__(self, home: CollectorHome) -> None:
        self.urls: dict[int, str | None] = {}  # device_seq -> the interval's url, as spooled
        self._home = home
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._watch, name="spool-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        if self._failure is not None:
            raise self._failure

    def _watch(self) -> None:
        try:
            with closing(sqlite3.connect(f"file:{self._home.spool_file}?mode=ro", uri=True, timeout=5)) as db:
                while not self._stop.wait(0.01):
                    for seq, payload in db.execute("SELECT seq, payload FROM interval").fetchall():
                        if seq not in self.urls:
                            self.urls[seq] = decode_interval(payload)["url"]
        except BaseException as exc:  # handed to the test by stop()
            self._failure = exc


@dataclass
class Session:
    """What the scripted session left: the warehouse's rows for the account, and what the spool held."""

    intervals: pd.DataFrame
    per_site: pd.DataFrame
    sites: dict[str, str]  # page path -> the site it must be stored as
    spooled_urls: dict[int, str | None]
    spool_bytes: bytes


def serve(root: Path, cleanup: ExitStack) -> int:
    """Serve `root` on a free loopback port until `cleanup` closes; returns the port."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cleanup.callback(server.server_close)
    cleanup.callback(server.shutdown)
    return server.server_address[1]


def reports_accepted(home: CollectorHome) -> int:
    """Browser reports the running collector's intake has taken, as its status.json says (rewritten every 5 s)."""
    try:
        status = json.loads(home.status_file.read_text())
    except ValueError:  # read while it was being rewritten
        return 0
    return (status.get("browser_reports") or {}).get("accepted", 0)


def extension_last_sent(context) -> str:
    """The last message the extension posted to its native host (its `lastSent`), read in its service worker."""
    workers = context.service_workers or [context.wait_for_event("serviceworker", timeout=30_000)]
    return workers[0].evaluate("lastSent") or ""


@pytest.fixture(scope="module")
def session(stack, warehouse_client, tmp_path_factory) -> Iterator[Session]:
    missing = missing_programs()
    assert not missing, f"the browser test needs {', '.join(missing)} (Debian packages in infra/apt-packages.txt)"
    tmp = tmp_path_factory.mktemp("browser-to-warehouse")
    home, user_id, *_ = enrolled_home(stack.settings, tmp / "home", "sample_seconds = 0.2\n", "browser-test")
    for path, title in PAGES.items():
        (tmp / "site" / path).parent.mkdir(parents=True, exist_ok=True)
        head = f"<title>{title}</title>" if title else ""
        (tmp / "site" / path).write_text(f"<!doctype html>{head}<p>{title or 'untitled'}</p>")

    with ExitStack() as cleanup:
        # Two local sites: trimming keeps the port of loopback hosts, which is what tells them apart.
        reports_port, wiki_port = serve(tmp / "site", cleanup), serve(tmp / "site", cleanup)
        base = {"reports": f"http://127.0.0.1:{reports_port}", "wiki": f"http://localhost:{wiki_port}"}
        sites = {
            "reports/q3.html": f"127.0.0.1:{reports_port}",
            "reports/q4.html": f"127.0.0.1:{reports_port}",
            "wiki/start.html": f"localhost:{wiki_port}",
            "wiki/raw.html": f"localhost:{wiki_port}",
        }
        desktop = cleanup.enter_context(virtual_desktop())
        terminal = desktop.open_xterm(TERMINAL_TITLE)
        desktop.focus(terminal)
        # Started before the browser, so its intake address is there when the native host first reports.
        collector = start_collector(home, desktop.env, tmp / "collector.log")
        try:
            time.sleep(DWELL_S)  # the terminal in front
            # Starting, chromium is in front with about:blank before the extension has said anything: not part of
            # the session checked here, so nothing is recorded until the first page is reported.
            collector_command(home, "pause")
            browser = cleanup.enter_context(chromium_with_extension(tmp / "chromium", home, desktop.env))
            # The extension, its native host and the collector's intake are connected: a report arrived.
            eventually(lambda: reports_accepted(home) >= 1, 30)
            watcher = SpoolWatcher(home)
            cleanup.callback(watcher.stop)
            page = browser.pages[0]
            for number, path in enumerate(PAGES):
                url = f"{base[path.split('/')[0]]}/{path}?q=find+{SECRET}&token={SECRET}#{SECRET}"
                page.goto(url)
                eventually(lambda url=url: url in extension_last_sent(browser), 15)
                if number == 0:
                    # The host forwards a report to the intake within milliseconds; a second is ample on a busy
                    # machine. Too short, and the first browser interval would carry about:blank's label.
                    time.sleep(1.0)
                    collector_command(home, "resume")
                time.sleep(DWELL_S)
            desktop.focus(terminal)
            time.sleep(DWELL_S)
            watcher.stop()
            # The spool as it is on disk: the database and its write-ahead log, which still holds the page images
            # of intervals the uploader has since deleted.
            spool_bytes = b"".join(
                p.read_bytes() for p in (home.spool_file, Path(f"{home.spool_file}-wal")) if p.exists()
            )
        finally:
            assert stop_collector(collector) == 0
    # Stopped while the gateway is reachable, the collector delivered everything before it exited.
    assert spool_depth(home) == 0
    final = json.loads(home.status_file.read_text())  # written once more as the collector stopped
    assert final["not_spooled"] == 0
    start, end = datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(minutes=5)
    # Every interval the collector spooled has been acknowledged, so it is in the broker; the worker writes it.
    eventually(lambda: len(export_intervals(warehouse_client, user_id, start, end)) == final["spooled"], 60)
    yield Session(
        export_intervals(warehouse_client, user_id, start, end),
        time_per_site(warehouse_client, user_id, start, end),
        sites,
        watcher.urls,
        spool_bytes,
    )


def test_browser_time_is_stored_as_the_sites_visited(session):
    browser = session.intervals[session.intervals["app"] == "chromium"]
    assert set(browser["site"]) == set(session.sites.values())
    seconds = (browser["end"] - browser["start"]).dt.total_seconds().groupby(browser["site"]).sum()
    for site in set(session.sites.values()):
        assert seconds[site] > 1.0, seconds.to_dict()
    per_site = dict(zip(session.per_site["site"], session.per_site["seconds"], strict=True))
    assert set(per_site) == set(session.sites.values())
    assert all(s > 1.0 for s in per_site.values()), per_site


def test_time_in_another_app_carries_no_site(session):
    assert set(session.intervals["app"]) == {"chromium", "xterm"}
    terminal = session.intervals[session.intervals["app"] == "xterm"]
    # Scrubbed (schemas/titles.py): a terminal's title keeps the program's name only.
    assert set(terminal["title"]) == {"notes"}
    assert set(terminal["site"]) == {""}
    # In front before the browser started and again after it: both stretches are there.
    browser = session.intervals[session.intervals["app"] == "chromium"]
    before = terminal[terminal["end"] <= browser["start"].min()]
    after = terminal[terminal["start"] >= browser["end"].max()]
    for stretch in (before, after):
        assert (stretch["end"] - stretch["start"]).dt.total_seconds().sum() > 1.0, terminal


def test_query_strings_and_fragments_never_reach_the_warehouse(session):
    for column in ("app", "title", "site"):
        values = set(session.intervals[column])
        assert not [v for v in values if SECRET in v or "?" in v or "#" in v], (column, values)
    # Titles are scrubbed (schemas/titles.py): a page's title keeps at most its short label; an untitled page's
    # window title is its address, of which only the host is kept. No page's path is in any title.
    browser_titles = set(session.intervals[session.intervals["app"] == "chromium"]["title"])
    hosts = {session.sites[path] for path, title in PAGES.items() if title is None}
    assert browser_titles <= {title for title in PAGES.values() if title} | hosts | {""}, browser_titles
    assert hosts <= browser_titles  # the untitled page was in front, and its address-title was kept scrubbed
    assert not [t for t in browser_titles for path in PAGES if path in t], browser_titles


def test_the_spool_never_holds_a_query_string(session):
    urls = {url for url in session.spooled_urls.values() if url is not None}
    assert not [url for url in urls if SECRET in url or "?" in url or "#" in url], urls
    # Every URL the collector ever wrote is still in the write-ahead log's page images; the check above sees
    # only what the watcher caught before the uploader deleted it.
    # The site alone: no page's path ever reached the spool (docs/privacy-rules.md).
    for path, site in session.sites.items():
        assert f"http://{site}/".encode() in session.spool_bytes, path
        assert path.encode() not in session.spool_bytes, path
    assert SECRET.encode() not in session.spool_bytes
