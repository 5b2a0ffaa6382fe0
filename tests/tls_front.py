"""TLS (and, for Kafka, SCRAM) in front of a plaintext server on loopback, for the transport-security tests.

No real Kafka or ClickHouse server runs here (docs/transport-security.md, "What is tested where"), and the embedded
broker, tansu 0.6.0, can do neither TLS nor SCRAM: its --cert/--key options exclude each other and the acceptor they
would build is never used, and its only storage engine stores no SCRAM credential. So these fronts terminate TLS
with Python's ssl module and the stack's own certificates, and `KafkaScramFront` runs the broker's side of Kafka's
SASL exchange (SaslHandshake, then SaslAuthenticate carrying RFC 5802 SCRAM) before relaying the connection to the
real tansu broker. What they prove is the client side: each client built from the settings speaks TLS, checks the
certificate and the name, and logs in with SCRAM as its own user.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import ssl
import struct
import threading
from dataclasses import dataclass

_API_VERSIONS, _SASL_HANDSHAKE, _SASL_AUTHENTICATE = 18, 17, 36
_UNSUPPORTED_SASL_MECHANISM, _SASL_AUTHENTICATION_FAILED = 33, 58
_HASHES = {"SCRAM-SHA-256": hashlib.sha256, "SCRAM-SHA-512": hashlib.sha512}


class TlsFront:
    """Listens on 127.0.0.1 with TLS and relays each connection's bytes to a plaintext server, in its own thread."""

    def __init__(self, upstream_port: int, cert_file: str, key_file: str) -> None:
        self.upstream_port = upstream_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_cert_chain(cert_file, key_file)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> TlsFront:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _listen(self) -> asyncio.Server:
        def quiet(loop, context) -> None:
            # Connections cut by stop() and refused handshakes are what the tests expect, not errors.
            if not isinstance(context.get("exception"), asyncio.CancelledError | ssl.SSLError | ConnectionError):
                loop.default_exception_handler(context)

        asyncio.get_running_loop().set_exception_handler(quiet)
        return await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            if await self.before_relay(reader, writer, up_reader, up_writer):
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            for w in (writer, up_writer):
                w.close()

    async def before_relay(self, reader, writer, up_reader, up_writer) -> bool:
        """What happens on a connection before its bytes are relayed; False closes it."""
        return True


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


@dataclass
class _Credential:
    """What a SCRAM server keeps of a password (RFC 5802): never the password itself."""

    mechanism: str
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @classmethod
    def of(cls, mechanism: str, password: str, iterations: int = 4096) -> _Credential:
        digest = _HASHES[mechanism]
        salt = os.urandom(16)
        salted = hashlib.pbkdf2_hmac(digest().name, password.encode(), salt, iterations)
        client_key = hmac.new(salted, b"Client Key", digest).digest()
        server_key = hmac.new(salted, b"Server Key", digest).digest()
        return cls(mechanism, salt, iterations, digest(client_key).digest(), server_key)


