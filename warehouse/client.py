"""Connections to the warehouse: the embedded server locally, ClickHouse in production, one client."""

from __future__ import annotations

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from plumbing.settings import Settings


def connect(
    settings: Settings, *, with_database: bool = True, timeout_s: float = 120, deletion: bool = False
) -> Client:
    """A clickhouse-connect client for the configured warehouse, using its database unless told not to; a
    request that sends or receives nothing for `timeout_s` fails. `deletion`: with the deletion login
    (warehouse/roles.py), where one is configured."""
    user, password = settings.warehouse_user, settings.warehouse_password
    if deletion and settings.warehouse_deletion_user:
        user, password = settings.warehouse_deletion_user, settings.warehouse_deletion_password
    return clickhouse_connect.get_client(
        **transport_options(settings),
        host=settings.warehouse_host,
        port=settings.warehouse_port,
        username=user,
        password=password,
        database=settings.warehouse_database if with_database else "",
        connect_timeout=10,
        send_receive_timeout=timeout_s,
        compress="lz4",
        autogenerate_session_id=False,
        # Through a Distributed table an insert is otherwise queued on the host and sent later: it would be
        # acknowledged before it is stored, and a retried batch would no longer meet its deduplication token.
        settings={"distributed_foreground_insert": 1} if settings.warehouse_cluster else None,
    )


def transport_options(settings: Settings) -> dict[str, object]:
    """HTTPS, the server's certificate checked against warehouse_ca_file and the name warehouse_host, when
    warehouse_secure is set (docs/transport-security.md); plain HTTP (the embedded server, on loopback) when not."""
    if not settings.warehouse_secure:
        return {"interface": "http", "secure": False}
    return {"interface": "https", "secure": True, "verify": True, "ca_cert": settings.warehouse_ca_file}


# A mutation (ALTER ... DELETE/UPDATE) returns once it is done on every replica, not when it is queued.
MUTATIONS_SYNC = {"mutations_sync": 2}
