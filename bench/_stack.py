"""The private stack a benchmark runs on: its own ports and directory, its own processes."""

from __future__ import annotations

from pathlib import Path

from infra.processes import free_port
from infra.settings import Settings
from infra.stack import Stack


def bench_stack(data_dir: Path, **overrides: object) -> Stack:
    settings = Settings(
        data_dir=data_dir,
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        gateway_port=free_port(),
        gateway_public_port=free_port(),
        warehouse_port=free_port(),
        **overrides,
    )
    return Stack(settings, say=lambda *a, **k: None)
