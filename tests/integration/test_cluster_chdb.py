"""The cluster form of the warehouse (warehouse/cluster.py) against the real ClickHouse engine, chDB.

No ClickHouse cluster runs here: chDB has no distributed DDL worker (ON CLUSTER is refused) and no
replication (a Replicated table opens read-only). So, as far as the engine allows:
- every generated statement parses, ON CLUSTER and all;
- every query of the query API, and the rollups' rebuild and drift check, is accepted by the engine over
  Distributed tables of two shards;
- the replicated local tables and the Distributed tables over them are created by the engine (in-memory test
  Keeper), macros expanded into the replication paths, and the migrations' copies and drops run there;
- the same layout with plain engines on a one-shard cluster of this engine (remote_servers, localhost)
  takes the writers' inserts through the Distributed tables, keeps the rollups equal to the raw rows when
  they are rebuilt through them, moves the old rollups over when migrated, answers every query of the query
  API exactly as a single server does, and deletion and retention work on the local tables behind them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime, timedelta

import clickhouse_connect
import pandas as pd
import pytest

from schemas.deletions import ACCOUNT, ALL_DATA, DEVICE, plan_deletion
from schemas.deletions import PERIOD as A_PERIOD
from schemas.privacy_rules import PrivacyRule
from stream_jobs.forget import delete
from stream_jobs.rows import interval_columns
from stream_jobs.sessionize import SessionRules
from tests.integration.test_queries import DAY, PERIOD, day_of, device, sessions_of, store, the_day_before
from tests.unit.test_cluster_ddl import RecordingClient
from warehouse import cluster as cluster_module
from warehouse import deletion, insights, migrate, queries
from warehouse.cluster import ABOUT_NO_ONE, cluster_statements, migrations_table
from warehouse.goals import add_goal
from warehouse.imports import ImportStream, register_stream, store_source_intervals
from warehouse.insight_rules import Budget, week_of
from warehouse.keys import create_key
from warehouse.migrate import apply_migrations, apply_retention, load_migrations
from warehouse.notices import set_account, set_goal_channel, set_weekly_summary
from warehouse.privacy import add_rule as add_privacy_rule
from warehouse.privacy import set_title_mode
from warehouse.rollups import rebuild_touched, rollup_drift
from warehouse.writes import NO_DELETIONS, store_device_states, store_intervals, store_refusals

CLUSTER = "productimon_test"
# Two shards that are both this engine, holding the same rows: every row is read twice, so it can only show
# that the query API's SQL is accepted over more than one shard (ClickHouse refuses some distributed
# subqueries only then, distributed_product_mode), not that the answers are right.
TWO_SHARDS = "productimon_two"
SINGLE_SERVER = [s for m in load_migrations() for s in m.statements]
COPY_SETTINGS = "SETTINGS insert_deduplicate = 0, distributed_foreground_insert = 1"
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
        store_device_states(c, NO_DELETIONS, [("alice", "laptop", 6, "{}"), ("bob", "laptop", 6, "{}")])
    yield {"single": single, "cluster": cluster, "root": root}
    for c in (single, admin, cluster):
        c.close()


def forget(client, kind: str, user: str, **options) -> None:
    """Delete as the gateway does: the record first, then every table."""
    delete(client, plan_deletion(kind, user, int(time.time() * 1000), **options), SessionRules())


def scalar(client, sql: str, **parameters) -> int:
    return client.query(sql, parameters=parameters).result_rows[0][0]


# --- the generated DDL, as the engine reads it ----------------------------------------------------------------


def every_cluster_statement() -> list[str]:
    recorder = RecordingClient(engine_of_intervals=f"Distributed('{CLUSTER}', 'productimon', 'intervals_local', x)")
    apply_migrations(recorder, "productimon", cluster=CLUSTER)
    apply_retention(recorder, 30)
    forget(recorder, ALL_DATA, "alice")
    forget(recorder, DEVICE, "alice", device_id="laptop")
    forget(recorder, A_PERIOD, "alice", start=DAY, end=DAY + timedelta(hours=5))
    return [sql for sql, _ in recorder.commands]


def test_every_statement_sent_to_a_cluster_parses_in_clickhouse(engine):
    statements = every_cluster_statement()
    assert len(statements) > 30
    for statement in statements:
        formatted = scalar(engine["single"], "SELECT formatQuery({q:String})", q=statement)
        if not statement.startswith(("SYSTEM", "INSERT")):
            assert f"ON CLUSTER {CLUSTER}" in formatted, statement
        if statement.startswith("DROP TABLE"):
            assert formatted.endswith(" SYNC"), formatted
        if statement.endswith(COPY_SETTINGS):
            # The settings at the end of the SELECT are the whole INSERT's: the parser puts them on both.
            assert formatted.startswith("INSERT INTO usage_by_") and formatted.count(COPY_SETTINGS) == 2, formatted
    assert sum(s.endswith(COPY_SETTINGS) for s in statements) == 3  # 0004's two copies and 0015's fill
    kinds = ("CREATE TABLE", "CREATE MATERIALIZED VIEW", "ALTER TABLE", "INSERT", "DROP VIEW", "DROP TABLE")
    assert all(any(s.startswith(kind) for s in statements) for kind in kinds)


def test_the_settings_at_the_end_of_an_insert_select_apply_to_the_insert(engine):
    # Checked with a setting whose effect shows: block deduplication of a stable INSERT ... SELECT.
    c = engine["single"]
    c.command(
        "CREATE TABLE settings_probe (x UInt8) ENGINE = MergeTree ORDER BY x "
        "SETTINGS non_replicated_deduplication_window = 10"
    )
    copy = "INSERT INTO settings_probe (x) SELECT 7 ORDER BY ALL"
    for statement in (copy, copy, f"{copy} SETTINGS deduplicate_insert = 'disable'"):
        c.command(statement)
    assert scalar(c, "SELECT count() FROM settings_probe") == 2
    c.command("DROP TABLE settings_probe SYNC")


_REPLICATED = textwrap.dedent(
    r"""
    import json, os, re, sys
    import chdb
    from warehouse.cluster import cluster_statements, migrations_table
    from warehouse.migrate import load_migrations
    data, config, cluster = sys.argv[1:4]
    conn = chdb.connect(f"file:{data}?config-file={config}")
    conn.query("CREATE DATABASE productimon")
    conn.query("USE productimon")
    single = [s for m in load_migrations() for s in m.statements]
    for statement in (migrations_table(cluster), *cluster_statements(single, cluster, "productimon")):
        if re.match(r"ALTER TABLE \w+_local ", statement):
            # A Replicated table stays read-only in chDB, which runs no replication queue: its ALTERs cannot run
            # here (they wait for ever, or are refused). They are parsed by the engine and run on the plain
            # cluster form by the other tests of this module.
            print(json.dumps({"altered": statement}))
            continue
        conn.query(statement.replace(f" ON CLUSTER `{cluster}`", ""))
        if statement.startswith("CREATE MATERIALIZED VIEW"):
            # Seen before a later migration drops it.
            name = statement.split()[6]
            engine = conn.query(f"SELECT engine FROM system.tables WHERE name = '{name}'", "TabSeparated")
            print(json.dumps({"view": name, "engine": str(engine).strip()}))
    # A replicated table at the Keeper path of one the migrations dropped: refused while the old replica is there.
    try:
        conn.query("CREATE TABLE reused (x UInt8) ENGINE = ReplicatedMergeTree("
                   "'/clickhouse/tables/{shard}/{database}/usage_hourly', '{replica}') ORDER BY x")
        conn.query("DROP TABLE reused SYNC")
        reused = "created"
    except Exception as e:
        reused = str(e)[:300]
    print(json.dumps({"reused": reused}))
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
    printed = [json.loads(line) for line in done.stdout.strip().splitlines()]
    altered = [line["altered"] for line in printed if "altered" in line]
    *views, reused, found = [line for line in printed if "altered" not in line]
    # Left out above: only the codecs of 0016, each also changed on its Distributed table (run).
    assert altered == [
        f"ALTER TABLE {table}_local ON CLUSTER `{CLUSTER}` MODIFY COLUMN {column}"
        for table, column in (
            ("intervals", "event_id UUID CODEC(ZSTD(1))"),
            ("intervals", "device_seq UInt64 CODEC(Delta, ZSTD(1))"),
            ("app_sessions", "session_id String CODEC(ZSTD(1))"),
            ("app_sessions", "version UInt64 CODEC(Delta, ZSTD(1))"),
            ("focus_sessions", "session_id String CODEC(ZSTD(1))"),
            ("focus_sessions", "version UInt64 CODEC(Delta, ZSTD(1))"),
        )
    ]
    assert views == [
        {"view": "usage_hourly_mv", "engine": "MaterializedView"},
        {"view": "usage_daily_mv", "engine": "MaterializedView"},
    ]
    engines = dict(found["tables"])
    for table in (*deletion.USER_TABLES, *deletion.KEPT_TABLES):
        assert engines.pop(table) == "Distributed"
        assert engines.pop(f"{table}_local") == "ReplicatedReplacingMergeTree"
    for table in ABOUT_NO_ONE:  # a ledger written once per release, never collapsed
        assert engines.pop(table) == "Distributed"
        assert engines.pop(f"{table}_local") == "ReplicatedMergeTree"
    # The summed rollups, their local tables and their views are dropped by the migrations.
    assert engines == {"schema_migrations": "ReplicatedReplacingMergeTree"}
    paths = {table: (path, replica) for table, path, replica in found["replicas"]}
    assert paths["intervals_local"] == ("/clickhouse/tables/01/productimon/intervals", "r1")
    assert paths["device_state_local"] == ("/clickhouse/tables/01/productimon/device_state", "r1")
    assert paths["schema_migrations"] == ("/clickhouse/tables/all/productimon/schema_migrations", "01-r1")
    assert "usage_hourly_local" not in paths and "usage_daily_local" not in paths
    # A dropped replicated table frees its replica's Keeper path at once (SYNC), not after the Atomic
    # database's delay: a table can be created there again.
    assert reused == {"reused": "created"}


