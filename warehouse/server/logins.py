"""Who may use the warehouse and as which role (warehouse/roles.py, docs/least-privilege.md): the services' logins
as the local stack writes them, and the check of the credentials a request brings, the ways ClickHouse takes them."""

from __future__ import annotations

import hmac
import json
from base64 import b64decode
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from plumbing.cli import UserFacingError
from warehouse.roles import ROLES, Role
from warehouse.server.errors import AUTHENTICATION_FAILED, ClickHouseError


def authenticate(headers: Any, params: dict[str, str], logins: Sequence[tuple[bytes, bytes, Role]]) -> Role:
    """Check the credentials the way ClickHouse takes them (basic auth, X-ClickHouse-* headers, URL) against
    `logins` (user name, password, role); the login's role."""
    authorization = headers.get("Authorization")
    if authorization:
        scheme, _, encoded = authorization.partition(" ")
        try:
            if scheme.lower() != "basic":
                raise ValueError(scheme)
            user, _, password = b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            user, password = "", ""
    elif headers.get("X-ClickHouse-User") is not None or headers.get("X-ClickHouse-Key") is not None:
        user, password = headers.get("X-ClickHouse-User", "default"), headers.get("X-ClickHouse-Key", "")
    else:
        user, password = params.get("user", "default"), params.get("password", "")
    found = None
    for name, secret, role in logins:  # every login compared, in constant time, whichever matches
        if hmac.compare_digest(user.encode(), name) & hmac.compare_digest(password.encode(), secret):
            found = role
    if found is None:
        # Like ClickHouse, say nothing about which part was wrong; never repeat what was sent.
        raise ClickHouseError.of(
            AUTHENTICATION_FAILED,
            "Authentication failed: password is incorrect, or there is no user with such name",
        )
    return found


def read_logins(path: Path) -> dict[str, tuple[str, Role]]:
    """The services' logins from a JSON file `{role: {"user": ..., "password": ...}}` (the local stack writes it,
    owner-only): user name -> (password, role)."""
    try:
        entries = json.loads(path.read_text())
        logins = {entry["user"]: (entry["password"], ROLES[role]) for role, entry in entries.items()}
    except OSError as exc:
        raise UserFacingError(f"cannot read the warehouse logins {path}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserFacingError(f"{path} is not a file of warehouse logins (role -> user, password): {exc!r}") from None
    if not all(isinstance(user, str) and isinstance(secret, str) and secret for user, (secret, _) in logins.items()):
        raise UserFacingError(f"{path}: every login needs a user name and a non-empty password")
    return logins
