"""Driving the real `productimon-collector` command in tests and benchmarks: enroll it against a running
stack, start `run` as a child process, wait for its spool to drain."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from collector.config import CollectorHome
from infra.devices import new_account
from plumbing.settings import Settings

REPO = Path(__file__).resolve().parent.parent


# What only the server needs, by top-level module: the collector imports none of them (pyproject.toml's import
# contracts; tests/unit/test_architecture.py and tests/integration/test_collector_distribution.py).
SERVER_MODULES = frozenset({
    "gateway", "stream_jobs", "warehouse", "dashboard", "infra", "aiokafka", "faust", "mode", "clickhouse_connect",
    "chdb", "streamlit", "pandas", "pyarrow", "pydantic", "pydantic_settings", "argon2", "jwt", "tldextract",
    "prometheus_client", "grpc_health", "grpc_reflection",
})  # fmt: skip


def without_checkout(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (else this process's) without PYTHONPATH: a collector distribution's python sees nothing of the
    checkout."""
    return {k: v for k, v in (os.environ if env is None else env).items() if k != "PYTHONPATH"}


def modules_after(python: str, statement: str, cwd: Path, env: dict[str, str] | None = None) -> list[str]:
    """Every module `python` holds after running `statement`."""
    return subprocess.run(
        [python, "-c", f"import sys\n{statement}\nprint(*sys.modules)"],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()


def _launch(
    home: CollectorHome, python: str | None, env: dict[str, str] | None
) -> tuple[list[str], Path, dict[str, str] | None]:
    """The command line, working directory and environment of `productimon-collector`: this checkout's by
    default, or the one installed for `python` (the collector distribution), run from its home and without
    PYTHONPATH, so that no source of this checkout is on its path."""
    if python is None:
        return [sys.executable, "-m", "collector", "--home", str(home.root)], REPO, env
    return [python, "-m", "collector", "--home", str(home.root)], home.root, without_checkout(env)


def run_collector(
    home: CollectorHome, *args: str, env: dict[str, str] | None = None, stdin: str = "", python: str | None = None
):
    """Run one collector command to completion; returns the CompletedProcess, whatever its exit code."""
    command, cwd, env = _launch(home, python, env)
    return subprocess.run([*command, *args], input=stdin, capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def collector_command(
    home: CollectorHome, *args: str, env: dict[str, str] | None = None, stdin: str = "", python: str | None = None
) -> str:
    """Run one collector command to completion; returns its output, raises with its stderr on failure."""
    done = run_collector(home, *args, env=env, stdin=stdin, python=python)
    if done.returncode != 0:
        raise RuntimeError(f"productimon-collector {args[0]} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def enroll_args(settings: Settings, *more: str) -> list[str]:
    """`enroll` against this stack's gateway, trusting its CA."""
    return [
        "enroll",
        "--server",
        settings.gateway_address,
        "--public-server",
        settings.gateway_public_address,
        "--ca",
        str(settings.pki_dir / "ca.crt"),
        *more,
    ]


class Enrolled(NamedTuple):
    home: CollectorHome
    user_id: str
    email: str
    password: str


def enrolled_home(
    settings: Settings, root: Path, config: str = "", device_name: str = "workstation", python: str | None = None
) -> Enrolled:
    """A collector home enrolled (through the CLI, with email and password) for a new account."""
    home = CollectorHome(root).create()
    home.config_file.write_text(config)
    user_id, email, password = new_account(settings)
    collector_command(
        home,
        *enroll_args(settings, "--email", email, "--device-name", device_name, "--password-stdin"),
        stdin=password + "\n",
        python=python,
    )
    return Enrolled(home, user_id, email, password)


def start_collector(home: CollectorHome, env: dict[str, str], log: Path, python: str | None = None) -> subprocess.Popen:
    """`productimon-collector run` as a child; returns once it is sampling (its first status report)."""
    home.status_file.unlink(missing_ok=True)
    command, cwd, env = _launch(home, python, env)
    process = subprocess.Popen(
        [*command, "run"],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )
    deadline = time.monotonic() + 30
    while not home.status_file.exists():
        if process.poll() is not None:
            raise RuntimeError(f"the collector exited with {process.returncode}; see {log}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the collector did not start within 30 s; see {log}")
        time.sleep(0.05)
    return process


def stop_collector(process: subprocess.Popen, timeout: float = 45) -> int:
    process.terminate()
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def spool_depth(home: CollectorHome) -> int:
    """Intervals in the spool file right now (read beside the running collector, as SQLite WAL allows)."""
    with closing(sqlite3.connect(f"file:{home.spool_file}?mode=ro", uri=True, timeout=5)) as db:
        return db.execute("SELECT count(*) FROM interval").fetchone()[0]


def status(home: CollectorHome) -> dict:
    return json.loads(collector_command(home, "status", "--json"))


def delivered_intervals(warehouse_client, user_id: str, until: float, timeout_s: float = 60):
    """The account's intervals of the last hour, in order, once the warehouse holds them up to `until` (a Unix
    time): what a collector stopped after `until` delivered through the gateway and worker."""
    deadline = time.monotonic() + timeout_s
    while (frame := _intervals_up_to(warehouse_client, user_id, until)) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"the warehouse holds no interval up to {_clock(until)} after {timeout_s:.0f} s")
        time.sleep(0.25)
    return frame


def in_use_until_seen(touch, warehouse_client, user_id: str, changed_at: float, timeout_s: float = 60) -> None:
    """Input (`touch()`) every half second until the warehouse holds an interval that ends at or after
    `changed_at`: the running collector has seen the window change made then, and closed the interval before it.

    A collector samples every few tenths of a second, but on a loaded machine it can see a new window in front later
    than the test does; input meanwhile keeps it from counting the time as idle, so whatever the load, the next
    input is known to come after the change was recorded."""
    deadline = time.monotonic() + timeout_s
    while True:
        touch()
        if _intervals_up_to(warehouse_client, user_id, changed_at) is not None:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the collector recorded no change made at {_clock(changed_at)} in {timeout_s:.0f} s")
        time.sleep(0.5)


def _intervals_up_to(warehouse_client, user_id: str, until: float):
    from warehouse.queries import export_intervals

    start, end = datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(minutes=5)
    frame = export_intervals(warehouse_client, user_id, start, end)
    if frame.empty or frame["end"].max() < datetime.fromtimestamp(until, UTC):
        return None
    return frame.sort_values("start").reset_index(drop=True)


def _clock(moment: float) -> str:
    return f"{datetime.fromtimestamp(moment, UTC):%H:%M:%S}"
