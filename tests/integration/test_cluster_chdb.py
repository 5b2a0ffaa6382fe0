"""The cluster form of the warehouse (warehouse/cluster.py) against the real ClickHouse engine, chDB.

No ClickHouse cluster runs here: chDB has no distributed DDL worker (ON CLUSTER is refused) and no
replication (a Replicated table opens read-only). So, as far as the engine allows:
- every generated statement parses, ON CLUSTER and all;
- every query of the query API is accepted by the engine over Distributed tables of two shards;
- the replicated local tables, their views and the Distributed tables over them are created by the engine
  (in-memory test Keeper), macros expanded into the replication paths;
- the same layout with plain engines on a one-shard cluster of this engine (remote_servers, localhost)
  takes the writers' inserts through the Distributed tables and answers every query of the query API
  exactly as a single server does, and deletion and retention work on the local tables behind them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime, timedelta

import clickhouse_connect
import pandas as pd
import pytest

from tests.integration.test_queries import DAY, PERIOD, day_of, device, sessions_of, store, the_day_before
from tests.unit.test_cluster_ddl import RecordingClient
from warehouse import deletion, migrate, queries
from warehouse.cluster import cluster_statements, migrations_table
from warehouse.migrate import apply_migrations, apply_retention, load_migrations
from warehouse.writes import store_intervals

CLUSTER = "productimon_test"
# Two shards that are both this engine, holding the same rows: every row is read twice, so it can only show
# that the query API's SQL is accepted over more than one shard (ClickHouse refuses some distributed
# subqueries only then, distributed_product_mode), not that the answers are right.
TWO_SHARDS = "productimon_two"
SINGLE_SERVER = [s for m in load_migrations() for s in m.statements]
# This engine as a one-shard cluster: a replica on localhost at the engine's own tcp_port counts as local, so
# the Distributed tables read and write the local tables in-process, as a shard's own host does.
CONFIG = f"""<clickhouse>
  <tcp_port>9000</tcp_port>
  <macros><shard>01</shard><replica>r1</replica></macros>
  <remote_servers>
    <{CLUSTER}><shard><internal_replication>true</internal_replication>
      <replica><host>localhost</host><port>9000</port></replica>
    </shard></{CLUSTER}>
    <{TWO_SHARDS}>
      <shard><replica><host>localhost</host><port>9000</port></replica></shard>
      <shard><replica><host>127.0.0.1</host><port>9000</port></replica></shard>
    </{TWO_SHARDS}>
  </remote_servers>
  {{keeper}}
</clickhouse>
"""


def without_on_cluster(statement: str) -> str:
    """What a host's DDL worker runs of an ON CLUSTER statement (this engine has no such worker)."""
    return re.sub(r" ON CLUSTER `\w+`", "", statement)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """Clients of one chDB engine: `single` (the migrations as they are) and `cluster` (their cluster form)."""
    root = tmp_path_factory.mktemp("cluster")
    config = root / "config.xml"
    config.write_text(CONFIG.format(keeper=""))

    def client(database: str = ""):
        return clickhouse_connect.get_client(
            dsn=f"chdb://{root / 'data'}",
            chdb_options={"config-file": str(config)},
            database=database or None,
            # What warehouse.client.connect sets when a cluster is configured.
            settings={"distributed_foreground_insert": 1},
        )

    single = client()
    apply_migrations(single, "single")
    admin = client()
    admin.command("CREATE DATABASE productimon")
    admin.database = "productimon"
    admin.command(without_on_cluster(migrations_table(CLUSTER, replicated=False)))
    for statement in cluster_statements(SINGLE_SERVER, CLUSTER, "productimon", replicated=False):
        admin.command(without_on_cluster(statement))
    cluster = client("productimon")
    for c in (single, cluster):
        # The query API's fixture data (tests/integration/test_queries.py): alice, and bob beside her.
        store(c, "alice", day_of() + the_day_before())
        sessions_of(c, "alice")
        device(c, "alice", "laptop", "Alice's laptop")
        store(c, "bob", day_of("-bob") + the_day_before("-bob"))
        sessions_of(c, "bob", "-bob")
        device(c, "bob", "laptop", "bob's laptop", os="bob-os")
    yield {"single": single, "cluster": cluster, "root": root}
    for c in (single, admin, cluster):
        c.close()


def scalar(client, sql: str, **parameters) -> int:
    return client.query(sql, parameters=parameters).result_rows[0][0]


# --- the generated DDL, as the engine reads it ----------------------------------------------------------------


