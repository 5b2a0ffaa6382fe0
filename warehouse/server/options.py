"""One query request's options, read from its URL parameters, form fields and headers the way ClickHouse's HTTP
interface takes them: which parameters steer the exchange, which are bound query parameters, which are settings
(docs/design.md "Real components and how they start")."""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

from warehouse.server.errors import BAD_ARGUMENTS, NOT_IMPLEMENTED, ClickHouseError

log = logging.getLogger(__package__)  # the whole server logs as one

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

_PRINTABLE = re.compile(r"[\x21-\x7e]{1,256}")
_FORMAT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


@dataclass
class Request:
    """One query request's options, from URL parameters, form fields and headers."""

    query: str
    database: str | None
    default_format: str
    query_id: str
    parameters: dict[str, str]
    settings: dict[str, str | None]
    read_only: bool
    compress_response: bool

    @classmethod
    def parse(cls, params: dict[str, str], headers: Any, method: str, setting_names: frozenset[str]) -> Request:
        """The options of a request; `setting_names` are the engine's settings, which URL parameters may set."""
        if params.get("compress") == "1" or params.get("decompress") == "1":
            raise ClickHouseError.of(NOT_IMPLEMENTED, "ClickHouse's native HTTP compression is not supported")
        if params.get("session_id"):
            # Every request starts afresh; a client that expects SET and USE to carry over is told so.
            raise ClickHouseError.of(NOT_IMPLEMENTED, "HTTP sessions (session_id) are not supported")
        default_format = params.get("default_format") or headers.get("X-ClickHouse-Format") or "TabSeparated"
        if not _FORMAT_NAME.fullmatch(default_format):
            raise ClickHouseError.of(BAD_ARGUMENTS, "default_format is not a format name")
        query_id = params.get("query_id") or str(uuid.uuid4())
        if not _PRINTABLE.fullmatch(query_id):
            raise ClickHouseError.of(BAD_ARGUMENTS, "query_id must be printable ASCII without spaces")
        settings: dict[str, str | None] = {}
        for name, value in params.items():
            if name in _TRANSPORT_PARAMS:
                continue
            if name in setting_names:
                settings[name] = value
            elif not name.startswith("param_"):
                log.debug("ignoring URL parameter %r: not a setting chDB knows", name[:64])
        return cls(
            query=params.get("query", ""),
            database=params.get("database") or headers.get("X-ClickHouse-Database") or None,
            default_format=default_format,
            query_id=query_id,
            parameters={name[6:]: value for name, value in params.items() if name.startswith("param_")},
            settings=settings,
            read_only=method == "GET" or params.get("readonly", "0") not in ("", "0"),
            compress_response=params.get("enable_http_compression", "0").lower() in ("1", "true"),
        )
