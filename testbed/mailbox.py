"""A real SMTP server in the test process (aiosmtpd): STARTTLS with a certificate from a CA of its own, a login
required after TLS, and every message it accepts kept, parsed, for the test to read.

`refuse` makes it answer 550 to a recipient (a mailbox that does not exist); `stop` and `start` take it away and
bring it back on the same port, as an SMTP relay that restarts."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from gateway.pki import create_ca, issue_server_certificate
from infra.processes import free_port

# aiosmtpd 1.4 logs a warning about its own use of its deprecated attribute, on every login.
logging.getLogger("mail.log").addFilter(lambda record: "login_data is deprecated" not in record.getMessage())

USERNAME = "notices"
PASSWORD = "smtp-secret-for-tests"


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    at: float  # when it arrived (Unix time)


@dataclass
class _Handler:
    refused: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address in self.refused:
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message, time.time()))  # type: ignore[arg-type]
        return "250 2.0.0 accepted"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        self.logins.append(auth_data.login.decode())
        ok = auth_data.login.decode() == USERNAME and auth_data.password.decode() == PASSWORD
        return AuthResult(success=ok, handled=False)


class Mailbox:
    """`implicit_tls`: TLS from the first byte (port 465's way, PRODUCTIMON_SMTP_SECURITY=tls) instead of STARTTLS."""

    def __init__(self, directory: Path, implicit_tls: bool = False) -> None:
        self.implicit_tls = implicit_tls
        directory.mkdir(parents=True, exist_ok=True)
        ca_cert, ca_key = create_ca("Mailbox test CA")
        cert, key = issue_server_certificate(ca_cert, ca_key, ["127.0.0.1", "localhost"])
        self.ca_file = directory / "smtp-ca.crt"
        self.ca_file.write_bytes(ca_cert)
        (directory / "smtp.crt").write_bytes(cert)
        (directory / "smtp.key").write_bytes(key)
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.load_cert_chain(directory / "smtp.crt", directory / "smtp.key")
        self.port = free_port()
        self.handler = _Handler()
        self._controller: Controller | None = None

    def start(self) -> Mailbox:
        tls: dict[str, object] = (
            # The whole connection is TLS: aiosmtpd's own check for a login after STARTTLS does not apply.
            {"ssl_context": self._tls, "auth_require_tls": False}
            if self.implicit_tls
            else {"tls_context": self._tls, "require_starttls": True}
        )
        self._controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="localhost",
            authenticator=self.handler.authenticate,
            auth_required=True,
            **tls,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Mailbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def refuse(self, address: str) -> None:
        self.handler.refused.add(address)

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def to(self, address: str) -> list[EmailMessage]:
        return [r.message for r in self.received if address in r.recipients]

    def wait_for(self, address: str, count: int = 1, timeout_s: float = 60) -> list[EmailMessage]:
        """The messages to `address` once there are at least `count`."""
        deadline = time.monotonic() + timeout_s
        while len(found := self.to(address)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} of {count} e-mails to {address} arrived in {timeout_s:.0f} s")
            time.sleep(0.1)
        return found

    def smtp_settings(self, sender: str = "Productimon <notices@example.org>") -> dict[str, object]:
        """What a gateway needs to send through this server."""
        return {
            "smtp_host": "127.0.0.1",
            "smtp_port": self.port,
            "smtp_security": "tls" if self.implicit_tls else "starttls",
            "smtp_username": USERNAME,
            "smtp_password": PASSWORD,
            "smtp_ca_file": str(self.ca_file),
            "smtp_from": sender,
        }
