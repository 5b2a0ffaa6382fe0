"""The warehouse on a ClickHouse cluster: the cluster form of each migration statement, made from the
single-server migrations by a pure transformation, so there is one schema to maintain, not two.

Every data table `t` of the migrations becomes two tables, both created ON CLUSTER:
- `t_local`, holding the rows, with the Replicated variant of `t`'s engine, one replica set per shard;
- `t`, a Distributed table over `t_local`, sharded by `cityHash64(user_id)`; a table about no one (ABOUT_NO_ONE:
  the released insights, with no `user_id`, never collapsed or deleted per person) is spread by `rand()`.
So writers and the query API use the same table names as on a single server. Sharding by user keeps all of
one user's rows, every version of a session row and the rollups made from them on one shard: a per-user
query reads one shard's data, and `FINAL` (which collapses versions only within a shard) is exact. The
rollups are rebuilt from the raw rows through the Distributed tables (warehouse/rollups.py); the materialized
views of the older migrations were created on every host, attached to the local tables, and are dropped
ON CLUSTER by a later one. A migration's data copy (INSERT ... SELECT) runs once, through the Distributed
tables; a dropped data table goes with its local table. README.md ("ClickHouse cluster") lists what the
cluster needs and what was verified.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

LOCAL_SUFFIX = "_local"
SHARDING_KEY = "cityHash64(user_id)"
SPREAD_KEY = "rand()"
# Tables about no one: no user_id, nothing to collapse or delete per person (warehouse/insights.py), spread by rand().
# Any other table without a user_id is refused: where its rows belong would be a guess.
ABOUT_NO_ONE = frozenset({"insight_releases"})
# Replicated tables deduplicate inserts by themselves, through Keeper (replicated_deduplication_window:
# 1000 blocks by default before ClickHouse 25.9, 10000 since), so the single server's window setting, which
# Replicated tables ignore, is left out.
_SINGLE_SERVER_ONLY_SETTING = "non_replicated_deduplication_window"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

_CREATE_TABLE = re.compile(
    r"^CREATE TABLE IF NOT EXISTS (?P<name>\w+)\s*(?P<columns>\(.*\))\s*"
    r"ENGINE = (?P<engine>\w+)(?:\((?P<args>[^()]*)\))?(?P<rest>.*)$",
    re.S,
)
_CREATE_VIEW = re.compile(
    r"^CREATE MATERIALIZED VIEW IF NOT EXISTS (?P<name>\w+) TO (?P<target>\w+) AS\s(?P<query>.*)$", re.S
)
_ALTER_TABLE = re.compile(r"^ALTER TABLE (?P<name>\w+) (?P<action>.*)$", re.S)
# ALTERs that change the columns must reach the Distributed table too; the others concern stored data.
_COLUMN_ACTION = re.compile(r"^(ADD|DROP|MODIFY|RENAME|COMMENT) COLUMN\b", re.I)
_TABLE_REFERENCE = re.compile(r"\b(FROM|JOIN)(\s+)(\w+)\b")
# A plain table name read by a query: not a subquery, a table function or a name in another database.
_READ_TABLE = re.compile(r"\b(?:FROM|JOIN)\s+(\w+)\b(?![.(])")
_INSERT_SELECT = re.compile(r"^INSERT INTO (?P<name>\w+)\s*(?P<columns>\([^()]*\))?\s*(?P<query>SELECT\s.*)$", re.S)
_DROP_VIEW = re.compile(r"^DROP VIEW IF EXISTS (?P<name>\w+)$")
_DROP_TABLE = re.compile(r"^DROP TABLE IF EXISTS (?P<name>\w+)$")
# A copy between data tables goes through the Distributed tables, once, from one host: every shard's rows are
# read and each row is sent to its user's shard. It must be stored on the shards when the statement returns
# (not queued on the host that ran it, the migration being recorded next), and a re-run of a migration that
# stopped half-way must copy again rather than be dropped as a duplicate block.
COPY_SETTINGS = "insert_deduplicate = 0, distributed_foreground_insert = 1"
_SETTINGS = re.compile(r"\s*\bSETTINGS\s+(?P<list>.*)$", re.S)


def local_table(table: str) -> str:
    """The name of the table on each shard that holds the rows behind the Distributed table `table`."""
    return table + LOCAL_SUFFIX


def check_identifier(value: str, what: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(f"the {what} {value!r} is not a plain identifier")
    return value


def on_cluster(cluster: str) -> str:
    return f"ON CLUSTER `{check_identifier(cluster, 'cluster name')}`"


class ClusterSchema:
    """Turns the single-server migration statements, in order, into their cluster form.

    It remembers the data tables created so far, to rename their references in later statements.
    `replicated=False` keeps the plain engines: a sharded cluster without replicas, and the form the
    embedded engine can run in tests (chDB cannot open Replicated tables: they stay read-only in it).
    """

    def __init__(self, cluster: str, database: str, *, replicated: bool = True) -> None:
        self.cluster = check_identifier(cluster, "cluster name")
        self.database = check_identifier(database, "warehouse database name")
        self.replicated = replicated
        self.tables: set[str] = set()
        self.views: set[str] = set()

    def statements(self, statement: str) -> tuple[str, ...]:
        """The cluster statements doing what `statement` does on a single server."""
        statement = statement.strip()
        for pattern, transform in (
            (_CREATE_TABLE, self._create_table),
            (_CREATE_VIEW, self._create_view),
            (_ALTER_TABLE, self._alter_table),
            (_INSERT_SELECT, self._insert_select),
            (_DROP_VIEW, self._drop_view),
            (_DROP_TABLE, self._drop_table),
        ):
            match = pattern.match(statement)
            if match:
                return transform(match)
        raise ValueError(
            "no cluster form is known for this migration statement (warehouse/cluster.py handles CREATE TABLE, "
            "CREATE MATERIALIZED VIEW ... TO, ALTER TABLE, INSERT INTO ... SELECT, DROP VIEW IF EXISTS and "
            f"DROP TABLE IF EXISTS): {statement[:120]!r}"
        )

    def _create_table(self, match: re.Match[str]) -> tuple[str, ...]:
        name, columns, engine = match["name"], match["columns"], match["engine"]
        by_user = name not in ABOUT_NO_ONE
        if by_user and not re.search(r"^\s*\(?\s*user_id\s", columns, re.M):
            raise ValueError(f"table {name} has no user_id column to shard by")
        if not engine.endswith("MergeTree") or engine.startswith("Replicated"):
            raise ValueError(f"table {name}: no cluster form for the engine {engine}")
        args = [a.strip() for a in (match["args"] or "").split(",") if a.strip()]
        rest = match["rest"]
        if self.replicated:
            # One replica set per shard; {shard} and {replica} are each host's macros.
            path = f"'/clickhouse/tables/{{shard}}/{{database}}/{name}'"
            engine, args = f"Replicated{engine}", [path, "'{replica}'", *args]
            rest = _without_setting(rest, _SINGLE_SERVER_ONLY_SETTING)
        local = local_table(name)
        self.tables.add(name)
        engine_clause = f"{engine}({', '.join(args)})" if args else engine
        return (
            f"CREATE TABLE IF NOT EXISTS {local} {on_cluster(self.cluster)}\n{columns}\nENGINE = {engine_clause}{rest}",
            f"CREATE TABLE IF NOT EXISTS {name} {on_cluster(self.cluster)} AS {local}\n"
            f"ENGINE = Distributed('{self.cluster}', '{self.database}', '{local}', "
            f"{SHARDING_KEY if by_user else SPREAD_KEY})",
        )

    def _create_view(self, match: re.Match[str]) -> tuple[str, ...]:
        # A view fires on inserts into the table it reads: on each shard, the local table's inserts.
        name, target = match["name"], match["target"]
        if target not in self.tables:
            raise ValueError(f"materialized view {name} writes to {target}, which is not a data table")
        query = _TABLE_REFERENCE.sub(
            lambda m: m[1] + m[2] + (local_table(m[3]) if m[3] in self.tables else m[3]), match["query"]
        )
        create = f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name} {on_cluster(self.cluster)} TO {local_table(target)}"
        self.views.add(name)
        return (f"{create} AS\n{query}",)

    def _alter_table(self, match: re.Match[str]) -> tuple[str, ...]:
        name, action = match["name"], match["action"].strip()
        if name not in self.tables:
            raise ValueError(f"ALTER TABLE {name}: not a data table created by an earlier migration")
        if self.replicated and re.fullmatch(rf"MODIFY SETTING {_SINGLE_SERVER_ONLY_SETTING}\s*=\s*\d+", action):
            return ()
        statements = [f"ALTER TABLE {local_table(name)} {on_cluster(self.cluster)} {action}"]
        if _COLUMN_ACTION.match(action):
            statements.append(f"ALTER TABLE {name} {on_cluster(self.cluster)} {action}")
        return tuple(statements)

    def _insert_select(self, match: re.Match[str]) -> tuple[str, ...]:
        # Through the Distributed tables, names unchanged: reading a local table would copy one shard's rows
        # only, and writing one would put rows on the shard of the host that ran it, not their user's.
        name, query = match["name"], match["query"]
        if name not in self.tables:
            raise ValueError(f"INSERT INTO {name}: not a data table created by an earlier migration")
        for read in _READ_TABLE.findall(query):
            if read not in self.tables:
                raise ValueError(f"INSERT INTO {name} reads {read}, which is not a data table")
        if _SETTINGS.search(query):
            raise ValueError(f"INSERT INTO {name} has its own SETTINGS, where the copy's settings would go")
        return (f"{match.group(0)}\nSETTINGS {COPY_SETTINGS}",)

    def _drop_view(self, match: re.Match[str]) -> tuple[str, ...]:
        # A materialized view TO a table holds no data: dropping it on every host is all there is to it.
        name = match["name"]
        if name not in self.views:
            raise ValueError(f"DROP VIEW {name}: not a materialized view created by an earlier migration")
        self.views.discard(name)
        return (f"DROP VIEW IF EXISTS {name} {on_cluster(self.cluster)}",)

    def _drop_table(self, match: re.Match[str]) -> tuple[str, ...]:
        # The Distributed table first, so nothing is written through it into a local table already gone. SYNC
        # drops at once rather than after database_atomic_delay_before_drop_table_sec: the replica's Keeper
        # path is freed, so a table of the same name can be created again.
        name = match["name"]
        if name not in self.tables:
            raise ValueError(f"DROP TABLE {name}: not a data table created by an earlier migration")
        self.tables.discard(name)
        return (
            f"DROP TABLE IF EXISTS {name} {on_cluster(self.cluster)} SYNC",
            f"DROP TABLE IF EXISTS {local_table(name)} {on_cluster(self.cluster)} SYNC",
        )


def _without_setting(clause: str, setting: str) -> str:
    """`clause` (the end of a CREATE TABLE) with `setting` taken out of its SETTINGS list."""
    match = _SETTINGS.search(clause)
    if not match:
        return clause
    kept = [s.strip() for s in match["list"].split(",") if s.split("=")[0].strip() != setting]
    return clause[: match.start()] + (f"\nSETTINGS {', '.join(kept)}" if kept else "")


def cluster_statements(
    statements: Iterable[str], cluster: str, database: str, *, replicated: bool = True
) -> tuple[str, ...]:
    """The cluster form of a sequence of single-server statements (all migrations, in order)."""
    schema = ClusterSchema(cluster, database, replicated=replicated)
    return tuple(s for statement in statements for s in schema.statements(statement))


def migrations_table(cluster: str, *, replicated: bool = True) -> str:
    """The migrations bookkeeping on a cluster: one table replicated to every host of every shard.

    It is not sharded (no {shard} in its Keeper path), so the version a migration run recorded through any
    host is seen from all of them; the replica name holds the shard because `{replica}` alone may repeat
    across shards.
    """
    engine = (
        "ReplicatedReplacingMergeTree('/clickhouse/tables/all/{database}/schema_migrations', '{shard}-{replica}')"
        if replicated
        else "ReplacingMergeTree"
    )
    return (
        f"CREATE TABLE IF NOT EXISTS schema_migrations {on_cluster(cluster)} (version UInt32, name String, "
        f"applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = {engine} ORDER BY version"
    )


_DISTRIBUTED = re.compile(r"^Distributed\('(?P<cluster>\w+)'")


def cluster_of(engine_full: str) -> str:
    """The cluster named by a Distributed table's engine clause; '' for any other engine."""
    match = _DISTRIBUTED.match(engine_full)
    return match["cluster"] if match else ""
