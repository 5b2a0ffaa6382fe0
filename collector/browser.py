"""Browser URL capture on the collector's side (docs/collector.md; the extension: docs/browser-extension.md): the
loopback intake the native host reports to, and
the pure join of the freshest browser report with the window in front.

The extension tells its native host which tab is in front of the focused browser window; the host forwards that
over loopback TCP with the per-install secret; the intake keeps the freshest report of each reporting browser in
memory only. A URL reaches an interval only through `browser_url`, while a browser window is in front.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import re
import secrets
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from collector.config import CollectorHome
from collector.privacy import strip_url
from plumbing.files import write_atomically

log = logging.getLogger(__name__)

INTAKE_HOST = "127.0.0.1"
# One report is a URL, a title and a few fields; anything near this is not a report.
MAX_REPORT_BYTES = 64 * 1024
# A reporter that connects and says nothing holds one thread for this long, never the intake.
READ_TIMEOUT_S = 2.0
# A browser says it lost the focus (`none`) the moment its window does, a little before the window manager names
# the window now in front; the collector's samples in between still see the browser in front. For this long after
# saying `none` its last tab is still used, so a switch away from the browser does not leave a sliver of
# "browser, no site" (docs/design.md, "Event contract"). Longer than a busy window manager takes, short against
# any real dwell.
LEFT_GRACE_MS = 1500
# A sample takes its time first, then asks the window system what is in front, then looks up the report: a report
# that arrived in between (a navigation) is newer than the sample's time and has replaced the one before it. It
# is the one to use, so a report up to this much newer than the sample counts as fresh; one further ahead means
# the clock stepped back, and is not trusted.
ARRIVED_DURING_SAMPLE_MS = 1000

REFUSAL_REASONS = ("bad_secret", "malformed", "incognito")

_BROWSER_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
_SOURCE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_TITLE_CHARS = 2048


@dataclass(frozen=True)
class BrowserReport:
    """The active tab of a focused browser window, as one browser last reported it (URL already stripped)."""

    browser: str
    url: str
    title: str | None
    received_ms: int


# App names of browser windows as pywinctl's getAppName() gives them: the process name on Linux (`ps -o comm`,
# at most 15 characters), the executable on Windows, the application's name on macOS.
_CHROMIUM_APPS = frozenset(
    {
        "chromium",
        "chromium-browser",
        "chromium browser",
        "chrome",
        "google-chrome",
        "google chrome",
        "google chrome canary",
        "msedge",
        "microsoft-edge",
        "microsoft edge",
        "brave",
        "brave-browser",
        "brave browser",
    }
)
# Reports name the browser the native host was installed for; these are all Chromium inside.
_CHROMIUM_REPORTERS = frozenset({"chromium", "chrome", "edge", "brave"})


def browser_family(app: str | None) -> str | None:
    """ "chromium" or "firefox" for a browser's app name on Linux, Windows or macOS; None for anything else."""
    if not app:
        return None
    name = app.strip().replace("\\", "/").rsplit("/", 1)[-1].lower()
    for suffix in (".exe", ".app"):
        name = name.removesuffix(suffix)
    if name in _CHROMIUM_APPS:
        return "chromium"
    # firefox, firefox-esr, firefox-bin, "Firefox Developer Edition", "Firefox Nightly".
    if name == "firefox" or name.startswith(("firefox-", "firefox ")):
        return "firefox"
    return None


def _reporter_family(browser: str) -> str | None:
    if browser in _CHROMIUM_REPORTERS:
        return "chromium"
    if browser == "firefox":
        return "firefox"
    return None


def is_fresh(received_ms: int, now_ms: int, max_age_ms: int) -> bool:
    """Whether a report received at `received_ms` still describes the moment `now_ms`."""
    return -ARRIVED_DURING_SAMPLE_MS <= now_ms - received_ms <= max_age_ms


def browser_url(
    app: str, window_title: str | None, report: BrowserReport | None, now_ms: int, max_age_ms: int
) -> str | None:
    """The URL to attach to what is in front, or None.

    A report is used only while it is fresh (the extension repeats itself every few seconds while a tab stays in
    front, and says so at once when the browser loses focus). A window of a known browser takes the report of
    its own family — Firefox in front never gets Chromium's tab. A window of an app not known as a browser (a
    Chromium fork under another name) takes it only when its title starts with the reported tab's title, which
    is how browsers title their windows. The URL is stripped again here: whatever built the report, no query,
    fragment or user info leaves this function."""
    if report is None or not is_fresh(report.received_ms, now_ms, max_age_ms):
        return None
    app_family = browser_family(app)
    if app_family is not None:
        reporter = _reporter_family(report.browser)
        if reporter is not None and reporter != app_family:
            return None
        return strip_url(report.url)
    if report.title and window_title and window_title.startswith(report.title):
        return strip_url(report.url)
    return None


