"""The real ActivityWatch for the tests and the benchmark that hold Productimon's totals against ActivityWatch's own:
aw-server 0.12.0 and aw-client 0.5.15 from PyPI, pinned in infra/activitywatch-requirements.txt.

ActivityWatch lives in a venv of its own (`ensure_aw_env`), never in our .venv: its pins (Flask 2.2, peewee 3) are
not ours, and nothing of ours imports aw_client. So whatever needs ActivityWatch's code runs as a child process of that
venv's python: the server (`AwServer`), the client that sends a day's heartbeats (`record_day`) and the client that
asks the server for ActivityWatch's own totals (`canonical_totals`). This process only plans what to send and reads
JSON back. Every child gets HOME and the XDG directories in a temporary directory, where aw-server and aw-client write
their config, database, logs, locks and queues: nothing lands in the real home.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from infra.processes import free_port
from testbed.desktop import stop_children

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO / "infra" / "activitywatch-requirements.txt"
MARKER = ".productimon-requirements.sha256"  # inside the venv: the hash of the requirements it was built from
CLIENT_NAME = "productimon-testbed"

# The buckets ActivityWatch's own watchers create, by the names a script gives them (`plan_heartbeats`).
WINDOW, AFK, WEB = "window", "afk", "web"
WATCHER_TYPES = {WINDOW: "currentwindow", AFK: "afkstatus", WEB: "web.tab.current"}
# A bucket id's type when a script names a bucket by its id and gives no type.
TYPES_BY_PREFIX = {
    "aw-watcher-window_": "currentwindow",
    "aw-watcher-afk_": "afkstatus",
    "aw-watcher-web-": "web.tab.current",
}

# aw-client's fullDesktopQuery cuts each list to 100 events (apps, titles, URLs, domains); ours asks for this many and
# checks that fewer came back, so no app or site is ever left out of a total.
QUERY_LIMIT = 100_000


def aw_venv_dir() -> Path:
    return Path(os.environ.get("PRODUCTIMON_AW_VENV") or REPO / ".venv-activitywatch")


def requirements_hash(requirements: Path = REQUIREMENTS) -> str:
    return hashlib.sha256(requirements.read_bytes()).hexdigest()


def ensure_aw_env() -> Path:
    """The python of ActivityWatch's venv ($PRODUCTIMON_AW_VENV, by default <repo>/.venv-activitywatch): built once
    (about 10 s from PyPI) and reused while the hash in its marker file matches the requirements file; built anew,
    from nothing, when they differ or an earlier build did not finish (the marker is written last).

    Built from this interpreter's Python (3.11, the one the pins were frozen on: rpds-py's wheels are per version). A
    lock file beside the venv keeps two pytest-xdist workers from building it at once: the second waits, then finds
    the first one's venv ready."""
    venv = aw_venv_dir()
    python = venv / "bin" / "python"
    wanted = requirements_hash()
    if _built(venv, wanted):
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _built(venv, wanted):
            return python
        shutil.rmtree(venv, ignore_errors=True)
        print(f"activitywatch: installing {REQUIREMENTS.name} into {venv} (once, ~10 s)", file=sys.stderr, flush=True)
        for step, argv in (
            ("python -m venv", [sys.executable, "-m", "venv", str(venv)]),
            (
                "pip install",
                [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
            ),
        ):
            done = subprocess.run(argv, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
            if done.returncode != 0:
                raise RuntimeError(f"building {venv}: {step} failed: {tail(done.stdout + done.stderr)}")
        (venv / MARKER).write_text(wanted + "\n")
    return python


def _built(venv: Path, wanted: str) -> bool:
    try:
        return (venv / MARKER).read_text().strip() == wanted and (venv / "bin" / "python").exists()
    except OSError:
        return False


def tail(text: str | bytes | None, limit: int = 500) -> str:
    """The end of a log or of stderr as one line (its lines joined by " | ")."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return " | ".join(lines)[-limit:] or "(nothing)"


def aw_env(home: Path) -> dict[str, str]:
    """The whole environment of an ActivityWatch child: nothing of ours (no PYTHONPATH, no AW_PROFILE), and every
    directory platformdirs hands aw-core inside `home`."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_STATE_HOME": str(home / "state"),
    }


class AwServer:
    """aw-server on 127.0.0.1 at a free port, with its home, database and log in `directory`.

    aw-server 0.12.0's flags: --host, --port, --storage (peewee, sqlite or memory), --testing, --verbose, --log-json,
    --cors-origins, --custom-static. `testing` is off by default: it turns on Flask's debug mode and pretty-printed
    JSON, which is not how a person's aw-server runs, and the data is private to `directory` either way."""

    def __init__(self, directory: Path, *, testing: bool = False, storage: str = "peewee") -> None:
        self.directory = directory
        self.testing = testing
        self.storage = storage
        self.port = free_port()
        self.log_path = directory / "aw-server.log"
        self._proc: subprocess.Popen | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout_s: float = 60) -> AwServer:
        python = ensure_aw_env()
        home = self.directory / "home"
        home.mkdir(parents=True, exist_ok=True)
        argv = [str(python), "-I", "-m", "aw_server", "--host", "127.0.0.1", "--port", str(self.port)]
        argv += ["--storage", self.storage, *(["--testing"] if self.testing else [])]
        self._log = open(self.log_path, "ab")  # noqa: SIM115  (closed in stop)
        self._proc = subprocess.Popen(
            argv,
            env=aw_env(home),
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_ready(ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"aw-server exited with {self._proc.returncode}: {tail(self.log_text())}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/0/info", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        log = tail(self.log_text())
        raise RuntimeError(f"aw-server did not answer {self.url}/api/0/info in {timeout_s:.0f} s: {log}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def info(self) -> dict:
        """What /api/0/info says: hostname, version (0.12.0 says "v0.12.0b2.dev+f66fd9d"), testing, device_id."""
        return _get_json(f"{self.url}/api/0/info")

    def stop(self) -> None:
        """Terminate, and kill after 5 s (testbed.desktop.stop_children)."""
        if self._proc is not None:
            stop_children([self._proc])
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> AwServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_aw_python(code: str, *args: str, stdin: str | None = None, timeout_s: float = 600) -> str:
    """Runs `code` with ActivityWatch's python (`python -I -c code *args`: isolated mode, so neither our repo nor our
    environment is on its path) in a fresh temporary home; returns its stdout. Raises with the end of its stderr when
    it fails or runs past `timeout_s`."""
    python = ensure_aw_env()
    with tempfile.TemporaryDirectory(prefix="productimon-aw-") as home:
        try:
            done = subprocess.run(
                [str(python), "-I", "-c", code, *args],
                input=stdin,
                env=aw_env(Path(home)),
                cwd=home,
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired as expired:
            raise RuntimeError(f"ActivityWatch's python ran past {timeout_s:.0f} s: {tail(expired.stderr)}") from None
    if done.returncode != 0:
        raise RuntimeError(f"ActivityWatch's python exited with {done.returncode}: {tail(done.stderr)}")
    return done.stdout


def bucket_id(name: str, hostname: str) -> str:
    """A script's bucket name as ActivityWatch's watchers name the bucket: "window", "afk", "web" (Chrome's
    aw-watcher-web) and "web-<browser>" (e.g. "web-firefox"); any other name is taken as a whole bucket id."""
    if name in (WINDOW, AFK):
        return f"aw-watcher-{name}_{hostname}"
    if name == WEB:
        return f"aw-watcher-web-chrome_{hostname}"
    if name.startswith("web-"):
        return f"aw-watcher-{name}_{hostname}"
    return name


def _aware(iso: str) -> datetime:
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        raise ValueError(f"{iso!r} has no time zone (ActivityWatch wants every timestamp with one)")
    return moment.astimezone(UTC)


def plan_heartbeats(hostname: str, script: list[dict]) -> tuple[dict[str, str], list[list]]:
    """The buckets to create ({bucket id: type}) and the heartbeats to send ([bucket id, ISO timestamp, data,
    pulsetime], in time order) for a script (see `record_day`). The three buckets of ActivityWatch's own watchers are
    always created, used or not."""
    buckets = {bucket_id(name, hostname): kind for name, kind in WATCHER_TYPES.items()}
    segments: list[tuple[datetime, datetime, str, dict]] = []
    for segment in script:
        bid = bucket_id(segment["bucket"], hostname)
        by_prefix = (kind for prefix, kind in TYPES_BY_PREFIX.items() if bid.startswith(prefix))
        kind = segment.get("type") or buckets.get(bid) or next(by_prefix, None)
        if kind is None:
            raise ValueError(f"bucket {bid!r} needs a 'type' (e.g. 'app.editor.activity')")
        buckets[bid] = kind
        start, end = _aware(segment["start"]), _aware(segment["end"])
        if end < start or segment.get("every_s", 5) <= 0:
            raise ValueError(f"segment {segment!r}: end before start, or every_s not above 0")
        segments.append((start, end, bid, segment))
    # In time order, so that where one segment of a bucket ends and the next begins, the end's heartbeat goes first.
    segments.sort(key=lambda s: s[0])
    last_end: dict[str, datetime] = {}
    beats: list[tuple[datetime, int, list]] = []
    for start, end, bid, segment in segments:
        if bid in last_end and start < last_end[bid]:
            raise ValueError(f"two segments of {bid} overlap at {start.isoformat()}")
        last_end[bid] = end
        every = timedelta(seconds=segment.get("every_s", 5))
        pulsetime = segment.get("pulsetime", every.total_seconds() + 1)
        at = start
        while True:
            beats.append((at, len(beats), [bid, at.isoformat(), segment["data"], pulsetime]))
            if at >= end:
                break
            at = min(at + every, end)
    beats.sort(key=lambda beat: (beat[0], beat[1]))
    return buckets, [beat for _, _, beat in beats]


_RECORD = """
import json, sys
from datetime import datetime
from aw_client import ActivityWatchClient
from aw_core.models import Event

plan = json.load(sys.stdin)
client = ActivityWatchClient(plan["client"], host=plan["host"], port=plan["port"])
client.client_hostname = plan["hostname"]
for bucket_id, bucket_type in plan["buckets"].items():
    client.create_bucket(bucket_id, bucket_type)
for bucket_id, timestamp, data, pulsetime in plan["beats"]:
    event = Event(timestamp=datetime.fromisoformat(timestamp), data=data)
    client.heartbeat(bucket_id, event, pulsetime=pulsetime, queued=False)
print(len(plan["beats"]))
"""


def record_day(server_url: str, hostname: str, script: list[dict]) -> None:
    """Sends a script's heartbeats through the real aw_client.ActivityWatchClient (client_hostname = `hostname`), one
    python process for the whole script, each heartbeat synchronous (queued=False), as ActivityWatch's watchers would.

    A script is a list of segments, each one state of one bucket:
        {"bucket": "window", "start": "2026-03-02T09:00:00+00:00", "end": "2026-03-02T09:40:00+00:00",
         "every_s": 5, "data": {"app": "Code", "title": "main.py"}}
    "bucket": "window" (aw-watcher-window_<hostname>, data {"app", "title"}), "afk" (aw-watcher-afk_<hostname>, data
    {"status": "not-afk" | "afk"}), "web" (aw-watcher-web-chrome_<hostname>, data {"url", "title", "audible",
    "incognito"}), "web-<browser>", or a whole bucket id with a "type". Heartbeats go at start, start + every_s, ...,
    and at end (every_s is 5 unless given), with pulsetime every_s + 1 (or the segment's "pulsetime"), so the server
    merges a segment into one event from start to end. As in ActivityWatch, a following segment with the same data
    that starts within the pulsetime is merged with it, gap and all. ActivityWatch counts web time only while the
    window bucket's app is one of its names for that browser (for Chrome e.g. "Google-chrome", "Chromium").

    Speed: aw-client opens a new connection for every heartbeat and aw-server commits each one, 4 to 6 ms a
    heartbeat here: a day of 8 h on three buckets takes about 70 s with every_s 5 (17,300 heartbeats), 18 s with 30
    and 8 s with 60. The totals do not depend on every_s: use 30 or 60 for whole days."""
    buckets, beats = plan_heartbeats(hostname, script)
    address = urlsplit(server_url)
    plan = {"client": CLIENT_NAME, "host": address.hostname, "port": address.port, "hostname": hostname}
    plan |= {"buckets": buckets, "beats": beats}
    run_aw_python(_RECORD, stdin=json.dumps(plan), timeout_s=120 + 0.05 * len(beats))


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as answer:
        return json.load(answer)


def post_json(url: str, body: object, timeout_s: float = 3600) -> object:
    """POST `body` as JSON; what came back, parsed (None for an empty answer)."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as answer:
        text = answer.read()
    return json.loads(text) if text.strip() else None


def time_per_app_query(hostname: str) -> list[str]:
    """ActivityWatch's time per app, as its web UI and aw-client's fullDesktopQuery ask it: the window watcher's
    events intersected with the AFK watcher's not-afk time, merged by app."""
    return [
        f'window = flood(query_bucket("aw-watcher-window_{hostname}"));',
        f'afk = flood(query_bucket("aw-watcher-afk_{hostname}"));',
        'not_afk = filter_keyvals(afk, "status", ["not-afk"]);',
        "window = filter_period_intersect(window, not_afk);",
        'events = merge_events_by_keys(window, ["app"]);',
        "RETURN = sort_by_duration(events);",
    ]


def time_per_app_of(server: AwServer, hostname: str, start: datetime, end: datetime) -> dict[str, float]:
    """{app: seconds} in [start, end), asked of a running aw-server over its REST query API (/api/0/query/)."""
    answer = post_json(
        f"{server.url}/api/0/query/",
        {"timeperiods": [f"{start.isoformat()}/{end.isoformat()}"], "query": time_per_app_query(hostname)},
    )
    if not isinstance(answer, list) or not answer:
        raise RuntimeError(f"aw-server's query answered {str(answer)[:200]!r}, not a list of results")
    return {event["data"]["app"]: float(event["duration"]) for event in answer[0]}


def export_all(server_url: str) -> dict:
    """The server's own export (GET /api/0/export): {"buckets": {bucket id: {"id", "created", "name", "type",
    "client", "hostname", "data", "events": [{"timestamp", "duration", "data"}]}}}, timestamps ISO 8601 with +00:00,
    durations in seconds (float)."""
    return _get_json(f"{server_url}/api/0/export")


_QUERY = """
import json, sys
from aw_client import queries

p = json.load(sys.stdin)
queries.default_limit = p["limit"]
params = queries.DesktopQueryParams(
    bid_window=p["window"],
    bid_afk=p["afk"],
    bid_browsers=p["browsers"],
    classes=[(["Uncategorized"], {"type": "none"})],
)
print(queries.fullDesktopQuery(params))
"""

_RUN_QUERY = """
import json, sys
from datetime import datetime
from aw_client import ActivityWatchClient

p = json.load(sys.stdin)
client = ActivityWatchClient(p["client"], host=p["host"], port=p["port"])
period = (datetime.fromisoformat(p["start"]), datetime.fromisoformat(p["end"]))
print(json.dumps(client.query(p["query"], [period])[0]))
"""

# Where the browser half of fullDesktopQuery starts merging (by URL, then by domain, then the sum).
_BROWSER_MERGE = "browser_urls = merge_events_by_keys(browser_events"
_BROWSER_NOT_AFK = "browser_events = filter_period_intersect(browser_events, not_afk);"


def adapt_query(query: str, afk_filter_for_browser: bool) -> str:
    """fullDesktopQuery's text made to serve here (pure; it checks the text it edits: another aw-client fails loudly).

    - aw-client 0.5.15 writes the browser half of its query as a plain string, not an f-string, so the server gets
      "limit_events(browser_urls, {default_limit})" as is, reads "{...}" as a dict and refuses the whole query (400,
      "Key in dict is not a str"): the limit is written in.
    - `afk_filter_for_browser`: one line of ours, not ActivityWatch's, before the browser events are merged:
      browser_events = filter_period_intersect(browser_events, not_afk). ActivityWatch counts a site while the
      browser is the window in front, AFK or not; Productimon counts a site only while the person is active. not_afk
      is ActivityWatch's own at that point: the afk bucket's not-afk events, joined with audible browser tabs."""
    query = query.replace("{default_limit}", str(QUERY_LIMIT))
    if afk_filter_for_browser:
        if query.count(_BROWSER_MERGE) != 1:
            raise RuntimeError(f"fullDesktopQuery's text changed: {_BROWSER_MERGE!r} is not in it once")
        query = query.replace(_BROWSER_MERGE, f"{_BROWSER_NOT_AFK}\n{_BROWSER_MERGE}")
    return query


def desktop_query(hostname: str, browser: str = "chrome", afk_filter_for_browser: bool = True) -> str:
    """The query `canonical_totals` runs: aw_client.queries.fullDesktopQuery for the watchers' buckets of
    `hostname`, limits raised, through `adapt_query`. Categories are given (everything "Uncategorized") so that
    aw-client does not ask a server for its settings."""
    params = {
        "window": bucket_id(WINDOW, hostname),
        "afk": bucket_id(AFK, hostname),
        "browsers": [bucket_id(f"web-{browser}", hostname)],
        "limit": QUERY_LIMIT,
    }
    return adapt_query(run_aw_python(_QUERY, stdin=json.dumps(params), timeout_s=60), afk_filter_for_browser)


def canonical_totals(
    server_url: str,
    hostname: str,
    start_iso: str,
    end_iso: str,
    browser: str = "chrome",
    afk_filter_for_browser: bool = True,
) -> dict:
    """{"apps": {app: seconds}, "sites": {domain: seconds}} between start and end, as ActivityWatch computes them:
    its own fullDesktopQuery (`desktop_query`), run by the server through aw_client's client.query. Apps come from the
    query's window.app_events (AFK time left out, as ActivityWatch does), sites from browser.domains ($domain); with
    `afk_filter_for_browser` (our one added line, see `adapt_query`) a site's AFK time is left out too."""
    address = urlsplit(server_url)
    run = {"client": CLIENT_NAME, "host": address.hostname, "port": address.port}
    run |= {"start": _aware(start_iso).isoformat(), "end": _aware(end_iso).isoformat()}
    run["query"] = desktop_query(hostname, browser, afk_filter_for_browser)
    result = json.loads(run_aw_python(_RUN_QUERY, stdin=json.dumps(run), timeout_s=300))
    apps, domains = result["window"]["app_events"], result["browser"]["domains"]
    if max(len(apps), len(domains)) >= QUERY_LIMIT:
        raise RuntimeError(f"ActivityWatch's query returned {QUERY_LIMIT} events in a list: totals may be cut")
    return {
        "apps": {event["data"]["app"]: event["duration"] for event in apps},
        "sites": {event["data"]["$domain"]: event["duration"] for event in domains},
    }


def generated_export(days: int = 365, hostname: str = "bench-laptop", seed: int = 22) -> dict:
    """An ActivityWatch export of `days` days as its window, AFK and Chrome watchers would have written it, ending
    yesterday: about 10 active hours on a weekday and 3 on a weekend day; window events of ~19 s on average across
    40 apps (a long tail), a third of the time in Chrome on ~400 sites (a long tail, one to several tabs per visit),
    tens of thousands of distinct titles, breaks of 5 to 60 minutes between stretches of work. About 2,900 events a
    weekday: a year is about a million. Pure and seeded: the same arguments give the same export."""
    rng = random.Random(seed)
    apps = [f"App {n:02d}" for n in range(39)] + ["Google-chrome"]
    app_weights = [1 / (n + 1) for n in range(39)] + [6.0]
    sites = [f"https://site{n:03d}.example/{n % 7}/" for n in range(400)]
    site_weights = [1 / (n + 1) ** 0.9 for n in range(400)]
    window, afk, web = [], [], []
    first = (datetime.now(UTC) - timedelta(days=days)).replace(hour=8, minute=0, second=0, microsecond=0)

    def event(at: datetime, seconds: float, data: dict) -> dict:
        return {"timestamp": at.isoformat(), "duration": round(seconds, 3), "data": data}

    for day in range(days):
        start = first + timedelta(days=day, minutes=rng.randint(0, 90))
        active_h = 10 if start.weekday() < 5 else 3
        at, end = start, start + timedelta(hours=active_h)
        while at < end:
            stretch_end = min(end, at + timedelta(minutes=rng.randint(40, 110)))
            afk.append(event(at, (stretch_end - at).total_seconds(), {"status": "not-afk"}))
            while at < stretch_end:
                seconds = min(rng.expovariate(1 / 19) + 1, (stretch_end - at).total_seconds())
                app = rng.choices(apps, app_weights)[0]
                title = f"{app} document {rng.randint(1, 120)}" if app != "Google-chrome" else "Chrome"
                window.append(event(at, seconds, {"app": app, "title": title}))
                if app == "Google-chrome":
                    tab_at, left = at, seconds
                    while left > 0:
                        tab = min(left, rng.expovariate(1 / 9) + 1)
                        url = rng.choices(sites, site_weights)[0] + f"page{rng.randint(1, 300)}"
                        web.append(event(tab_at, tab, {"url": url, "title": f"page {rng.randint(1, 9999)}",
                                                       "audible": False, "incognito": False}))  # fmt: skip
                        tab_at, left = tab_at + timedelta(seconds=tab), left - tab
                at += timedelta(seconds=seconds)
            pause = timedelta(minutes=rng.randint(5, 60))
            if stretch_end < end:
                afk.append(event(stretch_end, pause.total_seconds(), {"status": "afk"}))
            at = stretch_end + pause

    def bucket(kind: str, watcher: str, events: list[dict]) -> tuple[str, dict]:
        bucket_id = f"{watcher}_{hostname}"
        created = first.isoformat()
        return bucket_id, {"id": bucket_id, "created": created, "name": None, "type": kind, "client": watcher,
                           "hostname": hostname, "data": {}, "events": events}  # fmt: skip

    return {
        "buckets": dict(
            [
                bucket("currentwindow", "aw-watcher-window", window),
                bucket("afkstatus", "aw-watcher-afk", afk),
                bucket("web.tab.current", "aw-watcher-web-chrome", web),
            ]
        )
    }
