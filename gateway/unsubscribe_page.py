"""The unsubscribe page every notice e-mail links to: no sign-in, the link's signed token says whose notice and
which (gateway/tokens.py). Served by the gateway over HTTPS with its own certificate while e-mail is configured.

- POST to the link (RFC 8058 one-click: a mail program's "unsubscribe" button sends `List-Unsubscribe=One-Click`,
  and the page's own button sends the same) switches that notice off at once: the goal's e-mail notices, or the
  weekly summary. Done twice, or for a goal or account that is gone, it says there is nothing left to stop.
- GET shows what the link would stop and one button; it changes nothing, because mail scanners open links on
  their own.
- A damaged or forged link gets 400 and one line saying so; anything else 404.
"""

from __future__ import annotations

import html
import logging
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from clickhouse_connect.driver.client import Client

from gateway.tokens import TokenError, verify_unsubscribe_token
from warehouse import notices

log = logging.getLogger(__name__)

PATH = "/unsubscribe"
MAX_BODY = 4096
REQUEST_TIMEOUT_S = 10


def _page(title: str, text: str, button: bool = False) -> bytes:
    form = '<form method="post"><button name="List-Unsubscribe" value="One-Click">Unsubscribe</button></form>'
    return (
        "<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content='width=device-width'>"
        f"<title>{html.escape(title)}</title><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>"
        f"{form if button else ''}</html>"
    ).encode()


class UnsubscribePage:
    """The page's HTTPS server, on a thread of its own; `warehouse` gives the connection it writes the switch with
    (one request at a time holds it)."""

    def __init__(
        self,
        host: str,
        port: int,
        cert_file: str,
        key_file: str,
        public_key: bytes,
        warehouse: Callable[[], Client],
    ) -> None:
        self.public_key = public_key
        self._warehouse = warehouse
        self._lock = threading.Lock()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert_file, key_file)
        page = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "productimon"
            sys_version = ""
            timeout = REQUEST_TIMEOUT_S

            def do_GET(self) -> None:  # noqa: N802
                page.answer(self, changes=False)

            def do_POST(self) -> None:  # noqa: N802
                length = self.headers.get("Content-Length", "0")
                if not length.isdigit() or int(length) > MAX_BODY:
                    self.send_error(413, "the request body is too large for an unsubscribe")
                    return
                self.rfile.read(int(length))  # List-Unsubscribe=One-Click; the link's token is what counts
                page.answer(self, changes=True)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # the link's token is in the path: never logged

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        # The TLS handshake happens on the request's own thread, under its timeout: a client that connects and says
        # nothing holds one thread for REQUEST_TIMEOUT_S, never the page.
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True, do_handshake_on_connect=False)
        self._thread = threading.Thread(target=self.server.serve_forever, name="unsubscribe-page", daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def answer(self, request: BaseHTTPRequestHandler, changes: bool) -> None:
        url = urlsplit(request.path)
        if url.path != PATH:
            self._send(request, 404, _page("Not found", "There is nothing here."))
            return
        token = (parse_qs(url.query).get("t") or [""])[0]
        try:
            user_id, stops = verify_unsubscribe_token(self.public_key, token)
        except TokenError as exc:
            self._send(request, 400, _page("This unsubscribe link does not work", f"{exc}."))
            return
        try:
            with self._lock:
                client = self._warehouse()
                if changes:
                    stopped = notices.unsubscribe(client, user_id, stops)
                else:
                    stopped = notices.unsubscribe_target(client, user_id, stops)
        except Exception as exc:
            log.warning("an unsubscribe could not be saved: %s", exc)
            self._send(request, 503, _page("Try again later", "The unsubscribe could not be saved just now."))
            return
        if stopped is None:
            self._send(request, 200, _page("Nothing to unsubscribe", "These e-mails are already off."))
        elif changes:
            log.info("account %s unsubscribed from %s by an e-mail's link", user_id, stops)
            self._send(request, 200, _page("Unsubscribed", f"You will get no more {stopped}."))
        else:
            self._send(request, 200, _page("Unsubscribe?", f"Stop {stopped}?", button=True))

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, code: int, body: bytes) -> None:
        request.send_response(code)
        request.send_header("Content-Type", "text/html; charset=utf-8")
        request.send_header("Content-Length", str(len(body)))
        request.send_header("Cache-Control", "no-store")
        request.send_header("Referrer-Policy", "no-referrer")
        request.send_header("Content-Security-Policy", "default-src 'none'; form-action 'self'")
        request.end_headers()
        request.wfile.write(body)
