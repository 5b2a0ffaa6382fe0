"""The ActivityWatch REST API on loopback, so unmodified ActivityWatch watchers and aw-client report to the collector.

It speaks the part of aw-server's API (0.12) watchers use: server info, buckets, heartbeats and events. What they
send is kept as collector/aw_store.py's `kept_data` says, in the store the uploader reads. Like the browser intake
it listens on 127.0.0.1 only and answers only loopback peers; and since a web page in a browser on this machine is
a loopback peer too, it also refuses a request whose Host header is not a loopback name (DNS rebinding) or whose
Origin is a web page's (a page cannot make a browser hide that header).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import math
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from collector.aw_store import AwStore, Bucket, NoSuchBucket, Span, StoredEvent

log = logging.getLogger(__name__)

API_HOST = "127.0.0.1"
# Watchers' requests are one event or a bucket's metadata; a batch of queued events is far below this.
MAX_BODY_BYTES = 8 * 1024 * 1024
# An idle kept-alive connection holds its thread this long, never the API.
READ_TIMEOUT_S = 5.0
# Any longer and an event's end no longer fits SQLite's integers; no watcher reports a state lasting decades.
MAX_DURATION_S = 10 * 366 * 24 * 3600
_MAX_FIELD_CHARS = 256

# Why a request was not accepted: the first three are refused unread, "failed" is the collector's own error.
REFUSAL_REASONS = ("not_loopback", "foreign_host", "foreign_origin", "bad_request", "not_found", "failed")

_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
# Browser extensions (aw-watcher-web and the like) fetch with their own origin; a web page's origin is refused.
_EXTENSION_SCHEMES = frozenset({"chrome-extension", "moz-extension", "safari-web-extension"})
_BUCKET_ID = re.compile(r"[^\x00-\x1f\x7f/]{1,256}")
_ISO_8601 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class BadRequest(ValueError):
    """What was wrong with a request, in one sentence the watcher's log can show."""


# --- the wire format (pure) ---------------------------------------------------------------------------------------


def parse_timestamp(text: object, what: str = "timestamp") -> int:
    """Unix milliseconds of an ISO 8601 date and time ("2024-05-01T12:00:00.123456+02:00", "...Z"); one without
    an offset is UTC, as aw-server reads it. Fractions finer than a millisecond are cut off. Raises BadRequest.

    Parsed here rather than by datetime.fromisoformat: on Python 3.10 (the collector runs there too) that takes
    neither `Z` nor the nanoseconds Rust and Go watchers send."""
    if not isinstance(text, str):
        raise BadRequest(f"{what} must be an ISO 8601 string, not {json.dumps(text)}")
    match = _ISO_8601.fullmatch(text.strip())
    if match is None:
        raise BadRequest(f"{what} is not an ISO 8601 timestamp: {text[:64]!r}")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    offset = timedelta(0)
    if sign:
        offset = timedelta(hours=int(off_h), minutes=int(off_m or 0))
        if sign == "-":
            offset = -offset
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=timezone(offset),
        )
    except ValueError as exc:
        raise BadRequest(f"{what} is not a valid date and time: {text[:64]!r} ({exc})") from None
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def format_timestamp(ms: int) -> str:
    """ISO 8601 in UTC with milliseconds, as aw-core and browsers read it: "2024-05-01T10:00:00.123+00:00"."""
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")


def parse_event(value: object, what: str = "event") -> Span:
    """One event as a watcher sends it: `timestamp` (required), `duration` in seconds (0 when missing), `data`
    (an object, {} when missing). An `id` is ignored: events are only ever added. Its data is as sent; the store
    keeps only what it may. Raises BadRequest."""
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object with a timestamp, not {type(value).__name__}")
    if "timestamp" not in value:
        raise BadRequest(f"{what} has no timestamp")
    start_ms = parse_timestamp(value["timestamp"], f"{what} timestamp")
    duration = value.get("duration", 0)
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration):
        raise BadRequest(f"{what} duration must be a number of seconds, not {json.dumps(duration)}")
    if duration < 0:
        raise BadRequest(f"{what} duration must not be negative ({duration})")
    if duration > MAX_DURATION_S:
        raise BadRequest(f"{what} duration must be at most {MAX_DURATION_S} seconds ({duration})")
    data = value.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadRequest(f"{what} data must be a JSON object, not {type(data).__name__}")
    return Span(start_ms, start_ms + round(duration * 1000), data)


