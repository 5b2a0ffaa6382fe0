"""The request's SQL: just enough lexing (warehouse/statements.py's tokens) to find where an INSERT's inline data
begins, so the statement is held in memory and its data streamed to disk; and the quoting of the SQL the server
writes itself. ClickHouse joins the `query` URL parameter and the body into one text; so does this."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from warehouse.server.bodies import READ_SIZE
from warehouse.server.errors import BAD_ARGUMENTS, QUERY_IS_TOO_LARGE, ClickHouseError
from warehouse.statements import TOKEN

MAX_QUERY_BYTES = 64 << 20  # SQL held in memory; insert data is streamed to disk instead


@dataclass
class Scan:
    """Where a statement's parts lie in its text, as far as the server needs them."""

    first_word: str = ""
    format_name: str | None = None
    format_start: int = -1  # offset of the top-level FORMAT keyword
    format_end: int = -1  # offset just past the format name
    data_start: int = -1  # where inline data would begin
    settings_start: int = -1  # offset of a top-level SETTINGS clause before FORMAT


def _scan(text: str, *, stop_at_format: bool) -> Scan:
    """Walk the SQL's tokens outside quotes and comments; stop at FORMAT when what follows is data."""
    scan = Scan()
    depth = 0
    format_keyword = -1
    for token in TOKEN.finditer(text):
        kind = token.lastgroup
        if kind in ("space", "comment"):
            continue
        if kind == "word":
            word = token.group()
            upper = word.upper()
            scan.first_word = scan.first_word or upper
            if format_keyword >= 0:
                scan.format_name, scan.format_start, scan.format_end = word, format_keyword, token.end()
                scan.data_start = _data_offset(text, token.end())
                if stop_at_format:
                    return scan
                format_keyword = -1
            elif depth == 0 and upper == "FORMAT":
                format_keyword = token.start()
            elif depth == 0 and upper == "SETTINGS" and scan.settings_start < 0 and scan.format_name is None:
                scan.settings_start = token.start()
            continue
        format_keyword = -1
        if token.group() == "(":
            depth += 1
        elif token.group() == ")":
            depth = max(0, depth - 1)
    return scan


def _data_offset(text: str, position: int) -> int:
    # ClickHouse: inline data starts after the first newline following the format name, or after the
    # blanks if there is none.
    while position < len(text) and text[position] in " \t\f":
        position += 1
    if position < len(text) and text[position] == "\r":
        position += 1
    if position < len(text) and text[position] == "\n":
        position += 1
    return position


def sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sql_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


@dataclass
class Statement:
    """One request's statement and, for an INSERT with inline data, that data and what surrounds it."""

    sql: str  # the statement without its inline data
    scan: Scan
    data: Iterator[bytes] | None = None  # an INSERT's data, streamed from the request
    insert_target: str = ""  # for such an INSERT: `INSERT INTO t (cols)`
    insert_settings: str = ""  # and its `SETTINGS ...` clause, if any

    def from_infile(self, path: Path) -> str:
        """The INSERT, reading its data from the spooled file instead of the request."""
        return (
            f"{self.insert_target.rstrip()} FROM INFILE {sql_string(str(path))} "
            f"{self.insert_settings.strip()} FORMAT {self.scan.format_name}"
        )


def read_statement(query_param: str, body: Iterable[bytes]) -> Statement:
    """Split `query` + body, as ClickHouse joins them, into a statement and, for an INSERT, its data."""
    chunks = iter(body)
    head = bytearray(query_param.encode() + b"\n" if query_param else b"")
    exhausted = False

    def read_more() -> None:
        nonlocal exhausted
        chunk = next(chunks, None)
        if chunk is None:
            exhausted = True
        else:
            head.extend(chunk)
            if len(head) > MAX_QUERY_BYTES:
                raise ClickHouseError.of(QUERY_IS_TOO_LARGE, f"Query is larger than {MAX_QUERY_BYTES} bytes")

    while not exhausted and len(head) < 64 * 1024:
        read_more()
    # latin-1 keeps character offsets equal to byte offsets, whatever binary data follows the statement.
    scan = _scan(head[:READ_SIZE].decode("latin-1"), stop_at_format=True)
    if scan.first_word == "INSERT" and scan.format_name is not None:
        while not exhausted and len(head) - scan.format_end < 3:  # "\r\n" may not have arrived yet
            read_more()
            scan = _scan(head[:READ_SIZE].decode("latin-1"), stop_at_format=True)
        statement = bytes(head[: scan.format_end])
        target_end = scan.settings_start if scan.settings_start >= 0 else scan.format_start
        return Statement(
            _decode_sql(statement),
            scan,
            chain([bytes(head[scan.data_start :])], chunks),
            insert_target=_decode_sql(statement[:target_end]),
            insert_settings=_decode_sql(statement[target_end : scan.format_start]),
        )
    while not exhausted:
        read_more()
    sql = _decode_sql(head)
    return Statement(sql, _scan(sql, stop_at_format=False))


def _decode_sql(raw: bytes | bytearray) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ClickHouseError.of(BAD_ARGUMENTS, "The query is not valid UTF-8") from None
