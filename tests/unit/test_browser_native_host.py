"""The native messaging host as the browser runs it: a real subprocess speaking native-messaging framing."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from collector.browser import BrowserIntake, ensure_browser_secret
from collector.config import CollectorHome
from tests.conftest import eventually

ROOT = Path(__file__).resolve().parents[2]


def frame(message: object) -> bytes:
    body = json.dumps(message).encode()
    return struct.pack("=I", len(body)) + body


def tab(url: str, title: str = "A page", **fields: object) -> dict:
    return {"type": "tab", "url": url, "title": title, "incognito": False, **fields}


class Host:
    """`productimon-browser host` started the way a browser starts it: stdin and stdout are pipes."""

    def __init__(self, home: CollectorHome, browser: str = "chromium") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "collector.browser_cli", "host", "--browser", browser, "--home", str(home.root)]
            + ["chrome-extension://nejjgbanedekhnaccbfhfadjcblnhbkm/"],  # what Chromium passes
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )

    def send(self, *messages: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"".join(frame(m) for m in messages))
        self.proc.stdin.flush()

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close(self) -> tuple[int, str]:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(10)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read().decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def home(tmp_path) -> CollectorHome:
    return CollectorHome(tmp_path / "home").create()


@pytest.fixture
def host(home):
    running = Host(home)
    yield running
    running.kill()


class Wire:
    """A stand-in intake that records the exact lines the host sends, to see what leaves the host."""

    def __init__(self, home: CollectorHome) -> None:
        self.lines: list[dict] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        port = self._server.getsockname()[1]
        home.browser_intake_file.write_text(json.dumps({"host": "127.0.0.1", "port": port}))
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn:
                self.lines.append(json.loads(conn.makefile("rb").readline()))
                conn.sendall(b'{"ok": true}\n')

    def close(self) -> None:
        self._server.close()


def test_the_host_forwards_tabs_stripped_with_the_secret_and_never_a_private_one(home, host):
    wire = Wire(home)
    try:
        host.send(
            {"type": "hello", "version": "0.1.0"},
            tab("https://me:pw@bank.example/accounts/42?session=abc#balance", "Accounts"),
            tab("https://private.example/", incognito=True),
            {"type": "tab", "url": "https://no-flag.example/"},  # does not say it is not private: dropped
            {"type": "none"},
        )
        eventually(lambda: len(wire.lines) == 2, timeout_s=10)
        first, second = wire.lines
        assert first["url"] == "https://bank.example/"
        assert (first["title"], first["browser"], first["incognito"]) == ("Accounts", "chromium", False)
        assert first["secret"] == ensure_browser_secret(home)
        assert second["type"] == "none" and second["source"] == first["source"]
        code, _ = host.close()
        assert code == 0
        assert "private.example" not in json.dumps(wire.lines)
    finally:
        wire.close()


def test_without_a_collector_reports_are_dropped_with_one_line_and_the_host_keeps_running(home, host):
    host.send(*[tab(f"https://a.example/{i}") for i in range(5)])
    time.sleep(0.5)
    assert host.proc.poll() is None
    received = []
    with BrowserIntake(home, on_report=received.append):
        host.send(tab("https://b.example/after?x=1"))
        eventually(lambda: received, timeout_s=10)
        assert received[0].url == "https://b.example/"
        code, stderr = host.close()
    assert code == 0
    lines = stderr.splitlines()
    assert lines[0] == "productimon native host: the collector is not running; reports are dropped"
    assert lines[1:] == ["productimon native host: reporting to the collector"]


def test_a_stale_address_of_a_collector_that_died_is_survived(home, host):
    intake = BrowserIntake(home).start()
    address_text = home.browser_intake_file.read_text()
    intake.stop()
    home.browser_intake_file.write_text(address_text)  # as if the collector was killed
    host.send(tab("https://a.example/"), tab("https://a.example/again"))
    time.sleep(0.5)
    assert host.proc.poll() is None
    code, stderr = host.close()
    assert code == 0
    assert len(stderr.splitlines()) == 1 and "is away" in stderr


def test_a_message_that_is_not_json_or_too_large_is_skipped_and_the_next_one_arrives(home, host):
    received = []
    with BrowserIntake(home, on_report=received.append):
        garbage = b"{definitely not json"
        too_large = 2 * 1024 * 1024
        host.send_raw(struct.pack("=I", len(garbage)) + garbage)
        host.send_raw(struct.pack("=I", too_large) + b" " * too_large)
        host.send(tab("https://c.example/ok"))
        eventually(lambda: received, timeout_s=10)
        assert [r.url for r in received] == ["https://c.example/"]
        code, _ = host.close()
    assert code == 0


def test_a_stream_cut_inside_a_message_ends_the_host_with_an_error(home, host):
    host.send_raw(struct.pack("=I", 100) + b'{"type": "ta')
    code, stderr = host.close()
    assert code == 1
    assert "ended inside a message" in stderr


def test_the_browser_closing_the_pipe_ends_the_host_cleanly(host):
    code, stderr = host.close()
    assert (code, stderr) == (0, "")
