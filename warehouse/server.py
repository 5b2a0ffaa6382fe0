"""The embedded warehouse server: the one process that owns the chDB data directory, answering the part of
ClickHouse's HTTP interface that clickhouse-connect speaks, so every other process uses the warehouse over HTTP."""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import logging
import re
import shutil
import signal
import socket
import socketserver
import sys
import tempfile
import threading
import time
import uuid
import zlib
from base64 import b64decode
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP as HTTP_POLICY
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import chain
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import lz4.frame
import zstandard
from chdb import _chdb

from plumbing.cli import UserFacingError, command
from plumbing.files import make_private_dir
from plumbing.settings import load_settings
from warehouse.roles import OWNER, ROLES, Role, role_refusal
from warehouse.statements import TOKEN, database_refusal, refusal, setting_refusal

log = logging.getLogger(__name__)

_READ_SIZE = 1 << 20  # request bodies are read, decompressed and spooled in pieces of this size
_MAX_QUERY_BYTES = 64 << 20  # SQL held in memory; insert data is streamed to disk instead
_MAX_DISCARD_BYTES = 256 << 20  # an unwanted body is read and dropped up to this size to keep the connection
_ENGINE_CONNECTIONS = 4  # chDB runs one query at a time per connection; these many run side by side
_KEEP_ALIVE_S = 30  # ClickHouse's keep_alive_timeout
_IO_TIMEOUT_S = 300  # a request whose client stops sending or reading for this long is dropped
_SESSION_TIMEOUT_S = 60  # ClickHouse's default session_timeout, and its max_session_timeout below
_MAX_SESSION_TIMEOUT_S = 3600
_SHUTDOWN_GRACE_S = 30
# Engine (server) settings given when the data directory is opened. chDB sizes the background pool to the CPU
# count, 2 here; a mutation (a deletion) then waits its turn part by part, about 0.1 s each, so deleting an
# account's rows from a table of a few hundred parts took seconds whatever its size. ClickHouse's server
# default is 16: the tasks are mostly waiting, not computing (bench/deletion.py measures the difference).
_ENGINE_OPTIONS = "background_pool_size=16"

# ClickHouse error codes this server raises itself.
_EMPTY_OR_SYNTAX = 62
_BAD_ARGUMENTS = 36
_NOT_IMPLEMENTED = 48
_READONLY = 164
_QUERY_IS_TOO_LARGE = 229
_ABORTED = 236
_CANNOT_DECOMPRESS = 271
_SESSION_NOT_FOUND = 372
_SESSION_IS_LOCKED = 373
_INVALID_SESSION_TIMEOUT = 374
_ACCESS_DENIED = 497
_AUTHENTICATION_FAILED = 516
_STD_EXCEPTION = 1001

_CODE_NAMES = {
    _EMPTY_OR_SYNTAX: "SYNTAX_ERROR",
    _BAD_ARGUMENTS: "BAD_ARGUMENTS",
    _NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    _READONLY: "READONLY",
    _QUERY_IS_TOO_LARGE: "QUERY_IS_TOO_LARGE",
    _ABORTED: "ABORTED",
    _CANNOT_DECOMPRESS: "CANNOT_DECOMPRESS",
    _SESSION_NOT_FOUND: "SESSION_NOT_FOUND",
    _SESSION_IS_LOCKED: "SESSION_IS_LOCKED",
    _INVALID_SESSION_TIMEOUT: "INVALID_SESSION_TIMEOUT",
    _ACCESS_DENIED: "ACCESS_DENIED",
    _AUTHENTICATION_FAILED: "AUTHENTICATION_FAILED",
    _STD_EXCEPTION: "STD_EXCEPTION",
}

# The HTTP status ClickHouse gives an error code; anything else is a 500. Never 429/503/504 for a client
# error: clickhouse-connect retries those.
_HTTP_STATUS = {
    _AUTHENTICATION_FAILED: 403,
    192: 403,  # UNKNOWN_USER
    _ACCESS_DENIED: 403,
    _READONLY: 403,
    **dict.fromkeys((6, 26, 27, 36, 38, 41, 62, 72, 73, 115, 117, 271, 374), 400),  # parse errors, bad input
    **dict.fromkeys((46, 47, 50, 60, 81, 372), 404),  # unknown function/identifier/type/table/database
    _QUERY_IS_TOO_LARGE: 413,
    _SESSION_IS_LOCKED: 423,
    _NOT_IMPLEMENTED: 501,
    _ABORTED: 503,  # shutting down: worth retrying elsewhere or later
}

# URL parameters that steer the HTTP exchange rather than the engine; the rest are settings.
_TRANSPORT_PARAMS = frozenset(
    {
        "query", "database", "default_format", "query_id", "user", "password", "quota_key", "role",
        "session_id", "session_timeout", "session_check", "buffer_size", "wait_end_of_query",
        "client_protocol_version", "stacktrace", "compress", "decompress", "readonly",
        "enable_http_compression", "send_progress_in_http_headers", "http_headers_progress_interval_ms",
        "http_wait_end_of_query", "cancel_http_readonly_queries_on_client_close",
    }
)  # fmt: skip


