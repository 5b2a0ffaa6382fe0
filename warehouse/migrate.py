"""Versioned warehouse migrations: numbered `.sql` files in `migrations/`, each applied once, in order.

Every statement must run unchanged on the embedded engine and on a real ClickHouse server. Applying is
idempotent: statements use IF NOT EXISTS and a version is recorded only after its file succeeded, so a
run that stopped half-way is simply run again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(sql: str) -> tuple[str, ...]:
    """The statements of a migration file: `;` at the end of a line ends one; `--` lines are comments."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    statements = re.split(r";\s*$", "\n".join(lines), flags=re.MULTILINE)
    return tuple(s.strip() for s in statements if s.strip())


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name!r} is not named NNNN_name.sql")
        migrations.append(Migration(int(match[1]), match[2], split_statements(path.read_text())))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migration files share a version number in {directory}")
    return migrations


def apply_migrations(client: Client, database: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Create the database if needed and apply the migrations not yet recorded; returns those applied."""
    if not _IDENTIFIER.match(database):
        raise ValueError(f"warehouse database name {database!r} is not a plain identifier")
    client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    client.database = database
    client.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, "
        "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {row[0] for row in client.query("SELECT version FROM schema_migrations").result_rows}
    applied = []
    for migration in load_migrations(directory):
        if migration.version in done:
            continue
        for statement in migration.statements:
            client.command(statement)
        client.insert("schema_migrations", [[migration.version, migration.name]], column_names=["version", "name"])
        applied.append(migration)
    return applied


def apply_retention(client: Client, raw_retention_days: int) -> None:
    """Keep raw intervals `raw_retention_days` (0: forever); sessions and rollups are kept regardless."""
    if raw_retention_days < 0:
        raise ValueError(f"raw retention must be 0 (forever) or a number of days, not {raw_retention_days}")
    create = client.query(
        "SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = 'intervals'"
    ).result_rows[0][0]
    if raw_retention_days:
        client.command(f"ALTER TABLE intervals MODIFY TTL toDateTime(start) + toIntervalDay({int(raw_retention_days)})")
    elif " TTL " in create:
        client.command("ALTER TABLE intervals REMOVE TTL")


def prepare_warehouse(client: Client, database: str, raw_retention_days: int) -> list[Migration]:
    """Everything a process needs before it reads or writes: the migrations, then the retention policy."""
    applied = apply_migrations(client, database)
    apply_retention(client, raw_retention_days)
    return applied