# --- the layout at work: writes, queries, deletion and retention through the Distributed tables -------------


def test_rows_and_rollups_are_stored_in_the_local_tables(engine):
    c = engine["cluster"]
    tables = ("intervals", "app_sessions", "focus_sessions", "usage_by_hour", "usage_by_title_day", "device_state")
    for table in (*tables, "devices"):
        local = scalar(c, f"SELECT count() FROM {table}_local")
        assert local > 0 and local == scalar(c, f"SELECT count() FROM {table}"), table


@pytest.mark.parametrize("name", sorted(queries.QUERY_FUNCTIONS))
def test_every_query_answers_through_the_distributed_tables_as_on_a_single_server(engine, name):
    fn = queries.QUERY_FUNCTIONS[name]
    for user, period in (("alice", PERIOD), ("bob", (DAY - timedelta(days=1), DAY + timedelta(days=1)))):
        expected = fn(engine["single"], user, *period)
        assert not expected.empty
        pd.testing.assert_frame_equal(fn(engine["cluster"], user, *period), expected)


def test_who_counts_for_insights_and_what_they_contribute_is_as_on_a_single_server(engine):
    week = week_of(DAY.date())
    expected = insights.contributions(engine["single"], week, 1)
    assert all(len(parts) == 2 for parts in expected.values())  # alice and bob, from their enrolled laptops
    assert {f: sorted(p) for f, p in insights.contributions(engine["cluster"], week, 1).items()} == {
        f: sorted(p) for f, p in expected.items()
    }


