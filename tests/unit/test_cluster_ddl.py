"""The cluster form of the warehouse migrations (warehouse/cluster.py), and what migrations, retention and
deletion send to a cluster, checked without a server (a recording client stands in for it)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from plumbing.settings import ConfigError, load_settings
from schemas.deletions import ACCOUNT, DEVICE, PERIOD, plan_deletion
from stream_jobs.forget import delete
from stream_jobs.sessionize import SessionRules
from warehouse import deletion
from warehouse.cluster import ABOUT_NO_ONE, ClusterSchema, cluster_of, cluster_statements, migrations_table
from warehouse.migrate import apply_migrations, apply_retention, load_migrations

SINGLE_SERVER = [s for m in load_migrations() for s in m.statements]
CLUSTER = cluster_statements(SINGLE_SERVER, "analytics", "productimon")
CREATED_TABLES = [
    re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", s)[1] for s in SINGLE_SERVER if s.startswith("CREATE TABLE")
]
DROPPED_TABLES = [re.match(r"DROP TABLE IF EXISTS (\w+)$", s)[1] for s in SINGLE_SERVER if s.startswith("DROP TABLE")]
# The data tables once all migrations ran, in the order they were created.
DATA_TABLES = [t for t in CREATED_TABLES if t not in DROPPED_TABLES]


def created(name: str) -> str:
    return next(s for s in CLUSTER if s.startswith(f"CREATE TABLE IF NOT EXISTS {name} "))


def test_every_data_table_becomes_a_replicated_local_table_behind_a_distributed_table_of_the_same_name():
    assert DATA_TABLES == ["intervals", "app_sessions", "focus_sessions", "devices", "category_rules",
                           "usage_by_hour", "device_state", "refused_intervals",
                           "deletions", "data_keys", "privacy_rules", "privacy_settings", "goals",
                           "notice_switches", "notice_accounts", "goal_notices", "notice_weekly",
                           "import_streams", "source_intervals", "insight_releases", "usage_by_title_day"]  # fmt: skip
    assert DROPPED_TABLES == ["usage_daily", "usage_hourly", "usage_by_day"]
    for table in CREATED_TABLES:
        local = created(f"{table}_local")
        assert "ON CLUSTER `analytics`" in local
        assert re.search(
            rf"ENGINE = Replicated\w*MergeTree\('/clickhouse/tables/{{shard}}/{{database}}/{table}', '{{replica}}'",
            local,
        )
        distributed = created(table)
        # A table about no one (the released insights) is spread evenly; every other one lives with its user.
        key = "rand()" if table in ABOUT_NO_ONE else "cityHash64(user_id)"
        assert distributed == (
            f"CREATE TABLE IF NOT EXISTS {table} ON CLUSTER `analytics` AS {table}_local\n"
            f"ENGINE = Distributed('analytics', 'productimon', '{table}_local', {key})"
        )
        # The local table comes first: the Distributed one copies its columns.
        assert CLUSTER.index(local) < CLUSTER.index(distributed)


def test_the_local_tables_keep_the_columns_keys_and_version_columns_of_the_single_server_tables():
    for statement in SINGLE_SERVER:
        match = re.match(r"CREATE TABLE IF NOT EXISTS (\w+)\s*(\(.*\))\s*ENGINE = (\w+)(\(\w+\))?(.*)", statement, re.S)
        if not match:
            continue
        name, columns, engine, version, rest = match.groups()
        local = created(f"{name}_local")
        assert columns in local
        assert f"ENGINE = Replicated{engine}(" in local
        if version:  # ReplacingMergeTree(version): the version column stays the last argument
            assert f"'{{replica}}', {version[1:-1]})" in local
        for clause in re.findall(r"(?:PARTITION BY|ORDER BY) [^\n]+", rest):
            assert clause in local


def test_rollups_attach_to_the_local_tables_on_every_host():
    views = [s for s in CLUSTER if s.startswith("CREATE MATERIALIZED VIEW")]
    assert len(views) == 2
    hourly, daily = views
    assert hourly.startswith(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS usage_hourly_mv ON CLUSTER `analytics` TO usage_hourly_local AS"
    )
    assert "FROM intervals_local\n" in hourly and not re.search(r"FROM intervals\b(?!_local)", hourly)
    assert daily.startswith(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS usage_daily_mv ON CLUSTER `analytics` TO usage_daily_local AS"
    )
    assert "FROM usage_hourly_local\n" in daily


def test_the_views_of_the_summed_rollups_are_dropped_on_every_host_before_their_tables():
    drops = [s for s in CLUSTER if s.startswith("DROP")]
    assert drops == [
        "DROP VIEW IF EXISTS usage_daily_mv ON CLUSTER `analytics`",
        "DROP VIEW IF EXISTS usage_hourly_mv ON CLUSTER `analytics`",
        "DROP TABLE IF EXISTS usage_daily ON CLUSTER `analytics` SYNC",
        "DROP TABLE IF EXISTS usage_daily_local ON CLUSTER `analytics` SYNC",
        "DROP TABLE IF EXISTS usage_hourly ON CLUSTER `analytics` SYNC",
        "DROP TABLE IF EXISTS usage_hourly_local ON CLUSTER `analytics` SYNC",
        "DROP TABLE IF EXISTS usage_by_day ON CLUSTER `analytics` SYNC",
        "DROP TABLE IF EXISTS usage_by_day_local ON CLUSTER `analytics` SYNC",
    ]
    # Each view goes after the copies out of the rollups it fed, each table after its view.
    copies = [CLUSTER.index(s) for s in CLUSTER if s.startswith("INSERT") and "FROM usage_" in s]
    assert max(copies) < CLUSTER.index(drops[0])
    assert CLUSTER.index(drops[1]) < CLUSTER.index(drops[2])


def test_the_old_rollups_are_copied_once_through_the_distributed_tables_stored_on_the_shards_before_returning():
    copies = [s for s in CLUSTER if s.startswith("INSERT")]
    single = [s for s in SINGLE_SERVER if s.startswith("INSERT")]
    assert len(copies) == len(single) == 3
    for copy, statement in zip(copies, single, strict=True):
        # The single-server statement unchanged (no _local table, read or written), and the settings after it.
        assert copy == statement + "\nSETTINGS insert_deduplicate = 0, distributed_foreground_insert = 1"
        assert "_local" not in copy
    hourly, daily, by_title = copies
    assert hourly.startswith("INSERT INTO usage_by_hour (") and "\nFROM usage_hourly\n" in hourly
    assert daily.startswith("INSERT INTO usage_by_day (") and "\nFROM usage_daily\n" in daily
    # The daily rollup by title (0015) is rolled up from the raw intervals, through the Distributed table.
    assert by_title.startswith("INSERT INTO usage_by_title_day (") and "FROM intervals FINAL" in by_title


def test_a_copy_statement_has_the_same_cluster_form_with_or_without_replication():
    plain = cluster_statements(SINGLE_SERVER, "analytics", "productimon", replicated=False)
    assert [s for s in plain if s.startswith(("INSERT", "DROP"))] == [
        s for s in CLUSTER if s.startswith(("INSERT", "DROP"))
    ]


def schema_after_all_migrations() -> ClusterSchema:
    schema = ClusterSchema("analytics", "productimon")
    for statement in SINGLE_SERVER:
        schema.statements(statement)
    return schema


def test_a_dropped_table_is_forgotten_and_its_view_too():
    schema = schema_after_all_migrations()
    assert schema.tables == set(DATA_TABLES)
    assert schema.views == set()
    for statement, message in (
        ("ALTER TABLE usage_daily ADD COLUMN x UInt8", "ALTER TABLE usage_daily: not a data table"),
        ("INSERT INTO usage_hourly (user_id) SELECT user_id FROM intervals", "INSERT INTO usage_hourly: not a data"),
        ("INSERT INTO usage_by_title_day (user_id) SELECT user_id FROM usage_daily", "reads usage_daily, which is not"),
        ("INSERT INTO usage_by_day (user_id) SELECT user_id FROM intervals", "INSERT INTO usage_by_day: not a data"),
        ("DROP TABLE IF EXISTS usage_hourly", "DROP TABLE usage_hourly: not a data table"),
        ("DROP VIEW IF EXISTS usage_hourly_mv", "DROP VIEW usage_hourly_mv: not a materialized view"),
        (
            "CREATE MATERIALIZED VIEW IF NOT EXISTS m TO usage_daily AS SELECT user_id FROM intervals",
            "writes to usage_daily, which is not a data table",
        ),
    ):
        with pytest.raises(ValueError, match=message):
            schema.statements(statement)


def test_a_later_migration_drops_a_table_on_every_host_distributed_table_first():
    schema = schema_after_all_migrations()
    assert schema.statements("DROP TABLE IF EXISTS device_state") == (
        "DROP TABLE IF EXISTS device_state ON CLUSTER `analytics` SYNC",
        "DROP TABLE IF EXISTS device_state_local ON CLUSTER `analytics` SYNC",
    )
    assert "device_state" not in schema.tables
    with pytest.raises(ValueError, match="DROP TABLE device_state: not a data table"):
        schema.statements("DROP TABLE IF EXISTS device_state")


def test_a_later_migration_copies_between_data_tables_and_drops_its_own_views():
    schema = schema_after_all_migrations()
    copy = (
        "INSERT INTO usage_by_title_day (user_id, day, device_id, app, site, active_ms, idle_ms, keystrokes, clicks, "
        "version)\nSELECT user_id, toDate(hour), device_id, app, site, sum(active_ms), sum(idle_ms), "
        "sum(keystrokes), sum(clicks), 0\nFROM usage_by_hour FINAL\nWHERE user_id IN (SELECT user_id FROM devices)"
        "\nGROUP BY user_id, toDate(hour), device_id, app, site"
    )
    assert schema.statements(copy) == (copy + "\nSETTINGS insert_deduplicate = 0, distributed_foreground_insert = 1",)
    # Without a column list, and reading a subquery or a table function: only plain table names are checked.
    assert schema.statements("INSERT INTO devices SELECT * FROM (SELECT * FROM devices) WHERE 0") == (
        "INSERT INTO devices SELECT * FROM (SELECT * FROM devices) WHERE 0\n"
        "SETTINGS insert_deduplicate = 0, distributed_foreground_insert = 1",
    )
    view = "CREATE MATERIALIZED VIEW IF NOT EXISTS by_device TO devices AS SELECT * FROM devices"
    assert schema.statements(view)[0].startswith(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS by_device ON CLUSTER `analytics` TO devices_local AS"
    )
    assert schema.views == {"by_device"}
    assert schema.statements("DROP VIEW IF EXISTS by_device") == (
        "DROP VIEW IF EXISTS by_device ON CLUSTER `analytics`",
    )
    assert schema.views == set()


def test_the_single_server_deduplication_window_is_left_to_replication():
    # Replicated tables deduplicate inserts by themselves (replicated_deduplication_window).
    assert not any("non_replicated_deduplication_window" in s for s in CLUSTER)
    assert not any("MODIFY SETTING" in s for s in CLUSTER)
    # The only ALTERs left change columns' codecs (0016), on the shards' tables and on the Distributed ones.
    altered = [s for s in CLUSTER if s.startswith("ALTER")]
    assert len(altered) == 12 and all(" MODIFY COLUMN " in s and " CODEC(" in s for s in altered)
    assert "SETTINGS" not in created("usage_daily_local")


def test_without_replication_the_engines_and_the_settings_stay():
    plain = cluster_statements(SINGLE_SERVER, "analytics", "productimon", replicated=False)
    assert (
        "ALTER TABLE intervals_local ON CLUSTER `analytics` MODIFY SETTING non_replicated_deduplication_window = 1000"
        in plain
    )
    daily = next(s for s in plain if s.startswith("CREATE TABLE IF NOT EXISTS usage_daily_local "))
    assert "ENGINE = SummingMergeTree\n" in daily and daily.endswith(
        "SETTINGS non_replicated_deduplication_window = 1000"
    )


def test_a_later_migration_refers_to_the_tables_of_earlier_ones():
    schema = ClusterSchema("analytics", "productimon")
    for statement in SINGLE_SERVER:
        schema.statements(statement)
    assert schema.statements("ALTER TABLE devices ADD COLUMN IF NOT EXISTS label String") == (
        "ALTER TABLE devices_local ON CLUSTER `analytics` ADD COLUMN IF NOT EXISTS label String",
        "ALTER TABLE devices ON CLUSTER `analytics` ADD COLUMN IF NOT EXISTS label String",
    )
    assert schema.statements("ALTER TABLE intervals MODIFY TTL toDateTime(start) + toIntervalDay(30)") == (
        "ALTER TABLE intervals_local ON CLUSTER `analytics` MODIFY TTL toDateTime(start) + toIntervalDay(30)",
    )


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE devices",
        "DROP TABLE IF EXISTS nowhere",
        "DROP TABLE IF EXISTS devices_local",
        "DROP TABLE IF EXISTS devices SYNC",
        "DROP VIEW IF EXISTS devices",
        "DROP VIEW IF EXISTS never_created_mv",
        "DROP VIEW usage_hourly_mv",
        "DROP DATABASE IF EXISTS productimon",
        "TRUNCATE TABLE intervals",
        "INSERT INTO devices (user_id) VALUES ('alice')",
        "INSERT INTO nowhere (user_id) SELECT user_id FROM devices",
        "INSERT INTO devices_local (user_id) SELECT user_id FROM devices",
        "INSERT INTO devices (user_id) SELECT user_id FROM nowhere",
        "INSERT INTO devices (user_id) SELECT user_id FROM intervals JOIN nowhere USING (user_id)",
        "INSERT INTO devices (user_id) SELECT user_id FROM intervals SETTINGS max_threads = 1",
        "CREATE VIEW IF NOT EXISTS v AS SELECT 1",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS m ENGINE = MergeTree ORDER BY x AS SELECT x FROM intervals",
        "ALTER TABLE nowhere ADD COLUMN x UInt8",
        "CREATE TABLE IF NOT EXISTS notes\n(\n    note String\n)\nENGINE = MergeTree\nORDER BY note",
        "CREATE TABLE IF NOT EXISTS kv\n(\n    user_id String\n)\nENGINE = Memory",
    ],
)
def test_a_statement_with_no_cluster_form_is_refused_rather_than_guessed(statement):
    with pytest.raises(ValueError):
        cluster_statements(SINGLE_SERVER + [statement], "analytics", "productimon")


def test_the_refusal_names_every_kind_of_statement_handled():
    with pytest.raises(ValueError) as refused:
        cluster_statements(["TRUNCATE TABLE intervals"], "analytics", "productimon")
    for kind in ("CREATE TABLE", "CREATE MATERIALIZED VIEW ... TO", "ALTER TABLE", "INSERT INTO ... SELECT",
                 "DROP VIEW IF EXISTS", "DROP TABLE IF EXISTS"):  # fmt: skip
        assert kind in str(refused.value)
    assert "TRUNCATE TABLE intervals" in str(refused.value)


def test_the_distributed_tables_are_exactly_the_tables_deletion_covers():
    assert set(DATA_TABLES) == set(deletion.USER_TABLES) | set(deletion.KEPT_TABLES) | ABOUT_NO_ONE
    assert ABOUT_NO_ONE == {"insight_releases"}


def test_the_migrations_bookkeeping_is_one_replica_set_across_all_shards():
    table = migrations_table("analytics")
    assert "ON CLUSTER `analytics`" in table
    assert (
        "ReplicatedReplacingMergeTree('/clickhouse/tables/all/{database}/schema_migrations', '{shard}-{replica}')"
        in table
    )


def test_the_cluster_is_read_from_a_distributed_engine_clause():
    assert cluster_of("Distributed('analytics', 'productimon', 'intervals_local', cityHash64(user_id))") == "analytics"
    assert cluster_of("ReplacingMergeTree PARTITION BY toYYYYMM(start) ORDER BY (user_id)") == ""


@pytest.mark.parametrize("name", ["a b", "x`y", "1st", "c;DROP"])
def test_a_cluster_name_that_is_not_an_identifier_is_refused(name, monkeypatch):
    with pytest.raises(ValueError):
        cluster_statements(SINGLE_SERVER, name, "productimon")
    monkeypatch.setenv("PRODUCTIMON_WAREHOUSE_CLUSTER", name)
    with pytest.raises(ConfigError, match="PRODUCTIMON_WAREHOUSE_CLUSTER"):
        load_settings()


def test_the_default_is_a_single_server(monkeypatch):
    monkeypatch.delenv("PRODUCTIMON_WAREHOUSE_CLUSTER", raising=False)
    assert load_settings().warehouse_cluster == ""


# --- what the warehouse code sends (a recording client in place of ClickHouse) ---------------------------------


class RecordingClient:
    """Records commands and inserts; answers the few queries the code makes from `tables` and `done`."""

    def __init__(self, engine_of_intervals: str = "", done: tuple[int, ...] = ()) -> None:
        self.database = ""
        self.commands: list[tuple[str, dict]] = []
        self.inserts: list[str] = []
        self.engine_of_intervals = engine_of_intervals
        self.done = done
        self.log: list[str] = []  # commands and inserts, in order

    def command(self, sql: str, parameters=None, settings=None):
        self.commands.append((sql, settings or {}))
        self.log.append(sql)

    def insert(self, table, data, column_names=None, **kwargs):
        self.inserts.append(table)
        self.log.append(f"insert {table}")

    def query(self, sql: str, parameters=None):
        if sql.startswith("SELECT version FROM schema_migrations"):
            rows = [(v,) for v in self.done]
        elif "engine_full" in sql:
            rows = [(self.engine_of_intervals,)] if self.engine_of_intervals else []
        elif "create_table_query" in sql:
            rows = [("CREATE TABLE ...",)]
        elif sql.startswith("SELECT count(), intDiv("):  # the intervals a deletion covers: some
            rows = [(5, 250)]
        elif sql.startswith(("SELECT count() FROM", "SELECT uniqExact(session_id)")):
            rows = [(1,)]
        elif "FROM focus_sessions" in sql or "FROM device_state" in sql or "FROM deletions" in sql:
            rows = []  # no sessions, states or earlier deletions
        else:
            raise AssertionError(f"unexpected query {sql}")
        return SimpleNamespace(result_rows=rows)


def test_single_server_migrations_send_the_files_statements_unchanged():
    client = RecordingClient()
    apply_migrations(client, "productimon")
    sent = [sql for sql, _ in client.commands]
    assert sent[0] == "CREATE DATABASE IF NOT EXISTS `productimon`"
    assert sent[1].startswith("CREATE TABLE IF NOT EXISTS schema_migrations (") and "ON CLUSTER" not in sent[1]
    assert sent[2:] == SINGLE_SERVER
    assert client.inserts == ["schema_migrations"] * len(load_migrations())


def test_cluster_migrations_send_only_cluster_statements():
    client = RecordingClient()
    apply_migrations(client, "productimon", cluster="analytics")
    sent = [sql for sql, _ in client.commands]
    assert sent[0] == "CREATE DATABASE IF NOT EXISTS `productimon` ON CLUSTER `analytics`"
    assert sent[1] == migrations_table("analytics")
    assert sent[2] == "SYSTEM SYNC REPLICA schema_migrations"
    assert sent[3:] == list(CLUSTER)
    # DDL on every host; a data copy once, through the Distributed tables.
    assert all("ON CLUSTER `analytics`" in s for s in sent[3:] if not s.startswith("INSERT"))
    assert not any("ON CLUSTER" in s for s in sent[3:] if s.startswith("INSERT"))


def test_cluster_migrations_already_recorded_are_skipped_but_their_tables_known():
    client = RecordingClient(done=(1, 2))
    applied = apply_migrations(client, "productimon", cluster="analytics")
    assert [m.version for m in applied] == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
    sent = [sql for sql, _ in client.commands][3:]
    assert "FROM intervals_local\n" in next(s for s in sent if "usage_hourly_mv" in s)
    assert not any(s.startswith("CREATE TABLE IF NOT EXISTS intervals_local ON CLUSTER") for s in sent)


def test_cluster_migrations_already_recorded_know_the_tables_and_views_a_later_one_drops():
    client = RecordingClient(done=(1, 2, 3, 4))
    applied = apply_migrations(client, "productimon", cluster="analytics")
    assert [m.version for m in applied] == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
    assert [sql for sql, _ in client.commands][3:7] == [
        "DROP TABLE IF EXISTS usage_daily ON CLUSTER `analytics` SYNC",
        "DROP TABLE IF EXISTS usage_daily_local ON CLUSTER `analytics` SYNC",
        "DROP TABLE IF EXISTS usage_hourly ON CLUSTER `analytics` SYNC",
        "DROP TABLE IF EXISTS usage_hourly_local ON CLUSTER `analytics` SYNC",
    ]
    assert [sql.split("\n")[0] for sql, _ in client.commands][7:9] == [
        "CREATE TABLE IF NOT EXISTS refused_intervals_local ON CLUSTER `analytics`",
        "CREATE TABLE IF NOT EXISTS refused_intervals ON CLUSTER `analytics` AS refused_intervals_local",
    ]


DISTRIBUTED = "Distributed('analytics', 'productimon', 'intervals_local', cityHash64(user_id))"


def test_retention_on_a_cluster_sets_the_ttl_of_every_shards_local_table():
    client = RecordingClient(engine_of_intervals=DISTRIBUTED)
    apply_retention(client, 30)
    assert client.commands == [
        ("ALTER TABLE intervals_local ON CLUSTER `analytics` MODIFY TTL toDateTime(start) + toIntervalDay(30)", {}),
        # The titles of the daily rollup by title go with the raw rows they came from.
        (
            "ALTER TABLE usage_by_title_day_local ON CLUSTER `analytics` "
            "MODIFY TTL toDateTime(day) + toIntervalDay(30)",
            {},
        ),
    ]


NOW_MS = int(datetime(2026, 3, 5, tzinfo=UTC).timestamp() * 1000)


def forget(client, kind: str, **options) -> None:
    delete(client, plan_deletion(kind, "alice", NOW_MS, **options), SessionRules())


def test_deletion_on_a_cluster_mutates_every_shards_local_tables_and_waits_for_all_replicas():
    client = RecordingClient(engine_of_intervals=DISTRIBUTED)
    forget(client, ACCOUNT)
    forget(client, DEVICE, device_id="laptop")
    forget(client, PERIOD, start=datetime(2026, 3, 1, tzinfo=UTC), end=datetime(2026, 3, 2, tzinfo=UTC))
    # Each deletion is recorded (through the Distributed table) before any of its mutations.
    records = [n for n, entry in enumerate(client.log) if entry == "insert deletions"]
    assert len(records) == 3 and records[0] == 0
    mutations = [(sql, settings) for sql, settings in client.commands if sql.startswith("ALTER")]
    mutated = [re.match(r"ALTER TABLE (\w+)_local", sql)[1] for sql, _ in mutations]
    # The account: every table of user rows; the device: its raw rows, rollups and refusals, not its name.
    assert mutated[: len(deletion.USER_TABLES)] == list(deletion.USER_TABLES)
    assert "devices" not in mutated[len(deletion.USER_TABLES) :]
    for sql, settings in mutations:
        assert re.match(r"ALTER TABLE \w+_local ON CLUSTER `analytics` DELETE WHERE user_id = \{user:String\}", sql), (
            sql
        )
        assert settings == {"mutations_sync": 2}
    # The period's rollups: the days around it are deleted from every shard's local rollup tables, then
    # rebuilt from the raw rows left.
    cleared = [sql for sql, _ in mutations if "usage_by_" in sql]
    assert [sql.split(" DELETE")[0] for sql in cleared[-2:]] == [
        "ALTER TABLE usage_by_hour_local ON CLUSTER `analytics`",
        "ALTER TABLE usage_by_title_day_local ON CLUSTER `analytics`",
    ]
    assert "AND hour >= CAST({first_s:UInt32} AS DateTime('UTC'))" in cleared[-2]
    assert "AND day >= CAST({first_s:UInt32} AS Date)" in cleared[-1]
    rebuilds = [(sql, s) for sql, s in client.commands if sql.startswith("INSERT")][-2:]
    assert [sql.split(" (")[0] for sql, _ in rebuilds] == [
        "INSERT INTO usage_by_hour",
        "INSERT INTO usage_by_title_day",
    ]
    for sql, settings in rebuilds:
        # Through the Distributed tables (read and written), stored before the call returns, never dropped as
        # a duplicate block.
        assert "FROM intervals FINAL" in sql and "_local" not in sql
        assert settings == {"insert_deduplicate": 0, "distributed_foreground_insert": 1}
    # Each span's rollup rows are deleted before they are rebuilt.
    sent = [sql for sql, _ in client.commands]
    assert sent.index(cleared[-2]) < sent.index(rebuilds[0][0]) < sent.index(cleared[-1]) < sent.index(rebuilds[1][0])


def test_deletion_on_a_single_server_mutates_the_tables_themselves():
    client = RecordingClient(engine_of_intervals="ReplacingMergeTree PARTITION BY toYYYYMM(start)")
    forget(client, ACCOUNT)
    assert [sql.split(" DELETE")[0] for sql, _ in client.commands] == [f"ALTER TABLE {t}" for t in deletion.USER_TABLES]


@pytest.mark.parametrize(
    ("existing", "configured"),
    [
        ("ReplacingMergeTree PARTITION BY toYYYYMM(start) ORDER BY (user_id)", "analytics"),
        (DISTRIBUTED, ""),
        (DISTRIBUTED, "elsewhere"),
    ],
)
def test_a_warehouse_laid_out_for_another_topology_is_not_migrated(existing, configured):
    client = RecordingClient(engine_of_intervals=existing)
    with pytest.raises(ValueError, match="PRODUCTIMON_WAREHOUSE_CLUSTER"):
        apply_migrations(client, "productimon", cluster=configured)
    assert not any("CREATE TABLE" in sql for sql, _ in client.commands)
