"""Versioned warehouse migrations: numbered `.sql` files in `migrations/`, each applied once, in order.

Every statement must run unchanged on the embedded engine and on a real ClickHouse server. Applying is
idempotent: statements use IF NOT EXISTS and a version is recorded only after its file succeeded, so a
run that stopped half-way is simply run again. With a cluster configured, each statement is applied in its
cluster form (`warehouse/cluster.py`) instead: the files stay the one schema.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from plumbing.cli import command
from plumbing.settings import load_settings
from warehouse.cluster import ClusterSchema, cluster_of, local_table, migrations_table, on_cluster

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


def apply_migrations(
    client: Client, database: str, directory: Path = MIGRATIONS_DIR, *, cluster: str = ""
) -> list[Migration]:
    """Create the database if needed and apply the migrations not yet recorded; returns those applied.

    `cluster` names a ClickHouse cluster (remote_servers) to create everything on, ON CLUSTER, as
    replicated local tables behind Distributed tables of the same names; '' is a single server.
    """
    if not _IDENTIFIER.match(database):
        raise ValueError(f"warehouse database name {database!r} is not a plain identifier")
    if cluster:
        return _apply_cluster_migrations(client, database, directory, cluster)
    client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    client.database = database
    _check_layout(client, cluster)
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


def _apply_cluster_migrations(client: Client, database: str, directory: Path, cluster: str) -> list[Migration]:
    client.command(f"CREATE DATABASE IF NOT EXISTS `{database}` {on_cluster(cluster)}")
    client.database = database
    _check_layout(client, cluster)
    client.command(migrations_table(cluster))
    # Another host may have recorded a run that this replica has not fetched yet.
    client.command("SYSTEM SYNC REPLICA schema_migrations")
    done = {row[0] for row in client.query("SELECT version FROM schema_migrations").result_rows}
    schema = ClusterSchema(cluster, database)
    applied = []
    for migration in load_migrations(directory):
        # Applied migrations go through the transformation too: it has to know every data table.
        statements = [s for statement in migration.statements for s in schema.statements(statement)]
        if migration.version in done:
            continue
        for statement in statements:
            client.command(statement)
        client.insert("schema_migrations", [[migration.version, migration.name]], column_names=["version", "name"])
        applied.append(migration)
    return applied


# What raw retention keeps for `raw_retention_days` and no longer: the raw intervals, and the daily rollup by title
# (migration 0015), which holds the window titles too, so titles are gone with the raw rows they came from. The
# other rollups and the sessions, which hold no title, stay.
RETAINED = (("intervals", "toDateTime(start)"), ("usage_by_title_day", "toDateTime(day)"))


def apply_retention(client: Client, raw_retention_days: int) -> None:
    """Keep raw intervals, and the titles of the daily rollup by title, `raw_retention_days` (0: forever); sessions
    and the other rollups are kept regardless.

    On a cluster the TTL is set on every shard's local table, where the rows are (ON CLUSTER).
    """
    if raw_retention_days < 0:
        raise ValueError(f"raw retention must be 0 (forever) or a number of days, not {raw_retention_days}")
    cluster = warehouse_cluster(client)
    for table_name, moment in RETAINED:
        name = local_table(table_name) if cluster else table_name
        table = f"{name} {on_cluster(cluster)}" if cluster else name
        found = client.query(
            "SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
            parameters={"t": name},
        ).result_rows
        create = found[0][0] if found else ""
        if raw_retention_days:
            client.command(f"ALTER TABLE {table} MODIFY TTL {moment} + toIntervalDay({int(raw_retention_days)})")
        elif " TTL " in create:
            client.command(f"ALTER TABLE {table} REMOVE TTL")


def _intervals_engine(client: Client) -> str | None:
    rows = client.query(
        "SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = 'intervals'"
    ).result_rows
    return rows[0][0] if rows else None


def warehouse_cluster(client: Client) -> str:
    """The cluster the warehouse was migrated onto ('' for a single server), as its tables say.

    Deletion and retention ask the tables rather than the configuration, so they act on the layout that
    exists: a mutation sent to a Distributed table would fail, one sent to one host would miss the others.
    """
    return cluster_of(_intervals_engine(client) or "")


def _check_layout(client: Client, cluster: str) -> None:
    """Refuse to migrate a warehouse laid out for another topology: IF NOT EXISTS would skip its tables
    and leave, say, a single server's `intervals` where the cluster needs a Distributed table."""
    engine = _intervals_engine(client)
    if engine is None or cluster_of(engine) == cluster:
        return
    found = f"on the ClickHouse cluster {cluster_of(engine)!r}" if cluster_of(engine) else "for a single server"
    wanted = f"the cluster {cluster!r}" if cluster else "a single server"
    raise ValueError(
        f"the warehouse database was created {found} but PRODUCTIMON_WAREHOUSE_CLUSTER says {wanted}; "
        "the migrations do not move a warehouse between layouts (README.md, 'ClickHouse cluster')"
    )


def prepare_warehouse(client: Client, database: str, raw_retention_days: int, *, cluster: str = "") -> list[Migration]:
    """Everything a process needs before it reads or writes: the migrations, then the retention policy."""
    applied = apply_migrations(client, database, cluster=cluster)
    apply_retention(client, raw_retention_days)
    return applied


def pending_migrations(client: Client, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations the warehouse (the client's database) has not recorded; all of them if it has none."""
    try:
        done = {row[0] for row in client.query("SELECT version FROM schema_migrations").result_rows}
    except DatabaseError as exc:
        if "UNKNOWN_TABLE" not in str(exc) and "UNKNOWN_DATABASE" not in str(exc):
            raise
        done = set()
    return [m for m in load_migrations(directory) if m.version not in done]


def require_current_schema(client: Client) -> None:
    """Fail with one line naming what is missing unless every migration is applied: a service runs with a login
    that may not change the schema (warehouse/roles.py); `productimon-migrate` applies them."""
    missing = pending_migrations(client)
    if missing:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in missing)
        raise SchemaBehind(f"the warehouse lacks the migrations {names}: run productimon-migrate first")


class SchemaBehind(Exception):
    """The warehouse's schema is older than this code."""


@command("productimon-migrate")
def main() -> int:
    """Apply the warehouse migrations and the retention policy, with the migrate login (the compose file's
    one-shot `migrate` service; the local stack does it itself at start)."""
    from warehouse.client import connect
    from warehouse.roles import clickhouse_users_xml

    parser = argparse.ArgumentParser(prog="productimon-migrate", description="Apply the warehouse migrations.")
    parser.add_argument(
        "--users-xml",
        action="store_true",
        help="print ClickHouse's users file of the services' logins and rights (warehouse/roles.py) and exit",
    )
    args = parser.parse_args()
    settings = load_settings()
    if args.users_xml:
        print(clickhouse_users_xml(settings.warehouse_database), end="")
        return 0
    applied = prepare_warehouse(
        connect(settings, with_database=False),
        settings.warehouse_database,
        settings.raw_retention_days,
        cluster=settings.warehouse_cluster,
    )
    print(f"warehouse schema current: {len(applied)} migrations applied", flush=True)
    return 0