def test_released_insights_are_stored_and_read_back_through_the_distributed_table(engine):
    chosen = insights.InsightSettings(Budget(1.0), k=2, min_active_days=1)
    week = week_of(DAY.date())
    made = insights.release_week(engine["cluster"], week, chosen, datetime.now(UTC))
    assert insights.releases(engine["cluster"], week) == {r.figure: r for r in made}
    spent = insights.budget_spent(engine["cluster"])
    assert list(spent["epsilon"]) == [pytest.approx(2.0)]


T0 = datetime(2026, 4, 1, 9, tzinfo=UTC)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def intervals_of(user: str, minutes: int) -> list[dict]:
    """One interval a minute from 09:00 (50 s each, 3 keys and a click), and one across 23:59-00:01."""
    rows = [
        {"start": T0 + timedelta(minutes=i), "end": T0 + timedelta(minutes=i, seconds=50), "idle": False}
        for i in range(minutes)
    ]
    rows.append(
        {"start": T0 + timedelta(hours=14, minutes=59), "end": T0 + timedelta(hours=15, minutes=1), "idle": True}
    )
    return [
        {
            "user_id": user,
            "device_id": "d1",
            "event_id": str(uuid.uuid4()),
            "device_seq": seq,
            "start": ms(row["start"]),
            "end": ms(row["end"]),
            "app": "Code",
            "title": "t",
            "site": "example.com",
            "keystrokes": 3,
            "clicks": 1,
            "idle": row["idle"],
            "received_at": ms(T0),
        }
        for seq, row in enumerate(rows)
    ]


