"""The collector's durable spool: encoded intervals wait on disk, in device_seq order, until acknowledged.

Every interval is written here (and fsynced) before it is sent, and deleted only for the seqs the gateway
acknowledged, so a collector killed at any moment loses at most the interval in progress. The spool is bounded:
when full it refuses new intervals, keeps what it holds intact, and counts the refusals.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from plumbing.sqlite import Migration, connect, migrate, transaction

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 200 * 1024 * 1024

# Each entry is one schema version (PRAGMA user_version = its index + 1), applied in one transaction.
_STATEMENTS: list[tuple[str, ...]] = [
    (
        # seq is the interval's device_seq: the gateway acknowledges by it and the warehouse dedupes on it.
        """CREATE TABLE interval (
            seq INTEGER PRIMARY KEY,
            payload BLOB NOT NULL,
            spooled_ms INTEGER NOT NULL
        )""",
        # One row. last_seq outlives the interval rows so device_seq never repeats after a restart.
        """CREATE TABLE spool_state (
            id INTEGER PRIMARY KEY CHECK (id = 0),
            last_seq INTEGER NOT NULL,
            refused_when_full INTEGER NOT NULL,
            last_ack_ms INTEGER
        )""",
        "INSERT INTO spool_state (id, last_seq, refused_when_full, last_ack_ms) VALUES (0, -1, 0, NULL)",
    ),
    # Intervals dropped because they were held longer than the spool's maximum age.
    ("ALTER TABLE spool_state ADD COLUMN expired INTEGER NOT NULL DEFAULT 0",),
]
_MIGRATIONS = [Migration(version, "", statements) for version, statements in enumerate(_STATEMENTS, start=1)]


class SpoolError(Exception):
    """The spool file cannot be opened or has a schema this version does not know."""


@dataclass(frozen=True)
class SpoolStatus:
    depth: int  # intervals held
    bytes: int  # payload bytes held (what max_bytes bounds; the file adds SQLite's page overhead)
    oldest_ms: int | None  # when the oldest held interval was spooled
    refused_when_full: int  # intervals refused since the spool was created, because it was full
    last_ack_ms: int | None  # when the gateway last acknowledged a batch
    expired: int = 0  # intervals dropped since the spool was created, because they were held too long


@dataclass(frozen=True)
class Spooled:
    seq: int  # the interval's device_seq
    payload: bytes  # the encoded interval (Avro single-object encoding), exactly as appended


class Spool:
    """A SQLite file in WAL mode with one connection under a lock: the tracker thread appends while the uploader
    thread reads batches and acknowledges them."""

    def __init__(
        self, path: Path | str, max_bytes: int = DEFAULT_MAX_BYTES, clock: Callable[[], float] = time.time
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._refusing = False
        self._db = self._connect()
        try:
            self._migrate()
            # Kept in memory so append and status need no scan; recomputed here so they always match the file.
            self._depth, self._bytes = self._db.execute(
                "SELECT count(*), coalesce(sum(length(payload)), 0) FROM interval"
            ).fetchone()
        except BaseException:
            self._db.close()
            raise

    # -- connection and schema

    def _connect(self) -> sqlite3.Connection:
        # The spool holds activity data: owner-only, also a file an older version or a person left open. FULL: an
        # append is fsynced before it returns, so an interval the tracker handed over survives a power cut, not
        # only a crash (docs/design.md "Delivery"). Writes are one small row every few seconds, so the cost is
        # negligible.
        return connect(
            self.path,
            what="spool",
            error=SpoolError,
            log=log,
            pragmas_after_wal=("PRAGMA synchronous = FULL",),
            tighten_mode=True,
        )

    def _migrate(self) -> None:
        with self._lock:
            migrate(self._db, _MIGRATIONS, what="spool", path=self.path, error=SpoolError, log=log)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- the spool

    def append(self, seq: int, payload: bytes) -> bool:
        """Hold one encoded interval; durable on disk when this returns True.

        False when holding it would exceed max_bytes: nothing held changes and the refusal is counted (on disk).
        A seq already held is left as it is and counts as held (True), so a retried append is harmless.
        """
        payload = bytes(payload)
        with self._lock, transaction(self._db) as db:
            if db.execute("SELECT 1 FROM interval WHERE seq = ?", (seq,)).fetchone() is not None:
                return True
            if self._bytes + len(payload) > self.max_bytes:
                db.execute("UPDATE spool_state SET refused_when_full = refused_when_full + 1 WHERE id = 0")
                refused = db.execute("SELECT refused_when_full FROM spool_state WHERE id = 0").fetchone()[0]
                refusal = True
            else:
                db.execute(
                    "INSERT INTO interval (seq, payload, spooled_ms) VALUES (?, ?, ?)", (seq, payload, self._now_ms())
                )
                db.execute("UPDATE spool_state SET last_seq = max(last_seq, ?) WHERE id = 0", (seq,))
                refusal = False
        # Past COMMIT: only now do the in-memory figures follow the file.
        if refusal:
            if not self._refusing:
                self._refusing = True
                log.warning(
                    "spool %s is full (%d bytes in %d intervals, limit %d): refusing new intervals until the "
                    "gateway acknowledges some; %d refused so far",
                    self.path,
                    self._bytes,
                    self._depth,
                    self.max_bytes,
                    refused,
                )
            return False
        self._depth += 1
        self._bytes += len(payload)
        if self._refusing:
            self._refusing = False
            log.info("spool %s has room again (%d bytes in %d intervals)", self.path, self._bytes, self._depth)
        return True

    @property
    def depth(self) -> int:
        """Intervals held now (kept in memory, no query)."""
        return self._depth

    def next_batch(self, max_records: int = 500) -> list[Spooled]:
        """The oldest held intervals, in seq order; they stay held until acknowledged."""
        with self._lock:
            rows = self._db.execute("SELECT seq, payload FROM interval ORDER BY seq LIMIT ?", (max_records,)).fetchall()
        return [Spooled(seq, bytes(payload)) for seq, payload in rows]

    def acknowledge(self, seqs: Iterable[int]) -> int:
        """Delete exactly the intervals the gateway acknowledged; returns how many were held (repeats count 0)."""
        seqs = sorted(set(seqs))
        if not seqs:
            return 0
        deleted = 0
        freed = 0
        with self._lock, transaction(self._db) as db:
            for seq in seqs:
                row = db.execute("DELETE FROM interval WHERE seq = ? RETURNING length(payload)", (seq,)).fetchone()
                if row is not None:
                    deleted += 1
                    freed += row[0]
            db.execute("UPDATE spool_state SET last_ack_ms = ? WHERE id = 0", (self._now_ms(),))
        self._depth -= deleted
        self._bytes -= freed
        return deleted

    def expire(self, held_before_ms: int) -> int:
        """Drop what was spooled before `held_before_ms` (the oldest first, in chunks, so a young spool costs one
        look-up by key); returns how many were dropped, which are also counted on disk."""
        dropped = freed = 0
        with self._lock:
            oldest = self._db.execute("SELECT spooled_ms FROM interval ORDER BY seq LIMIT 1").fetchone()
            while oldest is not None and oldest[0] < held_before_ms:
                with transaction(self._db) as db:
                    rows = db.execute(
                        "DELETE FROM interval WHERE seq IN (SELECT seq FROM interval ORDER BY seq LIMIT 1000) "
                        "AND spooled_ms < ? RETURNING length(payload)",
                        (held_before_ms,),
                    ).fetchall()
                    if rows:
                        db.execute("UPDATE spool_state SET expired = expired + ? WHERE id = 0", (len(rows),))
                self._depth -= len(rows)
                self._bytes -= sum(r[0] for r in rows)
                dropped, freed = dropped + len(rows), freed + sum(r[0] for r in rows)
                oldest = None if len(rows) < 1000 else (0,)
        if dropped:
            log.warning(
                "spool %s: dropped %d intervals (%d bytes) held longer than the gateway accepts",
                self.path,
                dropped,
                freed,
            )
        return dropped

    def last_seq(self) -> int:
        """The highest device_seq ever appended, also after it was acknowledged; -1 for a new spool."""
        with self._lock:
            return self._db.execute("SELECT last_seq FROM spool_state WHERE id = 0").fetchone()[0]

    def status(self) -> SpoolStatus:
        with self._lock:
            refused, last_ack_ms, expired = self._db.execute(
                "SELECT refused_when_full, last_ack_ms, expired FROM spool_state WHERE id = 0"
            ).fetchone()
            oldest = self._db.execute("SELECT spooled_ms FROM interval ORDER BY seq LIMIT 1").fetchone()
            return SpoolStatus(
                depth=self._depth,
                bytes=self._bytes,
                oldest_ms=oldest[0] if oldest else None,
                refused_when_full=refused,
                last_ack_ms=last_ack_ms,
                expired=expired,
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
