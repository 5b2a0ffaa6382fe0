"""ActivityWatch exports, read and turned into ActivityInterval records (docs/activitywatch.md).

Pure: no file, no network, no clock. An export is the JSON that aw-server's `/api/0/export` and its web UI write:
`{"buckets": {bucket_id: {"id", "type", "client", "hostname", "created", "events": [{"timestamp", "duration",
"data"}]}}}`. `read_export` checks it and says, one line each, what it could not read; `plan_import` turns what it
read into intervals, one stream per (host, source):

- window and AFK buckets of a host become that host's intervals: the window in front, idle where the person was
  away (or where no AFK watcher said they were there), as ActivityWatch's own canonical query counts them;
- a web bucket gives the URL of the tab in front while its browser's window was in front (the worker trims it to
  the site, as always);
- an editor, terminal, media or stopwatch bucket becomes intervals of that source kind, a stream of its own, so
  they never add to the time in front;
- any other bucket type is refused, with its name, and nothing of it is imported.

ActivityWatch's events may overlap and leave short gaps between heartbeats. Each bucket's events are first laid
flat (where two overlap, the one that began later is in front, as ActivityWatch's flooding decides), then gaps of
up to `PULSETIME_MS` are filled (equal data merges; otherwise each side takes half), so per-app totals match what
ActivityWatch shows. Every interval's event id is derived from the bucket and the times it covers, so importing
the same export twice yields the same records, which the gateway recognises.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")

WINDOW = "currentwindow"
AFK = "afkstatus"
WEB = "web.tab.current"
# The source kind of every interval a window bucket gives; other kinds name what their bucket recorded.
IN_FRONT = "window"
# ActivityWatch bucket types whose events become intervals of a source kind of their own.
SOURCE_KINDS = {
    "app.editor.activity": "editor",
    "app.terminal.activity": "terminal",
    "currently-playing": "media",
    "general.stopwatch": "stopwatch",
}
# Filled between two events of a bucket, as ActivityWatch's `flood` does by default (5 s).
PULSETIME_MS = 5_000
# Longer activity is cut in pieces this long: like the collector's intervals, each lies in few hours.
MAX_PIECE_MS = 3_600_000
# Event ids of imported intervals are UUIDv5 in this namespace, from the bucket and the times they cover.
NAMESPACE = uuid.UUID("6f0d2b1e-5a57-4c1e-9a0e-5f1f3c7a9b21")
# A window bucket's app counts as a browser when its name, in lower case, holds one of the browser's words.
BROWSER_APPS = {
    "chrome": ("chrome", "chromium", "brave"),
    "firefox": ("firefox", "nightly", "librewolf", "waterfox"),
    "opera": ("opera",),
    "brave": ("brave",),
    "edge": ("msedge", "microsoft edge", "microsoft-edge"),
    "vivaldi": ("vivaldi",),
    "safari": ("safari",),
}


class NotAnExport(ValueError):
    """The file is not an ActivityWatch export at all (or is cut short); the message says what it is instead."""


class Event(NamedTuple):  # tuples: a year's export makes millions of these, several times faster than dataclasses
    start_ms: int
    end_ms: int
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Bucket:
    id: str
    type: str
    client: str
    hostname: str
    events: tuple[Event, ...]


@dataclass(frozen=True)
class Problem:
    """Something of the export not imported, and why: a whole bucket (`index` None) or one of its events."""

    bucket_id: str
    index: int | None
    reason: str
    note: bool = False  # worth knowing, but nothing was refused

    def line(self) -> str:
        where = f"bucket {self.bucket_id!r}" + ("" if self.index is None else f", event {self.index}")
        return f"{where}: {self.reason}"


@dataclass
class Export:
    buckets: list[Bucket]
    problems: list[Problem]
    events: int  # events in the file, read or not


@dataclass(frozen=True)
class StreamKey:
    """One stream of imported intervals: the host whose buckets it comes from and its source kind."""

    host: str
    source: str = IN_FRONT


@dataclass
class ImportPlan:
    streams: dict[StreamKey, list[dict[str, Any]]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    events: int = 0  # events in the file
    used: int = 0  # events read and turned into intervals (their time, possibly merged with others')

    @property
    def intervals(self) -> int:
        return sum(len(records) for records in self.streams.values())


def read_export(raw: bytes | str) -> Export:
    """The export's buckets and events, checked; NotAnExport when the file is no export (or is truncated)."""
    try:
        document = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise NotAnExport(f"not an ActivityWatch export: the file is not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        # The JSON ran out: at its very end, or inside a string that never closes.
        if exc.pos >= len(exc.doc.rstrip()) or exc.msg.startswith("Unterminated string"):
            raise NotAnExport(
                f"the export is cut short: it ends at line {exc.lineno}, column {exc.colno} in the middle of the "
                "JSON (an incomplete download or copy?)"
            ) from None
        raise NotAnExport(f"not an ActivityWatch export: not JSON ({exc.msg} at line {exc.lineno})") from None
    buckets = document.get("buckets") if isinstance(document, dict) else None
    if not isinstance(buckets, dict):
        raise NotAnExport(
            "not an ActivityWatch export: it has no 'buckets' object (export from ActivityWatch's web UI, "
            "Settings > Export all buckets as JSON, or GET /api/0/export)"
        )
    read: list[Bucket] = []
    problems: list[Problem] = []
    total = 0
    for key, bucket in buckets.items():
        if not isinstance(bucket, dict):
            problems.append(Problem(str(key), None, "is not an object"))
            continue
        events = bucket.get("events")
        if not isinstance(events, list):
            problems.append(Problem(str(key), None, "has no list of events"))
            continue
        total += len(events)
        kind = bucket.get("type")
        if not isinstance(kind, str) or not kind:
            problems.append(Problem(str(key), None, f"has no type; its {len(events)} events are not imported"))
            continue
        if kind not in (WINDOW, AFK, WEB) and kind not in SOURCE_KINDS:
            problems.append(
                Problem(str(key), None, f"has the unknown type {kind!r}; its {len(events)} events are not imported")
            )
            continue
        good, bad = _events(str(key), events)
        problems += bad
        hostname = bucket.get("hostname")
        read.append(
            Bucket(
                str(key),
                kind,
                str(bucket.get("client") or ""),
                hostname if isinstance(hostname, str) and hostname else "unknown",
                tuple(good),
            )
        )
    return Export(read, problems, total)


def _events(bucket_id: str, events: list[Any]) -> tuple[list[Event], list[Problem]]:
    good: list[Event] = []
    bad: list[Problem] = []
    for index, event in enumerate(events):
        try:
            good.append(read_event(event))
        except ValueError as exc:
            bad.append(Problem(bucket_id, index, str(exc)))
    return good, bad


_FRACTION = re.compile(r"(\.\d{6})\d+")


def _iso_for_python(stamp: str) -> str:
    """An ISO 8601 timestamp as every Python the collector runs on reads it (3.10's fromisoformat takes neither
    a "Z" nor more than six fractional digits, which aw-server-rust and other watchers write)."""
    if stamp[-1:] in ("Z", "z"):
        stamp = stamp[:-1] + "+00:00"
    return _FRACTION.sub(r"\1", stamp, count=1)


def read_event(event: Any) -> Event:
    """One ActivityWatch event; ValueError naming what is wrong with it."""
    if not isinstance(event, dict):
        raise ValueError("is not an object")
    stamp, duration, data = event.get("timestamp"), event.get("duration", 0), event.get("data", {})
    if not isinstance(stamp, str):
        raise ValueError("has no timestamp")
    try:
        start = datetime.fromisoformat(_iso_for_python(stamp))
    except ValueError:
        raise ValueError(f"has the timestamp {stamp[:40]!r}, which is not ISO 8601") from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)  # ActivityWatch writes UTC
    if isinstance(duration, bool) or not isinstance(duration, int | float) or not math.isfinite(duration):
        raise ValueError(f"has the duration {duration!r}, which is not a number of seconds")
    if duration < 0:
        raise ValueError(f"has a negative duration ({duration:g} s)")
    if not isinstance(data, dict):
        raise ValueError("has data that is not an object")
    start_ms = int(start.timestamp() * 1000)
    return Event(start_ms, start_ms + round(duration * 1000), data)


