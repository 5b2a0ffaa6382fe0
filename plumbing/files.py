"""How Productimon writes to disk: owner-only (no other user on the host reads anyone's activity, keys or logs),
and atomically where a crash must never leave half a file."""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

# Nothing for group or others: every file 0600, every directory 0700, also those chDB, faust and the broker make.
PRIVATE_UMASK = 0o077


def private_umask() -> None:
    """Make everything this process creates from now on owner-only, and everything its children create: a
    umask is inherited across fork and exec, so it also reaches the libraries and binaries we do not control."""
    os.umask(PRIVATE_UMASK)


def make_private_dir(path: Path) -> None:
    """Create `path` as 0700, or tighten it to 0700 when an earlier run (or a person) left it open to others.

    Tightening a data directory's root is enough for what an older run left inside: without the search bit on
    the root nobody else reaches it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if os.name == "posix" and mode & 0o077:  # on Windows the mode bits say nothing about other users
        os.chmod(path, 0o700)
        log.warning("%s was open to other users (mode %04o); made it owner-only (0700)", path, mode)


def write_atomically(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same directory, fsync, then rename over `path`.

    The file is 0600 from the start (mkstemp creates it so), so it is never readable by others, not even half
    written; on Windows the user's profile directory is what keeps it private. The directory is created
    owner-only when missing."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_private_files(directory: Path, files: Mapping[str, bytes]) -> None:
    """Each of `files` (name -> bytes) written atomically into `directory` (made 0700 if missing), each 0600."""
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, data in files.items():
        write_atomically(directory / name, data)
