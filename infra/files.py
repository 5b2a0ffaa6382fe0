"""Writing a file so a crash never leaves half of it: one place for keys, certificates and the collector's state."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write via a temporary file in the same directory, fsync, then rename over `path`.

    The file has `mode` from the start (owner-only by default), so a secret is never readable by others, not
    even half written. The directory is created owner-only when missing."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        if hasattr(os, "fchmod"):  # POSIX; on Windows the user's profile directory is what keeps it private
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
