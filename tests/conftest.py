"""Fixtures that start the real services on free ports in a temporary directory, and stop them after."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from collector.transport import DeviceCredentials
from infra.devices import new_user_device
from infra.processes import free_port
from infra.stack import Stack
from plumbing.settings import Settings
from schemas.device_keys import DeviceIdentity


def stack_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for a private stack: its own directory and free ports, nothing shared with other runs."""
    values: dict[str, object] = {
        "data_dir": data_dir,
        "kafka_bootstrap": f"127.0.0.1:{free_port()}",
        "warehouse_port": free_port(),
        "gateway_port": free_port(),
        "gateway_public_port": free_port(),
        "dashboard_port": free_port(),
        "unsubscribe_port": free_port(),
        "worker_id": f"test-writer-{uuid.uuid4().hex[:8]}",
        "topic_partitions": 4,
        "worker_batch_seconds": 0.2,
        # Workers read an account's privacy choices again this often: a test of a change waits this long.
        "privacy_reload_seconds": 2.0,
    }
    values.update(overrides)
    return Settings(**values)


@contextmanager
def lone_warehouse(data_dir: Path) -> Iterator[Client]:
    """A warehouse server of its own, migrated, and a client of it; stopped afterwards."""
    with lone_warehouse_settings(data_dir) as settings:
        from warehouse.client import connect

        client = connect(settings)
        try:
            yield client
        finally:
            client.close()


@contextmanager
def lone_warehouse_settings(data_dir: Path) -> Iterator[Settings]:
    """A warehouse server of its own, migrated, and the settings that reach it; stopped afterwards."""
    from warehouse.client import connect
    from warehouse.migrate import apply_migrations
    from warehouse.server import WarehouseServer

    settings = stack_settings(data_dir, warehouse_password="pw")
    server = WarehouseServer(
        settings.warehouse_dir, port=settings.warehouse_port, user=settings.warehouse_user, password="pw"
    )
    server.start()
    try:
        apply_migrations(connect(settings, with_database=False), settings.warehouse_database)
        yield settings
    finally:
        server.shutdown()


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


@contextmanager
def private_stack_running(data_dir: Path, **overrides: object) -> Iterator[Stack]:
    """A stack of one's own (broker, warehouse, gateway, one worker), for tests that break things."""
    stack = Stack(stack_settings(data_dir, **overrides), _quiet)
    try:
        stack.up(dashboard=False)
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def warehouse_client(stack):
    from warehouse.client import connect

    client = connect(stack.settings)
    yield client
    client.close()


@pytest.fixture
def enroll(stack) -> Callable[..., tuple[DeviceIdentity, DeviceCredentials]]:
    """Sign up a new user on the session's stack and enroll a device for them, through the gateway."""
    return lambda: new_user_device(stack.settings)


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


def store_recorded(client: Client, rows: list[dict], enrolled: Iterable[tuple[str, str]] = ()) -> None:
    """Intervals (each with its user_id and received_at) stored and rolled up as the worker stores them, and the
    (user_id, device_id) pairs of `enrolled` recorded as enrolled devices, as the gateway copies them."""
    from datetime import UTC, datetime

    from stream_jobs.rows import interval_columns
    from warehouse.rollups import rebuild_touched
    from warehouse.writes import NO_DELETIONS, store_intervals

    store_intervals(client, NO_DELETIONS, interval_columns(rows))
    rebuild_touched(client, rows)
    devices = [[user, device, device, "Linux", "6.1", False, datetime.now(UTC)] for user, device in enrolled]
    if devices:
        columns = ["user_id", "device_id", "name", "os", "os_version", "revoked", "updated_at"]
        client.insert("devices", devices, column_names=columns)
