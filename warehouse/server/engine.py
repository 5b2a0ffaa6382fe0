"""The chDB engine on the warehouse's data directory: the only place the server touches chDB. A few connections
run queries side by side; each request's database and settings are applied to the connection it borrows, and a
statement is checked on the engine's own parse of it before it runs (docs/design.md "Security")."""

from __future__ import annotations

import contextlib
import functools
import json
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chdb import _chdb

from plumbing.files import make_private_dir
from warehouse.roles import Role, role_refusal
from warehouse.server.errors import ABORTED, ACCESS_DENIED, EMPTY_OR_SYNTAX, READONLY, ClickHouseError
from warehouse.server.sql import sql_identifier, sql_string
from warehouse.statements import refusal

ENGINE_CONNECTIONS = 4  # chDB runs one query at a time per connection; these many run side by side
# Engine (server) settings given when the data directory is opened. chDB sizes the background pool to the CPU
# count, 2 here; a mutation (a deletion) then waits its turn part by part, about 0.1 s each, so deleting an
# account's rows from a table of a few hundred parts took seconds whatever its size. ClickHouse's server
# default is 16: the tasks are mostly waiting, not computing (bench/deletion.py measures the difference;
# docs/design.md "Delete means gone").
_ENGINE_OPTIONS = "background_pool_size=16"

# Parses of statements remembered by `Engine.check`: at most this many, each at most this long (a few MB in all).
_REMEMBERED_STATEMENTS = 512
_REMEMBERED_SQL_CHARS = 8192

_UNSET = object()
_IN_SCOPE = re.compile(r": In scope SELECT formatQuery\(.*\)\.(?= \(\w+\)$)", re.DOTALL)


@dataclass
class Outcome:
    result: Any  # chDB query_result; owns the output buffer
    has_output: bool  # the statement produces a result set, so the response names its format


class EngineConnection:
    """One chDB connection and the current database and settings last applied to it.

    URL settings and `database` belong to one request, but chDB keeps them per connection, so each request
    first changes what differs from the previous one, and restores the rest.
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
    ) -> Outcome:
        shape = self._conn.classify_query(sql)
        kind = shape["query_class"].name
        if shape["statement_count"] > 1:
            raise ClickHouseError.of(EMPTY_OR_SYNTAX, "Multi-statements are not allowed")
        if read_only and shape["statement_count"] and kind != "READ_ONLY":
            raise ClickHouseError.of(
                READONLY, "Cannot execute query in readonly mode. For HTTP, method GET implies readonly"
            )
        self._enter(database, settings)
        try:
            result = self._query(sql, fmt, parameters)
        finally:
            if kind == "CONTROL":
                # SET, USE and the like changed this connection. Like ClickHouse without a session, the next
                # request starts afresh: what changed is read back, so the next request undoes it.
                self._read_state()
        return Outcome(result, kind == "READ_ONLY")

    def close(self) -> None:
        self._conn.close()

    def canonical(self, sql: str) -> str:
        """The statement as the engine parses it, printed back: comments gone, names and keywords spelt one way."""
        try:
            return bytes(self._query(f"SELECT formatQuery({sql_string(sql)})", "TSVRaw").bytes()).decode()
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
            self._query(f"USE {sql_identifier(database)}")
            self._database = database
        changes = {name: value for name, value in settings.items() if self._applied.get(name, _UNSET) != value}
        changes.update({name: self._baseline.get(name) for name in self._applied if name not in settings})
        if not changes:
            return
        assignments = ", ".join(
            f"{name} = DEFAULT" if value is None else f"{name} = {sql_string(value)}" for name, value in changes.items()
        )
        self._query(f"SET {assignments}")
        self._applied = dict(settings)

    def _read_state(self) -> None:
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


class Engine:
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
        self.setting_names = frozenset(names)
        functions = bytes(probe.query("SELECT name FROM system.table_functions", "TSV").bytes()).decode().split()
        self.table_functions = frozenset(name.lower() for name in functions)
        changed = json.loads(
            bytes(probe.query("SELECT name, value FROM system.settings WHERE changed", "JSONCompact").bytes())
        )["data"]
        baseline = {name: value for name, value in changed if name != "database"}
        self._idle = [EngineConnection(str(data_dir), conn, baseline) for conn in opened]
        self._size = connections
        # A parse error raises, so only statements the engine parsed are remembered.
        self._canonical = functools.lru_cache(maxsize=_REMEMBERED_STATEMENTS)(self._parsed)
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
        the engine cannot parse fails as it would have.

        The parse of a statement the engine has parsed before is remembered (`_canonical`): the product's
        statements are few and parameterized (the values travel apart from the text), and asking the engine again
        was a round trip of each query. Only the parse is remembered; the verdict is made again every time, for
        the role asking."""
        canonical = self._canonical(sql) if len(sql) <= _REMEMBERED_SQL_CHARS else self._parsed(sql)
        reason = refusal(canonical, self.table_functions) or role_refusal(role, canonical)
        if reason is not None:
            raise ClickHouseError.of(ACCESS_DENIED, reason)

    def _parsed(self, sql: str) -> str:
        with self.connection() as conn:
            return conn.canonical(sql)

    @contextlib.contextmanager
    def connection(self) -> Iterator[EngineConnection]:
        with self._available:
            while not self._idle and not self._closing:
                self._available.wait()
            if self._closing:
                raise ClickHouseError.of(ABORTED, "The warehouse server is shutting down")
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
