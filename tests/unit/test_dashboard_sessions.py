"""Sign-ins kept for a browser's next pages (dashboard/sessions.py, dashboard/serve.py)."""

from __future__ import annotations

import stat

from dashboard.serve import browser_cookie, new_browser_cookie
from dashboard.sessions import SessionBook

BROWSER = "b" * 43
TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl"


def test_a_kept_sign_in_is_found_by_its_browser_only_and_the_file_alone_opens_nothing(tmp_path):
    now = [1000.0]
    book = SessionBook(tmp_path / "dashboard" / "sessions.json", clock=lambda: now[0])
    assert book.remember(BROWSER, TOKEN, expires_at=2000)
    assert book.recall(BROWSER) == TOKEN
    assert book.recall("c" * 43) is None and book.recall(None) is None
    kept = book.path.read_text()
    assert TOKEN not in kept and "eyJ" not in kept and BROWSER not in kept
    assert stat.S_IMODE(book.path.stat().st_mode) & 0o077 == 0
    # A restarted dashboard reads the same file.
    assert SessionBook(book.path, clock=lambda: now[0]).recall(BROWSER) == TOKEN
    now[0] = 2000.0  # the token's expiry: not recalled, and dropped at the next write
    assert book.recall(BROWSER) is None
    book.remember("d" * 43, TOKEN, expires_at=5000)
    assert len(book.path.read_text().split("sealed")) == 2


def test_signing_out_forgets_and_a_short_or_missing_cookie_keeps_nothing(tmp_path):
    book = SessionBook(tmp_path / "sessions.json")
    assert book.remember(BROWSER, TOKEN, expires_at=2**40)
    book.forget(BROWSER)
    assert book.recall(BROWSER) is None
    assert not book.remember("short", TOKEN, expires_at=2**40) and not book.remember(None, TOKEN, expires_at=2**40)


def test_the_cookie_is_random_http_only_secure_and_strict_and_read_back_from_a_request():
    first, second = new_browser_cookie().decode(), new_browser_cookie().decode()
    assert first != second
    for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert flag in first.split("; ")
    value = first.split(";", 1)[0].split("=", 1)[1]
    assert browser_cookie([(b"cookie", f"other=1; productimon_browser={value}".encode())]) == value
    assert browser_cookie([(b"cookie", b"productimon_browser=short")]) is None
    assert browser_cookie([]) is None and browser_cookie([(b"cookie", b"\x00garbage;;=")]) is None