# --- the per-install secret and the intake's address file -------------------------------------------------------


def ensure_browser_secret(home: CollectorHome) -> str:
    """The per-install secret every browser report must carry, created owner-only by whoever needs it first.

    Written to a private temporary file and linked into place, so a concurrent reader never sees half a secret
    and two first users end up with the same one."""
    path = home.browser_secret_file
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    home.create()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
        with contextlib.suppress(FileExistsError):  # someone else was first: theirs stands
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return _read_secret(path)


def _read_secret(path: Path) -> str:
    secret = path.read_text().strip()
    if not secret:
        raise FileNotFoundError(f"{path} is empty")
    return secret


def read_intake_address(home: CollectorHome) -> tuple[str, int] | None:
    """Where the running collector's intake listens, or None when no collector has one open."""
    try:
        data = json.loads(home.browser_intake_file.read_text())
        host, port = data["host"], data["port"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if not isinstance(host, str) or not isinstance(port, int) or not 0 < port < 65536:
        return None
    return host, port


# --- reading one report -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What one line from a reporter means: a report, a `none` (nothing reportable in front), or a refusal."""

    source: str | None = None
    report: BrowserReport | None = None
    refused: str | None = None  # one of REFUSAL_REASONS


def judge_report(line: bytes, secret: str, received_ms: int) -> Verdict:
    """Check one line against the protocol and the secret. Pure.

    A line is a JSON object: `secret`, `source` (one reporting browser profile), `browser`, `type` ("tab" or
    "none"), and for a tab `url`, `title`, `incognito`. A tab of a private window is refused even though the
    extension never sends one: this is the second lock on that door."""
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return Verdict(refused="malformed")
    if not isinstance(message, dict):
        return Verdict(refused="malformed")
    given = message.get("secret")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), secret.encode()):
        return Verdict(refused="bad_secret")
    source, browser, kind = message.get("source"), message.get("browser"), message.get("type")
    if not isinstance(source, str) or not _SOURCE.fullmatch(source):
        return Verdict(refused="malformed")
    if not isinstance(browser, str) or not _BROWSER_NAME.fullmatch(browser):
        return Verdict(refused="malformed")
    if kind == "none":
        return Verdict(source=source)
    if kind != "tab":
        return Verdict(refused="malformed")
    incognito = message.get("incognito", False)
    if not isinstance(incognito, bool):
        return Verdict(refused="malformed")
    if incognito:
        # Whatever sent it, a private window is in front: no earlier report of this browser applies either.
        return Verdict(source=source, refused="incognito")
    url, title = message.get("url"), message.get("title")
    if not isinstance(url, str) or not (title is None or isinstance(title, str)):
        return Verdict(refused="malformed")
    stripped = strip_url(url)
    if stripped is None:
        return Verdict(refused="malformed")
    title = title[:_MAX_TITLE_CHARS] if title else None
    return Verdict(source=source, report=BrowserReport(browser, stripped, title, received_ms))


# --- the intake ---------------------------------------------------------------------------------------------------


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    # A restart on a fixed port must not wait out TIME_WAIT; on Windows the same option lets another
    # program take the port over, so not there.
    allow_reuse_address = sys.platform != "win32"
    # Every browser profile reports every few seconds; a short backlog would make some wait for a SYN retry.
    request_queue_size = 64


