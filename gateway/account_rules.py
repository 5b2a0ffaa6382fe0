"""What the identity store holds (accounts, devices, share links), the refusals it makes, and the rules a request
must meet before it is stored: email and password policy, device details, share links, sign-up modes, codes.

Pure, usable before any I/O (the gateway validates a device name before it redeems a code): the identity store
(gateway/identity_store.py) does the SQL and passes the time in.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from typing import Literal, cast, get_args

from gateway.one_time_codes import CodeState

SignupMode = Literal["open", "invite", "closed"]
SIGNUP_MODES: tuple[str, ...] = get_args(SignupMode)

MAX_EMAIL_LENGTH = 254  # RFC 5321's limit on a forward path
MIN_PASSWORD_LENGTH = 10
# Argon2 takes any length, but a megabyte "password" is only a way to make the server work.
MAX_PASSWORD_LENGTH = 1024
MAX_DEVICE_NAME_LENGTH = 64
MAX_DEVICE_INFO_LENGTH = 64

# Share links are for showing something to someone, not standing access: at most 90 days.
MIN_SHARE_LINK_TTL = 60
MAX_SHARE_LINK_TTL = 90 * 24 * 3600
MAX_TIME_ZONE_LENGTH = 64
_SHARE_VIEW = re.compile(r"[a-z][a-z_]{0,31}")


class AccountError(Exception):
    """A request about an account or device was refused; the message says what was wrong."""


class InvalidEmail(AccountError):
    pass


class WeakPassword(AccountError):
    pass


class EmailTaken(AccountError):
    pass


class SignupClosed(AccountError):
    pass


class InvalidInviteCode(AccountError):
    pass


class InvalidCredentials(AccountError):
    pass


class AccountDisabled(AccountError):
    pass


class UnknownUser(AccountError):
    pass


class UnknownDevice(AccountError):
    pass


class DeviceRevoked(AccountError):
    pass


class InvalidDeviceInfo(AccountError):
    pass


class CertificateReplaced(AccountError):
    """A device certificate that a renewal has replaced: only the device's latest certificate is accepted."""

    def __init__(self) -> None:
        super().__init__("this certificate was replaced by a renewal")


class InvalidEnrollmentCode(AccountError):
    pass


class InvalidShareLink(AccountError):
    """A share link that cannot be made, or is unknown, revoked or expired when opened."""


@dataclass(frozen=True)
class User:
    id: str
    email: str
    created_at: float
    disabled: bool
    is_admin: bool


@dataclass(frozen=True)
class Device:
    id: str
    user_id: str
    name: str
    os: str
    os_version: str
    created_at: float
    revoked: bool
    cert_not_after: float


@dataclass(frozen=True)
class ShareLink:
    """What a read-only link shows: one view of one period [period_start, period_end) of a user's data."""

    id: str
    user_id: str
    view: str
    period_start: float
    period_end: float
    tz: str
    created_at: float
    expires_at: float
    revoked: bool


# -- emails and passwords


def normalize_email(email: str) -> str:
    """The canonical form of an email address (trimmed, lower-case), or InvalidEmail saying why not."""
    if not isinstance(email, str):
        raise InvalidEmail("the email address must be text")
    normalized = email.strip().lower()
    if not normalized:
        raise InvalidEmail("the email address is empty")
    if len(normalized) > MAX_EMAIL_LENGTH:
        raise InvalidEmail(f"the email address is longer than {MAX_EMAIL_LENGTH} characters")
    if any(not c.isprintable() or c.isspace() for c in normalized):
        raise InvalidEmail("the email address contains spaces or control characters")
    local, at, domain = normalized.partition("@")
    if not at or "@" in domain:
        raise InvalidEmail(f"{normalized!r} is not an email address: it needs exactly one '@'")
    if not local:
        raise InvalidEmail(f"{normalized!r} is not an email address: nothing before the '@'")
    labels = domain.split(".")
    if len(labels) < 2 or not all(labels):
        raise InvalidEmail(f"{normalized!r} is not an email address: the domain needs a dot, as in example.com")
    return normalized


def check_password_policy(password: str, email: str) -> None:
    """Raise WeakPassword unless `password` is 10 to 1024 characters and not the account's email."""
    if not isinstance(password, str):
        raise WeakPassword("the password must be text")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"the password is shorter than {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"the password is longer than {MAX_PASSWORD_LENGTH} characters")
    if password.strip().lower() == email.strip().lower():
        raise WeakPassword("the password must not be the email address")


def revocation_line(now: float) -> int:
    """The revocation line a password change, or disabling the account, at `now` draws: tokens with an earlier
    `iat` (Unix seconds) are revoked.

    Rounded up: a token issued earlier in the same second must not survive. A token issued right after (e.g. the
    new session after a password change) should use iat = the store's tokens_valid_after(user).
    """
    return math.ceil(now)


# -- devices


def clean_device_name(name: str) -> str:
    """The trimmed device name, or InvalidDeviceInfo unless it is 1 to 64 printable characters."""
    return _clean_text("device name", name, minimum=1, maximum=MAX_DEVICE_NAME_LENGTH)