def write(client, intervals: list[dict]) -> None:
    """What the worker does with a batch: store the intervals, then rebuild the rollups they touch."""
    store_intervals(client, NO_DELETIONS, interval_columns(intervals))
    rebuild_touched(client, intervals)


def rollups_of(client, user: str) -> dict[str, list[tuple]]:
    return {
        table: client.query(
            f"SELECT {column}, device_id, app, site, active_ms, idle_ms, keystrokes, clicks, version "
            f"FROM {table} FINAL WHERE user_id = {{u:String}} ORDER BY {column}",
            parameters={"u": user},
        ).result_rows
        for table, column in (("usage_by_hour", "toUnixTimestamp(hour)"), ("usage_by_title_day", "toString(day)"))
    }


def test_rollups_rebuilt_through_the_distributed_tables_equal_the_raw_totals(engine):
    c = engine["cluster"]
    write(c, intervals_of("rebuilt", 90))
    assert rollup_drift(c, "rebuilt") == []
    hour = int(T0.timestamp())
    row = ("d1", "Code", "example.com")
    # 09:00-10:00: 60 intervals of 50 s; 10:00-10:30: 30; 23:59-00:01 (UTC) split at the hour and the day,
    # its keys and click in the hour and day it started.
    assert rollups_of(c, "rebuilt") == {
        "usage_by_hour": [
            (hour, *row, 3_000_000, 0, 180, 60, 60),
            (hour + 3600, *row, 1_500_000, 0, 90, 30, 30),
            (hour + 14 * 3600, *row, 0, 60_000, 3, 1, 1),
            (hour + 15 * 3600, *row, 0, 60_000, 0, 0, 1),
        ],
        "usage_by_title_day": [
            ("2026-04-01", *row, 4_500_000, 60_000, 273, 91, 91),
            ("2026-04-02", *row, 0, 60_000, 0, 0, 1),
        ],
    }
    # Stored in the local rollup tables, behind the Distributed ones.
    assert scalar(c, "SELECT count() FROM usage_by_hour_local FINAL WHERE user_id = 'rebuilt'") == 4
    assert scalar(c, "SELECT count() FROM usage_by_title_day_local FINAL WHERE user_id = 'rebuilt'") == 2