_UNSET = object()
_PRINTABLE = re.compile(r"[\x21-\x7e]{1,256}")
_FORMAT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_ENGINE_CODE = re.compile(r"Code: (\d+)\. ")
_IN_SCOPE = re.compile(r": In scope SELECT formatQuery\(.*\)\.(?= \(\w+\)$)", re.DOTALL)


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
            return cls.of(_STD_EXCEPTION, text)
        return cls(int(found.group(1)), text[found.start() :])

    @property
    def status(self) -> int:
        return _HTTP_STATUS.get(self.code, 500)


# --- SQL scanning: just enough lexing to find where an INSERT's data begins ---


@dataclass
class _Scan:
    first_word: str = ""
    format_name: str | None = None
    format_start: int = -1  # offset of the top-level FORMAT keyword
    format_end: int = -1  # offset just past the format name
    data_start: int = -1  # where inline data would begin
    settings_start: int = -1  # offset of a top-level SETTINGS clause before FORMAT


def _scan(text: str, *, stop_at_format: bool) -> _Scan:
    """Walk the SQL's tokens outside quotes and comments; stop at FORMAT when what follows is data."""
    scan = _Scan()
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


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _sql_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


@dataclass
class _Statement:
    sql: str  # the statement without its inline data
    scan: _Scan
    data: Iterator[bytes] | None = None  # an INSERT's data, streamed from the request
    insert_target: str = ""  # for such an INSERT: `INSERT INTO t (cols)`
    insert_settings: str = ""  # and its `SETTINGS ...` clause, if any

    def from_infile(self, path: Path) -> str:
        """The INSERT, reading its data from the spooled file instead of the request."""
        return (
            f"{self.insert_target.rstrip()} FROM INFILE {_sql_string(str(path))} "
            f"{self.insert_settings.strip()} FORMAT {self.scan.format_name}"
        )


def _read_statement(query_param: str, body: Iterable[bytes]) -> _Statement:
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
            if len(head) > _MAX_QUERY_BYTES:
                raise ClickHouseError.of(_QUERY_IS_TOO_LARGE, f"Query is larger than {_MAX_QUERY_BYTES} bytes")

    while not exhausted and len(head) < 64 * 1024:
        read_more()
    # latin-1 keeps character offsets equal to byte offsets, whatever binary data follows the statement.
    scan = _scan(head[:_READ_SIZE].decode("latin-1"), stop_at_format=True)
    if scan.first_word == "INSERT" and scan.format_name is not None:
        while not exhausted and len(head) - scan.format_end < 3:  # "\r\n" may not have arrived yet
            read_more()
            scan = _scan(head[:_READ_SIZE].decode("latin-1"), stop_at_format=True)
        statement = bytes(head[: scan.format_end])
        target_end = scan.settings_start if scan.settings_start >= 0 else scan.format_start
        return _Statement(
            _decode_sql(statement),
            scan,
            chain([bytes(head[scan.data_start :])], chunks),
            insert_target=_decode_sql(statement[:target_end]),
            insert_settings=_decode_sql(statement[target_end : scan.format_start]),
        )
    while not exhausted:
        read_more()
    sql = _decode_sql(head)
    return _Statement(sql, _scan(sql, stop_at_format=False))


def _decode_sql(raw: bytes | bytearray) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ClickHouseError.of(_BAD_ARGUMENTS, "The query is not valid UTF-8") from None


# --- request bodies ---


class _RequestBody:
    """The request body as it arrives, sized or chunked, in large pieces; `finished` once fully read."""

    def __init__(self, rfile: Any, headers: Any) -> None:
        self._rfile = rfile
        self.finished = True
        self._chunks: Iterator[bytes] = iter(())
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            self.finished = False
            self._chunks = self._chunked()
        elif headers.get("Content-Length"):
            try:
                length = int(headers["Content-Length"])
            except ValueError:
                raise ClickHouseError.of(_BAD_ARGUMENTS, "Content-Length is not a number") from None
            if length > 0:
                self.finished = False
                self._chunks = self._sized(length)

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def discard(self) -> bool:
        """Read and drop what is left, up to a limit; true when the connection can carry another request."""
        dropped = 0
        for chunk in self._chunks:
            dropped += len(chunk)
            if dropped > _MAX_DISCARD_BYTES:
                return False
        return self.finished

    def _sized(self, length: int) -> Iterator[bytes]:
        while length:
            chunk = self._rfile.read(min(length, _READ_SIZE))
            if not chunk:
                raise ConnectionError("client closed the connection inside the request body")
            length -= len(chunk)
            yield chunk
        self.finished = True

    def _chunked(self) -> Iterator[bytes]:
        while True:
            line = self._rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise ConnectionError("malformed chunked request body") from None
            if size == 0:
                while self._rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self.finished = True
                return
            while size:
                chunk = self._rfile.read(min(size, _READ_SIZE))
                if not chunk:
                    raise ConnectionError("client closed the connection inside the request body")
                size -= len(chunk)
                yield chunk
            self._rfile.readline(3)


