"""plumbing/sqlite.py in real SQLite files: owner-only files, the pragmas and WAL, migrations by user_version, and
transactions, as the spool and the identity store use them; and that the collector can ship it."""

from __future__ import annotations

import ast
import logging
import os
import sqlite3
import stat
import sys
import threading
from pathlib import Path

import pytest

import plumbing.sqlite
from plumbing.sqlite import BUSY_TIMEOUT_MS, Migration, connect, migrate, snapshot, transaction, use_wal

log = logging.getLogger("tests.sqlite_files")


class FileError(Exception):
    pass


def open_file(path: Path, **options: object) -> sqlite3.Connection:
    return connect(path, what="test file", error=FileError, log=log, **options)  # type: ignore[arg-type]


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA user_version").fetchone()[0]


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "file.sqlite3"


MIGRATIONS = [
    Migration(1, "", ("CREATE TABLE one (x)", "INSERT INTO one VALUES (1)")),
    Migration(2, "", ("ALTER TABLE one ADD COLUMN y DEFAULT 2",)),
]


# -- connecting


def test_a_new_file_is_owner_only_in_an_owner_only_directory_and_in_wal_mode(path):
    db = open_file(path)
    try:
        db.execute("CREATE TABLE t (x)")
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        for file in [path, Path(f"{path}-wal"), Path(f"{path}-shm")]:
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] == BUSY_TIMEOUT_MS == 5000
        assert db.isolation_level is None  # no implicit transactions
    finally:
        db.close()


@pytest.mark.parametrize(("tighten_mode", "mode"), [(True, 0o600), (False, 0o644)])
def test_an_existing_file_is_made_owner_only_again_only_when_asked(path, tighten_mode, mode):
    path.parent.mkdir()
    path.touch()
    os.chmod(path, 0o644)
    open_file(path, tighten_mode=tighten_mode).close()
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_pragmas_run_before_and_after_the_switch_to_wal(path):
    db = open_file(
        path,
        pragmas=("PRAGMA foreign_keys = ON", "PRAGMA secure_delete = ON"),
        pragmas_after_wal=("PRAGMA synchronous = FULL",),
    )
    try:
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert db.execute("PRAGMA secure_delete").fetchone()[0] == 1
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        db.close()


def test_the_connection_may_be_used_from_another_thread(path):
    db = open_file(path)
    try:
        found: list[int] = []
        thread = threading.Thread(target=lambda: found.append(db.execute("SELECT 1").fetchone()[0]))
        thread.start()
        thread.join()
        assert found == [1]
    finally:
        db.close()


def test_a_file_that_cannot_be_opened_is_reported_with_its_path(tmp_path):
    with pytest.raises(FileError, match=f"^cannot open the test file {tmp_path}: "):
        open_file(tmp_path)  # a directory


def test_a_file_that_cannot_be_set_up_is_reported_with_its_path(path):
    with pytest.raises(FileError, match=f"^cannot use the test file {path}: .*syntax error"):
        open_file(path, pragmas=("PRAGMA (",))


def test_a_file_left_out_of_wal_mode_is_used_with_a_warning(path, monkeypatch, caplog):
    monkeypatch.setattr(plumbing.sqlite, "use_wal", lambda db, wait: "delete")
    with caplog.at_level(logging.WARNING, logger=log.name):
        open_file(path).close()
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        (log.name, f"test file {path} runs in delete journal mode, not WAL (file system?)")
    ]


def test_the_switch_to_wal_waits_for_another_connection_only_when_asked(tmp_path):
    # SQLite can refuse the switch at once, without its busy handler, while another connection holds the new
    # file; a connection with no busy timeout shows the same refusal on demand.
    file = tmp_path / "new.sqlite3"
    reader = sqlite3.connect(file, isolation_level=None, check_same_thread=False)
    switcher = sqlite3.connect(file, isolation_level=None, timeout=0)
    try:
        reader.execute("CREATE TABLE t (x)")
        reader.execute("BEGIN")
        reader.execute("SELECT * FROM t").fetchall()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            use_wal(switcher)
        threading.Timer(0.2, lambda: reader.execute("COMMIT")).start()
        assert use_wal(switcher, wait=True) == "wal"
    finally:
        switcher.close()
        reader.close()


def test_a_file_already_in_wal_mode_stays_so(path):
    open_file(path).close()
    db = open_file(path, wait_for_wal=True)
    try:
        assert use_wal(db) == use_wal(db, wait=True) == "wal"
    finally:
        db.close()


# -- migrations