def clean_os_info(os: str, os_version: str) -> tuple[str, str]:
    """The trimmed OS name and version, or InvalidDeviceInfo unless each is 0 to 64 printable characters."""
    return (
        _clean_text("OS name", os, minimum=0, maximum=MAX_DEVICE_INFO_LENGTH),
        _clean_text("OS version", os_version, minimum=0, maximum=MAX_DEVICE_INFO_LENGTH),
    )


def _clean_text(what: str, value: str, *, minimum: int, maximum: int) -> str:
    if not isinstance(value, str):
        raise InvalidDeviceInfo(f"the {what} must be text")
    value = value.strip()
    if not minimum <= len(value) <= maximum:
        raise InvalidDeviceInfo(f"the {what} must be {minimum} to {maximum} characters, not {len(value)}")
    if not value.isprintable():
        raise InvalidDeviceInfo(f"the {what} {value!r} contains control characters")
    return value


def cert_serial_text(serial: int) -> str:
    """How a certificate serial is stored (lower-case hex), or InvalidDeviceInfo unless it is a positive integer."""
    if not isinstance(serial, int) or isinstance(serial, bool) or serial <= 0:
        raise InvalidDeviceInfo(f"the certificate serial {serial!r} is not a positive integer")
    return format(serial, "x")


def check_cert_not_after(not_after: float) -> float:
    """A certificate's expiry as a float Unix time, or InvalidDeviceInfo unless it is a finite number."""
    if isinstance(not_after, bool) or not isinstance(not_after, int | float) or not math.isfinite(not_after):
        raise InvalidDeviceInfo(f"the certificate expiry {not_after!r} is not a Unix time")
    return float(not_after)


# -- one-time codes


def check_enrollment_code(state: CodeState | None) -> None:
    """Raise InvalidEnrollmentCode unless a stored code's state (None: no such code) lets it enroll a device."""
    if state is None:
        raise InvalidEnrollmentCode("the enrollment code is not valid")
    if state == "used":
        raise InvalidEnrollmentCode("the enrollment code has already been used")
    if state == "expired":
        raise InvalidEnrollmentCode("the enrollment code has expired; make a new one in the dashboard")


def check_invite(state: CodeState | None) -> None:
    """Raise InvalidInviteCode unless a stored invite's state (None: no such invite) lets someone sign up."""
    if state is None:
        raise InvalidInviteCode("the invite code is not valid")
    if state == "used":
        raise InvalidInviteCode("the invite code has already been used")
    if state == "expired":
        raise InvalidInviteCode("the invite code has expired")


# -- sign-up policy


def check_signup_mode(mode: str) -> SignupMode:
    """`mode` if it is a sign-up mode; ValueError naming the modes if not."""
    if mode not in SIGNUP_MODES:
        raise ValueError(f"sign-up mode {mode!r} is not one of {', '.join(SIGNUP_MODES)}")
    return cast(SignupMode, mode)


def signup_needs_invite(mode: SignupMode, invite_code: str | None) -> bool:
    """Whether a self-service sign-up in this mode must use up `invite_code` (then one was given); SignupClosed or
    InvalidInviteCode when the mode refuses it outright."""
    if mode == "closed":
        raise SignupClosed("sign-up is closed on this instance; ask its operator for an account")
    if mode == "open":
        return False
    if not invite_code:
        raise InvalidInviteCode("sign-up on this instance needs an invite code from its operator")
    return True


# -- share links


def check_share_link(link_id: str, view: str, period_start: float, period_end: float, tz: str, ttl_s: int) -> str:
    """The link id in its canonical form, or InvalidShareLink unless the link can be made: a known kind of view,
    a period of two Unix times in order, a time zone name, a lifetime of a minute to MAX_SHARE_LINK_TTL, and a
    UUID for its id."""
    if not isinstance(view, str) or not _SHARE_VIEW.fullmatch(view):
        raise InvalidShareLink(f"{view!r} is not a view that can be shared")
    if not all(isinstance(t, int | float) and math.isfinite(t) for t in (period_start, period_end)):
        raise InvalidShareLink("the shared period must be two Unix times")
    if period_end <= period_start:
        raise InvalidShareLink("the shared period ends before it starts")
    if not isinstance(tz, str) or not 1 <= len(tz) <= MAX_TIME_ZONE_LENGTH or not tz.isprintable():
        raise InvalidShareLink(f"{tz!r} is not a time zone name")
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not MIN_SHARE_LINK_TTL <= ttl_s <= MAX_SHARE_LINK_TTL:
        raise InvalidShareLink(f"a share link lasts from {MIN_SHARE_LINK_TTL} s to {MAX_SHARE_LINK_TTL // 86400} days")
    try:
        return str(uuid.UUID(link_id))
    except (TypeError, ValueError, AttributeError):
        raise InvalidShareLink(f"{link_id!r} is not a share link id") from None


def check_share_link_open(link: ShareLink, now: float) -> ShareLink:
    """The link if it may be viewed at `now`; InvalidShareLink if it was revoked or has expired."""
    if link.revoked:
        raise InvalidShareLink("this share link has been revoked by its owner")
    if link.expires_at <= now:
        raise InvalidShareLink("this share link has expired")
    return link
