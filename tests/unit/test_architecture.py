"""The package graph runs one way (docs/design.md "Top-level layout"), as the import-linter contracts in
pyproject.toml say; and importing the collector's agent loads none of the server's packages or libraries, though
all of them are installed in this environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from testbed.collector_process import SERVER_MODULES, modules_after

REPO = Path(__file__).resolve().parents[2]


def test_the_import_contracts_hold():
    checked = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=REPO, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-1000:]
    assert "4 kept, 0 broken" in checked.stdout


def test_importing_the_collector_loads_nothing_of_the_server():
    loaded = modules_after(sys.executable, "import collector.agent, collector.cli, collector.sampling", REPO)
    assert "collector.agent" in loaded
    assert not {m.split(".")[0] for m in loaded} & SERVER_MODULES
    assert not {"plumbing.settings", "plumbing.metrics", "plumbing.kafka_security"} & set(loaded)
    # Nor grpcio: the running collector speaks gRPC through collector/wire.py (grpcio alone is ~27 MB resident).
    assert not {m for m in loaded if m == "grpc" or m.startswith("grpc.")}