def _decompressed(chunks: Iterable[bytes], encoding: str) -> Iterator[bytes]:
    """Undo Content-Encoding. clickhouse-connect compresses each insert block as its own frame."""
    if encoding in ("", "identity"):
        yield from chunks
        return
    try:
        if encoding == "zstd":
            zstd = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
            for chunk in chunks:
                if out := zstd.decompress(chunk):
                    yield out
            return
        new_decompressor: Callable[[], Any] | None = {
            "lz4": lz4.frame.LZ4FrameDecompressor,
            "gzip": lambda: zlib.decompressobj(wbits=31),
            "deflate": zlib.decompressobj,
        }.get(encoding)
        if new_decompressor is None:
            raise ClickHouseError.of(_NOT_IMPLEMENTED, f"Unsupported Content-Encoding {encoding[:40]!r}")
        decompressor = new_decompressor()
        for chunk in chunks:
            while chunk:
                if out := decompressor.decompress(chunk):
                    yield out
                if not decompressor.eof:
                    break
                chunk, decompressor = decompressor.unused_data, new_decompressor()
    except (RuntimeError, zlib.error, zstandard.ZstdError) as exc:
        raise ClickHouseError.of(_CANNOT_DECOMPRESS, f"Cannot decompress the {encoding} request body: {exc}") from None


def _compressed(body: bytes | memoryview, accept_encoding: str) -> tuple[bytes | memoryview, str | None]:
    # On loopback CPU matters more than bytes, so the cheapest method the client accepts wins.
    accepted = {part.split(";", 1)[0].strip().lower() for part in accept_encoding.split(",")}
    if "lz4" in accepted:
        return lz4.frame.compress(body), "lz4"
    if "zstd" in accepted:
        return zstandard.ZstdCompressor(level=1).compress(body), "zstd"
    if "gzip" in accepted:
        gzip = zlib.compressobj(1, wbits=31)
        return gzip.compress(body) + gzip.flush(), "gzip"
    if "deflate" in accepted:
        return zlib.compress(body, 1), "deflate"
    return body, None


def _content_type(fmt: str) -> str:
    name = fmt.lower()
    if name.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if name.startswith("csv"):
        return "text/csv; charset=UTF-8; header=absent"
    if name.startswith("json"):
        return "application/json; charset=UTF-8"
    if name in ("native", "rowbinary", "rowbinarywithnamesandtypes", "arrow", "arrowstream", "parquet", "orc"):
        return "application/octet-stream"
    return "text/plain; charset=UTF-8"


# --- the engine: a few chDB connections, each remembering the session state applied to it ---


@dataclass
class _Session:
    """ClickHouse HTTP session state (`session_id`): what SET and USE left behind."""

    database: str | None = None
    settings: dict[str, str | None] = field(default_factory=dict)  # None: the engine default
    expires: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Sessions:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}

    def get(self, session_id: str, timeout: int, must_exist: bool) -> _Session:
        now = time.monotonic()
        with self._lock:
            for stale in [key for key, session in self._sessions.items() if session.expires < now]:
                del self._sessions[stale]
            session = self._sessions.get(session_id)
            if session is None:
                if must_exist:
                    raise ClickHouseError.of(_SESSION_NOT_FOUND, f"Session {session_id} not found")
                session = self._sessions[session_id] = _Session()
            session.expires = now + timeout
            return session


@dataclass
class _Outcome:
    result: Any  # chDB query_result; owns the output buffer
    has_output: bool  # the statement produces a result set, so the response names its format


