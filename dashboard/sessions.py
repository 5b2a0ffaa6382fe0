"""Sign-ins that outlast a page: a browser's opaque cookie names its sign-in, kept on the dashboard's disk
(docs/dashboard-sessions.md). No Streamlit here.

Every page load without it gets a random `productimon_browser` cookie (dashboard/serve.py): HttpOnly (no script
reads it), Secure, SameSite=Strict (another site's page cannot make the browser send it, so it cannot open a
websocket to the dashboard as this person). It signs nobody in by itself. When someone signs in, the dashboard
keeps their gateway token under that cookie, sealed with a key derived from the cookie, so the file alone opens
nothing; a reload, a new tab, a bookmark or a restarted dashboard finds the token again and confirms it with the
gateway, which can revoke it. Signing out, or the token's expiry, removes it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from plumbing.files import make_private_dir, write_atomically

COOKIE = "productimon_browser"
COOKIE_MAX_AGE_S = 400 * 86400  # browsers cap a cookie's life at 400 days
MIN_COOKIE_CHARS = 32


def _lookup(browser_id: str) -> str:
    return hashlib.sha256(b"productimon session lookup\0" + browser_id.encode()).hexdigest()


def _sealer(browser_id: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"productimon session seal").derive(
        browser_id.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


class SessionBook:
    """The sign-ins of browsers, by their cookie, in one owner-only JSON file."""

    def __init__(self, path: Path, clock=time.time) -> None:
        self.path, self._clock = path, clock
        self._lock = threading.Lock()

    def _read(self) -> dict[str, dict]:
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return entries if isinstance(entries, dict) else {}

    def _write(self, entries: dict[str, dict]) -> None:
        make_private_dir(self.path.parent)
        now = self._clock()
        live = {k: v for k, v in entries.items() if isinstance(v, dict) and v.get("expires_at", 0) > now}
        write_atomically(self.path, json.dumps(live).encode())

    def remember(self, browser_id: str | None, token: str, expires_at: int) -> bool:
        """Keep `token` for this browser until `expires_at` (Unix seconds); False when the cookie is unusable."""
        if not isinstance(browser_id, str) or len(browser_id) < MIN_COOKIE_CHARS:
            return False
        sealed = _sealer(browser_id).encrypt(token.encode()).decode()
        with self._lock:
            entries = self._read()
            entries[_lookup(browser_id)] = {"sealed": sealed, "expires_at": int(expires_at)}
            self._write(entries)
        return True

    def recall(self, browser_id: str | None) -> str | None:
        """The token this browser signed in with, if it has not expired here."""
        if not isinstance(browser_id, str) or len(browser_id) < MIN_COOKIE_CHARS:
            return None
        entry = self._read().get(_lookup(browser_id))
        if not isinstance(entry, dict) or entry.get("expires_at", 0) <= self._clock():
            return None
        try:
            return _sealer(browser_id).decrypt(str(entry.get("sealed", "")).encode()).decode()
        except InvalidToken:
            return None

    def forget(self, browser_id: str | None) -> None:
        if not isinstance(browser_id, str) or not browser_id:
            return
        with self._lock:
            entries = self._read()
            if entries.pop(_lookup(browser_id), None) is not None:
                self._write(entries)
