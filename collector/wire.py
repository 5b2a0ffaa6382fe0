"""The running collector's calls to the gateway: unary gRPC over HTTP/2 and mutual TLS, without grpcio.

grpcio's C core alone is 12 MB of resident code, and with its Python side and the asyncio it imports, gRPC was 27
of the collector's 57 MB (docs/collector.md, "What it costs while it runs"). The collector makes four kinds of
call, all unary (a batch, a renewal, its device info, its account's privacy choices), so the long-running
process speaks the same gRPC wire itself: `h2` does HTTP/2 (framing, flow control, header compression) and the
standard `ssl` module the mutual TLS, checking the gateway against the instance's CA and presenting the device's
certificate. Messages are the same protobuf classes (schemas/wire). The short-lived commands (signup, enroll) and
the tests keep grpcio.

Errors are `RpcError`, with grpc's `code()`, `details()` and `trailing_metadata()`, and the codes' names.
"""

from __future__ import annotations

import enum
import os
import shutil
import socket
import ssl
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.events
import h2.exceptions

_MAX_RESPONSE_BYTES = 16 * 1024 * 1024


class StatusCode(enum.Enum):
    """gRPC's status codes (the numbers the wire carries in grpc-status)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class RpcError(Exception):
    """A call that did not succeed: the gateway's status, or UNAVAILABLE / DEADLINE_EXCEEDED from here."""

    def __init__(self, code: StatusCode, details: str, trailing: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code, self._details, self._trailing = code, details, tuple(trailing)

    def code(self) -> StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._trailing


class Message(Protocol):
    def SerializeToString(self) -> bytes: ...  # noqa: N802 (protobuf's name)


def frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: not compressed, 4-byte big-endian length, the bytes."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def unframe(body: bytes) -> bytes:
    """The one message of a unary response body; ValueError when the body is not exactly one uncompressed one."""
    if len(body) < 5:
        raise ValueError(f"a response of {len(body)} bytes holds no message")
    if body[0] != 0:
        raise ValueError("the response is compressed, and no compression was offered")
    length = int.from_bytes(body[1:5], "big")
    if len(body) != 5 + length:
        raise ValueError(f"the response holds {len(body) - 5} bytes after a prefix saying {length}")
    return body[5:]


def status_of(headers: dict[str, str]) -> tuple[StatusCode, str]:
    """The call's status from its trailers (or a trailers-only response)."""
    raw = headers.get("grpc-status")
    if raw is None:
        return StatusCode.UNKNOWN, "the gateway sent no grpc-status"
    try:
        code = StatusCode(int(raw))
    except ValueError:
        return StatusCode.UNKNOWN, f"the gateway sent the status {raw!r}"
    return code, unquote(headers.get("grpc-message", ""))


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class Channel:
    """One HTTP/2 connection to `address` (host:port) over mutual TLS, opened on the first call and again after a
    failure; calls are made one at a time. `cert_file`/`key_file` are the device's certificate and key (PEM
    files); `ca_pem` the instance's CA, the only one trusted."""

    def __init__(self, address: str, ca_pem: bytes, cert_file: Path, key_file: Path) -> None:
        host, _, port = address.rpartition(":")
        self._host, self._port, self._address = host.strip("[]"), int(port), address
        self._context = ssl.create_default_context(cadata=ca_pem.decode())
        self._context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._context.load_cert_chain(str(cert_file), str(key_file))
        self._context.set_alpn_protocols(["h2"])
        self._sock: ssl.SSLSocket | None = None
        self._h2: h2.connection.H2Connection | None = None

    def close(self) -> None:
        if self._sock is not None:
            try:
                if self._h2 is not None:
                    self._h2.close_connection()
                    self._sock.sendall(self._h2.data_to_send())
            except (OSError, h2.exceptions.ProtocolError):
                pass
            self._sock.close()
        self._sock = self._h2 = None

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self, deadline: float) -> tuple[ssl.SSLSocket, h2.connection.H2Connection]:
        if self._sock is not None and self._h2 is not None:
            return self._sock, self._h2
        try:
            raw = socket.create_connection((self._host, self._port), timeout=max(0.1, deadline - time.monotonic()))
        except OSError as exc:
            raise RpcError(
                StatusCode.UNAVAILABLE, f"cannot connect to {self._address}: {exc.strerror or exc}"
            ) from None
        try:
            sock = self._context.wrap_socket(raw, server_hostname=self._host)
        except ssl.SSLError as exc:
            raw.close()
            raise RpcError(StatusCode.UNAVAILABLE, f"TLS handshake with {self._address} failed: {exc}") from None
        except TimeoutError:
            raw.close()
            raise RpcError(StatusCode.DEADLINE_EXCEEDED, f"no TLS handshake from {self._address} in time") from None
        except OSError as exc:
            raw.close()
            raise RpcError(StatusCode.UNAVAILABLE, f"TLS with {self._address} failed: {exc}") from None
        if sock.selected_alpn_protocol() != "h2":
            sock.close()
            raise RpcError(StatusCode.UNAVAILABLE, f"{self._address} does not speak HTTP/2")
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        self._sock, self._h2 = sock, conn
        return sock, conn

    def call(
        self,
        method: str,
        request: Message,
        reply_type: type,
        timeout_s: float,
        metadata: Sequence[tuple[str, str]] = (),
    ):
        """Call `method` ('/package.Service/Method') with `request`; the reply parsed as `reply_type`."""
        deadline = time.monotonic() + timeout_s
        try:
            body = self._exchange(method, frame(request.SerializeToString()), deadline, metadata)
        except RpcError:
            self.close()
            raise
        except (OSError, h2.exceptions.ProtocolError) as exc:
            self.close()
            if isinstance(exc, TimeoutError):
                raise RpcError(StatusCode.DEADLINE_EXCEEDED, f"no answer from {self._address} in time") from None
            raise RpcError(StatusCode.UNAVAILABLE, f"the connection to {self._address} failed: {exc}") from None
        reply = reply_type()
        try:
            reply.ParseFromString(unframe(body))
        except Exception as exc:  # a reply this client cannot read is the server's fault, as grpc says
            raise RpcError(StatusCode.INTERNAL, f"unreadable reply from {self._address}: {exc}") from None
        return reply

    def _exchange(self, method: str, body: bytes, deadline: float, metadata: Sequence[tuple[str, str]]) -> bytes:
        sock, conn = self._connect(deadline)
        stream = conn.get_next_available_stream_id()
        left_ms = max(1, int((deadline - time.monotonic()) * 1000))
        headers = [
            (":method", "POST"),
            (":scheme", "https"),
            (":path", method),
            (":authority", self._address),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("grpc-timeout", f"{left_ms}m"),
            ("user-agent", "productimon-collector"),
            *((key.lower(), value) for key, value in metadata),
        ]
        conn.send_headers(stream, headers)
        sent, received = 0, bytearray()
        response: dict[str, str] = {}
        trailers: dict[str, str] = {}
        request_ended = ended = False
        while True:
            # Send what the flow-control windows allow, then wait for the server's next frames.
            while sent < len(body):
                room = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size, len(body) - sent)
                if room <= 0:
                    break
                conn.send_data(stream, body[sent : sent + room])
                sent += room
            if sent == len(body) and not request_ended:
                conn.end_stream(stream)
                request_ended = True
            sock.sendall(conn.data_to_send())
            if ended:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                conn.reset_stream(stream, error_code=8)  # CANCEL
                sock.sendall(conn.data_to_send())
                raise RpcError(StatusCode.DEADLINE_EXCEEDED, f"no answer from {self._address} in time")
            sock.settimeout(left)
            data = sock.recv(65536)
            if not data:
                raise RpcError(StatusCode.UNAVAILABLE, f"{self._address} closed the connection")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                    response = {_text(k): _text(v) for k, v in event.headers}
                elif isinstance(event, h2.events.TrailersReceived) and event.stream_id == stream:
                    trailers = {_text(k): _text(v) for k, v in event.headers}
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                    received += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream)
                    if len(received) > _MAX_RESPONSE_BYTES:
                        raise RpcError(StatusCode.RESOURCE_EXHAUSTED, "the reply is larger than any reply expected")
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                    ended = True
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
                    raise RpcError(StatusCode.UNAVAILABLE, f"{self._address} reset the call (code {event.error_code})")
                elif isinstance(event, h2.events.ConnectionTerminated):
                    raise RpcError(StatusCode.UNAVAILABLE, f"{self._address} closed the connection")
        if response.get(":status") != "200":
            raise RpcError(StatusCode.UNAVAILABLE, f"{self._address} answered HTTP {response.get(':status')}")
        final = trailers or response  # a trailers-only answer carries its status in the headers
        code, details = status_of(final)
        if code is not StatusCode.OK:
            metadata_out = tuple((k, v) for k, v in final.items() if not k.startswith((":", "grpc-", "content-type")))
            raise RpcError(code, details, metadata_out)
        return bytes(received)


def credential_files(directory: Path | None, cert_pem: bytes, key_pem: bytes) -> tuple[Path, Path, Path | None]:
    """The certificate and key as files for `ssl`: the collector home's own when `directory` holds them, else
    written to a new owner-only temporary directory (returned third, for the caller to remove)."""
    if directory is not None and (directory / "device.crt").is_file() and (directory / "device.key").is_file():
        return directory / "device.crt", directory / "device.key", None
    scratch = Path(tempfile.mkdtemp(prefix="productimon-wire-"))
    cert, key = scratch / "device.crt", scratch / "device.key"
    for path, data in ((cert, cert_pem), (key, key_pem)):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
    return cert, key, scratch


def open_channel(address: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, directory: Path | None) -> Channel:
    cert, key, scratch = credential_files(directory, cert_pem, key_pem)
    try:
        return Channel(address, ca_pem, cert, key)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def rpc_reason(exc: BaseException) -> str:
    """'CODE: the first line of the details', for a log line or `status`, from this module's errors or grpcio's."""
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    details = (exc.details() if callable(getattr(exc, "details", None)) else None) or str(exc)
    first = details.strip().splitlines()[0] if details.strip() else ""
    return f"{code.name if code is not None else 'error'}: {first}"
