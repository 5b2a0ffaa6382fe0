"""Fixtures that start the real services on free ports in a temporary directory, and stop them after."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from collector.transport import DeviceCredentials
from gateway.pki import DeviceIdentity, new_device_id, new_device_key_and_csr, sign_device_csr
from infra.processes import free_port
from infra.settings import Settings
from infra.stack import Stack


def stack_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for a private stack: its own directory and free ports, nothing shared with other runs."""
    values: dict[str, object] = {
        "data_dir": data_dir,
        "kafka_bootstrap": f"127.0.0.1:{free_port()}",
        "warehouse_port": free_port(),
        "gateway_port": free_port(),
        "dashboard_port": free_port(),
        "worker_id": f"test-writer-{uuid.uuid4().hex[:8]}",
        "topic_partitions": 4,
        "worker_batch_seconds": 0.2,
    }
    values.update(overrides)
    return Settings(**values)


def _quiet(message: str, end: str = "\n") -> None:
    pass


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[Stack]:
    """Broker, warehouse server, gateway and one worker, for the whole session."""
    running = Stack(stack_settings(tmp_path_factory.mktemp("stack")), _quiet)
    try:
        running.up(dashboard=False)
        yield running
    finally:
        running.down()


@pytest.fixture(scope="session")
def warehouse_client(stack):
    from warehouse.client import connect

    client = connect(stack.settings)
    yield client
    client.close()


def enroll_device(pki_dir: Path, user_id: str | None = None) -> tuple[DeviceIdentity, DeviceCredentials]:
    """Make a device for a user, signed by the CA in `pki_dir`: key and CSR made 'on the device'."""
    identity = DeviceIdentity(user_id or f"user-{uuid.uuid4().hex[:12]}", new_device_id())
    key_pem, csr_pem = new_device_key_and_csr("test-device")
    ca_pem = (pki_dir / "ca.crt").read_bytes()
    cert_pem = sign_device_csr(ca_pem, (pki_dir / "ca.key").read_bytes(), csr_pem, identity)
    return identity, DeviceCredentials(ca_pem, cert_pem, key_pem)


@pytest.fixture
def enroll(stack) -> Callable[..., tuple[DeviceIdentity, DeviceCredentials]]:
    """Make a device for a (new, unless named) user of the session's stack."""
    return lambda user_id=None: enroll_device(stack.settings.pki_dir, user_id)


def eventually(check: Callable[[], object], timeout_s: float = 60.0, interval_s: float = 0.25):
    """Retry `check` until it returns a truthy value without raising; re-raise its last failure."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
            if result:
                return result
            failure: BaseException | None = AssertionError(f"still {result!r} after {timeout_s}s")
        except AssertionError as exc:
            failure = exc
        if time.monotonic() > deadline:
            raise failure
        time.sleep(interval_s)
