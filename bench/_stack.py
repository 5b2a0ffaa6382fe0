"""The private stack a benchmark runs on: its own ports and directory, its own processes."""

from __future__ import annotations

from pathlib import Path

from infra.processes import free_port
from infra.stack import Stack
from plumbing.settings import Settings


def bench_stack(data_dir: Path, **overrides: object) -> Stack:
    """A benchmark's stack. Its window is a year, not the default 30 days: a benchmark's streams are sent in
    minutes but cover up to months of activity (infra/streams.py realistic_stream), which a collector would have
    sent as it happened."""
    values: dict[str, object] = {"interval_max_age_days": 365, **overrides}
    settings = Settings(
        data_dir=data_dir,
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        gateway_port=free_port(),
        gateway_public_port=free_port(),
        warehouse_port=free_port(),
        **values,
    )
    return Stack(settings, say=lambda *a, **k: None)


def stored_bytes(client) -> dict[str, int]:
    """Bytes on disk per table, over every table a person's data lives in (warehouse/deletion.py USER_TABLES), after
    merging each (OPTIMIZE FINAL), as an installation that has run a while holds them; every table in the result,
    0 for an empty one."""
    from warehouse.deletion import USER_TABLES

    for table in USER_TABLES:
        client.command(f"OPTIMIZE TABLE {table} FINAL")
    found = dict(
        client.query(
            "SELECT table, sum(bytes_on_disk) FROM system.parts WHERE active AND database = currentDatabase() "
            "AND table IN {t:Array(String)} GROUP BY table",
            parameters={"t": list(USER_TABLES)},
        ).result_rows
    )
    return {table: int(found.get(table, 0)) for table in USER_TABLES}