class _EngineConnection:
    """One chDB connection and the current database and settings last applied to it.

    URL settings, `database` and session state belong to one request, but chDB keeps them per connection,
    so each request first changes what differs from the previous one, and restores the rest.
    """

    def __init__(self, path: str, conn: Any, baseline: dict[str, str]) -> None:
        self._path = path
        self._conn = conn
        self._baseline = baseline  # what chDB itself changed from the engine defaults
        self._applied: dict[str, str | None] = {}
        self._database = "default"

    def run(
        self,
        sql: str,
        fmt: str,
        parameters: dict[str, str],
        database: str,
        settings: dict[str, str | None],
        read_only: bool,
        session: _Session | None,
    ) -> _Outcome:
        shape = self._conn.classify_query(sql)
        kind = shape["query_class"].name
        if shape["statement_count"] > 1:
            raise ClickHouseError.of(_EMPTY_OR_SYNTAX, "Multi-statements are not allowed")
        if read_only and shape["statement_count"] and kind != "READ_ONLY":
            raise ClickHouseError.of(
                _READONLY, "Cannot execute query in readonly mode. For HTTP, method GET implies readonly"
            )
        self._enter(database, settings)
        try:
            result = self._query(sql, fmt, parameters)
        finally:
            if kind == "CONTROL":  # SET, USE and the like changed this connection, maybe for a session
                self._follow_control_statement(database, settings, session)
        return _Outcome(result, kind == "READ_ONLY")

    def close(self) -> None:
        self._conn.close()

    def canonical(self, sql: str) -> str:
        """The statement as the engine parses it, printed back: comments gone, names and keywords spelt one way."""
        try:
            return bytes(self._query(f"SELECT formatQuery({_sql_string(sql)})", "TSVRaw").bytes()).decode()
        except ClickHouseError as error:
            # The engine's parse error, without the wrapping query it was found in.
            raise ClickHouseError(error.code, _IN_SCOPE.sub("", error.text)) from None

    def _query(self, sql: str, fmt: str = "TabSeparated", parameters: dict[str, str] | None = None) -> Any:
        try:
            result = self._conn.query(sql, fmt, params=parameters or {})
        except RuntimeError as exc:
            raise ClickHouseError.from_engine(exc) from None
        if result.has_error():
            raise ClickHouseError.from_engine(RuntimeError(result.error_message()))
        return result

    def _enter(self, database: str, settings: dict[str, str | None]) -> None:
        for attempt in range(2):
            try:
                self._apply(database, settings)
                return
            except ClickHouseError:
                # A failed SET may be half applied, and after SET readonly = 1 no SET works at all: start over
                # on a fresh connection, and fail the request only when its own database or settings are wrong.
                self._reconnect()
                if attempt:
                    raise

    def _reconnect(self) -> None:
        # Opened first: the engine stops when its last connection closes.
        fresh = _chdb.connect(f"{self._path}?{_ENGINE_OPTIONS}")
        self._conn.close()
        self._conn, self._applied, self._database = fresh, {}, "default"

    def _apply(self, database: str, settings: dict[str, str | None]) -> None:
        if database != self._database:
            self._query(f"USE {_sql_identifier(database)}")
            self._database = database
        changes = {name: value for name, value in settings.items() if self._applied.get(name, _UNSET) != value}
        changes.update({name: self._baseline.get(name) for name in self._applied if name not in settings})
        if not changes:
            return
        assignments = ", ".join(
            f"{name} = DEFAULT" if value is None else f"{name} = {_sql_string(value)}"
            for name, value in changes.items()
        )
        self._query(f"SET {assignments}")
        self._applied = dict(settings)

    def _read_state(self) -> tuple[str, dict[str, str | None]]:
        changed = json.loads(
            bytes(self._query("SELECT name, value FROM system.settings WHERE changed", "JSONCompact").bytes())
        )["data"]
        current = dict(changed)
        current.pop("database", None)  # chDB mirrors USE here; tracked as _database
        state: dict[str, str | None] = {
            name: value for name, value in current.items() if self._baseline.get(name) != value
        }
        state.update({name: None for name in self._baseline if name not in current})
        self._database = bytes(self._query("SELECT currentDatabase()").bytes()).decode().rstrip("\n")
        self._applied = state
        return self._database, state

    def _follow_control_statement(
        self, database: str, requested: dict[str, str | None], session: _Session | None
    ) -> None:
        now_database, now_settings = self._read_state()
        if session is None:
            return  # like ClickHouse without a session: the next request starts afresh
        for name in requested.keys() - now_settings.keys():
            session.settings.pop(name, None)
        session.settings.update({k: v for k, v in now_settings.items() if requested.get(k, _UNSET) != v})
        if now_database != database:
            session.database = now_database


