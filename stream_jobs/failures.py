"""Why a warehouse write failed: the warehouse being away (transient: retry the same data) or the data itself
(permanent: retrying can never succeed, so the worker isolates the records at fault and dead-letters them).

Pure. The rule leans to transient: a failure is permanent only when the warehouse answered and named an error
of the data, or the client could not even lay the data out. Anything unknown is retried, because dead-lettering
good data for a passing fault would be the worse mistake; a permanent fault retried is still seen (the retry
metric and the log say which error) and bounded per attempt.
"""

from __future__ import annotations

import re

from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError

# ClickHouse error codes that say nothing about the data: the server is busy, short of memory, shutting down,
# read-only, being migrated or unreachable behind it. (src/Common/ErrorCodes.cpp in ClickHouse.)
TRANSIENT_CODES = frozenset(
    {
        3,  # UNEXPECTED_END_OF_FILE
        32,  # ATTEMPT_TO_READ_AFTER_EOF
        60,  # UNKNOWN_TABLE (a migration not yet applied)
        81,  # UNKNOWN_DATABASE
        159,  # TIMEOUT_EXCEEDED
        164,  # READONLY
        173,  # CANNOT_ALLOCATE_MEMORY
        192,  # UNKNOWN_USER
        193,  # WRONG_PASSWORD
        194,  # REQUIRED_PASSWORD
        198,  # DNS_ERROR
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        243,  # NOT_ENOUGH_SPACE
        252,  # TOO_MANY_PARTS (merges behind); but see _PARTITIONS_PER_BLOCK
        279,  # ALL_CONNECTION_TRIES_FAILED
        285,  # TOO_FEW_LIVE_REPLICAS
        319,  # UNKNOWN_STATUS_OF_INSERT
        372,  # SESSION_NOT_FOUND
        373,  # SESSION_IS_LOCKED
        394,  # QUERY_WAS_CANCELLED
        425,  # SYSTEM_ERROR
        439,  # CANNOT_SCHEDULE_TASK
        497,  # ACCESS_DENIED
        516,  # AUTHENTICATION_FAILED
        999,  # KEEPER_EXCEPTION
        1000,  # POCO_EXCEPTION
    }
)
# TOO_MANY_PARTS is also what a block spanning too many partitions gets: the same data fails every time.
_PARTITIONS_PER_BLOCK = re.compile(r"too many partitions for (a )?single insert block", re.IGNORECASE)
_CODE_IN_TEXT = re.compile(r"Code: (\d+)\. ")


def error_code(exc: BaseException) -> int | None:
    """The ClickHouse error code of a failure, if the warehouse named one."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    found = _CODE_IN_TEXT.search(str(exc))
    return int(found.group(1)) if found else None


def is_permanent(exc: BaseException) -> bool:
    """Whether writing the same data again must fail the same way (module docstring)."""
    if isinstance(exc, OperationalError | OSError | TimeoutError):
        return False  # the network or the server process: nothing was said about the data
    if isinstance(exc, DataError | ValueError | OverflowError | UnicodeError):
        # A value the client could not lay out for its column. (Not TypeError or ProgrammingError: those are
        # bugs of the code, and a bug must stop the worker, where it is seen, not dead-letter everything.)
        return True
    if isinstance(exc, DatabaseError):
        code = error_code(exc)
        if code is None:
            return False  # an HTTP error without a ClickHouse code: a proxy or a server in trouble
        if code == 252:
            return bool(_PARTITIONS_PER_BLOCK.search(str(exc)))
        return code not in TRANSIENT_CODES
    return False


def describe(exc: BaseException) -> str:
    """One line naming a failure, without the data a warehouse message may quote after it."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    code = error_code(exc)
    if code is not None:
        found = re.search(r"DB::Exception: (.*?)(?:: while|\. \(|$)", text)
        text = f"code {code}: {found.group(1) if found else text}"
    return text[:250]


def short_reason(exc: BaseException) -> str:
    """Why a record the warehouse would not take was refused, in one short line."""
    return f"the warehouse refused it ({describe(exc)})"
