"""Owner-only on disk (issue 16, least privilege): whatever umask a process was started with, what Productimon
writes is 0600 and its directories 0700."""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.processes import ManagedProcess
from plumbing.cli import command
from plumbing.files import make_private_dir


def mode(path) -> str:
    """The permission bits as they are written in a shell ("0600"), so a failure reads at a glance."""
    return f"{stat.S_IMODE(path.stat().st_mode):04o}"


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual umask of a login shell (0022: everything readable by every user), restored afterwards."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_a_directory_left_open_to_others_is_made_owner_only_and_said_so(tmp_path, caplog):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="plumbing.files"):
        make_private_dir(data_dir)
    assert mode(data_dir) == "0700"
    assert [r.getMessage() for r in caplog.records] == [
        f"{data_dir} was open to other users (mode 0755); made it owner-only (0700)"
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")
def test_another_user_reads_an_open_data_directory_until_it_is_made_owner_only(open_umask):
    nobody = pwd.getpwnam("nobody")
    outer = Path(tempfile.mkdtemp(prefix="productimon-"))
    try:
        outer.chmod(0o711)  # others may pass through, as through a home directory, but not list it
        data_dir = outer / "data"
        data_dir.mkdir()
        part = data_dir / "data.bin"
        part.write_text("Salaries 2025 - Spreadsheet")

        def read_as_nobody() -> subprocess.CompletedProcess:
            return subprocess.run(
                ["cat", str(part)], user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[], capture_output=True
            )

        assert read_as_nobody().stdout == b"Salaries 2025 - Spreadsheet"  # the default umask: anyone reads it
        make_private_dir(data_dir)
        refused = read_as_nobody()
        assert (refused.returncode, refused.stdout) == (1, b"")
        assert b"Permission denied" in refused.stderr
    finally:
        shutil.rmtree(outer)


def test_every_command_writes_owner_only_files_whatever_umask_it_was_started_with(tmp_path, open_umask):
    @command("productimon-test")
    def main() -> int:
        (tmp_path / "made-by-the-command").mkdir()
        (tmp_path / "made-by-the-command" / "state").write_text("titles")
        return 0

    assert main() == 0
    assert mode(tmp_path / "made-by-the-command") == "0700"
    assert mode(tmp_path / "made-by-the-command" / "state") == "0600"


def test_a_managed_process_and_its_log_are_owner_only_whatever_umask_its_parent_has(tmp_path, open_umask):
    written = tmp_path / "written-by-the-child"
    script = f"open({str(written)!r}, 'w').write('x'); print('done')"
    child = ManagedProcess("child", [sys.executable, "-c", script], tmp_path / "logs").start()
    try:
        child.wait_for_output("done", 30)
    finally:
        child.stop()
    assert {name: mode(tmp_path / name) for name in ("logs", "logs/child.log", "written-by-the-child")} == {
        "logs": "0700",
        "logs/child.log": "0600",
        "written-by-the-child": "0600",
    }