class _Engine:
    """The chDB engine on the data directory, lent out one connection per query."""

    def __init__(self, data_dir: Path, connections: int) -> None:
        if "?" in str(data_dir):
            raise ValueError(f"the warehouse directory {data_dir} must not contain '?'")
        make_private_dir(data_dir)
        opened: list[Any] = []
        try:
            for _ in range(connections):
                opened.append(_chdb.connect(f"{data_dir}?{_ENGINE_OPTIONS}"))
        except RuntimeError as exc:
            for conn in opened:
                conn.close()
            raise RuntimeError(
                f"cannot open the warehouse data in {data_dir}; is another warehouse server using it? ({exc})"
            ) from None
        probe = opened[0]
        self.version, self.timezone = bytes(probe.query("SELECT version(), timezone()", "TSV").bytes()).decode().split()
        names = bytes(probe.query("SELECT name FROM system.settings", "TSV").bytes()).decode().split()
        self.known_settings = frozenset(names) - _TRANSPORT_PARAMS
        functions = bytes(probe.query("SELECT name FROM system.table_functions", "TSV").bytes()).decode().split()
        self.table_functions = frozenset(name.lower() for name in functions)
        changed = json.loads(
            bytes(probe.query("SELECT name, value FROM system.settings WHERE changed", "JSONCompact").bytes())
        )["data"]
        baseline = {name: value for name, value in changed if name != "database"}
        self._idle = [_EngineConnection(str(data_dir), conn, baseline) for conn in opened]
        self._size = connections
        self._available = threading.Condition()
        self._closing = False
        # Insert bodies wait here for chDB; inside the data directory, so a crashed server leaves nothing
        # elsewhere and the next start clears what it left.
        self.spool_dir = data_dir / "http-spool"
        shutil.rmtree(self.spool_dir, ignore_errors=True)
        self.spool_dir.mkdir()

    def check(self, sql: str, role: Role) -> None:
        """Refuse a statement that would reach outside the product's tables (warehouse/statements.py) or beyond
        the rights of the login's role (warehouse/roles.py), judged on the engine's own parse of it; a statement
        the engine cannot parse fails as it would have."""
        with self.connection() as conn:
            canonical = conn.canonical(sql)
        reason = refusal(canonical, self.table_functions) or role_refusal(role, canonical)
        if reason is not None:
            raise ClickHouseError.of(_ACCESS_DENIED, reason)

    @contextlib.contextmanager
    def connection(self) -> Iterator[_EngineConnection]:
        with self._available:
            while not self._idle and not self._closing:
                self._available.wait()
            if self._closing:
                raise ClickHouseError.of(_ABORTED, "The warehouse server is shutting down")
            conn = self._idle.pop()
        try:
            yield conn
        finally:
            with self._available:
                self._idle.append(conn)
                self._available.notify_all()

    def close(self) -> None:
        """Wait for running queries, then close every connection: chDB flushes and releases the directory."""
        with self._available:
            self._closing = True
            self._available.notify_all()
            while len(self._idle) < self._size:
                self._available.wait()
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        shutil.rmtree(self.spool_dir, ignore_errors=True)


# --- HTTP ---


