"""`productimon-stack --demo`, the README's first command: everything up, demo data in, clean ordered stop."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

import pytest

from infra.demo import demo_account
from infra.stack import Stack
from tests.conftest import eventually, stack_settings
from warehouse.client import connect

pytestmark = pytest.mark.e2e


STARTED: list[subprocess.Popen] = []


def _start(env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from infra.stack import main; sys.exit(main())", "--demo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    STARTED.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _nothing_left_running():
    """Whatever a failed assertion left running is stopped in order (SIGINT), then killed."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def _read_until(proc: subprocess.Popen, marker: str, timeout_s: float = 240) -> str:
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    proc.kill()
    raise AssertionError(f"no {marker!r} from productimon-stack; it printed:\n{''.join(seen)}")


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=180)
    return rest


def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_stack_with_demo_data_serves_it_and_stops_in_order(tmp_path):
    settings = stack_settings(tmp_path / "data")
    env = {**os.environ, **{k: v for k, v in Stack(settings).env.items() if k.startswith("PRODUCTIMON_")}}
    proc = _start(env)
    started = _read_until(proc, "Running.")
    sent = sum(int(n) for n in re.findall(r"demo: sent (\d+) intervals", started))
    assert sent > 3000, started
    for service in ("broker", "warehouse", "gateway", "worker", "dashboard"):
        assert re.search(rf"^  {service}\s+\S", started, re.MULTILINE), f"{service} address not printed"
    # The dashboard is served over HTTPS, and the demo account signs in with its email and password.
    assert re.search(r"^  dashboard\s+https://", started, re.MULTILINE), started
    assert re.search(r"sign in as demo@productimon\.local with the password \S+", started), started

    stack = Stack(settings)
    demo_user = demo_account(settings).user_id
    client = connect(stack.settings)
    count = "SELECT count() FROM intervals FINAL WHERE user_id = {u:String}"
    assert eventually(lambda: client.query(count, parameters={"u": demo_user}).result_rows[0][0] == sent, 120)
    devices = client.query(
        "SELECT uniqExact(device_id) FROM intervals WHERE user_id = {u:String}", parameters={"u": demo_user}
    )
    assert devices.result_rows[0][0] == 2
    stack_ca = ssl.create_default_context(cafile=str(settings.pki_dir / "ca.crt"))
    health = urllib.request.urlopen(
        f"https://127.0.0.1:{settings.dashboard_port}/_stcore/health", timeout=10, context=stack_ca
    )
    assert health.read() == b"ok"
    client.close()

    stopped = _stop(proc)
    assert proc.returncode == 0, stopped
    order = [line.split(": ", 1)[1] for line in stopped.splitlines() if line.startswith("stopping: ")]
    assert order == ["gateway", "workers", "dashboard", "broker", "warehouse"], stopped
    for port in (settings.warehouse_port, settings.gateway_port, settings.dashboard_port):
        assert _port_closed(port)
    assert _port_closed(int(settings.kafka_bootstrap.rsplit(":", 1)[1]))

    # A second start on the same data directory keeps the stored data and does not send the demo twice.
    proc = _start(env)
    restarted = _read_until(proc, "Running.")
    assert "was loaded before" in restarted
    client = connect(stack.settings)
    assert client.query(count, parameters={"u": demo_user}).result_rows[0][0] == sent

    # Started again over the running one: refused in one line, before anything starts; so is a stack of another
    # data directory on the same ports. The running stack is untouched.
    again = _start(env)
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 1 and "already running" in out and str(settings.data_dir) in out, out
    assert len(out.strip().splitlines()) == 1 and "Traceback" not in out, out
    other = {**env, "PRODUCTIMON_DATA_DIR": str(tmp_path / "other")}
    clash = _start(other)
    out, _ = clash.communicate(timeout=120)
    assert clash.returncode == 1 and f"port {settings.kafka_bootstrap.rsplit(':', 1)[1]}" in out, out
    assert "PRODUCTIMON_KAFKA_BOOTSTRAP" in out and len(out.strip().splitlines()) == 1, out
    assert client.query(count, parameters={"u": demo_user}).result_rows[0][0] == sent
    client.close()
    assert _stop(proc) is not None and proc.returncode == 0
