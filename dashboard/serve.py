"""The dashboard's server: Streamlit's own, serving dashboard/app.py, with headers that keep other sites from
framing its pages (clickjacking: a hidden frame over a "Revoke" or "Delete" button), and the opaque cookie a
sign-in that outlasts a page is kept under (dashboard/sessions.py).

`streamlit run dashboard/serve.py` finds `app` below and serves it with uvicorn, taking the same --server.*
flags as for app.py itself. Every response passes through `FrameGuard`: pages, static assets, the health
check and the websocket's handshake alike.
"""

from __future__ import annotations

import hashlib
import secrets
from base64 import b64encode
from html.parser import HTMLParser
from http.cookies import CookieError, SimpleCookie
from pathlib import Path

import streamlit
import streamlit as st
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dashboard.sessions import COOKIE, COOKIE_MAX_AGE_S, MIN_COOKIE_CHARS

# Streamlit's page: its one inline script is allowed by its hash, nothing else inline runs.
STREAMLIT_INDEX = Path(streamlit.__file__).parent / "static" / "index.html"


class _InlineScripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self._inline = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._inline = tag == "script" and "src" not in dict(attrs)
        if self._inline:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._inline = False

    def handle_data(self, data: str) -> None:
        if self._inline:
            self.scripts[-1] += data


def inline_script_hashes(page: str) -> list[str]:
    """CSP source expressions for each inline <script> of `page`, so exactly those run and no injected one."""
    parser = _InlineScripts()
    parser.feed(page)
    return [f"'sha256-{b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in parser.scripts]


def content_security_policy(script_hashes: list[str]) -> str:
    """What the dashboard's pages may load: only their own origin's scripts, fonts, images and websocket.

    Styles may be inline: Streamlit's components write their CSS into <style> elements as they render.
    WebAssembly may be compiled (Streamlit's protobuf decoder is one), JavaScript may not be eval'ed."""
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'wasm-unsafe-eval' {' '.join(script_hashes)}".strip(),
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def security_headers(policy: str) -> list[tuple[bytes, bytes]]:
    """The headers every response carries: no framing by anyone, in both the old and the CSP spelling; and no
    Referer, which would hand a share link's token to whatever site a shared page links to."""
    return [
        (b"x-frame-options", b"DENY"),
        (b"content-security-policy", policy.encode()),
        (b"referrer-policy", b"no-referrer"),
    ]


class FrameGuard:
    """ASGI middleware adding `headers` to every HTTP response and websocket handshake."""

    def __init__(self, app: ASGIApp, headers: list[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                ours = {name for name, _ in self.headers}
                kept = [(n, v) for n, v in message.get("headers", []) if n.lower() not in ours]
                message = {**message, "headers": kept + self.headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def browser_cookie(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The browser's `productimon_browser` cookie among a request's headers, if it sent one."""
    jar = SimpleCookie()
    for name, value in headers:
        if name.lower() == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except CookieError:
                continue
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None and len(morsel.value) >= MIN_COOKIE_CHARS else None


def new_browser_cookie() -> bytes:
    """A Set-Cookie value naming this browser (dashboard/sessions.py): random, never readable by a script, sent
    only over HTTPS and only by the dashboard's own pages."""
    value = secrets.token_urlsafe(32)
    return f"{COOKIE}={value}; Max-Age={COOKIE_MAX_AGE_S}; Path=/; HttpOnly; Secure; SameSite=Strict".encode()


class BrowserCookie:
    """ASGI middleware giving every browser without one its opaque `productimon_browser` cookie."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or browser_cookie(scope.get("headers", [])) is not None:
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", new_browser_cookie())]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


HEADERS = security_headers(content_security_policy(inline_script_hashes(STREAMLIT_INDEX.read_text())))
app = st.App("app.py", middleware=[Middleware(FrameGuard, headers=HEADERS), Middleware(BrowserCookie)])
