"""Connections to the warehouse: the embedded server locally, ClickHouse in production, one client."""

from __future__ import annotations

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from infra.settings import Settings


def connect(settings: Settings, *, with_database: bool = True, timeout_s: float = 120) -> Client:
    """A clickhouse-connect client for the configured warehouse, using its database unless told not to; a
    request that sends or receives nothing for `timeout_s` fails."""
    return clickhouse_connect.get_client(
        host=settings.warehouse_host,
        port=settings.warehouse_port,
        username=settings.warehouse_user,
        password=settings.warehouse_password,
        database=settings.warehouse_database if with_database else "",
        connect_timeout=10,
        send_receive_timeout=timeout_s,
        compress="lz4",
        autogenerate_session_id=False,
        # Through a Distributed table an insert is otherwise queued on the host and sent later: it would be
        # acknowledged before it is stored, and a retried batch would no longer meet its deduplication token.
        settings={"distributed_foreground_insert": 1} if settings.warehouse_cluster else None,
    )
