"""The collector's spool in real SQLite files: order, durability, the size bound, idempotence, threads, kill -9."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from collector.spool import Spool, Spooled, SpoolError

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def payload(seq: int, size: int = 100) -> bytes:
    head = f"interval-{seq}:".encode()
    return head + b"x" * (size - len(head))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "collector" / "spool.sqlite3"


def test_append_next_batch_acknowledge_round_trip_in_seq_order(path: Path) -> None:
    clock = Clock()
    with Spool(path, clock=clock) as spool:
        for seq in [3, 0, 2, 1, 4]:
            assert spool.append(seq, payload(seq))
            clock.now += 1
        assert spool.next_batch() == [Spooled(seq, payload(seq)) for seq in range(5)]
        assert [r.seq for r in spool.next_batch(max_records=2)] == [0, 1]
        # next_batch only reads: the same records come back until they are acknowledged.
        assert [r.seq for r in spool.next_batch(max_records=2)] == [0, 1]

        clock.now = T0 + 100
        assert spool.acknowledge([0, 1]) == 2
        assert [r.seq for r in spool.next_batch()] == [2, 3, 4]
        status = spool.status()
        assert status.depth == 3
        assert status.bytes == 300
        assert status.last_ack_ms == int((T0 + 100) * 1000)
        assert status.oldest_ms == int((T0 + 2) * 1000)  # seq 2 was appended third

        assert spool.acknowledge([4, 1, 99]) == 1  # only what is held counts
        assert spool.acknowledge([2, 3]) == 2
        assert spool.next_batch() == []
        assert spool.status().depth == 0
        assert spool.status().bytes == 0
        assert spool.status().oldest_ms is None


def test_a_new_spool_is_empty(path: Path) -> None:
    with Spool(path) as spool:
        assert spool.status().depth == 0
        assert spool.status().refused_when_full == 0
        assert spool.status().last_ack_ms is None
        assert spool.last_seq() == -1
        assert spool.acknowledge([]) == 0
        assert spool.status().last_ack_ms is None


def test_held_intervals_survive_reopening(path: Path) -> None:
    with Spool(path) as spool:
        for seq in range(10):
            spool.append(seq, payload(seq, 50 + seq))
        spool.acknowledge([0, 5])
    with Spool(path) as spool:
        assert spool.next_batch() == [Spooled(s, payload(s, 50 + s)) for s in range(10) if s not in (0, 5)]
        assert spool.status().depth == 8
        assert spool.status().bytes == sum(50 + s for s in range(10) if s not in (0, 5))
        assert spool.status().last_ack_ms is not None


def test_a_full_spool_refuses_counts_keeps_what_it_holds_and_has_room_after_acknowledge(path: Path) -> None:
    with Spool(path, max_bytes=1000) as spool:
        for seq in range(10):
            assert spool.append(seq, payload(seq))
        assert spool.status().bytes == 1000
        assert not spool.append(10, payload(10))
        assert not spool.append(11, payload(11, 1))
        status = spool.status()
        assert status.refused_when_full == 2
        assert status.depth == 10
        assert spool.last_seq() == 9  # a refused interval was never appended

    with Spool(path, max_bytes=1000) as spool:
        assert spool.status().refused_when_full == 2
        assert spool.next_batch() == [Spooled(seq, payload(seq)) for seq in range(10)]
        assert not spool.append(10, payload(10))
        assert spool.status().refused_when_full == 3

        assert spool.acknowledge([0]) == 1
        assert spool.append(10, payload(10))
        assert not spool.append(11, payload(11, 1))
        assert [r.seq for r in spool.next_batch()] == list(range(1, 11))
        assert spool.status().refused_when_full == 4


def test_appending_a_held_seq_again_changes_nothing(path: Path) -> None:
    with Spool(path, max_bytes=200) as spool:
        assert spool.append(1, payload(1))
        assert spool.append(2, payload(2))
        # Retried appends of held seqs succeed without a second copy, even with the spool full.
        assert spool.append(1, b"something else")
        assert spool.append(2, payload(2))
        assert spool.next_batch() == [Spooled(1, payload(1)), Spooled(2, payload(2))]
        assert spool.status().depth == 2
        assert spool.status().bytes == 200
        assert spool.status().refused_when_full == 0


def test_last_seq_survives_acknowledge_and_reopening(path: Path) -> None:
    with Spool(path) as spool:
        for seq in range(5):
            spool.append(seq, payload(seq))
        spool.append(2, payload(2))
        assert spool.last_seq() == 4
        spool.acknowledge(range(5))
        assert spool.last_seq() == 4
    with Spool(path) as spool:
        assert spool.last_seq() == 4
        assert spool.status().depth == 0


def test_the_spool_files_are_owner_only(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    with Spool(path) as spool:
        spool.append(0, payload(0))
        for file in [path, Path(f"{path}-wal"), Path(f"{path}-shm")]:
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


def test_the_spool_runs_in_wal_mode_with_a_schema_version(path: Path) -> None:
    Spool(path).close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    finally:
        db.close()


def test_a_spool_from_a_newer_version_is_refused(path: Path) -> None:
    Spool(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(SpoolError, match="newer"):
        Spool(path)


def test_concurrent_appends_while_acknowledging_lose_nothing(path: Path) -> None:
    per_thread = 400
    acked: list[int] = []
    done = threading.Event()
    errors: list[BaseException] = []

    with Spool(path) as spool:

        def tracker(parity: int) -> None:
            try:
                for i in range(per_thread):
                    assert spool.append(2 * i + parity, payload(2 * i + parity, 20))
            except BaseException as exc:
                errors.append(exc)

        def uploader() -> None:
            try:
                while True:
                    finished = done.is_set()
                    batch = spool.next_batch(max_records=37)
                    if batch:
                        acked.extend(r.seq for r in batch)
                        assert spool.acknowledge(r.seq for r in batch) == len(batch)
                    elif finished:
                        return
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=tracker, args=(p,)) for p in (0, 1)]
        ack_thread = threading.Thread(target=uploader)
        for t in [*threads, ack_thread]:
            t.start()
        for t in threads:
            t.join()
        done.set()
        ack_thread.join()

        assert errors == []
        assert sorted(acked) == list(range(2 * per_thread))  # each exactly once
        assert spool.status().depth == 0
        assert spool.status().bytes == 0
        assert spool.last_seq() == 2 * per_thread - 1


CHILD = """
import sys
from collector.spool import Spool
spool = Spool(sys.argv[1])
seq = spool.last_seq() + 1
while True:
    assert spool.append(seq, b"%d:" % seq + b"y" * (seq % 300))
    sys.stdout.write(f"{seq}\\n")
    sys.stdout.flush()
    seq += 1
