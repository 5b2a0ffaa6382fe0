"""The running collector's small promises: a pause lasts until it is over, and only one collector runs per home."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.agent import AlreadyRunning, RunLock, is_paused, is_running, pause_until_ms
from collector.config import CollectorHome

NOW_MS = 1_800_000_000_000


@pytest.fixture
def home(tmp_path: Path) -> CollectorHome:
    return CollectorHome(tmp_path / "home").create()


# -- pause


def test_without_a_paused_file_tracking_is_on(home):
    assert pause_until_ms(home) is None
    assert is_paused(home, NOW_MS) is False


@pytest.mark.parametrize(
    ("content", "until"),
    [("0", 0), ("", 0), ("  \n", 0), ("garbage", 0), (f"{NOW_MS + 5}\n", NOW_MS + 5), (f" {NOW_MS} ", NOW_MS)],
)
def test_the_paused_file_says_until_when(home, content, until):
    home.paused_file.write_text(content)
    assert pause_until_ms(home) == until


def test_a_paused_file_that_cannot_be_read_pauses_until_resume(home):
    home.paused_file.mkdir()  # present but not readable as a file: stay paused rather than record
    assert pause_until_ms(home) == 0
    assert is_paused(home, NOW_MS) is True


@pytest.mark.parametrize("content", ["0", "", "not a number"])
def test_a_pause_without_an_end_lasts_until_resume(home, content):
    home.paused_file.write_text(content)
    assert is_paused(home, NOW_MS) is True
    assert is_paused(home, NOW_MS + 365 * 86_400_000) is True
    assert home.paused_file.exists()


def test_a_timed_pause_holds_until_its_end(home):
    home.paused_file.write_text(str(NOW_MS + 60_000))
    assert is_paused(home, NOW_MS) is True
    assert is_paused(home, NOW_MS + 59_999) is True
    assert home.paused_file.exists()


def test_a_timed_pause_ends_at_its_end_and_removes_the_file(home):
    home.paused_file.write_text(str(NOW_MS + 60_000))
    assert is_paused(home, NOW_MS + 60_000) is False
    assert not home.paused_file.exists()
    assert pause_until_ms(home) is None


def test_a_pause_that_ended_long_ago_is_over(home):
    home.paused_file.write_text(str(NOW_MS - 86_400_000))
    assert is_paused(home, NOW_MS) is False
    assert not home.paused_file.exists()


# -- one collector per home


def test_a_second_lock_on_the_same_home_is_refused_naming_the_file(home):
    first = RunLock(home.lock_file)
    try:
        with pytest.raises(AlreadyRunning) as caught:
            RunLock(home.lock_file)
        assert str(home.lock_file) in str(caught.value)
    finally:
        first.release()


def test_after_release_the_home_can_be_locked_again(home):
    RunLock(home.lock_file).release()
    second = RunLock(home.lock_file)
    try:
        with pytest.raises(AlreadyRunning):
            RunLock(home.lock_file)
    finally:
        second.release()
    RunLock(home.lock_file).release()


def test_locks_on_different_homes_do_not_interfere(tmp_path):
    a = RunLock(CollectorHome(tmp_path).lock_file)
    b = RunLock(tmp_path / "other.lock")
    a.release()
    b.release()


def test_is_running_while_a_lock_is_held_and_not_after(home):
    assert is_running(home) is False
    assert not home.lock_file.exists()  # asking does not create it
    lock = RunLock(home.lock_file)
    assert is_running(home) is True
    assert is_running(home) is True  # asking does not take the lock away
    lock.release()
    assert is_running(home) is False
    # Nor does asking leave a lock behind.
    RunLock(home.lock_file).release()