def parse_pulsetime(values: Mapping[str, list[str]]) -> int:
    """The heartbeat's pulse time in milliseconds, from its required query parameter (seconds)."""
    if "pulsetime" not in values:
        raise BadRequest("a heartbeat needs the query parameter pulsetime (seconds)")
    text = values["pulsetime"][0]
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_DURATION_S:
        raise BadRequest(f"pulsetime must be a number of seconds, 0 or more, not {text[:32]!r}")
    return round(seconds * 1000)


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise BadRequest("the request has no JSON body")

    def no_constant(name: str) -> None:
        raise ValueError(f"{name} is not a JSON number")

    try:
        return json.loads(body, parse_constant=no_constant)
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8 text") from None
    except ValueError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


def parse_new_bucket(value: object) -> dict[str, str | None]:
    """The fields of POST /api/0/buckets/<id>: client, type and hostname (strings), name (optional)."""
    if not isinstance(value, dict):
        raise BadRequest("a new bucket must be a JSON object with client, type and hostname")
    fields: dict[str, str | None] = {}
    for key in ("client", "type", "hostname", "name"):
        field = value.get(key)
        if field is None and key == "name":
            fields[key] = None
            continue
        if field is None:
            raise BadRequest(f"a new bucket needs {key} (a string)")
        if not isinstance(field, str) or not 0 < len(field) <= _MAX_FIELD_CHARS:
            raise BadRequest(f"bucket {key} must be a string of 1 to {_MAX_FIELD_CHARS} characters")
        fields[key] = field
    return fields


def event_json(event: StoredEvent | Span) -> dict[str, Any]:
    """An event as aw-server answers it; one that was not stored (a Span) has no id."""
    return {
        "id": event.id if isinstance(event, StoredEvent) else None,
        "timestamp": format_timestamp(event.start_ms),
        "duration": (event.end_ms - event.start_ms) / 1000,
        "data": dict(event.data),
    }


def bucket_json(bucket: Bucket) -> dict[str, Any]:
    """A bucket's metadata as aw-server gives it; last_updated (where its latest event ends) only once it has one."""
    metadata: dict[str, Any] = {
        "id": bucket.id,
        "name": bucket.name,
        "type": bucket.type,
        "client": bucket.client,
        "hostname": bucket.hostname,
        "created": format_timestamp(bucket.created_ms),
        "data": {},
    }
    if bucket.last_updated_ms is not None:
        metadata["last_updated"] = format_timestamp(bucket.last_updated_ms)
    return metadata


def refusal(peer: str, host_header: str | None, origin: str | None, port: int) -> str | None:
    """Why a request may not be answered (one of REFUSAL_REASONS), or None. Pure.

    Only a loopback peer, naming a loopback host: a page of another site rebinding its name to 127.0.0.1 still
    sends its own name in Host. An Origin, when there is one, must be a browser extension's or this API's own:
    browsers send a page's origin with every POST and DELETE, so a page cannot forge heartbeats."""
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return "not_loopback"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not address.is_loopback:
        return "not_loopback"
    if host_header is None:
        return "foreign_host"
    host = host_header.strip().lower()
    name = host[: host.index("]") + 1] if host.startswith("[") and "]" in host else host.split(":", 1)[0]
    if name not in _LOOPBACK_NAMES:
        return "foreign_host"
    if origin is not None:
        parts = urlsplit(origin.strip().lower())
        own = parts.scheme == "http" and parts.netloc in {f"127.0.0.1:{port}", f"localhost:{port}"}
        if parts.scheme not in _EXTENSION_SCHEMES and not own:
            return "foreign_origin"
    return None