@dataclass
class _Request:
    """One query request's options, from URL parameters, form fields and headers."""

    query: str
    database: str | None
    default_format: str
    query_id: str
    session_id: str | None
    session_timeout: int
    session_check: bool
    parameters: dict[str, str]
    settings: dict[str, str | None]
    read_only: bool
    compress_response: bool

    @classmethod
    def parse(cls, params: dict[str, str], headers: Any, method: str, known_settings: frozenset[str]) -> _Request:
        if params.get("compress") == "1" or params.get("decompress") == "1":
            raise ClickHouseError.of(_NOT_IMPLEMENTED, "ClickHouse's native HTTP compression is not supported")
        default_format = params.get("default_format") or headers.get("X-ClickHouse-Format") or "TabSeparated"
        if not _FORMAT_NAME.fullmatch(default_format):
            raise ClickHouseError.of(_BAD_ARGUMENTS, "default_format is not a format name")
        query_id = params.get("query_id") or str(uuid.uuid4())
        if not _PRINTABLE.fullmatch(query_id):
            raise ClickHouseError.of(_BAD_ARGUMENTS, "query_id must be printable ASCII without spaces")
        try:
            session_timeout = int(params.get("session_timeout") or _SESSION_TIMEOUT_S)
        except ValueError:
            session_timeout = -1
        if not 0 < session_timeout <= _MAX_SESSION_TIMEOUT_S:
            raise ClickHouseError.of(_INVALID_SESSION_TIMEOUT, "session_timeout is out of range")
        settings: dict[str, str | None] = {}
        for name, value in params.items():
            if name in known_settings:
                settings[name] = value
            elif name not in _TRANSPORT_PARAMS and not name.startswith("param_"):
                log.debug("ignoring URL parameter %r: not a setting chDB knows", name[:64])
        return cls(
            query=params.get("query", ""),
            database=params.get("database") or headers.get("X-ClickHouse-Database") or None,
            default_format=default_format,
            query_id=query_id,
            session_id=params.get("session_id") or None,
            session_timeout=session_timeout,
            session_check=params.get("session_check") == "1",
            parameters={name[6:]: value for name, value in params.items() if name.startswith("param_")},
            settings=settings,
            read_only=method == "GET" or params.get("readonly", "0") not in ("", "0"),
            compress_response=params.get("enable_http_compression", "0").lower() in ("1", "true"),
        )


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], warehouse: WarehouseServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.warehouse = warehouse
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            log.debug("connection from %s ended abruptly", client_address, exc_info=True)
        else:
            log.exception("unexpected error on the connection from %s", client_address)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the host's FQDN, which can stall on a machine without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "productimon-warehouse"
    sys_version = ""
    wbufsize = 64 * 1024  # headers and a small body leave in one segment
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.busy = False
        self.server.warehouse._track(self, True)

    def finish(self) -> None:
        self.server.warehouse._track(self, False)
        with contextlib.suppress(OSError):
            super().finish()

    def handle_one_request(self) -> None:
        self.connection.settimeout(_KEEP_ALIVE_S)
        super().handle_one_request()

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _serve(self) -> None:
        warehouse = self.server.warehouse
        self.connection.settimeout(_IO_TIMEOUT_S)
        self._responded = False
        self._body: _RequestBody | None = None
        with warehouse._busy(self):
            try:
                try:
                    self._dispatch(warehouse)
                except ClickHouseError as exc:
                    self._fail(warehouse, exc)
                except OSError:
                    raise
                except Exception:
                    log.exception("internal error serving %s %s", self.command, urlsplit(self.path).path)
                    self._fail(warehouse, ClickHouseError.of(_STD_EXCEPTION, "Internal error in the warehouse server"))
            except OSError as exc:  # the client went away or stalled: nobody is left to tell
                log.debug("dropping connection from %s: %s", self.address_string(), exc)
                self.close_connection = True

    def _dispatch(self, warehouse: WarehouseServer) -> None:
        url = urlsplit(self.path)
        if url.path == "/ping":
            self._send(200, b"Ok.\n", [("Content-Type", "text/html; charset=UTF-8")])
            return
        self._body = _RequestBody(self.rfile, self.headers)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if self.command == "GET" and "query" not in params and self._body.finished:
            self._send(200, b"Ok.\n", [("Content-Type", "text/html; charset=UTF-8")])
            return
        role = warehouse._authenticate(self.headers, params)
        if self.command == "HEAD":
            raise ClickHouseError.of(_NOT_IMPLEMENTED, "HEAD is only answered on /ping")
        content_type = self.headers.get("Content-Type", "")
        if content_type.lower().startswith("multipart/form-data"):
            params.update(self._form_fields(content_type))
        request = _Request.parse(params, self.headers, self.command, warehouse._engine_or_fail().known_settings)
        encoding = self.headers.get("Content-Encoding", "").strip().lower()
        statement = _read_statement(request.query, _decompressed(self._body, encoding))
        self._run(warehouse, request, statement, role)

    def _run(self, warehouse: WarehouseServer, request: _Request, statement: _Statement, role: Role) -> None:
        engine = warehouse._engine_or_fail()
        scan = statement.scan
        if not statement.sql.strip():
            raise ClickHouseError.of(_EMPTY_OR_SYNTAX, "Empty query")
        engine.check(statement.sql, role)
        spool: Path | None = None
        try:
            if statement.data is not None:
                spool = self._spool(engine.spool_dir, statement.data)
                sql = statement.from_infile(spool)
            else:
                sql = statement.sql
            fmt = scan.format_name or request.default_format
            session = None
            if request.session_id is not None:
                session = warehouse._sessions.get(request.session_id, request.session_timeout, request.session_check)
            with contextlib.ExitStack() as held:
                settings = request.settings
                database = request.database
                if session is not None:
                    if not session.lock.acquire(blocking=False):
                        raise ClickHouseError.of(
                            _SESSION_IS_LOCKED, f"Session {request.session_id} is locked by a concurrent client"
                        )
                    held.callback(session.lock.release)
                    settings = {**session.settings, **settings}
                    database = database or session.database
                reason = setting_refusal(list(settings)) or database_refusal(database or "default")
                if reason is not None:
                    raise ClickHouseError.of(_ACCESS_DENIED, reason)
                conn = held.enter_context(engine.connection())
                started = time.perf_counter_ns()
                outcome = conn.run(
                    sql, fmt, request.parameters, database or "default", settings, request.read_only, session
                )
                elapsed_ns = time.perf_counter_ns() - started
        finally:
            if spool is not None:
                spool.unlink(missing_ok=True)
        self._send_result(engine, request, fmt, outcome, elapsed_ns)

    def _send_result(self, engine: _Engine, request: _Request, fmt: str, outcome: _Outcome, elapsed_ns: int) -> None:
        result = outcome.result
        body: bytes | memoryview = result.get_memview().view() if result.size() else b""
        summary = {
            "read_rows": str(result.rows_read()),
            "read_bytes": str(result.bytes_read()),
            "written_rows": str(result.rows_written()),
            "written_bytes": str(result.bytes_written()),
            "total_rows_to_read": str(result.rows_read()),
            "result_bytes": str(len(body)),
            "elapsed_ns": str(elapsed_ns),
        }
        headers = [
            ("X-ClickHouse-Query-Id", request.query_id),
            ("X-ClickHouse-Timezone", engine.timezone),
            ("X-ClickHouse-Summary", json.dumps(summary, separators=(",", ":"))),
        ]
        if outcome.has_output:
            # clickhouse-connect's command() tells "empty result" ("") from "no result" (a summary) by this header.
            headers += [("X-ClickHouse-Format", fmt), ("Content-Type", _content_type(fmt))]
        else:
            headers.append(("Content-Type", "text/plain; charset=UTF-8"))
        accept_encoding = self.headers.get("Accept-Encoding", "")
        if body and request.compress_response and accept_encoding:
            body, encoding = _compressed(body, accept_encoding)
            if encoding:
                headers.append(("Content-Encoding", encoding))
        self._send(200, body, headers)

    def _spool(self, spool_dir: Path, data: Iterator[bytes]) -> Path:
        # The whole body lands on disk before chDB sees it: a client that dies mid-upload inserts nothing,
        # and the engine connection is not held while the client is still sending.
        with tempfile.NamedTemporaryFile(dir=spool_dir, suffix=".insert", delete=False, buffering=_READ_SIZE) as out:
            path = Path(out.name)
            try:
                for chunk in data:
                    out.write(chunk)
            except BaseException:
                out.close()
                path.unlink(missing_ok=True)
                raise
        return path

    def _form_fields(self, content_type: str) -> dict[str, str]:
        # clickhouse-connect moves the query and long bound parameters into a multipart form.
        assert self._body is not None
        raw = bytearray()
        for chunk in self._body:
            raw += chunk
            if len(raw) > _MAX_QUERY_BYTES:
                raise ClickHouseError.of(_QUERY_IS_TOO_LARGE, f"Form is larger than {_MAX_QUERY_BYTES} bytes")
        message = BytesParser(policy=HTTP_POLICY).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
        )
        fields: dict[str, str] = {}
        for part in message.iter_parts():
            if part.get_filename() is not None:
                raise ClickHouseError.of(_NOT_IMPLEMENTED, "External data is not supported by the warehouse server")
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(payload, bytes):
                fields[name] = payload.decode("utf-8", errors="replace")
        return fields

    def _fail(self, warehouse: WarehouseServer, error: ClickHouseError) -> None:
        if self._responded:
            self.close_connection = True  # the response is already on its way; the client sees it cut short
            return
        if error.code == _ACCESS_DENIED:
            # The reason names the rule, role and table, never the statement's values or a credential.
            log.warning("refused: %s", error.text)
        elif error.code != _AUTHENTICATION_FAILED:
            log.info("query failed with code %d", error.code)
        if self._body is not None and not self._body.finished and not self._body.discard():
            self.close_connection = True
        version = warehouse._engine.version if warehouse._engine else "unknown"
        self._send(
            error.status,
            f"{error.text} (version {version})\n".encode(),
            [("Content-Type", "text/plain; charset=UTF-8"), ("X-ClickHouse-Exception-Code", str(error.code))],
        )

    def _send(self, status: int, body: bytes | memoryview, headers: list[tuple[str, str]]) -> None:
        self._responded = True
        self.send_response(status)
        self.send_header("X-ClickHouse-Server-Display-Name", self.server.warehouse.display_name)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body) if isinstance(body, bytes) else body.nbytes))
        if self.close_connection or self.server.warehouse._stopping.is_set():
            self.send_header("Connection", "close")
        else:
            self.send_header("Keep-Alive", f"timeout={_KEEP_ALIVE_S}")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        # Out before the request counts as finished: shutdown() closes connections that are not busy.
        self.wfile.flush()


