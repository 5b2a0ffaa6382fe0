"""The private stack a benchmark runs on: its own ports and directory, its own processes."""

from __future__ import annotations

import time
from pathlib import Path

from infra.processes import free_port
from infra.stack import Stack
from plumbing.settings import Settings
from warehouse.deletion import USER_TABLES


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


def until_merged(client, progress, timeout_s: float = 1200.0) -> float:
    """Wait until the warehouse runs no merge or mutation (three checks in a row, a second apart); the seconds
    waited. Data loaded in minutes is still being merged for minutes after: timed then, a query competes with the
    merges for the CPU, which a year's data that arrived over a year is not (its parts were merged long ago)."""
    began = time.monotonic()
    quiet = 0
    while quiet < 3:
        if time.monotonic() - began > timeout_s:
            raise TimeoutError(f"the warehouse was still merging after {timeout_s:.0f} s")
        busy = client.query(
            "SELECT (SELECT count() FROM system.merges) + (SELECT count() FROM system.mutations WHERE NOT is_done)"
        ).result_rows[0][0]
        quiet = 0 if busy else quiet + 1
        time.sleep(1.0)
    waited = time.monotonic() - began
    progress(f"the warehouse merged what was loaded in {waited:.0f} s more")
    return waited