def plan_import(export: Export) -> ImportPlan:
    """The intervals of every host's buckets, per stream, ordered by start; what could not be used is a problem."""
    plan = ImportPlan(problems=list(export.problems), events=export.events)
    by_host: dict[str, list[Bucket]] = {}
    for bucket in export.buckets:
        by_host.setdefault(bucket.hostname, []).append(bucket)
    for host, buckets in sorted(by_host.items()):
        windows = [b for b in buckets if b.type == WINDOW]
        afk = [b for b in buckets if b.type == AFK]
        webs = [b for b in buckets if b.type == WEB]
        if windows:
            plan.streams[StreamKey(host)] = _in_front(windows, afk, webs, plan)
        else:
            for bucket in afk + webs:
                plan.problems.append(
                    Problem(bucket.id, None, f"host {host!r} has no window bucket, which its events describe")
                )
        for bucket in buckets:
            if bucket.type in SOURCE_KINDS:
                key = StreamKey(host, SOURCE_KINDS[bucket.type])
                records = plan.streams.setdefault(key, [])
                records += _of_source(bucket)
                records.sort(key=lambda r: (r["start"], r["end"]))
                plan.used += len(bucket.events)
    return plan


# -- laying a bucket's events flat -------------------------------------------------------------------------


class Span(NamedTuple):
    start: int
    end: int
    data: Mapping[str, Any]
    origin: int  # where the event began: the piece's identity, kept through merges