def every_cluster_statement() -> list[str]:
    recorder = RecordingClient(engine_of_intervals=f"Distributed('{CLUSTER}', 'productimon', 'intervals_local', x)")
    apply_migrations(recorder, "productimon", cluster=CLUSTER)
    apply_retention(recorder, 30)
    deletion.delete_user_data(recorder, "alice")
    deletion.delete_device_data(recorder, "alice", "laptop")
    deletion.delete_time_range(recorder, "alice", DAY, DAY + timedelta(hours=5))
    return [sql for sql, _ in recorder.commands]


def test_every_statement_sent_to_a_cluster_parses_in_clickhouse(engine):
    statements = every_cluster_statement()
    assert len(statements) > 30
    for statement in statements:
        formatted = scalar(engine["single"], "SELECT formatQuery({q:String})", q=statement)
        if not statement.startswith(("SYSTEM", "INSERT")):
            assert f"ON CLUSTER {CLUSTER}" in formatted, statement


_REPLICATED = textwrap.dedent(
    """
    import json, os, sys
    import chdb
    from warehouse.cluster import cluster_statements, migrations_table
    from warehouse.migrate import load_migrations
    data, config, cluster = sys.argv[1:4]
    conn = chdb.connect(f"file:{data}?config-file={config}")
    conn.query("CREATE DATABASE productimon")
    conn.query("USE productimon")
    single = [s for m in load_migrations() for s in m.statements]
    for statement in (migrations_table(cluster), *cluster_statements(single, cluster, "productimon")):
        conn.query(statement.replace(f" ON CLUSTER `{cluster}`", ""))
    tables = conn.query("SELECT name, engine FROM system.tables WHERE database = 'productimon'", "JSONCompact")
    replicas = conn.query("SELECT table, zookeeper_path, replica_name FROM system.replicas", "JSONCompact")
    print(json.dumps({"tables": json.loads(str(tables))["data"], "replicas": json.loads(str(replicas))["data"]}))
    sys.stdout.flush()
    os._exit(0)  # chDB with Keeper-backed tables can hang on an orderly shutdown
    """
)


