"""The warehouse server's HTTP side: the threaded HTTP server, the handler that answers one request after another
on a kept-alive connection the way a ClickHouse server would (docs/design.md "Real components and how they
start"), and `WarehouseServer`, which opens the engine, serves, and shuts down without cutting off a running query.
It listens on loopback unless told otherwise (docs/transport-security.md "The local stack: loopback only")."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import socketserver
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from email.parser import BytesParser
from email.policy import HTTP as HTTP_POLICY
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from warehouse.roles import OWNER, Role
from warehouse.server.bodies import READ_SIZE, RequestBody, compressed, decompressed
from warehouse.server.engine import ENGINE_CONNECTIONS, Engine, Outcome
from warehouse.server.errors import (
    ABORTED,
    ACCESS_DENIED,
    AUTHENTICATION_FAILED,
    EMPTY_OR_SYNTAX,
    NOT_IMPLEMENTED,
    QUERY_IS_TOO_LARGE,
    STD_EXCEPTION,
    ClickHouseError,
)
from warehouse.server.logins import authenticate
from warehouse.server.options import Request
from warehouse.server.sql import MAX_QUERY_BYTES, Statement, read_statement
from warehouse.statements import database_refusal, setting_refusal

log = logging.getLogger(__package__)  # the whole server logs as one

_KEEP_ALIVE_S = 30  # ClickHouse's keep_alive_timeout
_IO_TIMEOUT_S = 300  # a request whose client stops sending or reading for this long is dropped
_SHUTDOWN_GRACE_S = 30


def _content_type(fmt: str) -> str:
    """The Content-Type of a result in the ClickHouse format `fmt`."""
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
        self._body: RequestBody | None = None
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
                    self._fail(warehouse, ClickHouseError.of(STD_EXCEPTION, "Internal error in the warehouse server"))
            except OSError as exc:  # the client went away or stalled: nobody is left to tell
                log.debug("dropping connection from %s: %s", self.address_string(), exc)
                self.close_connection = True

    def _dispatch(self, warehouse: WarehouseServer) -> None:
        url = urlsplit(self.path)
        if url.path == "/ping":
            self._send(200, b"Ok.\n", [("Content-Type", "text/html; charset=UTF-8")])
            return
        self._body = RequestBody(self.rfile, self.headers)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if self.command == "GET" and "query" not in params and self._body.finished:
            self._send(200, b"Ok.\n", [("Content-Type", "text/html; charset=UTF-8")])
            return
        role = authenticate(self.headers, params, warehouse._logins)
        if self.command == "HEAD":
            raise ClickHouseError.of(NOT_IMPLEMENTED, "HEAD is only answered on /ping")
        content_type = self.headers.get("Content-Type", "")
        if content_type.lower().startswith("multipart/form-data"):
            params.update(self._form_fields(content_type))
        request = Request.parse(params, self.headers, self.command, warehouse._engine_or_fail().setting_names)
        encoding = self.headers.get("Content-Encoding", "").strip().lower()
        statement = read_statement(request.query, decompressed(self._body, encoding))
        self._run(warehouse, request, statement, role)

    def _run(self, warehouse: WarehouseServer, request: Request, statement: Statement, role: Role) -> None:
        engine = warehouse._engine_or_fail()
        scan = statement.scan
        if not statement.sql.strip():
            raise ClickHouseError.of(EMPTY_OR_SYNTAX, "Empty query")
        engine.check(statement.sql, role)
        spool: Path | None = None
        try:
            if statement.data is not None:
                spool = self._spool(engine.spool_dir, statement.data)
                sql = statement.from_infile(spool)
            else:
                sql = statement.sql
            fmt = scan.format_name or request.default_format
            reason = setting_refusal(list(request.settings)) or database_refusal(request.database or "default")
            if reason is not None:
                raise ClickHouseError.of(ACCESS_DENIED, reason)
            with engine.connection() as conn:
                started = time.perf_counter_ns()
                outcome = conn.run(
                    sql, fmt, request.parameters, request.database or "default", request.settings, request.read_only
                )
                elapsed_ns = time.perf_counter_ns() - started
        finally:
            if spool is not None:
                spool.unlink(missing_ok=True)
        self._send_result(engine, request, fmt, outcome, elapsed_ns)

    def _send_result(self, engine: Engine, request: Request, fmt: str, outcome: Outcome, elapsed_ns: int) -> None:
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
            body, encoding = compressed(body, accept_encoding)
            if encoding:
                headers.append(("Content-Encoding", encoding))
        self._send(200, body, headers)

    def _spool(self, spool_dir: Path, data: Iterator[bytes]) -> Path:
        # The whole body lands on disk before chDB sees it: a client that dies mid-upload inserts nothing,
        # and the engine connection is not held while the client is still sending.
        with tempfile.NamedTemporaryFile(dir=spool_dir, suffix=".insert", delete=False, buffering=READ_SIZE) as out:
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
            if len(raw) > MAX_QUERY_BYTES:
                raise ClickHouseError.of(QUERY_IS_TOO_LARGE, f"Form is larger than {MAX_QUERY_BYTES} bytes")
        message = BytesParser(policy=HTTP_POLICY).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
        )
        fields: dict[str, str] = {}
        for part in message.iter_parts():
            if part.get_filename() is not None:
                raise ClickHouseError.of(NOT_IMPLEMENTED, "External data is not supported by the warehouse server")
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(payload, bytes):
                fields[name] = payload.decode("utf-8", errors="replace")
        return fields

    def _fail(self, warehouse: WarehouseServer, error: ClickHouseError) -> None:
        if self._responded:
            self.close_connection = True  # the response is already on its way; the client sees it cut short
            return
        if error.code == ACCESS_DENIED:
            # The reason names the rule, role and table, never the statement's values or a credential.
            log.warning("refused: %s", error.text)
        elif error.code != AUTHENTICATION_FAILED:
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
        self._engine: Engine | None = None
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
            self._engine = Engine(self._data_dir, ENGINE_CONNECTIONS)
            self._serving = True

    def _serve(self) -> None:
        log.info("warehouse serving %s from %s", self.url, self._data_dir)
        self._httpd.serve_forever(poll_interval=0.2)

    def _engine_or_fail(self) -> Engine:
        if self._engine is None:
            raise ClickHouseError.of(ABORTED, "The warehouse is not open")
        return self._engine

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
