"""How every Productimon command reports failure: one readable line, a traceback only when asked."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable


class UserFacingError(Exception):
    """An error whose message is already the sentence the person at the terminal needs."""


def _wants_traceback() -> bool:
    return os.environ.get("PRODUCTIMON_TRACEBACK", "") not in ("", "0", "false")


def command(name: str) -> Callable[[Callable[[], int | None]], Callable[[], int]]:
    """Wrap a console-script entry point: set up logging, turn exceptions into `name: error: ...`."""

    def wrap(main: Callable[[], int | None]) -> Callable[[], int]:
        @functools.wraps(main)
        def run() -> int:
            logging.basicConfig(
                level=os.environ.get("PRODUCTIMON_LOG_LEVEL", "INFO").upper(),
                format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
            )
            try:
                return int(main() or 0)
            except KeyboardInterrupt:
                return 130
            except Exception as exc:  # the one place errors become a line for a person
                if _wants_traceback():
                    raise
                print(f"{name}: error: {exc}  (PRODUCTIMON_TRACEBACK=1 shows details)", file=sys.stderr)
                return 1

        return run

    return wrap