def flat(events: Iterable[Event]) -> list[Span]:
    """The events without overlap: at every moment the event that began last (the longer of two that began
    together) is the one in front. Ordered; a piece of an event interrupted by another resumes after it."""
    spans: list[Span] = []
    open_: list[Event] = []  # events begun and not yet ended; the latest begun on top
    now: int | None = None

    def emit_until(until: int) -> None:
        nonlocal now
        while open_ and now is not None and now < until:
            top = open_[-1]
            if top.end_ms <= now:
                open_.pop()
                continue
            end = min(top.end_ms, until)
            _append(spans, Span(now, end, top.data, top.start_ms))
            now = end
        now = until

    for event in sorted(events, key=lambda e: (e.start_ms, e.end_ms - e.start_ms)):
        if now is None:
            now = event.start_ms
        emit_until(event.start_ms)
        if event.end_ms > event.start_ms:
            open_.append(event)
    if open_:
        emit_until(max(e.end_ms for e in open_))
    return spans


def _append(spans: list[Span], span: Span) -> None:
    last = spans[-1] if spans else None
    if last is not None and last.end == span.start and last.data == span.data:
        spans[-1] = Span(last.start, span.end, last.data, last.origin)
    else:
        spans.append(span)


def flooded(spans: list[Span], pulsetime_ms: int = PULSETIME_MS) -> list[Span]:
    """Flat spans with the gaps of up to `pulsetime_ms` between them filled: equal neighbours merge, others
    each extend halfway across."""
    out: list[Span] = []
    for span in spans:
        last = out[-1] if out else None
        gap = span.start - last.end if last is not None else None
        if last is not None and gap is not None and 0 < gap <= pulsetime_ms:
            if last.data == span.data:
                out[-1] = Span(last.start, span.end, last.data, last.origin)
                continue
            middle = last.end + gap // 2
            out[-1] = Span(last.start, middle, last.data, last.origin)
            span = Span(middle, span.end, span.data, span.origin)
        out.append(span)
    return out


def laid_flat(buckets: Iterable[Bucket]) -> list[Span]:
    return flooded(flat(e for b in buckets for e in b.events))


def _cut(items: Iterable[tuple[Span, T]], cuts: list[tuple[int, int]]) -> Iterator[tuple[Span, T, bool]]:
    """Each (ordered, disjoint) span split by the (ordered, disjoint) `cuts`: (piece, its tag, inside a cut)."""
    i = 0
    for span, tag in items:
        at = span.start
        while i < len(cuts) and cuts[i][1] <= at:
            i += 1
        j = i
        while at < span.end:
            if j < len(cuts) and cuts[j][0] <= at < cuts[j][1]:
                end, inside = min(span.end, cuts[j][1]), True
            else:
                end, inside = (min(span.end, cuts[j][0]) if j < len(cuts) else span.end), False
            yield Span(at, end, span.data, span.origin), tag, inside
            at = end
            if j < len(cuts) and cuts[j][1] <= at:
                j += 1


