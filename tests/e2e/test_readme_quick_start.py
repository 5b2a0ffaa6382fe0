"""The README's quick start, run as written (issue 18, point 9): the commands are read out of README.md itself,
then `./dev up`, an account created in a real browser, `enroll`, `run` on a real X11 desktop, and the activity of
a window this test focuses found on the dashboard by signing in through the browser.

Only what cannot be used as-is changes: the stack runs on free ports (the README's fixed address would clash
with other runs), so `--server 127.0.0.1:7443` becomes this stack's ingest and public addresses, as the stack
prints them filled in. `~` is a fresh temporary HOME, so the README's CA path and the default data directory
are this run's own."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from collector.config import CollectorHome
from plumbing.settings import Settings
from testbed.collector_process import REPO, stop_collector
from testbed.desktop import missing_programs, virtual_desktop
from tests.conftest import stack_settings
from tests.e2e.test_dashboard_browser import CHROMIUM, new_page, settle, sign_in
from tests.e2e.test_stack_command import _port_closed

pytestmark = pytest.mark.e2e

README = REPO / "README.md"
SECTION = "## Quick start: your own data in five minutes"
# The steps as the README names them; the test follows them in this order.
STEPS = {
    1: "Start the stack",
    2: "Create an account",
    3: "Enroll this computer",
    4: "Run the collector",
    5: "Open the dashboard and sign in",
}
PASSWORD = "quick start, as written"
WINDOW_TITLE = "Productimon quick start"
# The window is focused this long before another one is: a minute on the dashboard once rounded (30 s would do).
FOCUSED_S = 35
# "your activity appears within a minute": from the moment the focused window's interval closed.
APPEARS_WITHIN_S = 60


@dataclass(frozen=True)
class QuickStart:
    up: str  # step 1
    create_one: str  # step 2: the dashboard's sign-up link, as quoted
    signup: str  # step 2, the terminal's way
    enroll: str  # step 3
    run: str  # step 4
    address: str  # --server of signup and enroll
    ca: str  # --ca of signup and enroll
    email: str  # --email of signup and enroll


def quick_start(text: str) -> QuickStart:
    """The quick start's commands, read from the README; a missing section, step or command fails by name."""
    found = re.search(rf"^{re.escape(SECTION)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert found, f"README.md has no section {SECTION!r}: this test runs the quick start's commands from it"
    items = re.findall(r"^(\d+)\. (.*?)(?=^\d+\. |\Z)", found[1], re.MULTILINE | re.DOTALL)
    steps = {int(number): " ".join(body.split()) for number, body in items}
    for number, name in STEPS.items():
        assert steps.get(number, "").startswith(name), (
            f"README.md's quick start has no step {number}. {name!r} (its steps: {steps}); update this test with it"
        )

    def command(number: int, pattern: str) -> str:
        spans = [span for span in re.findall(r"`([^`]+)`", steps[number]) if re.search(pattern, span)]
        assert spans, f"README.md's quick start step {number} ({STEPS[number]}) gives no command matching {pattern!r}"
        return spans[0]

    quoted = re.search(r'\("([^"]+)"', steps[2])
    assert quoted, "README.md's quick start step 2 no longer quotes the dashboard's sign-up link"
    signup = command(2, r"productimon-collector signup ")
    enroll = command(3, r"productimon-collector enroll ")

    def option(name: str) -> str:
        values = {re.search(rf"--{name} (\S+)", cmd)[1] for cmd in (signup, enroll) if f"--{name} " in cmd}
        assert len(values) == 1, f"README.md's signup and enroll commands do not give one --{name}: {values}"
        return values.pop()

    return QuickStart(
        up=command(1, r"^\./dev up"),
        create_one=quoted[1],
        signup=signup,
        enroll=enroll,
        run=command(4, r"productimon-collector run$"),
        address=option("server"),
        ca=option("ca"),
        email=option("email"),
    )


def filled_in(readme_command: str, quick: QuickStart, settings: Settings) -> str:
    """A README command with this stack's addresses in place of the README's (the stack runs on free ports)."""
    where = f"--server {quick.address}"
    assert readme_command.count(where) == 1, f"{readme_command!r} does not name the gateway with {where!r}"
    return readme_command.replace(
        where, f"--server {settings.gateway_address} --public-server {settings.gateway_public_address}"
    )


def in_a_terminal(command: str, env: dict[str, str], replies: list[tuple[str, str]], timeout_s: float = 90):
    """Run a shell command on a terminal of its own (a pty as its controlling terminal, where getpass asks),
    typing each reply once its prompt shows; returns the exit code and everything the terminal showed."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        ["setsid", "--ctty", "bash", "-c", command],
        cwd=REPO,
        env=env,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    shown, answered, waiting = b"", 0, list(replies)
    deadline = time.monotonic() + timeout_s
    # poll, not select: select refuses a descriptor numbered 1024 or more, which a long test session reaches.
    readable = select.poll()
    readable.register(controller, select.POLLIN)
    try:
        while True:
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"{command!r} did not finish within {timeout_s} s; it showed:\n{shown.decode()}")
            ready = readable.poll(200)
            if ready:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # EIO: every process holding the terminal is gone
                    chunk = b""
                if not chunk:
                    break
                shown += chunk
                if waiting and waiting[0][0].encode() in shown[answered:]:
                    prompt, reply = waiting.pop(0)
                    answered = shown.rindex(prompt.encode()) + len(prompt)
                    os.write(controller, reply.encode() + b"\n")
            elif proc.poll() is not None:
                break
        return proc.wait(30), shown.decode(errors="replace").replace("\r\n", "\n")
    finally:
        os.close(controller)


def printed_commands(started: str) -> list[str]:
    """The commands the stack printed under "Your own data, from this computer:", without their remarks."""
    block = started.split("Your own data, from this computer:\n", 1)
    assert len(block) == 2, f"the stack printed no commands for a newcomer:\n{started}"
    lines = block[1].split("\n\n", 1)[0].splitlines()
    return [line.strip().split("   (", 1)[0] for line in lines if line.strip()]


def shown_time(page: Page, app: str) -> str | None:
    """The time the overview shows for `app` after a reload, or None while it shows no row for it."""
    page.reload()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    settle(page)
    rows = page.get_by_test_id("stTable").get_by_role("row").filter(has_text=app)
    if rows.count() == 0:
        return None
    time_shown = re.search(r"\d+ h \d+ min|\d+ min", rows.first.inner_text())
    return time_shown[0] if time_shown else None


class Printed:
    """What a process prints, collected line by line as it comes, so that waiting for a line can time out."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.done = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._collect, args=(proc.stdout,), daemon=True)
        self._reader.start()

    def _collect(self, stream) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.done = True
            self._changed.notify_all()

    def until(self, marker: str, timeout_s: float) -> str:
        with self._changed:
            self._changed.wait_for(lambda: self.done or any(marker in line for line in self.lines), timeout_s)
            text = "".join(self.lines)
        assert marker in text, f"no {marker!r} within {timeout_s} s; it printed:\n{text}"
        return text

    def all(self, timeout_s: float = 30) -> str:
        self._reader.join(timeout_s)
        return "".join(self.lines)


def stop_stack(proc: subprocess.Popen, timeout_s: float = 120) -> int:
    """The stack's ordered stop (Ctrl-C), as a person stops it; killed only if that hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def _stop_collector(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        stop_collector(proc)


def test_the_readme_quick_start_as_written_shows_this_computers_activity_in_the_dashboard(tmp_path):
    missing = missing_programs()
    assert not missing, f"the quick start test needs {', '.join(missing)} (Debian packages in infra/apt-packages.txt)"
    quick = quick_start(README.read_text())
    # The README's address is the stack's default ingest address, and its CA path the default data directory's.
    defaults = Settings.model_fields
    assert quick.address == f"{defaults['gateway_host'].default}:{defaults['gateway_port'].default}", quick.address
    home = tmp_path / "home"
    home.mkdir()
    settings = stack_settings(home / ".local" / "share" / "productimon")
    assert Path(quick.ca.replace("~", str(home), 1)) == settings.pki_dir / "ca.crt", quick.ca
    # A fresh HOME, nothing of this machine's Productimon settings, and the stack's ports (only those) chosen free.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PRODUCTIMON_") and not k.startswith("XDG_")},
        "HOME": str(home),
    }
    ports = {
        "PRODUCTIMON_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "PRODUCTIMON_WAREHOUSE_PORT": str(settings.warehouse_port),
        "PRODUCTIMON_GATEWAY_PORT": str(settings.gateway_port),
        "PRODUCTIMON_GATEWAY_PUBLIC_PORT": str(settings.gateway_public_port),
        "PRODUCTIMON_DASHBOARD_PORT": str(settings.dashboard_port),
    }

    with ExitStack() as cleanup:
        # 1. Start the stack.
        stack = subprocess.Popen(
            ["bash", "-c", quick.up],
            cwd=REPO,
            env={**env, **ports},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a Ctrl-C at pytest's terminal reaches pytest only; the cleanup stops it in order
        )
        cleanup.callback(stop_stack, stack)
        printed = Printed(stack)
        desktop = cleanup.enter_context(virtual_desktop())  # meanwhile
        started = printed.until("Running.", 240)
        assert f"starting Productimon (data in {settings.data_dir})" in started, started
        url = re.search(r"^Open the dashboard: (https://\S+)$", started, re.MULTILINE)
        assert url, started
        url = url[1]
        # It printed the README's commands with this stack's addresses filled in.
        expected = [filled_in(c, quick, settings) for c in (quick.signup, quick.enroll)] + [quick.run]
        assert printed_commands(started) == [c.replace("~/", f"{home}/") for c in expected], started

        # 2. Create an account in the dashboard; signed in at once.
        playwright = cleanup.enter_context(sync_playwright())
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        cleanup.callback(browser.close)
        page = new_page(browser)
        page.goto(url)
        page.get_by_text(quick.create_one, exact=True).click()
        form = page.get_by_test_id("stForm").filter(has=page.get_by_role("button", name="Create account"))
        form.get_by_role("textbox", name="Email").fill(quick.email)
        form.get_by_role("textbox", name="Password (at least 10 characters)").fill(PASSWORD)
        form.get_by_role("textbox", name="The same password again").fill(PASSWORD)
        form.get_by_role("button", name="Create account").click()
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        expect(page.get_by_text(f"Welcome, {quick.email}")).to_be_visible()
        page.context.close()
        # ...or in a terminal, the README's signup command (for someone else: this account exists now).
        someone_else = "someone-else@example.org"
        signup = filled_in(quick.signup, quick, settings).replace(f"--email {quick.email}", f"--email {someone_else}")
        code, shown = in_a_terminal(
            signup, env, [("Choose a password: ", PASSWORD), ("The same password again: ", PASSWORD)]
        )
        assert code == 0 and f"account {someone_else} created" in shown, shown

        # 3. Enroll this computer, the password typed when asked.
        code, shown = in_a_terminal(filled_in(quick.enroll, quick, settings), env, [("Password: ", PASSWORD)])
        assert code == 0 and "enrolled" in shown, shown

        # 4. Run the collector in the desktop session, with a window in front.
        window = desktop.open_xterm(WINDOW_TITLE)
        desktop.focus(window)
        collector_home = CollectorHome(home / ".local" / "share" / "productimon-collector")
        with (tmp_path / "collector.log").open("wb") as log:
            collector = subprocess.Popen(
                ["bash", "-c", quick.run],
                cwd=REPO,
                env={**env, "DISPLAY": desktop.display},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        cleanup.callback(_stop_collector, collector)
        deadline = time.monotonic() + 30
        while not collector_home.status_file.exists():
            assert collector.poll() is None, (tmp_path / "collector.log").read_text()
            assert time.monotonic() < deadline, "the collector did not start within 30 s"
            time.sleep(0.1)
        running_since = time.monotonic()
        desktop.type("as the README says")

        # 5. Open the dashboard and sign in (while the window is in front), then find its time there.
        page = new_page(browser)
        sign_in(page, url, quick.email, PASSWORD)
        time.sleep(max(0.0, running_since + FOCUSED_S - time.monotonic()))
        desktop.focus(desktop.open_xcalc())  # the terminal's interval closes; the collector delivers it
        switched = time.monotonic()
        shown_for_xterm = None
        while time.monotonic() < switched + APPEARS_WITHIN_S:
            shown_for_xterm = shown_time(page, "xterm")
            if shown_for_xterm not in (None, "0 min"):
                break
            time.sleep(1)
        appeared_after = time.monotonic() - switched
        assert shown_for_xterm not in (None, "0 min"), (
            f"after {appeared_after:.0f} s the dashboard shows {shown_for_xterm!r} for xterm; the collector logged:\n"
            + (tmp_path / "collector.log").read_text()[-3000:]
        )
        print(f"the dashboard showed {shown_for_xterm} of xterm {appeared_after:.1f} s after its interval closed")

        # Everything stops: the collector (delivering what it holds), then the stack in its order.
        assert stop_collector(collector) == 0
        assert stop_stack(stack) == 0, printed.all()
        assert "stopping: warehouse" in printed.all(), printed.all()
        for port in (settings.gateway_port, settings.gateway_public_port, settings.dashboard_port):
            assert _port_closed(port)
