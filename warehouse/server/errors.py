"""Errors as ClickHouse reports them over HTTP: a numeric code, a `Code: N. DB::Exception: ...` text, and the HTTP
status ClickHouse gives the code. The warehouse server raises these itself and passes the engine's on the same way."""

from __future__ import annotations

import re

# ClickHouse error codes this server raises itself.
EMPTY_OR_SYNTAX = 62
BAD_ARGUMENTS = 36
NOT_IMPLEMENTED = 48
READONLY = 164
QUERY_IS_TOO_LARGE = 229
ABORTED = 236
CANNOT_DECOMPRESS = 271
ACCESS_DENIED = 497
AUTHENTICATION_FAILED = 516
STD_EXCEPTION = 1001

_CODE_NAMES = {
    EMPTY_OR_SYNTAX: "SYNTAX_ERROR",
    BAD_ARGUMENTS: "BAD_ARGUMENTS",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    READONLY: "READONLY",
    QUERY_IS_TOO_LARGE: "QUERY_IS_TOO_LARGE",
    ABORTED: "ABORTED",
    CANNOT_DECOMPRESS: "CANNOT_DECOMPRESS",
    ACCESS_DENIED: "ACCESS_DENIED",
    AUTHENTICATION_FAILED: "AUTHENTICATION_FAILED",
    STD_EXCEPTION: "STD_EXCEPTION",
}

# The HTTP status ClickHouse gives an error code, whoever raised it; anything else is a 500. Never 429/503/504 for
# a client error: clickhouse-connect retries those.
_HTTP_STATUS = {
    AUTHENTICATION_FAILED: 403,
    192: 403,  # UNKNOWN_USER
    ACCESS_DENIED: 403,
    READONLY: 403,
    **dict.fromkeys((6, 26, 27, 36, 38, 41, 62, 72, 73, 115, 117, 271, 374), 400),  # parse errors, bad input
    **dict.fromkeys((46, 47, 50, 60, 81, 372), 404),  # unknown function/identifier/type/table/database
    QUERY_IS_TOO_LARGE: 413,
    373: 423,  # SESSION_IS_LOCKED
    NOT_IMPLEMENTED: 501,
    ABORTED: 503,  # shutting down: worth retrying elsewhere or later
}

_ENGINE_CODE = re.compile(r"Code: (\d+)\. ")


class ClickHouseError(Exception):
    """An error as ClickHouse reports it over HTTP: a numeric code and a `Code: N. DB::Exception: ...` text."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text

    @classmethod
    def of(cls, code: int, message: str) -> ClickHouseError:
        return cls(code, f"Code: {code}. DB::Exception: {message}. ({_CODE_NAMES.get(code, 'UNKNOWN')})")

    @classmethod
    def from_engine(cls, exc: BaseException) -> ClickHouseError:
        text = str(exc)
        found = _ENGINE_CODE.search(text)
        if found is None:
            return cls.of(STD_EXCEPTION, text)
        return cls(int(found.group(1)), text[found.start() :])

    @property
    def status(self) -> int:
        return _HTTP_STATUS.get(self.code, 500)