class WarehouseServer:
    """The warehouse behind ClickHouse's HTTP interface, for clickhouse-connect clients."""

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 8123,
        user: str,
        password: str,
        logins: Mapping[str, tuple[str, Role]] | None = None,
    ) -> None:
        """`user`/`password` is the owner's login (unlimited inside the sandbox); `logins` maps each service's
        user name to its password and role (warehouse/roles.py)."""
        logins = dict(logins or {})
        if not password or not all(secret for secret, _ in logins.values()):
            raise ValueError("the warehouse needs a password for every login: it holds everyone's data")
        if user in logins:
            raise ValueError(f"the login {user!r} is given twice")
        self._data_dir = Path(data_dir).expanduser().resolve()
        self._host = host
        self._logins = [(name.encode(), secret.encode(), role) for name, (secret, role) in logins.items()]
        self._logins.append((user.encode(), password.encode(), OWNER))
        self.display_name = socket.gethostname()
        self._engine: _Engine | None = None
        self._sessions = _Sessions()
        self._stopping = threading.Event()
        self._serving = False
        self._connections = threading.Condition()
        self._handlers: set[_Handler] = set()
        self._busy_count = 0
        self._thread: threading.Thread | None = None
        self._httpd = _HTTPServer((host, port), self)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Open the data directory and serve in a background thread; returns once connections are accepted."""
        self._prepare()
        self._thread = threading.Thread(target=self._serve, name="warehouse-http", daemon=True)
        self._thread.start()

    def serve_forever(self) -> None:
        """Open the data directory and serve until `shutdown()` is called from another thread."""
        self._prepare()
        self._serve()

    def shutdown(self) -> None:
        """Stop accepting, let running queries finish, close idle connections, and close chDB cleanly."""
        with self._connections:
            if self._stopping.is_set():
                return
            self._stopping.set()
            serving = self._serving
        if serving:
            self._httpd.shutdown()
        self._httpd.server_close()
        with self._connections:
            self._disconnect(idle_only=True)
            if not self._connections.wait_for(lambda: self._busy_count == 0, timeout=_SHUTDOWN_GRACE_S):
                log.warning(
                    "%d requests still running after %ss; cutting them off", self._busy_count, _SHUTDOWN_GRACE_S
                )
            self._disconnect(idle_only=False)
        if self._thread is not None:
            self._thread.join()
        if self._engine is not None:
            self._engine.close()
        log.info("warehouse stopped; data in %s", self._data_dir)

    def _prepare(self) -> None:
        with self._connections:
            if self._stopping.is_set() or self._serving:
                raise RuntimeError("this warehouse server already served; make a new one")
            self._engine = _Engine(self._data_dir, _ENGINE_CONNECTIONS)
            self._serving = True

    def _serve(self) -> None:
        log.info("warehouse serving %s from %s", self.url, self._data_dir)
        self._httpd.serve_forever(poll_interval=0.2)

    def _engine_or_fail(self) -> _Engine:
        if self._engine is None:
            raise ClickHouseError.of(_ABORTED, "The warehouse is not open")
        return self._engine

    def _authenticate(self, headers: Any, params: dict[str, str]) -> Role:
        """Check the credentials the way ClickHouse takes them (basic auth, X-ClickHouse-* headers, URL); the
        login's role."""
        authorization = headers.get("Authorization")
        if authorization:
            scheme, _, encoded = authorization.partition(" ")
            try:
                if scheme.lower() != "basic":
                    raise ValueError(scheme)
                user, _, password = b64decode(encoded.strip(), validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", ""
        elif headers.get("X-ClickHouse-User") is not None or headers.get("X-ClickHouse-Key") is not None:
            user, password = headers.get("X-ClickHouse-User", "default"), headers.get("X-ClickHouse-Key", "")
        else:
            user, password = params.get("user", "default"), params.get("password", "")
        found = None
        for name, secret, role in self._logins:  # every login compared, in constant time, whichever matches
            if hmac.compare_digest(user.encode(), name) & hmac.compare_digest(password.encode(), secret):
                found = role
        if found is None:
            # Like ClickHouse, say nothing about which part was wrong; never repeat what was sent.
            raise ClickHouseError.of(
                _AUTHENTICATION_FAILED,
                "Authentication failed: password is incorrect, or there is no user with such name",
            )
        return found

    def _track(self, handler: _Handler, connected: bool) -> None:
        with self._connections:
            if connected:
                self._handlers.add(handler)
            else:
                self._handlers.discard(handler)

    @contextlib.contextmanager
    def _busy(self, handler: _Handler) -> Iterator[None]:
        with self._connections:
            self._busy_count += 1
            handler.busy = True
        try:
            yield
        finally:
            with self._connections:
                self._busy_count -= 1
                handler.busy = False
                if self._stopping.is_set():
                    handler.close_connection = True
                self._connections.notify_all()

    def _disconnect(self, *, idle_only: bool) -> None:
        for handler in list(self._handlers):
            if not (idle_only and handler.busy):
                with contextlib.suppress(OSError):
                    handler.connection.shutdown(socket.SHUT_RDWR)


def read_logins(path: Path) -> dict[str, tuple[str, Role]]:
    """The services' logins from a JSON file `{role: {"user": ..., "password": ...}}` (the local stack writes it,
    owner-only): user name -> (password, role)."""
    try:
        entries = json.loads(path.read_text())
        logins = {entry["user"]: (entry["password"], ROLES[role]) for role, entry in entries.items()}
    except OSError as exc:
        raise UserFacingError(f"cannot read the warehouse logins {path}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserFacingError(f"{path} is not a file of warehouse logins (role -> user, password): {exc!r}") from None
    if not all(isinstance(user, str) and isinstance(secret, str) and secret for user, (secret, _) in logins.items()):
        raise UserFacingError(f"{path}: every login needs a user name and a non-empty password")
    return logins


@command("productimon-warehouse")
def main() -> int:
    parser = argparse.ArgumentParser(prog="productimon-warehouse", description=__doc__)
    parser.add_argument("--logins", type=Path, help="JSON file of the services' logins and roles (warehouse/roles.py)")
    args = parser.parse_args()
    settings = load_settings()
    if not settings.warehouse_password:
        raise UserFacingError(
            "PRODUCTIMON_WAREHOUSE_PASSWORD is empty; the warehouse holds everyone's data and needs a password"
        )
    logins = read_logins(args.logins) if args.logins else {}
    try:
        server = WarehouseServer(
            settings.warehouse_dir,
            host=settings.warehouse_host,
            port=settings.warehouse_port,
            user=settings.warehouse_user,
            password=settings.warehouse_password,
            logins=logins,
        )
    except OSError as exc:
        raise UserFacingError(
            f"cannot listen on {settings.warehouse_host}:{settings.warehouse_port}: {exc.strerror or exc}"
        ) from None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server.start()
        log.info("logins: the owner%s", "".join(f", {user} ({role.name})" for user, (_, role) in logins.items()))
        print(f"warehouse listening on {server.url}", flush=True)
        stop.wait()
    finally:
        server.shutdown()
    return 0