def test_the_replicated_tables_their_views_and_the_distributed_tables_are_created_by_the_engine(tmp_path):
    config = tmp_path / "config.xml"
    # ClickHouse's in-memory test Keeper: enough to create Replicated tables (they stay read-only in chDB).
    config.write_text(CONFIG.format(keeper="<zookeeper><implementation>testkeeper</implementation></zookeeper>"))
    done = subprocess.run(
        [sys.executable, "-c", _REPLICATED, str(tmp_path / "data"), str(config), CLUSTER],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    engines = dict(found["tables"])
    for table in deletion.USER_TABLES:
        assert engines[table] == "Distributed"
        assert re.fullmatch(r"Replicated(Replacing|Summing)MergeTree", engines[f"{table}_local"])
    assert engines["usage_hourly_mv"] == engines["usage_daily_mv"] == "MaterializedView"
    paths = {table: (path, replica) for table, path, replica in found["replicas"]}
    assert paths["intervals_local"] == ("/clickhouse/tables/01/productimon/intervals", "r1")
    assert paths["schema_migrations"] == ("/clickhouse/tables/all/productimon/schema_migrations", "01-r1")


# --- the layout at work: writes, queries, deletion and retention through the Distributed tables -------------


def test_rows_and_rollups_are_stored_in_the_local_tables(engine):
    c = engine["cluster"]
    for table in ("intervals", "app_sessions", "focus_sessions", "usage_hourly", "usage_daily", "devices"):
        local = scalar(c, f"SELECT count() FROM {table}_local")
        assert local > 0 and local == scalar(c, f"SELECT count() FROM {table}"), table


@pytest.mark.parametrize("name", sorted(queries.QUERY_FUNCTIONS))
def test_every_query_answers_through_the_distributed_tables_as_on_a_single_server(engine, name):
    fn = queries.QUERY_FUNCTIONS[name]
    for user, period in (("alice", PERIOD), ("bob", (DAY - timedelta(days=1), DAY + timedelta(days=1)))):
        expected = fn(engine["single"], user, *period)
        assert not expected.empty
        pd.testing.assert_frame_equal(fn(engine["cluster"], user, *period), expected)


@pytest.mark.parametrize("name", sorted(queries.AGGREGATE_FUNCTIONS))
def test_aggregates_across_users_answer_as_on_a_single_server(engine, name):
    fn = queries.AGGREGATE_FUNCTIONS[name]
    expected = fn(engine["single"], *PERIOD, k=2)
    assert not expected.empty
    pd.testing.assert_frame_equal(fn(engine["cluster"], *PERIOD, k=2), expected)


def columns_of(user: str, minutes: int) -> list[list[object]]:
    t0 = datetime(2026, 4, 1, 9, tzinfo=UTC)
    rows = [
        [user, "d1", str(uuid.uuid4()), i, t0 + timedelta(minutes=i), t0 + timedelta(minutes=i, seconds=50)]
        + ["Code", "t", "example.com", 3, 1, False, t0]
        for i in range(minutes)
    ]
    return [list(column) for column in zip(*rows, strict=True)]


def test_a_retried_insert_with_its_token_counts_once_in_the_table_and_the_rollups(engine):
    c = engine["cluster"]
    batch = columns_of("retrying", 90)
    for _ in range(2):
        store_intervals(c, batch, dedup_token="batch-7")
    assert scalar(c, "SELECT count() FROM intervals WHERE user_id = 'retrying'") == 90
    assert scalar(c, "SELECT sum(keystrokes) FROM usage_hourly WHERE user_id = 'retrying'") == 270
    assert scalar(c, "SELECT sum(keystrokes) FROM usage_daily WHERE user_id = 'retrying'") == 270


@pytest.fixture
def local_mutations(monkeypatch):
    """Deletion and retention as each host runs them: this engine refuses ON CLUSTER, so it is left out."""
    monkeypatch.setattr(deletion, "on_cluster", lambda cluster: "")
    monkeypatch.setattr(migrate, "on_cluster", lambda cluster: "")


def rows_of(client, user: str) -> dict[str, int]:
    return {
        t: scalar(client, f"SELECT count() FROM {t} WHERE user_id = {{u:String}}", u=user) for t in deletion.USER_TABLES
    }


def test_deleting_a_time_range_on_the_cluster_leaves_what_a_single_server_leaves(engine, local_mutations):
    for c in (engine["single"], engine["cluster"]):
        store(c, "carol", day_of() + the_day_before())
        sessions_of(c, "carol")
        device(c, "carol", "laptop", "Carol's laptop")
        deletion.delete_time_range(c, "carol", DAY + timedelta(hours=9), DAY + timedelta(hours=10))
    for name in ("totals", "daily_trend", "time_per_app", "app_timeline"):
        fn = queries.QUERY_FUNCTIONS[name]
        period = (DAY - timedelta(days=1), DAY + timedelta(days=1))
        pd.testing.assert_frame_equal(fn(engine["cluster"], "carol", *period), fn(engine["single"], "carol", *period))
    assert rows_of(engine["cluster"], "carol") == rows_of(engine["single"], "carol")


def test_deleting_a_user_on_the_cluster_leaves_no_row_of_them_and_keeps_everyone_else(engine, local_mutations):
    c = engine["cluster"]
    store_intervals(c, columns_of("dave", 30))
    before = rows_of(c, "alice")
    deletion.delete_user_data(c, "dave")
    assert sum(rows_of(c, "dave").values()) == 0
    assert scalar(c, "SELECT count() FROM intervals_local WHERE user_id = 'dave'") == 0
    assert rows_of(c, "alice") == before


def test_retention_on_the_cluster_is_a_ttl_of_the_local_table(engine, local_mutations):
    c = engine["cluster"]
    apply_retention(c, 400)
    ttl = "TTL toDateTime(start) + toIntervalDay(400)"
    assert ttl in scalar(c, "SELECT create_table_query FROM system.tables WHERE name = 'intervals_local'")
    apply_retention(c, 0)
    assert " TTL " not in scalar(c, "SELECT create_table_query FROM system.tables WHERE name = 'intervals_local'")


@pytest.fixture(scope="module")
def two_shards(engine):
    """Distributed tables of two shards (both this engine) over the cluster layout's local tables."""
    root = engine["root"]
    c = clickhouse_connect.get_client(
        dsn=f"chdb://{root / 'data'}", chdb_options={"config-file": str(root / "config.xml")}
    )
    c.command("CREATE DATABASE two_shards")
    c.database = "two_shards"
    for statement in cluster_statements(SINGLE_SERVER, TWO_SHARDS, "productimon", replicated=False):
        if "ENGINE = Distributed(" in statement:
            c.command(re.sub(r" AS (\w+_local)\n", r" AS productimon.\1\n", without_on_cluster(statement)))
    yield c
    c.close()


def test_the_distributed_tables_read_every_shard(two_shards, engine):
    assert scalar(two_shards, "SELECT count() FROM intervals") == 2 * scalar(
        engine["cluster"], "SELECT count() FROM intervals"
    )


@pytest.mark.parametrize("name", sorted(queries.QUERY_FUNCTIONS) + sorted(queries.AGGREGATE_FUNCTIONS))
def test_every_query_is_accepted_over_more_than_one_shard(two_shards, name):
    if name in queries.AGGREGATE_FUNCTIONS:
        assert not queries.AGGREGATE_FUNCTIONS[name](two_shards, *PERIOD, k=2).empty
    else:
        assert not queries.QUERY_FUNCTIONS[name](two_shards, "alice", *PERIOD).empty