def test_migrations_are_applied_once_in_order_and_logged(path, caplog):
    db = open_file(path)
    try:
        with caplog.at_level(logging.INFO, logger=log.name):
            migrate(db, MIGRATIONS, what="test file", path=path, error=FileError, log=log)
            migrate(db, MIGRATIONS, what="test file", path=path, error=FileError, log=log)
        assert db.execute("SELECT x, y FROM one").fetchall() == [(1, 2)]
    finally:
        db.close()
    assert user_version(path) == 2
    assert caplog.messages == [
        f"test file {path}: applied schema version 1",
        f"test file {path}: applied schema version 2",
    ]


def test_a_file_of_an_older_version_gets_only_the_later_migrations(path):
    db = open_file(path)
    try:
        migrate(db, MIGRATIONS[:1], what="test file", path=path, error=FileError, log=log)
        db.execute("INSERT INTO one VALUES (5)")
        migrate(db, MIGRATIONS, what="test file", path=path, error=FileError, log=log)
        assert db.execute("SELECT x, y FROM one ORDER BY x").fetchall() == [(1, 2), (5, 2)]
    finally:
        db.close()


def test_named_migrations_are_logged_by_name(path, caplog):
    db = open_file(path)
    try:
        with caplog.at_level(logging.INFO, logger=log.name):
            migrate(
                db,
                [Migration(1, "first_tables", ("CREATE TABLE a (x)",))],
                what="store",
                path=path,
                error=FileError,
                log=log,
            )
    finally:
        db.close()
    assert caplog.messages == [f"store {path}: applied migration 0001_first_tables"]
    assert Migration(12, "more", ()).label == "migration 0012_more"
    assert Migration(12, "", ()).label == "schema version 12"


def test_a_file_of_a_newer_schema_is_refused(path):
    db = open_file(path)
    try:
        db.execute("PRAGMA user_version = 7")
        with pytest.raises(FileError) as refused:
            migrate(db, MIGRATIONS, what="test file", path=path, error=FileError, log=log)
    finally:
        db.close()
    assert str(refused.value) == (
        f"the test file {path} has schema version 7, newer than this version of Productimon knows (2); "
        "upgrade Productimon"
    )
    assert user_version(path) == 7


def test_a_failing_migration_is_rolled_back_whole_and_raised_as_it_is(path):
    broken = [MIGRATIONS[0], Migration(2, "", ("CREATE TABLE two (x)", "NOT SQL"))]
    db = open_file(path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="syntax error"):
            migrate(db, broken, what="test file", path=path, error=FileError, log=log)
        assert not db.in_transaction
    finally:
        db.close()
    assert user_version(path) == 1
    assert tables(path) == {"one"}


def test_a_failing_migration_is_raised_as_the_caller_says(path):
    broken = [Migration(1, "broken", ("CREATE TABLE two (x)", "NOT SQL"))]
    db = open_file(path)
    try:
        with pytest.raises(FileError, match='^0001_broken: near "NOT": syntax error$') as refused:
            migrate(
                db,
                broken,
                what="test file",
                path=path,
                error=FileError,
                log=log,
                failed=lambda migration, exc: FileError(f"{migration.version:04d}_{migration.name}: {exc}"),
            )
    finally:
        db.close()
    assert refused.value.__suppress_context__
    assert user_version(path) == 0 and tables(path) == set()


# -- transactions


def test_a_transaction_commits_when_its_block_ends(path):
    db = open_file(path)
    try:
        db.execute("CREATE TABLE t (x)")
        with transaction(db) as same:
            assert same is db and db.in_transaction
            db.execute("INSERT INTO t VALUES (1)")
        assert not db.in_transaction
    finally:
        db.close()
    with sqlite3.connect(path) as other:
        assert other.execute("SELECT x FROM t").fetchall() == [(1,)]


class Interrupted(BaseException):
    pass


@pytest.mark.parametrize("raised", [ValueError, Interrupted])
def test_a_transaction_rolls_back_when_its_block_raises_anything(path, raised):
    db = open_file(path)
    try:
        db.execute("CREATE TABLE t (x)")
        with pytest.raises(raised), transaction(db):
            db.execute("INSERT INTO t VALUES (1)")
            raise raised()
        assert not db.in_transaction
        assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    finally:
        db.close()


def test_a_transaction_takes_the_write_lock_at_once(path):
    db = open_file(path)
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        db.execute("CREATE TABLE t (x)")
        with transaction(db):
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
    finally:
        other.close()
        db.close()


def test_a_snapshot_sees_one_state_of_the_file(path):
    db = open_file(path)
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("CREATE TABLE t (x)")
        with snapshot(db):
            assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 0
            writer.execute("INSERT INTO t VALUES (1)")
            assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 0
        assert not db.in_transaction
        assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 1
    finally:
        writer.close()
        db.close()


# -- the collector ships it


def test_it_imports_only_the_standard_library():
    tree = ast.parse(Path(plumbing.sqlite.__file__).read_text(encoding="utf-8"))
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= set(sys.stdlib_module_names)