def test_a_repeated_rebuild_or_redelivered_batch_changes_nothing(engine):
    c = engine["cluster"]
    batch = intervals_of("redelivered", 90)
    write(c, batch[:45])
    partial = rollups_of(c, "redelivered")
    write(c, batch)
    exact = rollups_of(c, "redelivered")
    assert exact != partial  # the rebuild that saw more rows wins
    for _ in range(2):
        write(c, batch)
        rebuild_touched(c, batch[:45])
    assert scalar(c, "SELECT count() FROM intervals FINAL WHERE user_id = 'redelivered'") == 91
    assert rollups_of(c, "redelivered") == exact
    assert sum(keys for *_, keys, _, _ in exact["usage_by_hour"]) == 273
    assert rollup_drift(c, "redelivered") == []


def test_the_old_rollups_move_over_when_a_cluster_is_migrated(engine):
    """Migrations 0001-0003 on a cluster, data rolled up by their views, then 0004 (twice, as after a run that
    stopped half-way) and 0005: the summed rollups are copied at version 0 and dropped, views and all."""
    c = clickhouse_connect.get_client(
        dsn=f"chdb://{engine['root'] / 'data'}", chdb_options={"config-file": str(engine["root"] / "config.xml")}
    )
    c.command("CREATE DATABASE upgrade")
    c.database = "upgrade"

    def up_to(last: int) -> tuple[str, ...]:
        single = [s for m in load_migrations() if m.version <= last for s in m.statements]
        return cluster_statements(single, CLUSTER, "upgrade", replicated=False)

    for statement in up_to(3):
        c.command(without_on_cluster(statement))
    intervals = intervals_of("migrated", 90) + intervals_of("migrated-too", 3)
    store_intervals(c, NO_DELETIONS, interval_columns(intervals))
    old = {
        table: c.query(
            f"SELECT user_id, {column}, device_id, app, site, sum(active_ms), sum(idle_ms), sum(keystrokes), "
            f"sum(clicks) FROM {table} GROUP BY ALL ORDER BY ALL"
        ).result_rows
        for table, column in (("usage_hourly", "hour"), ("usage_daily", "day"))
    }
    assert len(old["usage_hourly"]) == 4 + 3 and sum(r[7] for r in old["usage_hourly"]) == 273 + 12
    copies = up_to(4)[len(up_to(3)) :]
    assert sum(s.startswith("INSERT") for s in copies) == 2
    for _ in range(2):
        for statement in copies:
            c.command(without_on_cluster(statement))
    for statement in up_to(5)[len(up_to(4)) :]:
        c.command(without_on_cluster(statement))
    for old_table, table, column in (("usage_hourly", "usage_by_hour", "hour"), ("usage_daily", "usage_by_day", "day")):
        moved = c.query(
            f"SELECT user_id, {column}, device_id, app, site, active_ms, idle_ms, keystrokes, clicks, version "
            f"FROM {table} FINAL ORDER BY ALL"
        ).result_rows
        assert moved == [(*row, 0) for row in old[old_table]], table
        # Copied into the local table behind the Distributed one, each row once per run of the copy.
        assert scalar(c, f"SELECT count() FROM {table}_local") == 2 * len(moved)
    tables = {name for (name,) in c.query("SELECT name FROM system.tables WHERE database = 'upgrade'").result_rows}
    from_later_migrations = {
        "refused_intervals",
        "data_keys",
        "privacy_rules",
        "privacy_settings",
        "goals",
        "notice_switches",
        "notice_accounts",
        "goal_notices",
        "notice_weekly",
        "import_streams",
        "source_intervals",
        "usage_by_title_day",
    }  # 0006+
    expected = (set(deletion.USER_TABLES) - from_later_migrations) | {"usage_by_day"}  # usage_by_day until 0015
    assert tables == {name for table in expected for name in (table, f"{table}_local")}
    # The later migrations; the daily rollup by title (0015) is filled from raw and usage_by_day dropped.
    for statement in up_to(99)[len(up_to(5)) :]:
        c.command(without_on_cluster(statement))
    assert scalar(c, "SELECT count() FROM usage_by_title_day FINAL WHERE user_id = 'migrated'") > 0
    assert "usage_by_day" not in {
        n for (n,) in c.query("SELECT name FROM system.tables WHERE database = 'upgrade'").result_rows
    }
    # The first rebuild from raw supersedes the copy.
    rebuild_touched(c, intervals)
    assert rollup_drift(c) == []
    assert scalar(c, "SELECT min(version) FROM usage_by_hour FINAL") > 0
    c.command("DROP DATABASE upgrade SYNC")
    c.close()