class BrowserIntake:
    """The running collector's loopback endpoint for browser reports.

    Listens on 127.0.0.1 only and accepts a report only with the per-install secret, which lives in the owner-only
    collector home: other users on the machine, and web pages, cannot inject URLs. Reports are kept in memory,
    the freshest per reporting browser profile, so one browser going to the background (it says `none`) never
    hides another that came to the front. Each connection is served by its own daemon thread with a read
    timeout, so a silent or slow reporter blocks nothing."""

    def __init__(
        self,
        home: CollectorHome,
        port: int = 0,
        clock: Callable[[], float] = time.time,
        on_report: Callable[[BrowserReport], None] | None = None,
    ) -> None:
        self._home = home
        self._port = port
        self._clock = clock
        self._on_report = on_report
        self._lock = threading.Lock()
        self._latest: dict[str, BrowserReport] = {}
        self._left: dict[str, int] = {}  # source -> when it said `none` (its last tab stays for LEFT_GRACE_MS)
        self._accepted = 0
        self._refused = dict.fromkeys(REFUSAL_REASONS, 0)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._secret = ""
        self._intake_text = ""

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("the browser intake is not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> BrowserIntake:
        self._secret = ensure_browser_secret(self._home)
        intake = self

        class Handler(socketserver.StreamRequestHandler):
            timeout = READ_TIMEOUT_S

            def handle(self) -> None:
                if not intake._stopping.is_set():  # the connection that wakes the accept loop to stop
                    intake._serve(self.rfile, self.wfile)

        try:
            self._server = _Server((INTAKE_HOST, self._port), Handler)
        except OSError as exc:
            raise OSError(f"browser intake cannot listen on {INTAKE_HOST}:{self._port}: {exc.strerror}") from None
        host, port = self.address
        self._intake_text = json.dumps({"host": host, "port": port, "pid": os.getpid()})
        write_atomically(self._home.browser_intake_file, self._intake_text.encode())
        self._stopping.clear()
        self._thread = threading.Thread(target=self._accept, args=(self._server,), name="browser-intake", daemon=True)
        self._thread.start()
        log.info("browser intake listening on %s:%d", host, port)
        return self

    def _accept(self, server: _Server) -> None:
        # Blocks until a connection comes, rather than serve_forever's wake-up every poll interval: an idle
        # intake costs no CPU at all (bench/collector_resources.py). `stop` wakes it with a connection of its own.
        while not self._stopping.is_set():
            server.handle_request()

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        with contextlib.suppress(OSError):
            socket.create_connection(self.address, timeout=READ_TIMEOUT_S).close()
        if self._thread is not None:
            self._thread.join(READ_TIMEOUT_S)
        self._server.server_close()
        self._server = None
        # Remove the address only if it is still ours: a newer collector may have written its own.
        with contextlib.suppress(OSError):
            if self._home.browser_intake_file.read_text() == self._intake_text:
                self._home.browser_intake_file.unlink()

    def __enter__(self) -> BrowserIntake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def latest(self, now_ms: int, max_age_ms: int) -> BrowserReport | None:
        """The freshest report, of any reporting browser, still fresh at `now_ms` (`is_fresh`)."""
        with self._lock:
            fresh = [
                report
                for source, report in self._latest.items()
                if is_fresh(report.received_ms, now_ms, max_age_ms)
                and now_ms - self._left.get(source, now_ms) <= LEFT_GRACE_MS
            ]
        return max(fresh, key=lambda r: r.received_ms, default=None)

    @property
    def accepted(self) -> int:
        with self._lock:
            return self._accepted

    @property
    def refused(self) -> dict[str, int]:
        """Reports refused so far, by reason: bad_secret, malformed, incognito."""
        with self._lock:
            return dict(self._refused)

    def _serve(self, rfile, wfile) -> None:
        try:
            line = rfile.readline(MAX_REPORT_BYTES + 1)
        except (OSError, TimeoutError):
            return
        if not line:
            return
        if len(line) > MAX_REPORT_BYTES or not line.endswith(b"\n"):
            verdict = Verdict(refused="malformed")
        else:
            verdict = judge_report(line, self._secret, int(self._clock() * 1000))
        self._record(verdict)
        answer = {"ok": True} if verdict.refused is None else {"ok": False, "refused": verdict.refused}
        with contextlib.suppress(OSError):
            wfile.write(json.dumps(answer).encode() + b"\n")

    def _record(self, verdict: Verdict) -> None:
        with self._lock:
            if verdict.refused is not None:
                self._refused[verdict.refused] += 1
            if verdict.source is not None:
                if verdict.refused is not None:
                    # A private window's tab: the earlier tab is hidden at once, never carried into it.
                    self._latest.pop(verdict.source, None)
                    self._left.pop(verdict.source, None)
                elif verdict.report is None:
                    if verdict.source in self._latest:
                        self._left.setdefault(verdict.source, int(self._clock() * 1000))
                else:
                    self._latest[verdict.source] = verdict.report
                    self._left.pop(verdict.source, None)
                    self._accepted += 1
            # Sources come and go with browser restarts: forget the ones long silent.
            if len(self._latest) > 32:
                newest = sorted(self._latest.items(), key=lambda item: item[1].received_ms)[-32:]
                self._latest = dict(newest)
                self._left = {source: ms for source, ms in self._left.items() if source in self._latest}
        if verdict.report is not None and self._on_report is not None:
            self._on_report(verdict.report)


@dataclass(frozen=True)
class BrowserUrls:
    """The tracker's URL source (`collector.tracker.UrlSource`): the intake's freshest report joined with the
    window in front by `browser_url`."""

    intake: BrowserIntake
    max_age_ms: int

    def url_for(self, app: str, title: str | None, now_ms: int) -> str | None:
        return browser_url(app, title, self.intake.latest(now_ms, self.max_age_ms), now_ms, self.max_age_ms)


def send_line(address: tuple[str, int], line: bytes, timeout_s: float = 2.0) -> dict:
    """Send one line to an intake and return its answer (raises OSError or ValueError when there is none)."""
    with socket.create_connection(address, timeout=timeout_s) as conn:
        conn.sendall(line)
        conn.shutdown(socket.SHUT_WR)
        reply = conn.makefile("rb").readline(4096)
    answer = json.loads(reply)
    if not isinstance(answer, dict):
        raise ValueError(f"unexpected answer from the browser intake: {reply[:80]!r}")
    return answer
