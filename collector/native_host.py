"""The native messaging host the browser starts for the Productimon extension (`productimon-browser host`).

It reads the extension's messages from stdin (native messaging framing: a 4-byte length in native byte order,
then that much UTF-8 JSON), strips each URL, and forwards it with the per-install secret to the running
collector's loopback intake. When no collector is running a report is dropped: the browser must never wait for
the collector, and a report is worth nothing a few seconds later anyway.
"""

from __future__ import annotations

import json
import secrets
import struct
import sys
from typing import BinaryIO, TextIO

from collector.browser import ensure_browser_secret, read_intake_address, send_line
from collector.config import CollectorHome
from collector.privacy import strip_url

HOST_NAME = "com.productimon.browser"
# Browsers allow 4 GiB towards a host; a report is a URL and a title. A larger message is skipped, unread.
MAX_MESSAGE_BYTES = 1024 * 1024
_LENGTH = struct.Struct("=I")


class FramingError(Exception):
    """The stream from the browser is not native messaging; nothing after this point can be trusted."""


_SKIPPED = object()


def read_message(stream: BinaryIO) -> object:
    """The next message from the browser: its decoded JSON, `_SKIPPED` for one that was too large or not JSON,
    None when the browser closed the stream between messages. A stream cut inside a message raises."""
    header = _read_exactly(stream, _LENGTH.size)
    if header is None:
        return None
    (length,) = _LENGTH.unpack(header)
    if length > MAX_MESSAGE_BYTES:
        while length:
            chunk = stream.read(min(length, 64 * 1024))
            if not chunk:
                raise FramingError("the stream ended inside a message")
            length -= len(chunk)
        return _SKIPPED
    body = _read_exactly(stream, length)
    if body is None and length:
        raise FramingError("the stream ended inside a message")
    try:
        return json.loads(body or b"")
    except (ValueError, UnicodeDecodeError):
        return _SKIPPED


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            if data:
                raise FramingError("the stream ended inside a message")
            return None
        data += chunk
    return data


def write_message(stream: BinaryIO, message: object) -> None:
    """Frame one message the way the browser expects (used by tests and by anything speaking to a host)."""
    body = json.dumps(message).encode()
    stream.write(_LENGTH.pack(len(body)) + body)
    stream.flush()


class NativeHost:
    """Forwards one browser profile's reports to the collector. Says one line on stderr when delivery starts or
    stops working, not one per report."""

    def __init__(self, home: CollectorHome, browser: str, err: TextIO = sys.stderr) -> None:
        self._home = home
        self._browser = browser
        self._err = err
        # One browser profile runs one host: the intake keeps the freshest report per source.
        self._source = secrets.token_hex(8)
        self._state = ""

    def run(self, stdin: BinaryIO) -> int:
        while True:
            try:
                message = read_message(stdin)
            except FramingError as exc:
                self._say("framing", f"productimon native host: {exc}; exiting")
                return 1
            if message is None:
                return 0
            if message is _SKIPPED:
                self._say("skipped", "productimon native host: skipped a message that is not a report")
                continue
            self.forward(message)

    def forward(self, message: object) -> None:
        payload = self._payload(message)
        if payload is None:
            return
        address = read_intake_address(self._home)
        if address is None:
            self._say("down", "productimon native host: the collector is not running; reports are dropped")
            return
        try:
            payload["secret"] = ensure_browser_secret(self._home)
            answer = send_line(address, json.dumps(payload).encode() + b"\n")
        except (OSError, ValueError) as exc:
            self._say("down", f"productimon native host: the collector at {address[0]}:{address[1]} is away ({exc})")
            return
        if answer.get("ok") is True:
            self._say("up", "productimon native host: reporting to the collector")
        else:
            self._say(f"refused-{answer.get('refused')}", f"productimon native host: refused: {answer.get('refused')}")

    def _payload(self, message: object) -> dict | None:
        if not isinstance(message, dict):
            return None
        base = {"source": self._source, "browser": self._browser}
        if message.get("type") == "none":
            return {**base, "type": "none"}
        if message.get("type") != "tab" or message.get("incognito") is not False:
            return None  # hello, or anything that does not say it is not private
        # Stripped here too: query, fragment and user info never leave the host, whatever the extension sent.
        url = strip_url(message.get("url")) if isinstance(message.get("url"), str) else None
        if url is None:
            return None
        title = message.get("title") if isinstance(message.get("title"), str) else None
        return {**base, "type": "tab", "url": url, "title": title, "incognito": False}

    def _say(self, state: str, line: str) -> None:
        if state != self._state:
            self._state = state
            print(line, file=self._err, flush=True)