@pytest.fixture
def local_mutations(monkeypatch):
    """Deletion and retention as each host runs them: this engine refuses ON CLUSTER, so it is left out."""
    monkeypatch.setattr(deletion, "on_cluster", lambda cluster: "")
    monkeypatch.setattr(migrate, "on_cluster", lambda cluster: "")
    # warehouse.rollups imports it from warehouse.cluster when it rebuilds a span.
    monkeypatch.setattr(cluster_module, "on_cluster", lambda cluster: "")


def rows_of(client, user: str, *, final: str = "") -> dict[str, int]:
    return {
        t: scalar(client, f"SELECT count() FROM {t} {final} WHERE user_id = {{u:String}}", u=user)
        for t in deletion.USER_TABLES
    }


def test_deleting_a_time_range_on_the_cluster_leaves_what_a_single_server_leaves(engine, local_mutations):
    for c in (engine["single"], engine["cluster"]):
        store(c, "carol", day_of() + the_day_before())
        sessions_of(c, "carol")
        device(c, "carol", "laptop", "Carol's laptop")
        before = rows_of(c, "carol", final="FINAL")
        forget(c, A_PERIOD, "carol", start=DAY + timedelta(hours=9), end=DAY + timedelta(hours=10))
        assert rows_of(c, "carol", final="FINAL") != before
        assert rollup_drift(c, "carol") == []
    for name in ("totals", "daily_trend", "time_per_app", "app_timeline", "weekday_hour_heatmap"):
        fn = queries.QUERY_FUNCTIONS[name]
        period = (DAY - timedelta(days=1), DAY + timedelta(days=1))
        expected = fn(engine["single"], "carol", *period)
        assert not expected.empty
        pd.testing.assert_frame_equal(fn(engine["cluster"], "carol", *period), expected)
    assert rows_of(engine["cluster"], "carol", final="FINAL") == rows_of(engine["single"], "carol", final="FINAL")


