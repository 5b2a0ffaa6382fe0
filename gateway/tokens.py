"""Signed, expiring access tokens (EdDSA JWTs) naming a user, or a share link, and a scope.

The gateway holds the private key and issues tokens; the dashboard holds only the public key and
verifies them. pyjwt with cryptography's Ed25519 does all of the signing and checking.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from plumbing.files import make_private_dir, write_atomically

ISSUER = "productimon"
DASHBOARD_SCOPE = "dashboard"
# A read-only link to one view of one period of a user's data. Its token names only the link: the owner,
# view and period are the gateway's record of that link.
SHARE_SCOPE = "share"
# The one-click unsubscribe link of a notice e-mail (RFC 8058): it names the account and what it stops, and works
# without signing in. It lasts long, as an old e-mail's link should; after the account's deletion it stops nothing.
UNSUBSCRIBE_SCOPE = "unsubscribe"
UNSUBSCRIBE_TTL_S = 400 * 86400
PRIVATE_KEY_FILE = "token_signing.key"
PUBLIC_KEY_FILE = "token_signing.pub"
# Hosts' clocks differ a little; a token issued "in the future" by this much is still accepted.
CLOCK_LEEWAY_S = 5


class TokenError(Exception):
    """The token is missing, malformed, forged, expired or not valid for what was asked."""


@dataclass(frozen=True)
class TokenClaims:
    user_id: str  # the subject: a user; for a share token, its link's id (the same as token_id)
    scope: str
    issued_at: int
    expires_at: int
    token_id: str


def ensure_signing_key(keys_dir: Path, public_dir: Path | None = None) -> tuple[bytes, bytes]:
    """The (private, public) PEM pair, created on first use, owner-only (0600 files in a 0700 directory). The
    public key is also published in `public_dir`, where the dashboard reads it: the dashboard never sees the
    directory of the private key (docs/least-privilege.md)."""
    private_path, public_path = keys_dir / PRIVATE_KEY_FILE, keys_dir / PUBLIC_KEY_FILE
    if not private_path.exists():
        make_private_dir(keys_dir)
        key = Ed25519PrivateKey.generate()
        private_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private_pem)
        write_atomically(public_path, public_pem)
    private_pem, public_pem = private_path.read_bytes(), public_path.read_bytes()
    if public_dir is not None:
        published = public_dir / PUBLIC_KEY_FILE
        if not published.exists() or published.read_bytes() != public_pem:
            make_private_dir(public_dir)
            write_atomically(published, public_pem)
    return private_pem, public_pem


def read_public_key(public_dir: Path) -> bytes:
    path = public_dir / PUBLIC_KEY_FILE
    if not path.exists():
        raise TokenError(f"no token verification key at {path}; start the stack first")
    return path.read_bytes()


def issue_token(
    private_pem: bytes,
    user_id: str,
    scope: str,
    ttl_s: int,
    now: float | None = None,
    token_id: str | None = None,
    extra: dict[str, str] | None = None,
) -> str:
    """A signed token for `user_id` and `scope`, valid `ttl_s` seconds; `extra`: claims of its own kind."""
    issued = int(time.time() if now is None else now)
    claims = {
        **(extra or {}),
        "iss": ISSUER,
        "sub": user_id,
        "scope": scope,
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": token_id or str(uuid.uuid4()),
    }
    return jwt.encode(claims, private_pem, algorithm="EdDSA")


def issue_share_token(private_pem: bytes, link_id: str, ttl_s: int, now: float | None = None) -> str:
    """The token of the share link `link_id`, valid `ttl_s` seconds.

    Anyone holding a link can read its claims (a JWT is signed, not encrypted), so they hold the link's opaque
    random id and nothing else: no user, email, device, view or period, all of which stay in the gateway."""
    return issue_token(private_pem, link_id, SHARE_SCOPE, ttl_s, now=now, token_id=link_id)


def issue_unsubscribe_token(private_pem: bytes, user_id: str, stops: str, now: float | None = None) -> str:
    """The token of an unsubscribe link that switches off `stops` (a goal id, or "weekly") for `user_id`."""
    return issue_token(private_pem, user_id, UNSUBSCRIBE_SCOPE, UNSUBSCRIBE_TTL_S, now=now, extra={"stops": stops})


def verify_unsubscribe_token(public_pem: bytes, token: str | None) -> tuple[str, str]:
    """(user id, what it stops) of a genuine, unexpired unsubscribe token; TokenError otherwise."""
    claims = _decoded(public_pem, token, UNSUBSCRIBE_SCOPE)
    stops = claims.get("stops")
    if not isinstance(stops, str) or not stops:
        raise TokenError("the token does not say what to unsubscribe from")
    return claims["sub"], stops


def verify_token(public_pem: bytes, token: str | None, scope: str) -> TokenClaims:
    """The token's claims if it is genuine, unexpired and carries `scope`; TokenError otherwise."""
    claims = _decoded(public_pem, token, scope)
    return TokenClaims(claims["sub"], claims["scope"], claims["iat"], claims["exp"], claims["jti"])


def _decoded(public_pem: bytes, token: str | None, scope: str) -> dict:
    if not token:
        raise TokenError("no token")
    try:
        claims = jwt.decode(
            token,
            public_pem,
            algorithms=["EdDSA"],
            issuer=ISSUER,
            leeway=CLOCK_LEEWAY_S,
            options={"require": ["exp", "iat", "sub", "iss", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("the token has expired") from None
    except jwt.InvalidSignatureError:
        raise TokenError("the token was changed, or not issued by this instance") from None
    except jwt.DecodeError:
        # A token cut short or altered in transit (a link copied in part): the library's words ("Invalid crypto
        # padding") say nothing to the person holding it.
        raise TokenError("the token is damaged or incomplete; copy the whole link again") from None
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"the token is not valid: {exc}") from None
    if claims.get("scope") != scope:
        raise TokenError(f"the token is not valid for {scope}")
    return claims