"""


def test_killed_while_appending_every_reported_append_survives_and_the_file_is_intact(path: Path) -> None:
    reported: set[int] = set()
    rng = random.Random()
    for _round in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path)],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=subprocess.PIPE,
        )
        try:
            assert child.stdout is not None
            first = child.stdout.readline()  # appending has begun
            assert first.endswith(b"\n")
            reported.add(int(first))
            time.sleep(rng.uniform(0.05, 0.5))
            child.send_signal(signal.SIGKILL)
            out = child.stdout.read()
        finally:
            child.kill()
            child.wait()
        # A line without its newline was cut by the kill: the child had not finished reporting it.
        lines = out.split(b"\n")[:-1]
        reported.update(int(line) for line in lines)
        assert child.returncode == -signal.SIGKILL

    assert len(reported) > 3
    with Spool(path) as spool:
        held = {r.seq: r.payload for r in spool.next_batch(max_records=10**9)}
        assert reported <= held.keys()
        assert all(p == b"%d:" % s + b"y" * (s % 300) for s, p in held.items())
        assert spool.last_seq() == max(held)
        assert sorted(held) == list(range(len(held)))  # restarts continued the sequence without gaps
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()


def test_what_was_held_past_the_maximum_age_is_dropped_oldest_first_and_counted(path: Path) -> None:
    clock = Clock()
    with Spool(path, clock=clock) as spool:
        for seq in range(2500):
            spool.append(seq, payload(seq))
        clock.now += 3600
        for seq in range(2500, 2510):
            spool.append(seq, payload(seq))
        # Nothing old enough: one look-up, nothing dropped.
        assert spool.expire(int(T0 * 1000) - 1) == 0 and spool.depth == 2510
        assert spool.expire(int(T0 * 1000) + 1) == 2500
        assert [s.seq for s in spool.next_batch(100)] == list(range(2500, 2510))
        status = spool.status()
        assert (status.depth, status.bytes, status.expired) == (10, 1000, 2500)
    with Spool(path, clock=clock) as reopened:  # counted on disk, and the figures match the file
        assert (reopened.depth, reopened.status().expired) == (10, 2500)


def test_a_spool_of_the_first_schema_version_is_upgraded_in_place(path: Path) -> None:
    with Spool(path) as spool:
        spool.append(0, payload(0))
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE spool_state DROP COLUMN expired")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with Spool(path) as upgraded:
        assert upgraded.depth == 1 and upgraded.status().expired == 0