def test_deleting_a_user_on_the_cluster_leaves_no_row_of_them_and_keeps_everyone_else(engine, local_mutations):
    c = engine["cluster"]
    write(c, intervals_of("dave", 30))
    sessions_of(c, "dave")
    device(c, "dave", "d1", "Dave's laptop")
    store_device_states(c, NO_DELETIONS, [("dave", "d1", 30, "{}")])
    store_refusals(c, NO_DELETIONS, [("dave", "d1", 31, str(uuid.uuid4()), "app is empty")])
    create_key(c, "dave", "d1")
    c.command(
        "INSERT INTO category_rules (user_id, rule_id, position, field, pattern, category, deleted, updated_at) "
        "VALUES ('dave', generateUUIDv4(), 0, 'app', 'Code', 'Work', false, now64(3))"
    )
    set_title_mode(c, "dave", "off")
    add_privacy_rule(c, "dave", PrivacyRule("site", "bank.example", "drop_details"))
    goal = add_goal(c, "dave", kind="app", target="Code", direction="at_most", period="day", minutes=60)
    set_goal_channel(c, "dave", goal, "desktop", True)
    set_account(c, "dave", paused=True, tz="UTC")
    set_weekly_summary(c, "dave", True, available=("desktop", "email"))
    c.command(
        "INSERT INTO goal_notices (user_id, notice_id, goal_id, period_start, threshold, channel, state, stage, "
        "summary, body, created_at, updated_at) VALUES ('dave', generateUUIDv4(), {g:UUID}, today(), 85, 'desktop', "
        "'pending', 0, 'Code', '51 of 60 min today.', now64(3), now64(3))",
        parameters={"g": goal},
    )
    stream = ImportStream("dave", "d1-aw", "d1", "dave-laptop", "editor")
    register_stream(c, stream)
    at = datetime(2024, 5, 1, 9, tzinfo=UTC)
    row = ("dave", "d1-aw", "editor", str(uuid.uuid4()), 0, at, at + timedelta(minutes=5), "vim", "rocket", "", at)
    store_source_intervals(c, NO_DELETIONS, [row])
    assert all(rows_of(c, "dave").values()), rows_of(c, "dave")  # a row of dave in every table
    before = rows_of(c, "alice")
    forget(c, ACCOUNT, "dave")
    assert rows_of(c, "dave") == dict.fromkeys(deletion.USER_TABLES, 0)
    for table in deletion.USER_TABLES:
        assert scalar(c, f"SELECT count() FROM {table}_local WHERE user_id = 'dave'") == 0, table
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
        # The tables of the migrations that are still there (not the rollups a later one drops).
        table = re.match(r"CREATE TABLE IF NOT EXISTS (\w+) ", statement)
        if "ENGINE = Distributed(" in statement and table[1] in deletion.USER_TABLES:
            c.command(re.sub(r" AS (\w+_local)\n", r" AS productimon.\1\n", without_on_cluster(statement)))
    yield c
    c.close()


def test_the_distributed_tables_read_every_shard(two_shards, engine):
    assert scalar(two_shards, "SELECT count() FROM intervals") == 2 * scalar(
        engine["cluster"], "SELECT count() FROM intervals"
    )


@pytest.mark.parametrize("name", sorted(queries.QUERY_FUNCTIONS))
def test_every_query_is_accepted_over_more_than_one_shard(two_shards, name):
    assert not queries.QUERY_FUNCTIONS[name](two_shards, "alice", *PERIOD).empty


def test_who_counts_for_insights_is_found_over_more_than_one_shard(two_shards, engine):
    # Both shards hold the same rows: each person's time per bucket counts twice, and their share stays the same.
    week = week_of(DAY.date())
    once = insights.contributions(engine["cluster"], week, 1)["hour"]
    assert len(once) >= 2
    assert sorted(insights.contributions(two_shards, week, 1)["hour"]) == [pytest.approx(p) for p in sorted(once)]


def test_the_rollups_are_rebuilt_over_more_than_one_shard(two_shards, engine):
    # Each shard here holds the same rows, so through two of them every raw row counts twice: the rebuild
    # doubles the totals (and the version, so it wins), which shows it read both shards and wrote to the
    # local tables behind them.
    write(engine["cluster"], intervals_of("twice", 5))
    once = rollups_of(engine["cluster"], "twice")
    rebuild_touched(two_shards, intervals_of("twice", 5))
    twice = rollups_of(engine["cluster"], "twice")
    for table in ("usage_by_hour", "usage_by_title_day"):
        assert [r[:4] for r in twice[table]] == [r[:4] for r in once[table]]
        assert [r[4:] for r in twice[table]] == [tuple(2 * v for v in r[4:]) for r in once[table]]


def test_the_rollups_are_checked_over_more_than_one_shard(two_shards, engine):
    write(engine["cluster"], intervals_of("twice-checked", 5))
    rebuild_touched(two_shards, intervals_of("twice-checked", 5))
    # Through two shards both the raw rows and the rollup rows rebuilt through them count twice: no drift.
    assert rollup_drift(two_shards, "twice-checked") == []
    # alice's rollups, rebuilt through one shard, count once against raw rows that count twice.
    assert rollup_drift(two_shards, "alice") != []
