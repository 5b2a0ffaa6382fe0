"""How every Productimon command logs and reports failure: one readable line, a traceback only when asked.

Logs are plain text lines by default; `PRODUCTIMON_LOG_FORMAT=json` makes them one JSON object per line,
for log collectors.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable

from plumbing.files import private_umask


class UserFacingError(Exception):
    """An error whose message is already the sentence the person at the terminal needs."""


def _wants_traceback() -> bool:
    return os.environ.get("PRODUCTIMON_TRACEBACK", "") not in ("", "0", "false")


# What every LogRecord carries; anything else on a record came from `extra=` and is logged as a field.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, process, message, and the record's `extra` fields."""

    def __init__(self, process_name: str) -> None:
        super().__init__()
        self.process_name = process_name

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": record.name,
            "process": self.process_name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def log_format() -> str:
    return os.environ.get("PRODUCTIMON_LOG_FORMAT", "plain").lower()


def log_level() -> str:
    return os.environ.get("PRODUCTIMON_LOG_LEVEL", "INFO").upper()


def json_logging_config(name: str) -> dict | None:
    """A `logging.config.dictConfig` for JSON lines, for libraries that set logging up themselves (faust);
    None when the format is plain."""
    if log_format() != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "process_name": name}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"level": log_level(), "handlers": ["default"]},
    }


def setup_logging(name: str) -> None:
    if log_format() == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter(name))
        logging.basicConfig(level=log_level(), handlers=[handler])
    else:
        logging.basicConfig(level=log_level(), format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")


def command(name: str) -> Callable[[Callable[[], int | None]], Callable[[], int]]:
    """Wrap a console-script entry point: owner-only files, logging set up, exceptions as `name: error: ...`."""

    def wrap(main: Callable[[], int | None]) -> Callable[[], int]:
        @functools.wraps(main)
        def run() -> int:
            private_umask()  # first: a log file or data directory made before it would be readable by others
            setup_logging(name)
            try:
                return int(main() or 0)
            except KeyboardInterrupt:
                return 130
            except BrokenPipeError:
                # The reader went away (`status | head`): nothing is wrong, and nothing more can be written.
                # stdout points at /dev/null so the interpreter's flush at exit cannot fail a second time.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 0
            except Exception as exc:  # the one place errors become a line for a person
                if _wants_traceback():
                    raise
                print(f"{name}: error: {exc}  (PRODUCTIMON_TRACEBACK=1 shows details)", file=sys.stderr)
                return 1

        return run

    return wrap
