"""The embedded warehouse server: the one process that owns the chDB data directory, answering the part of
ClickHouse's HTTP interface that clickhouse-connect speaks, so every other process uses the warehouse over HTTP."""

# This docstring is also the command's --help description.

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from plumbing.cli import UserFacingError, command
from plumbing.settings import load_settings
from warehouse.server.http import WarehouseServer
from warehouse.server.logins import read_logins

log = logging.getLogger(__package__)  # the whole server logs as one


@command("productimon-warehouse")
def main() -> int:
    parser = argparse.ArgumentParser(prog="productimon-warehouse", description=__doc__)
    parser.add_argument("--logins", type=Path, help="JSON file of the services' logins and roles (warehouse/roles.py)")
    args = parser.parse_args()
    settings = load_settings()
    if not settings.warehouse_password:
        raise UserFacingError(
            "PRODUCTIMON_WAREHOUSE_PASSWORD is empty; the warehouse holds everyone's data and needs a password"
        )
    logins = read_logins(args.logins) if args.logins else {}
    try:
        server = WarehouseServer(
            settings.warehouse_dir,
            host=settings.warehouse_host,
            port=settings.warehouse_port,
            user=settings.warehouse_user,
            password=settings.warehouse_password,
            logins=logins,
        )
    except OSError as exc:
        raise UserFacingError(
            f"cannot listen on {settings.warehouse_host}:{settings.warehouse_port}: {exc.strerror or exc}"
        ) from None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server.start()
        log.info("logins: the owner%s", "".join(f", {user} ({role.name})" for user, (_, role) in logins.items()))
        print(f"warehouse listening on {server.url}", flush=True)
        stop.wait()
    finally:
        server.shutdown()
    return 0