class KafkaScramFront(TlsFront):
    """TLS, then Kafka's SASL exchange with SCRAM checked here, then the connection relayed to the broker.

    Before a connection has logged in, only ApiVersions (relayed) and the SASL requests are answered; anything else
    closes it, as a broker's SASL listener does. `logins` records the user of every connection that logged in,
    `refused` why each refused one was.
    """

    def __init__(self, upstream_port: int, cert_file: str, key_file: str, users: dict[str, tuple[str, str]]) -> None:
        super().__init__(upstream_port, cert_file, key_file)
        # user -> (mechanism, password); kept as a SCRAM server keeps them.
        self._credentials = {user: _Credential.of(m, p) for user, (m, p) in users.items()}
        self.logins: list[str] = []
        self.refused: list[str] = []

    async def before_relay(self, reader, writer, up_reader, up_writer) -> bool:
        mechanism = None
        scram: _ScramExchange | None = None
        while True:
            frame = await _read_frame(reader)
            api_key, api_version, correlation_id = struct.unpack(">hhi", frame[:8])
            if api_key == _API_VERSIONS:
                up_writer.write(struct.pack(">i", len(frame)) + frame)
                await up_writer.drain()
                reply = await _read_frame(up_reader)
                writer.write(struct.pack(">i", len(reply)) + reply)
                await writer.drain()
                continue
            body = _after_client_id(frame)
            if api_key == _SASL_HANDSHAKE and api_version in (0, 1):
                wanted = _string(body, 0)[0]
                known = wanted in _HASHES
                mechanism = wanted if known else None
                enabled = b"".join(_encode_string(m) for m in _HASHES)
                error = 0 if known else _UNSUPPORTED_SASL_MECHANISM
                if not known:  # recorded before the answer: a client told no may be gone before drain returns
                    self.refused.append(f"mechanism {wanted}")
                _reply(writer, correlation_id, struct.pack(">hi", error, len(_HASHES)) + enabled)
                await writer.drain()
                if not known:
                    return False
                continue
            if api_key == _SASL_AUTHENTICATE and api_version in (0, 1) and mechanism:
                (length,) = struct.unpack(">i", body[:4])
                message = body[4 : 4 + length].decode()
                scram = scram or _ScramExchange(mechanism, self._credentials)
                answer, error = scram.step(message)
                tail = struct.pack(">q", 0) if api_version == 1 else b""
                if error:
                    self.refused.append(f"{scram.user}: {error}")  # before the answer, as above
                    _reply(writer, correlation_id, struct.pack(">h", _SASL_AUTHENTICATION_FAILED)
                           + _encode_string(error) + struct.pack(">i", 0) + tail)  # fmt: skip
                    await writer.drain()
                    return False
                payload = answer.encode()
                _reply(writer, correlation_id, struct.pack(">hhi", 0, -1, len(payload)) + payload + tail)
                await writer.drain()
                if scram.done:
                    self.logins.append(scram.user)
                    return True
                continue
            self.refused.append(f"api {api_key} before logging in")
            return False


class _ScramExchange:
    """The server's side of one SCRAM exchange (RFC 5802, RFC 7677): two client messages, two answers."""

    def __init__(self, mechanism: str, credentials: dict[str, _Credential]) -> None:
        self.mechanism = mechanism
        self.credentials = credentials
        self.user = "?"
        self.done = False
        self._first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self._credential: _Credential | None = None

    def step(self, message: str) -> tuple[str, str]:
        """(answer, error); error is empty unless the login failed."""
        if not self._server_first:
            if not message.startswith("n,,"):
                return "", "channel binding is not supported"
            self._first_bare = message[3:]
            fields = _fields(self._first_bare)
            self.user = fields.get("n", "").replace("=2C", ",").replace("=3D", "=")
            credential = self.credentials.get(self.user)
            if credential is None or credential.mechanism != self.mechanism:
                return "", "unknown user or mechanism"
            self._credential = credential
            self._nonce = fields["r"] + base64.b64encode(os.urandom(18)).decode()
            salt = base64.b64encode(credential.salt).decode()
            self._server_first = f"r={self._nonce},s={salt},i={credential.iterations}"
            return self._server_first, ""
        fields = _fields(message)
        without_proof = message.rsplit(",p=", 1)[0]
        if fields.get("r") != self._nonce:
            return "", "nonce mismatch"
        digest = _HASHES[self.mechanism]
        credential = self._credential
        auth_message = f"{self._first_bare},{self._server_first},{without_proof}".encode()
        signature = hmac.new(credential.stored_key, auth_message, digest).digest()
        proof = base64.b64decode(fields.get("p", ""))
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=False))
        if len(proof) != len(signature) or digest(client_key).digest() != credential.stored_key:
            return "", "wrong password"
        self.done = True
        server_signature = hmac.new(credential.server_key, auth_message, digest).digest()
        return "v=" + base64.b64encode(server_signature).decode(), ""


def _fields(message: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in message.split(",") if "=" in part)


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


def _after_client_id(frame: bytes) -> bytes:
    """A request's body after a non-flexible header (v1): api key, version, correlation id, client id."""
    (length,) = struct.unpack(">h", frame[8:10])
    return frame[10 + max(length, 0) :]


def _string(data: bytes, offset: int) -> tuple[str, int]:
    (length,) = struct.unpack(">h", data[offset : offset + 2])
    return data[offset + 2 : offset + 2 + length].decode(), offset + 2 + length


def _encode_string(value: str) -> bytes:
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


def _reply(writer: asyncio.StreamWriter, correlation_id: int, body: bytes) -> None:
    payload = struct.pack(">i", correlation_id) + body
    writer.write(struct.pack(">i", len(payload)) + payload)
