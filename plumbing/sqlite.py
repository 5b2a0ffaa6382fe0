"""How Productimon keeps a SQLite file: owner-only, in WAL mode, its schema by numbered migrations (PRAGMA
user_version), every change an explicit transaction.

The collector's spool (collector/spool.py) and the gateway's identity store (gateway/identity_store.py) open their
files here. The collector distribution ships this module (infra/collector_dist.py), so it needs nothing but the
standard library, on Python 3.10 too (docs/collector.md). Where the two files are kept differently (which pragmas,
whether an existing file is made owner-only again, whether the switch to WAL waits for another opener), the caller
says so; the messages name the file as the caller's `what` ("spool", "identity store").
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

# Long enough to ride out another connection's write transaction (they are all a few statements long).
BUSY_TIMEOUT_MS = 5000


class Migration(NamedTuple):
    """One schema version: its statements, applied in one transaction, then PRAGMA user_version = version."""

    version: int
    name: str  # "" when the versions have no names (the spool's)
    statements: Sequence[str]

    @property
    def label(self) -> str:
        return f"migration {self.version:04d}_{self.name}" if self.name else f"schema version {self.version}"


def connect(
    path: Path,
    *,
    what: str,
    error: type[Exception],
    log: logging.Logger,
    pragmas: Sequence[str] = (),
    pragmas_after_wal: Sequence[str] = (),
    tighten_mode: bool = False,
    wait_for_wal: bool = False,
) -> sqlite3.Connection:
    """A connection to the file at `path` in WAL mode; a missing file is created 0600, a missing directory 0700.

    One connection serves all threads (check_same_thread=False: the caller holds a lock around it), and
    isolation_level=None means no implicit transactions: every change opens its own (see transaction). `pragmas`
    run before the switch to WAL, `pragmas_after_wal` after it. `tighten_mode` makes an existing file 0600 again;
    SQLite gives the -wal and -shm files the file's mode. `wait_for_wal` retries the switch while another
    connection opening the same new file holds it (see use_wal). A file that cannot be opened or set up raises
    `error` ("cannot open the <what> <path>: ...", "cannot use the <what> <path>: ..."); one that stays out of
    WAL mode (a file system without shared memory) is used all the same, with a warning on `log`.
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        if tighten_mode:
            os.chmod(path, 0o600)
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise error(f"cannot open the {what} {path}: {exc}") from None
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        for pragma in pragmas:
            db.execute(pragma)
        mode = use_wal(db, wait=wait_for_wal)
        for pragma in pragmas_after_wal:
            db.execute(pragma)
    except sqlite3.Error as exc:
        db.close()
        raise error(f"cannot use the {what} {path}: {exc}") from None
    if mode != "wal":
        log.warning("%s %s runs in %s journal mode, not WAL (file system?)", what, path, mode)
    return db


def use_wal(db: sqlite3.Connection, *, wait: bool = False) -> str:
    """Switch the file to WAL and return the journal mode it is in.

    Without `wait` the switch is asked for once. With it: the mode is stored in the file, so once one connection
    has switched it the others only read it. The switch itself needs the file to itself, and SQLite reports
    SQLITE_BUSY at once, without its busy handler, when another connection opening the same new file holds a
    lock: that is retried until the busy timeout has passed.
    """
    mode: str
    if not wait:
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        return mode
    mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while mode != "wal":
        try:
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    return mode


def migrate(
    db: sqlite3.Connection,
    migrations: Sequence[Migration],
    *,
    what: str,
    path: Path,
    error: type[Exception],
    log: logging.Logger,
    failed: Callable[[Migration, sqlite3.Error], Exception] | None = None,
) -> None:
    """Apply the migrations the file has not had yet, each in its own transaction; the caller holds its lock.

    BEGIN IMMEDIATE makes a second process opening the same new file wait, then find the version already
    applied. A file whose user_version is beyond the last migration raises `error`. A statement's sqlite3.Error
    rolls its migration back whole and is raised as it is, or as what `failed` makes of it.
    """
    known = len(migrations)
    for migration in migrations:
        with transaction(db):
            current = db.execute("PRAGMA user_version").fetchone()[0]
            if current > known:
                raise error(
                    f"the {what} {path} has schema version {current}, newer than this version of "
                    f"Productimon knows ({known}); upgrade Productimon"
                )
            if current >= migration.version:
                continue
            try:
                for statement in migration.statements:
                    db.execute(statement)
            except sqlite3.Error as exc:
                if failed is None:
                    raise
                raise failed(migration, exc) from None
            db.execute(f"PRAGMA user_version = {int(migration.version)}")
            log.info("%s %s: applied %s", what, path, migration.label)


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction (BEGIN IMMEDIATE: the write lock is taken at once, waiting up to the busy timeout),
    committed when the block ends and rolled back when it raises; the caller holds the connection's lock."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


@contextmanager
def snapshot(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A read transaction: the block's SELECTs see one snapshot; the caller holds the connection's lock."""
    db.execute("BEGIN")
    try:
        yield db
    finally:
        if db.in_transaction:
            db.execute("COMMIT")
