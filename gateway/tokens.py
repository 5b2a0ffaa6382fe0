"""Signed, expiring access tokens (EdDSA JWTs) naming a user and a scope.

The gateway holds the private key and issues tokens; the dashboard holds only the public key and
verifies them. pyjwt with cryptography's Ed25519 does all of the signing and checking.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ISSUER = "productimon"
DASHBOARD_SCOPE = "dashboard"
# A read-only link to one view of one period of a user's data; its view and period travel as claims.
SHARE_SCOPE = "share"
_REGISTERED = frozenset({"iss", "sub", "scope", "iat", "exp", "jti", "nbf", "aud"})
PRIVATE_KEY_FILE = "token_signing.key"
PUBLIC_KEY_FILE = "token_signing.pub"
# Hosts' clocks differ a little; a token issued "in the future" by this much is still accepted.
CLOCK_LEEWAY_S = 5


class TokenError(Exception):
    """The token is missing, malformed, forged, expired or not valid for what was asked."""


@dataclass(frozen=True)
class TokenClaims:
    user_id: str
    scope: str
    issued_at: int
    expires_at: int
    token_id: str
    # Claims beyond the registered ones (a share link's view and period).
    extra: Mapping[str, object] = field(default_factory=dict)


def ensure_signing_key(keys_dir: Path) -> tuple[bytes, bytes]:
    """The (private, public) PEM pair, created on first use; the private key file is 0600."""
    private_path, public_path = keys_dir / PRIVATE_KEY_FILE, keys_dir / PUBLIC_KEY_FILE
    if not private_path.exists():
        keys_dir.mkdir(parents=True, exist_ok=True)
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
        public_path.write_bytes(public_pem)
    return private_path.read_bytes(), public_path.read_bytes()


def read_public_key(keys_dir: Path) -> bytes:
    path = keys_dir / PUBLIC_KEY_FILE
    if not path.exists():
        raise TokenError(f"no token verification key at {path}; start the stack first")
    return path.read_bytes()


def issue_token(
    private_pem: bytes,
    user_id: str,
    scope: str,
    ttl_s: int,
    now: float | None = None,
    extra: Mapping[str, object] | None = None,
    token_id: str | None = None,
) -> str:
    """A signed token for `user_id` and `scope`, valid `ttl_s` seconds; `extra` claims may not replace the
    registered ones."""
    if extra and _REGISTERED & set(extra):
        raise ValueError(f"extra claims may not set {sorted(_REGISTERED & set(extra))}")
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


def verify_token(public_pem: bytes, token: str | None, scope: str) -> TokenClaims:
    """The token's claims if it is genuine, unexpired and carries `scope`; TokenError otherwise."""
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
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"the token is not valid: {exc}") from None
    if claims.get("scope") != scope:
        raise TokenError(f"the token is not valid for {scope}")
    extra = {name: value for name, value in claims.items() if name not in _REGISTERED}
    return TokenClaims(claims["sub"], claims["scope"], claims["iat"], claims["exp"], claims["jti"], extra)
