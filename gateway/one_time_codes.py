"""One-time codes (device enrollment codes, sign-up invites): how they are made, recognised, hashed for storage,
and when one may be used. Pure apart from `secrets`, which makes them; the identity store
(gateway/identity_store.py) keeps their hashes and passes the time in.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Literal

# One-time codes are typed by people: no 0/O, 1/I/L or U, grouped 4 by 4. 16 symbols of 30 carry 78 bits,
# far beyond online guessing, which is why an unsalted SHA-256 is enough to store them.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
CODE_GROUPS = 4
CODE_GROUP_LENGTH = 4
ENROLLMENT_CODE_TTL = 15 * 60
MAX_ENROLLMENT_CODE_TTL = 24 * 3600
INVITE_TTL = 7 * 24 * 3600
MAX_INVITE_TTL = 90 * 24 * 3600
MIN_CODE_TTL = 60
# Used codes are kept a while after expiry so a second use says "already used", then purged.
CODE_RETENTION = 24 * 3600
# Longer than any way of writing one code (16 symbols, separators, spaces): longer text is not looked at.
_MAX_CODE_TEXT = 64

CodeState = Literal["usable", "used", "expired"]


def new_one_time_code() -> str:
    """A fresh human-typable code, e.g. 'K7QM-2XPA-9RTD-HWE4', from `secrets`."""
    symbols = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_GROUPS * CODE_GROUP_LENGTH))
    return "-".join(symbols[i : i + CODE_GROUP_LENGTH] for i in range(0, len(symbols), CODE_GROUP_LENGTH))


def hash_code(code: str) -> str | None:
    """SHA-256 of the code's canonical form (upper-case, no separators), or None if it cannot be a code."""
    if not isinstance(code, str) or len(code) > _MAX_CODE_TEXT:
        return None
    canonical = re.sub(r"[\s-]", "", code).upper()
    if len(canonical) != CODE_GROUPS * CODE_GROUP_LENGTH or any(c not in CODE_ALPHABET for c in canonical):
        return None
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def check_ttl(what: str, ttl_s: int, maximum: int) -> int:
    """`ttl_s` if it is a whole number of seconds from a minute to `maximum`; ValueError saying so if not."""
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not MIN_CODE_TTL <= ttl_s <= maximum:
        raise ValueError(f"{what} lifetime {ttl_s!r} s is not between {MIN_CODE_TTL} and {maximum} seconds")
    return ttl_s


def code_state(expires_at: float, used_at: float | None, now: float) -> CodeState:
    """Whether a stored code may be used at `now`: a used code says so even after it has expired."""
    if used_at is not None:
        return "used"
    if expires_at <= now:
        return "expired"
    return "usable"


def purge_before(now: float) -> float:
    """Codes that expired at or before this time are deleted: CODE_RETENTION after their expiry."""
    return now - CODE_RETENTION