def _in_front(windows: list[Bucket], afk: list[Bucket], webs: list[Bucket], plan: ImportPlan) -> list[dict[str, Any]]:
    shown = laid_flat(windows)
    plan.used += sum(len(b.events) for b in windows + afk + webs)
    host, bucket = windows[0].hostname, windows[0].id
    if afk:
        present = [(s.start, s.end) for s in laid_flat(afk) if s.data.get("status") == "not-afk"]
        pieces = [(piece, active) for piece, _, active in _cut(((s, None) for s in shown), present)]
    else:
        plan.problems.append(
            Problem(bucket, None, f"host {host!r} has no AFK bucket: all its window time counts as active", note=True)
        )
        pieces = [(span, True) for span in shown]
    tabs = _tabs(webs, plan)
    records: list[dict[str, Any]] = []
    in_browser: list[list[tuple[Span, bool]]] = [[] for _ in tabs]
    for piece, active in pieces:
        app = _text(piece.data.get("app")) or "unknown"
        browser = next((n for n, (words, _) in enumerate(tabs) if any(w in app.lower() for w in words)), None)
        if browser is None:
            records += _pieces(bucket, piece, app, _text(piece.data.get("title")), None, idle=not active)
        else:
            in_browser[browser].append((piece, active))
    for (_, browser_tabs), items in zip(tabs, in_browser, strict=True):
        starts = [t.start for t in browser_tabs]
        for part, active, on_tab in _cut(items, [(t.start, t.end) for t in browser_tabs]):
            url = _text(browser_tabs[bisect_right(starts, part.start) - 1].data.get("url")) if on_tab else None
            app = _text(part.data.get("app")) or "unknown"
            records += _pieces(bucket, part, app, _text(part.data.get("title")), url, idle=not active)
    records.sort(key=lambda r: r["start"])
    return records


def _tabs(webs: list[Bucket], plan: ImportPlan) -> list[tuple[tuple[str, ...], list[Span]]]:
    """Per web bucket: the words that name its browser's app, and its tabs laid flat."""
    found = []
    for bucket in webs:
        name = f"{bucket.id} {bucket.client}".lower()
        browser = next((b for b in BROWSER_APPS if b in name), None)
        if browser is None:
            plan.problems.append(Problem(bucket.id, None, "names no browser known here; its URLs are not imported"))
            continue
        tabs = [s for s in laid_flat([bucket]) if not s.data.get("incognito")]
        found.append((BROWSER_APPS[browser], tabs))
    return found


def _of_source(bucket: Bucket) -> list[dict[str, Any]]:
    records = []
    for span in laid_flat([bucket]):
        data = span.data
        app = _text(data.get("app")) or _text(data.get("editor")) or bucket.client or SOURCE_KINDS[bucket.type]
        # A project's name, not its path: the title rules see what a window title would show.
        project = _text(data.get("project"))
        title = (project and project.rstrip("/\\").rsplit("/", 1)[-1]) or _text(data.get("title"))
        title = title or _text(data.get("language"))
        records += _pieces(bucket.id, span, app, title, _text(data.get("url")), idle=False)
    return records


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _pieces(
    bucket_id: str, span: Span, app: str, title: str | None, url: str | None, *, idle: bool
) -> list[dict[str, Any]]:
    records = []
    start = span.start
    while start < span.end:
        end = min(span.end, start + MAX_PIECE_MS)
        records.append(
            {
                "event_id": str(uuid.uuid5(NAMESPACE, f"{bucket_id}\x00{span.origin}\x00{start}")),
                "device_seq": 0,  # the gateway numbers an import's records
                "start": start,
                "end": end,
                "app": app,
                "title": title,
                "url": url,
                "keystrokes": 0,
                "clicks": 0,
                "idle": idle,
            }
        )
        start = end
    return records
