"""E-mail notices: every `email_every_seconds` the gateway finds each account's e-mail notices due and the weekly
summary, and sends them through the operator's SMTP server (docs/dashboard.md "Notices").

Only while SMTP is configured (Settings.email_notices). A notice is recorded as sent once the SMTP server has
accepted it; until then it waits, so a server that is down or refuses the login delays notices, never loses them.
A message the server refuses for good (5xx: no such mailbox) is recorded as dropped and never tried again. The
address is read from the identity store at the moment of sending: a deleted or disabled account gets nothing.
Between the server's acceptance and the record (milliseconds) a killed gateway would send that notice again once;
at most once is otherwise kept (one round at a time per account, under the account's notice lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage

from clickhouse_connect.driver.client import Client

from gateway.mail_rules import notice_email, unsubscribe_link
from gateway.tokens import issue_unsubscribe_token
from plumbing.settings import Settings
from warehouse import notices
from warehouse.notice_rules import WEEKLY, WEEKLY_GOAL_ID, Notice

log = logging.getLogger(__name__)

SMTP_TIMEOUT_S = 30.0


class SmtpFailure(Exception):
    """The SMTP server could not take a message, in one line; `permanent`: it refused this message for good."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    security: str  # "starttls", "tls" or "plaintext"
    username: str
    password: str
    ca_file: str
    sender: str

    @classmethod
    def of(cls, s: Settings) -> SmtpServer:
        return cls(s.smtp_host, s.smtp_port, s.smtp_security, s.smtp_username, s.smtp_password, s.smtp_ca_file,
                   s.smtp_from)  # fmt: skip

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


class SmtpSession:
    """One connection to the SMTP server, opened on the first message and used for every message of a round."""

    def __init__(self, server: SmtpServer, timeout_s: float = SMTP_TIMEOUT_S) -> None:
        self.server = server
        self.timeout_s = timeout_s
        self._smtp: smtplib.SMTP | None = None

    def send(self, message: EmailMessage) -> None:
        try:
            if self._smtp is None:
                self._smtp = self._connect()
            refused = self._smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reason = next(iter(exc.recipients.values()))
            raise SmtpFailure(f"the SMTP server refused the recipient: {code} {_said(reason)}", code >= 500) from None
        except smtplib.SMTPDataError as exc:
            raise SmtpFailure(
                f"the SMTP server refused the message: {exc.smtp_code} {_said(exc.smtp_error)}", exc.smtp_code >= 500
            ) from None
        except smtplib.SMTPSenderRefused as exc:
            self.close()
            raise SmtpFailure(
                f"the SMTP server refused the sender {exc.sender}: {exc.smtp_code} "
                f"{_said(exc.smtp_error)}; check PRODUCTIMON_SMTP_FROM"
            ) from None
        except smtplib.SMTPAuthenticationError as exc:
            self.close()
            raise SmtpFailure(
                f"the SMTP server {self.server.name} refused the login: {exc.smtp_code} "
                f"{_said(exc.smtp_error)}; check PRODUCTIMON_SMTP_USERNAME and PRODUCTIMON_SMTP_PASSWORD"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            self.close()
            raise SmtpFailure(
                f"the SMTP server {self.server.name}'s certificate is not trusted "
                f"({exc.verify_message}); see PRODUCTIMON_SMTP_CA_FILE"
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            self.close()
            raise SmtpFailure(f"the SMTP server {self.server.name} does not support what is needed: {exc}") from None
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise SmtpFailure(f"cannot reach the SMTP server {self.server.name}: {_reason(exc)}") from None
        if refused:
            code, reason = next(iter(refused.values()))
            raise SmtpFailure(f"the SMTP server refused the recipient: {code} {_said(reason)}", code >= 500)

    def _connect(self) -> smtplib.SMTP:
        s = self.server
        context = ssl.create_default_context(cafile=s.ca_file or None)
        smtp: smtplib.SMTP
        if s.security == "tls":
            smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=self.timeout_s, context=context)
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=self.timeout_s)
        try:
            smtp.ehlo()
            if s.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise smtplib.SMTPNotSupportedError("it does not offer STARTTLS (PRODUCTIMON_SMTP_SECURITY)")
                smtp.starttls(context=context)
                smtp.ehlo()
            if s.username:
                smtp.login(s.username, s.password)
        except BaseException:
            with contextlib.suppress(Exception):
                smtp.close()
            raise
        return smtp

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
            with contextlib.suppress(Exception):
                smtp.close()


def _said(reply: bytes | str) -> str:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class Mailer:
    """The gateway's e-mail notices: `run` sends a round every `every_s` until stopped."""

    def __init__(
        self,
        settings: Settings,
        warehouse: Callable[[], Client],
        address_of: Callable[[str], str | None],
        private_key: bytes,
        lock_of: Callable[[str], asyncio.Lock],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.server = SmtpServer.of(settings)
        self.every_s = settings.email_every_seconds
        self.link_base = settings.unsubscribe_link_base
        self.warehouse = warehouse
        self.address_of = address_of
        self.private_key = private_key
        self.lock_of = lock_of
        self.clock = clock
        self.sent = 0
        self._said = ""  # the last problem logged, so a lasting one is said once

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.round()
            except Exception as exc:  # a round that failed is tried again; never the end of the gateway
                self._say(f"e-mail notices: the round failed ({type(exc).__name__}: {exc}); trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every_s)

    async def round(self) -> int:
        """Send every e-mail notice now due; returns how many were sent."""
        users = await asyncio.to_thread(notices.email_accounts, self.warehouse())
        session = SmtpSession(self.server)
        sent = 0
        try:
            for user_id in users:
                async with self.lock_of(user_id):
                    sent += await asyncio.to_thread(self._mail_account, session, user_id)
        except SmtpFailure as exc:
            self._say(f"e-mail notices wait: {exc}")
        else:
            self._said = ""
        finally:
            await asyncio.to_thread(session.close)
        self.sent += sent
        return sent

    def _mail_account(self, session: SmtpSession, user_id: str) -> int:
        address = self.address_of(user_id)
        if address is None:  # deleted or disabled: nothing is sent, whatever the warehouse still holds
            return 0
        client, now = self.warehouse(), self.clock()
        sent = 0
        for notice in notices.email_due(client, user_id, now):
            try:
                session.send(self._message(user_id, address, notice, now))
            except SmtpFailure as exc:
                if not exc.permanent:
                    raise
                notices.record(client, user_id, [notice], "dropped")
                log.warning("an e-mail notice to account %s was dropped: %s", user_id, exc)
                continue
            notices.record(client, user_id, [notice], "sent")
            log.info("e-mail notice sent to account %s: %s", user_id, notice.summary)
            sent += 1
        return sent

    def _message(self, user_id: str, address: str, notice: Notice, now: datetime) -> EmailMessage:
        stops = WEEKLY if notice.goal_id == WEEKLY_GOAL_ID else notice.goal_id
        link = unsubscribe_link(self.link_base, issue_unsubscribe_token(self.private_key, user_id, stops))
        return notice_email(notice, address, self.server.sender, link, now)

    def _say(self, line: str) -> None:
        if line != self._said:
            self._said = line
            log.warning("%s", line)
