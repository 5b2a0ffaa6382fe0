"""The embedded warehouse server: the one process that owns the chDB data directory, answering the part of
ClickHouse's HTTP interface that clickhouse-connect speaks, so every other process uses the warehouse over HTTP
(docs/architecture.md "Local mode and its quirks"; what it must speak: docs/design.md "Real components and how
they start"). The statements it lets through are warehouse/statements.py's and warehouse/roles.py's to judge.

One idea a module, each depending only on those above it:
- `errors`: ClickHouse's error codes, texts and HTTP statuses;
- `bodies`: request bodies read and decompressed as they arrive, response bodies compressed;
- `sql`: where a statement ends and an INSERT's inline data begins;
- `engine`: the chDB engine, its connections, and the check of each statement on the engine's parse;
- `options`: one request's options from its URL parameters and headers;
- `logins`: the logins and the check of a request's credentials;
- `http`: the HTTP server and handler, and `WarehouseServer`, which runs them;
- `cli`: the `productimon-warehouse` command.
"""

from warehouse.server.cli import main
from warehouse.server.errors import ClickHouseError
from warehouse.server.http import WarehouseServer
from warehouse.server.logins import read_logins

__all__ = ["ClickHouseError", "WarehouseServer", "main", "read_logins"]
