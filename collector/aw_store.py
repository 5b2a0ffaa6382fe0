"""Where ActivityWatch watchers' reports wait for the uploader: buckets and events in one owner-only SQLite file.

Two pure rules decide what is written. `kept_data` keeps only what Productimon may use of an event's data (never
content: no file paths, no text, no query strings), and drops a private-window event whole. `merged_heartbeat`
is the heartbeat rule watchers rely on: an unchanged state arriving within the pulse time extends the last event
instead of starting a new one. The store applies both before anything reaches the disk; the HTTP side is
collector/aw_api.py.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from collector.privacy import strip_url
from plumbing.sqlite import Migration, connect, migrate, snapshot, transaction

log = logging.getLogger(__name__)

WINDOW_TYPE = "currentwindow"
AFK_TYPE = "afkstatus"
WEB_TYPE = "web.tab.current"

# Keys of the data of any other bucket type (editor watchers' app.editor.activity and the like): names of things,
# never their content. An editor watcher's `file` is a path, which names documents and people.
_OTHER_KEYS = ("app", "title", "project", "language", "url")
# Like the browser intake's: a title is a window's name, not a document; anything longer is content.
MAX_TEXT_CHARS = 2048


def _text(value: object) -> str | None:
    return value[:MAX_TEXT_CHARS] if isinstance(value, str) else None


def kept_data(bucket_type: str, data: Mapping[str, Any]) -> dict[str, Any] | None:
    """What may be stored of one event's `data` in a bucket of `bucket_type`, or None when nothing of the event
    may be stored at all. Pure.

    Window events keep app and title; AFK events their status; web tab events the tab's URL (stripped as
    `collector.privacy.strip_url` strips every URL the collector keeps), title, and the audible and incognito
    flags; any other type only app, title, project, language and URL, as strings. A key of the wrong type is
    dropped like a key not on the list. An event that says it comes from a private window (`incognito: true`,
    which web watchers and some window watchers send) is not stored in any bucket: counting private browsing as
    the tab before it would be wrong, and storing it would break the promise a private window makes."""
    if data.get("incognito") is True:
        return None
    kept: dict[str, Any] = {}
    if bucket_type == WINDOW_TYPE:
        keys: Sequence[str] = ("app", "title")
    elif bucket_type == AFK_TYPE:
        keys = ("status",)
    elif bucket_type == WEB_TYPE:
        keys = ("url", "title")
        for flag in ("audible", "incognito"):
            if isinstance(data.get(flag), bool):
                kept[flag] = data[flag]
    else:
        keys = _OTHER_KEYS
    for key in keys:
        value = _text(data.get(key))
        if value is not None and key == "url":
            value = strip_url(value)
        if value is not None:
            kept[key] = value
    return kept


@dataclass(frozen=True)
class Span:
    """An event as the store sees it: from `start_ms` to `end_ms` (Unix milliseconds), with its kept data."""

    start_ms: int
    end_ms: int
    data: Mapping[str, Any]


def merged_heartbeat(last: Span | None, heartbeat: Span, pulsetime_ms: int) -> Span | None:
    """The bucket's last event extended by `heartbeat`, or None when the heartbeat starts an event of its own. Pure.

    A heartbeat merges when its data equals the last event's and it starts no earlier than that event and no later
    than its end plus the pulse time: the watcher saw the same state again, and the gap is short enough to mean
    it never changed. The merged event ends where the later of the two ends, so a heartbeat that arrives late
    (a watcher's queue flushed after an outage) never shortens what is already recorded."""
    if last is None or dict(last.data) != dict(heartbeat.data):
        return None
    if not last.start_ms <= heartbeat.start_ms <= last.end_ms + pulsetime_ms:
        return None
    return Span(last.start_ms, max(last.end_ms, heartbeat.end_ms), last.data)


# --- the store ----------------------------------------------------------------------------------------------------

_STATEMENTS: list[tuple[str, ...]] = [
    (
        """CREATE TABLE bucket (
            id TEXT PRIMARY KEY,
            name TEXT,
            type TEXT NOT NULL,
            client TEXT NOT NULL,
            hostname TEXT NOT NULL,
            created_ms INTEGER NOT NULL
        )""",
        # data holds only what kept_data kept. sent: handed to the uploader and acknowledged; a sent row never
        # changes again (a heartbeat that would extend it starts a continuation instead).
        """CREATE TABLE event (
            id INTEGER PRIMARY KEY,
            bucket TEXT NOT NULL,
            start_ms INTEGER NOT NULL,
            end_ms INTEGER NOT NULL CHECK (end_ms >= start_ms),
            data TEXT NOT NULL,
            sent INTEGER NOT NULL DEFAULT 0 CHECK (sent IN (0, 1))
        )""",
        "CREATE INDEX event_by_bucket ON event (bucket, start_ms, id)",
        "CREATE INDEX event_unsent ON event (end_ms, id) WHERE sent = 0",
        # One row: the id /api/0/info reports, random and local, so a watcher can tell two servers apart.
        """CREATE TABLE store_state (
            id INTEGER PRIMARY KEY CHECK (id = 0),
            device_id TEXT NOT NULL
        )""",
        "INSERT INTO store_state (id, device_id) VALUES (0, lower(hex(randomblob(16))))",
    ),
]
_MIGRATIONS = [Migration(version, "", statements) for version, statements in enumerate(_STATEMENTS, start=1)]


class AwStoreError(Exception):
    """The ActivityWatch store cannot be opened or has a schema this version does not know."""


class NoSuchBucket(LookupError):
    """The bucket an event was sent to was never created (or was deleted)."""


@dataclass(frozen=True)
class Bucket:
    id: str
    name: str | None
    type: str
    client: str
    hostname: str
    created_ms: int
    last_updated_ms: int | None = None  # where its latest event ends; None while it has none


@dataclass(frozen=True)
class StoredEvent:
    id: int
    start_ms: int
    end_ms: int
    data: Mapping[str, Any]


class ClosedEvent(NamedTuple):
    """An event that will not grow any more, for the uploader."""

    rowid: int
    bucket_id: str
    bucket_type: str
    hostname: str
    start_ms: int
    end_ms: int
    data: dict[str, Any]


def _data_json(data: Mapping[str, Any]) -> str:
    # Sorted keys: equal data is equal text, whichever order a watcher sent its keys in.
    return json.dumps(dict(data), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class AwStore:
    """The ActivityWatch buckets and events of one collector: a SQLite file in WAL mode, one connection under one
    lock. The lock is held across each heartbeat's read of the last event and its write, so two watchers (or two
    connections of one) reporting at once never both extend, or both start, the same event."""

    def __init__(
        self, path: Path | str, *, clock: Callable[[], float] = time.time, paused: Callable[[], bool] = lambda: False
    ) -> None:
        """`paused()`: whether the collector's tracking is paused now; what watchers report then is answered and
        never kept, as for a private window."""
        self.path = Path(path)
        self._clock = clock
        self._paused = paused
        self._lock = threading.Lock()
        # Buckets whose last heartbeat was a private window's: their next heartbeat starts a new event, so the
        # private time is never added to the event before it.
        self._interrupted: set[str] = set()
        # Activity data: owner-only, also a file left open by a person. NORMAL, not FULL as the spool: a power cut
        # can lose the last seconds a heartbeat added, which the watcher's next heartbeat mostly recovers; what
        # the uploader was handed is acknowledged only after it is in the spool.
        self._db = connect(
            self.path,
            what="ActivityWatch store",
            error=AwStoreError,
            log=log,
            pragmas_after_wal=("PRAGMA synchronous = NORMAL",),
            tighten_mode=True,
        )
        try:
            with self._lock:
                migrate(self._db, _MIGRATIONS, what="ActivityWatch store", path=self.path, error=AwStoreError, log=log)
                self.device_id: str = self._db.execute("SELECT device_id FROM store_state WHERE id = 0").fetchone()[0]
        except BaseException:
            self._db.close()
            raise

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- buckets

    def create_bucket(self, bucket_id: str, *, type: str, client: str, hostname: str, name: str | None = None) -> bool:
        """Create a bucket; False when one of that id already exists (it is left as it is, as aw-server does)."""
        with self._lock, transaction(self._db) as db:
            cursor = db.execute(
                "INSERT INTO bucket (id, name, type, client, hostname, created_ms) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                (bucket_id, name, type, client, hostname, self._now_ms()),
            )
            return cursor.rowcount == 1

    def bucket(self, bucket_id: str) -> Bucket | None:
        buckets = self._buckets("WHERE b.id = ?", (bucket_id,))
        return buckets[0] if buckets else None

    def buckets(self) -> list[Bucket]:
        return self._buckets("", ())

    def _buckets(self, where: str, params: tuple[object, ...]) -> list[Bucket]:
        with self._lock:
            rows = self._db.execute(
                "SELECT b.id, b.name, b.type, b.client, b.hostname, b.created_ms, "
                "(SELECT e.end_ms FROM event e WHERE e.bucket = b.id ORDER BY e.start_ms DESC, e.id DESC LIMIT 1) "
                f"FROM bucket b {where} ORDER BY b.id",
                params,
            ).fetchall()
        return [Bucket(*row) for row in rows]

    def delete_bucket(self, bucket_id: str) -> bool:
        """Delete a bucket and all its events, sent or not; False when there was none."""
        with self._lock, transaction(self._db) as db:
            db.execute("DELETE FROM event WHERE bucket = ?", (bucket_id,))
            deleted = db.execute("DELETE FROM bucket WHERE id = ?", (bucket_id,)).rowcount == 1
            self._interrupted.discard(bucket_id)
        return deleted

    # -- events in

    def heartbeat(self, bucket_id: str, heartbeat: Span, pulsetime_ms: int) -> StoredEvent | None:
        """Apply one heartbeat (its data as the watcher sent it): the bucket's last event extended, or a new event.
        None when nothing of it may be stored (`kept_data`). Raises NoSuchBucket."""
        with self._lock, transaction(self._db) as db:
            bucket_type = self._bucket_type(db, bucket_id)
            data = None if self._paused() else kept_data(bucket_type, heartbeat.data)
            if data is None:
                self._interrupted.add(bucket_id)
                return None
            span = Span(heartbeat.start_ms, heartbeat.end_ms, data)
            last_row = db.execute(
                "SELECT id, start_ms, end_ms, data, sent FROM event WHERE bucket = ? "
                "ORDER BY start_ms DESC, id DESC LIMIT 1",
                (bucket_id,),
            ).fetchone()
            merged = None
            if last_row is not None and bucket_id not in self._interrupted:
                rowid, start_ms, end_ms, last_data, sent = last_row
                merged = merged_heartbeat(Span(start_ms, end_ms, json.loads(last_data)), span, pulsetime_ms)
            self._interrupted.discard(bucket_id)
            if merged is None:
                return self._insert(db, bucket_id, span)
            if merged.end_ms == end_ms:
                return StoredEvent(rowid, start_ms, end_ms, merged.data)
            if sent:
                # The uploader has it already: what the heartbeat adds becomes an event of its own, beginning where
                # the sent one ends, so nothing is sent twice and nothing is lost.
                return self._insert(db, bucket_id, Span(end_ms, merged.end_ms, merged.data))
            db.execute("UPDATE event SET end_ms = ? WHERE id = ?", (merged.end_ms, rowid))
            return StoredEvent(rowid, start_ms, merged.end_ms, merged.data)

    def insert(self, bucket_id: str, events: Sequence[Span]) -> list[StoredEvent | None]:
        """Store events as given (their data as the watcher sent it), one result per event, None where nothing of
        an event may be stored. Raises NoSuchBucket."""
        with self._lock, transaction(self._db) as db:
            bucket_type = self._bucket_type(db, bucket_id)
            stored: list[StoredEvent | None] = []
            paused = self._paused()
            for event in events:
                data = None if paused else kept_data(bucket_type, event.data)
                stored.append(
                    None if data is None else self._insert(db, bucket_id, Span(event.start_ms, event.end_ms, data))
                )
            return stored

    @staticmethod
    def _bucket_type(db: sqlite3.Connection, bucket_id: str) -> str:
        row = db.execute("SELECT type FROM bucket WHERE id = ?", (bucket_id,)).fetchone()
        if row is None:
            raise NoSuchBucket(bucket_id)
        return str(row[0])

    @staticmethod
    def _insert(db: sqlite3.Connection, bucket_id: str, span: Span) -> StoredEvent:
        cursor = db.execute(
            "INSERT INTO event (bucket, start_ms, end_ms, data) VALUES (?, ?, ?, ?)",
            (bucket_id, span.start_ms, span.end_ms, _data_json(span.data)),
        )
        assert cursor.lastrowid is not None
        return StoredEvent(cursor.lastrowid, span.start_ms, span.end_ms, span.data)

    # -- events out

    def events(
        self, bucket_id: str, *, limit: int | None = None, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[StoredEvent]:
        """A bucket's events, newest first, as aw-server lists them: those overlapping [start_ms, end_ms] when
        given, cut to it. Raises NoSuchBucket."""
        where, params = self._range(bucket_id, start_ms, end_ms)
        with self._lock, snapshot(self._db) as db:
            self._bucket_type(db, bucket_id)
            rows = db.execute(
                f"SELECT id, start_ms, end_ms, data FROM event WHERE {where} ORDER BY start_ms DESC, id DESC LIMIT ?",
                (*params, -1 if limit is None else limit),
            ).fetchall()
        events = []
        for rowid, start, end, data in rows:
            if start_ms is not None:
                start = max(start, start_ms)
            if end_ms is not None:
                end = min(end, end_ms)
            events.append(StoredEvent(rowid, start, end, json.loads(data)))
        return events

    def count(self, bucket_id: str, *, start_ms: int | None = None, end_ms: int | None = None) -> int:
        """How many of a bucket's events overlap [start_ms, end_ms] (all of them without bounds)."""
        where, params = self._range(bucket_id, start_ms, end_ms)
        with self._lock, snapshot(self._db) as db:
            self._bucket_type(db, bucket_id)
            return int(db.execute(f"SELECT count(*) FROM event WHERE {where}", params).fetchone()[0])

    @staticmethod
    def _range(bucket_id: str, start_ms: int | None, end_ms: int | None) -> tuple[str, tuple[object, ...]]:
        where: list[str] = ["bucket = ?"]
        params: list[object] = [bucket_id]
        if start_ms is not None:
            where.append("end_ms >= ?")
            params.append(start_ms)
        if end_ms is not None:
            where.append("start_ms <= ?")
            params.append(end_ms)
        return " AND ".join(where), tuple(params)

    # -- the uploader's side

    def closed_events(self, older_than_ms: int, limit: int) -> list[ClosedEvent]:
        """Unsent events that will not grow any more, oldest first: every event but the last of its bucket (a
        heartbeat only ever extends the last), and the last too once it ended `older_than_ms` ago or longer.
        `older_than_ms` should exceed the watchers' pulse times, or a late heartbeat will start a continuation
        event rather than extend the one already handed over."""
        cutoff = self._now_ms() - older_than_ms
        with self._lock:
            rows = self._db.execute(
                "SELECT e.id, e.bucket, b.type, b.hostname, e.start_ms, e.end_ms, e.data "
                "FROM event e JOIN bucket b ON b.id = e.bucket "
                "WHERE e.sent = 0 AND (e.end_ms <= ? OR e.id != ("
                "  SELECT l.id FROM event l WHERE l.bucket = e.bucket ORDER BY l.start_ms DESC, l.id DESC LIMIT 1)) "
                "ORDER BY e.start_ms, e.id LIMIT ?",
                (cutoff, limit),
            ).fetchall()
        return [
            ClosedEvent(rowid, bucket_id, bucket_type, hostname, start_ms, end_ms, json.loads(data))
            for rowid, bucket_id, bucket_type, hostname, start_ms, end_ms, data in rows
        ]

    def mark_sent(self, rowids: Iterable[int]) -> int:
        """Mark events as handed over for good; returns how many were unsent until now."""
        rowids = sorted(set(rowids))
        marked = 0
        with self._lock, transaction(self._db) as db:
            for start in range(0, len(rowids), 500):
                chunk = rowids[start : start + 500]
                marked += db.execute(
                    f"UPDATE event SET sent = 1 WHERE sent = 0 AND id IN ({','.join('?' * len(chunk))})", chunk
                ).rowcount
        return marked

    def forget_sent(self, before_ms: int) -> int:
        """Delete sent events that ended before `before_ms`; returns how many. The last event of each bucket is
        kept, so a heartbeat continuing it still finds where it ended."""
        with self._lock, transaction(self._db) as db:
            return db.execute(
                "DELETE FROM event WHERE sent = 1 AND end_ms < ? AND id NOT IN (SELECT last FROM ("
                "  SELECT (SELECT l.id FROM event l WHERE l.bucket = b.id ORDER BY l.start_ms DESC, l.id DESC LIMIT 1)"
                "  AS last FROM bucket b) WHERE last IS NOT NULL)",
                (before_ms,),
            ).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> AwStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