_REFUSAL_MESSAGES = {
    "not_loopback": "this API answers only this computer",
    "foreign_host": "the Host header must name this computer (127.0.0.1 or localhost)",
    "foreign_origin": "requests from web pages are refused",
}


def _version() -> str:
    from importlib import metadata

    for distribution in ("productimon-collector", "productimon"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            return metadata.version(distribution)
    return "unknown"


# --- the server ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any = None  # JSON; nothing at all for 304


@dataclass(frozen=True)
class AwApiStatus:
    accepted: int  # requests answered with success
    refused: dict[str, int]  # the others, by reason (REFUSAL_REASONS)
    last_accepted_ms: int | None  # when a watcher last reported something successfully


def _not_found(message: str) -> Answer:
    return Answer(HTTPStatus.NOT_FOUND, {"message": message})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # As the browser intake's: a restart on a fixed port must not wait out TIME_WAIT, except on Windows.
    allow_reuse_address = sys.platform != "win32"
    # Several watchers report every few seconds; a short backlog would make some wait for a SYN retry.
    request_queue_size = 64


class AwApi:
    """The running collector's ActivityWatch API: the watchers' aw-server.

    Listens on 127.0.0.1 only (port 0: any free port, see `.port`) with one daemon thread per connection.
    Answers JSON, and counts what it accepted and refused for the collector's status. Heartbeats are applied by
    the store under its lock, so concurrent watchers never race on a bucket's last event."""

    def __init__(
        self, store: AwStore, host_name: str, port: int = 0, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.host_name = host_name
        self._requested_port = port
        self._clock = clock
        self._version = f"productimon-{_version()}"
        self._lock = threading.Lock()
        self._accepted = 0
        self._refused = dict.fromkeys(REFUSAL_REASONS, 0)
        self._last_accepted_ms: int | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.port = 0

    def start(self) -> AwApi:
        api = self

        class Handler(_Handler):
            owner = api

        try:
            self._server = _Server((API_HOST, self._requested_port), Handler)
        except OSError as exc:
            raise OSError(
                f"the ActivityWatch API cannot listen on {API_HOST}:{self._requested_port}: {exc.strerror}"
            ) from None
        self.port = int(self._server.server_address[1])
        self._stopping.clear()
        self._thread = threading.Thread(target=self._accept, args=(self._server,), name="aw-api", daemon=True)
        self._thread.start()
        log.info("ActivityWatch API listening on %s:%d", API_HOST, self.port)
        return self

    def _accept(self, server: _Server) -> None:
        # Blocks until a connection comes, as the browser intake does: an idle API costs no CPU. `stop` wakes it.
        while not self._stopping.is_set():
            server.handle_request()

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        with contextlib.suppress(OSError):
            socket.create_connection((API_HOST, self.port), timeout=READ_TIMEOUT_S).close()
        if self._thread is not None:
            self._thread.join(READ_TIMEOUT_S)
        self._server.server_close()
        self._server = None

    def __enter__(self) -> AwApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def accepted(self) -> int:
        with self._lock:
            return self._accepted

    @property
    def refused(self) -> dict[str, int]:
        """Requests not accepted so far, by reason: not_loopback, foreign_host, foreign_origin, bad_request (400
        and the like), not_found, failed (the collector's own error)."""
        with self._lock:
            return dict(self._refused)

    def status(self) -> AwApiStatus:
        with self._lock:
            return AwApiStatus(self._accepted, dict(self._refused), self._last_accepted_ms)

    def count(self, status: int, refused: str | None = None) -> None:
        with self._lock:
            if refused is not None:
                self._refused[refused] += 1
            elif status < 400:
                self._accepted += 1
                self._last_accepted_ms = int(self._clock() * 1000)
            elif status == HTTPStatus.NOT_FOUND:
                self._refused["not_found"] += 1
            elif status < 500:
                self._refused["bad_request"] += 1
            else:
                self._refused["failed"] += 1

    # -- the endpoints

    def answer(self, method: str, target: str, body: bytes) -> Answer:
        """The answer to one request that passed `refusal`. Raises BadRequest for a request it cannot read."""
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True)
        segments = parts.path.split("/")
        if segments[:3] != ["", "api", "0"] or len(segments) < 4:
            return _not_found(f"no such endpoint: {method} {parts.path}")
        route = [unquote(segment) for segment in segments[3:]]
        if route[-1] == "" and len(route) > 1:  # "buckets/" and "buckets" alike
            route = route[:-1]
        if route == ["info"] and method == "GET":
            return Answer(HTTPStatus.OK, self._info())
        if route == ["buckets"] and method == "GET":
            return Answer(HTTPStatus.OK, {bucket.id: bucket_json(bucket) for bucket in self.store.buckets()})
        if len(route) >= 2 and route[0] == "buckets":
            bucket_id, rest = route[1], route[2:]
            if not _BUCKET_ID.fullmatch(bucket_id):
                raise BadRequest("a bucket id must be 1 to 256 characters, without '/' or control characters")
            try:
                return self._bucket_answer(method, bucket_id, rest, query, body)
            except NoSuchBucket:
                return _not_found(f"there is no bucket named {bucket_id!r}")
        return _not_found(f"no such endpoint: {method} {parts.path}")

    def _info(self) -> dict[str, Any]:
        return {
            "hostname": self.host_name,
            "version": self._version,
            "testing": False,
            "device_id": self.store.device_id,
        }

    def _bucket_answer(
        self, method: str, bucket_id: str, rest: list[str], query: Mapping[str, list[str]], body: bytes
    ) -> Answer:
        store = self.store
        if not rest:
            if method == "GET":
                bucket = store.bucket(bucket_id)
                if bucket is None:
                    raise NoSuchBucket(bucket_id)
                return Answer(HTTPStatus.OK, bucket_json(bucket))
            if method == "POST":
                fields = parse_new_bucket(parse_json(body))
                created = store.create_bucket(
                    bucket_id,
                    type=str(fields["type"]),
                    client=str(fields["client"]),
                    hostname=str(fields["hostname"]),
                    name=fields["name"],
                )
                # aw-client's create_bucket is called on every start: an existing bucket is not an error.
                return Answer(HTTPStatus.OK, {}) if created else Answer(HTTPStatus.NOT_MODIFIED)
            if method == "DELETE":
                if query.get("force", [""])[0] != "1":
                    return Answer(
                        HTTPStatus.UNAUTHORIZED,
                        {"message": "deleting a bucket and its events needs ?force=1"},
                    )
                if not store.delete_bucket(bucket_id):
                    raise NoSuchBucket(bucket_id)
                return Answer(HTTPStatus.OK, {})
        elif rest == ["heartbeat"] and method == "POST":
            pulsetime_ms = parse_pulsetime(query)
            heartbeat = parse_event(parse_json(body), "heartbeat")
            stored = store.heartbeat(bucket_id, heartbeat, pulsetime_ms)
            if stored is None:  # a private window's: answered, but nothing of it is kept, nor echoed
                return Answer(HTTPStatus.OK, event_json(Span(heartbeat.start_ms, heartbeat.end_ms, {})))
            return Answer(HTTPStatus.OK, event_json(stored))
        elif rest == ["events"] and method == "POST":
            given = parse_json(body)
            if isinstance(given, list):
                events = [parse_event(item, f"event {i}") for i, item in enumerate(given)]
            else:
                events = [parse_event(given)]
            results = store.insert(bucket_id, events)
            # As aw-server: the event when one was sent, else nothing.
            only = results[0] if len(results) == 1 else None
            return Answer(HTTPStatus.OK, event_json(only) if only is not None else None)
        elif rest == ["events"] and method == "GET":
            limit = _limit(query)
            start_ms, end_ms = _bounds(query)
            listed = store.events(bucket_id, limit=limit, start_ms=start_ms, end_ms=end_ms)
            return Answer(HTTPStatus.OK, [event_json(event) for event in listed])
        elif rest == ["events", "count"] and method == "GET":
            start_ms, end_ms = _bounds(query)
            return Answer(HTTPStatus.OK, store.count(bucket_id, start_ms=start_ms, end_ms=end_ms))
        return _not_found(f"no such endpoint: {method} /api/0/buckets/{bucket_id}/{'/'.join(rest)}".rstrip("/"))


def _limit(query: Mapping[str, list[str]]) -> int | None:
    if "limit" not in query:
        return None
    text = query["limit"][0]
    try:
        limit = int(text)
    except ValueError:
        raise BadRequest(f"limit must be an integer, not {text[:32]!r}") from None
    return None if limit < 0 else limit


def _bounds(query: Mapping[str, list[str]]) -> tuple[int | None, int | None]:
    bounds: list[int | None] = []
    for name in ("start", "end"):
        text = query.get(name, [None])[0]
        if text is None:
            bounds.append(None)
            continue
        # A "+01:00" typed into a URL unencoded arrives as a space.
        if "T" in text or "t" in text:
            text = text.replace(" ", "+")
        bounds.append(parse_timestamp(text, name))
    return bounds[0], bounds[1]


class _Handler(BaseHTTPRequestHandler):
    owner: AwApi
    protocol_version = "HTTP/1.1"
    timeout = READ_TIMEOUT_S
    server_version = "productimon-aw-api"
    sys_version = ""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_OPTIONS(self) -> None:
        # No CORS preflight is ever granted: the only browser clients meant here are extensions, which need none.
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def _handle(self) -> None:
        api = self.owner
        if api.stopping:
            self.close_connection = True
            self._send(Answer(HTTPStatus.SERVICE_UNAVAILABLE, {"message": "the collector is stopping"}))
            return
        reason = refusal(self.client_address[0], self.headers.get("Host"), self.headers.get("Origin"), api.port)
        if reason is not None:
            self.close_connection = True
            api.count(HTTPStatus.FORBIDDEN, reason)
            self._send(Answer(HTTPStatus.FORBIDDEN, {"message": _REFUSAL_MESSAGES[reason]}))
            return
        try:
            answer = api.answer(self.command, self.path, self._body())
        except BadRequest as exc:
            answer = Answer(HTTPStatus.BAD_REQUEST, {"message": str(exc)})
        except OSError:
            raise  # the peer went silent or away while sending its body: http.server ends the connection
        except Exception:
            log.exception("ActivityWatch API: %s %s failed", self.command, self.path.split("?", 1)[0])
            answer = Answer(HTTPStatus.INTERNAL_SERVER_ERROR, {"message": "internal error in the collector"})
        api.count(answer.status)
        self._send(answer)

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise BadRequest("send the request body with a Content-Length, not chunked")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise BadRequest("Content-Length is not a number") from None
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            raise BadRequest(f"the request body must be at most {MAX_BODY_BYTES} bytes")
        # Read whole even where unused (aw-client sends "{}" with DELETE), so a kept-alive connection stays in step.
        return self.rfile.read(length) if length else b""

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        if answer.status == HTTPStatus.NOT_MODIFIED:
            # A 304 has no body by definition: clients read none, so one sent would corrupt the connection.
            self.end_headers()
            return
        payload = json.dumps(answer.body, ensure_ascii=False).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own errors (a malformed request line, a header too long) answered as JSON too; a method it
        # has no handler for is an endpoint that does not exist, like every other.
        if code == HTTPStatus.NOT_IMPLEMENTED:
            code, message = HTTPStatus.NOT_FOUND, f"no such endpoint: {self.command} {self.path.split('?', 1)[0]}"
        self.close_connection = True
        self.owner.count(code)
        body = json.dumps({"message": message or explain or HTTPStatus(code).phrase}).encode()
        with contextlib.suppress(OSError):
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("ActivityWatch API %s: " + format, self.client_address[0], *args)
