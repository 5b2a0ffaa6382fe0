"""Child processes of the local stack: started with their own log file, awaited until ready, stopped in order."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from plumbing.files import PRIVATE_UMASK, make_private_dir


class ProcessFailed(Exception):
    """A service exited or did not become ready; the message names it and points at its log."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    """Whether a listener could bind host:port now (nobody listens there)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_port(host: str, port: int, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ProcessFailed(f"{what} did not open {host}:{port} within {timeout_s:.0f}s")


class ManagedProcess:
    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        make_private_dir(log_dir)

    def start(self) -> ManagedProcess:
        # A log holds what the service saw (addresses, names, errors about records): 0600 whoever starts it.
        self._log = os.fdopen(os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
        self._log_start = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            # Own process group: Ctrl-C in the terminal reaches the runner, which stops children in order.
            start_new_session=True,
            # Owner-only files even when the runner is a library in a process that kept its umask (tests), and
            # for the children that cannot set one themselves (the broker binary, streamlit).
            umask=PRIVATE_UMASK,
        )
        return self

    def resident_mb(self) -> float:
        """The process's resident memory in MiB (0 when it is not running)."""
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except (AttributeError, OSError):
            return 0.0
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        with self.log_path.open("rb") as f:
            f.seek(self._log_start)
            return f.read().decode(errors="replace")

    def wait_for_output(self, pattern: str, timeout_s: float) -> re.Match:
        """Block until the process has logged a line matching `pattern`; fail if it exits first."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = regex.search(self.output())
            if match:
                return match
            if not self.running:
                raise ProcessFailed(f"{self.name} exited with code {self.proc.returncode}; see {self.log_path}")
            time.sleep(0.05)
        raise ProcessFailed(f"{self.name} was not ready within {timeout_s:.0f}s; see {self.log_path}")

    def send_signal(self, sig: int) -> None:
        if self.running:
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout_s: float = 20.0, sig: int = signal.SIGTERM) -> int | None:
        """Ask the process to stop, wait, and kill it if it does not; returns its exit code."""
        if self.proc is None:
            return None
        if self.running:
            self.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.send_signal(signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, for tests of crash safety."""
        if self.running:
            self.send_signal(signal.SIGKILL)
            self.proc.wait(5)
